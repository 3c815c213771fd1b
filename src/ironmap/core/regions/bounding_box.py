"""Bounding box of a mask, grown by a margin and clipped to the array."""

from __future__ import annotations

import numpy as np


def mask_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of the true voxels of ``mask``, grown by ``margin`` voxels per side.

    Parameters
    ----------
    mask : ndarray
        Any number of dimensions; non-zero voxels count.
    margin : int, optional
        Voxels added on every side, clipped to the array.

    Returns
    -------
    tuple of slice or None
        One slice per axis; None when the mask is empty (callers choose what an empty mask
        means: nothing to do, or the whole grid).
    """
    mask = np.asarray(mask)
    margin = int(margin)
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        out.append(slice(max(0, int(hit[0]) - margin),
                         min(mask.shape[axis], int(hit[-1]) + margin + 1)))
    return tuple(out)
