"""Regional R2* statistics from a label image on the R2* grid.

Method
------
1. **Masks.** Each label index is one mask. Labels are grouped by ``(region, hemisphere)``
   through :func:`ironmap.core.regions.names.canonical_region`; a label name that maps to no
   canonical region keeps its own name in lower snake case (``Left-Thalamus`` ->
   ``thalamus``, left).
2. **Erosion** by ``erosion_voxels`` voxels, on the R2* grid, with the 6-connected 3D cross
   (``scipy.ndimage.generate_binary_structure(3, 1)``: a voxel survives one step when its six
   face neighbours are all inside the mask; voxels outside the image count as outside).
   Each (region, hemisphere) mask is eroded on its own, so voxels that border another
   structure are removed as well as voxels that border background. Alternatives: an erosion
   by a distance in mm (:func:`erode_mm`), or labels eroded before they were carried to the
   R2* grid (``eroded_labels``, e.g. on the label's native high-resolution grid with
   :func:`erode_label_image`). At clinical resolution (3-4 mm voxels) a one-voxel erosion can
   empty small nuclei (substantia nigra, red nucleus): :func:`small_regions` lists the rows
   left with too few voxels, for a QC flag.
3. **Composite regions** (``putamen`` = anterior + posterior part) are built by eroding the
   UNION of the parts, not by merging the eroded parts: the anterior/posterior border is a
   line drawn through one nucleus, not a tissue boundary, so voxels along it carry no partial
   volume and are kept. When a label already names the whole putamen it is used as is.
4. **Quality exclusion.** Voxels left after erosion whose R2* is not finite or whose quality
   flag is non-zero are excluded (counted in ``n_voxels_flagged``).
5. **Bilateral rows** pool the voxels of the left and right masks (each eroded on its own),
   so the bilateral mean is voxel-weighted, not a mean of the two hemisphere means.

Rows come per region in :data:`ironmap.core.regions.names.REGIONS` order (other regions after, by
name), each as ``left``, ``right``, ``bilateral`` where present; a label without hemisphere
token gives a ``bilateral`` row only.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import ndimage

from ironmap.core.r2star.fit_flags import FLAGS_INVALID
from ironmap.core.regions.bounding_box import mask_box
from ironmap.core.regions.names import (
    COMPOSITE_REGIONS,
    REGIONS,
    canonical_region,
    split_hemisphere,
)

#: Structuring element of the erosion: the 6-connected 3D cross (face neighbours).
EROSION_STRUCTURE = ndimage.generate_binary_structure(3, 1)

COLUMNS = (
    "region", "hemisphere", "r2star_mean", "r2star_median", "r2star_sd",
    "n_voxels", "n_voxels_mask", "n_voxels_eroded", "n_voxels_flagged",
)

#: Data-dictionary entries (JSON sidecar) of the regional table's columns.
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "region": {"Description": "Region name (canonical deep grey-matter region or label stem)"},
    "hemisphere": {"Description": "left, right or bilateral (left and right voxels pooled)"},
    "r2star_mean": {"Description": "Mean R2* over the eroded, quality-passed voxels",
                    "Units": "1/s"},
    "r2star_median": {"Description": "Median R2* over the same voxels", "Units": "1/s"},
    "r2star_sd": {"Description": "Sample standard deviation (ddof=1) of R2* over the same "
                                 "voxels", "Units": "1/s"},
    "n_voxels": {"Description": "Voxels used: after erosion and quality exclusion"},
    "n_voxels_mask": {"Description": "Voxels of the mask on the R2* grid, before erosion"},
    "n_voxels_eroded": {"Description": "Voxels left after erosion (by default one step "
                                       "of the 6-connected cross on the R2* grid; see the "
                                       "eroded label image's sidecar), before quality "
                                       "exclusion"},
    "n_voxels_flagged": {"Description": "Eroded voxels excluded because R2* is NaN or a "
                                        "quality flag is set"},
    "volume_cm3": {"Description": "Mask volume before erosion", "Units": "cm3"},
}


def region_key(label_name: str) -> tuple[str, str]:
    """``(region, hemisphere)`` of a label name; unknown stems in lower snake case.

    Parameters
    ----------
    label_name : str
        A label name.

    Returns
    -------
    region : str
        Canonical region or the stem in lower snake case.
    hemisphere : str
        ``left``, ``right`` or ``bilateral``.

    Examples
    --------
    >>> region_key("Left-Thalamus-Proper")
    ('thalamus_proper', 'left')
    >>> region_key("Right-Putamen-Anterior")
    ('putamen_anterior', 'right')
    """
    region, hemi = canonical_region(label_name)
    if region is None:
        stem, hemi = split_hemisphere(label_name)
        region = re.sub(r"[^0-9a-z]+", "_", stem.strip().lower()).strip("_") or "unnamed"
    return region, hemi


def erode(mask: np.ndarray, erosion_voxels: int = 1) -> np.ndarray:
    """Binary erosion by ``erosion_voxels`` steps of :data:`EROSION_STRUCTURE`.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The mask (voxels outside the image count as outside).
    erosion_voxels : int, optional
        Steps (0: none).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The eroded mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if erosion_voxels <= 0 or not mask.any():
        return mask.copy()
    # only the mask's bounding box (and a margin of empty voxels) can change: erode that block
    box = mask_box(mask, int(erosion_voxels) + 1)
    out = np.zeros_like(mask)
    out[box] = ndimage.binary_erosion(
        mask[box], structure=EROSION_STRUCTURE, iterations=int(erosion_voxels), border_value=0
    )
    return out


def erode_mm(mask: np.ndarray, distance_mm: float, voxel_sizes) -> np.ndarray:
    """Erosion by a distance in mm.

    Keep the voxels whose centre lies more than ``distance_mm`` from the centre of every voxel
    outside the mask.

    Voxels outside the image count as outside. On an isotropic grid of edge ``d`` mm,
    ``distance_mm = d`` gives exactly the one-step erosion of :func:`erode` (face neighbours
    lie at ``d``, edge and corner neighbours further away); a distance below the voxel edge
    removes nothing along that axis.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    distance_mm : float
        Erosion distance in mm (0 = none).
    voxel_sizes : sequence of 3 float
        Voxel edge lengths in mm.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
    """
    mask = np.asarray(mask, dtype=bool)
    if distance_mm <= 0 or not mask.any():
        return mask.copy()
    padded = np.pad(mask, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded, sampling=[float(v) for v in voxel_sizes[:3]])
    return (dist > float(distance_mm) + 1e-6)[1:-1, 1:-1, 1:-1]


def erode_region(mask: np.ndarray, *, erosion_voxels: int = 1, erosion_mm: float | None = None,
                 voxel_sizes=None) -> np.ndarray:
    """Erode by a distance in mm or by voxel steps.

    :func:`erode_mm` when ``erosion_mm`` is given (needs ``voxel_sizes``), else :func:`erode` by
    ``erosion_voxels`` steps.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The region.
    erosion_voxels : int, optional
        Voxel steps.
    erosion_mm : float, optional
        Distance in mm.
    voxel_sizes : sequence of 3 float, optional
        Voxel edges in mm.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The eroded region.

    Raises
    ------
    ValueError
        For an erosion in mm without voxel sizes.
    """
    if erosion_mm is None:
        return erode(mask, erosion_voxels)
    if voxel_sizes is None:
        raise ValueError("an erosion in mm needs the voxel sizes of the grid")
    return erode_mm(mask, erosion_mm, voxel_sizes)


def erode_labels(labels: np.ndarray, erosion_voxels: int, erode) -> np.ndarray:
    """Each label of a label image eroded on its own.

    Works on each label's bounding box padded by ``erosion_voxels + 1`` voxels, which gives
    the same result as eroding the whole image (voxels outside the image count as outside).

    Parameters
    ----------
    labels : ndarray of int, shape (nx, ny, nz)
        Label image (0 = background).
    erosion_voxels : int
        Erosion steps (voxels), also the padding of each bounding box.
    erode : callable
        ``erode(mask, erosion_voxels)``: binary mask -> eroded binary mask (e.g. :func:`erode`).

    Returns
    -------
    ndarray of shape (nx, ny, nz)
        The eroded labels, same dtype as ``labels``.
    """
    out = np.zeros_like(labels)
    positive = np.where(labels > 0, labels, 0)
    for index, box in enumerate(ndimage.find_objects(positive), start=1):
        if box is None:
            continue
        pad = tuple(slice(max(b.start - erosion_voxels - 1, 0),
                          min(b.stop + erosion_voxels + 1, n))
                    for b, n in zip(box, labels.shape, strict=True))
        view = out[pad]
        view[erode(labels[pad] == index, erosion_voxels)] = index
    return out


def erosion_steps(distance_mm: float, voxel_sizes) -> int:
    """Voxel steps that cover an erosion by ``distance_mm`` on a grid, plus one.

    Parameters
    ----------
    distance_mm : float
        Erosion distance in mm.
    voxel_sizes : sequence of float
        Voxel sizes in mm.

    Returns
    -------
    int
        ``ceil(distance_mm / smallest voxel size) + 1``: the padding of a bounding box that an
        erosion by ``distance_mm`` cannot see past.
    """
    return int(np.ceil(distance_mm / float(np.min(voxel_sizes)))) + 1


def restrict_labels(eroded: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """Labels of ``labels`` kept where ``eroded`` is non-zero.

    Parameters
    ----------
    eroded : ndarray of shape (nx, ny, nz) or None
        Eroded label image on the same grid (any non-zero value counts as kept).
    labels : ndarray of int, shape (nx, ny, nz)
        Final label image (e.g. after relabelling voxels that did not move).

    Returns
    -------
    ndarray or None
        ``labels`` where ``eroded > 0``, else 0, dtype of ``labels``; None for ``eroded`` None.
    """
    if eroded is None:
        return None
    return np.where(eroded > 0, labels, 0).astype(labels.dtype)


def erode_label_image(labels: np.ndarray, label_names: dict[int, str], *,
                      erosion_voxels: int = 1, erosion_mm: float | None = None,
                      voxel_sizes=None) -> np.ndarray:
    """A label image eroded region by region (the ``native`` erosion, before transport).

    Labels are grouped per ``(region, hemisphere)`` as in :func:`regional_stats`; the parts of
    a composite region (anterior/posterior putamen) are eroded together, so the cut between
    them is not eroded. Each voxel keeps its label where its group's eroded mask survives.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label indices (0 = background) on their own (native) grid.
    label_names : dict of int to str
        Label index -> name.

    Returns
    -------
    ndarray of shape (X, Y, Z), the dtype of ``labels``
        Eroded labels (0 where eroded away).
    """
    labels = np.asarray(labels)
    part_of = {p: c for c, parts in COMPOSITE_REGIONS.items() for p in parts}
    groups: dict[tuple[str, str], list[int]] = {}
    for index, name in label_names.items():
        if int(index) == 0:
            continue
        region, hemi = region_key(str(name))
        groups.setdefault((part_of.get(region, region), hemi), []).append(int(index))
    out = np.zeros_like(labels)
    for indices in groups.values():
        mask = np.isin(labels, indices)
        keep = erode_region(mask, erosion_voxels=erosion_voxels, erosion_mm=erosion_mm,
                            voxel_sizes=voxel_sizes)
        out[keep] = labels[keep]
    return out


def small_regions(table: pd.DataFrame, min_voxels: int) -> dict[str, int]:
    """Rows of a regional table whose used voxels (``n_voxels``) are below ``min_voxels``.

    Parameters
    ----------
    table : pandas.DataFrame
        A regional table (``region``, ``hemisphere``, ``n_voxels``).
    min_voxels : int
        Least voxels.

    Returns
    -------
    dict
        ``"<region> <hemisphere>"`` -> voxels used, in table order (empty when none).
    """
    if table is None or table.empty or "n_voxels" not in table.columns:
        return {}
    counts = pd.to_numeric(table["n_voxels"], errors="coerce").fillna(0).astype(int)
    hemi = table["hemisphere"] if "hemisphere" in table.columns else ["bilateral"] * len(table)
    return {f"{r} {h}": int(n) for r, h, n in zip(table["region"], hemi, counts, strict=True)
            if n < int(min_voxels)}


def fall_back(masks: dict, eroded: dict, fallback_mm: float, min_voxels: int,
              voxel_sizes) -> list:
    """Replace, in place, eroded masks that keep too few voxels by the mm erosion.

    Parameters
    ----------
    masks : dict
        Key (e.g. ``(region, hemisphere)``) -> the region's mask before erosion.
    eroded : dict
        Key -> the region's eroded mask (same keys); changed in place.
    fallback_mm : float
        Erosion distance in mm for a region whose eroded mask keeps fewer than
        ``min_voxels`` voxels (and whose mask is not empty).
    min_voxels : int
        Least voxels an eroded mask must keep.
    voxel_sizes : sequence of float
        Voxel sizes of the grid in mm.

    Returns
    -------
    list
        The keys eroded by ``fallback_mm``, in the order of ``masks``; a composite region
        (``(putamen, hemisphere)`` of anterior and posterior parts) follows its parts: it is
        eroded by ``fallback_mm`` too when one of its parts is.

    Raises
    ------
    ValueError
        Without voxel sizes or for a negative distance.
    """
    if voxel_sizes is None:
        raise ValueError("an erosion fallback in mm needs the voxel sizes of the grid")
    if not float(fallback_mm) >= 0:
        raise ValueError(f"erosion fallback distance must be >= 0 mm, got {fallback_mm!r}")
    used = []
    for key, mask in masks.items():
        if np.count_nonzero(eroded[key]) < int(min_voxels) and np.any(mask):
            eroded[key] = erode_mm(mask, float(fallback_mm), voxel_sizes)
            used.append(key)
    for composite, parts in COMPOSITE_REGIONS.items():
        for key in [k for k in masks if k[0] == composite and k not in used]:
            if any((part, key[1]) in used for part in parts):
                eroded[key] = erode_mm(masks[key], float(fallback_mm), voxel_sizes)
                used.append(key)
    return used


def _group_masks(labels, label_names) -> dict[tuple[str, str], np.ndarray]:
    """Union of label masks per (region, hemisphere), in first-seen order."""
    groups: dict[tuple[str, str], np.ndarray] = {}
    for index, name in label_names.items():
        if int(index) == 0:
            continue
        key = region_key(str(name))
        mask = labels == int(index)
        groups[key] = groups[key] | mask if key in groups else mask
    return groups


def _add_composites(groups: dict) -> None:
    """Add composite regions (union of parts) per hemisphere unless already labelled."""
    for composite, parts in COMPOSITE_REGIONS.items():
        hemis = {h for (r, h) in groups if r in parts}
        for hemi in sorted(hemis):
            if (composite, hemi) in groups:
                continue
            masks = [groups[(p, hemi)] for p in parts if (p, hemi) in groups]
            groups[(composite, hemi)] = np.logical_or.reduce(masks)


def _stats_row(region, hemi, mask, eroded, valid, r2star, voxel_volume_cm3) -> dict:
    used = eroded & valid
    values = r2star[used]
    n = int(values.size)
    row = {
        "region": region,
        "hemisphere": hemi,
        "r2star_mean": float(values.mean()) if n else np.nan,
        "r2star_median": float(np.median(values)) if n else np.nan,
        "r2star_sd": float(values.std(ddof=1)) if n > 1 else np.nan,
        "n_voxels": n,
        "n_voxels_mask": int(mask.sum()),
        "n_voxels_eroded": int(eroded.sum()),
        "n_voxels_flagged": int((eroded & ~valid).sum()),
    }
    if voxel_volume_cm3 is not None:
        row["volume_cm3"] = row["n_voxels_mask"] * voxel_volume_cm3
    return row


def _region_order(keys) -> list[str]:
    regions = list(dict.fromkeys(r for r, _ in keys))
    known = [r for r in REGIONS if r in regions]
    return known + sorted(r for r in regions if r not in REGIONS)


def regional_stats(
    r2star: np.ndarray,
    labels: np.ndarray,
    label_names: dict[int, str],
    *,
    flags: np.ndarray | None = None,
    erosion_voxels: int = 1,
    voxel_sizes=None,
    erosion_mm: float | None = None,
    eroded_labels: np.ndarray | None = None,
    fallback_mm: float | None = None,
    min_voxels: int = 10,
    core_labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """R2* per label and per bilateral region after a one-voxel erosion (see module notes).

    Parameters
    ----------
    r2star : ndarray of shape (X, Y, Z)
        R2* map in s^-1; NaN marks failed voxels.
    labels : ndarray of shape (X, Y, Z), integer
        Label indices on the R2* grid (0 = background).
    label_names : dict of int to str
        Label index -> name (e.g. ``{1: "Left-Caudate", 2: "Right-Caudate"}``).
    flags : ndarray of shape (X, Y, Z), optional
        Fit-quality bit field of :mod:`ironmap.core.r2star.fit_flags` (voxels with a bit of
        ``FLAGS_INVALID`` set are excluded; warning bits such as ``late_echo_floor`` keep
        the voxel) or a boolean "excluded" mask.
    erosion_voxels : int
        Erosion steps (0 disables erosion).
    voxel_sizes : sequence of 3 float, optional
        Voxel edge lengths of the R2* grid in mm; adds a ``volume_cm3`` column.
    erosion_mm : float, optional
        Erode by a distance in mm instead (:func:`erode_mm`; needs ``voxel_sizes``).
    eroded_labels : ndarray of shape (X, Y, Z), optional
        Labels already eroded elsewhere (e.g. on their native grid before transport,
        :func:`erode_label_image`), same indices as ``labels``: used as the eroded masks,
        no erosion here.
    fallback_mm : float, optional
        A (region, hemisphere) whose erosion keeps fewer than ``min_voxels`` voxels is eroded
        by this distance in mm instead (:func:`fall_back`); not
        with ``eroded_labels``.
    min_voxels : int
        Least voxels an erosion must keep before ``fallback_mm`` applies.
    core_labels : ndarray of shape (X, Y, Z), optional
        Labels whose (region, hemisphere) is valued over these voxels instead of its erosion
        (e.g. a thin nucleus's partial-volume core,
        :func:`ironmap.core.regions.fraction_core.fraction_core_labels`); every other region
        is eroded as above.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` (+ ``volume_cm3``), one row per (region, hemisphere).
    """
    r2star = np.asarray(r2star, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.shape != r2star.shape:
        raise ValueError(f"labels shape {labels.shape} differs from R2* shape {r2star.shape}")
    valid = np.isfinite(r2star)
    if flags is not None:
        flags = np.asarray(flags)
        if flags.shape != r2star.shape:
            raise ValueError(f"flags shape {flags.shape} differs from R2* shape {r2star.shape}")
        if flags.dtype == bool:
            valid &= ~flags
        else:
            valid &= (flags.astype(np.uint16) & FLAGS_INVALID) == 0
    vox_cm3 = None if voxel_sizes is None else float(np.prod(voxel_sizes[:3])) / 1000.0
    given = {name: np.asarray(a) for name, a in (("eroded", eroded_labels), ("core", core_labels))
             if a is not None}
    for name, a in given.items():
        if a.shape != labels.shape:
            raise ValueError(f"{name} labels shape {a.shape} differs from labels "
                             f"shape {labels.shape}")
    # every value, count and erosion below depends only on the labelled voxels and the empty
    # voxels around them: work on their bounding box (one empty voxel of margin) instead of
    # the whole grid - the same voxels in the same order, so the same table
    box = mask_box(np.logical_or.reduce([labels != 0, *(a != 0 for a in given.values())]), 1)
    if box is not None:
        r2star, labels, valid = r2star[box], labels[box], valid[box]
        given = {name: a[box] for name, a in given.items()}
    eroded_labels, core_labels = given.get("eroded"), given.get("core")
    groups = _group_masks(labels, label_names)
    _add_composites(groups)
    if eroded_labels is not None:
        found = _group_masks(eroded_labels, label_names)
        _add_composites(found)
        eroded = {key: found.get(key, np.zeros(labels.shape, bool)) & mask
                  for key, mask in groups.items()}
    else:
        eroded = {key: erode_region(mask, erosion_voxels=erosion_voxels, erosion_mm=erosion_mm,
                                    voxel_sizes=voxel_sizes)
                  for key, mask in groups.items()}
        if fallback_mm is not None:
            fall_back(groups, eroded, fallback_mm, min_voxels, voxel_sizes)
    if core_labels is not None:
        present = set(np.unique(core_labels[core_labels > 0]).tolist())
        cored = {i: n for i, n in label_names.items() if int(i) in present}
        for key, mask in _group_masks(core_labels, cored).items():
            if key in groups:
                eroded[key] = mask & groups[key]
    rows = []
    for region in _region_order(groups):
        left, right = (region, "left"), (region, "right")
        for key in (left, right):
            if key in groups:
                rows.append(_stats_row(*key, groups[key], eroded[key], valid, r2star, vox_cm3))
        bilateral = (region, "bilateral")
        if bilateral in groups:  # a label without hemisphere token (may pool with sides)
            mask = groups[bilateral] | groups.get(left, False) | groups.get(right, False)
            ero = eroded[bilateral] | eroded.get(left, False) | eroded.get(right, False)
        elif left in groups and right in groups:
            mask, ero = groups[left] | groups[right], eroded[left] | eroded[right]
        else:
            continue
        rows.append(_stats_row(region, "bilateral", mask, ero, valid, r2star, vox_cm3))
    columns = list(COLUMNS) + (["volume_cm3"] if vox_cm3 is not None else [])
    return pd.DataFrame(rows, columns=columns)
