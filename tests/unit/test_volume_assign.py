"""Volume-preserving transport of small labels (``--midbrain-transport volume``)."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from ironmap.core.regions.fraction_core import fraction_core_labels
from ironmap.core.regions.volume_assign import (
    assign_by_volume,
    label_volumes,
    scaled_volumes,
)
from ironmap.spatial.anatomy import output_index

SN_L = output_index("substantia_nigra", "left")
RN_L = output_index("red_nucleus", "left")


def _line(values):
    return np.asarray(values, float).reshape(-1, 1, 1)


def test_each_label_gets_its_summed_fraction_in_decreasing_fraction():
    frac = {SN_L: _line([0.4, 0.6, 0.45, 0.3, 0.0]), RN_L: _line([0.0, 0.0, 0.5, 0.9, 0.2])}
    assert label_volumes(frac) == {SN_L: 2, RN_L: 2}  # 1.75 -> 2, 1.6 -> 2
    out, target = assign_by_volume(frac, np.ones((5, 1, 1), bool))
    # RN takes 0.9 then 0.5 (it covers voxel 2 more than the SN: 0.5 > 0.45); the SN takes
    # 0.6 then its next free voxel 0.4
    assert out[:, 0, 0].tolist() == [SN_L, SN_L, RN_L, RN_L, 0]
    assert target == {SN_L: 2, RN_L: 2}


def test_unavailable_voxels_are_never_taken_and_a_tiny_label_keeps_one_voxel():
    frac = {SN_L: _line([0.9, 0.8, 0.3, 0.1])}
    free = np.array([False, True, True, True]).reshape(4, 1, 1)
    out, _ = assign_by_volume(frac, free)
    assert out[:, 0, 0].tolist() == [0, SN_L, SN_L, 0]  # round(2.1) = 2, voxel 0 not free
    out, target = assign_by_volume({SN_L: _line([0.0, 0.2, 0.1, 0.0])}, np.ones((4, 1, 1), bool))
    assert target[SN_L] == 1 and out[:, 0, 0].tolist() == [0, SN_L, 0, 0]
    out, target = assign_by_volume({SN_L: _line([0.0, 0.0])}, np.ones((2, 1, 1), bool))
    assert target[SN_L] == 0 and not out.any()


def test_scaled_volumes_round_the_atlas_volume_and_keep_a_voxel():
    assert scaled_volumes({SN_L: 212.0, RN_L: 0.0}, 0.9, 8.0) == {SN_L: 24, RN_L: 0}
    assert scaled_volumes({SN_L: 2.0}, 1.0, 8.0) == {SN_L: 1}
    frac = {SN_L: _line([0.9, 0.8, 0.3, 0.1])}
    out, target = assign_by_volume(frac, np.ones((4, 1, 1), bool), {SN_L: 3})
    assert target == {SN_L: 3} and out[:, 0, 0].tolist() == [SN_L, SN_L, SN_L, 0]


def test_affine_quota_follows_a_known_scaling(tmp_path):
    """A template -> subject affine that scales x by 1.25 shrinks the label by that factor."""
    from ironmap.spatial.label_fraction import affine_volume_scale
    from ironmap.spatial.midbrain import label_quota
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    matrix=np.diag([1.25, 1.0, 1.0]))
    path = str(tmp_path / "scale.mat")
    ants.write_transform(tx, path)
    assert affine_volume_scale([str(tmp_path / "w.nii.gz"), path]) == pytest.approx(0.8)
    atlas = np.zeros((20, 20, 20), np.int16)
    atlas[5:15, 5:15, 5:15] = SN_L  # 1000 mm^3
    atlases = [SimpleNamespace(labels=nib.Nifti1Image(atlas, np.eye(4)), template=None)]
    grid = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert label_quota(grid, atlases, [path], {SN_L: 0}, [SN_L], "affine") == {SN_L: 100}
    to_ref = np.diag([1.0, 1.0, 2.0, 1.0])  # the target's world is stretched to the reference
    assert label_quota(grid, atlases, [path], {SN_L: 0}, [SN_L], "affine",
                       target_to_reference=to_ref) == {SN_L: 50}
    assert label_quota(grid, atlases, [path], {SN_L: 0}, [SN_L], "carried") is None
    with pytest.raises(ValueError, match="quota"):
        label_quota(grid, atlases, [path], {SN_L: 0}, [SN_L], "nearest")


def test_core_is_unchanged_by_the_volume_label():
    labels = np.zeros((6, 1, 1), np.int16)
    frac = _line([0.3, 0.45, 0.95, 0.92, 0.6, 0.1])
    plain = fraction_core_labels(labels, {SN_L: frac}, level=0.9, min_voxels=1)
    vol = fraction_core_labels(labels, {SN_L: frac}, level=0.9, min_voxels=1, volume=True)
    assert (plain[0] > 0).sum() == 3 and (vol[0] > 0).sum() == 3  # round(3.32) = 3 voxels
    np.testing.assert_array_equal(plain[1], vol[1])  # the core: 0.95 and 0.92
    # a label thinner than half a voxel everywhere still gets its volume
    thin = _line([0.3, 0.45, 0.4, 0.2, 0.0, 0.0])
    assert not (fraction_core_labels(labels, {SN_L: thin}, level=0.9, min_voxels=1)[0]).any()
    out, core, res = fraction_core_labels(labels, {SN_L: thin}, level=0.9, min_voxels=1,
                                          volume=True)
    assert res.labelled[SN_L] == 1 and out[1, 0, 0] == SN_L and core[1, 0, 0]


def _identity_transform(path) -> str:
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(tx, str(path))
    return str(path)


@pytest.mark.parametrize("quota", ["carried", "affine"])
@pytest.mark.parametrize("shift_mm", [0.0, 0.3, 0.5, 0.8, 1.25])
def test_a_thin_band_moved_by_a_known_subvoxel_shift_keeps_its_volume(tmp_path, shift_mm,
                                                                      quota):
    """Ground truth: a 2 mm thick oblique band of a 1 mm atlas on a 2 mm grid, shifted."""
    from ironmap.spatial.midbrain import refine_midbrain_labels

    shape = (40, 40, 24)
    ijk = np.indices(shape).astype(float)
    # a slab 2 atlas voxels thick across x + 0.5 y (oblique to the grid), limited in y and z
    d = ijk[0] + 0.5 * ijk[1] - 26.0
    band = (d >= 0) & (d < 2.0) & (ijk[1] >= 8) & (ijk[1] < 30) & (ijk[2] >= 6) & (ijk[2] < 18)
    atlas = np.where(band, SN_L, 0).astype(np.int16)
    atlases = [SimpleNamespace(labels=nib.Nifti1Image(atlas, np.eye(4)), template=None)]
    taff = np.diag([2.0, 2.0, 2.0, 1.0])
    taff[:3, 3] = [shift_mm, 0.5 * shift_mm, -0.25]
    target = nib.Nifti1Image(np.zeros((20, 20, 12), np.float32), taff)
    fit = SimpleNamespace(transforms=[_identity_transform(tmp_path / "id.mat")])
    empty = np.zeros(target.shape, np.int16)
    volume = refine_midbrain_labels(target, empty, atlases, fit, [SN_L], {SN_L: 0},
                                    volume=True, quota=quota)
    winner = refine_midbrain_labels(target, empty, atlases, fit, [SN_L], {SN_L: 0})
    true_voxels = band.sum() / 8.0  # 1 mm^3 atlas voxels in 8 mm^3 target voxels
    # the volume is kept to the rounding of the summed fractions (sub-sampling error: a
    # quarter voxel per 2 mm edge over the band's border)
    assert abs((volume == SN_L).sum() - true_voxels) <= 0.02 * true_voxels + 0.5
    # where the band lies relative to the grid decides how much genericLabel's winner loses;
    # the volume rule never does worse and labels inside the winner's voxels plus the next
    assert abs((volume == SN_L).sum() - true_voxels) <= abs((winner == SN_L).sum() - true_voxels)
    assert ((winner == SN_L) & (volume != SN_L)).sum() <= 0.1 * (winner == SN_L).sum()


def test_sn_only_volume_keeps_the_other_labels_exactly_as_the_winner(tmp_path):
    """Ground truth: SN and RN bands shifted by a subvoxel step; RN identical to ``winner``."""
    from ironmap.spatial.midbrain import refine_midbrain_labels

    shape = (40, 40, 24)
    ijk = np.indices(shape).astype(float)
    d = ijk[0] + 0.5 * ijk[1]
    inside = (ijk[1] >= 8) & (ijk[1] < 30) & (ijk[2] >= 6) & (ijk[2] < 18)
    sn = inside & (d >= 20.0) & (d < 22.0)
    rn = inside & (d >= 23.0) & (d < 27.0)
    atlas = np.where(sn, SN_L, np.where(rn, RN_L, 0)).astype(np.int16)
    atlases = [SimpleNamespace(labels=nib.Nifti1Image(atlas, np.eye(4)), template=None)]
    taff = np.diag([2.0, 2.0, 2.0, 1.0])
    taff[:3, 3] = [0.8, 0.4, -0.25]
    target = nib.Nifti1Image(np.zeros((20, 20, 12), np.float32), taff)
    fit = SimpleNamespace(transforms=[_identity_transform(tmp_path / "id.mat")])
    start = np.zeros(target.shape, np.int16)
    start[0, 0, 0] = 3  # another region, never touched
    args = (target, start, atlases, fit, [SN_L, RN_L], {SN_L: 0, RN_L: 0})
    winner = refine_midbrain_labels(*args)
    sn_only = refine_midbrain_labels(*args, volume=[SN_L], quota="affine")
    both = refine_midbrain_labels(*args, volume=True, quota="affine")
    np.testing.assert_array_equal(sn_only == RN_L, winner == RN_L)
    assert sn_only[0, 0, 0] == 3
    # SN gets its atlas volume (identity affine: 1 mm^3 atlas voxels in 8 mm^3 voxels)
    assert abs((sn_only == SN_L).sum() - sn.sum() / 8.0) <= 1
    assert ((sn_only == SN_L) & (winner == RN_L)).sum() == 0
    assert (both == SN_L).sum() == (sn_only == SN_L).sum()


def test_option_reaches_config_record_methods_and_sidecar(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.report.methods import methods_record, sn_core_phrase, transport_phrase
    from ironmap.spatial.atlas import NonlinearFit
    from ironmap.workflows.anatomy import transport_provenance, volume_regions, volume_transport
    from ironmap.workflows.participant_level import RESULT_PARAMETERS
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert "midbrain_transport" in PARTICIPANT_KEYS and "midbrain_transport" in RESULT_PARAMETERS
    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    fit = NonlinearFit(["w", "a"], 0.5)
    regions = {"winner": [], "volume": ["substantia_nigra", "red_nucleus"],
               "volume-sn": ["substantia_nigra"]}
    for given, expected in (([], "volume-sn"), (["--midbrain-transport", "volume"], "volume"),
                            (["--midbrain-transport", "winner"], "winner")):
        cfg = config_from_args(build_parser().parse_args([*base, *given]))
        assert cfg.midbrain_transport == expected
        assert list(volume_regions(cfg)) == regions[expected]
        assert volume_transport(cfg) == (expected != "winner")
        record = methods_record(cfg.to_json())
        assert record["midbrain_transport"] == expected
        phrase = transport_phrase(record)
        assert ("atlas volume scaled" in phrase) == (expected != "winner")
        assert ("red nucleus" in phrase) == (expected != "winner")
        assert ("kept for the red nucleus" in phrase) == (expected == "volume-sn")
        assert ("at least 0.5" in sn_core_phrase(record)) == (expected == "winner")
        entry = transport_provenance(cfg, fit)
        assert (entry is None) == (expected == "winner")
        assert entry is None or entry["Regions"] == regions[expected]
        assert transport_provenance(cfg, None) is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--midbrain-transport", "nearest"])
