"""Report figures: built from data, checked for content (axes, points per group, images)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _figcheck import n_images, points_by_prefix, svg_groups
from ironmap.core.regions.names import REGIONS
from ironmap.report import figures as F
from ironmap.report import overlays as O

GROUPS = ["HC", "RRMS", "SPMS", "PPMS"]


@pytest.fixture
def cohort(rng) -> pd.DataFrame:
    counts = {"HC": 6, "RRMS": 5, "SPMS": 3, "PPMS": 0}
    rows = []
    n = 0
    for g, k in counts.items():
        for _ in range(k):
            n += 1
            for region in REGIONS[:3]:
                rows.append({"participant_id": f"sub-{n:02d}", "group": g, "region": region,
                             "r2star_mean": rng.normal(25, 2), "r2star_agecorr": rng.normal(25, 2),
                             "age": rng.uniform(20, 60), "site": f"site-0{n % 3 + 1}",
                             "cortical_gm_cm3": rng.normal(600, 40)})
    return pd.DataFrame(rows)


def svg_of(fig) -> bytes:
    return F.render_figure(fig, ("svg",))["svg"]


def test_group_distribution_points_per_group(cohort):
    sub = cohort[cohort["region"] == "putamen"]
    fig = F.group_distribution_figure(sub, "putamen", GROUPS)
    pts = points_by_prefix(svg_of(fig), "points-")
    assert pts == {"HC": 6, "RRMS": 5, "SPMS": 3}  # PPMS has no data: an empty slot
    assert "PPMS" in fig.axes[0].get_title()  # named as missing
    assert [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()] == GROUPS


def test_volume_correlation_panels_lines_and_r(cohort):
    sub = cohort[cohort["region"] == "caudate"]
    fig = F.volume_correlation_figure(sub, "caudate", control_label="HC")
    groups = svg_groups(svg_of(fig))
    assert points_by_prefix(svg_of(fig), "points-") == {"controls": 6, "patients-RRMS": 5,
                                                         "patients-SPMS": 3}
    assert {"fit-controls", "fit-patients", "axes-controls", "axes-patients"} <= set(groups)
    hc = sub[sub["group"] == "HC"]
    r = np.corrcoef(hc["cortical_gm_cm3"], hc["r2star_agecorr"])[0, 1]
    assert f"r = {r:.2f}" in fig.axes[0].get_title()


def test_volume_correlation_without_patients(cohort):
    sub = cohort[(cohort["region"] == "caudate") & (cohort["group"] == "HC")]
    fig = F.volume_correlation_figure(sub, "caudate", control_label="HC")
    assert "no data" in fig.axes[1].get_title()
    assert points_by_prefix(svg_of(fig), "points-") == {"controls": 6}


def test_age_curves_with_fit_and_reference_age(cohort):
    controls = cohort[cohort["group"] == "HC"]
    agefit = pd.DataFrame([{"region": "caudate", "model": "saturation", "a": 10, "b": 0.05,
                            "c": 12}, {"region": "putamen", "model": "linear", "c": 20,
                                       "slope": 0.1}])
    fig = F.age_curves_figure(controls, agefit, 32.0, list(REGIONS[:3]))
    groups = svg_groups(svg_of(fig))
    assert points_by_prefix(svg_of(fig), "points-") == dict.fromkeys(REGIONS[:3], 6)
    assert {"curve-caudate", "curve-putamen"} <= set(groups)
    assert "curve-putamen_anterior" not in groups  # no fit: points only
    assert all(f"refage-{r}" in groups for r in REGIONS[:3])
    line = next(a for a in fig.axes[0].lines if a.get_gid() == "curve-caudate")
    x, y = line.get_data()
    np.testing.assert_allclose(y, 10 * (1 - np.exp(-0.05 * x)) + 12)


def test_site_figure_points_per_site(cohort):
    controls = cohort[cohort["group"] == "HC"]
    fig = F.site_figure(controls, ["caudate"])
    pts = points_by_prefix(svg_of(fig), "points-caudate-")
    expected = controls[controls["region"] == "caudate"]["site"].value_counts().to_dict()
    assert pts == expected


def test_subject_maps_four_panels_and_labels(rng):
    shape = (20, 22, 9)
    e1 = rng.uniform(500, 1000, shape)
    r2 = np.full(shape, 25.0)
    r2[0, 0, :] = np.nan
    labels = np.zeros(shape, int)
    labels[5:8, 5:9, 3:6] = 3
    fig = F.subject_maps_figure(e1, e1 * 0.6, r2, labels, echo_times=[0.00492, 0.0246])
    assert len([a for a in fig.axes if a.images]) == 4
    assert "4.92 ms" in fig.axes[0].get_title(loc="left")
    assert F.best_slice(labels, shape) in (3, 4, 5)
    assert n_images(next(iter(svg_groups(svg_of(fig)).values()))) >= 5  # 4 panels + overlay
    shown = fig.axes[3].images[-1].get_array()
    assert np.ma.count(shown) == 12  # only the labelled voxels of that slice are drawn


def test_edge_overlay_and_montage(rng):
    vol = np.zeros((30, 30, 10))
    vol[8:22, 8:22, 2:8] = 100.0
    fig = F.edge_overlay_figure(vol, vol, n_slices=3)
    assert len(fig.axes) == 3
    edges = fig.axes[0].images[1].get_array()
    assert 0 < np.ma.count(edges) < vol[:, :, 0].size / 2
    fig = F.r2star_montage_figure(vol, mask=vol > 0, n_slices=4)
    assert sum(1 for a in fig.axes if a.images) == 4


def test_missing_data_raise_clear_errors():
    with pytest.raises(F.FigureDataError, match="no r2star_agecorr"):
        F.group_distribution_figure(pd.DataFrame({"group": ["HC"], "r2star_agecorr": [np.nan]}),
                                    "caudate", GROUPS)
    with pytest.raises(F.FigureDataError, match="echo 2: image not available"):
        F.subject_maps_figure(np.ones((4, 4, 4)), None, np.ones((4, 4, 4)), None)
    with pytest.raises(F.FigureDataError, match="grids differ"):
        F.edge_overlay_figure(np.ones((4, 4, 4)), np.ones((4, 5, 4)))


def test_render_is_deterministic(cohort):
    sub = cohort[cohort["region"] == "putamen"]
    a = F.render_figure(F.group_distribution_figure(sub, "putamen", GROUPS))
    b = F.render_figure(F.group_distribution_figure(sub, "putamen", GROUPS))
    assert a["png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert a == b


def test_age_curves_band_and_extrapolation_drawn(cohort):
    controls = cohort[cohort["group"] == "HC"]
    lo, hi = controls["age"].min(), controls["age"].max()
    grid = np.linspace(lo - 5, hi + 10, 30)
    curve = 10 * (1 - np.exp(-0.05 * grid)) + 12
    bands = {"caudate": {"age": grid.tolist(), "low": (curve - 1).tolist(),
                         "high": (curve + 1).tolist()}}
    agefit = pd.DataFrame([{"region": "caudate", "model": "saturation", "a": 10, "b": 0.05,
                            "c": 12}, {"region": "putamen", "model": "linear", "c": 20,
                                       "slope": 0.1}])
    fig = F.age_curves_figure(controls, agefit, 32.0, list(REGIONS[:2]), bands)
    groups = svg_groups(svg_of(fig))
    assert {"band-caudate", "curve-caudate", "curve-caudate-below",
            "curve-caudate-above"} <= set(groups)
    assert "band-putamen" not in groups and "curve-putamen-above" not in groups
    above = next(a for a in fig.axes[0].lines if a.get_gid() == "curve-caudate-above")
    x, y = above.get_data()
    assert x.max() == pytest.approx(hi + 10) and above.get_linestyle() == "--"
    np.testing.assert_allclose(y, 10 * (1 - np.exp(-0.05 * x)) + 12)


def _all_font_sizes(fig) -> list[float]:
    from matplotlib.text import Text

    return [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()
            and t.get_visible()]


def test_every_figure_text_is_at_least_9_points(cohort, rng):
    """At the report's display width (figure inches x 96 CSS px), pt sizes are true sizes."""
    controls = cohort[cohort["group"] == "HC"]
    shape = (20, 22, 9)
    e1 = rng.uniform(500, 1000, shape)
    labels = np.zeros(shape, int)
    labels[5:8, 5:9, 3:6] = 1
    labels[10:13, 5:9, 3:6] = 2
    flagged = np.zeros(shape, bool)
    flagged[2, 2, 4] = True
    figs = [
        F.group_distribution_figure(cohort[cohort["region"] == "putamen"], "putamen", GROUPS,
                                    pvalues={"RRMS": 0.01, "SPMS": 0.4}),
        F.volume_correlation_figure(cohort[cohort["region"] == "caudate"], "caudate"),
        F.age_curves_figure(controls, None, 32.0, list(REGIONS)),
        F.site_figure(controls, list(REGIONS)),
        F.subject_maps_figure(e1, e1 * 0.6, np.full(shape, 25.0), labels,
                              label_names={1: "Left-Caudate", 2: "Right-Caudate"}),
        O.regions_lesions_figure(np.full(shape, 25.0), labels, labels == 2),
        O.region_histograms_figure(rng.normal(25, 3, shape), labels),
        O.flagged_voxels_figure(e1, flagged, np.ones(shape, bool), labels),
        F.r2star_montage_figure(np.full(shape, 25.0)),
        F.edge_overlay_figure(e1, e1),
    ]
    for fig in figs:
        sizes = _all_font_sizes(fig)
        assert sizes and min(sizes) >= F.MIN_FONT_PT, (fig, min(sizes))
        assert F.display_width(fig) <= 1110  # fits the report's 1152 px column unscaled


def test_significance_marked_in_figure_2(cohort):
    sub = cohort[cohort["region"] == "putamen"]
    fig = F.group_distribution_figure(sub, "putamen", GROUPS,
                                      pvalues={"RRMS": 0.0004, "SPMS": 0.2}, alpha=0.05)
    texts = {t.get_gid(): t.get_text() for t in fig.axes[0].texts}
    assert texts == {"p-RRMS": "p < 0.001*", "p-SPMS": "p = 0.200"}
    assert F.significance_text(0.049) == "p = 0.049 *" and F.significance_text(None) == ""


def test_label_colours_distinct_and_legend_matches_drawn(rng):
    shape = (20, 22, 9)
    labels = np.zeros(shape, int)
    for v in range(1, 15):
        labels[v, 2:6, 2:7] = v
    colors = O.label_colors(np.unique(labels))
    assert len(set(colors.values())) == 14 and 0 not in colors
    names = {v: f"region {v}" for v in range(1, 15)}
    fig = O.regions_lesions_figure(np.full(shape, 25.0), labels, None, label_names=names)
    legend = next(lg for lg in fig.legends if lg.get_gid() == "legend-labels")
    shown = [t.get_text() for t in legend.get_texts()]
    assert shown == [names[v] for v in range(1, 15)]
    from matplotlib.colors import to_hex

    patches = [to_hex(h.get_facecolor()) for h in legend.get_patches()]
    assert patches == [colors[v] for v in range(1, 15)]
    # the drawn overlay uses exactly those colours for those values
    img = next(i for i in fig.axes[0].images if i.get_gid().startswith("image-labels"))
    rgba = img.cmap(img.norm(np.arange(1, 15)))
    assert [to_hex(c) for c in rgba] == [colors[v] for v in range(1, 15)]


def test_histograms_use_valid_voxels_of_each_label(rng):
    shape = (10, 10, 4)
    r2 = rng.normal(30, 2, shape)
    labels = np.zeros(shape, int)
    labels[1:4, 1:4, 1:3] = 1
    flags = np.zeros(shape, np.uint16)
    flags[1, 1, 1] = 1
    fig = O.region_histograms_figure(r2, labels, flags, {1: "caudate"}, invalid_bits=1)
    ax = fig.axes[0]
    counts = sum(p.get_data().values.sum() for p in ax.patches)  # one filled step patch
    assert counts == 17  # 18 voxels, one flagged
    assert f"{np.mean(r2[(labels == 1) & (flags == 0)]):.1f}" in ax.get_title()


def test_flagged_map_shows_flagged_voxels_in_the_head():
    shape = (12, 12, 6)
    head = np.zeros(shape, bool)
    head[2:10, 2:10, 1:5] = True
    flagged = np.zeros(shape, bool)
    flagged[3, 3, 2] = flagged[4, 4, 2] = True
    flagged[0, 0, 2] = True  # outside the head: not counted
    fig = O.flagged_voxels_figure(np.where(head, 100.0, 0.0), flagged, head)
    assert "2 flagged voxels in the head" in fig._suptitle.get_text()
    drawn = [i for a in fig.axes for i in a.images if i.get_gid() == "image-flagged-2"]
    assert drawn and np.ma.count(drawn[0].get_array()) == 2
