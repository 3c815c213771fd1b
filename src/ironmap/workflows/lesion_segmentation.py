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
        nawm = None
        if fp.t1w is not None:
            _, gm_c, wm_c = kmeans_1d(fp.t1w[fp.brain], 3)
            nawm = (fp.priors["wm"] >= 0.5) & (fp.t1w > 0.5 * (gm_c + wm_c))
        seg = segment_lesions(data, fp.brain, fp.priors, vox, nawm=nawm, t1w=fp.t1w,
                              params=params, threshold=threshold)
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
    generated = [{"Name": "ironmap lesions segment", "Version": __version__,
                  "Description": command_line()}]
    sidecar = {"Type": "Lesion", "Description": "automatic white-matter lesion mask",
               "Sources": sources, "SpatialReference": Path(flair_path).name,
               "LesionSource": "automatic", **info, "LesionCount": seg.n_lesions,
               "LesionVolume": seg.load_cm3, "LesionVolumeUnits": "cm^3",
               "GeneratedBy": generated}
    if probability_path is not None:
        save_image(seg.probability, flair.affine, probability_path,
                   sidecar={"Description": "lesion probability (0-1)", "Sources": sources,
                            **info, "GeneratedBy": generated})
    save_image(seg.mask.astype(np.uint8), flair.affine, out_path, sidecar=sidecar)
    return seg
