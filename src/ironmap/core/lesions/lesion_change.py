"""Within-subject change between two co-registered sessions: new/enlarging lesions, brain volume.

Pure numpy/scipy; the images must already be on one grid (``ironmap.spatial.withinsubject``
registers and resamples them).

Lesion change (new or enlarging FLAIR hyperintensities) follows the subtraction approach of
longitudinal lesion-change detection (e.g. Lesjak et al. 2016, Ganiler et al. 2014): the
later FLAIR is matched in intensity to the earlier one inside the brain, the difference image
is turned into a robust z-score against the whole brain (median and MAD of the difference,
dominated by unchanged tissue), and a voxel counts as new/enlarged lesion when

- its difference z-score is at least ``diff_z`` (connected to a core of at least
  ``core_z``: hysteresis),
- it is FLAIR-hyperintense at the later session (robust z-score of the later FLAIR against
  white matter at least ``hyper_z``),
- it lies at least ``edge_mm`` inside the brain (misregistration and CSF-flow artefacts at the
  brain's edge are not lesions), and
- its connected component is at least ``min_mm3`` large.

Brain volume change: per cent change of the brain (GM + WM) volume between the sessions
(:func:`percent_volume_change`) and the Jacobian-based percent brain volume change of a
deformable within-subject registration (:func:`jacobian_pbvc`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ironmap.core.lesions.auto_segment import keep_components, lesion_detection


@dataclass(frozen=True)
class ChangeParams:
    """Thresholds of :func:`lesion_change` (see docs/longitudinal.md for how they were set).

    Attributes
    ----------
    diff_z : float
        Robust z-score of the FLAIR difference (later minus earlier) a candidate voxel needs.
    core_z : float
        A candidate component needs at least one voxel with this difference z-score.
    hyper_z : float
        Robust z-score of the later FLAIR against white matter a candidate voxel needs.
    edge_mm : float
        Candidate voxels lie at least this far inside the brain mask (mm).
    min_mm3 : float
        Smallest new/enlarging lesion component (mm^3).
    wm_margin_mm : float
        With a white-matter mask of the first session, candidate voxels lie within this
        distance of it (mm): new lesions appear in, and enlarging ones grow into, what was
        white matter at the first session.
    """

    diff_z: float = 3.0
    core_z: float = 5.0
    hyper_z: float = 2.0
    edge_mm: float = 3.0
    min_mm3: float = 20.0
    wm_margin_mm: float = 2.0

    def as_dict(self) -> dict[str, float]:
        """The thresholds as a plain dict (for sidecars).

        Returns
        -------
        dict of str to float
            Field -> value.
        """
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass
class LesionChange:
    """Result of :func:`lesion_change` (arrays on the common grid, shape (X, Y, Z)).

    Attributes
    ----------
    mask : ndarray of bool
        New or enlarging lesion voxels.
    diff_z : ndarray of float32
        Robust z-score of the intensity-matched FLAIR difference (0 outside the brain).
    n_lesions : int
        Connected components of ``mask`` (26-connectivity).
    volume_cm3 : float
        Volume of ``mask``, cm^3.
    scale, offset : float
        Intensity match: later FLAIR x scale + offset ~ earlier FLAIR.
    """

    mask: np.ndarray
    diff_z: np.ndarray
    n_lesions: int
    volume_cm3: float
    scale: float
    offset: float


def robust_location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation (1.4826 x MAD) of a 1D sample.

    Parameters
    ----------
    values : ndarray of shape (n,)

    Returns
    -------
    (median, sigma) : tuple of float
        ``sigma`` is at least a tiny positive number.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values for a robust location and scale")
    med = float(np.median(v))
    sigma = 1.4826 * float(np.median(np.abs(v - med)))
    return med, max(sigma, 1e-12 * max(abs(med), 1.0))


def match_intensity(reference: np.ndarray, moving: np.ndarray, mask: np.ndarray,
                    quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)) -> tuple[float, float]:
    """Linear intensity match of ``moving`` to ``reference`` from their quantiles inside ``mask``.

    A least-squares line through the pairs of quantiles (robust to lesions and outliers).

    Parameters
    ----------
    reference, moving : ndarray of shape (X, Y, Z)
        Images on one grid (NaN allowed outside ``mask``).
    mask : ndarray of bool, shape (X, Y, Z)
    quantiles : sequence of float

    Returns
    -------
    (scale, offset) : tuple of float
        ``moving * scale + offset`` has the reference's intensity scale.
    """
    sel = mask & np.isfinite(reference) & np.isfinite(moving)
    if sel.sum() < 100:
        raise ValueError("fewer than 100 common brain voxels to match the intensities")
    qr = np.quantile(reference[sel], quantiles)
    qm = np.quantile(moving[sel], quantiles)
    scale, offset = np.polyfit(qm, qr, 1)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"intensity match failed (scale {scale})")
    return float(scale), float(offset)


def lesion_change(earlier: np.ndarray, later: np.ndarray, brain: np.ndarray,
                  voxel_mm, *, wm: np.ndarray | None = None,
                  params: ChangeParams | None = None) -> LesionChange:
    """New and enlarging FLAIR lesions between two co-registered sessions.

    Parameters
    ----------
    earlier, later : ndarray of shape (X, Y, Z)
        FLAIR images of the two sessions on one grid (any intensity unit; NaN outside the
        field of view).
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask on that grid (both sessions' brain, e.g. their intersection).
    voxel_mm : sequence of 3 float
        Voxel edge lengths, mm.
    wm : ndarray of bool, shape (X, Y, Z), optional
        White matter of the first session: the reference for the later FLAIR's
        hyperintensity z-score, and candidates lie within ``params.wm_margin_mm`` of it.
        Without it, the reference is the brain voxels between the 25th and 75th FLAIR
        percentile and candidates may lie anywhere in the brain.
    params : ChangeParams, optional

    Returns
    -------
    LesionChange
    """
    p = params or ChangeParams()
    vox = np.asarray(voxel_mm, dtype=float)
    valid = brain & np.isfinite(earlier) & np.isfinite(later)
    if valid.sum() < 1000:
        raise ValueError(f"only {int(valid.sum())} brain voxels common to both sessions")
    scale, offset = match_intensity(earlier, later, valid)
    later_n = np.where(valid, later * scale + offset, 0.0)
    diff = np.where(valid, later_n - np.nan_to_num(earlier), 0.0)
    med, sigma = robust_location_scale(diff[valid])
    z = np.where(valid, (diff - med) / sigma, 0.0).astype(np.float32)
    region = valid
    if wm is None or not (wm & valid).any():
        lo, hi = np.percentile(later_n[valid], [25, 75])
        wm = valid & (later_n >= lo) & (later_n <= hi)
    else:
        region = valid & (ndimage.distance_transform_edt(~wm, sampling=vox) <= p.wm_margin_mm)
    wm_med, wm_sigma = robust_location_scale(later_n[wm & valid])
    hyper = later_n >= wm_med + p.hyper_z * wm_sigma
    depth = ndimage.distance_transform_edt(np.pad(valid, 1), sampling=vox)[1:-1, 1:-1, 1:-1]
    candidate = region & (depth >= p.edge_mm) & hyper & (z >= p.diff_z)
    mask = keep_components(candidate, z >= p.core_z, vox, p.min_mm3)
    n = int(ndimage.label(mask, structure=np.ones((3, 3, 3)))[1])
    return LesionChange(mask=mask, diff_z=z, n_lesions=n,
                        volume_cm3=float(mask.sum() * np.prod(vox) / 1000.0),
                        scale=scale, offset=offset)


def percent_volume_change(first_cm3: float, later_cm3: float) -> float:
    """Per cent change ``100 * (later / first - 1)``.

    Parameters
    ----------
    first_cm3, later_cm3 : float
        Volumes (cm^3) at the first and a later session.

    Returns
    -------
    float
        Per cent change (NaN when ``first_cm3`` is not positive).
    """
    if not first_cm3 or first_cm3 <= 0:
        return float("nan")
    return 100.0 * (float(later_cm3) / float(first_cm3) - 1.0)


def jacobian_pbvc(jacobian: np.ndarray, brain: np.ndarray) -> float:
    """Percent brain volume change from the Jacobian determinant of a within-subject warp.

    With ``jacobian`` the determinant of the map from the first session's brain onto the later
    session's (later volume per first-session volume, on the first session's grid), the later
    brain volume is the integral of the Jacobian over the first session's brain.

    Parameters
    ----------
    jacobian : ndarray of shape (X, Y, Z)
        Jacobian determinant (unitless, > 0), first session's grid.
    brain : ndarray of bool, shape (X, Y, Z)
        The first session's brain (GM + WM) mask, or fractions in [0, 1].

    Returns
    -------
    float
        ``100 * (sum(J * brain) / sum(brain) - 1)``, per cent.
    """
    w = np.asarray(brain, dtype=float)
    j = np.nan_to_num(np.asarray(jacobian, dtype=float), nan=1.0)
    total = w.sum()
    if total <= 0:
        raise ValueError("empty brain mask for the Jacobian volume change")
    return 100.0 * (float((j * w).sum()) / float(total) - 1.0)


def change_overlap(pred: np.ndarray, truth: np.ndarray, voxel_mm) -> dict[str, float]:
    """Voxel and lesion agreement of a detected change mask with a reference change mask.

    Parameters
    ----------
    pred, truth : ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float

    Returns
    -------
    dict
        ``dice``, ``pred_cm3``, ``truth_cm3``, ``truth_lesions``, ``truth_lesions_detected``
        (reference components touched by the prediction), ``pred_lesions``,
        ``pred_lesions_true`` (predicted components touching the reference), ``lesion_tpr``,
        ``lesion_ppv``.
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    vox_cm3 = float(np.prod(voxel_mm)) / 1000.0
    det = lesion_detection(pred, truth)
    nt, npred = det["n_true"], det["n_pred"]
    return {"dice": det["dice"],
            "pred_cm3": float(pred.sum() * vox_cm3), "truth_cm3": float(truth.sum() * vox_cm3),
            "truth_lesions": nt, "truth_lesions_detected": round(det["recall"] * nt) if nt else 0,
            "pred_lesions": npred,
            "pred_lesions_true": round(det["precision"] * npred) if npred else 0,
            "lesion_tpr": det["recall"], "lesion_ppv": det["precision"]}
