"""Label colours, overlay colours and the slices of the flagged-voxel map.

One colour per label value (:func:`label_colors`), shared by the participant page's figures
(:mod:`.pageimages`), their legends and the page's viewer; arrays are 3-D in closest-RAS voxel
order (see :mod:`.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ironmap.report.colortables import TAB20
from ironmap.report.figures import FigureDataError, check_volume, spread_slices

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
    vals = sorted(int(v) for v in values if int(v) != 0)
    return {v: TAB20[i % 20] for i, v in enumerate(vals)}


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
