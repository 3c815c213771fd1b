"""Within-subject registration of a participant's sessions and change measured in a mid-space.

A later session's FLAIR is registered rigidly onto the first session's FLAIR (ANTs, Mattes
mutual information, :func:`ironmap.spatial.registration.register`). Both FLAIRs are then
resampled once into the *mid-space* halfway between them (the matrix square root of the rigid
transform), so that neither session is favoured by interpolation (Reuter et al. 2012's
argument for unbiased within-subject templates), on a grid with the finer of the two voxel
sizes along each axis. In that space:

- new and enlarging lesions (:func:`ironmap.core.lesions.lesion_change.lesion_change`) inside the
first
  session's brain (from its T1w tissue segmentation, carried to the FLAIR with a rigid
  T1w -> FLAIR registration), white matter as the hyperintensity reference;
- brain volume change: both sessions' T1w tissue segmentations
  (:func:`ironmap.spatial.segmentation.segment_tissues`) give GM + WM volumes (per cent
  change), and a deformable (SyN, 2 mm) registration of the later T1w onto the first gives
  the Jacobian-based per cent brain volume change over the first session's brain
  (:func:`ironmap.core.lesions.lesion_change.jacobian_pbvc`).

``ants`` is imported inside the functions (slow import).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import linalg

from ironmap.core.lesions.lesion_change import (
    ChangeParams,
    LesionChange,
    jacobian_pbvc,
    lesion_change,
    percent_volume_change,
)
from ironmap.spatial.grid import resample_image, voxel_sizes

log = logging.getLogger(__name__)


@dataclass
class SessionImages:
    """One session's anatomical images (nibabel) and its label."""

    label: str
    flair: nib.Nifti1Image
    t1w: nib.Nifti1Image | None = None


@dataclass
class SessionTissues:
    """A session's T1w tissue segmentation summary (or why it failed)."""

    brain_cm3: float = float("nan")  # GM + WM
    gm_cm3: float = float("nan")
    wm_cm3: float = float("nan")
    error: str | None = None
    mask: np.ndarray | None = None  # brain mask on the T1w grid (bool)
    wm: np.ndarray | None = None  # WM fraction on the T1w grid
    fractions: np.ndarray | None = None  # GM + WM fraction on the T1w grid


@dataclass
class WithinSubjectChange:
    """Change between a participant's first and a later session.

    Attributes
    ----------
    later_to_first : ndarray of shape (4, 4)
        Rigid map FIRST FLAIR world mm -> LATER FLAIR world mm (RAS+).
    mid_to_first, mid_to_later : ndarray of shape (4, 4)
        Mid-space world mm -> each session's FLAIR world mm.
    grid : nibabel image
        The mid-space grid (data: the first session's FLAIR there).
    lesions : LesionChange
        New/enlarging lesions on ``grid``.
    brain : ndarray of bool
        Brain mask on ``grid`` (where change was looked for).
    summary : dict
        Scalars for the change table (volumes in cm^3, changes in per cent).
    """

    later_to_first: np.ndarray
    mid_to_first: np.ndarray
    mid_to_later: np.ndarray
    grid: nib.Nifti1Image
    lesions: LesionChange
    brain: np.ndarray
    summary: dict = field(default_factory=dict)


def midspace(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Halfway space of a rigid (or affine) map between two sessions.

    Parameters
    ----------
    matrix : ndarray of shape (4, 4)
        FIRST world mm -> LATER world mm.

    Returns
    -------
    (mid_to_first, mid_to_later) : tuple of ndarray of shape (4, 4)
        ``mid_to_later = H`` and ``mid_to_first = H^-1`` with ``H @ H = matrix``.
    """
    h = np.real(linalg.sqrtm(np.asarray(matrix, dtype=float)))
    h[3] = (0.0, 0.0, 0.0, 1.0)
    return np.linalg.inv(h), h


def common_grid(first: nib.Nifti1Image, later: nib.Nifti1Image) -> nib.Nifti1Image:
    """An empty grid over the first image's field of view with the finer voxel size per axis.

    Parameters
    ----------
    first, later : nibabel images

    Returns
    -------
    nibabel image
        Same orientation and field of view as ``first``; voxel sizes the element-wise minimum
        of both images' (sorted by axis of ``first``).
    """
    v1, v2 = voxel_sizes(first.affine), voxel_sizes(later.affine)
    new = np.minimum(v1, v2)
    shape = np.maximum(1, np.round(np.array(first.shape[:3]) * v1 / new)).astype(int)
    aff = np.asarray(first.affine, dtype=float).copy()
    aff[:3, :3] = aff[:3, :3] / v1 * new
    # keep the field of view's corner: voxel -0.5 of the old grid = voxel -0.5 of the new
    aff[:3, 3] = first.affine[:3, 3] + first.affine[:3, :3] @ (-0.5 * np.ones(3)) \
        - aff[:3, :3] @ (-0.5 * np.ones(3))
    return nib.Nifti1Image(np.zeros(tuple(shape), dtype=np.uint8), aff)


def segment_session(t1w: nib.Nifti1Image, label: str, workdir: str | None = None
                    ) -> SessionTissues:
    """T1w tissue volumes and brain mask of one session; the error text when it fails.

    Parameters
    ----------
    t1w : nibabel image, 3D
    label : str
        Session name for messages.
    workdir : str, optional
        Scratch folder for ANTs.

    Returns
    -------
    SessionTissues
        Volumes in cm^3 (GM + WM = ``brain_cm3``), masks on the T1w grid; ``error`` set (and
        volumes NaN) when the segmentation failed or its volumes are implausible.
    """
    from ironmap.core.regions.tissue_volumes import implausible_volumes, tissue_volumes
    from ironmap.spatial.brain import brain_mask
    from ironmap.spatial.segmentation import SegmentationError, segment_tissues

    try:
        seg = segment_tissues(t1w, label=label, workdir=workdir)
    except SegmentationError as exc:
        return SessionTissues(error=str(exc))
    vox = voxel_sizes(t1w.affine)
    vols = tissue_volumes(seg.gm, seg.wm, seg.csf, vox, deep_gm=seg.deep)
    mask = brain_mask(seg.gm, seg.wm, seg.csf, vox)
    out = SessionTissues(mask=mask, wm=seg.wm, fractions=np.clip(seg.gm + seg.wm, 0, 1))
    problems = implausible_volumes(vols, seg.template_brain_cm3)
    if problems:
        out.error = f"{label}: implausible tissue volumes: {'; '.join(problems)}"
        return out
    out.gm_cm3, out.wm_cm3 = float(vols["gm_cm3"]), float(vols["wm_cm3"])
    out.brain_cm3 = out.gm_cm3 + out.wm_cm3
    return out


def _to_grid(mask: np.ndarray, affine: np.ndarray, target: nib.Nifti1Image,
             world_to_source: np.ndarray, order: int = 1) -> np.ndarray:
    img = nib.Nifti1Image(np.asarray(mask, dtype=np.float32), affine)
    return np.nan_to_num(resample_image(img, target, world_to_source, order=order))


def jacobian_change(first_t1: nib.Nifti1Image, later_t1: nib.Nifti1Image,
                    first_to_later: np.ndarray, brain: np.ndarray, fractions: np.ndarray,
                    workdir: str, seed: int = 1, iterations=(40, 20, 0)) -> float:
    """Jacobian-based per cent brain volume change of the later T1w against the first.

    Both T1w are block-averaged to about 2 mm; the later one is registered onto the first
    (SyN only, started from the given rigid map, metric restricted to the first session's
    brain dilated by about 4 mm); the Jacobian determinant of the warp is averaged over the
    first session's GM + WM fractions.

    Parameters
    ----------
    first_t1, later_t1 : nibabel images
    first_to_later : ndarray of shape (4, 4)
        FIRST T1w world mm -> LATER T1w world mm (rigid).
    brain, fractions : ndarray of shape first_t1.shape
        The first session's brain mask (bool) and GM + WM fractions.
    workdir : str
    seed : int
    iterations : sequence of int
        SyN iterations per level (coarse to fine, shrink factors 4, 2, 1 at the 2 mm grid);
        the default is ANTs' (no iterations at the finest level: a finer level took over
        four times longer on a loaded 2-core machine).

    Returns
    -------
    float
        Per cent brain volume change (negative: atrophy).
    """
    from scipy import ndimage

    from ironmap.spatial.registration import (
        ants_random_seed,
        downsample,
        import_ants,
        save_transform,
        to_ants,
    )

    ants = import_ants()

    small1 = downsample(first_t1, 2.0)
    small2 = downsample(later_t1, 2.0)
    b = _to_grid(brain, first_t1.affine, small1, np.eye(4)) >= 0.5
    frac = _to_grid(fractions, first_t1.affine, small1, np.eye(4))
    near = ndimage.binary_dilation(b, iterations=2)
    init = str(save_transform(first_to_later, Path(workdir) / "rigid.mat"))
    with ants_random_seed(seed):
        reg = ants.registration(fixed=to_ants(small1), moving=to_ants(small2),
                                type_of_transform="SyNOnly", initial_transform=init,
                                mask=to_ants(small1, near.astype(np.float32)),
                                syn_metric="CC", syn_sampling=2,
                                reg_iterations=tuple(iterations),
                                outprefix=str(Path(workdir) / "syn_"), verbose=False)
    warp = next(t for t in reg["fwdtransforms"] if t.endswith("Warp.nii.gz"))
    jac = ants.create_jacobian_determinant_image(to_ants(small1), warp, do_log=False)
    return jacobian_pbvc(jac.numpy(), np.where(b, frac, 0.0))


def flair_to_t1w(t1: nib.Nifti1Image, flair: nib.Nifti1Image, seed: int = 1
                 ) -> tuple[np.ndarray, float]:
    """Rigid fit of one session's T1w onto its FLAIR (ANTs, mutual information).

    Parameters
    ----------
    t1, flair : nibabel images
    seed : int

    Returns
    -------
    (flair_to_t1, nmi) : tuple
        4x4 FLAIR world mm -> T1w world mm, and the normalised mutual information.
    """
    from ironmap.spatial.registration import register

    reg = register(flair, t1, model="rigid", seed=seed)
    return np.asarray(reg.matrix, dtype=float), float(reg.similarity)


def within_subject_change(first: SessionImages, later: SessionImages, *,
                          params: ChangeParams | None = None, jacobian: bool = True,
                          workdir: str | None = None, seed: int = 1,
                          first_tissues: SessionTissues | None = None) -> WithinSubjectChange:
    """Register ``later`` onto ``first`` and measure lesion and brain volume change.

    Parameters
    ----------
    first, later : SessionImages
        FLAIR required; T1w needed for the brain mask, the WM reference and volume change
        (without the first T1w, the brain is where both FLAIRs exceed a tenth of their brain
        median after an Otsu threshold: approximate).
    params : ChangeParams, optional
    jacobian : bool
        Also compute the Jacobian-based volume change (SyN, about a minute).
    workdir : str, optional
        Scratch folder (a temporary one when None).
    seed : int
        ANTs metric sampling seed.
    first_tissues : SessionTissues, optional
        The first session's segmentation when already computed.

    Returns
    -------
    WithinSubjectChange
    """
    from ironmap.spatial.registration import register

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="ironmap-within-") as tmp:
            return within_subject_change(first, later, params=params, jacobian=jacobian,
                                         workdir=tmp, seed=seed, first_tissues=first_tissues)
    t0 = time.perf_counter()
    reg = register(first.flair, later.flair, model="rigid", seed=seed)
    m = np.asarray(reg.matrix, dtype=float)
    to_first, to_later = midspace(m)
    grid = common_grid(first.flair, later.flair)
    f1 = resample_image(first.flair, grid, to_first)
    f2 = resample_image(later.flair, grid, to_later)
    summary: dict = {"registration_nmi": round(float(reg.similarity), 4),
                     "rotation_deg": round(float(np.degrees(np.arccos(np.clip(
                         (np.trace(m[:3, :3]) - 1) / 2, -1, 1)))), 2),
                     "translation_mm": round(float(np.linalg.norm(m[:3, 3])), 2)}
    wm = None
    if first.t1w is not None:
        t1 = first_tissues or segment_session(first.t1w, f"{first.label} T1w", workdir)
        if t1.mask is None:
            raise ValueError(f"{first.label}: no brain mask from the T1w: {t1.error}")
        flair_to_t1, nmi = flair_to_t1w(first.t1w, first.flair, seed)
        mid_to_t1 = flair_to_t1 @ to_first
        brain = _to_grid(t1.mask, first.t1w.affine, grid, mid_to_t1) >= 0.5
        wm = _to_grid(t1.wm, first.t1w.affine, grid, mid_to_t1) >= 0.5
        summary["first_t1w_to_flair_nmi"] = round(nmi, 4)
        summary[f"brain_cm3_{first.label}"] = round(t1.brain_cm3, 2)
        if later.t1w is not None:
            summary.update(_volume_change(first, later, t1, m, flair_to_t1, jacobian,
                                          workdir, seed))
    else:
        brain = _flair_brain_rough(f1) & _flair_brain_rough(f2)
    brain &= np.isfinite(f1) & np.isfinite(f2)
    change = lesion_change(f1, f2, brain, voxel_sizes(grid.affine), wm=wm, params=params)
    summary.update({"new_lesions": change.n_lesions,
                    "new_lesion_volume_cm3": round(change.volume_cm3, 3),
                    "seconds": round(time.perf_counter() - t0, 1)})
    return WithinSubjectChange(later_to_first=m, mid_to_first=to_first, mid_to_later=to_later,
                               grid=nib.Nifti1Image(np.nan_to_num(f1).astype(np.float32),
                                                    grid.affine),
                               lesions=change, brain=brain, summary=summary)


def _volume_change(first: SessionImages, later: SessionImages, t1: SessionTissues,
                   m: np.ndarray, flair1_to_t1: np.ndarray, jacobian: bool, workdir: str,
                   seed: int) -> dict:
    """Brain volume change from the two segmentations and (optionally) the Jacobian."""
    out: dict = {}
    t2 = segment_session(later.t1w, f"{later.label} T1w", workdir)
    out[f"brain_cm3_{later.label}"] = round(t2.brain_cm3, 2)
    if t2.error:
        out["segmentation_error"] = t2.error
    out["brain_change_percent"] = round(percent_volume_change(t1.brain_cm3, t2.brain_cm3), 3)
    if jacobian:
        flair2_to_t2, _ = flair_to_t1w(later.t1w, later.flair, seed)
        # first T1w world -> first FLAIR world -> later FLAIR world -> later T1w world
        t1_to_t2 = flair2_to_t2 @ m @ np.linalg.inv(flair1_to_t1)
        out["jacobian_pbvc_percent"] = round(jacobian_change(
            first.t1w, later.t1w, t1_to_t2, t1.mask, t1.fractions, workdir, seed), 3)
    return out


def _flair_brain_rough(flair: np.ndarray) -> np.ndarray:
    """Bright head voxels (Otsu) with holes filled: a rough FLAIR-only region."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    data = np.nan_to_num(flair)
    fg = data > threshold_otsu(data[data > 0])
    return ndimage.binary_fill_holes(ndimage.binary_erosion(fg, iterations=3))
