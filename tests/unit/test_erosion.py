"""Erosion at clinical resolution: mm and native-grid erosion, and no silently empty region."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from ironmap.core.qc.run_flags import QCThresholds, small_region_flags
from ironmap.core.regions.regional_values import (
    erode,
    erode_label_image,
    erode_mm,
    regional_stats,
    small_regions,
)


def test_erode_mm_matches_voxel_erosion_and_respects_anisotropy():
    cube = np.zeros((11, 11, 11), bool)
    cube[2:9, 2:9, 2:9] = True
    # a distance of one voxel edge is the one-step 6-connected erosion
    assert np.array_equal(erode_mm(cube, 2.0, (2.0, 2.0, 2.0)), erode(cube, 1))
    assert np.array_equal(erode_mm(cube, 4.0, (2.0, 2.0, 2.0)), erode(cube, 2))
    # less than a voxel edge removes nothing; anisotropic: only the thin axis is spared
    assert np.array_equal(erode_mm(cube, 1.0, (2.0, 2.0, 2.0)), cube)
    aniso = erode_mm(cube, 1.0, (1.0, 1.0, 3.0))
    assert aniso[2:9, 2:9, 2:9].sum() == 5 * 5 * 7  # x and y eroded by one voxel, z kept
    # the image border counts as outside
    full = np.ones((5, 5, 5), bool)
    assert erode_mm(full, 1.0, (1.0, 1.0, 1.0)).sum() == 27


def test_erode_on_the_bounding_box_equals_erosion_of_the_whole_grid():
    """erode() works on the mask's bounding box; scipy on the whole grid is the reference."""
    from scipy import ndimage

    from ironmap.core.regions.regional_values import EROSION_STRUCTURE

    rng = np.random.default_rng(3)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(3, 16, 3))
        mask = rng.random(shape) < rng.uniform(0.4, 0.95)
        if trial % 2:  # a blob touching the far image borders (no margin to pad there)
            mask[: shape[0] // 2] = False
        for steps in (1, 2):
            ref = ndimage.binary_erosion(mask, structure=EROSION_STRUCTURE, iterations=steps,
                                         border_value=0)
            assert np.array_equal(erode(mask, steps), ref)


def test_native_erosion_keeps_the_putamen_cut():
    labels = np.zeros((12, 20, 12), np.int16)
    labels[2:10, 2:10, 2:10] = 3   # anterior part
    labels[2:10, 10:18, 2:10] = 5  # posterior part, touching along y
    names = {3: "Left-Putamen-Anterior", 5: "Left-Putamen-Posterior"}
    out = erode_label_image(labels, names, erosion_voxels=1)
    assert (out == 3).sum() == 6 * 7 * 6 and (out == 5).sum() == 6 * 7 * 6
    assert out[5, 9, 5] == 3 and out[5, 10, 5] == 5  # voxels on both sides of the cut kept


def test_small_regions_raise_flags_with_counts():
    table = pd.DataFrame({"region": ["caudate", "substantia_nigra", "red_nucleus"],
                          "hemisphere": ["left", "left", "bilateral"],
                          "n_voxels": [120, 3, 0]})
    assert small_regions(table, 10) == {"substantia_nigra left": 3, "red_nucleus bilateral": 0}
    flags = small_region_flags("sub-01", table, QCThresholds(min_region_voxels=10))
    assert [(f.rule, f.item, f.value) for f in flags] == [
        ("small_region", "substantia_nigra left", 3.0),
        ("small_region", "red_nucleus bilateral", 0.0)]
    assert "n/a" in flags[1].message
    fewer = small_region_flags("sub-01", table, QCThresholds(min_region_voxels=2))
    assert [f.item for f in fewer] == ["red_nucleus bilateral"]


AAL3_REGIONS = {75: "Left-Caudate", 76: "Right-Caudate", 79: "Left-Pallidum",
                80: "Right-Pallidum", 161: "Left-Substantia-Nigra", 163: "Left-Substantia-Nigra",
                162: "Right-Substantia-Nigra", 164: "Right-Substantia-Nigra",
                165: "Left-Red-Nucleus", 166: "Right-Red-Nucleus"}
#: R2* (s^-1) inside each nucleus; 20 s^-1 around (white matter)
AAL3_TRUTH = {"caudate": 30.0, "globus_pallidus": 45.0, "substantia_nigra": 40.0,
              "red_nucleus": 35.0}


@pytest.fixture(scope="module")
def clinical_grid():
    """AAL3 (1 mm) nuclei and a 3.4 mm R2* map whose voxels average the 1 mm truth."""
    path = require_shared("atlas_aal3", "tpl-MNI152NLin6Asym_res-01_atlas-AAL3_dseg.nii.gz")
    from ironmap.core.regions.regional_values import region_key

    img = nib.load(path)
    raw = np.asarray(img.dataobj).astype(np.int32)
    # 1 mm labels merged per region and hemisphere (SN pars compacta + reticulata)
    index = {}
    hi = np.zeros(raw.shape, np.int16)
    truth_hi = np.full(raw.shape, 20.0)
    for k, name in AAL3_REGIONS.items():
        new = index.setdefault(name, len(index) + 1)
        hi[raw == k] = new
        truth_hi[raw == k] = AAL3_TRUTH[region_key(name)[0]]
    names = {v: k for k, v in index.items()}
    # 3.4 mm grid over the deep-GM box: every coarse voxel is the mean of 1 mm voxels
    # (partial volume at the nuclei's borders); world-aligned with the 1 mm grid's corner
    f = 3.4
    box = np.array([[40, 142], [60, 162], [20, 104]])  # 1 mm voxel ranges (x, y, z)
    shape = tuple(int((b[1] - b[0]) // f) for b in box)
    coarse_aff = img.affine.copy()
    coarse_aff[:3, :3] = img.affine[:3, :3] * f
    coarse_aff[:3, 3] = img.affine[:3, :3] @ (box[:, 0] + (f - 1) / 2) + img.affine[:3, 3]
    sub = 5  # 5^3 sample points per coarse voxel
    offs = (np.arange(sub) + 0.5) / sub * f - f / 2
    ijk = np.indices(shape).reshape(3, -1).T * f + box[:, 0] + (f - 1) / 2
    r2 = np.zeros(len(ijk))
    for dx in offs:
        for dy in offs:
            for dz in offs:
                p = np.rint(ijk + [dx, dy, dz]).astype(int)
                r2 += truth_hi[p[:, 0], p[:, 1], p[:, 2]]
    r2 = (r2 / sub ** 3).reshape(shape)
    from ironmap.spatial.grid import resample_labels

    target = nib.Nifti1Image(np.zeros(shape, np.float32), coarse_aff)
    hi_img = nib.Nifti1Image(hi, img.affine)
    labels = resample_labels(hi_img, target)
    native = erode_label_image(hi, names, erosion_voxels=1)
    eroded = resample_labels(nib.Nifti1Image(native, img.affine), target)
    return r2, labels, eroded, names, (hi_img, target)


def _auto_eroded(hi_img, target, names):
    """``--erosion-space auto`` for this grid, through the participant level's path."""
    from pathlib import Path

    from ironmap.spatial.grid import resample_labels
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.erosion import native_eroded, resolve

    cfg = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant",
                    erosion_space="auto")
    resolved, entry = resolve(cfg, target.affine)
    native = native_eroded(hi_img, names, resolved)
    return resample_labels(native, target), resolved, entry


def _row(df, region, hemi="bilateral"):
    return df[(df.region == region) & (df.hemisphere == hemi)].iloc[0]


@pytest.mark.realdata
def test_one_voxel_erosion_at_3p4mm_empties_sn_rn_and_is_flagged(clinical_grid):
    r2, labels, _, names, _ = clinical_grid
    df = regional_stats(r2, labels, names, voxel_sizes=(3.4, 3.4, 3.4))
    for region in ("substantia_nigra", "red_nucleus"):
        assert _row(df, region).n_voxels_mask > 0
        assert _row(df, region).n_voxels <= 3
    print(df[["region", "hemisphere", "n_voxels_mask", "n_voxels", "r2star_mean"]])
    small = small_regions(df, 10)
    assert "substantia_nigra bilateral" in small and "red_nucleus bilateral" in small
    assert "caudate bilateral" not in small


@pytest.mark.realdata
def test_native_erosion_keeps_sn_rn_with_near_true_r2star(clinical_grid):
    r2, labels, eroded, names, _ = clinical_grid
    native = regional_stats(r2, labels, names, voxel_sizes=(3.4, 3.4, 3.4),
                            eroded_labels=eroded)
    plain = regional_stats(r2, labels, names, voxel_sizes=(3.4, 3.4, 3.4), erosion_voxels=0)
    for region, truth in AAL3_TRUTH.items():
        row = _row(native, region)
        assert row.n_voxels >= 10, (region, row.n_voxels)
        assert row.n_voxels_mask == _row(plain, region).n_voxels_mask
        # closer to the truth than the uneroded mask, whose border voxels mix in 20 s^-1
        err_native = abs(row.r2star_mean - truth)
        err_plain = abs(_row(plain, region).r2star_mean - truth)
        assert err_native < err_plain, (region, row.r2star_mean, _row(plain, region).r2star_mean)
    print(native[["region", "hemisphere", "n_voxels_mask", "n_voxels", "r2star_mean"]])
    # each hemisphere's SN and RN keep voxels (a few: 3.4^3 mm^3 is 39 mm^3 per voxel)
    for region in ("substantia_nigra", "red_nucleus"):
        for hemi in ("left", "right"):
            assert _row(native, region, hemi).n_voxels >= 5
    assert set(small_regions(native, 5)) == set()


def test_cli_options_map_onto_the_run_config(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args

    args = build_parser().parse_args([str(tmp_path / "bids"), str(tmp_path / "out"),
                                      "participant", "--erosion-mm", "1.5", "--erosion-space",
                                      "native", "--min-region-voxels", "20", "--brain-mask"])
    cfg = config_from_args(args)
    assert (cfg.erosion_mm, cfg.erosion_space, cfg.min_region_voxels, cfg.brain_mask) == \
        (1.5, "native", 20, True)
    default = config_from_args(build_parser().parse_args(
        [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]))
    assert (default.erosion_voxels, default.erosion_mm, default.erosion_space,
            default.min_region_voxels, default.brain_mask) == (1, None, "r2star", 10, False)
    from ironmap.report.methods import erosion_phrase, methods_record

    phrase = erosion_phrase(methods_record(cfg.to_json()))
    assert "1.5 mm" in phrase and "native grid" in phrase
    assert erosion_phrase(methods_record(default.to_json())) == (
        "eroded by 1 voxel (3-D, 6-connected structuring element) on the R2* grid")
    auto = config_from_args(build_parser().parse_args(
        [str(tmp_path / "bids"), str(tmp_path / "out"), "participant", "--erosion-space",
         "auto"]))
    assert auto.erosion_space == "auto"
    assert erosion_phrase(methods_record(auto.to_json())) == (
        "eroded by one voxel (3-D, 6-connected structuring element) on the R2* grid where the "
        "GRE voxels were at most 2 mm along every axis (the seed protocol's grid), and by 1.5 "
        "mm (Euclidean distance between voxel centres) on their native grid before transport "
        "to the R2* grid where the GRE voxels were coarser (chosen from the voxel sizes "
        "alone)")


@pytest.mark.realdata
def test_auto_erosion_at_3p4mm_is_native_1p5mm_near_the_truth(clinical_grid):
    """``auto`` at 3.4 mm: 1.5 mm on the 1 mm atlas grid; SN and RN get values."""
    r2, labels, _, names, (hi_img, target) = clinical_grid
    eroded, resolved, entry = _auto_eroded(hi_img, target, names)
    assert (resolved.erosion_space, resolved.erosion_mm) == ("native", 1.5)
    assert entry["ErosionSpaceVoxelSize"] == pytest.approx([3.4] * 3)
    auto = regional_stats(r2, labels, names, voxel_sizes=(3.4, 3.4, 3.4), eroded_labels=eroded)
    seed = regional_stats(r2, labels, names, voxel_sizes=(3.4, 3.4, 3.4))
    print(auto[["region", "hemisphere", "n_voxels_mask", "n_voxels", "r2star_mean"]])
    for region, truth in AAL3_TRUTH.items():
        row = _row(auto, region)
        assert row.n_voxels > _row(seed, region).n_voxels, region
        assert abs(row.r2star_mean / truth - 1) < 0.10, (region, row.r2star_mean, truth)
