"""The automatic SN valued over its partial-volume core (``--sn-core``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ironmap.core.regions.fraction_core import fraction_core_labels
from ironmap.core.regions.regional_values import regional_stats
from ironmap.spatial.anatomy import NAWM_INDEX, output_index, output_name

SN_L = output_index("substantia_nigra", "left")
SN_R = output_index("substantia_nigra", "right")
RN_L = output_index("red_nucleus", "left")


def test_core_keeps_the_voxels_covered_at_least_the_level_and_only_free_ones():
    labels = np.zeros((6, 1, 1), np.int16)
    labels[:, 0, 0] = [0, SN_L, SN_L, RN_L, NAWM_INDEX, 0]
    frac = np.array([0.45, 0.5, 0.95, 0.99, 0.7, 0.9], float).reshape(6, 1, 1)
    out, core, res = fraction_core_labels(labels, {SN_L: frac}, level=0.9, min_voxels=1,
                                          free=(0, NAWM_INDEX))
    # 0.45 stays background, the red nucleus keeps its voxel, NAWM and background are taken
    assert out[:, 0, 0].tolist() == [0, SN_L, SN_L, RN_L, SN_L, SN_L]
    assert core[:, 0, 0].tolist() == [False, False, True, False, False, True]
    assert res.labelled[SN_L] == 4 and res.core[SN_L] == 2 and res.level[SN_L] == 0.9


def test_a_small_core_is_completed_by_the_highest_fractions_ties_kept():
    labels = np.zeros((8, 1, 1), np.int16)
    frac = np.array([0.6, 0.7, 0.7, 0.8, 0.85, 0.2, 0.5, 0.0]).reshape(8, 1, 1)
    out, core, res = fraction_core_labels(labels, {SN_L: frac}, level=0.9, min_voxels=3)
    assert (out > 0).sum() == 6  # fractions >= 0.5
    # 0.85, 0.8 and the two tied 0.7: four voxels, the completion level 0.7
    assert np.flatnonzero(core[:, 0, 0]).tolist() == [1, 2, 3, 4]
    assert res.level[SN_L] == pytest.approx(0.7) and res.core[SN_L] == 4
    # a label with fewer voxels than the minimum keeps them all: never emptied
    _, core, res = fraction_core_labels(labels, {SN_L: frac}, level=0.9, min_voxels=50)
    assert res.core[SN_L] == 6 and core.sum() == 6


def test_level_outside_label_level_and_one_is_refused():
    labels = np.zeros((2, 1, 1), np.int16)
    frac = {SN_L: np.ones((2, 1, 1))}
    for level in (0.3, 1.2):
        with pytest.raises(ValueError, match="core level"):
            fraction_core_labels(labels, frac, level=level, min_voxels=1)


def test_regional_stats_values_the_core_and_leaves_other_regions_alone():
    rng = np.random.default_rng(0)
    r2 = rng.normal(30.0, 1.0, (12, 12, 6))
    labels = np.zeros(r2.shape, np.int16)
    labels[1:5, 1:5, 1:5] = RN_L
    labels[6:11, 6:11, 1:5] = SN_L
    core = np.zeros_like(labels)
    core[7:9, 7:9, 2:3] = SN_L
    names = {RN_L: output_name(RN_L), SN_L: output_name(SN_L)}
    plain = regional_stats(r2, labels, names, erosion_voxels=1)
    cored = regional_stats(r2, labels, names, erosion_voxels=1, core_labels=core)
    rn = (plain.region == "red_nucleus")
    assert plain[rn].equals(cored[rn])
    row = cored[(cored.region == "substantia_nigra") & (cored.hemisphere == "left")].iloc[0]
    assert row.n_voxels == 4
    assert row.r2star_mean == pytest.approx(r2[7:9, 7:9, 2].mean())


def _identity_transform(path) -> str:
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(tx, str(path))
    return str(path)


def test_label_fractions_equal_the_linear_indicator_averaged_over_each_voxel(tmp_path):
    """Ground truth by separability: a box label's linear interpolant is a product of 1-D ones."""
    from ironmap.spatial.label_fraction import label_fractions, subsample_factors

    # atlas: 1 mm grid, label on voxel centres 10..19 (x), 8..13 (y), 5..9 (z)
    atlas = np.zeros((30, 24, 16), np.int16)
    lo, hi = np.array([10, 8, 5]), np.array([19, 13, 9])
    atlas[10:20, 8:14, 5:10] = SN_L
    atlas_img = nib.Nifti1Image(atlas, np.eye(4))
    # target: 1 x 1 x 2 mm, offset by a quarter voxel; its world is shifted by t to the
    # reference (where the identity transforms end)
    t = np.array([0.3, -0.2, 0.5])
    taff = np.diag([1.0, 1.0, 2.0, 1.0])
    taff[:3, 3] = [0.25, 0.25, 0.0]
    target = nib.Nifti1Image(np.zeros((28, 22, 8), np.float32), taff)
    to_ref = np.eye(4)
    to_ref[:3, 3] = t
    near = np.zeros(target.shape, np.int16)
    near[10:19, 8:13, 3:5] = SN_L
    frac = label_fractions(target, to_ref, atlas_img, [SN_L, SN_R],
                           [_identity_transform(tmp_path / "id.mat")], near, margin=6)[SN_L]
    f = subsample_factors([1.0, 1.0, 2.0])
    assert f.tolist() == [2, 2, 4]

    def axis_mean(a):  # mean over a voxel's sub-samples of the 1-D linear interpolant
        n = target.shape[a]
        centres = taff[a, a] * np.arange(n) + taff[a, 3] + t[a]
        offs = taff[a, a] * ((np.arange(f[a]) + 0.5) / f[a] - 0.5)
        grid = np.arange(atlas.shape[a], dtype=float)
        ind = ((grid >= lo[a]) & (grid <= hi[a])).astype(float)
        return np.interp(centres[:, None] + offs[None, :], grid, ind).mean(axis=1)

    expected = np.einsum("i,j,k->ijk", axis_mean(0), axis_mean(1), axis_mean(2))
    box = (slice(4, 24), slice(2, 18), slice(0, 8))  # inside the computed box
    np.testing.assert_allclose(frac[box], expected[box], atol=1e-4)
    assert frac.max() == pytest.approx(1.0, abs=1e-5)
    # the volume is kept: the fractions sum to the label's volume in target voxels
    assert frac.sum() * 2.0 == pytest.approx(atlas.astype(bool).sum(), rel=1e-3)


def test_option_reaches_config_record_methods_and_is_checked(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.report.methods import methods_record, sn_core_phrase
    from ironmap.workflows.provenance import PARTICIPANT_KEYS
    from ironmap.workflows.sn_core import option_problem

    assert "sn_core" in PARTICIPANT_KEYS
    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    cfg = config_from_args(build_parser().parse_args(base))  # the default for automatic labels
    assert cfg.sn_core == 0.9 and option_problem(cfg) is None
    assert "at least 0.9 of" in sn_core_phrase(methods_record(cfg.to_json()))
    for off in ("none", "off"):
        cfg = config_from_args(build_parser().parse_args([*base, "--sn-core", off]))
        assert cfg.sn_core is None and option_problem(cfg) is None
        assert sn_core_phrase(methods_record(cfg.to_json())) == ""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--sn-core", "high"])
    cfg = config_from_args(build_parser().parse_args([*base, "--sn-core", "0.3"]))
    assert "between 0.5 and 1" in option_problem(cfg)


def test_level_refuses_a_bad_level_before_any_participant(tmp_path):
    from ironmap.cli.main import main

    out = tmp_path / "out"
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    assert main([str(bids), str(out), "participant", "--sn-core", "1.5"]) == 2
    assert not list(out.glob("sub-*"))


def test_written_eroded_image_holds_the_core():
    from ironmap.workflows.sn_core import with_core

    eroded = np.array([[[0, SN_L, RN_L, SN_L]]], np.int16)
    core = np.array([[[SN_L, 0, 0, 0]]], np.int16)
    assert with_core(eroded, core).tolist() == [[[SN_L, 0, RN_L, 0]]]
    assert with_core(eroded, None) is eroded


def test_fallback_list_leaves_out_the_cored_labels():
    from ironmap.workflows.sn_core import uncored

    names = {SN_L: output_name(SN_L), RN_L: output_name(RN_L)}
    used = ["substantia_nigra left", "red_nucleus left"]
    core = np.array([[[SN_L, 0]]], np.int16)
    assert uncored(used, core, names) == ["red_nucleus left"]
    assert uncored(used, None, names) == used


def test_workflow_fractions_use_the_local_transforms_and_apply_labels_the_core(tmp_path):
    """The level's two steps on a known scene: fractions through the fit's transforms (the
    local ones when present), then the SN relabelled from them with its core."""
    import dataclasses
    from pathlib import Path

    from ironmap.spatial.anatomy import RelabelledAtlas
    from ironmap.spatial.atlas import NonlinearFit
    from ironmap.spatial.midbrain import LocalFit
    from ironmap.workflows import sn_core
    from ironmap.workflows.config import RunConfig

    atlas = np.zeros((30, 24, 16), np.int16)
    atlas[10:20, 8:14, 5:10] = SN_L
    atlas[10:20, 15:19, 5:10] = RN_L
    talairach = RelabelledAtlas("t", nib.Nifti1Image(atlas, np.eye(4)),
                                {SN_L: 3, RN_L: 3}, None)
    ident = _identity_transform(tmp_path / "id.mat")
    # a transform that would move the label far away: only used when no local fit exists
    from ironmap.spatial.registration import import_ants

    ants = import_ants()
    far = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                     translation=(8.0, 0.0, 0.0))
    ants.write_transform(far, str(tmp_path / "far.mat"))
    fit = NonlinearFit([str(tmp_path / "far.mat")], 0.5)
    fit.local = LocalFit([ident], np.zeros(3), np.ones(3), 0.8, 0.9)
    reference = nib.Nifti1Image(np.zeros(atlas.shape, np.float32), np.eye(4))
    r2img = nib.Nifti1Image(np.zeros((30, 24, 8), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    on_ref = atlas.copy()
    frac = sn_core.fractions(r2img, np.eye(4), on_ref, reference, [talairach], fit)
    assert set(frac) == {SN_L}  # the atlas gives no right SN
    # through the local (identity) transforms, not the far global one
    assert frac[SN_L][12:18, 9:13, 3:4].min() == pytest.approx(1.0, abs=1e-4)
    labels = np.zeros(r2img.shape, np.int16)
    labels[10:20, 8:14, 2:5] = SN_L
    labels[0:2, 0:2, 0:2] = NAWM_INDEX
    names = {SN_L: output_name(SN_L), NAWM_INDEX: "NAWM"}
    cfg = dataclasses.replace(RunConfig(Path("b"), Path("o"), "participant"), sn_core=0.9)
    out, core, entry = sn_core.apply(labels, names, frac, cfg, "sub-x")
    assert entry["Applied"] and entry["Level"] == 0.9
    assert (core > 0).sum() == entry["Labels"][output_name(SN_L)]["CoreVoxels"] >= 10
    assert np.all(frac[SN_L][core > 0] >= 0.9) and np.all(out[core > 0] == SN_L)
    assert np.all(frac[SN_L][out == SN_L] >= 0.5)
    # SN moved on the R2* map: no core, said so
    _, none, entry = sn_core.apply(labels, names, frac, cfg, "sub-x", moved=True)
    assert none is None and entry["Applied"] is False
    # off: nothing changes
    off = dataclasses.replace(cfg, sn_core=None)
    same, none, entry = sn_core.apply(labels, names, frac, off, "sub-x")
    assert same is labels and none is None and entry is None
    # --midbrain-transport volume: the label holds the atlas volume (300 mm^3 of 1 x 1 x 2 mm
    # voxels; the template affine is a translation), the core is the same
    quota = sn_core.volumes(r2img, np.eye(4), [talairach], fit)
    assert quota == {SN_L: 150}
    vol, vcore, ventry = sn_core.apply(labels, names, frac, cfg, "sub-x", volume=True,
                                       volumes=quota)
    assert ventry["LabelLevel"] == "volume" and (vol == SN_L).sum() == 150
    np.testing.assert_array_equal(vcore > 0, core > 0)
