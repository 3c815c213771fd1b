"""Brain mask of a T1w from its tissue segmentation, and its transport to the R2* grid.

The mask is where the GM + WM + CSF fractions of
:func:`ironmap.spatial.segmentation.segment_tissues` sum to at least one half (CSF counted
within 3 mm of the registered template brain: ventricles, sulci and the CSF around the brain),
closed by 2 mm, its holes filled and reduced to its largest connected body. The segmentation
itself starts the brain-only template at the brain's place found from the top of the head
(:mod:`ironmap.spatial.headpose`), so raw heads with neck and face, defaced heads, skull-stripped
images and 2D clinical T1w with thick slices take the same route.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage


def brain_mask(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, voxel_sizes,
               closing_mm: float = 2.0) -> np.ndarray:
    """Brain mask (bool, shape of the fractions) from tissue fractions (see module notes).

    Parameters
    ----------
    gm, wm, csf : ndarray of shape (X, Y, Z)
        Tissue fractions (0-1, 0 outside the brain).
    voxel_sizes : sequence of 3 float
        Voxel edge lengths in mm.
    closing_mm : float, optional
        Size of the morphological closing (mm; rounded to voxel steps).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The brain mask.
    """
    mask = (np.nan_to_num(gm) + np.nan_to_num(wm) + np.nan_to_num(csf)) >= 0.5
    if not mask.any():
        return mask
    steps = max(1, int(round(closing_mm / float(np.min(voxel_sizes[:3])))))
    padded = np.pad(mask, steps + 1)
    padded = ndimage.binary_closing(padded, ndimage.generate_binary_structure(3, 1),
                                    iterations=steps)
    mask = padded[(slice(steps + 1, -(steps + 1)),) * 3]
    mask = ndimage.binary_fill_holes(mask)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
        mask = lab == 1 + int(np.argmax(sizes))
    return mask


def mask_on_grid(mask: np.ndarray, affine: np.ndarray, target: nib.Nifti1Image,
                 world_to_source: np.ndarray | None = None) -> np.ndarray:
    """A binary mask carried onto ``target``'s grid (nearest voxel).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The mask on ``affine``'s grid.
    affine : ndarray of shape (4, 4)
        Its voxel -> world matrix (mm, RAS+).
    target : nibabel.Nifti1Image
        The grid of the result.
    world_to_source : ndarray of shape (4, 4), optional
        Target world mm -> mask world mm (identity when None).

    Returns
    -------
    ndarray of bool
        The mask on the target grid (shape of ``target``).
    """
    from ironmap.spatial.grid import resample_labels

    src = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), affine)
    return resample_labels(src, target, world_to_source) > 0
