"""Participant-page images drawn from arrays: the written PNG's pixels reproduce the slices
through the colormap (as matplotlib maps them), overlays sit on their voxels, and the
colour scale the page states is the one the pixels were drawn with."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize

from ironmap.report import pageimages as P
from ironmap.report import raster as R
from ironmap.report import subject as S
from ironmap.report.figures import edge_map, robust_range
from ironmap.report.overlays import label_colors


def _mpl(values, cmap, lo, hi):
    """What matplotlib's colormap gives (RGB bytes) for values under Normalize(lo, hi)."""
    return colormaps[cmap](Normalize(lo, hi)(values), bytes=True)[..., :3]


def _written(fig):
    png, _ = fig.render()
    return R.read_png(png)


@pytest.fixture
def vols(rng):
    shape = (40, 48, 12)
    x, y = np.meshgrid(np.arange(40) - 19.5, np.arange(48) - 23.5, indexing="ij")
    head = (np.hypot(x, y) < 17)[:, :, None] & np.ones(shape, bool)
    echo1 = np.where(head, rng.uniform(500, 1500, shape), 0.0)
    r2 = np.where(head, rng.uniform(5, 80, shape), np.nan)
    labels = np.zeros(shape, np.int16)
    labels[12:18, 20:26, 4:8] = 1
    labels[24:30, 20:26, 4:8] = 2
    lesion = np.zeros(shape, bool)
    lesion[18:23, 30:34, 5:7] = True
    return echo1, r2, labels, lesion


def test_lut_index_is_matplotlib_normalize_and_lookup(rng):
    vals = np.concatenate([rng.uniform(-10, 110, 5000), [0.0, 100.0, 50.0, -1e9, 1e9]])
    for cmap in ("gray", "magma"):
        got = R.lut(cmap)[R.lut_index(vals, 0.0, 100.0)]
        np.testing.assert_array_equal(got, _mpl(vals, cmap, 0.0, 100.0))
    assert R.lut_index(np.array([np.nan, np.inf]), 0, 1).tolist() == [-1, -1]


def test_r2star_panel_pixels_are_the_slice_through_magma(vols):
    echo1, r2, labels, _ = vols
    rng_ = (12.0, 70.0)
    fig = P.maps_figure(echo1, echo1 * 0.6, r2, labels, r2star_range=rng_,
                        echo_times=[0.005, 0.025], title="sub-01")
    rgb, meta = _written(fig)
    k = next(p["slice"] for p in meta["panels"] if p["id"] == "image-r2star")
    assert meta["range"] == list(rng_) and meta["colormap"] == "magma"
    drawn = R.panel_pixels(rgb, meta, "image-r2star")
    plane = r2[:, :, k]
    finite = np.isfinite(plane)
    np.testing.assert_array_equal(drawn[finite], _mpl(plane[finite], "magma", *rng_))
    assert np.all(drawn[~finite] == 255)  # no value: white, as the figure background
    # echoes: grey over the echo's robust range, the same range for both echoes
    elo, ehi = robust_range(echo1, 1, 99.5)
    np.testing.assert_array_equal(R.panel_pixels(rgb, meta, "image-echo1"),
                                  _mpl(echo1[:, :, k], "gray", elo, ehi))
    np.testing.assert_array_equal(R.panel_pixels(rgb, meta, "image-echo2"),
                                  _mpl(0.6 * echo1[:, :, k], "gray", elo, ehi))
    assert [p["title"] for p in meta["panels"]][:2] == ["A  echo 1 (TE 5.00 ms)",
                                                        "B  echo 2 (TE 25.00 ms)"]
    assert k == 4  # the slice with most labelled voxels (first of the ties)


def test_orientation_anterior_up_x_to_the_right():
    vol = np.zeros((20, 30, 3))
    vol[2, 27, 1] = 1.0  # x small (left of image), y large (anterior: top)
    fig = P.montage_figure(vol, r2star_range=(0.0, 1.0), n_slices=1)
    rgb, meta = _written(fig)
    x0, y0, w, h = meta["panels"][0]["box"]
    rx, ry = meta["scale"]
    assert rx == ry == 9  # 20 voxels drawn at least 180 px wide
    bright = np.argwhere(rgb[y0:y0 + h, x0:x0 + w].sum(axis=2) > 600)
    rows, cols = bright[:, 0] // ry, bright[:, 1] // rx
    assert set(rows) == {30 - 1 - 27} and set(cols) == {2}


def test_voxel_aspect_kept():
    assert R.voxel_repeat((100, 100), (1.0, 2.0)) == (2, 4)
    assert R.voxel_repeat((256, 256), (1.0, 1.0)) == (1, 1)


def test_region_colours_legend_and_lesion_outline(vols):
    _, r2, labels, lesion = vols
    rng_ = (10.0, 70.0)
    names = {1: "caudate L", 2: "caudate R"}
    fig = P.regions_figure(r2, labels, lesion, r2star_range=rng_, label_names=names)
    rgb, meta = _written(fig)
    colors = label_colors([1, 2])
    assert meta["legend"] == [["caudate L", colors[1]], ["caudate R", colors[2]],
                              ["lesion", "#00e5ff"]]
    k = 5  # holds labels and lesion
    assert any(p["slice"] == k for p in meta["panels"])
    drawn = R.panel_pixels(rgb, meta, f"image-labels-{k}").astype(float)
    grey = _mpl(r2[:, :, k], "gray", *rng_).astype(float)
    for v in (1, 2):
        sel = labels[:, :, k] == v
        want = np.round((1 - 0.65) * grey[sel] + 0.65 * R.hex_rgb(colors[v]))
        np.testing.assert_array_equal(drawn[sel], want)
    plain = (labels[:, :, k] == 0) & ~lesion[:, :, k] & np.isfinite(r2[:, :, k])
    np.testing.assert_array_equal(drawn[plain], grey[plain])
    # the lesion outline: cyan on the lesion's edge pixels, its inside keeps R2*
    x0, y0, w, h = next(p["box"] for p in meta["panels"] if p["slice"] == k)
    full = rgb[y0:y0 + h, x0:x0 + w]
    cyan = np.all(full == (0, 229, 255), axis=2)
    mask = R.upscale(R.orient(lesion[:, :, k]), *meta["scale"])
    assert cyan.any() and not (cyan & ~mask).any()
    assert (mask & ~cyan).any()  # the inside is not painted


def test_flagged_voxels_red_in_the_head_only(vols):
    echo1, _, labels, _ = vols
    head = echo1 > 0
    flagged = np.zeros(echo1.shape, bool)
    flagged[20:22, 10:12, 6] = True
    flagged[0:2, 0:2, 6] = True  # outside the head: not drawn, not counted
    fig = P.flagged_figure(echo1, flagged, head, None)
    rgb, meta = _written(fig)
    assert "4 flagged voxels in the head" in meta["title"]
    panel = next(p for p in meta["panels"] if p["slice"] == 6)
    assert panel["title"] == "z = 6: 4 flagged"
    drawn = R.panel_pixels(rgb, meta, "image-flagged-6").astype(float)
    grey = _mpl(echo1[:, :, 6], "gray", *robust_range(echo1, 1, 99.5)).astype(float)
    red = np.round((1 - 0.9) * grey + 0.9 * R.hex_rgb("#e31a1c"))
    inside = flagged[:, :, 6] & head[:, :, 6]
    np.testing.assert_array_equal(drawn[inside], red[inside])
    np.testing.assert_array_equal(drawn[~inside], grey[~inside])


def test_edges_drawn_where_the_registered_image_has_edges(vols):
    echo1, _, _, _ = vols
    fig = P.edges_figure(echo1, echo1, slices=[3, 6], display_range=(0.0, 1500.0))
    rgb, meta = _written(fig)
    assert [p["id"] for p in meta["panels"]] == ["image-edges-3", "image-edges-6"]
    drawn = R.panel_pixels(rgb, meta, "image-edges-6").astype(float)
    grey = _mpl(echo1[:, :, 6], "gray", 0.0, 1500.0).astype(float)
    edges = edge_map(echo1[:, :, 6])
    assert 0 < edges.sum() < edges.size / 2
    orange = np.round((1 - 0.95) * grey + 0.95 * R.hex_rgb("#ff7f0e"))
    np.testing.assert_array_equal(drawn[edges], orange[edges])
    np.testing.assert_array_equal(drawn[~edges], grey[~edges])


def test_page_states_the_scale_the_pixels_use(vols, tmp_path):
    """The figure jobs of a page: the R2* range in the caption, in the colour bar and in
    the PNG are one and the same (the range of :func:`subject.r2star_display_range`)."""
    from ironmap.report.figures import FigureJob
    from ironmap.workflows.report import realise

    echo1, r2, labels, lesion = vols
    img = S.SubjectImages(label="sub-01", participant_id="sub-01", echo1=echo1,
                          echo2=echo1 * 0.6, r2star=r2, labels=labels, eroded=labels,
                          lesion=lesion, echo_times=[0.005, 0.025])
    lo, hi, text = S.r2star_display_range(img)
    jobs = dict((j.id, j) for _, j in S.figure_jobs(img))
    assert isinstance(jobs["montage"], FigureJob)
    view = realise(jobs["montage"], tmp_path, tmp_path)
    assert view.error is None and view.files == ["sub-01_desc-montage_R2starmap.png"]
    rgb, meta = R.read_png((tmp_path / view.files[0]).read_bytes())
    assert meta["range"] == [lo, hi]
    assert view.colorbar["low_text"] == f"{lo:.1f}" and view.colorbar["high_text"] == f"{hi:.1f}"
    assert f"{lo:.1f}-{hi:.1f} s⁻¹" in view.caption
    # and the pixels: the masked R2* of the page through magma over that range
    shown = S.masked_r2star(img)
    for p in meta["panels"]:
        plane = shown[:, :, p["slice"]]
        ok = np.isfinite(plane)
        np.testing.assert_array_equal(R.panel_pixels(rgb, meta, p["id"])[ok],
                                      _mpl(plane[ok], "magma", lo, hi))
    assert re.fullmatch(r"z = \d+", view.panels[0]["title"])


def test_region_panel_paints_only_the_labelled_voxels_of_its_slice(vols):
    """Panel D of the seed's Figure 1: eroded labels at opacity 0.8 on grey R2*, nothing else
    painted; the legend names exactly the labels present."""
    echo1, r2, labels, _ = vols
    rng_ = (10.0, 70.0)
    names = {1: "caudate L", 2: "caudate R"}
    fig = P.maps_figure(echo1, echo1 * 0.6, r2, labels, r2star_range=rng_, label_names=names)
    rgb, meta = _written(fig)
    assert [p["id"] for p in meta["panels"]] == ["image-echo1", "image-echo2", "image-r2star",
                                                 "image-labels"]
    assert meta["title"] == "axial slice 4"
    colors = label_colors([1, 2])
    assert meta["legend"] == [["caudate L", colors[1]], ["caudate R", colors[2]]]
    drawn = R.panel_pixels(rgb, meta, "image-labels").astype(float)
    grey = _mpl(r2[:, :, 4], "gray", *rng_).astype(float)
    finite = np.isfinite(r2[:, :, 4])
    assert np.all(drawn[~finite] == 255)  # no R2* value: white
    painted = np.any(drawn != grey, axis=-1) & finite
    np.testing.assert_array_equal(painted, labels[:, :, 4] != 0)  # 2 x 36 labelled voxels
    for v in (1, 2):
        sel = labels[:, :, 4] == v
        want = np.round((1 - 0.8) * grey[sel] + 0.8 * R.hex_rgb(colors[v]))
        np.testing.assert_array_equal(drawn[sel], want)


def test_montage_slices_spread_over_the_mask():
    vol = np.zeros((30, 30, 10))
    vol[8:22, 8:22, 2:8] = 100.0
    fig = P.montage_figure(vol, r2star_range=(0.0, 100.0), mask=vol > 0, n_slices=4)
    rgb, meta = _written(fig)
    ks = [p["slice"] for p in meta["panels"]]
    assert len(ks) == len(set(ks)) == 4 and all(2 <= k <= 7 for k in ks)
    assert [p["id"] for p in meta["panels"]] == [f"image-slice-{k}" for k in ks]
    assert len({p["box"][1] for p in meta["panels"]}) == 1  # 4 per row: one row
    for k in ks:
        np.testing.assert_array_equal(R.panel_pixels(rgb, meta, f"image-slice-{k}"),
                                      _mpl(vol[:, :, k], "magma", 0.0, 100.0))


def test_missing_or_mismatched_images_raise_clear_errors():
    from ironmap.report.figures import FigureDataError

    one = np.ones((4, 4, 4))
    with pytest.raises(FigureDataError, match="echo 2: image not available"):
        P.maps_figure(one, None, one, None, r2star_range=(0.0, 1.0))
    with pytest.raises(FigureDataError, match="grids differ"):
        P.edges_figure(one, np.ones((4, 5, 4)), slices=None)
    with pytest.raises(FigureDataError, match="grids differ"):
        P.flagged_figure(one, np.ones((4, 5, 4), bool))
    with pytest.raises(FigureDataError, match="neither region labels nor a lesion mask"):
        P.regions_figure(one, None, None, r2star_range=(0.0, 1.0))
    with pytest.raises(FigureDataError, match="no labelled voxels"):
        P.histograms_svg(one, np.zeros((4, 4, 4), int))
    with pytest.raises(FigureDataError, match="expected a 3-D image"):
        P.montage_figure(np.ones((4, 4)), r2star_range=(0.0, 1.0))


def test_fourteen_label_colours_distinct_and_legend_matches_drawn():
    shape = (20, 22, 9)
    labels = np.zeros(shape, int)
    for v in range(1, 15):
        labels[v, 2:6, 2:7] = v
    colors = label_colors(np.unique(labels))
    assert len(set(colors.values())) == 14 and 0 not in colors
    names = {v: f"region {v}" for v in range(1, 15)}
    r2 = np.full(shape, 25.0)
    fig = P.regions_figure(r2, labels, None, r2star_range=(0.0, 50.0), label_names=names,
                           n_slices=1)
    rgb, meta = _written(fig)
    assert meta["legend"] == [[names[v], colors[v]] for v in range(1, 15)]
    k = meta["panels"][0]["slice"]
    drawn = R.panel_pixels(rgb, meta, f"image-labels-{k}").astype(float)
    grey = _mpl(r2[:, :, k], "gray", 0.0, 50.0).astype(float)
    for v in range(1, 15):  # each label's voxels in its own legend colour
        sel = labels[:, :, k] == v
        want = np.round(0.35 * grey[sel] + 0.65 * R.hex_rgb(colors[v]))
        np.testing.assert_array_equal(drawn[sel], want)


def _hist_panel(svg: str, label: int):
    import xml.etree.ElementTree as ET

    ns = {"s": "http://www.w3.org/2000/svg"}
    group = ET.fromstring(svg).find(f"s:g[@id='hist-{label}']", ns)
    texts = [t.text for t in group.findall("s:text", ns)]
    poly = group.find("s:polygon", ns)
    return texts, poly


def test_histograms_use_the_valid_voxels_of_each_label(rng):
    """The counts drawn are those of the label's voxels without an invalid flag bit (the
    voxels its regional mean is made of); the stated mean and n are theirs."""
    shape = (10, 10, 4)
    r2 = rng.normal(30, 2, shape)
    labels = np.zeros(shape, int)
    labels[1:4, 1:4, 1:3] = 1
    labels[6:8, 6:8, 1] = 2
    flags = np.zeros(shape, np.uint16)
    flags[1, 1, 1] = 1  # invalid: left out
    flags[2, 2, 1] = 2  # another bit, not invalid: kept
    flags[6:8, 6:8, 1] = 1  # all of label 2 invalid
    svg = P.histograms_svg(r2, labels, flags, {1: "caudate", 2: "putamen"},
                           invalid_bits=1).markup
    texts, poly = _hist_panel(svg, 1)
    kept = r2[(labels == 1) & (flags & 1 == 0)]
    assert kept.size == 17
    assert texts[:2] == ["caudate", f"mean {np.mean(kept):.1f}, n = 17"]
    # the step outline's heights are the histogram of those voxels (largest count on top)
    pts = np.array([[float(c) for c in p.split(",")] for p in poly.get("points").split()])
    ys = pts[1:-1:2, 1]
    counts, _ = np.histogram(kept, bins=min(30, max(5, kept.size // 4)))
    base = pts[0, 1]
    heights = base - ys
    np.testing.assert_allclose(heights / heights.max(), counts / counts.max(), atol=1e-3)
    assert texts[-2] == str(counts.max())
    texts2, poly2 = _hist_panel(svg, 2)
    assert poly2 is None and texts2 == ["putamen: no valid voxels"]


def test_no_flair_figure_for_a_participant_without_flair(vols):
    """A participant without a FLAIR gets no FLAIR-to-T1w figure job (not a failed figure);
    one with a FLAIR keeps it, before the GRE's."""
    echo1, r2, labels, _ = vols
    kw = dict(label="sub-01", participant_id="sub-01", echo1=echo1, echo2=echo1 * 0.6,
              r2star=r2, labels=labels, eroded=labels, echo_times=[0.005, 0.025])
    with_flair = [j.id for _, j in S.figure_jobs(S.SubjectImages(**kw))]
    without = [j.id for _, j in S.figure_jobs(S.SubjectImages(**kw, has_flair=False))]
    assert with_flair.index("flair-t1w") == with_flair.index("megre-t1w") - 1
    assert "flair-t1w" not in without
    assert [i for i in with_flair if i != "flair-t1w"] == without


@pytest.mark.parametrize("name", sorted(R.LUT_HEX))
def test_stored_colour_tables_are_matplotlibs(name):
    """The stored tables (a page imports no matplotlib) equal the installed matplotlib's."""
    rgba = colormaps[name].resampled(R.LUT_SIZE)(np.arange(R.LUT_SIZE), bytes=True)
    np.testing.assert_array_equal(R.lut(name), rgba[:, :3])


def test_stored_tab20_and_hex_colours_are_matplotlibs():
    """Label colours are tab20's as matplotlib writes them; hex colours read as matplotlib
    reads them, bit for bit."""
    from matplotlib.colors import to_hex, to_rgb

    assert label_colors(range(1, 23)) == {
        v: to_hex(colormaps["tab20"]((v - 1) % 20)) for v in range(1, 23)}
    for color in ("#e31a1c", "#00e5ff", "#33a02c", "#ff7f0e", "#ABCDEF", "#000000"):
        assert R.hex_rgb(color).tobytes() == (np.asarray(to_rgb(color), float) * 255).tobytes()
    assert R.hex_rgb("red").tolist() == [255.0, 0.0, 0.0]  # not #rrggbb: matplotlib reads it
