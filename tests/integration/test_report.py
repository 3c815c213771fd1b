"""Study report and participant pages on a small synthetic study (file contracts only).

The end-to-end report on the real pipeline's demo cohort is in test_demo.py.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _figcheck import points_by_prefix
from _report_study import make_study
from ironmap.io.tables import read_tsv
from ironmap.report import figures as F
from ironmap.report.html import format_value
from ironmap.workflows.report import write_reports


class _Cells(HTMLParser):
    """Collect (data-columns, text) of every <td> of one table, and all <img> sources."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.depth, self.rows, self.imgs, self._cell = table_id, 0, [], [], None
        self.links: list[str] = []
        self.spans: list[list[list[str]]] = []  # per row: [column, text] of each number
        self._span = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == self.table_id:
            self.depth = 1
        elif tag == "tr" and self.depth:
            self.rows.append([])
            self.spans.append([])
        elif tag == "td" and self.depth:
            self._cell = [a.get("data-columns", ""), ""]
        elif tag == "span" and self.depth and a.get("data-column"):
            self._span = [a["data-column"], ""]
        elif tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag in ("a", "link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._span is not None:
            self._span[1] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._span is not None:
            self.spans[-1].append(self._span)
            self._span = None
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "table" and self.depth:
            self.depth = 0


def parse(page: Path, table_id: str) -> _Cells:
    p = _Cells(table_id)
    p.feed(page.read_text(encoding="utf-8"))
    return p


def assert_numbers_match_tsv(rows: list[list[list[str]]], tsv: Path, seed_layout=True) -> int:
    """Every number shown (each ``data-column`` element) equals its TSV cell, formatted by
    the report's rule and numerically within rounding; returns how many were checked.

    ``seed_layout``: a missing stepwise beta shows ``n.s.`` (not selected), as in the seed.
    """
    df = read_tsv(tsv)
    rows = [r for r in rows if r]
    assert len(rows) == len(df)
    checked = 0
    for (_, rec), spans in zip(df.iterrows(), rows, strict=True):
        for column, text in spans:
            expected, is_num = format_value(rec[column], column)
            if not is_num and column.startswith("beta_") and seed_layout:
                assert text == "n.s.", (column, text)  # not selected, as in the seed
                continue
            assert text == expected, (column, text, rec[column])
            if is_num and text != "<0.001":
                assert float(text) == pytest.approx(float(rec[column]), rel=5e-3, abs=5e-4)
                checked += 1
    return checked


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """8 participants (no PPMS), red nucleus without data, one failed, one with a bad
    registration; report written once."""
    root = tmp_path_factory.mktemp("study")
    cfg = make_study(root, np.random.default_rng(7), groups={"HC": 3, "RRMS": 3, "SPMS": 3},
                     missing_region="red_nucleus", failed=("sub-009",))
    manifest = cfg.output_dir / "logs" / "manifests" / "sub-002.json"
    manifest.write_text(json.dumps({"summary": {"registration_nmi": {"MEGRE": 1.3,
                                                                     "FLAIR": 1.01}}}))
    pages = write_reports(cfg)
    return cfg, pages


def test_outputs_written(study):
    cfg, pages = study
    out = cfg.output_dir
    assert pages[0] == out / "report.html"
    assert sorted(p.name for p in pages[1:]) == [f"sub-{i:03d}.html" for i in range(1, 9)]
    svgs = sorted((out / "group" / "figures").glob("*.svg"))
    pngs = sorted((out / "group" / "figures").glob("*.png"))
    assert len(svgs) == len(pngs) == 7 + 7 + 2  # Figures 2, 3 per region with data, ages, sites
    # participant images drawn from arrays (PNG only), the histograms written as SVG
    figs = out / "sub-001" / "figures"
    assert len(list(figs.glob("*.png"))) == 6
    assert [p.name for p in figs.glob("*.svg")] == ["sub-001_desc-histograms_R2starmap.svg"]


def test_table2_cells_equal_tsv(study):
    cfg, _ = study
    page = cfg.output_dir / "report.html"
    cells = parse(page, "table2")
    tsv = cfg.output_dir / "group" / "table2.tsv"
    # region, 4 group means + SDs with 3 p-values, 2 r with p, model R and p (7 regions)
    assert assert_numbers_match_tsv(cells.spans, tsv) >= 7 * (8 + 3 + 4)
    df = read_tsv(tsv)
    wanted = ["mw_RRMS_vs_HC_p", "mw_SPMS_vs_HC_p", "mw_MS_vs_HC_p",
              "p_cortical_gm_cm3_patients", "p_wm_cm3_patients", "model_p"]
    n_p = 0
    for (_, rec), row in zip(df.iterrows(), [r for r in cells.spans if r], strict=True):
        shown = {c for c, _ in row}
        finite = {c for c in wanted if np.isfinite(pd.to_numeric(rec[c], errors="coerce"))}
        assert finite <= shown  # every p-value of the seed's Table 2 is visible
        n_p += len(finite)
    assert n_p >= 7 * 3
    assert assert_numbers_match_tsv(parse(page, "table2-full").spans, tsv, False) > 7 * 30
    t1 = parse(page, "table1")
    assert assert_numbers_match_tsv(t1.spans, cfg.output_dir / "group" / "table1.tsv") == 4
    assert sum(len(r) for r in t1.spans) == 4 * 9  # group, n and 7 text columns, 4 rows


def test_self_contained(study):
    cfg, _ = study
    for page in (cfg.output_dir / "report.html", cfg.output_dir / "sub-001.html"):
        p = parse(page, "-")
        assert p.imgs and all(src.startswith(("data:image/png;base64,",
                                              "data:image/svg+xml;base64,")) for src in p.imgs)
        external = [u for u in p.links if re.match(r"^[a-z]+://", u)]
        assert external == []
        text = page.read_text(encoding="utf-8")
        assert "<script src" not in text and "<link" not in text
        assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched


def test_missing_things_are_named(study):
    cfg, _ = study
    text = (cfg.output_dir / "report.html").read_text(encoding="utf-8")
    assert "phenotype(s) PPMS" in text
    assert "region red_nucleus: no R2* values" in text
    assert "Figure 2 · Red nucleus: figure not available" in text
    assert "sub-009: GRE echo 2 has no EchoTime" in text  # failed participant and why


def test_qc_flags_in_table_and_pages(study):
    cfg, _ = study
    qc = read_tsv(cfg.output_dir / "group" / "qc.tsv")
    assert list(qc["participant_id"]) == [f"sub-{i:03d}" for i in range(1, 9)]
    flagged = qc.set_index("participant_id")
    assert flagged.loc["sub-002", "flags"] == "registration:FLAIR->T1w"
    assert flagged.loc["sub-002", "registration_nmi_flair"] == pytest.approx(1.01)
    assert (qc["snr_echo1"] > 20).all()
    assert flagged.loc["sub-001", "max_region_flagged_fraction"] == pytest.approx(8 / 48, rel=1e-5)
    assert "FLAIR to T1w registration similarity 1.010" in \
        (cfg.output_dir / "sub-002.html").read_text(encoding="utf-8")
    assert "registration:FLAIR->T1w" not in (cfg.output_dir / "sub-001.html").read_text()
    assert "1 automatic QC flag(s) raised" in (cfg.output_dir / "report.html").read_text()


def test_figures_written_have_content(study):
    cfg, _ = study
    figs = cfg.output_dir / "group" / "figures"
    pts = points_by_prefix(figs / "region-caudate_desc-groups_r2star.svg", "points-")
    assert pts == {"HC": 3, "RRMS": 3, "SPMS": 2}
    pts = points_by_prefix(figs / "region-caudate_desc-corticalgm_r2star.svg", "points-")
    assert pts == {"controls": 3, "patients-RRMS": 3, "patients-SPMS": 2}
    pts = points_by_prefix(figs / "desc-agecurves_r2star.svg", "points-")
    assert pts["caudate"] == 3 and pts["red_nucleus"] == 0


def test_methods_from_what_ran(study):
    cfg, _ = study
    text = (cfg.output_dir / "report.html").read_text(encoding="utf-8")
    methods = text[text.index('id="methods"'):]
    assert "two-point closed form" in methods  # from the R2* map's sidecar
    assert "4.92, 24.60 ms" in methods
    assert "affine (12-parameter) transform" in methods and "eroded by 1 voxel" in methods
    ref = json.loads((cfg.output_dir / "group" / "stats.json").read_text())["reference_age"]
    assert f"reference age of {ref:.1f} years" in methods  # from stats.json
    assert f"numpy {np.__version__}" in methods and f"pandas {pd.__version__}" in methods
    assert 'id="ref-ants"' in methods


@pytest.mark.slow
def test_no_patients_no_group_tables_and_failing_figure(tmp_path, rng, monkeypatch):
    cfg = make_study(tmp_path, rng, groups={"HC": 2}, with_group_tables=False)

    def broken(*args, **kwargs):
        raise RuntimeError("site plot exploded")

    monkeypatch.setattr(F, "site_figure", broken)
    pages = write_reports(cfg)
    text = pages[0].read_text(encoding="utf-8")
    assert "no patients: patient comparisons" in text
    assert "Table 2 is not available" in text and "group/table2.tsv not found" in text
    assert "Control R2* per site: site plot exploded" in text  # reported, not fatal
    assert len(pages) == 3


@pytest.mark.slow
def test_report_in_headless_chromium(study, tmp_path):
    """No console error, no broken or shrunk image, every number of Tables 1-2 = its TSV
    cell, and the participant page's viewer draws the R2* map with coloured overlays."""
    from _chromium import REPORT_PROBES, VIEWER_PROBE, open_page, screenshot_is_blank

    cfg, _ = study
    out = cfg.output_dir
    res = open_page(out / "report.html", REPORT_PROBES, tmp_path)
    (tmp_path / "report.png").write_bytes(res.screenshot_png)
    assert not screenshot_is_blank(res.screenshot_png)
    assert res.errors == []
    assert res.values["n_images"] >= 16 and res.values["broken_images"] == []
    assert res.values["shrunk_figures"] == []  # shown at natural size: text >= 9 pt
    assert res.values["title"] == "ironmap study report"
    numbers = res.values["numbers"]
    assert assert_numbers_match_tsv(numbers["table2"], out / "group" / "table2.tsv") >= 7 * 15
    assert assert_numbers_match_tsv(numbers["table2-full"], out / "group" / "table2.tsv",
                                    False) > 100
    assert assert_numbers_match_tsv(numbers["table1"], out / "group" / "table1.tsv") >= 4
    sub = open_page(out / "sub-001.html", {**REPORT_PROBES, "viewer": VIEWER_PROBE}, tmp_path)
    assert sub.errors == [] and sub.values["broken_images"] == []
    # 7 figures and the colour scales of Figure 1 and the montage
    assert sub.values["n_images"] == 7 + 2 and not screenshot_is_blank(sub.screenshot_png)
    assert sub.values["shrunk_figures"] == []
    v = sub.values["viewer"]
    assert v["ready"] == "1"
    for view in ("axial", "bare"):
        assert v[view]["std"] > 10 and v[view]["levels"] > 3, (view, v[view])  # not blank
    # (the synthetic head is uniform at the window's low end: its middle coronal slice, away
    # from the labels, is drawn black on black; the demo test checks real contrast)
    assert v["axial"]["colored"] > 50  # region labels drawn in colour
    assert v["bare"]["colored"] == 0  # opacity 0: grey R2* only
    assert v["coronal"]["height"] != v["axial"]["height"]  # another plane, voxel aspect


def test_participant_page_states_the_scale_it_draws(study):
    """The R2* scale written in the page (caption and colour bar) is the range the PNG's
    pixels were drawn with, and the panel titles are those of the PNG's layout."""
    from ironmap.report.raster import panel_pixels, read_png

    cfg, _ = study
    text = (cfg.output_dir / "sub-001.html").read_text(encoding="utf-8")
    png = cfg.output_dir / "sub-001" / "figures" / "sub-001_desc-montage_R2starmap.png"
    rgb, meta = read_png(png.read_bytes())
    lo, hi = meta["range"]
    block = re.search(r'<figure id="montage">.*?</figure>', text, re.S).group(0)
    assert f"R2* colour scale {lo:.1f}-{hi:.1f} s⁻¹" in block
    found = re.search(r'data-low="([^"]+)" data-high="([^"]+)"><span>([^<]+)</span>', block)
    assert (float(found.group(1)), float(found.group(2))) == (lo, hi)
    assert found.group(3) == f"{lo:.1f}"
    titles = re.findall(r'<span class="rf-title"[^>]*>([^<]+)</span>', block)
    assert titles == [p["title"] for p in meta["panels"]] and len(titles) == 8
    assert all(panel_pixels(rgb, meta, p["id"]).shape[:2] == (24, 28) for p in meta["panels"])


def test_pages_made_by_the_participant_level_are_reused(tmp_path, rng):
    """A page made at the end of a participant's run (``participant_page``) is the page the
    report shows: the report reuses it unchanged; ``--no-report`` makes none."""
    import dataclasses

    from ironmap.io.bids import discover
    from ironmap.workflows.report import participant_page

    cfg = make_study(tmp_path, rng, groups={"HC": 2, "RRMS": 1})
    part = dataclasses.replace(cfg, analysis_level="participant", report=True)
    subjects = list(discover(cfg.bids_dir))
    assert participant_page(dataclasses.replace(part, report=False), subjects[0]) is None
    assert not list(cfg.output_dir.glob("sub-*.html"))
    made = {s.label: participant_page(part, s) for s in subjects}
    assert all(p is not None and p.exists() for p in made.values())
    before = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in made.items()}
    write_reports(cfg)
    after = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in made.items()}
    assert after == before  # reused, not made again
    qc = read_tsv(cfg.output_dir / "group" / "qc.tsv")
    assert list(qc["participant_id"]) == ["sub-001", "sub-002", "sub-003"]


def test_page_from_images_in_memory_equals_page_from_files(tmp_path, rng):
    """The participant level's page (raw images handed over in memory) is the page the
    report makes from the files: same HTML, same figure files."""
    from ironmap.core.qc.run_flags import QCThresholds
    from ironmap.io.bids import discover
    from ironmap.io.nifti import load_image
    from ironmap.workflows.report import in_memory_inputs, write_subject_page

    cfg = make_study(tmp_path, rng, groups={"HC": 1, "RRMS": 1})
    s = list(discover(cfg.bids_dir))[1]
    figs = cfg.output_dir / s.label / "figures"

    def written():
        page, _ = write_subject_page(cfg, s, {"group": "RRMS"}, QCThresholds(), mem)
        return page.read_bytes(), {p.name: p.read_bytes() for p in sorted(figs.iterdir())}

    mem = None
    from_files = written()
    held = {"echoes": [load_image(e.path) for e in s.echoes], "t1w": load_image(s.t1w),
            "flair": load_image(s.flair)}
    mem = in_memory_inputs(s, held)
    assert sorted(mem) == sorted(str(p) for p in [*(e.path for e in s.echoes), s.t1w,
                                                   s.flair])
    assert written() == from_files
