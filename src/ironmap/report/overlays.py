"""Participant figures with region labels, lesions and flagged voxels, and label colours.

One colour per label value (:func:`label_colors`), shared by the figures, their legends and
the page's viewer; arrays are 3-D in closest-RAS voxel order (see :mod:`.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ironmap.report.figures import (
    FigureDataError,
    check_volume,
    finish_grid,
    grey_row,
    new_figure,
    robust_range,
    show_plane,
    spread_slices,
)

if TYPE_CHECKING:  # drawn figures only: see ironmap.report.figures
    from matplotlib.figure import Figure

#: colour of flagged voxels and lesion outlines
FLAG_COLOR = "#e31a1c"
LESION_COLOR = "#00e5ff"


def label_colors(values: Sequence[int]) -> dict[int, str]:
    """A distinct colour per label value.

    In tab20 order: label pairs left/right get a dark and a light shade of one hue; more than 20
    labels repeat.

    Parameters
    ----------
    values : sequence of int
        Label values (0 ignored).

    Returns
    -------
    dict of int to str
        Label -> hex colour.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    vals = sorted(int(v) for v in values if int(v) != 0)
    return {v: to_hex(cmap(i % 20)) for i, v in enumerate(vals)}


def _label_cmap(colors: dict[int, str]):
    """(colormap, norm) drawing each label value in its colour of ``colors``."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    vals = sorted(colors)
    if not vals:
        vals, colors = [1], {1: "#1f77b4"}
    bounds = [v - 0.5 for v in vals] + [vals[-1] + 0.5]
    return ListedColormap([colors[v] for v in vals]), BoundaryNorm(bounds, len(vals))


def show_labels(ax, plane: np.ndarray, colors: dict[int, str], *, gid: str,
                 alpha: float = 0.7):
    """Draw a label plane; values not in ``colors`` are not drawn.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    plane : ndarray of int, shape (nx, ny)
        One axial slice of labels.
    colors : dict of int to str
        Label -> colour.
    gid : str
        SVG id of the layer.
    alpha : float, optional
        Opacity.

    Returns
    -------
    matplotlib.image.AxesImage
        The drawn layer.
    """
    cmap, norm = _label_cmap(colors)
    lab = np.asarray(plane)
    data = np.ma.masked_where(~np.isin(lab, list(colors)), lab.astype(float))
    return show_plane(ax, data, gid=gid, cmap=cmap, norm=norm, alpha=alpha)


def label_legend(fig: Figure, colors: dict[int, str], names: dict[int, str] | None,
                 ncol: int = 4, y: float = 0.0) -> None:
    """A legend of the drawn labels (colour patch + name) along the bottom of ``fig``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    colors : dict of int to str
        Label -> colour.
    names : dict of int to str, optional
        Label -> name (the number when absent).
    ncol : int, optional
        Legend columns.
    y : float, optional
        Vertical position (fraction of the figure).
    """
    from matplotlib.patches import Patch

    if not colors:
        return
    handles = [Patch(facecolor=c, edgecolor="none",
                     label=(names or {}).get(v, f"label {v}")) for v, c in colors.items()]
    leg = fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9,
                     frameon=False, bbox_to_anchor=(0.5, y), handlelength=1.2,
                     columnspacing=1.0)
    leg.set_gid("legend-labels")



def regions_lesions_figure(r2star: np.ndarray, labels: np.ndarray | None,
                           lesion: np.ndarray | None, *, n_slices: int = 4,
                           r2star_range: tuple[float, float] | None = None,
                           label_names: dict[int, str] | None = None,
                           title: str = "") -> Figure:
    """Region labels (one colour each, legend) and lesion outlines (cyan) on axial R2* slices.

    Parameters
    ----------
    r2star : ndarray of shape (nx, ny, nz)
        R2* map in s^-1.
    labels : ndarray of int, shape (nx, ny, nz), or None
        Region labels on the R2* grid.
    lesion : ndarray of bool, shape (nx, ny, nz), or None
        Lesion mask on the R2* grid.
    n_slices : int, optional
        Panels.
    r2star_range : (float, float), optional
        Grey range in s^-1.
    label_names : dict of int to str, optional
        Names for the legend.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    r2star = check_volume("R2* map", r2star)
    if labels is None and lesion is None:
        raise FigureDataError("neither region labels nor a lesion mask are available")
    union = np.zeros(r2star.shape, bool)
    for m in (labels, lesion):
        if m is not None:
            union |= np.asarray(m) != 0
    ks = spread_slices(union, r2star.shape, n_slices)
    vmin, vmax = r2star_range or (0.0, robust_range(r2star, 1, 99)[1])
    colors = label_colors(np.unique(labels)) if labels is not None else {}
    shown = set()
    if labels is not None:
        shown = {int(v) for v in np.unique(np.asarray(labels)[:, :, ks]) if v != 0}
    colors = {v: c for v, c in colors.items() if v in shown}  # legend = what is drawn
    has_lesion = lesion is not None and any(np.any(lesion[:, :, k]) for k in ks)
    n_leg = len(colors) + int(has_lesion)
    fig = new_figure(2.8 * len(ks), 3.3 + 0.25 * int(np.ceil(n_leg / 5)), left=0.01,
                     right=0.99, bottom=0.06 + 0.07 * int(np.ceil(n_leg / 5)), top=0.88,
                     wspace=0.04)
    axes = np.atleast_1d(fig.subplots(1, len(ks)))
    for ax, k in zip(axes, ks, strict=True):
        show_plane(ax, r2star[:, :, k], gid=f"image-r2star-{k}", cmap="gray", vmin=vmin, vmax=vmax)
        if labels is not None and colors:
            show_labels(ax, labels[:, :, k], colors, gid=f"image-labels-{k}", alpha=0.65)
        if lesion is not None and np.any(lesion[:, :, k]):
            ax.contour(np.asarray(lesion[:, :, k] != 0, float).T, levels=[0.5],
                       colors=LESION_COLOR, linewidths=1.0, origin="lower")
        ax.set_title(f"z = {k}", fontsize=10)
    label_legend(fig, colors, label_names, ncol=5)
    if has_lesion:
        from matplotlib.lines import Line2D

        leg = fig.legend(handles=[Line2D([], [], color=LESION_COLOR, lw=2, label="lesion")],
                         loc="upper right", fontsize=9, frameon=False)
        leg.set_gid("legend-lesion")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig



def region_histograms_figure(r2star: np.ndarray, labels: np.ndarray,
                             flags: np.ndarray | None = None,
                             label_names: dict[int, str] | None = None,
                             invalid_bits: int = 0) -> Figure:
    """Histogram of R2* (s^-1) in each label: the voxels its regional mean is made of.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        s^-1, NaN where the fit failed.
    labels : ndarray of shape (X, Y, Z) of int
        Region labels (eroded), 0 = background.
    flags : ndarray of shape (X, Y, Z) of uint16, optional
        Fit flags; voxels with any of ``invalid_bits`` are left out (as in the regional mean).
    label_names : dict of int to str, optional
        Panel titles by label.
    invalid_bits : int, optional
        Flag bits that exclude a voxel.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    r2star = check_volume("R2* map", r2star)
    labels = check_volume("region labels", labels)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise FigureDataError("no labelled voxels")
    valid = np.isfinite(r2star)
    if flags is not None and invalid_bits:
        valid &= (np.asarray(flags, np.uint16) & np.uint16(invalid_bits)) == 0
    colors = label_colors(values)
    ncol = min(4, len(values))
    nrow = int(np.ceil(len(values) / ncol))
    fig = new_figure(2.7 * ncol + 0.4, 2.2 * nrow + 0.4, left=0.07, right=0.99, bottom=0.12,
                     top=0.92, wspace=0.3, hspace=0.75)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, v in zip(axes, values, strict=False):
        vals = r2star[(labels == v) & valid]
        name = (label_names or {}).get(v, f"label {v}")
        ax.set_gid(f"hist-{v}")
        if vals.size:
            # one filled step outline per panel: far cheaper to draw than a bar per bin
            counts, edges = np.histogram(vals, bins=min(30, max(5, vals.size // 4)))
            ax.stairs(counts, edges, fill=True, color=colors[v])
            ax.axvline(float(np.mean(vals)), color="black", lw=1.2)
            ax.set_title(f"{name}\nmean {np.mean(vals):.1f}, n = {vals.size}", fontsize=9)
        else:
            ax.set_title(f"{name}\nno valid voxels", fontsize=9)
        ax.tick_params(labelsize=9)
    return finish_grid(fig, axes[len(values):], "R2* (1/s); line = mean", "voxels")


def flagged_slices(background: np.ndarray, flagged: np.ndarray, head: np.ndarray | None,
                   n_slices: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The flagged voxels inside the head and the slices that show them.

    Half the slices are spread over the head, half are those with most flagged voxels.

    Parameters
    ----------
    background : ndarray of shape (nx, ny, nz)
        First-echo magnitude.
    flagged : ndarray of bool, shape (nx, ny, nz)
        Flagged voxels.
    head : ndarray of bool, shape (nx, ny, nz) or None
        Only flagged voxels inside it count.
    n_slices : int
        Slices wanted.

    Returns
    -------
    background : ndarray of shape (nx, ny, nz)
        The checked image.
    inside : ndarray of bool, shape (nx, ny, nz)
        Flagged voxels in the head.
    slices : list of int
        Axial slices, ascending.
    """
    background = check_volume("GRE echo 1", background)
    flagged = np.asarray(check_volume("fit flags", flagged), bool)
    if flagged.shape != background.shape:
        raise FigureDataError(f"grids differ: {background.shape} vs {flagged.shape}")
    inside = flagged if head is None else flagged & np.asarray(head, bool)
    ks = spread_slices(head if head is not None else background > 0, background.shape,
                       n_slices)
    if inside.any():  # prefer slices that show flagged voxels
        counts = inside.sum(axis=(0, 1))
        ks = sorted(set(ks[: n_slices // 2])
                    | {int(k) for k in np.argsort(counts)[::-1][: n_slices - n_slices // 2]})
    return background, inside, ks


def flagged_voxels_figure(background: np.ndarray, flagged: np.ndarray,
                          head: np.ndarray | None = None, labels: np.ndarray | None = None,
                          *, n_slices: int = 4) -> Figure:
    """Voxels whose R2* fit was flagged invalid (red) on the first echo, with region outlines.

    Parameters
    ----------
    background : ndarray of shape (nx, ny, nz)
        First-echo magnitude.
    flagged : ndarray of bool, shape (nx, ny, nz)
        Flagged voxels.
    head : ndarray of bool, shape (nx, ny, nz), optional
        Only flagged voxels inside it are drawn and counted.
    labels : ndarray of int, shape (nx, ny, nz), optional
        Region labels drawn as outlines.
    n_slices : int, optional
        Panels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    background, inside, ks = flagged_slices(background, flagged, head, n_slices)
    from matplotlib.colors import ListedColormap

    fig, axes = grey_row(background, ks, "echo1", 2.8, 3.4, 0.8)
    for ax, k in zip(axes, ks, strict=True):
        plane = np.ma.masked_equal(inside[:, :, k].astype(float), 0)
        show_plane(ax, plane, gid=f"image-flagged-{k}", cmap=ListedColormap([FLAG_COLOR]), vmin=0,
              vmax=1, alpha=0.9)
        if labels is not None and np.any(labels[:, :, k]):
            ax.contour(np.asarray(labels[:, :, k] != 0, float).T, levels=[0.5],
                       colors="#33a02c", linewidths=0.8, origin="lower")
        ax.set_title(f"z = {k}: {int(inside[:, :, k].sum())} flagged", fontsize=10)
    n_head = int(np.asarray(head, bool).sum()) if head is not None else inside.size
    frac = inside.sum() / n_head if n_head else float("nan")
    fig.suptitle(f"{int(inside.sum())} flagged voxels in the head ({100 * frac:.2f} %); "
                 "red = flagged, green = region outlines", fontsize=11)
    return fig
