"""The millimetre erosion fallback: small regions keep voxels, big ones the seed's erosion."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ironmap.core.regions.erosion_fallback import erode_labels_with_fallback
from ironmap.core.regions.regional_values import erode, regional_stats

SIZES = (1.0, 1.0, 2.0)  # anisotropic: 2 mm between slices
NAMES = {1: "Left-Caudate", 2: "Left-Substantia-Nigra", 3: "Right-Substantia-Nigra",
         4: "Left-Red-Nucleus"}


def _image():
    labels = np.zeros((24, 24, 12), np.int16)
    labels[2:12, 2:12, 2:10] = 1     # big: 10 x 10 x 8
    labels[14:20, 13:21, 5:6] = 2    # one slice thick: the one-voxel erosion empties it
    labels[14:20, 2:10, 5:7] = 3     # two slices thick: emptied too
    labels[2:7, 14:19, 3:6] = 4      # 5 x 5 x 3: one-voxel erosion keeps 3 x 3 x 1 = 9 < 10
    return labels


def _box(shape, *slices):
    out = np.zeros(shape, bool)
    out[slices] = True
    return out


def test_big_region_keeps_the_voxel_erosion_and_thin_ones_the_mm_erosion():
    labels = _image()
    out, used = erode_labels_with_fallback(labels, NAMES, fallback_mm=1.0, min_voxels=10,
                                           voxel_sizes=SIZES)
    assert used == ["substantia_nigra left", "substantia_nigra right", "red_nucleus left"]
    # the big region: exactly its one-voxel erosion (8 x 8 x 6)
    assert np.array_equal(out == 1, erode(labels == 1, 1))
    assert np.array_equal(out == 1, _box(labels.shape, slice(3, 11), slice(3, 11), slice(3, 9)))
    # 1 mm on a 1 x 1 x 2 mm grid: the in-plane border goes, the slice neighbours (2 mm) stay
    assert np.array_equal(out == 2, _box(labels.shape, slice(15, 19), slice(14, 20), slice(5, 6)))
    assert np.array_equal(out == 3, _box(labels.shape, slice(15, 19), slice(3, 9), slice(5, 7)))
    assert np.array_equal(out == 4, _box(labels.shape, slice(3, 6), slice(15, 18), slice(3, 6)))
    assert (out == 2).sum() == 24 and (out == 3).sum() == 48 and (out == 4).sum() == 27
    # a lower minimum keeps the red nucleus's one-voxel erosion (9 voxels)
    out9, used9 = erode_labels_with_fallback(labels, NAMES, fallback_mm=1.0, min_voxels=9,
                                             voxel_sizes=SIZES)
    assert "red_nucleus left" not in used9
    assert np.array_equal(out9 == 4, _box(labels.shape, slice(3, 6), slice(15, 18), slice(4, 5)))


def test_isotropic_grid_one_mm_fallback_equals_the_voxel_erosion():
    labels = _image()
    out, used = erode_labels_with_fallback(labels, NAMES, fallback_mm=1.0, min_voxels=10,
                                           voxel_sizes=(1.0, 1.0, 1.0))
    assert len(used) == 3
    assert not np.any(np.isin(out, [2, 3]))  # 1 mm at 1 mm voxels is the one-voxel erosion
    assert (out == 4).sum() == 9


def test_regional_stats_with_fallback():
    labels = _image()
    r2 = np.where(labels > 0, 10.0 * labels, 20.0).astype(float)
    # a gradient inside the big region: its mean depends on which voxels are kept
    r2[labels == 1] += np.indices(labels.shape)[0][labels == 1]
    plain = regional_stats(r2, labels, NAMES, voxel_sizes=SIZES)
    fb = regional_stats(r2, labels, NAMES, voxel_sizes=SIZES, fallback_mm=1.0, min_voxels=10)
    big = (plain.region == "caudate")
    pd.testing.assert_frame_equal(fb[big].reset_index(drop=True),
                                  plain[big].reset_index(drop=True))
    assert float(fb[big].r2star_mean.iloc[0]) == pytest.approx(10 + np.mean(np.arange(3, 11)))

    def row(df, region, hemi):
        return df[(df.region == region) & (df.hemisphere == hemi)].iloc[0]

    assert row(plain, "substantia_nigra", "left").n_voxels == 0
    assert row(fb, "substantia_nigra", "left").n_voxels == 24
    assert row(fb, "substantia_nigra", "right").n_voxels == 48
    assert row(fb, "substantia_nigra", "bilateral").n_voxels == 72
    assert row(fb, "substantia_nigra", "right").r2star_mean == pytest.approx(30.0)
    assert row(fb, "red_nucleus", "left").n_voxels == 27
    # off (the default): today's table
    pd.testing.assert_frame_equal(regional_stats(r2, labels, NAMES, voxel_sizes=SIZES,
                                                 fallback_mm=None), plain)


def test_composite_putamen_follows_its_parts():
    labels = np.zeros((12, 14, 8), np.int16)
    labels[2:5, 2:12, 2:5] = 5    # anterior part 3 x 10 x 3: one voxel keeps 1 x 8 x 1 = 8
    labels[5:8, 2:12, 2:5] = 6    # posterior part, touching along x
    names = {5: "Left-Putamen-Anterior", 6: "Left-Putamen-Posterior"}
    out, used = erode_labels_with_fallback(labels, names, fallback_mm=1.0, min_voxels=10,
                                           voxel_sizes=SIZES)
    assert used == ["putamen_anterior left", "putamen_posterior left", "putamen left"]
    # each part eroded by 1 mm on its own: in-plane border (cut included) removed, z kept
    assert (out == 5).sum() == 1 * 8 * 3 and (out == 6).sum() == 1 * 8 * 3
    r2 = np.where(labels > 0, 40.0, 20.0)
    plain = regional_stats(r2, labels, names, voxel_sizes=SIZES)
    table = regional_stats(r2, labels, names, voxel_sizes=SIZES, fallback_mm=1.0, min_voxels=10)

    def row(df, region):
        return df[(df.region == region) & (df.hemisphere == "left")].iloc[0]

    # the whole putamen keeps 4 x 8 x 1 = 32 voxels after one voxel, yet follows its parts:
    # eroded by 1 mm as one body (4 x 8 x 3)
    assert row(plain, "putamen").n_voxels == 32
    assert row(table, "putamen").n_voxels == 4 * 8 * 3
    assert row(table, "putamen_anterior").n_voxels == 24


def test_fallback_needs_voxel_sizes():
    with pytest.raises(ValueError, match="voxel sizes"):
        erode_labels_with_fallback(_image(), NAMES, fallback_mm=1.0, min_voxels=10,
                                   voxel_sizes=None)


def _cfg(tmp_path, **kw):
    from ironmap.workflows.config import RunConfig

    return RunConfig(bids_dir=tmp_path, output_dir=tmp_path / "out",
                     analysis_level="participant", **kw)


def test_workflow_writes_the_fallback_and_names_its_regions(tmp_path):
    from ironmap.workflows import erosion

    affine = np.diag([*SIZES, 1.0])
    labels = _image()
    off = _cfg(tmp_path)
    assert erosion.fallback_eroded(labels, NAMES, None, affine, off) == (None, [])
    assert "ErosionFallbackDistance" not in erosion.erosion_sidecar(off)
    assert "fallback_mm" not in erosion.stats_options(off, None)
    on = _cfg(tmp_path, erosion_fallback_mm=1.0)
    out, used = erosion.fallback_eroded(labels, NAMES, None, affine, on, "sub-01")
    assert (out == 2).sum() == 24 and used[0] == "substantia_nigra left"
    assert erosion.stats_options(on, None) == {"erosion_voxels": 1, "erosion_mm": None,
                                               "fallback_mm": 1.0, "min_voxels": 10}
    side = erosion.erosion_sidecar(on, used)
    assert side["ErosionFallbackDistance"] == 1.0 and side["ErosionFallbackRegions"] == used
    assert side["ErosionVoxels"] == 1


@pytest.mark.parametrize("kw, message", [
    ({"erosion_mm": 1.0}, "--erosion-mm"),
    ({"erosion_space": "native"}, "native"),
    ({"erosion_voxels": 0}, "--erosion 0"),
    ({"erosion_fallback_mm": -1.0}, ">= 0"),
])
def test_fallback_refuses_options_it_cannot_complete(tmp_path, kw, message):
    from ironmap.workflows import erosion

    cfg = _cfg(tmp_path, **{"erosion_fallback_mm": 1.0, **kw})
    assert message in erosion.option_problem(cfg)
    with pytest.raises(ValueError, match=message):
        erosion.erosion_settings(cfg)


def test_cli_config_provenance_and_methods(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.report.methods import erosion_phrase, methods_record
    from ironmap.workflows.participant_level import RESULT_PARAMETERS
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    base = [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    cfg = config_from_args(build_parser().parse_args([*base, "--erosion-fallback-mm", "1"]))
    default = config_from_args(build_parser().parse_args(base))
    assert cfg.erosion_fallback_mm == 1.0 and default.erosion_fallback_mm is None
    assert "erosion_fallback_mm" in PARTICIPANT_KEYS
    assert "erosion_fallback_mm" in RESULT_PARAMETERS
    assert erosion_phrase(methods_record(cfg.to_json())) == (
        "eroded by 1 voxel (3-D, 6-connected structuring element) on the R2* grid, except that "
        "a region (per hemisphere) this erosion would have left with fewer than 10 voxels was "
        "eroded by 1 mm (Euclidean distance between voxel centres) instead")
    assert "except" not in erosion_phrase(methods_record(default.to_json()))


@pytest.mark.parametrize("kw, message", [
    ({"erosion_mm": 1.0}, "not with --erosion-mm"),
    ({"erosion_space": "native"}, "not with --erosion-space native"),
    ({"erosion_voxels": 0}, "not with --erosion 0"),
    ({"erosion_fallback_mm": -1.0}, "must be >= 0 mm"),
])
def test_level_refuses_the_fallback_at_start_up_before_any_participant(tmp_path, caplog, kw,
                                                                        message):
    """Through the Python API too: exit 2 before any participant is processed or written."""
    from test_anatomy import _tiny_bids

    from ironmap.workflows.participant_level import run_participant_level

    cfg = _cfg(tmp_path, **{"erosion_fallback_mm": 1.0, **kw})
    cfg = dataclasses.replace(cfg, bids_dir=_tiny_bids(tmp_path))
    with caplog.at_level("ERROR"):
        assert run_participant_level(cfg) == 2
    assert "--erosion-fallback-mm" in caplog.text and message in caplog.text
    assert not (tmp_path / "out").exists()  # no participant, log, config or manifest


def test_cli_refuses_the_fallback_with_erosion_mm_before_any_work(tmp_path, caplog):
    """The CLI gets the level's start-up refusal: OUTPUT_DIR holds nothing but the lock."""
    from test_anatomy import _tiny_bids

    from ironmap.cli.bidsapp import build_parser, run
    from ironmap.io.lock import LOCK_NAME

    out = tmp_path / "out"
    args = build_parser().parse_args([str(_tiny_bids(tmp_path)), str(out), "participant",
                                      "--erosion-fallback-mm", "1", "--erosion-mm", "1"])
    with caplog.at_level("ERROR"):
        assert run(args) == 2
    assert "--erosion-fallback-mm" in caplog.text and "--erosion-mm" in caplog.text
    assert {p.name for p in out.iterdir()} <= {LOCK_NAME}


def test_every_recorded_setting_that_changes_results_makes_a_rerun_recompute():
    """A rerun into the same OUTPUT_DIR with another value of a recorded participant-level
    setting must not reuse the participant's old results: each such setting is one of the
    parameters compared against the participant's manifest (the masks are compared as hashed
    input files instead)."""
    import dataclasses

    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant_level import RESULT_PARAMETERS, subject_parameters
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert set(PARTICIPANT_KEYS) - set(RESULT_PARAMETERS) == {"masks", "longitudinal_template"}
    base = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant")
    for name, value in (("nuclei_refine", "none"), ("midbrain_refine", "none"),
                        ("registration_check_mm", 0.0), ("erosion_fallback_mm", 1.0),
                        ("sn_core", None)):
        other = dataclasses.replace(base, **{name: value})
        assert subject_parameters(other) != subject_parameters(base), name
