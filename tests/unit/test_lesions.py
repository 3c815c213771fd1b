"""Lesions: connected components, lesion-wise R2*, T2 lesion load (synthetic and real masks)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from conftest import require_shared
from ironmap.core.lesions.lesion_values import (
    PER_LESION_COLUMNS,
    label_lesions,
    lesion_load_cm3,
    lesion_stats,
)


@pytest.fixture
def lesions(rng):
    """Three lesions: a 3x3x3 cube (R2* 40), a 2x2x1 patch (R2* 25) and a diagonal pair."""
    mask = np.zeros((20, 20, 10), np.uint8)
    r2 = 20.0 + rng.normal(0, 0.5, mask.shape)
    mask[2:5, 2:5, 2:5] = 1
    r2[2:5, 2:5, 2:5] = 40.0
    mask[10:12, 10:12, 5] = 1
    r2[10:12, 10:12, 5] = 25.0
    mask[15, 15, 5] = mask[16, 16, 6] = 1  # corner-touching only
    r2[15, 15, 5], r2[16, 16, 6] = 50.0, 60.0
    return r2, mask


def test_connectivity(lesions):
    _, mask = lesions
    assert label_lesions(mask)[1] == 3          # 26-connected: the diagonal pair is one lesion
    assert label_lesions(mask, connectivity=6)[1] == 4
    with pytest.raises(ValueError, match="connectivity"):
        label_lesions(mask, connectivity=8)


def test_lesion_load_is_area_per_slice_times_thickness(rng):
    mask = rng.random((30, 30, 12)) < 0.05
    sizes = (0.72, 0.72, 4.0)
    by_slice = sum(mask[:, :, k].sum() * 0.72 * 0.72 * 4.0 for k in range(12)) / 1000.0
    assert lesion_load_cm3(mask, sizes) == pytest.approx(by_slice, rel=1e-12)
    assert lesion_load_cm3(np.zeros((3, 3, 3)), sizes) == 0.0
    with pytest.raises(ValueError, match="voxel sizes"):
        lesion_load_cm3(mask, (1.0, 0.0, 1.0))


def test_lesion_stats(lesions):
    r2, mask = lesions
    summary, per = lesion_stats(r2, mask, voxel_sizes=(1.0, 1.0, 2.0),
                                mask_flair=mask, flair_voxel_sizes=(0.5, 0.5, 3.0))
    assert list(per.columns) == list(PER_LESION_COLUMNS)
    assert summary["lesion_count"] == 3 and list(per.lesion_id) == [1, 2, 3]
    assert list(per.n_voxels) == [27, 4, 2]
    np.testing.assert_allclose(per.r2star_mean, [40.0, 25.0, 55.0])
    np.testing.assert_allclose(per.volume_cm3, [0.054, 0.008, 0.004])
    np.testing.assert_allclose(per[["centroid_i", "centroid_j", "centroid_k"]].iloc[0], [3, 3, 3])
    assert summary["n_voxels"] == 33
    assert summary["lesion_r2star_mean"] == pytest.approx((27 * 40 + 4 * 25 + 110) / 33)
    assert summary["lesion_r2star_median"] == pytest.approx(40.0)
    assert summary["lesion_load_cm3"] == pytest.approx(33 * 0.75 / 1000)


def test_flags_and_empty_masks(lesions):
    r2, mask = lesions
    r2 = r2.copy()
    flags = np.zeros(mask.shape, np.uint16)
    flags[2, 2, 2] = 1
    r2[10, 10, 5] = np.nan
    summary, per = lesion_stats(r2, mask, flags=flags)
    assert summary["n_voxels_flagged"] == 2 and summary["n_voxels"] == 31
    assert list(per.n_voxels) == [26, 3, 2] and list(per.n_voxels_mask) == [27, 4, 2]
    assert per.volume_cm3.isna().all() and np.isnan(summary["lesion_load_cm3"])
    empty, per0 = lesion_stats(r2, np.zeros_like(mask))
    assert empty["lesion_count"] == 0 and np.isnan(empty["lesion_r2star_mean"])
    assert len(per0) == 0 and list(per0.columns) == list(PER_LESION_COLUMNS)
    with pytest.raises(ValueError, match="shape"):
        lesion_stats(r2, mask[:-1])


# Consensus lesion volumes (mm^3) of open_ms_data, cross-sectional patients: MNI 1 mm grid and
# the native 3D-FLAIR grid (0.8 x 0.469 x 0.469 mm), see the data set's PROVENANCE.md.
MNI_LOAD_MM3 = {"07": 1300, "26": 8227, "19": 49769}


@pytest.mark.realdata
@pytest.mark.parametrize("patient", sorted(MNI_LOAD_MM3))
def test_real_consensus_lesion_load_mni(patient):
    root = require_shared("open_ms_data", "cross_sectional", "MNI", f"patient{patient}")
    img = nib.load(root / "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz")
    mask = np.asanyarray(img.dataobj)
    load = lesion_load_cm3(mask, img.header.get_zooms())
    assert load == pytest.approx(MNI_LOAD_MM3[patient] / 1000.0, rel=1e-9)
    summary, _ = lesion_stats(np.full(mask.shape, 30.0), mask)
    assert summary["lesion_count"] > 10 and summary["lesion_r2star_mean"] == 30.0


@pytest.mark.realdata
def test_real_consensus_lesion_load_native_flair():
    """Anisotropic native FLAIR grid: slice thickness 0.8 mm, in-plane 0.469 mm."""
    path = require_shared("open_ms_data", "cross_sectional", "coregistered", "patient07",
                          "consensus_gt.nii.gz")
    img = nib.load(path)
    load = lesion_load_cm3(np.asanyarray(img.dataobj), img.header.get_zooms())
    assert load == pytest.approx(1.3528, abs=1e-4)


def test_lesion_centroids_equal_center_of_mass_over_the_grid():
    from scipy import ndimage

    from ironmap.core.lesions.lesion_values import lesion_centroids

    rng = np.random.default_rng(16)
    for trial in range(40):
        shape = tuple(int(s) for s in rng.integers(3, 40, size=3))
        mask = rng.random(shape) < rng.choice([0.002, 0.02, 0.2])
        if trial % 5 == 0:  # a lesion touching the far corner stretches the box to it
            mask[-1, -1, -1] = True
        labels, n = label_lesions(mask)
        if n == 0:
            continue
        ids = np.arange(1, n + 1)
        boxes = ndimage.find_objects(labels, max_label=n)
        got = lesion_centroids(labels, ids, boxes)
        want = ndimage.center_of_mass(np.ones(labels.shape), labels, ids)
        assert np.array(got).tobytes() == np.array(want).tobytes()
        if n > 1:  # an id missing from the labels (its box None) gives NaN either way
            labels[labels == 1] = 0
            boxes = ndimage.find_objects(labels, max_label=n)
            with np.errstate(invalid="ignore"):
                got = lesion_centroids(labels, ids, boxes)
                want = ndimage.center_of_mass(np.ones(labels.shape), labels, ids)
            np.testing.assert_array_equal(np.array(got), np.array(want))
