"""Tissue volumes from segmentations, and head-size normalisation.

Volumes are voxel counts (or summed partial-volume fractions) times the voxel volume, in cm³.
Head-size normalisation follows the V-scaling idea of SIENAX (Smith et al., NeuroImage 2002):
the determinant of the linear part of the affine that maps the subject's head onto a template
scales every subject volume to template head size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ironmap.units import mm3_to_cm3

#: Columns of a per-subject volume table, in order (all cm³ except ``scaling_factor``).
VOLUME_COLUMNS: tuple[str, ...] = (
    "gm_cm3", "cortical_gm_cm3", "deep_gm_cm3", "wm_cm3", "csf_cm3", "brain_cm3",
    "scaling_factor",
    "gm_norm_cm3", "cortical_gm_norm_cm3", "deep_gm_norm_cm3", "wm_norm_cm3", "csf_norm_cm3",
    "brain_norm_cm3",
)

#: Raw volume columns that get a normalised ``*_norm_cm3`` twin.
NORMALISED: tuple[str, ...] = ("gm", "cortical_gm", "deep_gm", "wm", "csf", "brain")

#: JSON data dictionary of the volume table.
VOLUME_DICTIONARY: dict[str, dict[str, str]] = {
    "participant_id": {"Description": "participant label, sub-<label>"},
    "session_id": {"Description": "session label, ses-<label> (n/a without sessions)"},
    "gm_cm3": {"Description": "total grey matter volume", "Units": "cm^3"},
    "cortical_gm_cm3": {"Description": "cortical grey matter (grey matter outside deep grey "
                        "matter)", "Units": "cm^3"},
    "deep_gm_cm3": {"Description": "deep grey matter (basal ganglia, thalamus, brainstem and "
                    "cerebellar nuclei region)", "Units": "cm^3"},
    "wm_cm3": {"Description": "white matter volume", "Units": "cm^3"},
    "csf_cm3": {"Description": "cerebrospinal fluid within 3 mm of the registered template "
                "brain mask (ventricles, sulci, extracerebral CSF)", "Units": "cm^3"},
    "brain_cm3": {"Description": "grey plus white matter", "Units": "cm^3"},
    "scaling_factor": {"Description": "head-size scaling factor: determinant of the linear part "
                       "of the affine subject->template (SIENAX V-scaling); normalised volume = "
                       "raw volume x scaling_factor"},
}
for _name in NORMALISED:
    VOLUME_DICTIONARY[f"{_name}_norm_cm3"] = {
        "Description": f"{_name}_cm3 x scaling_factor (head-size normalised)", "Units": "cm^3"}


def voxel_volume_cm3(voxel_sizes_mm) -> float:
    """Volume of one voxel from its edge lengths.

    Parameters
    ----------
    voxel_sizes_mm : sequence of 3 float
        mm.

    Returns
    -------
    float
        cm³.
    """
    sizes = np.asarray(voxel_sizes_mm, dtype=float)[:3]
    if sizes.size != 3 or np.any(~np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"voxel sizes must be 3 positive numbers in mm, got {voxel_sizes_mm!r}")
    return float(mm3_to_cm3(np.prod(sizes)))


def mask_volume_cm3(mask: np.ndarray, voxel_sizes_mm) -> float:
    """Volume of a binary mask (voxel count x voxel volume).

    Parameters
    ----------
    mask : ndarray of bool
        The mask.
    voxel_sizes_mm : sequence of 3 float
        mm.

    Returns
    -------
    float
        cm³.
    """
    return float(np.count_nonzero(mask)) * voxel_volume_cm3(voxel_sizes_mm)


def tissue_volumes(
    gm: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    voxel_sizes_mm,
    *,
    deep_gm: np.ndarray | None = None,
) -> dict[str, float]:
    """Tissue volumes from partial-volume fractions (or 0/1 masks).

    Parameters
    ----------
    gm, wm, csf : ndarray of shape (X, Y, Z)
        Fraction of each voxel occupied by the tissue (NaN counts as 0). Values slightly
        outside [0, 1] from unbiased partial-volume unmixing are summed as they are.
    voxel_sizes_mm : sequence of 3 float
        Voxel edge lengths in mm.
    deep_gm : ndarray of shape (X, Y, Z), optional
        Deep grey-matter fraction per voxel, a part of ``gm`` (deep GM volume is its sum,
        cortical GM the rest of ``gm``). Without it all GM counts as cortical.

    Returns
    -------
    dict
        ``gm_cm3``, ``cortical_gm_cm3``, ``deep_gm_cm3``, ``wm_cm3``, ``csf_cm3``, ``brain_cm3``.
    """
    vox = voxel_volume_cm3(voxel_sizes_mm)
    shapes = {np.shape(a) for a in (gm, wm, csf)}
    if len(shapes) != 1:
        raise ValueError(f"tissue maps differ in shape: {sorted(shapes)}")

    def total(a: np.ndarray) -> float:
        return float(np.nansum(np.asarray(a, dtype=float))) * vox

    gm_v, wm_v, csf_v = total(gm), total(wm), total(csf)
    deep_v = 0.0
    if deep_gm is not None:
        if np.shape(deep_gm) != np.shape(gm):
            raise ValueError("deep_gm fraction map differs in shape from the tissue maps")
        deep_v = total(deep_gm)
    return {
        "gm_cm3": gm_v,
        "cortical_gm_cm3": gm_v - deep_v,
        "deep_gm_cm3": deep_v,
        "wm_cm3": wm_v,
        "csf_cm3": csf_v,
        "brain_cm3": gm_v + wm_v,
    }


def pure_class_means(intensity: np.ndarray, labels: np.ndarray, n_classes: int = 3,
                     min_voxels: int = 20) -> np.ndarray:
    """Median intensity of each class over its interior voxels (all 26 neighbours alike).

    Parameters
    ----------
    intensity : ndarray of shape (X, Y, Z)
    labels : ndarray of int, shape (X, Y, Z)
        Hard labels 1..n_classes (0 = background).

    Returns
    -------
    ndarray of shape (n_classes,)
        Pure-tissue intensities; classes with fewer than ``min_voxels`` interior voxels fall back
        to the median over all their voxels (NaN when a class is empty).
    """
    interior = _interior(labels)
    means = np.full(n_classes, np.nan)
    for k in range(1, n_classes + 1):
        inside = intensity[(labels == k) & interior]
        if inside.size < min_voxels:
            inside = intensity[labels == k]
        if inside.size:
            means[k - 1] = float(np.median(inside))
    return means


def _interior(labels: np.ndarray) -> np.ndarray:
    """True where all 26 neighbours carry the voxel's own label."""
    lo = ndimage.minimum_filter(labels, size=3, mode="nearest")
    hi = ndimage.maximum_filter(labels, size=3, mode="nearest")
    return (lo == hi) & (labels > 0)


def partial_volume_fractions(intensity: np.ndarray, labels: np.ndarray,
                             class_means) -> np.ndarray:
    """Tissue fractions from hard labels plus linear two-class unmixing at class borders.

    Interior voxels (all neighbours share the label) are pure. A border voxel of class ``k``
    is modelled as a mixture of ``k`` and its most frequent other neighbouring class ``j``
    (background excluded): ``f_j = (I - mu_k) / (mu_j - mu_k)``, ``f_k = 1 - f_j``. ``f_j``
    is clipped to [-0.5, 1] only, so that noise in pure voxels cancels in the sums instead
    of biasing them.

    Parameters
    ----------
    intensity : ndarray of shape (X, Y, Z)
    labels : ndarray of int, shape (X, Y, Z)
        Hard labels 1..K, 0 outside the brain.
    class_means : sequence of K float
        Pure-class intensities (e.g. :func:`pure_class_means`).

    Returns
    -------
    ndarray of shape (K, X, Y, Z)
        Fractions per class; they sum to 1 inside the brain, 0 outside.
    """
    mu = np.asarray(class_means, dtype=float)
    n = mu.size
    labels = np.asarray(labels).astype(np.int16)
    counts = np.stack([ndimage.uniform_filter((labels == k).astype(np.float32), size=3,
                                              mode="constant") for k in range(1, n + 1)])
    own = labels - 1
    fractions = np.zeros((n, *labels.shape))
    brain = labels > 0
    for k in range(n):
        fractions[k][labels == k + 1] = 1.0
    counts_other = counts.copy()
    for k in range(n):
        counts_other[k][own == k] = 0.0
    partner = np.argmax(counts_other, axis=0)
    border = brain & (counts_other.max(axis=0) > 0)
    k_idx, j_idx = own[border], partner[border]
    denom = mu[j_idx] - mu[k_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        fj = np.clip((intensity[border] - mu[k_idx]) / denom, -0.5, 1.0)
    fj = np.where(np.isfinite(fj), fj, 0.0)
    idx = np.nonzero(border)
    for k in range(n):
        fk = fractions[k]
        vals = fk[idx]
        vals = vals - np.where(k_idx == k, fj, 0.0) + np.where(j_idx == k, fj, 0.0)
        fk[idx] = vals
    return fractions


def scaling_factor(subject_to_template: np.ndarray) -> float:
    """SIENAX-style head-size scaling factor of an affine.

    Parameters
    ----------
    subject_to_template : ndarray of shape (4, 4) or (3, 3)
        Affine mapping subject world mm -> template world mm (points).

    Returns
    -------
    float
        ``|det(A[:3, :3])|``: > 1 for a head smaller than the template.
    """
    a = np.asarray(subject_to_template, dtype=float)
    if a.shape not in ((4, 4), (3, 3)):
        raise ValueError(f"expected a 4x4 or 3x3 matrix, got shape {a.shape}")
    det = abs(float(np.linalg.det(a[:3, :3])))
    if not np.isfinite(det) or det < 0.2 or det > 5.0:
        raise ValueError(f"implausible head-size scaling factor {det:.3g} (registration failed?)")
    return det


def normalise_volumes(volumes: dict[str, float], factor: float) -> dict[str, float]:
    """Add ``scaling_factor`` and ``*_norm_cm3`` = raw x factor for every known raw volume.

    Parameters
    ----------
    volumes : dict of str to float
        Raw volumes (cm³).
    factor : float
        Head-size scaling factor.

    Returns
    -------
    dict of str to float
        ``volumes`` with the normalised columns.
    """
    out = dict(volumes)
    out["scaling_factor"] = float(factor)
    for name in NORMALISED:
        key = f"{name}_cm3"
        if key in volumes and volumes[key] is not None:
            out[f"{name}_norm_cm3"] = float(volumes[key]) * float(factor)
    return out


#: Plausible adult ranges of the volume table's values: ``column -> (low, high)``. GM and WM in
#: cm³ (adult brains, atrophy included: GM 450-900, WM 350-800). ``gm_wm_ratio`` = GM / WM
#: (replaces the earlier WM / (GM + WM) band 0.30-0.55, i.e. GM / WM 0.82-2.33): post mortem
#: 1.28 at 20, 1.13 at 50 and 1.55 at 100 years (Miller, Alston & Corsellis, Neuropathol Appl
#: Neurobiol 1980), the same course by MRI (Courchesne et al., Radiology
#: 2000); the band 1.0-2.0 leaves room for method differences, so a ratio below 1 (GM lost to
#: WM) or above 2 (WM lost to GM) means a wrong segmentation. ``csf_fraction`` = CSF / (GM + WM
#: + CSF): above 0.40 the CSF class holds skull or scalp. ``scaling_factor``: a wide band that
#: only catches failed template fits. ``brain_norm_ratio`` = head-size-normalised brain volume
#: / the template's own brain volume (normalisation brings every head to template size, so a
#: normalised brain far from the template's means a wrong factor or a wrong segmentation).
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "gm_cm3": (450.0, 900.0),
    "wm_cm3": (350.0, 800.0),
    "gm_wm_ratio": (1.0, 2.0),
    "csf_fraction": (0.0, 0.40),
    "scaling_factor": (0.7, 2.0),
    "brain_norm_ratio": (0.6, 1.25),
}


def implausible_volumes(row: dict[str, float], template_brain_cm3: float | None = None,
                        ranges: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Values of a volume-table row outside :data:`PLAUSIBLE_RANGES` (one sentence each).

    Parameters
    ----------
    row : dict
        ``gm_cm3``, ``wm_cm3`` and (optionally) ``csf_cm3``, ``scaling_factor``,
        ``brain_norm_cm3``.
    template_brain_cm3 : float, optional
        Brain volume (GM + WM, cm³) of the template the factor refers to; enables the
        ``brain_norm_ratio`` check.
    ranges : dict, optional
        Ranges replacing those of :data:`PLAUSIBLE_RANGES` by key.

    Returns
    -------
    list of str
        Empty when every checked value is inside its range.
    """
    ranges = {**PLAUSIBLE_RANGES, **(ranges or {})}
    values: dict[str, float] = {}
    gm, wm = row.get("gm_cm3"), row.get("wm_cm3")
    for key in ("gm_cm3", "wm_cm3", "scaling_factor"):
        if row.get(key) is not None:
            values[key] = float(row[key])
    if gm is not None and wm is not None and float(gm) + float(wm) > 0:
        values["gm_wm_ratio"] = float(gm) / float(wm) if float(wm) > 0 else float("inf")
        if row.get("csf_cm3") is not None:
            values["csf_fraction"] = float(row["csf_cm3"]) / (float(gm) + float(wm)
                                                              + float(row["csf_cm3"]))
    if template_brain_cm3 and row.get("brain_norm_cm3") is not None:
        values["brain_norm_ratio"] = float(row["brain_norm_cm3"]) / float(template_brain_cm3)
    problems = []
    for key, value in values.items():
        low, high = ranges[key]
        if not np.isfinite(value) or not low <= value <= high:
            problems.append(f"{key} {value:.3g} outside {low:g}-{high:g}")
    return problems
