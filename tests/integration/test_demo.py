"""``ironmap demo`` end to end: simulate -> participant -> group -> report, run once per session.

Every figure of the demo report is checked for content against the tables it was drawn from
(points per group, per site, per region; images per panel), and the report is opened in
headless Chromium.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _figcheck import png_panel_ids, points_by_prefix, svg_groups
from ironmap.cli.main import main
from ironmap.io.tables import read_tsv

# the demo runs once per session; on a loaded 2-core machine it can take many minutes
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

#: small but complete: every phenotype present, controls enough for an age model
DEMO_COUNTS = {"HC": 4, "RRMS": 2, "SPMS": 1, "PPMS": 1}


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    from ironmap.workflows.demo import run_demo_stages

    out = tmp_path_factory.mktemp("demo")
    result = run_demo_stages(out, subjects_per_group=DEMO_COUNTS, nprocs=2, progress=False,
                             volumes=True)  # volumes: Figure 3 and its checks
    return result


@pytest.fixture(scope="session")
def cohort(demo) -> pd.DataFrame:
    """Bilateral regional rows joined with participants.tsv (group, site, age)."""
    deriv = demo.out_dir / "ironmap"
    reg = read_tsv(deriv / "group" / "regional_r2star.tsv")
    reg = reg[reg["hemisphere"] == "bilateral"]
    parts = read_tsv(demo.out_dir / "cohort" / "bids" / "participants.tsv")
    return reg.merge(parts[["participant_id", "group", "site", "age"]], on="participant_id")


def test_demo_stages_and_outputs(demo):
    assert list(demo.timings) == ["simulate", "participant level", "group level",
                                  "automatic anatomy check", "report"]
    assert demo.exit_codes == {"participant": 0, "group": 0, "automatic anatomy check": 0}
    deriv = demo.out_dir / "ironmap"
    assert demo.report == deriv / "report.html" and demo.report.exists()
    n = sum(DEMO_COUNTS.values())
    assert len(list(deriv.glob("sub-*.html"))) == n
    qc = read_tsv(deriv / "group" / "qc.tsv")
    assert len(qc) == n and qc["snr_echo1"].gt(5).all()
    assert qc["registration_nmi_flair"].between(1.0, 2.0).all()
    timings = read_tsv(demo.out_dir / "timings.tsv")
    assert list(timings["stage"]) == list(demo.timings)


def test_report_reuses_the_participant_levels_pages(demo):
    """Each QC page is made by the participant level (images in memory), not by the report."""
    deriv = demo.out_dir / "ironmap"
    group_done = (deriv / "group" / "stats.json").stat().st_mtime_ns
    pages = sorted(deriv.glob("sub-*.html"))
    assert len(pages) == sum(DEMO_COUNTS.values())
    assert all(p.stat().st_mtime_ns < group_done for p in pages)  # made before the group level


def test_figure2_points_per_group(demo, cohort):
    from ironmap.report.figures import region_title

    figs = demo.out_dir / "ironmap" / "group" / "figures"
    text = demo.report.read_text(encoding="utf-8")
    regions = sorted(cohort["region"].unique())
    assert len(regions) >= 7
    complete = 0
    for region in regions:
        d = cohort[(cohort["region"] == region) & np.isfinite(cohort["r2star_agecorr"])]
        expected = d["group"].value_counts().to_dict()
        svg = figs / f"region-{region}_desc-groups_r2star.svg"
        if not expected:  # no age-corrected value at all: the page says so
            assert not svg.exists()
            assert f"Figure 2 · {region_title(region)}: figure not available" in text
            continue
        assert points_by_prefix(svg, "points-") == expected, region
        complete += set(expected) == set(DEMO_COUNTS)
    assert complete >= 4  # every phenotype drawn in most regions


def test_age_curves_and_site_plot(demo, cohort):
    figs = demo.out_dir / "ironmap" / "group" / "figures"
    hc = cohort[cohort["group"] == "HC"]
    pts = points_by_prefix(figs / "desc-agecurves_r2star.svg", "points-")
    groups = svg_groups(figs / "desc-agecurves_r2star.svg")
    for region, d in hc.groupby("region"):
        assert pts[region] == int(np.isfinite(d["r2star_mean"]).sum())
        assert f"refage-{region}" in groups
    agefit = read_tsv(demo.out_dir / "ironmap" / "group" / "agefit.tsv")
    fitted = agefit[(agefit["hemisphere"] == "bilateral") & (agefit["site"] == "all")
                    & agefit["model"].isin(["saturation", "linear"])]
    assert len(fitted) >= 1
    assert all(f"curve-{r}" in groups for r in fitted["region"])
    sites = points_by_prefix(figs / "desc-sites_r2star.svg", "points-")
    for (region, site), d in hc.groupby(["region", "site"]):
        assert sites.get(f"{region}-{site}", 0) == int(np.isfinite(d["r2star_mean"]).sum())


def test_figure3_or_its_absence_is_reported(demo, cohort):
    deriv = demo.out_dir / "ironmap"
    figs = deriv / "group" / "figures"
    text = demo.report.read_text(encoding="utf-8")
    if not (deriv / "group" / "volumes.tsv").exists():
        assert "Figure 3 and volume correlations are not available" in text
        assert not list(figs.glob("*corticalgm*"))
        return
    from ironmap.report.figures import region_title

    vols = read_tsv(deriv / "group" / "volumes.tsv")
    d = cohort.merge(vols[["participant_id", "cortical_gm_cm3"]], on="participant_id")
    drawn = 0
    for region, dr in d.groupby("region"):
        ok = dr[np.isfinite(dr["r2star_agecorr"]) & np.isfinite(dr["cortical_gm_cm3"])]
        svg = figs / f"region-{region}_desc-corticalgm_r2star.svg"
        if ok.empty:  # nothing to draw: the page says so
            assert f"Figure 3 · {region_title(region)}: figure not available" in text
            continue
        got = points_by_prefix(svg, "points-")
        assert got.get("controls", 0) == int((ok["group"] == "HC").sum())
        patients = sum(v for k, v in got.items() if k.startswith("patients-"))
        assert patients == int((ok["group"] != "HC").sum())  # coloured by group
        groups = svg_groups(svg)
        assert ("fit-controls" in groups) == (got.get("controls", 0) >= 3)  # line needs n >= 3
        drawn += 1
    assert drawn >= 6


def test_subject_figures_have_content(demo):
    deriv = demo.out_dir / "ironmap"
    for page in sorted(deriv.glob("sub-*.html"))[:3]:
        figs, sub = deriv / page.stem / "figures", page.stem
        # array-drawn figures: one PNG each, its panels named in its layout chunk
        ids = png_panel_ids(figs / f"{sub}_desc-fig1_R2starmap.png")
        assert ids == ["image-echo1", "image-echo2", "image-r2star", "image-labels"]
        ids = png_panel_ids(figs / f"{sub}_desc-montage_R2starmap.png")
        assert sum(i.startswith("image-slice-") for i in ids) == 8
        for name, layer in (("flairedges_T1w", "edges"), ("megreedges_T1w", "edges"),
                            ("overlay_R2starmap", "labels"), ("flags_R2starmap", "flagged")):
            ids = png_panel_ids(figs / f"{sub}_desc-{name}.png")
            assert sum(i.startswith(f"image-{layer}-") for i in ids) >= 3, name
        regions = read_tsv(deriv / sub / "anat" / f"{sub}_desc-regions_r2star.tsv")
        hists = [k for k in svg_groups(figs / f"{sub}_desc-histograms_R2starmap.svg")
                 if k.startswith("hist-")]
        assert len(hists) == 2 * regions["region"].nunique() - 2  # L/R labels; putamen: parts
        text = page.read_text(encoding="utf-8")
        assert "figure not available" not in text
        assert "percentiles of R2* in" in text and 'id="iv-data"' in text


def test_demo_methods_match_stats_json(demo):
    """The demo's methods text is the text of the record in its stats.json, consistent with it
    sentence by sentence, and the record matches what ran."""
    import json

    from test_methods import check_consistent, text_of

    deriv = demo.out_dir / "ironmap"
    stats = json.loads((deriv / "group" / "stats.json").read_text())
    record = stats["methods"]
    assert record["fdr"]["applied"] is stats["settings"]["fdr"] is False
    assert record["masks_source"] == "rater" and record["lesions_source"] == "rater"
    check_consistent(record, text_of(record))
    page = demo.report.read_text(encoding="utf-8")
    assert "No correction for multiple comparisons across regions was applied" in page
    assert "Benjamini-Hochberg false discovery rate" not in page.split('id="methods"')[1] \
        .split("References")[0]


def test_demo_report_in_headless_chromium(demo, tmp_path):
    from test_report import assert_numbers_match_tsv

    from _chromium import REPORT_PROBES, VIEWER_PROBE, open_page, screenshot_is_blank

    res = open_page(demo.report, REPORT_PROBES, tmp_path)
    (tmp_path / "demo-report.png").write_bytes(res.screenshot_png)
    assert not screenshot_is_blank(res.screenshot_png)
    assert res.errors == [] and res.values["broken_images"] == []
    assert res.values["shrunk_figures"] == []
    n_png = len(list((demo.out_dir / "ironmap" / "group" / "figures").glob("*.png")))
    assert res.values["n_images"] == n_png >= 7 + 2  # Figure 2 per region, ages, sites
    group = demo.out_dir / "ironmap" / "group"
    assert assert_numbers_match_tsv(res.values["numbers"]["table2"],
                                    group / "table2.tsv") >= 8 * 5
    assert assert_numbers_match_tsv(res.values["numbers"]["table1"], group / "table1.tsv") > 0
    page = sorted((demo.out_dir / "ironmap").glob("sub-*.html"))[0]
    sub = open_page(page, {**REPORT_PROBES, "viewer": VIEWER_PROBE}, tmp_path)
    assert sub.errors == [] and sub.values["broken_images"] == []
    assert sub.values["viewer"]["axial"]["std"] > 10
    assert sub.values["viewer"]["axial"]["colored"] > 50
    assert page.stat().st_size <= 5 * 1024 * 1024  # the participant page budget


def test_cli_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "something.txt").write_text("x")
    assert main(["demo", str(tmp_path)]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]  # nothing written
    assert main(["demo", str(tmp_path / "d"), "--subjects-per-group", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
