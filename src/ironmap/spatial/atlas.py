"""Atlas-based deep grey-matter labels: ANTs SyN of a template onto the T1w, labels carried.

The atlas template (moving) is registered to the subject T1w (fixed) with ANTs: an affine
stage (Mattes mutual information) followed by symmetric normalisation (SyN, Mattes). The atlas
label image is then carried onto the T1w grid through the same transforms with ``genericLabel``
interpolation, which never invents label values. Only labels that name a deep grey-matter region
of the seed study (:mod:`ironmap.core.regions.names`) are kept; the parts of a region (AAL3's
substantia nigra pars compacta and reticulata) are merged into one label per hemisphere.

The atlas is any object with attributes ``name`` (str), ``template`` and ``labels`` (nibabel
images in one world space) and ``names`` (``{index: name}``), such as
:class:`ironmap.io.atlas.Atlas` returned by :func:`ironmap.io.atlas.read_atlas`.

``ants`` is imported inside the functions (slow import). One ITK thread and a fixed seed make
the registration reproducible (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1``).
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap.core.regions.names import canonical_region, region_label_name, split_hemisphere
from ironmap.spatial.registration import ants_random_seed, import_ants, to_ants
from ironmap.spatial.segmentation import SegmentationError, check_warped_similarity

log = logging.getLogger(__name__)

#: Atlas label stems (after the hemisphere token is removed) that core.regions.names does not know.
ATLAS_ALIASES: dict[str, str] = {
    "sn_pc": "substantia_nigra",
    "sn_pr": "substantia_nigra",
    "red_n": "red_nucleus",
    "dentate_n": "dentate_nucleus",
}

#: Default SyN iterations per level (coarse to fine; level k is shrunk 2^(n-1-k) times).
SYN_ITERATIONS: tuple[int, ...] = (60, 30, 10)
#: ANTsPy's default affine schedule, coarse to fine: iterations, shrink factors and
#: smoothing sigmas (voxels) per level (the affine stage of a brain-only template's
#: registration, :func:`_register_brain`; convergence 1e-6 over 10 iterations).
AFFINE_SCHEDULE: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = (
    (2100, 1200, 1200, 10), (6, 4, 2, 1), (3, 2, 1, 0))


@dataclass
class NonlinearFit:
    """SyN fit of a template (moving) onto a subject (fixed).

    ``transforms`` are the ANTs forward transforms (warp field, then affine) that carry
    template-space images onto the subject grid (files in the registration's work folder);
    ``inverse_transforms`` (affine, inverse warp) carry template points to the subject;
    ``similarity`` is the normalised correlation of the warped template with the subject
    inside the template head; ``local`` a local midbrain refinement composed with it
    (:func:`ironmap.spatial.anatomy.automatic_labels` with ``midbrain_template``), else None.
    """

    transforms: list[str]
    similarity: float
    inverse_transforms: list[str] = field(default_factory=list)
    local: object | None = None


def register_syn(subject, template, *, label: str = "T1w", iterations=SYN_ITERATIONS,
                 seed: int = 1, workdir: str | None = None,
                 template_mask=None, initial_translation=None,
                 affine=AFFINE_SCHEDULE) -> NonlinearFit:
    """ANTs affine + SyN registration of ``template`` (moving) onto ``subject`` (fixed).

    Parameters
    ----------
    subject, template : ANTsImage
        Fixed and moving images (3D, any grids).
    iterations : tuple of int
        SyN iterations per resolution level, coarse to fine (e.g. ``(40, 20, 0)`` stops at
        half resolution).
    seed : int
        Seed of ANTs' metric sampling (reproducible with one ITK thread).
    template_mask : ANTsImage, optional
        The brain mask of a brain-only template (such as nilearn's ICBM152 2009a) registered
        onto a whole head: see :func:`_register_brain` (without it the affine stage stretches
        the template brain over the head, and SyN pushes it into the bright scalp).
    initial_translation : array of 3 float, optional
        Start (RAS mm, subject point -> template point) instead of ANTs' centre-of-mass
        alignment (see :func:`ironmap.spatial.anatomy.head_top_translation`).
    affine : tuple of three tuples of int
        The affine stage's iterations, shrink factors and smoothing sigmas (voxels) per
        level, coarse to fine, with ``template_mask`` (default :data:`AFFINE_SCHEDULE`).

    Returns
    -------
    NonlinearFit
        Forward and inverse ANTs transforms (files in ``workdir``) and the similarity.

    Raises
    ------
    SegmentationError
        When the warped template correlates less than
        :data:`ironmap.spatial.segmentation.MIN_SIMILARITY` with the subject.
    """
    ants = import_ants()

    prefix = str(Path(workdir or tempfile.mkdtemp(prefix="ironmap-syn-")) / "syn_")
    init = {}
    # files of other stages must not start with ``prefix``: ANTsPy lists every
    # ``prefix*[0-9]*`` file as a transform of the result
    other = str(Path(prefix).parent / "stage_")
    if initial_translation is not None:
        init["initial_transform"] = [other + "init.mat"]
        lps = np.asarray(initial_translation, dtype=float) * [-1.0, -1.0, 1.0]
        ants.write_transform(ants.create_ants_transform(
            transform_type="AffineTransform", dimension=3, translation=lps.tolist()),
            init["initial_transform"][0])
    its = tuple(int(i) for i in iterations)
    with ants_random_seed(seed):
        if template_mask is None:
            reg = ants.registration(fixed=subject, moving=template, type_of_transform="SyN",
                                    reg_iterations=its, aff_metric="mattes",
                                    syn_metric="mattes", outprefix=prefix, verbose=False,
                                    **init)
        else:
            # the check compares the template brain with the skull-stripped subject
            reg, subject = _register_brain(subject, template, template_mask, its, prefix, init,
                                           other, affine)
    sim = check_warped_similarity(subject, reg["warpedmovout"],
                                  "nonlinear registration to the atlas template", label)
    return NonlinearFit(list(reg["fwdtransforms"]), float(sim), list(reg["invtransforms"]))


#: Margins (mm) around a brain-only template's brain: where the affine metric is taken, and
#: how far beyond the affine-carried brain the subject is kept for the SyN stage.
AFFINE_MARGIN_MM = 10.0
SYN_MARGIN_MM = 4.0


def _grow(mask, mm: float):
    """ANTs binary mask dilated by about ``mm`` (voxel steps of its finest spacing)."""
    ants = import_ants()

    return ants.iMath(mask, "MD", max(1, int(round(mm / min(mask.spacing)))))


def _register_brain(subject, template, brain, iterations, prefix, init, affine_prefix,
                    affine=AFFINE_SCHEDULE):
    """Brain-only template onto a head.

    The affine stage follows ``affine`` (iterations, shrink factors, smoothing sigmas per
    level); its metric is taken inside the template brain + :data:`AFFINE_MARGIN_MM`; SyN then
    matches the template to the subject multiplied by the affine-carried brain +
    :data:`SYN_MARGIN_MM` (a rough skull strip), starting from that affine. Returns the SyN stage's
    ANTs result (transforms include the affine) and the skull-stripped subject.
    """
    ants = import_ants()

    steps, shrink, sigmas = (tuple(int(v) for v in part) for part in affine)
    aff = ants.registration(fixed=subject, moving=template, type_of_transform="Affine",
                            aff_metric="mattes", outprefix=affine_prefix, verbose=False,
                            aff_iterations=steps, aff_shrink_factors=shrink,
                            aff_smoothing_sigmas=sigmas,
                            moving_mask=_grow(brain, AFFINE_MARGIN_MM), mask_all_stages=True,
                            **init)
    carried = ants.apply_transforms(subject, _grow(brain, SYN_MARGIN_MM), aff["fwdtransforms"],
                                    interpolator="linear").numpy()
    stripped = subject.new_image_like(subject.numpy() * np.clip(carried, 0.0, 1.0))
    reg = ants.registration(fixed=stripped, moving=template, type_of_transform="SyNOnly",
                            initial_transform=aff["fwdtransforms"], reg_iterations=iterations,
                            syn_metric="mattes", outprefix=prefix, verbose=False)
    return reg, stripped


def atlas_region(name: str, index: int | None = None) -> tuple[str | None, str]:
    """Atlas label name -> canonical region and hemisphere.

    A trailing ``_<index>`` (AAL3: ``Caudate_L_75``) is ignored.

    Parameters
    ----------
    name : str
        The label name as shipped.
    index : int, optional
        Its index (to recognise the ``_<index>`` suffix).

    Returns
    -------
    region : str or None
        Canonical region, None when the name names none.
    hemisphere : str
        ``left``, ``right`` or ``bilateral``.

    Examples
    --------
    >>> atlas_region("SN_pc_L_161", 161)
    ('substantia_nigra', 'left')
    >>> atlas_region("Right_Dentate")
    ('dentate_nucleus', 'right')
    """
    text = name.strip()
    if index is not None:
        text = re.sub(rf"[-_ ]{int(index)}$", "", text)
    region, hemi = canonical_region(text)
    if region is None:
        stem, hemi = split_hemisphere(text)
        region = ATLAS_ALIASES.get(re.sub(r"[-\s.]+", "_", stem.strip().lower()))
    return region, hemi


def deep_gm_relabel(names: dict[int, str]) -> tuple[dict[int, int], dict[int, str]]:
    """Atlas labels of deep-GM regions -> output indices and names.

    Labels naming the same region and hemisphere are merged under the smallest atlas index;
    output names are FreeSurfer-style (``Left-Caudate``, ``Right-Substantia-Nigra``).

    Parameters
    ----------
    names : dict of int to str
        Atlas index -> label name.

    Returns
    -------
    mapping : dict of int to int
        Atlas index -> output index (labels of no deep-GM region left out).
    names : dict of int to str
        Output index -> name.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index in sorted(names):
        region, hemi = atlas_region(names[index], index)
        if region is not None:
            groups.setdefault((region, hemi), []).append(index)
    mapping: dict[int, int] = {}
    out: dict[int, str] = {}
    for (region, hemi), members in groups.items():
        out[members[0]] = region_label_name(region, hemi)
        mapping.update({m: members[0] for m in members})
    return mapping, out


def atlas_labels(t1w_img: nib.Nifti1Image, atlas, *, label: str = "T1w",
                 regions_only: bool = True, iterations=SYN_ITERATIONS, seed: int = 1,
                 workdir: str | None = None,
                 fit: NonlinearFit | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Deep-GM labels on the T1w grid from an atlas (ANTs SyN + ``genericLabel`` warping).

    Parameters
    ----------
    t1w_img : nibabel image of shape (X, Y, Z)
        The subject's T1w (head or brain, any orientation/voxel size).
    atlas : Atlas-like
        ``name``, ``template``, ``labels``, ``names`` (see the module docstring).
    label : str
        Subject name used in messages and errors.
    regions_only : bool
        Keep only labels naming a seed-study region, merged per region and hemisphere
        (:func:`deep_gm_relabel`); ``False`` carries every atlas label with its own name.
    iterations, seed
        SyN settings (:func:`register_syn`).
    fit : NonlinearFit, optional
        A registration of ``atlas.template`` onto this T1w to reuse (its transform files
        must still exist), e.g. shared with :func:`locate_acpc`.

    Returns
    -------
    labels : ndarray of int32, shape (X, Y, Z)
        Label indices on the T1w grid (0 = background).
    names : dict[int, str]
        Index -> name of every label returned.

    Raises
    ------
    SegmentationError
        Empty/constant T1w, failed registration, an atlas without deep-GM labels, or no atlas
        label landing on the T1w grid.
    """
    ants = import_ants()

    if workdir is None and fit is None:
        with tempfile.TemporaryDirectory(prefix="ironmap-atlas-") as tmp:
            return atlas_labels(t1w_img, atlas, label=label, regions_only=regions_only,
                                iterations=iterations, seed=seed, workdir=tmp)
    atlas_name = getattr(atlas, "name", str(atlas))
    if not hasattr(atlas, "template"):
        raise TypeError(f"atlas {atlas_name}: expected an Atlas (ironmap.io.atlas.read_atlas), "
                        f"got {type(atlas).__name__}")
    data = np.asarray(t1w_img.get_fdata(dtype=np.float32))
    if data.ndim != 3 or not np.isfinite(data).any() or np.nanstd(data) <= 0:
        raise SegmentationError(f"{label}: the T1w image is empty, constant or not 3D")
    if regions_only:
        mapping, names = deep_gm_relabel(atlas.names)
        if not names:
            raise SegmentationError(f"{label}: atlas {atlas_name} has no label naming a "
                                    "deep grey-matter region (caudate, putamen, pallidum, "
                                    "substantia nigra, red nucleus, dentate)")
    else:
        mapping, names = {i: i for i in atlas.names}, dict(atlas.names)
    src = np.asarray(atlas.labels.dataobj).astype(np.int64)
    lut = np.zeros(int(src.max()) + 1, dtype=np.float32)
    for old, new in mapping.items():
        if old <= src.max():
            lut[old] = new
    relabelled = lut[np.clip(src, 0, None)]
    subject = to_ants(t1w_img, np.nan_to_num(data))
    if fit is None:
        fit = register_syn(subject, _template_ants(atlas.template), label=label,
                           iterations=iterations, seed=seed, workdir=workdir)
    moved = ants.apply_transforms(subject, to_ants(atlas.labels, relabelled), fit.transforms,
                                  interpolator="genericLabel")
    out = np.rint(moved.numpy()).astype(np.int32)
    present = {int(i) for i in np.unique(out) if i != 0}
    if not present:
        raise SegmentationError(f"{label}: no label of atlas {atlas_name} lands on the T1w grid")
    lost = sorted(set(names) - present)
    if lost:
        log.warning("%s: atlas %s labels not on the T1w grid: %s", label, atlas_name,
                    ", ".join(names[i] for i in lost))
    return out, {i: names[i] for i in sorted(present)}


def _template_ants(template: nib.Nifti1Image):
    return to_ants(template, template.get_fdata(dtype=np.float32))


def fit_template(t1w_img: nib.Nifti1Image, template: nib.Nifti1Image, *, label: str = "T1w",
                 iterations=SYN_ITERATIONS, seed: int = 1,
                 workdir: str | None = None,
                 template_mask: nib.Nifti1Image | None = None,
                 initial_translation=None, affine=AFFINE_SCHEDULE) -> NonlinearFit:
    """:func:`register_syn` of a nibabel template onto a nibabel T1w (NaN/Inf count as 0).

    The fit's transform files live in ``workdir``; reuse it for :func:`atlas_labels` and
    :func:`locate_acpc` while that folder exists. ``template_mask`` (on the template grid)
    restricts the metric to it in every stage (see :func:`register_syn`).

    Parameters
    ----------
    t1w_img : nibabel.Nifti1Image
        The subject's T1w (fixed).
    template : nibabel.Nifti1Image
        The template (moving).
    label, iterations, seed, workdir, template_mask, initial_translation, affine
        As for :func:`register_syn`.

    Returns
    -------
    NonlinearFit
        The fit.
    """
    data = np.nan_to_num(t1w_img.get_fdata(dtype=np.float32))
    mask = None if template_mask is None else to_ants(
        template_mask, (np.asarray(template_mask.dataobj) > 0).astype(np.float32))
    return register_syn(to_ants(t1w_img, data), _template_ants(template), label=label,
                        iterations=iterations, seed=seed, workdir=workdir, template_mask=mask,
                        initial_translation=initial_translation, affine=affine)


#: Anterior and posterior commissure in MNI152 (FSL MNI152NLin6Asym) world mm (RAS+), read
#: off the FSL MNI152 1 mm T1 (docs/volumes.md): AC = the bright midline bundle in front of
#: the third ventricle, PC = the bright midline spot above the entrance of the aqueduct.
MNI152_AC_MM: tuple[float, float, float] = (0.0, 2.0, -4.0)
MNI152_PC_MM: tuple[float, float, float] = (0.0, -27.0, -3.0)
#: AC and PC in nilearn's ICBM152 2009a template (world mm, RAS+): the FSL MNI152 positions
#: above carried through an ANTs SyN of the FSL MNI152 1 mm brain onto this template at 1 mm
#: and 2 mm (the two agreed within 0.25 mm; docs/volumes.md).
ICBM2009A_AC_MM: tuple[float, float, float] = (-0.4, 2.5, -4.4)
ICBM2009A_PC_MM: tuple[float, float, float] = (-0.6, -26.8, -2.7)


def template_points_to_subject(fit: NonlinearFit, points_mm) -> np.ndarray:
    """Template world points -> subject world points through a SyN fit.

    Parameters
    ----------
    fit : NonlinearFit
        The fit (its transform files must still exist).
    points_mm : array-like of shape (n, 3)
        Template world points, mm, RAS+.

    Returns
    -------
    ndarray of shape (n, 3)
        Subject world points, mm, RAS+.
    """
    ants = import_ants()
    import pandas as pd

    pts = np.atleast_2d(np.asarray(points_mm, dtype=float)) * [-1.0, -1.0, 1.0]  # -> LPS
    df = pd.DataFrame(pts, columns=["x", "y", "z"])
    moved = ants.apply_transforms_to_points(3, df, fit.inverse_transforms,
                                            whichtoinvert=[True, False])
    return moved[["x", "y", "z"]].to_numpy(dtype=float) * [-1.0, -1.0, 1.0]


def locate_acpc(t1w_img: nib.Nifti1Image, template: nib.Nifti1Image, *,
                ac_mm=MNI152_AC_MM, pc_mm=MNI152_PC_MM, label: str = "T1w",
                fit: NonlinearFit | None = None, iterations=SYN_ITERATIONS, seed: int = 1,
                workdir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AC and PC of a T1w (world mm, RAS+) from their template positions via SyN.

    ``template`` must be in the space of ``ac_mm``/``pc_mm`` (defaults: FSL MNI152). The
    result feeds :func:`ironmap.core.regions.putamen_split.split_putamen` when no landmarks are
    given.

    Parameters
    ----------
    t1w_img : nibabel.Nifti1Image
        The subject's T1w.
    template : nibabel.Nifti1Image
        The template T1.
    ac_mm, pc_mm : array-like of 3 float
        AC and PC in template world mm.
    label : str, optional
        The participant, named in messages.
    fit : NonlinearFit, optional
        An existing fit (otherwise one is made).
    iterations, seed, workdir
        As for :func:`register_syn`.

    Returns
    -------
    ac, pc : ndarray of shape (3,)
        Subject world mm, RAS+.
    """
    if fit is None:
        with tempfile.TemporaryDirectory(prefix="ironmap-acpc-") as tmp:
            fit = fit_template(t1w_img, template, label=label, iterations=iterations,
                               seed=seed, workdir=workdir or tmp)
            return locate_acpc(t1w_img, template, ac_mm=ac_mm, pc_mm=pc_mm, fit=fit)
    ac, pc = template_points_to_subject(fit, [ac_mm, pc_mm])
    return ac, pc
