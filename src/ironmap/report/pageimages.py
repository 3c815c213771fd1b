"""The participant page's image figures, drawn from arrays (:mod:`ironmap.report.raster`).

Slices, colour tables (matplotlib's, sampled as matplotlib samples them), ranges, overlay
colours and opacities are those the page's matplotlib figures used before (they were removed
once these had tests for the same cases); each function returns a
:class:`~ironmap.report.raster.RasterFigure`.
Arrays are 3-D in closest-RAS voxel order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ironmap.report import raster as R
from ironmap.report.figures import (
    EDGE_COLOR,
    R2STAR_CMAP,
    FigureDataError,
    best_slice,
    check_volume,
    edge_map,
    robust_range,
    spread_slices,
)
from ironmap.report.overlays import FLAG_COLOR, LESION_COLOR, flagged_slices, label_colors

#: region outlines on the flagged-voxel map
OUTLINE_COLOR = "#33a02c"


def _grey(plane: np.ndarray, rng: tuple[float, float], rep: tuple[int, int],
          cmap: str = "gray") -> np.ndarray:
    return R.upscale(R.colorize(plane, cmap, *rng), *rep)


def _mask(plane: np.ndarray, rep: tuple[int, int]) -> np.ndarray:
    return R.upscale(R.orient(np.asarray(plane) != 0), *rep)


def _paint_labels(rgb: np.ndarray, plane: np.ndarray, colors: dict[int, str],
                  rep: tuple[int, int], alpha: float) -> None:
    lab = R.upscale(R.orient(plane), *rep)
    for v, c in colors.items():
        R.blend(rgb, lab == v, c, alpha)


def _legend(colors: dict[int, str], names: dict[int, str] | None) -> list[tuple[str, str]]:
    return [((names or {}).get(v, f"label {v}"), c) for v, c in colors.items()]


def maps_figure(echo1: np.ndarray, echo2: np.ndarray, r2star: np.ndarray,
                eroded_labels: np.ndarray | None, *, r2star_range: tuple[float, float],
                echo_times: Sequence[float] | None = None, title: str = "",
                label_names: dict[int, str] | None = None,
                voxel_sizes: Sequence[float] = (1.0, 1.0),
                slice_index: int | None = None,
                echo_range: tuple[float, float] | None = None) -> R.RasterFigure:
    """The seed's Figure 1: (A) echo 1, (B) echo 2, (C) R2* map, (D) eroded regions on R2*.

    Parameters
    ----------
    echo1, echo2, r2star : ndarray of shape (X, Y, Z)
        Magnitudes (a.u.) and R2* (s^-1, NaN where not shown) on one grid.
    eroded_labels : ndarray of int, shape (X, Y, Z), or None
        Region labels after erosion (0 = background).
    r2star_range : (float, float)
        R2* colour range in s^-1.
    echo_times : sequence of float, optional
        Echo times in s (panel titles, in ms).
    title : str, optional
        Figure title.
    label_names : dict of int to str, optional
        Legend names.
    voxel_sizes : (float, float), optional
        In-plane voxel size (mm).
    slice_index : int, optional
        Axial slice; default the one with most labelled voxels.
    echo_range : (float, float), optional
        Grey range of both echoes; default the 1st-99.5th percentiles of echo 1.

    Returns
    -------
    RasterFigure
        Panels ``image-echo1``, ``image-echo2``, ``image-r2star`` (magma), ``image-labels``
        (regions at opacity 0.8 on grey R2*); the R2* colour scale; the label legend.
    """
    echo1, echo2, r2star = (check_volume(n, a) for n, a in
                            (("echo 1", echo1), ("echo 2", echo2), ("R2* map", r2star)))
    k = best_slice(eroded_labels, r2star.shape) if slice_index is None else slice_index
    erng = echo_range or robust_range(echo1, 1, 99.5)
    rep = R.voxel_repeat(r2star.shape[:2], voxel_sizes)
    te = [f" (TE {t * 1e3:.2f} ms)" for t in echo_times[:2]] if echo_times else ["", ""]
    colors = label_colors(np.unique(eroded_labels)) if eroded_labels is not None else {}
    regions = _grey(r2star[:, :, k], r2star_range, rep)
    if eroded_labels is not None:
        _paint_labels(regions, eroded_labels[:, :, k], colors, rep, 0.8)
    panels = [R.Panel("image-echo1", "A  echo 1" + te[0], _grey(echo1[:, :, k], erng, rep), k),
              R.Panel("image-echo2", "B  echo 2" + te[1], _grey(echo2[:, :, k], erng, rep), k),
              R.Panel("image-r2star", "C  R2* map",
                      _grey(r2star[:, :, k], r2star_range, rep, R2STAR_CMAP), k),
              R.Panel("image-labels", "D  eroded regions", regions, k)]
    return R.RasterFigure(panels, f"{title}  axial slice {k}".strip(),
                          legend=_legend(colors, label_names), scale=rep,
                          colorbar=R.Colorbar(R2STAR_CMAP, *r2star_range))


def montage_figure(r2star: np.ndarray, *, r2star_range: tuple[float, float],
                   mask: np.ndarray | None = None, n_slices: int = 8,
                   voxel_sizes: Sequence[float] = (1.0, 1.0)) -> R.RasterFigure:
    """``n_slices`` axial R2* slices (magma) spread over the mask's extent, 4 per row.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        R2* in s^-1 (NaN: not shown).
    r2star_range : (float, float)
        Colour range in s^-1.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Head mask (sets the slices).
    n_slices : int, optional
        Panels.
    voxel_sizes : (float, float), optional
        In-plane voxel size (mm).

    Returns
    -------
    RasterFigure
        Panels ``image-slice-{k}``; the R2* colour scale.
    """
    r2star = check_volume("R2* map", r2star)
    ks = spread_slices(mask, r2star.shape, n_slices)
    rep = R.voxel_repeat(r2star.shape[:2], voxel_sizes)
    panels = [R.Panel(f"image-slice-{k}", f"z = {k}",
                      _grey(r2star[:, :, k], r2star_range, rep, R2STAR_CMAP), k) for k in ks]
    return R.RasterFigure(panels, ncol=min(4, len(ks)), scale=rep,
                          colorbar=R.Colorbar(R2STAR_CMAP, *r2star_range))


def edges_figure(reference: np.ndarray, moving: np.ndarray, *, slices: Sequence[int] | None,
                 display_range: tuple[float, float] | None = None, n_slices: int = 3,
                 voxel_sizes: Sequence[float] = (1.0, 1.0)) -> R.RasterFigure:
    """Edges of ``moving`` (orange) over ``reference`` (grey) on axial slices.

    Parameters
    ----------
    reference : ndarray of shape (X, Y, Z)
        The fixed image (T1w).
    moving : ndarray of shape (X, Y, Z)
        The registered image on the same grid (only ``slices`` need values).
    slices : sequence of int or None
        Axial slices; None: ``n_slices`` spread over ``moving > 0``.
    display_range : (float, float), optional
        Grey range of ``reference``; default its robust range.
    n_slices : int, optional
        Panels without ``slices``.
    voxel_sizes : (float, float), optional
        In-plane voxel size of the reference (mm).

    Returns
    -------
    RasterFigure
        Panels ``image-edges-{k}``.
    """
    reference = check_volume("reference image", reference)
    moving = check_volume("registered image", moving)
    if reference.shape != moving.shape:
        raise FigureDataError(f"grids differ: {reference.shape} vs {moving.shape}")
    ks = list(slices) if slices else spread_slices(moving > 0, reference.shape, n_slices)
    rng = display_range or robust_range(reference, 1, 99.5)
    rep = R.voxel_repeat(reference.shape[:2], voxel_sizes)
    panels = []
    for k in ks:
        rgb = _grey(reference[:, :, k], rng, rep)
        R.blend(rgb, _mask(edge_map(moving[:, :, k]), rep), EDGE_COLOR, 0.95)
        panels.append(R.Panel(f"image-edges-{k}", f"z = {k}", rgb, k))
    return R.RasterFigure(panels, scale=rep)


def regions_figure(r2star: np.ndarray, labels: np.ndarray | None, lesion: np.ndarray | None,
                   *, r2star_range: tuple[float, float], n_slices: int = 4,
                   label_names: dict[int, str] | None = None,
                   voxel_sizes: Sequence[float] = (1.0, 1.0)) -> R.RasterFigure:
    """Region labels (one colour each, opacity 0.65) and lesion outlines (cyan) on grey R2*.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        R2* in s^-1.
    labels : ndarray of int, shape (X, Y, Z), or None
        Region labels.
    lesion : ndarray of bool, shape (X, Y, Z), or None
        Lesion mask.
    r2star_range : (float, float)
        Grey range in s^-1.
    n_slices : int, optional
        Panels, spread over the labels' and lesions' extent.
    label_names : dict of int to str, optional
        Legend names.
    voxel_sizes : (float, float), optional
        In-plane voxel size (mm).

    Returns
    -------
    RasterFigure
        Panels ``image-labels-{k}``; the legend lists exactly the labels drawn (and the lesion
        outline when one is drawn).
    """
    r2star = check_volume("R2* map", r2star)
    if labels is None and lesion is None:
        raise FigureDataError("neither region labels nor a lesion mask are available")
    union = np.zeros(r2star.shape, bool)
    for m in (labels, lesion):
        if m is not None:
            union |= np.asarray(m) != 0
    ks = spread_slices(union, r2star.shape, n_slices)
    colors = {}
    if labels is not None:
        shown = {int(v) for v in np.unique(np.asarray(labels)[:, :, ks]) if v != 0}
        colors = {v: c for v, c in label_colors(np.unique(labels)).items() if v in shown}
    rep = R.voxel_repeat(r2star.shape[:2], voxel_sizes)
    panels, has_lesion = [], False
    for k in ks:
        rgb = _grey(r2star[:, :, k], r2star_range, rep)
        if labels is not None:
            _paint_labels(rgb, labels[:, :, k], colors, rep, 0.65)
        if lesion is not None and np.any(lesion[:, :, k]):
            has_lesion = True
            R.blend(rgb, R.outline(_mask(lesion[:, :, k], rep)), LESION_COLOR, 1.0)
        panels.append(R.Panel(f"image-labels-{k}", f"z = {k}", rgb, k))
    legend = _legend(colors, label_names) + ([("lesion", LESION_COLOR)] if has_lesion else [])
    return R.RasterFigure(panels, legend=legend, scale=rep)


def flagged_figure(background: np.ndarray, flagged: np.ndarray, head: np.ndarray | None = None,
                   labels: np.ndarray | None = None, *, n_slices: int = 4,
                   voxel_sizes: Sequence[float] = (1.0, 1.0),
                   display_range: tuple[float, float] | None = None) -> R.RasterFigure:
    """Voxels whose R2* fit was flagged invalid (red, opacity 0.9) on the first echo.

    Region outlines in green; half the slices spread over the head, half where most flagged
    voxels are.

    Parameters
    ----------
    background : ndarray of shape (X, Y, Z)
        First-echo magnitude.
    flagged : ndarray of bool, shape (X, Y, Z)
        Flagged voxels.
    head : ndarray of bool, shape (X, Y, Z), optional
        Only flagged voxels inside it are drawn and counted.
    labels : ndarray of int, shape (X, Y, Z), optional
        Region labels drawn as outlines.
    n_slices : int, optional
        Panels.
    voxel_sizes : (float, float), optional
        In-plane voxel size (mm).
    display_range : (float, float), optional
        Grey range; default the 1st-99.5th percentiles of ``background``.

    Returns
    -------
    RasterFigure
        Panels ``image-flagged-{k}``, titles with the slice's count; the title with the total.
    """
    background, inside, ks = flagged_slices(background, flagged, head, n_slices)
    rng = display_range or robust_range(background, 1, 99.5)
    rep = R.voxel_repeat(background.shape[:2], voxel_sizes)
    panels = []
    for k in ks:
        rgb = _grey(background[:, :, k], rng, rep)
        R.blend(rgb, _mask(inside[:, :, k], rep), FLAG_COLOR, 0.9)
        if labels is not None and np.any(labels[:, :, k]):
            R.blend(rgb, R.outline(_mask(labels[:, :, k], rep)), OUTLINE_COLOR, 1.0)
        panels.append(R.Panel(f"image-flagged-{k}", f"z = {k}: {int(inside[:, :, k].sum())} "
                              "flagged", rgb, k))
    n_head = int(np.asarray(head, bool).sum()) if head is not None else inside.size
    frac = inside.sum() / n_head if n_head else float("nan")
    title = (f"{int(inside.sum())} flagged voxels in the head ({100 * frac:.2f} %); "
             "red = flagged, green = region outlines")
    return R.RasterFigure(panels, title, scale=rep,
                          legend=[("flagged", FLAG_COLOR), ("region outline", OUTLINE_COLOR)])


class SvgFigure:
    """A figure written as SVG text by ironmap itself (no plotting library): markup + width.

    Parameters
    ----------
    markup : str
        The SVG document.
    width : int
        Its width in CSS pixels.
    """

    def __init__(self, markup: str, width: int):
        self.markup, self.width = markup, width


def _esc(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _tick(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def histograms_svg(r2star: np.ndarray, labels: np.ndarray, flags: np.ndarray | None = None,
                   label_names: dict[int, str] | None = None, invalid_bits: int = 0,
                   ncol: int = 4) -> SvgFigure:
    """Histogram of R2* (s^-1) in each label (the voxels its regional mean is made of), as SVG.

    One panel per label: the counts as a filled step outline in the label's colour, the mean
    as a black line, the name, mean and voxel count above, the bin range and the largest
    count on the axes. Each panel is a group ``hist-{label}``.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        s^-1, NaN where the fit failed.
    labels : ndarray of int, shape (X, Y, Z)
        Region labels (eroded), 0 = background.
    flags : ndarray of uint16, shape (X, Y, Z), optional
        Fit flags; voxels with any of ``invalid_bits`` are left out (as in the regional mean).
    label_names : dict of int to str, optional
        Panel titles.
    invalid_bits : int, optional
        Flag bits that exclude a voxel.
    ncol : int, optional
        Panels per row.

    Returns
    -------
    SvgFigure
        The SVG (12 px = 9 pt text) and its width.
    """
    r2star = check_volume("R2* map", r2star)
    labels = check_volume("region labels", labels)
    lab = np.asarray(labels).ravel()
    values = [int(v) for v in np.unique(lab) if v != 0]
    if not values:
        raise FigureDataError("no labelled voxels")
    valid = np.isfinite(r2star).ravel()
    if flags is not None and invalid_bits:
        valid &= ((np.asarray(flags, np.uint16) & np.uint16(invalid_bits)) == 0).ravel()
    keep = (lab != 0) & valid  # the labelled valid voxels, selected once
    lab, r2 = lab[keep], np.asarray(r2star).ravel()[keep]
    colors = label_colors(values)
    pw, ph, left, top, bottom = 250, 150, 40, 34, 22  # panel size and margins (px)
    ncol = min(ncol, len(values))
    nrow = int(np.ceil(len(values) / ncol))
    width, height = ncol * pw, nrow * ph + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, v in enumerate(values):
        x0, y0 = (i % ncol) * pw + left, (i // ncol) * ph + top
        w, h = pw - left - 14, ph - top - bottom
        vals = r2[lab == v]
        name = _esc((label_names or {}).get(v, f"label {v}"))
        out.append(f'<g id="hist-{v}">')
        if vals.size:
            counts, edges = np.histogram(vals, bins=min(30, max(5, vals.size // 4)))
            lo, hi, top_count = float(edges[0]), float(edges[-1]), max(int(counts.max()), 1)
            span = hi - lo if hi > lo else 1.0
            xs = x0 + (edges - lo) / span * w
            ys = y0 + h - counts / top_count * h
            pts = [f"{xs[0]:.1f},{y0 + h:.1f}"]
            for j, c in enumerate(ys):
                pts += [f"{xs[j]:.1f},{c:.1f}", f"{xs[j + 1]:.1f},{c:.1f}"]
            pts.append(f"{xs[-1]:.1f},{y0 + h:.1f}")
            mean = float(np.mean(vals))
            xm = x0 + (mean - lo) / span * w
            out += [f'<polygon points="{" ".join(pts)}" fill="{colors[v]}"/>',
                    f'<line x1="{xm:.1f}" y1="{y0}" x2="{xm:.1f}" y2="{y0 + h}" '
                    'stroke="black" stroke-width="1.2"/>',
                    f'<text x="{x0 + w / 2:.0f}" y="{y0 - 20}" text-anchor="middle">{name}</text>',
                    f'<text x="{x0 + w / 2:.0f}" y="{y0 - 6}" text-anchor="middle">mean '
                    f'{mean:.1f}, n = {vals.size}</text>',
                    f'<text x="{x0}" y="{y0 + h + 14}" text-anchor="middle">{_tick(lo)}</text>',
                    f'<text x="{x0 + w}" y="{y0 + h + 14}" text-anchor="middle">'
                    f'{_tick(hi)}</text>',
                    f'<text x="{x0 - 4}" y="{y0 + 9}" text-anchor="end">{top_count}</text>',
                    f'<text x="{x0 - 4}" y="{y0 + h}" text-anchor="end">0</text>']
        else:
            out.append(f'<text x="{x0 + w / 2:.0f}" y="{y0 - 6}" text-anchor="middle">{name}: '
                       'no valid voxels</text>')
        out.append(f'<path d="M{x0},{y0}V{y0 + h}H{x0 + w}" fill="none" stroke="#444"/></g>')
    out.append(f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle">R2* (s⁻¹); '
               'black line = mean; axes: bin range and largest voxel count</text></svg>')
    return SvgFigure("\n".join(out), width)
