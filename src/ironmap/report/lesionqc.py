"""Lesion QC block of a participant page: lesion outlines over FLAIR, with count and load.

Small and separate from :mod:`ironmap.report.subject` so that pages can add it as one
section: :func:`lesion_qc_figure` (arrays in, Figure out) and :func:`lesion_qc_caption`.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from ironmap.report import figures as F


def lesion_qc_figure(flair: np.ndarray, mask: np.ndarray, *, n_slices: int = 4,
                     title: str = "") -> Figure:
    """Axial FLAIR slices through the lesions with each lesion's outline in colour.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR in (closest) RAS+ voxel order.
    mask : ndarray of shape (X, Y, Z)
        Lesion mask on the same grid (non-zero = lesion).
    n_slices : int
        Slices spread over the lesions' extent (over the volume when there are none).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (Agg canvas, no pyplot state).
    """
    flair = F.check_volume("FLAIR", flair)
    mask = np.asarray(mask) != 0
    if mask.shape != flair.shape:
        raise F.FigureDataError(f"grids differ: FLAIR {flair.shape} vs mask {mask.shape}")
    ks = F.spread_slices(mask if mask.any() else None, flair.shape, n_slices)
    lo, hi = F.robust_range(flair, 1, 99.5)
    fig = F.new_figure(3.0 * len(ks), 3.3, left=0.01, right=0.99, bottom=0.02, top=0.84,
                       wspace=0.04)
    axes = np.atleast_1d(fig.subplots(1, len(ks)))
    for ax, k in zip(axes, ks, strict=True):
        F.show_plane(ax, flair[:, :, k], gid=f"image-flair-{k}", cmap="gray", vmin=lo, vmax=hi)
        plane = mask[:, :, k]
        rim = (plane & ~ndimage.binary_erosion(plane)).astype(float)
        F.show_plane(ax, np.ma.masked_equal(rim, 0), gid=f"image-lesions-{k}", cmap="autumn",
                vmin=0, vmax=1)
        ax.set_title(f"z = {k}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def lesion_qc_caption(count: int | None, load_cm3: float | None, source: str | None) -> str:
    """One line under the figure: how many lesions, how much, and who outlined them.

    Parameters
    ----------
    count : int or None
        Number of lesions.
    load_cm3 : float or None
        Lesion load in cm³.
    source : str or None
        Where the mask came from (``rater``, ``automatic``).

    Returns
    -------
    str
        The caption.
    """
    if count is None or load_cm3 is None:
        return "No lesion mask."
    who = {"automatic": "automatic segmentation (ironmap lesions segment)",
           "rater": "rater mask"}.get(source or "", source or "unknown source")
    return f"{int(count)} lesions, T2 lesion load {float(load_cm3):.2f} cm³ ({who})."
