"""One participant (and session): inputs -> R2* map -> registration -> regional and lesion R2*.

Steps, in order (each names its inputs and outputs in the participant's log):

1. check the images (readable, finite, non-zero, echoes on one grid, signal falling with TE);
2. fit R2* on the MEGRE grid (``RunConfig.method``; ``auto`` = two-point for two echoes,
   nonlinear for more) and write R2*, S0 and quality flags;
3. register FLAIR -> T1w and the first GRE echo -> T1w (``RunConfig.registration``), save both
   as ITK ``_xfm`` files; every mask space is linked to the R2* grid through the T1w, and the
   two transforms are composed into ONE matrix before a mask is resampled (nearest label,
   no double resampling);
4. regional R2* on the R2* grid after erosion
(:func:`ironmap.core.regions.regional_values.regional_stats`);
5. lesion R2* on the R2* grid and T2 lesion load on the FLAIR grid (seed definition);
6. optional tissue volumes (``--volumes``).

Without rater deep-GM labels, step 4 uses automatic anatomy (atlases through a template
registration, :mod:`ironmap.workflows.anatomy`); without a T1w, the first GRE echo is the
anatomical reference.

All outputs are written into a staging folder and moved into ``OUTPUT_DIR`` only when every
step succeeded, so a failing participant never replaces earlier results.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.core.regions.regional_values import erode_labels
from ironmap.io.bids import InputError, MaskFile, SubjectInputs, resolve_mask_space
from ironmap.io.layout import describe_columns
from ironmap.io.nifti import load_image, save_image
from ironmap.io.outputs import derivative_path, subject_dir
from ironmap.io.sanity import check_mask_values, check_memory
from ironmap.io.tables import write_tsv
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

LESION_COLUMNS = ("lesion_load_cm3", "lesion_count", "lesion_r2star_mean",
                  "lesion_r2star_median", "n_voxels")


@dataclass
class Images:
    """The participant's loaded images."""

    echoes: list[nib.Nifti1Image]
    echo_times: np.ndarray  # s, ascending
    t1w: nib.Nifti1Image  # the anatomical reference: the first echo when there is no T1w
    flair: nib.Nifti1Image | None
    t1w_from_gre: bool = False


# ------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------

def _check_values(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    data = img.get_fdata(dtype=np.float32)
    finite = np.isfinite(data)
    if data.size and finite.all():  # the usual image: no copy of its finite voxels
        if not data.any():
            raise InputError(f"{path}: image is all zeros")
        return data
    if not finite.any():
        raise InputError(f"{path}: every voxel is NaN/Inf")
    if not np.any(data[finite] != 0):
        raise InputError(f"{path}: image is all zeros")
    if not finite.all():
        log.warning("%s: %d NaN/Inf voxels (treated as missing)", path, int((~finite).sum()))
    return data


def load_images(subject: SubjectInputs) -> Images:
    """Load and check every image of a participant (see module notes, step 1).

    Parameters
    ----------
    subject : SubjectInputs
        The participant.

    Returns
    -------
    Images
        Echoes, echo times (s), T1w (or the first echo), FLAIR.

    Raises
    ------
    InputError
        Naming the file, for an unusable image.
    """
    echoes = []
    for e in subject.echoes:
        img = load_image(e.path)
        if len(img.shape) != 3:
            raise InputError(f"{e.path}: expected one 3D volume per echo, got shape {img.shape}")
        _check_values(img, e.path)
        echoes.append(img)
    first = subject.echoes[0].path
    for e, img in zip(subject.echoes[1:], echoes[1:], strict=True):
        if img.shape != echoes[0].shape or not np.allclose(img.affine, echoes[0].affine,
                                                           atol=1e-3):
            raise InputError(f"{e.path}: echo grid {img.shape} differs from {first.name} "
                             f"{echoes[0].shape} (shape or affine); echoes must share one grid")
    tes = np.array([e.echo_time for e in subject.echoes])
    check_echo_order(echoes, tes, subject)
    flair = None
    if subject.flair is not None:
        flair = load_image(subject.flair)
        _check_values(flair, subject.flair)
    if subject.t1w is None:  # GRE-only: the first echo is the anatomical reference
        log.warning("%s: no T1w image; anatomy from the first GRE echo", subject.label)
        return Images(echoes, tes, echoes[0], flair, t1w_from_gre=True)
    t1w = load_image(subject.t1w)
    _check_values(t1w, subject.t1w)
    return Images(echoes, tes, t1w, flair)


def check_echo_order(echoes, echo_times, subject: SubjectInputs, tolerance: float = 0.02
                     ) -> None:
    """Refuse echoes whose head signal rises with ``EchoTime`` (swapped files or times).

    Parameters
    ----------
    echoes : list of nibabel.Nifti1Image
        The echoes in ``EchoTime`` order.
    echo_times : ndarray of shape (n_echoes,)
        Echo times in s.
    subject : SubjectInputs
        The participant.
    tolerance : float, optional
        Relative rise of the median head signal tolerated.

    Raises
    ------
    InputError
        Naming both files.
    """
    stack = [_finite(img.get_fdata(dtype=np.float32)) for img in echoes]
    head = stack[0] > 0.1 * np.percentile(np.maximum.reduce(stack), 99)
    medians = [float(np.median(s[head])) for s in stack]
    for k in range(1, len(stack)):
        if medians[k] > medians[k - 1] * (1 + tolerance):
            a, b = subject.echoes[k - 1], subject.echoes[k]
            raise InputError(
                f"{b.path}: median head signal {medians[k]:.4g} at EchoTime {b.echo_time} s is "
                f"higher than {medians[k - 1]:.4g} at {a.echo_time} s ({a.path.name}); "
                "magnitude must fall with TE: echoes swapped or EchoTime wrong")


def _finite(data: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(data)``, without its copy when every voxel is finite already."""
    return data if np.isfinite(data).all() else np.nan_to_num(data)


# ------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------

def fit_and_write(images: Images, subject: SubjectInputs, cfg: RunConfig, stage: Path):
    """Step 2: R2* fit on the MEGRE grid; returns ``(fit, r2star image)``.

    Parameters
    ----------
    images : Images
        The loaded images.
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    stage : pathlib.Path
        The participant's staging folder (laid out like OUTPUT_DIR).

    Returns
    -------
    fit : R2starFit
        The fit (R2* in s^-1).
    r2img : nibabel.Nifti1Image
        The R2* map.
    """
    from ironmap.workflows.r2star import fit_images, write_r2star_outputs

    # one fit per worker process when participants run in parallel; else all usable cores
    n_jobs = 1 if (cfg.nprocs > 1 or cfg.dask_scheduler) else None
    fit, affine = fit_images(images.echoes, images.echo_times, method=cfg.method, n_jobs=n_jobs)
    pid, sid = subject.participant_id, subject.session_id
    sources = [source_uri(e.path, cfg) for e in subject.echoes]
    write_r2star_outputs(
        fit, affine, derivative_path(stage, "r2starmap", pid, sid),
        s0_path=derivative_path(stage, "s0map", pid, sid),
        flags_path=derivative_path(stage, "fitflags", pid, sid),
        t2star_path=derivative_path(stage, "t2starmap", pid, sid) if cfg.write_t2star else None,
        sidecar_extra={"Sources": sources},
    )
    r2img = nib.Nifti1Image(np.asarray(fit.r2star, dtype=np.float32), affine)
    log.info("%s: R2* fitted (%s, TE %s s), %.1f%% voxels flagged", subject.label, fit.method,
             [float(t) for t in images.echo_times],
             100.0 * float(np.mean(np.asarray(fit.flags) != 0)))
    return fit, r2img


def source_uri(path: Path, cfg: RunConfig) -> str:
    """BIDS URI of an input (``bids:raw:...`` or ``bids:<mask dataset>:...``), no absolute path.

    Parameters
    ----------
    path : pathlib.Path
        An input file.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str
        The URI.
    """
    path = Path(path)
    for name, root in [("raw", Path(cfg.bids_dir)), *((Path(m).name, Path(m)) for m in cfg.masks)]:
        if root in path.parents:
            return f"bids:{name}:{path.relative_to(root).as_posix()}"
    return path.name


def _r2star_reference(subject: SubjectInputs) -> str:
    rel = derivative_path(Path(), "r2starmap", subject.participant_id, subject.session_id)
    return f"bids::{rel.as_posix()}"


def register_series(images: Images, subject: SubjectInputs, cfg: RunConfig, stage: Path,
                    checks: dict | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Step 3: FLAIR -> T1w and GRE echo 1 -> T1w.

    Returns ``xfm``: series -> 4x4 matrix mapping T1w world mm to that series' world mm, and
    the registrations' similarity (normalised mutual information).

    Parameters
    ----------
    images : Images
        The loaded images.
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    stage : pathlib.Path
        The participant's staging folder (laid out like OUTPUT_DIR).
    checks : dict, optional
        Filled with series -> the two-seed check of its registration
        (:mod:`ironmap.spatial.seedcheck`).

    Returns
    -------
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    similarity : dict of str to float
        Normalised mutual information per series (1-2).
    """
    from ironmap.spatial.registration import (
        WORKING_VOXEL_MM,
        downsample,
        save_transform,
    )
    from ironmap.spatial.seedcheck import register_seed_checked

    pid, sid = subject.participant_id, subject.session_id
    xfm = {"T1w": np.eye(4)}
    similarity = {}
    pairs = [("MEGRE", images.echoes[0], "xfm_megre_to_t1w")]
    if images.t1w_from_gre:  # the first echo is the reference: nothing to register
        xfm["MEGRE"], pairs = np.eye(4), []
    if images.flair is not None:
        pairs.append(("FLAIR", images.flair, "xfm_flair_to_t1w"))
    options = registration_options(images.t1w, cfg)
    # block-average each image once for all its registrations (register() would do it per
    # call: each seed of the check, each pair); already averaged images pass through unchanged
    working_mm = options.get("working_voxel_mm", WORKING_VOXEL_MM)
    fixed = downsample(images.t1w, working_mm)
    for name, moving, output in pairs:
        t0 = time.monotonic()
        moving = downsample(moving, working_mm)
        reg = register_seed_checked(fixed, moving, model=cfg.registration,
                                    tolerance_mm=cfg.registration_check_mm,
                                    label=f"{subject.label}: {name} -> T1w", **options)
        save_transform(reg, derivative_path(stage, output, pid, sid))
        xfm[name] = np.asarray(reg.matrix, dtype=float)
        similarity[name] = float(reg.similarity)
        if checks is not None and "seed_check" in reg.details:
            checks[name] = reg.details["seed_check"]
        log.info("%s: %s -> T1w %s registration in %.1f s (NMI %.3f)", subject.label, name,
                 cfg.registration, time.monotonic() - t0, reg.similarity)
    return xfm, similarity


def registration_options(t1w: nib.Nifti1Image, cfg: RunConfig) -> dict[str, Any]:
    """Multi-resolution schedule of the within-subject registrations.

    The finest level is two T1w voxels or coarser (1 mm T1w: 8/4/2 voxel shrink; coarser
    T1w: 4/2): a rigid/affine fit between series of one session does not gain from the
    full-resolution level, which costs most of the time. ``RunConfig.extra
    ["registration_options"]`` overrides any keyword of
    :func:`ironmap.spatial.registration.register`.

    Parameters
    ----------
    t1w : nibabel.Nifti1Image
        The T1w (its voxel size sets the schedule).
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    dict
        ``shrink_factors``, ``smoothing_sigmas`` (voxels), ``iterations``, with the run's
        overrides.
    """
    from ironmap.spatial.grid import voxel_sizes

    if float(np.min(voxel_sizes(t1w.affine))) < 1.5:
        options = {"shrink_factors": (8, 4, 2), "smoothing_sigmas": (3.0, 2.0, 1.0),
                   "iterations": (200, 100, 50)}
    else:
        options = {"shrink_factors": (4, 2), "smoothing_sigmas": (2.0, 1.0),
                   "iterations": (200, 100)}
    options.update(cfg.extra.get("registration_options", {}))
    return options


def world_to_source(xfm: dict[str, np.ndarray], target: str, source: str) -> np.ndarray:
    """One matrix mapping ``target`` series world mm -> ``source`` series world mm via T1w.

    Parameters
    ----------
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    target, source : str
        Series names.

    Returns
    -------
    ndarray of shape (4, 4)
        ``target`` world mm -> ``source`` world mm.
    """
    return xfm[source] @ np.linalg.inv(xfm[target])


def _pick(masks: tuple[MaskFile, ...], what: str, label: str) -> MaskFile | None:
    if not masks:
        return None
    if len(masks) > 1:
        log.warning("%s: %d %s files; using %s (others: %s)", label, len(masks), what,
                    masks[0].path, ", ".join(m.path.name for m in masks[1:]))
    return masks[0]


def label_names(mask: MaskFile, data: np.ndarray) -> dict[int, str]:
    """Label index -> name from ``dseg.tsv``, else FreeSurfer ``aseg`` numbers.

    Parameters
    ----------
    mask : MaskFile
        The label map.
    data : ndarray
        Its voxel values.

    Returns
    -------
    dict of int to str
        Label index -> name.

    Raises
    ------
    InputError
        Naming the file, when labels have no names.
    """
    from ironmap.core.regions.names import ASEG_LABELS

    if mask.labels:
        return dict(mask.labels)
    present = {int(v) for v in np.unique(data) if v != 0}
    known = {k: v for k, v in ASEG_LABELS.items() if k in present}
    if not known:
        raise InputError(f"{mask.path}: no dseg.tsv beside it or in its dataset, and its label "
                         "numbers are not FreeSurfer aseg numbers (11/50 caudate, 12/51 "
                         "putamen, 13/52 pallidum)")
    return known


def choose_masks(subject: SubjectInputs) -> dict[str, tuple[MaskFile, str] | None]:
    """The deep-GM label map and lesion mask to use, each with its space (checked early).

    Parameters
    ----------
    subject : SubjectInputs
        The participant.

    Returns
    -------
    dict
        ``dseg`` and ``lesion`` -> ``(MaskFile, space)`` or None.
    """
    chosen: dict[str, tuple[MaskFile, str] | None] = {}
    for key, masks, what in (("dseg", subject.dsegs, "deep-GM label"),
                             ("lesion", subject.lesion_masks, "lesion mask")):
        mask = _pick(masks, what, subject.label)
        if mask is not None and key == "lesion":
            check_mask_values(np.asarray(load_image(mask.path).dataobj), mask.path, what)
        chosen[key] = None if mask is None else (mask, resolve_mask_space(mask, subject))
    return chosen


def regional(subject, cfg, images, fit, r2img, xfm, stage, chosen, lesion=None) -> int:
    """Step 4: deep-GM labels, erosion and the regional table; return its rows.

    Labels onto the R2* grid come from rater masks, else automatic anatomy; a whole putamen is
    split at the AC plane.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    images : Images
        The loaded images (:func:`load_images`).
    fit : R2starFit
        The R2* fit.
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    stage : pathlib.Path
        The participant's staging folder (laid out like OUTPUT_DIR).
    chosen : tuple or None
        The chosen mask ``(MaskFile, space)`` (:func:`choose_masks`).
    lesion : tuple, optional
        The chosen lesion mask.

    Returns
    -------
    int
        Rows of the regional table (0 without labels).
    """
    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.spatial.grid import resample_labels, voxel_sizes
    from ironmap.workflows import anatomy, erosion, putamen, sn_core

    pid, sid = subject.participant_id, subject.session_id
    mask, space = chosen or (None, None)
    cfg, erosion_rule = erosion.resolve(cfg, r2img.affine)
    landmarks = putamen.explicit_landmarks(subject, cfg) if cfg.putamen_split else None
    if mask is not None:
        src = load_image(mask.path)
        names = label_names(mask, np.asarray(src.dataobj))
        labels = resample_labels(src, r2img, world_to_source(xfm, "MEGRE", space))
        native = erosion.native_eroded(src, names, cfg)
        eroded = None if native is None else resample_labels(
            native, r2img, world_to_source(xfm, "MEGRE", space))
        log.info("%s: labels %s (%s space) -> R2* grid", subject.label, mask.path.name, space)
        sources = [source_uri(mask.path, cfg)]
        core = None
    elif anatomy.enabled(cfg):
        labels, names, atlas_marks, auto, eroded, core = anatomy.labels_on_grid(
            subject, cfg, images, r2img, xfm, landmarks, lesion)
        landmarks = landmarks or atlas_marks
        sources = [f"atlas:{a['Name']}" for a in auto["Atlases"]]
    else:
        log.warning("%s: no deep-GM labels (--masks, --atlas or automatic anatomy); no "
                    "regional table", subject.label)
        return 0
    sidecar = {"SpatialReference": _r2star_reference(subject), "Sources": sources,
               **({"Anatomy": auto} if mask is None else {"MasksSource": "rater"})}
    if putamen.needs_split(names, cfg):
        if landmarks is None:
            landmarks = putamen.template_landmarks(images.t1w, subject.label, cfg.work_dir)
        voxel_to_t1w = np.linalg.inv(xfm["MEGRE"]) @ r2img.affine
        labels, names, sidecar["PutamenSplit"] = putamen.split_on_grid(
            labels, names, voxel_to_t1w, xfm, landmarks, subject.label)
    eroded = erosion.restrict(eroded, labels)
    table = regional_stats(fit.r2star, labels, names, flags=fit.flags,
                           voxel_sizes=voxel_sizes(r2img.affine), core_labels=core,
                           **erosion.stats_options(cfg, eroded))
    erosion.check_region_sizes(table, cfg, subject.label)
    dictionary = describe_columns("regions_table", table.columns)
    write_tsv(table, derivative_path(stage, "regions_table", pid, sid), dictionary)
    labels = labels.astype(np.int16)
    save_image(labels, r2img.affine, derivative_path(stage, "dseg_r2star", pid, sid),
               sidecar=sidecar)
    used = sorted(int(i) for i in np.unique(labels) if i != 0)
    write_tsv(pd.DataFrame({"index": used, "name": [names.get(i, str(i)) for i in used]}),
              derivative_path(stage, "dseg_labels", pid, sid))
    eroded, fell_back = erosion.fallback_eroded(labels, names, eroded, r2img.affine, cfg,
                                                subject.label)
    fell_back = sn_core.uncored(fell_back, core, names)
    written = sn_core.with_core(
        erosion.eroded_label_image(labels, eroded, r2img.affine, cfg, erode_labels), core)
    save_image(written.astype(np.int16), r2img.affine,
               derivative_path(stage, "dseg_eroded", pid, sid),
               sidecar={**erosion.erosion_sidecar(cfg, fell_back), **erosion_rule})
    return len(table)


def lesions(subject, cfg, images, fit, r2img, xfm, stage, chosen) -> dict[str, Any]:
    """Step 5: lesion R2* (R2* grid) and T2 lesion load (FLAIR grid). Returns summary row.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    images : Images
        The loaded images (:func:`load_images`).
    fit : R2starFit
        The R2* fit.
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    stage : pathlib.Path
        The participant's staging folder (laid out like OUTPUT_DIR).
    chosen : tuple or None
        The chosen mask ``(MaskFile, space)`` (:func:`choose_masks`).

    Returns
    -------
    dict
        :data:`LESION_COLUMNS` (None without a mask; cm3, s^-1).
    """
    from ironmap.core.lesions.lesion_values import lesion_stats
    from ironmap.spatial.grid import resample_labels, same_grid, voxel_sizes

    pid, sid = subject.participant_id, subject.session_id
    if chosen is None:
        log.info("%s: no lesion mask; lesion columns are n/a", subject.label)
        return {c: None for c in LESION_COLUMNS}
    mask, space = chosen
    src = load_image(mask.path)
    binary = nib.Nifti1Image((np.nan_to_num(np.asarray(src.dataobj)) > 0).astype(np.uint8),
                             src.affine)
    if space == "FLAIR" and same_grid(binary, images.flair):
        on_flair = np.asarray(binary.dataobj) > 0
    else:
        on_flair = resample_labels(binary, images.flair,
                                   world_to_source(xfm, "FLAIR", space)) > 0
    from ironmap.workflows.participant_lesions import r2star_mask_path

    r2_src = load_image(r2star_mask_path(mask.path))  # automatic: lesion cores, no rim
    r2_binary = nib.Nifti1Image((np.nan_to_num(np.asarray(r2_src.dataobj)) > 0).astype(np.uint8),
                                r2_src.affine)
    on_r2 = resample_labels(r2_binary, r2img, world_to_source(xfm, "MEGRE", space)) > 0
    summary, per_lesion = lesion_stats(
        fit.r2star, on_r2, flags=fit.flags, voxel_sizes=voxel_sizes(r2img.affine),
        mask_flair=on_flair, flair_voxel_sizes=voxel_sizes(images.flair.affine))
    save_image(on_r2.astype(np.uint8), r2img.affine,
               derivative_path(stage, "lesion_r2star", pid, sid),
               sidecar={"Type": "Lesion", "SpatialReference": _r2star_reference(subject),
                        "Sources": [source_uri(mask.path, cfg)]})
    dictionary = describe_columns("lesions_table", per_lesion.columns)
    write_tsv(per_lesion, derivative_path(stage, "lesions_table", pid, sid), dictionary)
    row = {}
    for key in LESION_COLUMNS:
        value = summary.get(key)
        row[key] = None if value is None or (isinstance(value, float) and np.isnan(value)) \
            else (float(value) if isinstance(value, float | np.floating) else int(value))
    log.info("%s: lesion load %.3f cm3 (%s space), %s lesions", subject.label,
             summary["lesion_load_cm3"], space, row.get("lesion_count"))
    return row


def analyse(subject: SubjectInputs, cfg: RunConfig, stage: Path,
            keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run steps 1-6 into ``stage``; returns the participant's summary (lesions, volumes, QC).

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    stage : pathlib.Path
        The participant's staging folder (laid out like OUTPUT_DIR).
    keep : dict, optional
        Receives the loaded raw images (``echoes``, ``t1w``, ``flair``) for the QC page.

    Returns
    -------
    dict
        The participant's summary (recorded in its manifest).
    """
    if subject.problems:
        raise InputError("; ".join(subject.problems))
    if subject.flair is None and subject.lesion_masks:
        raise InputError(f"{subject.label}: no FLAIR image (*_FLAIR.nii[.gz]) in the raw "
                         "dataset, but lesion masks exist: lesions and T2 lesion load are "
                         "measured on the FLAIR")
    check_memory(subject.input_files(), cfg.max_image_gb, subject.label)  # headers only
    from ironmap.workflows import anatomy

    chosen = choose_masks(subject)
    images = load_images(subject)
    if keep is not None:  # the QC page draws from them (workflows.report.participant_page)
        keep.update(echoes=images.echoes, flair=images.flair,
                    t1w=None if images.t1w_from_gre else images.t1w)
    fit, r2img = fit_and_write(images, subject, cfg, stage)
    seed_checks: dict[str, dict] = {}
    from ironmap.workflows.registration_reuse import reuse

    xfm, similarity = (reuse(images, subject, cfg, stage, seed_checks)
                       or register_series(images, subject, cfg, stage, seed_checks))
    failed: dict[str, str] = {}
    from ironmap.spatial.seedcheck import describe_check

    # failed two-seed checks: a QC flag each (core.qc.run_flags.registration_check_flags)
    unstable = {name: describe_check(c) for name, c in seed_checks.items() if not c["passed"]}
    from ironmap.workflows.participant_lesions import choose_lesion_mask

    lesion_mask, lesion_source = choose_lesion_mask(subject, cfg, images, stage, chosen["lesion"])
    n_regions = _tolerate_segmentation(
        "deep_gm_labels", failed, subject,
        lambda: regional(subject, cfg, images, fit, r2img, xfm, stage, chosen["dseg"],
                         lesion_mask))
    lesion_row = lesions(subject, cfg, images, fit, r2img, xfm, stage, lesion_mask)
    lesion_row["lesion_source"] = lesion_source
    summary: dict[str, Any] = {"lesions": lesion_row, "lesions_source": lesion_source,
                               "registration_nmi": similarity, "n_region_rows": n_regions or 0,
                               "registration_seed_check": seed_checks,
                               "registration_check_flags": unstable,
                               "fit_method": str(fit.method),
                               **anatomy.summary_entry(
                                   derivative_path(stage, "regions_table", subject.participant_id,
                                                   subject.session_id),
                                   anatomy.masks_source(cfg, chosen["dseg"]))}
    if summary.get("anatomy_missing_regions"):  # a QC flag, like a failed segmentation
        failed["anatomy"] = (f"{subject.label}: automatic labels have no voxel of "
                             + ", ".join(summary["anatomy_missing_regions"]))
    wants_t1w = cfg.volumes or getattr(cfg, "brain_mask", False)
    if wants_t1w and images.t1w_from_gre:
        failed["volumes" if cfg.volumes else "brain_mask"] = (
            "no T1w image: tissue volumes and the T1w brain mask need a T1w")
    elif wants_t1w:  # T1w segmented once for both
        from ironmap.workflows.brain import t1w_anatomy

        t1w_anatomy(subject, cfg, images, r2img, xfm, stage, summary, failed)
    if failed:
        summary["segmentation_errors"] = failed
    return summary


def _tolerate_segmentation(step: str, failed: dict[str, str], subject: SubjectInputs, run):
    """``run()``, or None when it raises a segmentation/registration failure of this participant.

    The other outputs are kept, the failure goes into ``failed`` (a QC flag in ``group/qc.tsv``).
    """
    from ironmap.spatial.segmentation import SegmentationError

    try:
        return run()
    except SegmentationError as exc:
        failed[step] = str(exc)
        log.error("%s: %s failed, the participant's other outputs are kept: %s",
                  subject.label, step.replace("_", " "), exc)
        return None


def commit(stage: Path, output_dir: Path, subject: SubjectInputs) -> list[Path]:
    """Move every staged file into ``output_dir`` (atomic rename per file); returns them.

    Parameters
    ----------
    stage : pathlib.Path
        The staging folder.
    output_dir : pathlib.Path
        OUTPUT_DIR.
    subject : SubjectInputs
        The participant.

    Returns
    -------
    list of pathlib.Path
        The files in OUTPUT_DIR.
    """
    moved = []
    src_root = subject_dir(stage, subject.participant_id, subject.session_id)
    dst_root = subject_dir(output_dir, subject.participant_id, subject.session_id)
    for path in sorted(p for p in src_root.rglob("*") if p.is_file()):
        dest = dst_root / path.relative_to(src_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.replace(dest)
        moved.append(dest)
    shutil.rmtree(stage, ignore_errors=True)
    return moved
