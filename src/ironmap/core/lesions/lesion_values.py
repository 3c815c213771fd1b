"""Lesion masks: connected lesions, lesion-wise R2*, and T2 lesion load.

Conventions
-----------
* **Connectivity.** Lesions are the connected components of the mask under 26-connectivity
  in 3D (voxels touching by a face, edge or corner belong to one lesion;
  ``scipy.ndimage.generate_binary_structure(3, 3)``), so that a lesion crossing slices
  obliquely is not split. ``connectivity=6`` (faces only) is available.
* **Lesion ids** are 1..n ordered by the position of each lesion's first voxel in C order
  (scipy's labelling order), which is deterministic for a given mask.
* **T2 lesion load** (seed definition): the lesion area in every slice of the FLAIR mask
  multiplied by the FLAIR slice thickness, summed over slices -- which equals the number of
  lesion voxels times the voxel volume on the FLAIR grid. It is computed on the FLAIR grid,
  never after resampling.
* **Lesion R2*** uses lesion voxels on the R2* grid whose R2* is finite and whose quality
  flag is 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

PER_LESION_COLUMNS = (
    "lesion_id", "n_voxels", "n_voxels_mask", "volume_cm3", "r2star_mean", "r2star_median",
    "centroid_i", "centroid_j", "centroid_k",
)

#: Data-dictionary entries (JSON sidecar) for the per-lesion and summary tables.
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "lesion_id": {"Description": "Connected lesion (26-connected components on the R2* grid)"},
    "n_voxels": {"Description": "Lesion voxels with a valid R2* (finite, quality flag 0)"},
    "n_voxels_mask": {"Description": "Lesion voxels on the R2* grid"},
    "volume_cm3": {"Description": "Lesion volume on the R2* grid (voxels x voxel volume)",
                   "Units": "cm3"},
    "r2star_mean": {"Description": "Mean R2* over the lesion's valid voxels", "Units": "1/s"},
    "r2star_median": {"Description": "Median R2* over the lesion's valid voxels",
                      "Units": "1/s"},
    "centroid_i": {"Description": "Lesion centroid, voxel index along the first axis"},
    "centroid_j": {"Description": "Lesion centroid, voxel index along the second axis"},
    "centroid_k": {"Description": "Lesion centroid, voxel index along the third axis"},
    "lesion_load_cm3": {"Description": "T2 lesion load: lesion area per FLAIR slice x slice "
                                       "thickness, summed (voxel count x voxel volume on the "
                                       "FLAIR grid)", "Units": "cm3"},
    "lesion_count": {"Description": "Number of connected lesions (26-connectivity)"},
    "lesion_r2star_mean": {"Description": "Mean R2* over all valid lesion voxels",
                           "Units": "1/s"},
    "lesion_r2star_median": {"Description": "Median R2* over all valid lesion voxels",
                             "Units": "1/s"},
}

_STRUCTURES = {
    26: ndimage.generate_binary_structure(3, 3),
    18: ndimage.generate_binary_structure(3, 2),
    6: ndimage.generate_binary_structure(3, 1),
}


def label_lesions(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Connected lesions of a 3D mask.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Lesion mask (non-zero = lesion).
    connectivity : {26, 18, 6}

    Returns
    -------
    labels : ndarray of shape (X, Y, Z), int32
        0 outside lesions, 1..n lesion ids.
    n : int
        Number of lesions.
    """
    if connectivity not in _STRUCTURES:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"lesion mask must be 3D, got shape {mask.shape}")
    labels, n = ndimage.label(mask != 0, structure=_STRUCTURES[connectivity])
    return labels.astype(np.int32, copy=False), int(n)


def lesion_load_cm3(mask_flair: np.ndarray, voxel_sizes_mm) -> float:
    """T2 lesion load in cm3 on the FLAIR grid (seed definition).

    Sum over slices of (lesion area in the slice, mm2) x (slice thickness, mm), which is the
    lesion voxel count times the voxel volume.

    Parameters
    ----------
    mask_flair : ndarray of shape (X, Y, Z)
        Lesion mask on the FLAIR grid (non-zero = lesion; NaN counts as no lesion).
    voxel_sizes_mm : sequence of 3 float
        FLAIR voxel edge lengths in mm (slice thickness included).

    Returns
    -------
    float
        Lesion load in cm3 (0.0 for an empty mask).
    """
    mask = np.nan_to_num(np.asarray(mask_flair, dtype=float)) != 0
    sizes = np.asarray(voxel_sizes_mm, dtype=float)[:3]
    if sizes.size != 3 or np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"voxel sizes must be 3 positive numbers in mm, got {voxel_sizes_mm}")
    if mask.ndim != 3:
        raise ValueError(f"lesion mask must be 3D, got shape {mask.shape}")
    return float(mask.sum()) * float(np.prod(sizes)) / 1000.0


def _valid(r2star: np.ndarray, flags) -> np.ndarray:
    valid = np.isfinite(r2star)
    if flags is not None:
        flags = np.asarray(flags)
        if flags.shape != r2star.shape:
            raise ValueError(f"flags shape {flags.shape} differs from R2* shape {r2star.shape}")
        valid &= flags == 0
    return valid


def lesion_centroids(labels: np.ndarray, ids: np.ndarray,
                     boxes: list[tuple[slice, ...] | None]) -> list[tuple[float, ...]]:
    """Each lesion's centroid in voxel indices, summed over the lesions' bounding box only.

    The same values as ``ndimage.center_of_mass(np.ones(labels.shape), labels, ids)``: the
    same voxels, in the same order, with the same (absolute) indices are summed, so the sums
    and quotients are the same numbers; the voxels outside every lesion's box are skipped.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Lesion ids (0 outside lesions), as :func:`label_lesions` returns them.
    ids : ndarray of int, shape (n,)
        The ids whose centroids are wanted (at least one).
    boxes : list of tuple of slice or None
        ``ndimage.find_objects(labels)``: each id's bounding box (None for an absent id).

    Returns
    -------
    list of tuple of float
        One ``(i, j, k)`` per id (NaN for an absent id, with numpy's warning).
    """
    present = [b for b in boxes if b is not None]
    if not present:
        return ndimage.center_of_mass(np.ones(labels.shape), labels, ids)
    box = tuple(slice(min(b[d].start for b in present), max(b[d].stop for b in present))
                for d in range(labels.ndim))
    sub = labels[box]
    ones = np.ones(sub.shape)
    normalizer = ndimage.sum_labels(ones, sub, ids)
    grids = np.ogrid[box]  # absolute voxel indices, as over the whole grid
    results = [ndimage.sum_labels(ones * grids[d].astype(float), sub, ids) / normalizer
               for d in range(labels.ndim)]
    return [tuple(v) for v in np.array(results).T]


def _per_lesion(r2star, labels, n, valid, voxel_cm3) -> pd.DataFrame:
    rows = []
    ids = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels, max_label=n)
    centroids = lesion_centroids(labels, ids, boxes) if n else []
    for lid, count, centroid, box in zip(ids, counts, centroids, boxes, strict=True):
        values = r2star[box][(labels[box] == lid) & valid[box]]
        rows.append({
            "lesion_id": int(lid),
            "n_voxels": int(values.size),
            "n_voxels_mask": int(count),
            "volume_cm3": count * voxel_cm3 if voxel_cm3 is not None else np.nan,
            "r2star_mean": float(values.mean()) if values.size else np.nan,
            "r2star_median": float(np.median(values)) if values.size else np.nan,
            "centroid_i": float(centroid[0]),
            "centroid_j": float(centroid[1]),
            "centroid_k": float(centroid[2]),
        })
    return pd.DataFrame(rows, columns=list(PER_LESION_COLUMNS))


def lesion_stats(
    r2star: np.ndarray,
    lesion_mask_r2grid: np.ndarray,
    *,
    flags: np.ndarray | None = None,
    voxel_sizes=None,
    connectivity: int = 26,
    mask_flair: np.ndarray | None = None,
    flair_voxel_sizes=None,
) -> tuple[dict, pd.DataFrame]:
    """Lesion R2* (all lesion voxels and per connected lesion) and lesion count.

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        R2* map in s^-1 (NaN = failed voxel).
    lesion_mask_r2grid : ndarray of shape (X, Y, Z)
        Lesion mask carried onto the R2* grid (non-zero = lesion).
    flags : ndarray of shape (X, Y, Z), optional
        Fit-quality bit field (0 = good) or boolean "excluded" mask.
    voxel_sizes : sequence of 3 float, optional
        R2* voxel edge lengths (mm), for the per-lesion ``volume_cm3`` (NaN when absent).
    connectivity : {26, 18, 6}
        Neighbourhood of the connected-component labelling.
    mask_flair, flair_voxel_sizes : optional
        Lesion mask on the FLAIR grid and its voxel sizes (mm); when given, the summary's
        ``lesion_load_cm3`` is computed with :func:`lesion_load_cm3`, else it is NaN.

    Returns
    -------
    summary : dict
        ``lesion_load_cm3``, ``lesion_count``, ``lesion_r2star_mean``,
        ``lesion_r2star_median`` (s^-1), ``n_voxels`` (valid lesion voxels),
        ``n_voxels_mask``, ``n_voxels_flagged``.
    per_lesion : pandas.DataFrame
        Columns :data:`PER_LESION_COLUMNS`, one row per lesion.
    """
    r2star = np.asarray(r2star, dtype=np.float64)
    if np.shape(lesion_mask_r2grid) != r2star.shape:
        raise ValueError(f"lesion mask shape {np.shape(lesion_mask_r2grid)} differs from "
                         f"R2* shape {r2star.shape}")
    labels, n = label_lesions(lesion_mask_r2grid, connectivity)
    valid = _valid(r2star, flags)
    voxel_cm3 = None if voxel_sizes is None else float(np.prod(voxel_sizes[:3])) / 1000.0
    per_lesion = _per_lesion(r2star, labels, n, valid, voxel_cm3)
    in_lesion = labels > 0
    values = r2star[in_lesion & valid]
    load = np.nan
    if mask_flair is not None:
        if flair_voxel_sizes is None:
            raise ValueError("mask_flair needs flair_voxel_sizes (mm)")
        load = lesion_load_cm3(mask_flair, flair_voxel_sizes)
    summary = {
        "lesion_load_cm3": load,
        "lesion_count": n,
        "lesion_r2star_mean": float(values.mean()) if values.size else np.nan,
        "lesion_r2star_median": float(np.median(values)) if values.size else np.nan,
        "n_voxels": int(values.size),
        "n_voxels_mask": int(in_lesion.sum()),
        "n_voxels_flagged": int((in_lesion & ~valid).sum()),
    }
    return summary, per_lesion
