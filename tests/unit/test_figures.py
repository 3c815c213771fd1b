"""Report figures: built from data, checked for content (axes, points per group, images)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _figcheck import points_by_prefix, svg_groups
from ironmap.core.regions.names import REGIONS
from ironmap.report import figures as F

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


def test_missing_data_raise_clear_errors():
    with pytest.raises(F.FigureDataError, match="no r2star_agecorr"):
        F.group_distribution_figure(pd.DataFrame({"group": ["HC"], "r2star_agecorr": [np.nan]}),
                                    "caudate", GROUPS)


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
    """At the report's display width (figure inches x 96 CSS px), pt sizes are true sizes.

    The participant page's image figures are drawn from arrays with their text in HTML
    (``tests/unit/test_raster.py``); the lesion check is the one matplotlib figure of a
    participant.
    """
    from ironmap.report.lesionqc import lesion_qc_figure

    controls = cohort[cohort["group"] == "HC"]
    shape = (20, 22, 9)
    lesion = np.zeros(shape, bool)
    lesion[5:8, 5:9, 3:6] = True
    figs = [
        F.group_distribution_figure(cohort[cohort["region"] == "putamen"], "putamen", GROUPS,
                                    pvalues={"RRMS": 0.01, "SPMS": 0.4}),
        F.volume_correlation_figure(cohort[cohort["region"] == "caudate"], "caudate"),
        F.age_curves_figure(controls, None, 32.0, list(REGIONS)),
        F.site_figure(controls, list(REGIONS)),
        lesion_qc_figure(rng.uniform(500, 1000, shape), lesion),
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


