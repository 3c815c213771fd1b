"""Regional R2*: erosion, quality exclusion, bilateral merging, composite putamen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap.core.regions.regional_values import (
    COLUMNS,
    EROSION_STRUCTURE,
    erode,
    region_key,
    regional_stats,
)

NAMES = {
    1: "Left-Caudate", 2: "Right-Caudate",
    3: "Left-Putamen-Anterior", 5: "Left-Putamen-Posterior",
    4: "Right-Putamen-Anterior", 6: "Right-Putamen-Posterior",
    20: "Left-Thalamus",
}
TRUE = {1: 20.0, 2: 24.0, 3: 30.0, 5: 34.0, 4: 31.0, 6: 35.0, 20: 18.0}


def box(labels, index, lo, hi):
    labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = index


@pytest.fixture
def scene(rng):
    """Boxes with known R2*; mask borders carry partial-volume values (+15 s^-1)."""
    labels = np.zeros((40, 40, 20), np.int16)
    box(labels, 1, (2, 2, 2), (7, 7, 7))        # 5x5x5 caudate, left
    box(labels, 2, (30, 2, 2), (36, 8, 8))      # 6x6x6 caudate, right
    box(labels, 3, (2, 15, 2), (7, 19, 7))      # putamen parts touching along y: 5x4x5 each
    box(labels, 5, (2, 19, 2), (7, 23, 7))
    box(labels, 4, (30, 15, 2), (35, 19, 7))
    box(labels, 6, (30, 19, 2), (35, 23, 7))
    box(labels, 20, (15, 30, 5), (21, 36, 11))  # 6x6x6 thalamus, left
    r2 = np.full(labels.shape, 10.0)
    for k, v in TRUE.items():
        r2[labels == k] = v
    # partial volume at the edge of each nucleus; the anterior/posterior cut is no tissue edge
    nuclei = [(1,), (2,), (3, 5), (4, 6), (20,)]
    border = (labels > 0) & ~np.logical_or.reduce([erode(np.isin(labels, n)) for n in nuclei])
    r2[border] += 15.0
    r2 += rng.normal(0, 1e-9, r2.shape)
    return r2, labels


def row(df, region, hemisphere):
    sel = df[(df.region == region) & (df.hemisphere == hemisphere)]
    assert len(sel) == 1, (region, hemisphere, df)
    return sel.iloc[0]


def test_structuring_element_is_6_connected_cross():
    assert EROSION_STRUCTURE.sum() == 7 and EROSION_STRUCTURE[1, 1, 1]
    cube = np.zeros((9, 9, 9), bool)
    cube[2:7, 2:7, 2:7] = True
    assert erode(cube).sum() == 27  # 5^3 -> 3^3
    assert erode(cube, 2).sum() == 1
    assert erode(cube, 0).sum() == 125


def test_label_names_map_to_regions():
    assert region_key("Left-Thalamus-Proper") == ("thalamus_proper", "left")
    assert region_key("Caudate_L") == ("caudate", "left")
    assert region_key("rh-putamen") == ("putamen", "right")
    assert region_key("Red Nucleus") == ("red_nucleus", "bilateral")


def test_eroded_means_recover_truth_and_counts(scene):
    r2, labels = scene
    df = regional_stats(r2, labels, NAMES)
    assert list(df.columns) == list(COLUMNS)
    left = row(df, "caudate", "left")
    assert (left.n_voxels_mask, left.n_voxels_eroded, left.n_voxels) == (125, 27, 27)
    assert left.r2star_mean == pytest.approx(20.0, abs=1e-6)
    assert row(df, "caudate", "right").r2star_median == pytest.approx(24.0, abs=1e-6)
    # without erosion the border contaminates the mean
    raw = regional_stats(r2, labels, NAMES, erosion_voxels=0)
    assert row(raw, "caudate", "left").r2star_mean > 25.0
    assert row(raw, "caudate", "left").n_voxels == 125


def test_bilateral_rows_pool_voxels(scene):
    r2, labels = scene
    df = regional_stats(r2, labels, NAMES)
    bil = row(df, "caudate", "bilateral")
    assert bil.n_voxels == 27 + 64
    assert bil.r2star_mean == pytest.approx((27 * 20.0 + 64 * 24.0) / 91, abs=1e-6)
    assert bil.n_voxels_mask == 125 + 216
    # left-only region: no bilateral row; unknown names keep their own name
    thal = df[df.region == "thalamus"]
    assert list(thal.hemisphere) == ["left"]
    assert thal.iloc[0].r2star_mean == pytest.approx(18.0, abs=1e-6)
    assert list(df.region.drop_duplicates()) == [
        "caudate", "putamen", "putamen_anterior", "putamen_posterior", "thalamus"]


def test_composite_putamen_erodes_the_union(scene):
    r2, labels = scene
    df = regional_stats(r2, labels, NAMES)
    put = row(df, "putamen", "left")
    ant, post = row(df, "putamen_anterior", "left"), row(df, "putamen_posterior", "left")
    assert (ant.n_voxels_eroded, post.n_voxels_eroded) == (18, 18)  # 3x2x3 each
    assert ant.r2star_mean == pytest.approx(30.0, abs=1e-6)
    assert put.n_voxels_mask == 200 and put.n_voxels_eroded == 3 * 6 * 3  # union 5x8x5 -> 3x6x3
    # voxels along the anterior/posterior cut are kept in the whole putamen
    expected = (27 * 30.0 + 27 * 34.0) / 54
    assert put.r2star_mean == pytest.approx(expected, abs=1e-6)
    assert row(df, "putamen", "bilateral").n_voxels_eroded == 2 * 54


def test_flags_and_nan_are_excluded(scene):
    r2, labels = scene
    r2 = r2.copy()
    flags = np.zeros(labels.shape, np.uint16)
    flags[3, 3, 3] = 4             # an eroded caudate voxel, flagged
    r2[4, 4, 4] = np.nan           # another eroded caudate voxel, failed fit
    r2[2, 2, 2] = np.nan           # a border voxel: removed by erosion, not counted as flagged
    df = regional_stats(r2, labels, NAMES, flags=flags)
    left = row(df, "caudate", "left")
    assert (left.n_voxels_eroded, left.n_voxels_flagged, left.n_voxels) == (27, 2, 25)
    assert np.isfinite(left.r2star_mean) and left.r2star_mean == pytest.approx(20.0, abs=1e-6)
    assert row(df, "caudate", "bilateral").n_voxels_flagged == 2


def test_empty_label_and_volume(scene):
    r2, labels = scene
    names = dict(NAMES) | {30: "Right-Red-Nucleus"}
    df = regional_stats(r2, labels, names, voxel_sizes=(1.0, 1.0, 2.0))
    rn = row(df, "red_nucleus", "right")
    assert rn.n_voxels == 0 and np.isnan(rn.r2star_mean) and np.isnan(rn.r2star_sd)
    assert row(df, "caudate", "left").volume_cm3 == pytest.approx(125 * 2.0 / 1000)
    with pytest.raises(ValueError, match="shape"):
        regional_stats(r2[:-1], labels, NAMES)
    assert isinstance(df, pd.DataFrame)


def test_warning_flags_keep_voxels_invalid_flags_drop_them():
    """late_echo_floor is a warning (high-iron voxels keep their R2*); fit failures drop."""
    from ironmap.core.r2star.fit_flags import FLAG_FIT_FAILED, FLAG_LATE_ECHO_FLOOR

    r2 = np.full((6, 6, 6), 30.0)
    labels = np.zeros((6, 6, 6), dtype=int)
    labels[1:5, 1:5, 1:5] = 1
    flags = np.zeros((6, 6, 6), dtype=np.uint16)
    flags[2, 2, 2] = FLAG_LATE_ECHO_FLOOR
    flags[3, 3, 3] = FLAG_FIT_FAILED
    r2[2, 2, 2] = 60.0
    df = regional_stats(r2, labels, {1: "Left-Caudate"}, flags=flags, erosion_voxels=0)
    row = df[(df.region == "caudate") & (df.hemisphere == "left")].iloc[0]
    assert row.n_voxels == 63 and row.n_voxels_flagged == 1
    assert row.r2star_mean == pytest.approx((62 * 30.0 + 60.0) / 63)


@pytest.mark.parametrize("options", [
    {}, {"erosion_voxels": 2}, {"erosion_voxels": 0},
    {"erosion_mm": 1.5, "voxel_sizes": (1.0, 1.0, 2.0)},
    {"fallback_mm": 0.5, "min_voxels": 60, "voxel_sizes": (1.0, 1.0, 2.0)},
    {"eroded": True}, {"core": True}, {"flags_bool": True},
])
def test_regional_stats_on_the_labels_box_equals_the_whole_grid(rng, options):
    """The table computed on the labelled voxels' bounding box equals the whole grid's: an
    unnamed label in two opposite corners (ignored by the table) stretches the box over the
    whole grid, the reference; regions touch the grid's border in both."""
    from ironmap.core.regions.regional_values import erode_label_image

    options = dict(options)
    shape = (34, 30, 16)
    labels = np.zeros(shape, np.int16)
    box(labels, 1, (10, 8, 4), (16, 14, 10))
    box(labels, 2, (18, 8, 4), (25, 15, 11))
    box(labels, 3, (10, 15, 0), (15, 19, 6))     # touches the bottom slice
    box(labels, 5, (10, 19, 0), (15, 23, 6))
    box(labels, 4, (18, 15, 3), (23, 19, 9))
    box(labels, 6, (18, 19, 3), (23, 30, 9))     # touches the grid's far y side
    box(labels, 20, (26, 2, 6), (29, 5, 8))      # a thin region (fall-back)
    r2 = rng.normal(25.0, 4.0, shape)
    r2[rng.random(shape) < 0.05] = np.nan
    flags = rng.random(shape) < 0.05 if options.pop("flags_bool", False) else None
    if options.pop("eroded", False):
        options["eroded_labels"] = erode_label_image(labels, NAMES, erosion_voxels=1)
    if options.pop("core", False):
        core = np.zeros(shape, np.int16)
        core[11:14, 9:12, 5:8] = 1
        options["core_labels"] = core
    whole = labels.copy()
    whole[0, 0, 0] = whole[-1, -1, -1] = 99  # not in NAMES
    got = regional_stats(r2, labels, NAMES, flags=flags, **options)
    if "eroded_labels" in options:
        options["eroded_labels"] = options["eroded_labels"].copy()
        options["eroded_labels"][0, 0, 0] = options["eroded_labels"][-1, -1, -1] = 99
    ref = regional_stats(r2, whole, NAMES, flags=flags, **options)
    assert len(got) >= 8
    pd.testing.assert_frame_equal(got, ref, check_exact=True)


@pytest.mark.parametrize("name", ["eroded", "core"])
def test_eroded_or_core_labels_of_another_shape_are_refused(scene, name):
    r2, labels = scene
    other = np.zeros(tuple(n + 1 for n in labels.shape), labels.dtype)
    with pytest.raises(ValueError, match=f"{name} labels shape .* differs from labels shape"):
        regional_stats(r2, labels, NAMES, **{f"{name}_labels": other})
