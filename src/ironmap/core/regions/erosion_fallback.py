"""Erosion with a millimetre fallback for regions that the voxel erosion would (nearly) empty.

The seed erodes each region by one voxel (6-connected cross) on the R2* grid. At clinical
voxel sizes (3-4 mm) that empties small nuclei (substantia nigra, red nucleus). With a
fallback distance, a label (region and hemisphere) whose voxel erosion keeps fewer than
``min_voxels`` voxels is eroded by that distance in mm instead (voxel centres within the
distance of the region's outside removed, :func:`ironmap.core.regions.regional_values.erode_mm`);
every other label keeps its voxel erosion exactly. The choice rests on the label's shape
alone (voxel counts after erosion), never on R2*.
"""

from __future__ import annotations

import numpy as np

from ironmap.core.regions.names import COMPOSITE_REGIONS
from ironmap.core.regions.regional_values import _group_masks, erode_region, fall_back


def erode_labels_with_fallback(labels: np.ndarray, label_names: dict[int, str], *,
                               fallback_mm: float, min_voxels: int, voxel_sizes,
                               erosion_voxels: int = 1) -> tuple[np.ndarray, list[str]]:
    """A label image eroded per (region, hemisphere), with the mm fallback for small ones.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label indices (0 = background).
    label_names : dict of int to str
        Label index -> name; labels are grouped per ``(region, hemisphere)`` of their names
        (:func:`ironmap.core.regions.regional_values.region_key`).
    fallback_mm : float
        Erosion distance in mm for a group that ``erosion_voxels`` leaves with fewer than
        ``min_voxels`` voxels.
    min_voxels : int
        Least voxels an eroded group must keep.
    voxel_sizes : sequence of float
        Voxel sizes of the grid in mm.
    erosion_voxels : int
        Voxel steps of the regular erosion (6-connected cross; the seed's 1).

    Returns
    -------
    eroded : ndarray of shape (X, Y, Z), the dtype of ``labels``
        Eroded labels (0 where eroded away).
    used : list of str
        ``"<region> <hemisphere>"`` of the groups eroded by ``fallback_mm`` (then the
        composite regions whose parts are among them, e.g. ``"putamen left"``).
    """
    labels = np.asarray(labels)
    masks = _group_masks(labels, label_names)
    eroded = {key: erode_region(mask, erosion_voxels=erosion_voxels)
              for key, mask in masks.items()}
    used = fall_back(masks, eroded, fallback_mm, min_voxels, voxel_sizes)
    out = np.zeros_like(labels)
    for keep in eroded.values():
        out[keep] = labels[keep]
    composites = [(c, h) for c, parts in COMPOSITE_REGIONS.items()
                  for h in dict.fromkeys(h for r, h in used if r in parts)]
    return out, [f"{region} {hemi}" for region, hemi in [*used, *composites]]
