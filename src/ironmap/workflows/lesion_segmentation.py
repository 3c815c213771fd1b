"""Automatic FLAIR lesion segmentation: FLAIR (+ T1w) -> BIDS lesion mask + probability map."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap import __version__
from ironmap.core.lesions.auto_segment import (
    ContrastError,
    LesionSegmentation,
    LesionSegParams,
    check_flair_contrast,
    kmeans_1d,
    segment_lesions,
)
from ironmap.io.atomic import check_writable
from ironmap.io.nifti import ImageError, load_image, save_image
from ironmap.io.outputs import command_line

log = logging.getLogger(__name__)

METHOD = ("FLAIR hyperintensity inside white matter: robust z-score against normal-appearing "
          "WM, template tissue priors (ICBM152 2009a, ANTs SyN), hysteresis from core voxels, "
          "minimum lesion size")


class LesionSegError(ValueError):
    """Unusable input for automatic lesion segmentation (message names the file)."""


def _checked_data(img: nib.Nifti1Image, path, what: str) -> np.ndarray:
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if data.ndim != 3:
        raise LesionSegError(f"{path}: {what} must be a 3D image, got shape {data.shape}")
    finite = np.nan_to_num(data)
    if not np.any(finite != 0):
        raise LesionSegError(f"{path}: {what} is all zeros")
    if np.std(finite) <= 0:
        raise LesionSegError(f"{path}: {what} is constant")
    return finite


def segment_on_priors(flair: np.ndarray, brain: np.ndarray, priors: dict[str, np.ndarray],
                      t1w: np.ndarray | None, voxel_sizes_mm, *,
                      params: LesionSegParams | None = None,
                      threshold: float = 0.5) -> LesionSegmentation:
    """Segment lesions from arrays already on the FLAIR grid (the step after the priors).

    With a T1w the NAWM reference is the WM prior >= 0.5 where the T1w is in the brightest of
    three k-means classes; without, the core's default (WM prior >= 0.9).

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities.
    brain : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    priors : dict of str to ndarray of shape (X, Y, Z)
        ``gm``, ``wm``, ``csf`` tissue fractions.
    t1w : ndarray of shape (X, Y, Z) or None
        T1w on the FLAIR grid.
    voxel_sizes_mm : sequence of 3 float
        Voxel edges in mm.
    params : LesionSegParams, optional
        Segmentation parameters (defaults when None).
    threshold : float, optional
        Probability threshold.

    Returns
    -------
    LesionSegmentation
        As :func:`ironmap.core.lesions.auto_segment.segment_lesions`.
    """
    nawm = None
    if t1w is not None:
        _, gm_c, wm_c = kmeans_1d(t1w[brain], 3)
        nawm = (priors["wm"] >= 0.5) & (t1w > 0.5 * (gm_c + wm_c))
    return segment_lesions(flair, brain, priors, voxel_sizes_mm, nawm=nawm, t1w=t1w,
                           params=params, threshold=threshold)


def segment_images(flair: nib.Nifti1Image, t1w: nib.Nifti1Image | None = None, *,
                   label: str = "FLAIR", params: LesionSegParams | None = None,
                   threshold: float = 0.5) -> tuple[LesionSegmentation, dict]:
    """Segment lesions on a FLAIR image (nibabel), optionally guided by a T1w.

    Parameters
    ----------
    flair : nibabel.Nifti1Image
        The FLAIR.
    t1w : nibabel.Nifti1Image, optional
        The T1w (registration and grey-matter guidance).
    label : str, optional
        Named in messages.
    params : LesionSegParams, optional
        Segmentation parameters (defaults when None).
    threshold : float, optional
        Probability above which a voxel is lesion.

    Returns
    -------
    (LesionSegmentation, dict)
        The segmentation on the FLAIR grid and provenance (method, parameters, references).

    Raises
    ------
    LesionSegError
        Not a FLAIR, empty or all-zero image, no brain found.
    """
    from ironmap.spatial.lesion_priors import flair_priors
    from ironmap.spatial.segmentation import SegmentationError

    t0 = time.process_time()
    data = _checked_data(flair, label, "FLAIR")
    if t1w is not None:
        _checked_data(t1w, label, "T1w")
    try:
        fp = flair_priors(flair, t1w, label=label)
    except SegmentationError as exc:
        raise LesionSegError(str(exc)) from exc
    vox = np.linalg.norm(flair.affine[:3, :3], axis=0)
    try:
        check_flair_contrast(data, fp.brain, fp.priors, label=label)
        seg = segment_on_priors(data, fp.brain, fp.priors, fp.t1w, vox, params=params,
                                threshold=threshold)
    except ContrastError as exc:
        raise LesionSegError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}") \
            from exc
    info = {"Method": METHOD, "Parameters": (params or LesionSegParams()).as_dict(),
            "Threshold": float(threshold), "UsedT1w": t1w is not None,
            "SkullStripped": fp.skull_stripped, "NAWMMedian": seg.nawm_median,
            "NAWMSigma": seg.nawm_sigma, "CPUSeconds": round(time.process_time() - t0, 1)}
    log.info("%s: %d lesions, %.2f cm3 (NAWM %.4g +- %.4g)", label, seg.n_lesions,
             seg.load_cm3, seg.nawm_median, seg.nawm_sigma)
    return seg, info


def segment_from_file(flair_path, out_path, *, t1w_path=None, threshold: float = 0.5,
                      probability_path=None, overwrite: bool = False,
                      params: LesionSegParams | None = None) -> LesionSegmentation:
    """``ironmap lesions segment``.

    Write a BIDS ``_label-lesion_mask`` (+ JSON) and optionally the probability map. Nothing is
    written when any check fails.

    Parameters
    ----------
    flair_path, out_path : path-like
        The FLAIR and the mask to write.
    t1w_path : path-like, optional
        The T1w.
    threshold : float, optional
        Probability threshold.
    probability_path : path-like, optional
        Where to write the probability map.
    overwrite : bool, optional
        Replace existing files.
    params : LesionSegParams, optional
        Segmentation parameters.

    Returns
    -------
    LesionSegmentation
        Mask and probability on the FLAIR grid.
    """
    out_path = check_writable(out_path, overwrite)
    if probability_path is not None:
        probability_path = check_writable(probability_path, overwrite)
    if not Path(flair_path).exists():
        raise LesionSegError(f"{flair_path}: FLAIR image not found")
    try:
        flair = load_image(flair_path)
        t1w = load_image(t1w_path) if t1w_path else None
    except ImageError as exc:
        raise LesionSegError(str(exc)) from exc
    seg, info = segment_images(flair, t1w, label=str(flair_path), params=params,
                               threshold=threshold)
    sources = [Path(flair_path).name] + ([Path(t1w_path).name] if t1w_path else [])
    _write_outputs(seg, flair.affine, info, sources, flair_path, out_path, probability_path,
                   "automatic white-matter lesion mask")
    return seg


def _write_outputs(seg: LesionSegmentation, affine, info: dict, sources: list[str], flair_path,
                   out_path: Path, probability_path: Path | None, description: str) -> None:
    """The BIDS lesion mask (+ JSON sidecar) and, when asked, the probability map."""
    generated = [{"Name": "ironmap lesions segment", "Version": __version__,
                  "Description": command_line()}]
    sidecar = {"Type": "Lesion", "Description": description,
               "Sources": sources, "SpatialReference": Path(flair_path).name,
               "LesionSource": "automatic", **info, "LesionCount": seg.n_lesions,
               "LesionVolume": seg.load_cm3, "LesionVolumeUnits": "cm^3",
               "GeneratedBy": generated}
    if probability_path is not None:
        save_image(seg.probability, affine, probability_path,
                   sidecar={"Description": "lesion probability (0-1)", "Sources": sources,
                            **info, "GeneratedBy": generated})
    save_image(seg.mask.astype(np.uint8), affine, out_path, sidecar=sidecar)


SAMSEG_METHOD = ("SAMSEG lesion mode (Cerri et al. 2021; samseg {version}), T1w + FLAIR, "
                 "{shape}, model fitted at 2 mm; lesion = posterior > threshold, bias-corrected "
                 "FLAIR above the cortex's geometric mean (SAMSEG's --lesion-mask-pattern 0 1), "
                 "components >= ironmap's minimum lesion size")


def segment_samseg_images(flair: nib.Nifti1Image, t1w: nib.Nifti1Image, work: Path, *,
                          label: str = "FLAIR", threshold: float = 0.5,
                          samseg_cmd=None) -> tuple[LesionSegmentation, dict]:
    """SAMSEG lesion mode on a FLAIR + T1w pair (nibabel images); no outputs written.

    The T1w is carried onto the FLAIR grid (rigid fit unless both share one grid), SAMSEG runs
    on the pair in ``work`` (:func:`ironmap.io.samseg.run_samseg_lesion`, one thread, fitted at
    2 mm, no shape model unless TensorFlow is there), and its lesion posterior on the FLAIR grid
    is the probability map; the mask is
    :func:`ironmap.core.lesions.auto_segment.posterior_lesions` of it (posterior > threshold,
    FLAIR brighter than cortex, minimum lesion size). The FLAIR contrast is checked on SAMSEG's
    own labels (ventricles < cerebral WM < cortex). Lesion cores (for lesion R2*) are
    :func:`ironmap.core.lesions.auto_segment.lesion_cores` of the bias-corrected FLAIR against
    its median over SAMSEG's cerebral white matter outside the lesions.

    Parameters
    ----------
    flair, t1w : nibabel.Nifti1Image
        The FLAIR and the T1w.
    work : pathlib.Path
        Scratch folder (SAMSEG's inputs and outputs go there).
    label : str, optional
        Named in messages.
    threshold : float, optional
        Threshold on SAMSEG's lesion posterior.
    samseg_cmd : path-like, optional
        SAMSEG's ``run_samseg`` (else ``$SAMSEG_CMD`` or ``run_samseg`` on ``PATH``).

    Returns
    -------
    (LesionSegmentation, dict)
        Mask, posterior and cores on the FLAIR grid (``zscore`` NaN) and provenance (method,
        SAMSEG version and command, threshold, CPU seconds with SAMSEG's).

    Raises
    ------
    LesionSegError
        Unusable input, SAMSEG absent or failing, not a FLAIR.
    """
    from ironmap.core.lesions.auto_segment import lesion_cores, posterior_lesions
    from ironmap.core.lesions.lesion_values import label_lesions, lesion_load_cm3
    from ironmap.io.samseg import SAMSEG_TISSUE, SamsegError, find_samseg, run_samseg_lesion
    from ironmap.spatial.grid import resample_image, resample_labels, same_grid
    from ironmap.spatial.lesion_priors import t1w_on_flair

    t0 = time.process_time()
    try:
        find_samseg(samseg_cmd)
    except SamsegError as exc:
        raise LesionSegError(f"{label}: {exc}") from exc
    data = _checked_data(flair, label, "FLAIR")
    _checked_data(t1w, label, "T1w")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t1_on_flair, _ = t1w_on_flair(t1w, flair)
    inputs = (work / "t1w.nii.gz", work / "flair.nii.gz")
    save_image(np.nan_to_num(t1_on_flair).astype(np.float32), flair.affine, inputs[0])
    save_image(data, flair.affine, inputs[1])
    try:
        run = run_samseg_lesion(*inputs, work / "samseg", cmd=samseg_cmd)
    except SamsegError as exc:
        raise LesionSegError(f"{label}: {exc}") from exc
    posterior, corrected = (np.nan_to_num(np.asarray(img.dataobj) if same_grid(img, flair)
                                          else resample_image(img, flair))
                            for img in (run.posterior, run.flair_corrected))
    posterior = np.clip(posterior, 0.0, 1.0).astype(np.float32)
    labels = (np.asarray(run.labels.dataobj) if same_grid(run.labels, flair)
              else resample_labels(run.labels, flair)).astype(np.int32)
    tissue = {name: np.isin(labels, codes).astype(np.float32)
              for name, codes in SAMSEG_TISSUE.items()}
    vox = np.linalg.norm(flair.affine[:3, :3], axis=0)
    try:
        check_flair_contrast(data, labels > 0, tissue, label=label)
        mask = posterior_lesions(posterior, corrected, tissue["gm"] > 0, vox,
                                 threshold=threshold)
    except ContrastError as exc:
        raise LesionSegError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}") \
            from exc
    nawm = (tissue["wm"] > 0) & ~mask
    reference = float(np.median(corrected[nawm])) if nawm.any() else float("nan")
    core = lesion_cores(corrected, mask, reference) if nawm.any() else mask.copy()
    seg = LesionSegmentation(mask=mask, probability=posterior,
                             zscore=np.full(mask.shape, np.nan, np.float32),
                             n_lesions=label_lesions(mask)[1], nawm_median=reference,
                             nawm_sigma=float("nan"), load_cm3=lesion_load_cm3(mask, vox),
                             core=core)
    shape = "shape model" if run.shape_model else "no shape model"
    info = {"Method": SAMSEG_METHOD.format(version=run.version, shape=shape),
            "SamsegVersion": run.version, "SamsegCommand": run.command,
            "Threshold": float(threshold), "UsedT1w": True,
            "CPUSeconds": round(time.process_time() - t0 + run.cpu_s, 1)}
    log.info("%s: SAMSEG %s, %d lesions, %.2f cm3", label, run.version, seg.n_lesions,
             seg.load_cm3)
    return seg, info


def segment_samseg_from_file(flair_path, out_path, *, t1w_path, threshold: float = 0.5,
                             probability_path=None, overwrite: bool = False,
                             samseg_cmd=None) -> LesionSegmentation:
    """``ironmap lesions segment --method samseg``: SAMSEG lesion mode in its own environment.

    :func:`segment_samseg_images` in a scratch folder inside the output folder; writes the same
    BIDS mask, probability and sidecar as the default method; nothing is written when a check
    fails.

    Parameters
    ----------
    flair_path, out_path : path-like
        The FLAIR and the mask to write.
    t1w_path : path-like
        The T1w (required).
    threshold : float, optional
        Threshold on SAMSEG's lesion posterior.
    probability_path : path-like, optional
        Where to write the lesion posterior.
    overwrite : bool, optional
        Replace existing files.
    samseg_cmd : path-like, optional
        SAMSEG's ``run_samseg`` (else ``$SAMSEG_CMD`` or ``run_samseg`` on ``PATH``).

    Returns
    -------
    LesionSegmentation
        Mask and posterior on the FLAIR grid (``zscore`` NaN).

    Raises
    ------
    LesionSegError
        Missing or unusable input, SAMSEG absent or failing, not a FLAIR.
    """
    from ironmap.io.samseg import SamsegError, find_samseg
    from ironmap.io.scratch import scratch_dir

    out_path = check_writable(out_path, overwrite)
    if probability_path is not None:
        probability_path = check_writable(probability_path, overwrite)
    if t1w_path is None:
        raise LesionSegError(f"{flair_path}: --method samseg needs the T1w (--t1w)")
    for path, what in ((flair_path, "FLAIR"), (t1w_path, "T1w")):
        if not Path(path).exists():
            raise LesionSegError(f"{path}: {what} image not found")
    try:
        find_samseg(samseg_cmd)
        flair, t1w = load_image(flair_path), load_image(t1w_path)
    except (SamsegError, ImageError) as exc:
        raise LesionSegError(str(exc)) from exc
    with scratch_dir(out_path.parent) as work:
        seg, info = segment_samseg_images(flair, t1w, work, label=str(flair_path),
                                          threshold=threshold, samseg_cmd=samseg_cmd)
    _write_outputs(seg, flair.affine, info, [Path(flair_path).name, Path(t1w_path).name],
                   flair_path, out_path, probability_path,
                   "automatic white-matter lesion mask (SAMSEG)")
    return seg
