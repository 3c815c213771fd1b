"""Brain extraction and GM/WM/CSF segmentation of a T1w (ANTs).

nilearn's bundled ICBM152 2009a template (no download) is registered to the T1w (affine, then
SyN); its brain mask (plus a margin, minus bright non-brain tissue found by connectivity)
delimits a three-class Atropos segmentation (CSF, GM, WM; Gaussian mixture with the template's
tissue priors carried onto the T1w, weight :data:`PRIOR_WEIGHT`) whose partial volume at class
borders is unmixed linearly (:func:`ironmap.core.regions.tissue_volumes.partial_volume_fractions`).
A template-space region marks deep grey matter. The affine stage gives the SIENAX-style head-size
scaling factor.
Atlas-based deep-GM labels (ANTs SyN) live in :mod:`ironmap.spatial.atlas`, which imports
this module (never the other way round).

``ants`` and ``nilearn`` are imported inside the functions (slow imports). Set
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` before the first call to cap ANTs threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.regions.tissue_volumes import partial_volume_fractions, pure_class_means
from ironmap.spatial.registration import ants_random_seed, import_ants, to_ants

log = logging.getLogger(__name__)

#: Normalised correlation (T1w vs warped template T1, inside the brain) below which a
#: registration counts as failed.
MIN_SIMILARITY = 0.15
#: Brains smaller than this (cm³, GM + WM) are refused as "no brain in the image".
MIN_BRAIN_CM3 = 400.0
#: Weight of the registered template's tissue priors in the Atropos classification (ANTs'
#: own default for prior-based Atropos, e.g. ``antsAtroposN4.sh``; not fitted here).
PRIOR_WEIGHT = 0.25


class SegmentationError(RuntimeError):
    """Segmentation or registration failed (message names the subject/image)."""


# --------------------------------------------------------------------------- nibabel <-> ants
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ants_affine(aimg) -> np.ndarray:
    """RAS+ voxel->world affine of an ANTsImage.

    Parameters
    ----------
    aimg : ANTsImage
        3-D image.

    Returns
    -------
    ndarray of shape (4, 4)
        Voxel -> world mm, RAS+.
    """
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(aimg.direction) * np.asarray(aimg.spacing)
    lps[:3, 3] = aimg.origin
    return _LPS @ lps


# --------------------------------------------------------------------------- template
@dataclass(frozen=True)
class Template:
    """Tissue template on one grid.

    T1 and GM/WM/CSF priors (fractions), brain mask, deep-GM region (1 around the basal ganglia,
    thalami, brainstem; 0 elsewhere; computed on first use: only tissue segmentation reads it).
    """

    t1: nib.Nifti1Image
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray

    @functools.cached_property
    def deep(self) -> np.ndarray:
        """Deep grey-matter region on the template grid (:func:`deep_region`).

        Returns
        -------
        ndarray of bool
            The region, computed on first use.
        """
        return deep_region(self.t1.affine, self.t1.shape)


@functools.lru_cache(maxsize=4)
def load_template(resolution_mm: int = 2) -> Template:
    """Nilearn's bundled ICBM152 2009a template resampled to ``resolution_mm``.

    Parameters
    ----------
    resolution_mm : int, optional
        1, 2 or 3.

    Returns
    -------
    Template
        T1, GM/WM/CSF priors, brain mask and deep-GM region on one grid.
    """
    from nilearn import datasets

    res = None if int(resolution_mm) == 1 else int(resolution_mm)
    t1 = datasets.load_mni152_template(res)
    gm = np.clip(datasets.load_mni152_gm_template(res).get_fdata(), 0, 1)
    wm = np.clip(datasets.load_mni152_wm_template(res).get_fdata(), 0, 1)
    mask = datasets.load_mni152_brain_mask(res).get_fdata() > 0.5
    total = gm + wm
    over = total > 1
    gm[over], wm[over] = gm[over] / total[over], wm[over] / total[over]
    csf = np.where(mask, np.clip(1.0 - gm - wm, 0, 1), 0.0)
    t1 = nib.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine)
    return Template(t1=t1, gm=gm, wm=wm, csf=csf, mask=mask)


def template_brain_cm3(tpl: Template) -> float:
    """Brain volume of a template: its GM + WM prior fractions summed.

    Parameters
    ----------
    tpl : Template
        The template.

    Returns
    -------
    float
        cm³.
    """
    vox = float(np.prod(np.linalg.norm(tpl.t1.affine[:3, :3], axis=0))) / 1000.0
    return float((tpl.gm.sum() + tpl.wm.sum()) * vox)


def deep_region(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Deep grey-matter region of MNI space.

    An ellipsoid around the basal ganglia and thalami (centre (0, -8, 4) mm, semi-axes 30 x 34 x 20
    mm) plus the brainstem and cerebellar-nuclei box.

    Parameters
    ----------
    affine : ndarray of shape (4, 4)
        Voxel -> MNI world mm.
    shape : tuple of int
        Grid shape.

    Returns
    -------
    ndarray of float, shape ``shape``
        1 inside, 0 outside.
    """
    ijk = np.indices(shape[:3]).reshape(3, -1)
    xyz = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape((3, *shape[:3]))
    x, y, z = xyz
    basal = ((x / 30.0) ** 2 + ((y + 8.0) / 34.0) ** 2 + ((z - 4.0) / 20.0) ** 2) <= 1.0
    stem = (np.abs(x) <= 12) & (y >= -40) & (y <= -10) & (z >= -50) & (z < -10)
    return (basal | stem).astype(float)


# --------------------------------------------------------------------------- registration
@dataclass
class TemplateFit:
    """Affine (and optionally SyN) fit of a template onto a subject image."""

    subject_to_template: np.ndarray  # 4x4, subject world mm -> template world mm (RAS+)
    similarity: float
    transforms: list[str] = field(default_factory=list)  # ANTs fwd transforms (template->subject)


def read_ants_affine(path: str) -> np.ndarray:
    """4x4 RAS+ point transform (fixed world -> moving world) of an ANTs/ITK .mat file.

    Parameters
    ----------
    path : str
        The ``.mat`` file.

    Returns
    -------
    ndarray of shape (4, 4)
        Fixed world mm -> moving world mm, RAS+.
    """
    ants = import_ants()

    tx = ants.read_transform(path)
    p = np.asarray(tx.parameters, dtype=float)
    centre = np.asarray(tx.fixed_parameters, dtype=float)
    m = p[:9].reshape(3, 3)
    t = p[9:12]
    lps = np.eye(4)
    lps[:3, :3] = m
    lps[:3, 3] = t + centre - m @ centre
    return _LPS @ lps @ _LPS


@contextlib.contextmanager
def _tempdir(folder: str):
    """Point :mod:`tempfile` (used by ANTsPy for scratch files) at ``folder`` meanwhile."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def register_template(subject, template_t1, *, nonlinear: bool = False, label: str = "T1w",
                      workdir: str | None = None, seed: int = 1, initial_transform=None,
                      mask=None, moving_mask=None) -> TemplateFit:
    """Register a template T1 (moving) to a subject image (fixed), both ANTsImages.

    ``seed`` fixes ANTs' metric sampling, so the result is reproducible (with one ITK thread).
    ``initial_transform`` (an ANTs transform file), ``mask`` (subject grid) and
    ``moving_mask`` (template grid) are passed to ANTs; the masks restrict the metric in
    every stage.

    Parameters
    ----------
    subject, template_t1 : ANTsImage
        Fixed and moving images.
    nonlinear : bool, optional
        Add a SyN stage after the affine one.
    label : str, optional
        The participant, named in messages.
    workdir : str, optional
        Folder for ANTs' transform files.
    seed : int, optional
        ANTs random seed.
    initial_transform : str, optional
        ANTs transform file to start from.
    mask, moving_mask : ANTsImage, optional
        Metric masks on the subject and template grids.

    Returns
    -------
    TemplateFit
        Subject world mm -> template world mm matrix (4x4, RAS+), similarity and the ANTs
        forward transforms.

    Raises
    ------
    SegmentationError
        When the result correlates less than :data:`MIN_SIMILARITY` with the subject image.
    """
    ants = import_ants()

    prefix = str(Path(workdir or tempfile.mkdtemp(prefix="ironmap-reg-")) / "tpl_")
    kind = "SyN" if nonlinear else "Affine"
    with ants_random_seed(seed):
        reg = ants.registration(fixed=subject, moving=template_t1, type_of_transform=kind,
                                outprefix=prefix, aff_metric="mattes", verbose=False,
                                initial_transform=initial_transform, mask=mask,
                                moving_mask=moving_mask,
                                mask_all_stages=mask is not None or moving_mask is not None)
    mat = next(t for t in reg["fwdtransforms"] if t.endswith(".mat"))
    if moving_mask is None:
        sim = check_warped_similarity(subject, reg["warpedmovout"],
                                      "registration to the template", label)
    else:
        inside = ants.apply_transforms(subject, moving_mask, reg["fwdtransforms"],
                                       interpolator="linear")
        sim = check_brain_similarity(subject, reg["warpedmovout"], inside.numpy() >= 0.5,
                                     "registration to the template", label)
    return TemplateFit(read_ants_affine(mat), float(sim), list(reg["fwdtransforms"]))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def check_warped_similarity(fixed, warped, what: str, label: str) -> float:
    """Correlation of a registered (warped) template with the subject, both ANTsImages.

    Taken over the voxels where the warped template has signal (> 5 % of its maximum).

    Parameters
    ----------
    fixed, warped : ANTsImage
        Subject and registered template on the subject grid.
    what : str
        The registration, named in the error.
    label : str
        The participant, named in the error.

    Returns
    -------
    float
        Pearson correlation.

    Raises
    ------
    SegmentationError
        When it is below :data:`MIN_SIMILARITY` (or not finite).
    """
    moved = warped.numpy()
    image = fixed.numpy()
    inside = moved > 0.05 * float(np.max(moved))
    sim = _correlation(image[inside], moved[inside]) if inside.sum() > 100 else 0.0
    log.info("%s: %s, correlation %.3f", label, what, sim)
    if not np.isfinite(sim) or sim < MIN_SIMILARITY:
        raise SegmentationError(f"{label}: {what} failed (correlation {sim:.2f} < "
                                f"{MIN_SIMILARITY}); is this a T1w image of a head?")
    return float(sim)


def check_brain_similarity(fixed, warped, brain: np.ndarray, what: str, label: str,
                           depth_mm: float = 6.0) -> float:
    """Correlation of a registered brain-only template with the subject inside the brain.

    Taken over the voxels more than ``depth_mm`` inside the registered brain mask ``brain``
    (subject grid): the brain's edge, where scalp, dura and a slightly misplaced mask dominate,
    is left out.

    Parameters
    ----------
    fixed, warped : ANTsImage
        Subject and registered template on the subject grid.
    brain : ndarray of bool
        Registered brain mask on the subject grid.
    what, label : str
        The registration and the participant, named in the error.
    depth_mm : float, optional
        Depth below the mask's edge (mm).

    Returns
    -------
    float
        Pearson correlation.

    Raises
    ------
    SegmentationError
        When it is below :data:`MIN_SIMILARITY` (or not finite).
    """
    spacing = np.asarray(fixed.spacing, dtype=float)
    depth = ndimage.distance_transform_edt(np.pad(brain, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    inside = depth > depth_mm
    image, moved = fixed.numpy(), warped.numpy()
    sim = _correlation(image[inside], moved[inside]) if inside.sum() > 100 else 0.0
    log.info("%s: %s, correlation %.3f inside the brain", label, what, sim)
    if not np.isfinite(sim) or sim < MIN_SIMILARITY:
        raise SegmentationError(f"{label}: {what} failed (correlation {sim:.2f} < "
                                f"{MIN_SIMILARITY} inside the brain); is this a T1w image of a "
                                "head?")
    return float(sim)


# --------------------------------------------------------------------------- tissues
@dataclass
class TissueSegmentation:
    """GM/WM/CSF fractions on the T1w grid (arrays of shape (X, Y, Z), 0 outside the brain)."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    deep: np.ndarray  # deep-GM fraction (part of ``gm``)
    mask: np.ndarray  # bool brain mask
    affine: np.ndarray
    subject_to_template: np.ndarray
    similarity: float
    template_brain_cm3: float | None = None  # GM + WM of the template's priors

    @property
    def voxel_sizes(self) -> np.ndarray:
        """Voxel edge lengths in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def segment_tissues(t1w: nib.Nifti1Image, *, label: str = "T1w", template_mm: int = 2,
                    dilate_mm: float = 6.0, csf_margin_mm: float = 3.0, nonlinear: bool = True,
                    workdir: str | None = None, bias_correct: bool = False,
                    prior_weight: float | None = PRIOR_WEIGHT) -> TissueSegmentation:
    """Brain extraction and three-class (CSF, GM, WM) segmentation of a T1w image.

    Returns partial-volume fractions (:class:`TissueSegmentation`); GM includes deep GM
    (``deep``: GM inside the template's deep grey-matter region).

    Parameters
    ----------
    t1w : nibabel image of shape (X, Y, Z)
        T1-weighted image, any orientation and voxel size.
    label : str
        Subject/image name used in log messages and errors.
    template_mm : int
        Resolution of the template used for the registration and priors (1, 2 or 3 mm).
    dilate_mm : float
        Margin (mm, isotropic) added to the registered template brain mask before bright
        non-brain tissue (scalp) is removed from it by connectivity. CSF is counted only
        inside the registered template brain mask itself.
    nonlinear : bool
        Register the template with SyN after the affine stage (the default), so that its brain
        mask and deep-GM region follow the individual brain; the head-size factor always comes
        from the affine stage.
    bias_correct : bool
        N4 bias-field correction inside the brain and its margin before the classification
        (off by default; see docs/volumes.md).
    prior_weight : float or None
        Weight (0-1) of the registered template's GM/WM/CSF priors in the Atropos
        classification; None: three-class k-means without priors (the previous method).

    Returns
    -------
    TissueSegmentation
        GM, WM, CSF and deep-GM fractions on the T1w grid (0-1), voxel sizes (mm), the
        subject-to-template matrix and the registration's similarity.

    Raises
    ------
    SegmentationError
        No usable signal, failed registration or a brain smaller than :data:`MIN_BRAIN_CM3`.
    """
    ants = import_ants()

    if workdir is None:  # ANTs writes transforms to disk: keep them in a folder we remove
        with tempfile.TemporaryDirectory(prefix="ironmap-seg-") as tmp:
            return segment_tissues(t1w, label=label, template_mm=template_mm,
                                   dilate_mm=dilate_mm, csf_margin_mm=csf_margin_mm,
                                   nonlinear=nonlinear, workdir=tmp,
                                   bias_correct=bias_correct, prior_weight=prior_weight)
    data = np.asarray(t1w.get_fdata(dtype=np.float32))
    if data.ndim != 3 or not np.isfinite(data).any() or np.nanstd(data) <= 0:
        raise SegmentationError(f"{label}: the T1w image is empty, constant or not 3D")
    data = np.nan_to_num(data)
    tpl = load_template(template_mm)
    subject = to_ants(t1w, data)
    fit = _fit_brain_template(t1w, subject, tpl, nonlinear=nonlinear, label=label,
                              workdir=workdir)

    def warp(arr: np.ndarray) -> np.ndarray:
        moved = ants.apply_transforms(subject, to_ants(tpl.t1, arr.astype(np.float32)),
                                      fit.transforms, interpolator="linear")
        return np.clip(moved.numpy(), 0.0, 1.0)

    template_brain = warp(tpl.mask.astype(np.float32)) >= 0.5
    vox_cm3 = float(np.prod(np.linalg.norm(t1w.affine[:3, :3], axis=0))) / 1000.0
    if template_brain.sum() * vox_cm3 < MIN_BRAIN_CM3:
        raise SegmentationError(f"{label}: the template brain mask covers only "
                                f"{template_brain.sum() * vox_cm3:.0f} cm3 of the image "
                                "(field of view?)")
    vox_mm = np.linalg.norm(t1w.affine[:3, :3], axis=0)
    outside_mm = ndimage.distance_transform_edt(~template_brain, sampling=vox_mm)
    signal = data != 0  # exact zeros: background of a skull-stripped or masked image
    mask = (outside_mm <= dilate_mm) & signal
    if bias_correct:
        data = _n4(t1w, data, mask, workdir)
    priors = None
    if prior_weight is not None:
        priors = (warp(tpl.csf), warp(tpl.gm), warp(tpl.wm))
    hard = _classify(t1w, data, template_brain & signal, mask, workdir, priors=priors,
                     prior_weight=prior_weight or 0.0)
    depth_mm = ndimage.distance_transform_edt(template_brain, sampling=vox_mm)
    stray = ~_remove_bright_non_brain(hard, float(vox_mm.min()))
    hard[stray & (depth_mm <= dilate_mm)] = 0  # deeper in the brain, bright is white matter
    means = pure_class_means(data, hard, 3)
    _check_tissue_order(means, label)
    csf, gm, wm = partial_volume_fractions(data, hard, np.nan_to_num(means, nan=0.0))
    csf = np.where(outside_mm <= csf_margin_mm, csf, 0.0)  # further out: dark skull, not CSF
    dgm = gm * warp(tpl.deep)
    cgm = gm - dgm
    brain = float((cgm.sum() + dgm.sum() + wm.sum()) * vox_cm3)
    if brain < MIN_BRAIN_CM3:
        raise SegmentationError(f"{label}: only {brain:.0f} cm3 of brain tissue found")
    return TissueSegmentation(gm=cgm + dgm, wm=wm, csf=csf, deep=dgm, mask=hard > 0,
                              affine=t1w.affine, subject_to_template=fit.subject_to_template,
                              similarity=fit.similarity,
                              template_brain_cm3=template_brain_cm3(tpl))


def _n4(t1w, data: np.ndarray, mask: np.ndarray, workdir: str) -> np.ndarray:
    """N4 bias-field correction (ANTs) estimated inside ``mask`` (the brain and its margin).

    The image outside the mask is left as it is.
    """
    ants = import_ants()

    with _tempdir(workdir):
        fixed = ants.n4_bias_field_correction(to_ants(t1w, data),
                                              mask=to_ants(t1w, mask.astype(np.float32)),
                                              shrink_factor=2 if data.size > 4e6 else 1)
    return np.where(mask, fixed.numpy(), data).astype(np.float32)


def _classify(t1w, data: np.ndarray, inner: np.ndarray, mask: np.ndarray,
              workdir: str, priors=None, prior_weight: float = PRIOR_WEIGHT) -> np.ndarray:
    """Hard labels 1/2/3 = CSF/GM/WM (intensity order) inside ``mask``, 0 outside.

    With ``priors`` (CSF, GM, WM fractions of the registered template on the T1w grid) a
    three-class Atropos Gaussian mixture (MRF 0.1) initialised and weighted by the priors
    (``prior_weight``) runs; when its classes are not ordered CSF < GM < WM in intensity, or
    without priors, a three-class k-means Atropos segmentation (MRF 0.1). Either runs inside
    the registered template brain (``inner``) only, so that scalp, fat and skull in the margin
    cannot take a class of their own (on a raw head, bright scalp fat otherwise becomes the
    "WM" class and the brain's GM and WM share one class), on intensities clipped to their
    0.5-99.5th percentiles inside the brain (a tail of bright vessels or outliers otherwise
    takes a class: open_ms patient 07). Margin voxels (``mask`` outside ``inner``) take the
    class whose pure intensity is nearest; those brighter than WM by more than the GM-WM gap
    are non-brain.
    """
    ants = import_ants()

    given = inner
    inner = inner & ~_bright_outliers(data, inner)
    lo, hi = np.percentile(data[inner], [0.5, 99.5]) if inner.any() else (0.0, 0.0)
    subject = to_ants(t1w, np.clip(data, lo, hi))
    init: str | list = "Kmeans[3]"
    if priors is not None:
        init = [to_ants(t1w, np.where(inner, p, 0.0).astype(np.float32)) for p in priors]
    with _tempdir(workdir):  # Atropos writes its posteriors to the default temp folder
        seg = ants.atropos(a=subject, x=to_ants(t1w, inner.astype(np.float32)), i=init,
                           priorweight=prior_weight, m="[0.1,1x1x1]", c="[5,0]", r=0,
                           verbose=0)  # r=0: Atropos' constant seed, so reruns are identical
    post = np.stack([np.where(inner, p.numpy(), 0.0) for p in seg["probabilityimages"]])
    hard = np.where(inner, np.argmax(post, axis=0) + 1, 0)
    means = pure_class_means(data, hard, 3)
    if priors is not None and not means[0] < means[1] < means[2]:
        # the prior classes did not settle in T1w order (CSF < GM < WM): on the XA30 MPRAGE
        # the CSF prior's rim took bright dura and scalp. Fall back to k-means.
        log.warning("tissue classes with template priors are not ordered CSF < GM < WM "
                    "(%s); using k-means classes instead", np.round(means, 3))
        return _classify(t1w, data, given, mask, workdir)
    order = np.argsort(means)
    hard = np.where(hard > 0, np.argsort(order)[np.maximum(hard - 1, 0)] + 1, 0)
    mu = np.sort(np.nan_to_num(means, nan=0.0))
    margin = mask & ~inner
    values = data[margin]
    nearest = np.argmin(np.abs(values[:, None] - mu[None, :]), axis=1) + 1
    nearest[values > mu[2] + (mu[2] - mu[1])] = 0
    hard[margin] = nearest
    return hard


def _bright_outliers(data: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Voxels of ``inner`` brighter than Tukey's outer fence of its intensities (Q3 + 3 IQR).

    On a T1w no brain tissue is that bright, but fat (orbits, scalp caught by the template
    mask) and contrast-enhanced vessels and dura are. Left out of the k-means, they are
    classified as margin voxels (non-brain when brighter than WM by more than the GM-WM gap).
    """
    if not inner.any():
        return np.zeros(data.shape, dtype=bool)
    q1, q3 = np.percentile(data[inner], [25, 75])
    return inner & (data > q3 + 3.0 * (q3 - q1))


def _fit_brain_template(t1w, subject, tpl: Template, *, nonlinear: bool, label: str,
                        workdir: str) -> TemplateFit:
    """The brain-only template onto a T1w with or without scalp.

    Started at the brain's place found from the top of the head, the metric restricted to the
    template brain (plus 4 mm) and to the subject's voxels near it
    (:mod:`ironmap.spatial.headpose`).
    """
    from ironmap.spatial.headpose import initial_pose, write_ants_translation

    t1w, subject = _registration_grid(t1w, subject)
    try:
        pose = initial_pose(t1w, tpl.mask, tpl.t1.affine)
    except ValueError as exc:
        raise SegmentationError(f"{label}: {exc}") from exc
    init = write_ants_translation(pose.translation, Path(workdir) / "start.mat")
    vox = np.linalg.norm(tpl.t1.affine[:3, :3], axis=0)
    near = ndimage.distance_transform_edt(~tpl.mask, sampling=vox) <= 4.0
    return register_template(subject, to_ants(tpl.t1), nonlinear=nonlinear, label=label,
                             workdir=workdir, initial_transform=init,
                             mask=to_ants(t1w, pose.mask.astype(np.float32)),
                             moving_mask=to_ants(tpl.t1, near.astype(np.float32)))


def _registration_grid(t1w, subject, spacing_mm: float = 2.0):
    """The T1w on a grid of at least ``spacing_mm`` for the template registration.

    As nibabel and ANTs images: finer voxels cost time and memory without helping a fit to a 2 mm
    template; the transforms are in world mm and apply to the full-resolution grid.
    """
    ants = import_ants()

    if float(np.min(np.asarray(subject.spacing))) >= 0.75 * spacing_mm:
        return t1w, subject
    small = ants.resample_image(subject, (spacing_mm,) * 3, use_voxels=False, interp_type=0)
    return nib.Nifti1Image(small.numpy().astype(np.float32), ants_affine(small)), small


def _remove_bright_non_brain(hard: np.ndarray, voxel_mm: float, regrow_mm: float = 6.0,
                             ring_voxels: bool = True) -> np.ndarray:
    """Mask without bright tissue (scalp, fat) that the template mask caught at its edge.

    The brightest class is eroded by two voxels (cutting thin partial-volume bridges to the
    scalp), its largest body kept and grown back inside the class; the other bright voxels
    and their 26-neighbours (partial-volume ring) are removed.
    """
    bright = hard == hard.max()
    ball = ndimage.generate_binary_structure(3, 1)
    core = ndimage.binary_erosion(bright, ball, iterations=2)
    lab, n = ndimage.label(core)
    if n == 0:
        return hard > 0
    sizes = ndimage.sum_labels(np.ones(hard.shape), lab, index=np.arange(1, n + 1))
    grow = max(3, int(np.ceil(regrow_mm / voxel_mm)))
    body = ndimage.binary_dilation(lab == 1 + int(np.argmax(sizes)), ball, iterations=grow,
                                   mask=bright)
    stray = bright & ~body
    ring = ndimage.binary_dilation(stray, ball) & ~body if ring_voxels else stray
    return (hard > 0) & ~ring


def _check_tissue_order(means: np.ndarray, label: str) -> None:
    """T1w contrast: pure intensity WM > GM > CSF, else the image is not a usable T1w."""
    if not means[0] < means[1] < means[2]:
        raise SegmentationError(f"{label}: tissue intensities CSF/GM/WM = "
                                f"{means[0]:.3g}/{means[1]:.3g}/{means[2]:.3g} are not ordered "
                                "as in a T1w image")
