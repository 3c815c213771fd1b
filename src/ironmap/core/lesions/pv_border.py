"""Partial-volume border of grown lesions: trim each large lesion at a fraction of its contrast.

A region grown down to a low floor of a lesion's profile (the rim rule's 0.3) takes in a shell
of partial-volume voxels around large, bright lesions, which raters leave out. For a lesion
large enough to have a resolved plateau, its border lies at ``b + fraction * (P - b)`` (0.5:
a voxel holding as much lesion as white matter; 0.4 chosen on click draws 10-29), with ``b``
the local white-matter level (the histogram mode of the brain in a box around the lesion, as
for growing) and ``P`` a robust lesion level (a percentile of the grown region). Small
lesions have no plateau (their brightest voxels are themselves partial-volume mixtures), so
they keep their grown outline.
No click position is needed: everything is measured on the grown region.

Pure numpy/scipy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Partial-volume border as chosen on seed draws 10-29 of the open_ms patients (docs/lesions.md).
PV_BORDER = {"border_fraction": 0.4, "border_min_voxels": 100}


def pv_border(flair: np.ndarray, labels: np.ndarray, brain: np.ndarray, half_box,
              fraction: float, background, min_voxels: int = 100,
              percentile: float = 90.0) -> np.ndarray:
    """Trim each labelled lesion of at least ``min_voxels`` voxels at its partial-volume border.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities (image units).
    labels : ndarray of int, shape (X, Y, Z)
        Lesion number per voxel (0: none), e.g. :class:`GrowResult` ``labels``.
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask (for the local white-matter level).
    half_box : sequence of int
        Half edge, in voxels per axis, of the box around each lesion's bounding-box centre in
        which the local white-matter level is taken.
    fraction : float
        Voxels below ``b + fraction * (P - b)`` are dropped (0: none).
    background : callable
        ``background(flair, brain, box) -> float``, the local white-matter level (seeded
        growing passes its histogram mode, ``seeded_growing.local_background``).
    min_voxels : int, optional
        Lesions with fewer voxels are left as they are.
    percentile : float, optional
        ``P``, the lesion's robust level, as a percentile of its FLAIR.

    Returns
    -------
    ndarray of int, shape (X, Y, Z)
        The trimmed labels (the same numbers; each lesion keeps at least its brightest voxel).
    """
    img = np.asarray(flair, dtype=np.float64)
    out = np.array(labels, copy=True)
    half = np.asarray(half_box, dtype=int)
    shape = np.asarray(img.shape)
    for k, box in enumerate(ndimage.find_objects(out), start=1):
        if box is None:
            continue
        sel = out[box] == k
        if sel.sum() < min_voxels:
            continue
        centre = np.array([(s.start + s.stop) // 2 for s in box])
        lo, hi = np.maximum(centre - half, 0), np.minimum(centre + half + 1, shape)
        b = background(img, brain, tuple(slice(a, z) for a, z in zip(lo, hi, strict=True)))
        values = img[box][sel]
        level = b + fraction * (np.percentile(values, percentile) - b)
        trimmed = np.zeros_like(sel)
        level = min(level, values.max()) - 1e-9 * abs(level)  # at the level: kept
        trimmed[sel] = values < level
        out[box][trimmed] = 0  # basic slicing: a view of ``out``
    return out
