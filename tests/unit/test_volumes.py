"""Tissue volumes, partial-volume unmixing and head-size scaling (pure core)."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.core.regions.tissue_volumes import (
    normalise_volumes,
    partial_volume_fractions,
    pure_class_means,
    scaling_factor,
    tissue_volumes,
    voxel_volume_cm3,
)


def _two_spheres(rng, n=48, vox=2.0, sub=4):
    """Nested spheres (WM inside GM inside CSF) with exact partial volume and noise.

    Returns intensity, true fractions (3, n, n, n) and hard labels.
    """
    # supersampled truth -> exact fractions
    m = n * sub
    c = (np.indices((m, m, m)) + 0.5) / sub - n / 2
    r = np.sqrt((c ** 2).sum(0)) * vox
    fine = np.select([r < 25.3, r < 35.7, r < 44.1], [3, 2, 1], 0)
    frac = np.stack([(fine == k).reshape(n, sub, n, sub, n, sub).mean((1, 3, 5))
                     for k in (1, 2, 3)])
    means = np.array([0.12, 0.58, 1.0])
    img = np.tensordot(means, frac, axes=1) + rng.normal(0, 0.02, (n, n, n))
    hard = np.where(frac.sum(0) > 0.5, np.argmax(frac, axis=0) + 1, 0)
    return img, frac, hard


def test_voxel_volume_and_mask():
    assert voxel_volume_cm3((1, 1, 1)) == pytest.approx(0.001)
    assert voxel_volume_cm3((2, 2, 3)) == pytest.approx(0.012)
    with pytest.raises(ValueError, match="positive"):
        voxel_volume_cm3((1, 0, 1))


def test_tissue_volumes_from_fractions():
    gm = np.full((10, 10, 10), 0.5)
    wm = np.full((10, 10, 10), 0.25)
    csf = np.full((10, 10, 10), 0.25)
    deep = np.zeros_like(gm)
    deep[:2] = 0.5  # 2 slabs of 100 voxels, half deep GM
    v = tissue_volumes(gm, wm, csf, (2, 2, 2), deep_gm=deep)
    assert v["gm_cm3"] == pytest.approx(4.0)  # 1000 vox * 0.5 * 8 mm3
    assert v["deep_gm_cm3"] == pytest.approx(0.8)
    assert v["cortical_gm_cm3"] == pytest.approx(3.2)
    assert v["brain_cm3"] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="shape"):
        tissue_volumes(gm, wm[:5], csf, (1, 1, 1))


def test_partial_volume_unmixing_recovers_true_volumes(rng):
    img, frac, hard = _two_spheres(rng)
    means = pure_class_means(img, hard, 3)
    np.testing.assert_allclose(means, [0.12, 0.58, 1.0], atol=0.02)
    est = partial_volume_fractions(img, hard, means)
    true_v = frac.sum(axis=(1, 2, 3))
    hard_v = np.array([(hard == k).sum() for k in (1, 2, 3)])
    est_v = est.sum(axis=(1, 2, 3))
    # GM and WM within 2 % of the exact partial-volume truth, better than hard counting
    np.testing.assert_allclose(est_v[1:], true_v[1:], rtol=0.02)
    assert np.abs(est_v[1] - true_v[1]) < np.abs(hard_v[1] - true_v[1])
    np.testing.assert_allclose(est.sum(axis=0)[hard > 0], 1.0, atol=1e-9)


def test_scaling_factor_is_determinant():
    a = np.diag([1.1, 1.1, 1.1, 1.0])
    a[:3, 3] = [5, -3, 2]
    assert scaling_factor(a) == pytest.approx(1.331)
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert scaling_factor(rot * 0.9) == pytest.approx(0.729)
    with pytest.raises(ValueError, match="implausible"):
        scaling_factor(np.diag([0.1, 0.1, 0.1, 1]))


def test_normalised_volumes_agree_across_head_sizes():
    # the same brain at two head sizes: raw volumes differ by s^3, normalised ones agree
    base = {"gm_cm3": 700.0, "wm_cm3": 650.0, "cortical_gm_cm3": 660.0}
    rows = []
    for s in (0.9, 1.1):
        raw = {k: v * s**3 for k, v in base.items()}
        rows.append(normalise_volumes(raw, scaling_factor(np.diag([1 / s] * 3 + [1]))))
    for key in ("gm_norm_cm3", "wm_norm_cm3", "cortical_gm_norm_cm3"):
        assert rows[0][key] == pytest.approx(rows[1][key])
        assert rows[0][key] == pytest.approx(base[key.replace("_norm", "")])
