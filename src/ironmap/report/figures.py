"""Figures of the study report: data in, :class:`matplotlib.figure.Figure` out.

No pyplot and no files here: every function builds a fresh ``Figure`` (Agg canvas, so it is
safe in worker processes without a display) and :func:`render_figure` turns it into PNG/SVG
bytes. Artists carry SVG ids (``gid``) such as ``points-HC`` or ``fit-patients`` so that a
written SVG can be checked for content (one ``<use>`` element per plotted point).

Images are 3-D arrays in (closest) RAS+ voxel order; axial slices ``[:, :, k]`` are shown
with anterior up and the subject's right on the image's right (neurological view).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import ndimage

from ironmap.core.regions.names import REGION_TITLES

if TYPE_CHECKING:  # matplotlib's figure machinery loads only where a figure is drawn: a
    # participant page (drawn from arrays) imports this module without it
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

#: Group colours (controls first); other labels get the next free colour.
GROUP_COLORS: tuple[str, ...] = ("#4c72b0", "#dd8452", "#c44e52", "#8172b3", "#55a868",
                                 "#937860", "#da8bc3", "#8c8c8c")
R2STAR_CMAP = "magma"
#: colour of registration edges (the page text names it: orange)
EDGE_COLOR = "#ff7f0e"


class FigureDataError(ValueError):
    """The data needed for a figure are missing or empty (the message says what)."""


def new_figure(width: float, height: float, **margins: float) -> Figure:
    """A pyplot-free figure with an Agg canvas.

    No layout engine (constrained layout costs 3-4x the drawing time): ``margins`` are passed
    to ``Figure.subplots_adjust`` (fractions of the figure).

    Parameters
    ----------
    width, height : float
        Size in inches.
    **margins : float
        ``left``, ``right``, ``bottom``, ``top``, ``wspace``, ``hspace``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    if margins:
        fig.subplots_adjust(**margins)
    return fig


#: CSS pixels per inch: a figure shown ``display_width(fig)`` px wide shows its text at the
#: point sizes it was drawn with (1 pt = 1/72 in = 4/3 CSS px).
CSS_PX_PER_INCH = 96
#: smallest font size (pt) any figure uses; the report shows figures at their natural size
MIN_FONT_PT = 9.0


def display_width(fig: Figure) -> int:
    """Width in CSS pixels at which ``fig``'s text has its nominal point size.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.

    Returns
    -------
    int
        Width in CSS pixels (96 per inch).
    """
    return int(round(fig.get_figwidth() * CSS_PX_PER_INCH))


def render_figure(fig: Figure, formats: Sequence[str] = ("png", "svg"),
                  dpi: int = 144) -> dict[str, bytes]:
    """Render ``fig`` to bytes per format (deterministic: no dates in the metadata).

    The PNG has 1.5 pixels per CSS pixel at :func:`display_width` (sharp on most screens).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    formats : sequence of str, optional
        ``png`` and/or ``svg``.
    dpi : int, optional
        PNG resolution (dots per inch).

    Returns
    -------
    dict of str to bytes
        Format -> file content.
    """
    import matplotlib

    out = {}
    # stable SVG ids; one <image> per layer (no compositing) so layers stay checkable
    with matplotlib.rc_context({"svg.hashsalt": "ironmap", "image.composite_image": False}):
        for fmt in formats:
            buf = io.BytesIO()
            meta = {"Date": None} if fmt == "svg" else {"Software": None} if fmt == "png" \
                else {}
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta, facecolor="white")
            out[fmt] = buf.getvalue()
    return out


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """Stable colour per group label, in the given order.

    Parameters
    ----------
    groups : sequence of str
        Group labels (controls first by convention).

    Returns
    -------
    dict of str to str
        Group -> hex colour (the palette repeats after its length).
    """
    return {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(groups)}


def region_title(region: str) -> str:
    """Human-readable region name (unknown names pass through).

    Parameters
    ----------
    region : str
        Canonical region (``globus_pallidus``).

    Returns
    -------
    str
        Its title (``globus pallidus``).
    """
    return REGION_TITLES.get(region, region.replace("_", " "))


# ---------------------------------------------------------------------------------------------
# image helpers
# ---------------------------------------------------------------------------------------------

def check_volume(name: str, arr: np.ndarray | None) -> np.ndarray:
    """A 3-D image array for a figure, or a :class:`FigureDataError` naming what is wrong.

    Parameters
    ----------
    name : str
        What the image is (named in the error).
    arr : ndarray or None
        The image; 4-D arrays and missing images are refused.

    Returns
    -------
    ndarray of shape (nx, ny, nz)
        ``arr`` as an array.
    """
    if arr is None:
        raise FigureDataError(f"{name}: image not available")
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.size == 0:
        raise FigureDataError(f"{name}: expected a 3-D image, got shape {arr.shape}")
    return arr


def robust_range(arr: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """Percentile display range of the finite, non-zero voxels.

    Parameters
    ----------
    arr : ndarray
        Image values.
    low, high : float, optional
        Percentiles (0-100).

    Returns
    -------
    (float, float)
        The two percentiles; (0, 1) when no voxel is finite and non-zero.
    """
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(float)
    vals = arr[np.isfinite(arr) & (arr != 0)].astype(float)  # select first, then convert
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def best_slice(mask: np.ndarray | None, shape: tuple[int, ...]) -> int:
    """Axial slice holding most voxels of ``mask``.

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz), or None
        The mask.
    shape : tuple of int
        The volume's shape.

    Returns
    -------
    int
        Slice index along z; the middle slice when the mask is None or empty.
    """
    if mask is not None:
        counts = np.asarray(mask != 0).sum(axis=(0, 1))
        if counts.max() > 0:
            return int(np.argmax(counts))
    return shape[2] // 2


def spread_slices(mask: np.ndarray | None, shape: tuple[int, ...], n: int) -> list[int]:
    """``n`` axial slices evenly spread over the extent of ``mask`` (or of the volume).

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz), or None
        The mask.
    shape : tuple of int
        The volume's shape.
    n : int
        Number of slices.

    Returns
    -------
    list of int
        Slice indices along z, ascending (fewer when the extent is thinner than ``n``).
    """
    zs = np.arange(shape[2])
    if mask is not None and np.any(mask):
        zs = np.flatnonzero(np.asarray(mask != 0).any(axis=(0, 1)))
    return spread_over(zs, n)


def spread_over(zs: Sequence[int] | np.ndarray, n: int) -> list[int]:
    """``n`` slice indices evenly spread from ``min(zs)`` to ``max(zs)`` (the extent).

    Parameters
    ----------
    zs : sequence of int
        Indices of the slices that hold something (not empty).
    n : int
        Number of slices wanted (fewer when the extent is shorter).

    Returns
    -------
    list of int
        Sorted, distinct slice indices.
    """
    zs = np.asarray(zs)
    lo, hi = int(zs.min()), int(zs.max())
    picks = np.linspace(lo, hi, n + 2)[1:-1] if hi - lo >= n else np.linspace(lo, hi, n)
    return sorted({int(round(z)) for z in picks})


def show_plane(ax, plane: np.ndarray, *, gid: str, **kwargs):
    """Show an axial plane (x right, y up) without ticks.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    plane : ndarray of shape (nx, ny)
        One axial slice (NaN and masked values not drawn).
    gid : str
        SVG id of the image layer.
    **kwargs
        Passed to ``imshow`` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns
    -------
    matplotlib.image.AxesImage
        The drawn image.
    """
    data = np.ma.masked_invalid(np.ma.asarray(plane, dtype=float))  # keeps overlay masks
    im = ax.imshow(data.T, origin="lower", interpolation="nearest", **kwargs)
    im.set_gid(gid)
    ax.set_axis_off()  # no ticks or frame (drawing them costs more than the image)
    return im


def edge_map(image: np.ndarray, percentile: float = 92.0) -> np.ndarray:
    """Binary edges of a 2-D image: Sobel gradient magnitude above a percentile.

    Parameters
    ----------
    image : ndarray of shape (nx, ny)
        One slice.
    percentile : float, optional
        Percentile (0-100) of the gradient magnitude over the non-zero pixels above which a
        pixel is an edge.

    Returns
    -------
    ndarray of bool, shape (nx, ny)
        The edges.
    """
    img = np.nan_to_num(np.asarray(image, dtype=float))
    mag = np.hypot(ndimage.sobel(img, 0), ndimage.sobel(img, 1))
    vals = mag[img > 0]
    if vals.size == 0 or not np.any(vals > 0):
        return np.zeros(img.shape, bool)
    return mag > np.percentile(vals, percentile)


# ---------------------------------------------------------------------------------------------
# group figures
# ---------------------------------------------------------------------------------------------

def finish_grid(fig: Figure, unused, xlabel: str | None, ylabel: str) -> Figure:
    """Hide the unused panels of a grid and label the figure's axes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    unused : iterable of Axes
        Panels without data.
    xlabel : str or None
        Common x label (None: none).
    ylabel : str
        Common y label.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    for ax in unused:
        ax.set_axis_off()
    if xlabel:
        fig.supxlabel(xlabel, fontsize=10)
    fig.supylabel(ylabel, fontsize=10)
    return fig


def _jitter(n: int, seed: int, width: float = 0.12) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


def significance_text(p: float | None, alpha: float = 0.05) -> str:
    """Text of a p-value with its significance mark.

    Parameters
    ----------
    p : float or None
        The p-value.
    alpha : float, optional
        Significance level.

    Returns
    -------
    str
        ``p = 0.012 *`` (``*`` below ``alpha``), ``p < 0.001 *``, or "" for no p.
    """
    if p is None or not np.isfinite(p):
        return ""
    star = " *" if p < alpha else ""
    return f"p < 0.001{star}" if p < 0.001 else f"p = {p:.3f}{star}"


def group_distribution_figure(data: pd.DataFrame, region: str, groups: Sequence[str], *,
                              value_column: str = "r2star_agecorr",
                              ylabel: str = "age-corrected R2* (1/s)",
                              pvalues: dict[str, float] | None = None,
                              alpha: float = 0.05) -> Figure:
    """The seed's Figure 2: one region's values per group, box plot plus individual points.

    Groups without data are drawn as empty slots, named in the title.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant, columns ``group`` and ``value_column``.
    region : str
        Canonical region (title).
    groups : sequence of str
        Groups in drawing order.
    value_column : str, optional
        Column drawn (s^-1).
    ylabel : str, optional
        y-axis label.
    pvalues : dict of str to float, optional
        Group -> p of the comparison with the controls (e.g. Mann-Whitney from Table 2),
        written above the groups.
    alpha : float, optional
        ``*`` marks p < ``alpha``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    data = data[np.isfinite(pd.to_numeric(data[value_column], errors="coerce"))]
    if data.empty:
        raise FigureDataError(f"{region}: no {value_column} values")
    colors = group_colors(groups)
    fig = new_figure(max(4.6, 1.0 * len(groups) + 1.4), 3.9, left=0.19, right=0.97,
                     bottom=0.17, top=0.84)
    ax = fig.add_subplot()
    ax.set_gid(f"axes-{region}")
    missing = []
    pvalues = pvalues or {}
    for i, g in enumerate(groups):
        vals = data.loc[data["group"] == g, value_column].to_numpy(float)
        if vals.size == 0:
            missing.append(g)
            continue
        box = ax.boxplot([vals], positions=[i], widths=0.5, patch_artist=True,
                         showfliers=False)
        for patch in box["boxes"]:
            patch.set(facecolor=colors[g], alpha=0.25, edgecolor=colors[g], gid=f"box-{g}")
        for part in ("medians", "whiskers", "caps"):
            for line in box[part]:
                line.set_color(colors[g])
        (pts,) = ax.plot(i + _jitter(vals.size, i), vals, "o", ls="", ms=4.5,
                         color=colors[g], alpha=0.85)
        pts.set_gid(f"points-{g}")
        label = significance_text(pvalues.get(g), alpha)
        if label:
            txt = ax.annotate(label.replace(" *", "*"), (i, 1.0),
                              xycoords=("data", "axes fraction"), xytext=(0, 3),
                              textcoords="offset points", ha="center", va="bottom", fontsize=9,
                              fontweight="bold" if label.endswith("*") else "normal")
            txt.set_gid(f"p-{g}")
    ax.set_xticks(range(len(groups)),
                  [f"{g}\n(n={int((data['group'] == g).sum())})" for g in groups], fontsize=10)
    ax.tick_params(axis="y", labelsize=10)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel, fontsize=10)
    title = region_title(region)
    if missing:
        title += f"  (no data: {', '.join(missing)})"
    ax.set_title(title, fontsize=11, pad=18 if pvalues else 6)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _fit_panel(ax, x: np.ndarray, y: np.ndarray, color: str, name: str,
               groups: np.ndarray | None = None,
               colors: dict[str, str] | None = None) -> float | None:
    """Scatter ``y`` against ``x`` with the least-squares line; returns Pearson r (or None).

    With ``groups`` the points are drawn (and given SVG ids ``points-{name}-{group}``) per
    group in ``colors``; the line and r are over all points.
    """
    if groups is None:
        (pts,) = ax.plot(x, y, "o", ls="", ms=5, color=color, alpha=0.85)
        pts.set_gid(f"points-{name}")
    else:
        for g in pd.unique(groups):
            sel = groups == g
            (pts,) = ax.plot(x[sel], y[sel], "o", ls="", ms=5, alpha=0.85, label=str(g),
                             color=(colors or {}).get(str(g), color))
            pts.set_gid(f"points-{name}-{g}")
        ax.legend(fontsize=9, loc="best", frameon=False, handletextpad=0.2)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        ax.set_title(f"{name}: n = {x.size}, too few for r", fontsize=10)
        return None
    slope, intercept = np.polyfit(x, y, 1)
    from scipy import stats

    r, p = stats.pearsonr(x, y)
    xs = np.linspace(x.min(), x.max(), 50)
    (line,) = ax.plot(xs, intercept + slope * xs, "-", color="black" if groups is not None
                      else color, lw=1.5)
    line.set_gid(f"fit-{name}")
    ax.set_title(f"{name}: r = {r:.2f} ({significance_text(p)}), n = {x.size}", fontsize=10)
    return float(r)


def volume_correlation_figure(data: pd.DataFrame, region: str, *, control_label: str = "HC",
                              volume_column: str = "cortical_gm_cm3",
                              value_column: str = "r2star_agecorr",
                              xlabel: str = "cortical GM volume (cm³)",
                              ylabel: str = "age-corrected R2* (1/s)",
                              groups: Sequence[str] | None = None) -> Figure:
    """The seed's Figure 3: volume vs age-corrected R2*, (a) controls and (b) patients.

    Each panel has its regression line and Pearson r in the title; patients are coloured by
    group (colours as in Figure 2, order ``groups``).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant with ``group``, ``volume_column`` (cm^3) and ``value_column``
        (s^-1).
    region : str
        Canonical region (title).
    control_label : str, optional
        The controls' group label.
    volume_column, value_column : str, optional
        Columns on x and y.
    xlabel, ylabel : str, optional
        Axis labels.
    groups : sequence of str, optional
        Patient groups in colour order.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    x = pd.to_numeric(data[volume_column], errors="coerce")
    y = pd.to_numeric(data[value_column], errors="coerce")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        raise FigureDataError(f"{region}: no participant has both {volume_column} "
                              f"and {value_column}")
    order = list(groups) if groups else [control_label] + sorted(
        set(data["group"].astype(str)) - {control_label})
    colors = group_colors(order)
    fig = new_figure(9.6, 4.0, left=0.1, right=0.98, bottom=0.14, top=0.9, wspace=0.08)
    axes = fig.subplots(1, 2, sharey=True)
    is_hc = (data["group"] == control_label).to_numpy()
    for ax, sel, name in ((axes[0], is_hc, "controls"), (axes[1], ~is_hc, "patients")):
        ax.set_gid(f"axes-{name}")
        m = ok.to_numpy() & sel
        if not m.any():
            ax.set_title(f"{name}: no data", fontsize=10)
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    fontsize=10)
        elif name == "controls":
            _fit_panel(ax, x[m].to_numpy(float), y[m].to_numpy(float),
                       colors.get(control_label, GROUP_COLORS[0]), name)
        else:
            _fit_panel(ax, x[m].to_numpy(float), y[m].to_numpy(float), GROUP_COLORS[2], name,
                       groups=data["group"].astype(str).to_numpy()[m], colors=colors)
        ax.set_xlabel(xlabel, fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{region_title(region)}\n{ylabel}", fontsize=10)
    return fig


def saturation_curve(age: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """R2* = a·(1 − exp(−b·age)) + c.

    Parameters
    ----------
    age : ndarray
        Ages in years.
    a, b, c : float
        Amplitude (s^-1), rate (1/years) and offset (s^-1).

    Returns
    -------
    ndarray
        R2* in s^-1, shape of ``age``.
    """
    return a * (1.0 - np.exp(-b * np.asarray(age, float))) + c


def model_curve(row: pd.Series, age: np.ndarray) -> np.ndarray | None:
    """R2* of an ``agefit.tsv`` row's model at ``age``.

    ``model`` "saturation": a·(1 − exp(−b·age)) + c; "linear" (fallback): c + slope·age.

    Parameters
    ----------
    row : pandas.Series
        One ``agefit.tsv`` row.
    age : ndarray
        Ages in years.

    Returns
    -------
    ndarray or None
        R2* in s^-1, shape of ``age``; None when the row has no usable model.
    """
    def num(key: str) -> float:
        try:
            return float(row.get(key, np.nan))
        except (TypeError, ValueError):
            return np.nan

    model = str(row.get("model", "saturation"))
    a, b, c, slope = num("a"), num("b"), num("c"), num("slope")
    if model == "saturation" and np.isfinite([a, b, c]).all():
        return saturation_curve(age, a, b, c)
    if model == "linear" and np.isfinite([c, slope]).all():
        return c + slope * np.asarray(age, float)
    return None


def age_curves_figure(controls: pd.DataFrame, agefit: pd.DataFrame | None,
                      reference_age: float | None, regions: Sequence[str],
                      bands: dict | None = None) -> Figure:
    """Control R2* against age per region, the fitted age curve and the reference age.

    The curve is drawn over the band's ages, dashed outside the controls' age range
    (extrapolation).

    Parameters
    ----------
    controls : pandas.DataFrame
        Long table with ``region``, ``age`` (years), ``r2star_mean`` (s^-1).
    agefit : pandas.DataFrame or None
        One row per region with ``model`` and ``a``, ``b``, ``c`` or ``slope`` (missing
        regions: points only).
    reference_age : float or None
        Drawn as a vertical line (years).
    regions : sequence of str
        Panels, in order.
    bands : dict, optional
        Region -> ``{"age", "low", "high"}``, the pointwise 95 % bootstrap band of the curve
        (``stats.json`` → ``age_model.bands``).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    if controls.empty:
        raise FigureDataError("no control R2* values with an age")
    ncol = min(4, len(regions))
    nrow = int(np.ceil(len(regions) / ncol))
    fig = new_figure(2.85 * ncol, 2.8 * nrow, left=0.08, right=0.99, bottom=0.1, top=0.93,
                     wspace=0.3, hspace=0.42)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    fits = agefit.set_index("region") if agefit is not None and "region" in agefit else None
    for ax, region in zip(axes, regions, strict=False):
        ax.set_gid(f"axes-{region}")
        d = controls[controls["region"] == region]
        age, y = d["age"].to_numpy(float), d["r2star_mean"].to_numpy(float)
        ok = np.isfinite(age) & np.isfinite(y)
        (pts,) = ax.plot(age[ok], y[ok], "o", ls="", ms=3.5, color=GROUP_COLORS[0], alpha=0.8)
        pts.set_gid(f"points-{region}")
        band = (bands or {}).get(region)
        if band is not None and len(band.get("age", ())) > 1:
            fill = ax.fill_between(np.asarray(band["age"], float),
                                   np.asarray(band["low"], float),
                                   np.asarray(band["high"], float), color="grey", alpha=0.3,
                                   lw=0)
            fill.set_gid(f"band-{region}")
        if fits is not None and region in fits.index and ok.any():
            lo, hi = age[ok].min(), age[ok].max()
            span = np.asarray(band["age"], float) if band is not None else np.array([lo, hi])
            for part, xs, style in (("", np.linspace(lo, hi, 80), "-"),
                                    ("-below", np.linspace(min(span.min(), lo), lo, 20), "--"),
                                    ("-above", np.linspace(hi, max(span.max(), hi), 20), "--")):
                # a straight line is held at the controls' range, not extrapolated
                held = str(fits.loc[region].get("model")) == "linear"
                model_y = model_curve(fits.loc[region], np.clip(xs, lo, hi) if held else xs)
                if model_y is None or (part and np.ptp(xs) == 0):
                    continue
                (curve,) = ax.plot(xs, model_y, style, color="black", lw=1.3)
                curve.set_gid(f"curve-{region}{part}")
        if reference_age is not None and np.isfinite(reference_age):
            ref = ax.axvline(reference_age, color="grey", ls="--", lw=1)
            ref.set_gid(f"refage-{region}")
        ax.set_title(region_title(region), fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    return finish_grid(fig, axes[len(regions):], "age (years)", "control R2* (1/s)")


def site_figure(controls: pd.DataFrame, regions: Sequence[str]) -> Figure:
    """Control R2* per site and region: points with the site mean as a bar.

    Parameters
    ----------
    controls : pandas.DataFrame
        Long table with ``region``, ``site``, ``r2star_mean`` (s^-1).
    regions : sequence of str
        Panels, in order.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    if controls.empty or "site" not in controls:
        raise FigureDataError("no control R2* values with a site")
    sites = sorted(controls["site"].dropna().astype(str).unique())
    if not sites:
        raise FigureDataError("no site recorded for any control")
    colors = group_colors(sites)
    ncol = min(4, len(regions))
    nrow = int(np.ceil(len(regions) / ncol))
    fig = new_figure(min(11.5, max(2.85, 0.45 * len(sites) + 1.6) * ncol), 3.0 * nrow,
                     left=0.08, right=0.99, bottom=0.16, top=0.93, wspace=0.3, hspace=0.7)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, region in zip(axes, regions, strict=False):
        ax.set_gid(f"axes-{region}")
        d = controls[controls["region"] == region]
        for i, site in enumerate(sites):
            vals = d.loc[d["site"].astype(str) == site, "r2star_mean"].to_numpy(float)
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                continue
            (pts,) = ax.plot(i + _jitter(vals.size, i, 0.15), vals, "o", ls="", ms=3.5,
                             color=colors[site], alpha=0.8)
            pts.set_gid(f"points-{region}-{site}")
            ax.hlines(vals.mean(), i - 0.3, i + 0.3, color="black", lw=1.5)
        ax.set_xticks(range(len(sites)), sites, rotation=45, fontsize=9)
        ax.set_title(region_title(region), fontsize=10)
        ax.tick_params(axis="y", labelsize=9)
        ax.grid(axis="y", alpha=0.3)
    return finish_grid(fig, axes[len(regions):], None, "control R2* (1/s)")


class FigureJob:
    """A figure to make later: id, title, caption, file stem and a builder ``() -> Figure``.

    Building is deferred so that the caller can catch and report a failing figure without
    losing the others.
    """

    def __init__(self, id: str, title: str, caption: str, stem: str, build):
        self.id, self.title, self.caption, self.stem, self.build = id, title, caption, stem, build

    def __repr__(self) -> str:
        return f"FigureJob({self.id!r})"


def longitudinal_figure(scans: pd.DataFrame, rates: pd.DataFrame, region: str,
                        groups: Sequence[str], *, value_column: str = "r2star_mean") -> Figure:
    """Spaghetti plot of one region: each participant's R2* over time and the group slopes.

    Parameters
    ----------
    scans : pandas.DataFrame
        One row per scan: ``participant_id``, ``group``, ``years`` (since the first scan) and
        ``value_column`` (R2*, s^-1).
    rates : pandas.DataFrame
        ``group``, ``r2star_change_per_year``, ``ci_low``, ``ci_high`` (s^-1/year) for this
        region (``longitudinal.tsv`` rows).
    region : str
    groups : sequence of str
        Group order (colours).

    Returns
    -------
    matplotlib.figure.Figure
        Thin lines: participants; thick line: the group's mean baseline value plus the
        mixed-model annual change (legend: change and 95 % CI).
    """
    data = scans[np.isfinite(pd.to_numeric(scans[value_column], errors="coerce"))]
    if data.empty:
        raise FigureDataError(f"{region}: no {value_column} values over time")
    colors = group_colors(groups)
    fig = new_figure(5.6, 3.8, left=0.13, right=0.97, bottom=0.14, top=0.9)
    ax = fig.add_subplot()
    ax.set_gid(f"axes-{region}")
    for (g, pid), d in data.sort_values("years").groupby(["group", "participant_id"]):
        (line,) = ax.plot(d["years"], d[value_column], "-o", lw=0.8, ms=2.5,
                          color=colors.get(g, "#8c8c8c"), alpha=0.35)
        line.set_gid(f"participant-{pid}")
    t_max = float(data["years"].max())
    for row in rates.itertuples():
        g = row.group
        d = data[data["group"] == g]
        if d.empty:
            continue
        first = d.loc[d.groupby("participant_id")["years"].idxmin(), value_column].mean()
        t = np.array([0.0, t_max])
        (line,) = ax.plot(t, first + row.r2star_change_per_year * t, lw=2.5,
                          color=colors.get(g, "#8c8c8c"),
                          label=f"{g}: {row.r2star_change_per_year:+.2f} "
                                f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}] /s/year")
        line.set_gid(f"slope-{g}")
    ax.set_xlabel("years since first scan")
    ax.set_ylabel("R2* (1/s)")
    ax.set_title(region_title(region), fontsize=11)
    ax.grid(alpha=0.3)
    if len(rates):
        ax.legend(fontsize=7, loc="best", frameon=False)
    return fig
