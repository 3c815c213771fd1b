"""Automatic white-matter lesion segmentation on FLAIR: hyperintensity inside white matter.

Model
-----
Normal-appearing white matter (NAWM) has one FLAIR intensity distribution; lesions are its
bright outliers. With tissue priors (GM/WM/CSF fractions of a registered template, and
optionally the T1w), the FLAIR of each voxel is scored as a robust z-score against NAWM::

    z = (FLAIR - median_NAWM) / sigma_NAWM,   sigma_NAWM = (median - 25th percentile) / 0.6745

(the lower half of the NAWM histogram only, so that lesions do not widen it). The lesion
probability is ``sigmoid(slope * (z - z_low))`` where grey matter is unlikely (GM prior at
most ``gm_max``), else 0. A lesion is a 26-connected component of ``probability >= threshold``
(hysteresis) that contains a *core* voxel -- ``z >= z_core`` where the white-matter (or
periventricular) prior is at least ``wm_core`` -- and has at least ``min_volume_mm3`` and
``min_voxels`` voxels. Cortex is bright on FLAIR too (about 1.5 NAWM sigmas); the location
rules and, with a T1w, a grey-matter check keep it out.

Two border rules follow (:func:`lesion_borders`). *Border ring* (off by default,
``border_ring``): one 26-neighbour ring around each lesion is added where the white-matter
prior is at least ``grow_wm`` and ``z >= grow_z``,
whatever the T1w says (lesion borders are T1w-hypointense and would otherwise be taken for grey
matter). *Partial-volume outline*: per lesion, voxels below ``NAWM median + outline_fraction *
(lesion's 90th FLAIR percentile - NAWM median)`` are dropped (rim voxels that are mostly white
matter; a rater's outline stops where a voxel is about half lesion). Or, with
``outline_volume``, the *volume-preserving outline* (:func:`volume_outline`): each lesion keeps
as many of its brightest voxels (lesion and its one-voxel ring) as its summed partial-volume
content.

*Deep borders* (off by default, ``grey_depth_mm``): the T1w grey-matter refusal applies only
within ``grey_depth_mm`` of the outside of the brain (:func:`surface_depth_mm`) or where the GM
prior exceeds ``grey_depth_gm``; deeper T1w-dark voxels with a low GM prior are lesion borders
(T1w-hypointense), not cortex, and may join a lesion. *Grey lesions* (off by default,
``lesion_gm_max``): lesions whose mean GM prior exceeds it are dropped
(:func:`reject_grey_lesions`).

Pure numpy/scipy; the caller registers the template and brings the priors onto the FLAIR grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

_STRUCT26 = ndimage.generate_binary_structure(3, 3)


class ContrastError(ValueError):
    """The image does not have FLAIR contrast (or an image is empty)."""


@dataclass(frozen=True)
class LesionSegParams:
    """Parameters of :func:`segment_lesions` (see the module notes for their roles).

    Defaults were tuned on the simulated cohort and on one real patient (see docs/lesions.md).
    """

    z_core: float = 5.0
    z_low: float = 2.75
    slope: float = 1.5
    wm_core: float = 0.8
    gm_max: float = 0.5
    min_volume_mm3: float = 10.0
    gm_z: float = 1.5
    min_voxels: int = 3
    gm_core_z: float = 3.0
    border_ring: bool = False
    grow_z: float = 2.0
    grow_wm: float = 0.8
    outline_fraction: float = 0.25
    outline_volume: bool = False
    grey_depth_mm: float = 0.0  # 0: the T1w grey-matter refusal applies at every depth
    grey_depth_gm: float = 1.0
    lesion_gm_max: float = 1.0  # 1: no lesion-wise grey-matter rejection
    gm_ref_width: float = 1.0  # 1: GM FLAIR reference over the whole middle T1w class

    def as_dict(self) -> dict[str, float]:
        """Parameters as a plain dict (for sidecars).

        Returns
        -------
        dict of str to float
            Field -> value.
        """
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass
class LesionSegmentation:
    """Result of :func:`segment_lesions` (arrays of shape (X, Y, Z) on the FLAIR grid).

    Attributes
    ----------
    mask : ndarray of bool
        Lesion voxels.
    probability : ndarray of float32
        Lesion probability in [0, 1] (0 outside the brain).
    zscore : ndarray of float32
        FLAIR robust z-score against NAWM (NaN outside the brain).
    n_lesions : int
        26-connected lesions in ``mask``.
    nawm_median, nawm_sigma : float
        NAWM FLAIR reference (image units).
    load_cm3 : float
        Lesion volume (voxels x voxel volume) in cm^3.
    core : ndarray of bool or None
        Lesion voxels at least halfway in FLAIR between NAWM and their lesion's bright end
        (:func:`lesion_cores`): the mask for lesion R2*, free of partial-volume rim voxels.
    """

    mask: np.ndarray
    probability: np.ndarray
    zscore: np.ndarray
    n_lesions: int
    nawm_median: float
    nawm_sigma: float
    load_cm3: float
    core: np.ndarray | None = None


def class_medians(image: np.ndarray, brain: np.ndarray, priors: dict[str, np.ndarray],
                  level: float = 0.8) -> dict[str, float]:
    """Median intensity of each tissue where its prior is at least ``level`` (NaN if < 50 voxels).

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z)
    brain : ndarray of bool, shape (X, Y, Z)
    priors : dict of str -> ndarray of shape (X, Y, Z)
        Tissue fractions in [0, 1], e.g. ``{"csf": ..., "gm": ..., "wm": ...}``.

    Returns
    -------
    dict of str to float
        Tissue -> median intensity (NaN with fewer than 50 voxels).
    """
    out = {}
    for name, prior in priors.items():
        sel = brain & (prior >= level)
        out[name] = float(np.median(image[sel])) if sel.sum() >= 50 else float("nan")
    return out


def check_flair_contrast(flair: np.ndarray, brain: np.ndarray, priors: dict[str, np.ndarray],
                         label: str = "FLAIR") -> dict[str, float]:
    """Refuse an image without FLAIR contrast: CSF must be darker than WM, GM brighter than WM.

    A T1w has WM brightest (WM > GM > CSF), a T2w has CSF brightest; both are refused.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        The image.
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    priors : dict of str to ndarray of shape (X, Y, Z)
        Tissue fractions (``csf``, ``gm``, ``wm``).
    label : str, optional
        Named in the error.

    Returns
    -------
    dict
        The class medians (``csf``, ``gm``, ``wm``).

    Raises
    ------
    ContrastError
        With the medians and the likely contrast, naming ``label``.
    """
    med = class_medians(flair, brain, priors)
    csf, gm, wm = med["csf"], med["gm"], med["wm"]
    if not np.all(np.isfinite([csf, gm, wm])):
        raise ContrastError(f"{label}: too few brain voxels to check the contrast "
                            f"(CSF/GM/WM medians {csf:.4g}/{gm:.4g}/{wm:.4g})")
    if csf < wm < gm:
        return med
    guess = ("T1-weighted (WM brightest)" if wm > gm and wm > csf
             else "T2-weighted (CSF brightest)" if csf > wm and csf > gm else "not FLAIR")
    raise ContrastError(f"{label}: tissue medians CSF/GM/WM = {csf:.4g}/{gm:.4g}/{wm:.4g} do not "
                        f"show FLAIR contrast (CSF dark, GM brighter than WM); the image looks "
                        f"{guess}")


def nawm_reference(flair: np.ndarray, nawm: np.ndarray) -> tuple[float, float]:
    """Median and lower-half robust sigma of FLAIR in (mostly) normal-appearing WM.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
    nawm : ndarray of bool, shape (X, Y, Z)
        White-matter voxels (lesions among them do not matter much: median and lower half).

    Returns
    -------
    (median, sigma) : tuple of float
        ``sigma = (median - 25th percentile) / 0.6745``.
    """
    values = np.asarray(flair)[np.asarray(nawm, dtype=bool)]
    if values.size < 100:
        raise ContrastError(f"only {values.size} white-matter voxels; cannot model NAWM")
    q25, med = np.percentile(values, [25, 50])
    sigma = (med - q25) / 0.6745
    if not sigma > 0:
        raise ContrastError("white matter has no intensity spread (constant image?)")
    return float(med), float(sigma)


def segment_lesions(
    flair: np.ndarray,
    brain: np.ndarray,
    priors: dict[str, np.ndarray],
    voxel_sizes_mm,
    *,
    nawm: np.ndarray | None = None,
    t1w: np.ndarray | None = None,
    params: LesionSegParams | None = None,
    threshold: float = 0.5,
) -> LesionSegmentation:
    """Segment FLAIR-hyperintense white-matter lesions.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities (arbitrary units), bias-corrected or smooth in bias.
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask (lesions only inside).
    priors : dict
        ``"gm"``, ``"wm"``, ``"csf"`` tissue fractions in [0, 1], shape (X, Y, Z).
    voxel_sizes_mm : sequence of 3 float
    nawm : ndarray of bool, optional
        White-matter voxels for the NAWM reference (e.g. from the T1w). Default: WM prior
        >= 0.9 inside ``brain``.
    t1w : ndarray of shape (X, Y, Z), optional
        T1w on the FLAIR grid. Voxels whose T1w is grey-matter-like (closer to the GM than to
        the WM median) may be lesion only when their FLAIR is at least ``gm_z`` GM sigmas
        above the GM median (cortex that the template priors miss). With
        ``params.grey_depth_mm > 0`` this refusal applies only within that many mm of the
        outside of the brain or where the GM prior exceeds ``params.grey_depth_gm``.
    params : LesionSegParams, optional
    threshold : float
        Probability at or above which a voxel may belong to a lesion (0 < threshold < 1).

    Returns
    -------
    LesionSegmentation
    """
    p = params or LesionSegParams()
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    img = np.nan_to_num(np.asarray(flair, dtype=np.float64))
    brain = np.asarray(brain, dtype=bool)
    if brain.sum() < 1000:
        raise ContrastError(f"brain mask has only {int(brain.sum())} voxels")
    gm, wm, csf = (np.asarray(priors[k], dtype=np.float64) for k in ("gm", "wm", "csf"))
    ref = brain & (wm >= 0.9) if nawm is None else brain & np.asarray(nawm, dtype=bool)
    med, sigma = nawm_reference(img, ref)
    z = np.where(brain, (img - med) / sigma, np.nan)
    zf = np.nan_to_num(z, nan=-np.inf)
    allowed = brain & (gm <= p.gm_max)
    core_floor = -np.inf
    if t1w is not None:
        like, gm_med, gm_sigma = grey_like(img, np.asarray(t1w, dtype=np.float64), brain,
                                           p.gm_z, ref_width=p.gm_ref_width)
        if p.grey_depth_mm > 0:  # deep T1w-dark voxels are lesion borders, not cortex
            like &= ((surface_depth_mm(brain, voxel_sizes_mm) < p.grey_depth_mm)
                     | (gm > p.grey_depth_gm))
        allowed &= ~like
        core_floor = gm_med + p.gm_core_z * gm_sigma
    prob = np.where(allowed, 1.0 / (1.0 + np.exp(-p.slope * (np.nan_to_num(z) - p.z_low))), 0.0)
    location = wm + csf * (wm > 0.1)  # white matter, or CSF partial volume next to it
    core = allowed & (zf >= p.z_core) & (location >= p.wm_core) & (img >= core_floor)
    min_mm3 = max(p.min_volume_mm3, p.min_voxels * float(np.prod(np.asarray(voxel_sizes_mm,
                                                                      dtype=float)[:3])))
    mask = keep_components(prob >= threshold, core, voxel_sizes_mm, min_mm3)
    if p.lesion_gm_max < 1.0:
        mask = reject_grey_lesions(mask, gm, p.lesion_gm_max)
    ring_ok = brain & (wm >= p.grow_wm) & (zf >= p.grow_z) if p.border_ring else None
    if p.outline_volume:
        mask = volume_outline(img, mask, brain, med)
    else:
        mask = lesion_borders(img, mask, ring_ok, med, p.outline_fraction)
    _, n = ndimage.label(mask, _STRUCT26)
    vox_mm3 = float(np.prod(np.asarray(voxel_sizes_mm, dtype=float)[:3]))
    return LesionSegmentation(mask=mask, probability=prob.astype(np.float32),
                              zscore=z.astype(np.float32), n_lesions=int(n), nawm_median=med,
                              nawm_sigma=sigma, load_cm3=float(mask.sum()) * vox_mm3 / 1000.0,
                              core=lesion_cores(img, mask, med))


def reject_grey_lesions(mask: np.ndarray, gm: np.ndarray, gm_max: float) -> np.ndarray:
    """Drop 26-connected lesions whose mean grey-matter prior exceeds ``gm_max``.

    A lesion-wise false-positive rule: a component lying mostly over the template's cortex or
    deep grey matter is taken for bright grey matter, not a white-matter lesion.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Lesion mask.
    gm : ndarray of float, shape (X, Y, Z)
        Grey-matter prior (fraction in [0, 1]).
    gm_max : float
        Largest mean GM prior of a kept lesion.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The kept lesions.
    """
    mask = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(mask, _STRUCT26)
    if n == 0:
        return mask
    mean_gm = np.asarray(ndimage.mean(np.asarray(gm, dtype=np.float64), lab,
                                      np.arange(1, n + 1)))
    keep = np.concatenate([[False], mean_gm <= gm_max])
    return keep[lab]


def surface_depth_mm(brain: np.ndarray, voxel_sizes_mm) -> np.ndarray:
    """Distance (mm) of each brain voxel from the outside of the brain.

    The brain mask is closed (3 iterations) and its holes filled first, so that the ventricles
    and sulcal CSF inside it do not count as outside.

    Parameters
    ----------
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    voxel_sizes_mm : sequence of 3 float
        Voxel edges in mm.

    Returns
    -------
    ndarray of float, shape (X, Y, Z)
        Euclidean distance in mm to the nearest voxel outside the filled brain (0 outside).
    """
    brain = np.asarray(brain, dtype=bool)
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(brain, _STRUCT26, iterations=3)
                                       | brain)
    return ndimage.distance_transform_edt(filled, sampling=np.asarray(voxel_sizes_mm,
                                                                      dtype=float)[:3])


def lesion_borders(flair: np.ndarray, mask: np.ndarray, ring_ok: np.ndarray | None,
                   reference: float,
                   outline_fraction: float) -> np.ndarray:
    """Border rules of :func:`segment_lesions`: add one ring, then the partial-volume outline.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities (image units).
    mask : ndarray of bool, shape (X, Y, Z)
        Lesions after hysteresis.
    ring_ok : ndarray of bool, shape (X, Y, Z), or None
        Voxels a lesion may take in with its one-voxel (26-neighbour) border ring (None: no
        ring).
    reference : float
        NAWM FLAIR median (image units).
    outline_fraction : float
        Per lesion, voxels below ``reference + outline_fraction * (90th percentile -
        reference)`` are dropped (0: none; at least each lesion's brightest voxel stays).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The lesion mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if ring_ok is not None and mask.any():
        mask = mask | (ndimage.binary_dilation(mask, _STRUCT26) & np.asarray(ring_ok, bool))
    if outline_fraction > 0:
        mask = lesion_cores(flair, mask, reference, fraction=outline_fraction)
    return mask


def volume_outline(flair: np.ndarray, mask: np.ndarray, brain: np.ndarray, reference: float,
                   percentile: float = 90.0) -> np.ndarray:
    """Volume-preserving lesion outline: each lesion keeps as many voxels as its content.

    A voxel's lesion content is its FLAIR contrast over NAWM relative to the lesion's bright end,
    ``clip((FLAIR - reference) / (bright - reference), 0, 1)`` with ``bright`` the lesion's
    ``percentile`` of FLAIR. Per 26-connected lesion of ``mask``, the content is summed over the
    lesion and its one-voxel ring (ring voxels go to the highest-numbered neighbouring lesion,
    inside ``brain``), and that many of the brightest voxels of lesion and ring, rounded, make the
    outline (at least one). A rater who outlines a lesion so that its area matches what is seen
    does the same; a fixed intensity threshold instead over- or under-states the partial-volume
    rim depending on the contrast-to-noise ratio.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities (image units).
    mask : ndarray of bool, shape (X, Y, Z)
        Detected lesions (e.g. after hysteresis).
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask (the ring stays inside).
    reference : float
        NAWM FLAIR median (image units).
    percentile : float, optional
        The lesion's bright end (percentile of its FLAIR inside ``mask``).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The outlined lesions.
    """
    mask = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(mask, _STRUCT26)
    out = np.zeros(mask.shape, dtype=bool)
    if n == 0:
        return out
    values = np.asarray(flair, dtype=np.float64)
    ring = ndimage.grey_dilation(lab, footprint=_STRUCT26) * (np.asarray(brain, bool) & ~mask)
    region = np.where(mask, lab, ring)
    for i, box in enumerate(ndimage.find_objects(region), start=1):
        if box is None:
            continue
        sel = region[box] == i
        v = values[box][sel]
        bright = np.percentile(values[box][lab[box] == i], percentile)
        content = np.clip((v - reference) / max(bright - reference, 1e-12), 0.0, 1.0).sum()
        keep = np.zeros(v.size, dtype=bool)
        keep[np.argsort(-v, kind="stable")[:max(1, int(round(content)))]] = True
        view = out[box]
        view[sel] = keep
    return out


def lesion_cores(flair: np.ndarray, mask: np.ndarray, reference: float,
                 fraction: float = 0.5, percentile: float = 90.0) -> np.ndarray:
    """Voxels of each lesion at least ``fraction`` of the way from NAWM to its bright end.

    A rater outlines a lesion where a voxel is more lesion than white matter; the automatic
    outline runs down to a low z-score and takes in partial-volume rim voxels, whose R2* is
    mostly that of the surrounding white matter. Per 26-connected lesion of ``mask`` the bright
    end is the ``percentile`` of its FLAIR; voxels at or above ``reference + fraction *
    (bright end - reference)`` are kept (at least the brightest voxel of each lesion).

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities (image units).
    mask : ndarray of bool, shape (X, Y, Z)
        Lesion mask.
    reference : float
        NAWM FLAIR median (image units).
    fraction, percentile : float
        Halfway (0.5) by default; the lesion's 90th FLAIR percentile as its bright end.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The lesion cores (a subset of ``mask``).
    """
    mask = np.asarray(mask, dtype=bool)
    lab, n = ndimage.label(mask, _STRUCT26)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    idx = np.arange(1, n + 1)
    values = np.asarray(flair, dtype=np.float64)
    boxes = ndimage.find_objects(lab)
    bright = np.array([np.percentile(values[box][lab[box] == i], percentile)
                       for i, box in zip(idx, boxes, strict=True)])
    top = np.asarray(ndimage.maximum(values, lab, idx), dtype=np.float64)
    level = reference + fraction * (bright - reference)
    level = np.minimum(level, top)  # the brightest voxel always stays
    cut = np.concatenate([[np.inf], level])
    return mask & (values >= cut[lab])


def grey_like(flair: np.ndarray, t1w: np.ndarray, brain: np.ndarray,
              gm_z: float, ref_width: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Voxels that look like normal grey matter on T1w and FLAIR.

    T1w between the CSF centre and the GM/WM boundary of three k-means classes
    (:func:`kmeans_1d` over the brain; cortex in partial volume with CSF included), and FLAIR
    below GM median + ``gm_z`` GM sigmas. The GM FLAIR reference (median, lower-half robust
    sigma) is taken where the T1w is in the middle class, without the template's GM prior: a
    template that fits the cortex poorly would otherwise mix white matter into it.

    Parameters
    ----------
    flair, t1w : ndarray of shape (X, Y, Z)
        FLAIR and T1w on one grid.
    brain : ndarray of bool, shape (X, Y, Z)
    gm_z : float
        FLAIR above the GM median + ``gm_z`` GM sigmas is not normal grey matter.
    ref_width : float
        Fraction (0-1] of the middle class used for the GM FLAIR reference, around the class
        centre: 1 takes the whole class (CSF/GM to GM/WM midpoint); 0.5 its inner half (from
        halfway between the lower boundary and the centre to halfway between the centre and
        the upper boundary), fewer voxels in partial volume with CSF or white matter.

    Returns
    -------
    (mask, gm_median, gm_sigma) : (ndarray of bool, float, float)
        Grey-matter-like voxels, and the GM FLAIR reference (image units).
    """
    csf_c, gm_c, wm_c = kmeans_1d(t1w[brain], 3)
    if not 0.0 < ref_width <= 1.0:
        raise ValueError(f"ref_width must be in (0, 1], got {ref_width}")
    lo, hi = 0.5 * (csf_c + gm_c), 0.5 * (gm_c + wm_c)
    below_wm = brain & (t1w < hi)
    if ref_width == 1.0:  # the whole class: its boundaries exactly
        ref = below_wm & (t1w > lo)
    else:
        ref = (brain & (t1w > gm_c - ref_width * (gm_c - lo))
               & (t1w < gm_c + ref_width * (hi - gm_c)))
    if ref.sum() < 100:
        return np.zeros(flair.shape, dtype=bool), -np.inf, 0.0
    q25, med = np.percentile(flair[ref], [25, 50])
    sigma = max((med - q25) / 0.6745, 1e-6)
    t1_gm = below_wm & (t1w > csf_c)
    return t1_gm & (flair < med + gm_z * sigma), float(med), float(sigma)


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """Deterministic 1D k-means (centres started at evenly spaced percentiles).

    Parameters
    ----------
    values : ndarray of shape (n,)
    k : int

    Returns
    -------
    ndarray of shape (k,)
        Class centres, ascending.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size > 200_000:  # a regular subsample: same answer to well within a class width
        v = np.sort(v)[:: v.size // 200_000]
    centres = np.percentile(v, np.linspace(100 / (2 * k), 100 - 100 / (2 * k), k))
    for _ in range(iterations):
        edges = 0.5 * (centres[1:] + centres[:-1])
        cls = np.searchsorted(edges, v)
        new = np.array([v[cls == i].mean() if np.any(cls == i) else centres[i]
                        for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def keep_components(candidate: np.ndarray, core: np.ndarray, voxel_sizes_mm,
                    min_volume_mm3: float) -> np.ndarray:
    """26-connected components of ``candidate`` that contain a ``core`` voxel.

    Components smaller than ``min_volume_mm3`` are dropped.

    Parameters
    ----------
    candidate, core : ndarray of bool, shape (X, Y, Z)
        Candidate voxels and seeds.
    voxel_sizes_mm : sequence of 3 float
        Voxel edges in mm.
    min_volume_mm3 : float
        Smallest component kept (mm^3).

    Returns
    -------
    ndarray of bool, shape ``candidate.shape``
        The kept components.
    """
    lab, n = ndimage.label(candidate, _STRUCT26)
    if n == 0:
        return np.zeros(candidate.shape, dtype=bool)
    vox_mm3 = float(np.prod(np.asarray(voxel_sizes_mm, dtype=float)[:3]))
    sizes = np.bincount(lab.ravel(), minlength=n + 1) * vox_mm3
    has_core = np.bincount(lab.ravel(), weights=core.ravel().astype(float), minlength=n + 1) > 0
    keep = has_core & (sizes >= min_volume_mm3)
    keep[0] = False
    return keep[lab]


def posterior_lesions(posterior: np.ndarray, flair: np.ndarray, cortex: np.ndarray,
                      voxel_sizes_mm, threshold: float = 0.5,
                      params: LesionSegParams | None = None) -> np.ndarray:
    """Lesion mask from an external lesion posterior (SAMSEG's lesion mode).

    Voxels with ``posterior > threshold`` whose FLAIR is above the geometric mean of the FLAIR
    over ``cortex`` (SAMSEG's ``--lesion-mask-pattern 0 1``: lesions brighter than cortex, a
    rule SAMSEG 0.4 applies only inside its shape-model sampler), in 26-connected components
    of at least ironmap's minimum lesion size (``params.min_volume_mm3`` and
    ``params.min_voxels``).

    Parameters
    ----------
    posterior : ndarray of float, shape (X, Y, Z)
        Lesion posterior in [0, 1].
    flair : ndarray of float, shape (X, Y, Z)
        FLAIR (bias-corrected), same grid.
    cortex : ndarray of bool, shape (X, Y, Z)
        Cortex voxels (the reference for "brighter than cortex").
    voxel_sizes_mm : sequence of 3 float
        Voxel edges in mm.
    threshold : float, optional
        Posterior threshold.
    params : LesionSegParams, optional
        Supplies the minimum lesion size (defaults when None).

    Returns
    -------
    ndarray of bool, shape ``posterior.shape``
        The lesion mask.

    Raises
    ------
    ContrastError
        When fewer than 50 cortex voxels with positive FLAIR are given.
    """
    params = params or LesionSegParams()
    ref = cortex & (flair > 0)
    if ref.sum() < 50:
        raise ContrastError(f"only {int(ref.sum())} cortex voxels to compare lesions with")
    level = float(np.exp(np.mean(np.log(flair[ref]))))
    candidate = (posterior > threshold) & (flair > level)
    vox_mm3 = float(np.prod(np.asarray(voxel_sizes_mm, dtype=float)[:3]))
    smallest = max(params.min_volume_mm3, params.min_voxels * vox_mm3)
    return keep_components(candidate, candidate, voxel_sizes_mm, smallest)


def lesion_detection(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Voxel Dice and lesion-wise detection of ``pred`` against ``truth`` (26-connected).

    A true lesion is detected when any predicted voxel overlaps it; a predicted lesion is a
    false positive when it overlaps no true lesion.

    Parameters
    ----------
    pred, truth : ndarray of bool, shape (X, Y, Z)
        Predicted and true lesion masks.

    Returns
    -------
    dict
        ``dice``, ``load_ratio`` (predicted / true voxels), ``recall``, ``precision``, ``f1``,
        ``n_true``, ``n_pred``.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    lt, nt = ndimage.label(truth, _STRUCT26)
    lp, npred = ndimage.label(pred, _STRUCT26)
    hit_t = np.unique(lt[pred & truth]).size
    hit_p = np.unique(lp[pred & truth]).size
    recall = hit_t / nt if nt else float("nan")
    precision = hit_p / npred if npred else float("nan")
    f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    denom = pred.sum() + truth.sum()
    return {"dice": float(2 * (pred & truth).sum() / denom) if denom else 1.0,
            "load_ratio": float(pred.sum() / truth.sum()) if truth.any() else float("nan"),
            "recall": float(recall), "precision": float(precision), "f1": float(f1),
            "n_true": int(nt), "n_pred": int(npred)}
