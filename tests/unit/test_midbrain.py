"""Local midbrain refinement of the template registration (ironmap.spatial.midbrain)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ironmap.spatial.anatomy import (
    RelabelledAtlas,
    choose_sources,
    midbrain_indices,
    output_index,
)
from ironmap.spatial.midbrain import box_grid, refine_midbrain, template_box

SN_L = output_index("substantia_nigra", "left")
RN_L = output_index("red_nucleus", "left")
CAUDATE_L = output_index("caudate", "left")


def _grid(shape=(48, 48, 48), origin=(-24.0, -24.0, -24.0)):
    affine = np.eye(4)
    affine[:3, 3] = origin
    ijk = np.indices(shape, dtype=float)
    xyz = np.stack([ijk[i] + origin[i] for i in range(3)])
    return affine, xyz


def _ellipsoid(xyz, centre, radii):
    return sum(((xyz[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) <= 1.0


def _scene(xyz, shift):
    """A brain-like patch: bright background, a dark 'midbrain' rim, two nuclei, all shifted."""
    c = np.array(shift, float)
    image = np.full(xyz.shape[1:], 100.0)
    image[_ellipsoid(xyz, c + [0, 0, 0], (14, 12, 16))] = 70.0
    sn = _ellipsoid(xyz, c + [-5, 2, -3], (4, 2.5, 3))
    rn = _ellipsoid(xyz, c + [4, -3, 2], (3, 3, 3))
    image[sn] = 40.0
    image[rn] = 130.0
    image[_ellipsoid(xyz, c + [0, 10, 8], (3, 3, 3))] = 20.0  # an asymmetric landmark
    labels = np.zeros(xyz.shape[1:], np.int16)
    labels[sn], labels[rn] = SN_L, RN_L
    return ndimage.gaussian_filter(image, 0.7), labels


def test_midbrain_indices_are_sn_and_rn():
    from ironmap.spatial.anatomy import OUTPUT_LABELS

    names = {OUTPUT_LABELS[i] for i in midbrain_indices()}
    assert names == {"Left-Substantia-Nigra", "Right-Substantia-Nigra", "Left-Red-Nucleus",
                     "Right-Red-Nucleus"}


def test_template_box_and_grid_cover_the_labels():
    affine, xyz = _grid()
    _, labels = _scene(xyz, (0, 0, 0))
    img = nib.Nifti1Image(labels, affine)
    lo, hi = template_box([img], [SN_L, RN_L], margin_mm=5.0)
    world = xyz[:, labels > 0]
    np.testing.assert_allclose(lo, world.min(axis=1) - 5.0)
    np.testing.assert_allclose(hi, world.max(axis=1) + 5.0)
    grid = box_grid(lo, hi, 1.0)
    far = grid.affine @ np.r_[np.array(grid.shape) - 1, 1.0]
    assert np.all(grid.affine[:3, 3] == lo) and np.all(far[:3] >= hi)
    with pytest.raises(ValueError, match="no voxel"):
        template_box([img], [CAUDATE_L])


def test_local_refinement_recovers_a_local_shift(tmp_path):
    """Global fit = identity; the subject's midbrain sits 2 mm off: the local SyN finds it."""
    from ironmap.spatial.atlas import NonlinearFit
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    affine, xyz = _grid()
    template, tlabels = _scene(xyz, (0, 0, 0))
    subject, truth = _scene(xyz, (2.0, -1.0, 1.0))
    identity = str(tmp_path / "identity.mat")
    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform",
                                                    dimension=3), identity)
    fit = NonlinearFit([identity], 1.0, [identity, identity])  # (affine, inverse warp)
    other = np.zeros_like(tlabels)
    other[2:6, 2:6, 2:6] = CAUDATE_L  # another region: never moved, never overwritten
    glob = np.where(other > 0, other, tlabels)
    atlas = RelabelledAtlas("test", nib.Nifti1Image(tlabels, affine),
                            {SN_L: 1, RN_L: 1}, None)
    ref = nib.Nifti1Image(subject.astype(np.float32), affine)
    out, local = refine_midbrain(ref, glob, [atlas], fit,
                                 nib.Nifti1Image(template.astype(np.float32), affine),
                                 indices=midbrain_indices(),
                                 source=choose_sources([atlas]),
                                 workdir=str(tmp_path), margin_mm=8.0)
    assert local is not None and local.similarity_after > local.similarity_before

    def dice(a, b):
        return 2 * np.sum(a & b) / (a.sum() + b.sum())

    for index in (SN_L, RN_L):
        before = dice(glob == index, truth == index)
        after = dice(out == index, truth == index)
        assert after > before + 0.1 and after >= 0.75, (index, before, after)
    np.testing.assert_array_equal(out == CAUDATE_L, other == CAUDATE_L)


def test_cli_option_reaches_config_record_methods_and_sidecar(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.report.methods import methods_record, midbrain_phrase
    from ironmap.spatial.atlas import NonlinearFit
    from ironmap.spatial.midbrain import LocalFit
    from ironmap.workflows.anatomy import midbrain_enabled, midbrain_provenance
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert "midbrain_refine" in PARTICIPANT_KEYS
    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    for given, expected in (([], "local"), (["--midbrain-refine", "none"], "none")):
        cfg = config_from_args(build_parser().parse_args([*base, *given]))
        assert cfg.midbrain_refine == expected
        assert midbrain_enabled(cfg) == (expected == "local")
        record = methods_record(cfg.to_json())
        assert record["midbrain_refine"] == expected
        assert ("local SyN" in midbrain_phrase(record)) == (expected == "local")
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--midbrain-refine", "iron"])
    fit = NonlinearFit(["w", "a"], 0.5)
    assert midbrain_provenance(fit) is None
    fit.local = LocalFit(["l", "w", "a"], np.zeros(3), np.ones(3), 0.8, 0.9)
    prov = midbrain_provenance(fit)
    assert prov["Regions"] == ["substantia_nigra", "red_nucleus"]
    assert prov["Metric"] == "CC" and prov["CorrelationAfter"] == 0.9
