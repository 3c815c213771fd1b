"""Tissue priors and brain mask on a FLAIR grid for automatic lesion segmentation (ANTs).

nilearn's bundled ICBM152 2009a template (no download) is registered onto the T1w (when given,
after a rigid T1w -> FLAIR fit unless both share one grid) or onto the FLAIR itself (Mattes
mutual information: affine, then SyN at 2 mm working resolution, seeded), and its GM/WM/CSF
fractions and brain mask are carried onto the FLAIR grid. A skull-stripped input (more than
20 % exact zeros) is matched with the skull-stripped template and its own non-zero mask is
the brain. A head image with a T1w is skull-stripped with the T1w's tissue segmentation
(:func:`ironmap.spatial.segmentation.segment_tissues`) first; a head FLAIR without T1w gets the
registered template brain mask (approximate).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.spatial.registration import ants_random_seed, downsample, import_ants, to_ants

log = logging.getLogger(__name__)


@dataclass
class FlairPriors:
    """Everything on the FLAIR grid, arrays of shape (X, Y, Z)."""

    brain: np.ndarray  # bool
    priors: dict[str, np.ndarray]  # "gm", "wm", "csf" fractions
    t1w: np.ndarray | None  # T1w resampled onto the FLAIR grid
    skull_stripped: bool
    similarity: float


def is_skull_stripped(data: np.ndarray, affine: np.ndarray | None = None) -> bool:
    """Whether an image holds a brain only (background removed), not a head.

    More than 20 % of the voxels exactly 0 and, when ``affine`` is given, also the T1w test of
    :func:`ironmap.spatial.headpose.is_skull_stripped` (less than 2,200 cm³ of head, outer
    layer darker than the interior). Raw scanner images often have an exactly-zero
    background around the head (a 2D FLAIR with 60 % zeros), so the zeros alone do not
    tell a stripped brain from a head.

    Parameters
    ----------
    data : ndarray of shape (X, Y, Z)
        Image intensities.
    affine : ndarray of shape (4, 4), optional
        Voxel -> world (mm) affine, for the head volume.

    Returns
    -------
    bool
        Whether the background was removed.
    """
    data = np.nan_to_num(data)
    if not np.mean(data == 0) > 0.2:
        return False
    if affine is None:
        return True
    from ironmap.spatial.headpose import head_mask
    from ironmap.spatial.headpose import is_skull_stripped as stripped_head

    voxel_cm3 = float(np.prod(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))) / 1000.0
    return stripped_head(data, head_mask(data), voxel_cm3)


def t1w_on_flair(t1w: nib.Nifti1Image, flair: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """T1w intensities on the FLAIR grid and the FLAIR -> T1w world matrix.

    A rigid ANTs fit unless the grids already match; the 4x4 matrix maps FLAIR world mm to T1w
    world mm.

    Parameters
    ----------
    t1w, flair : nibabel.Nifti1Image
        The two images.

    Returns
    -------
    t1w_on_flair : ndarray of shape of ``flair``
        Resampled T1w intensities.
    matrix : ndarray of shape (4, 4)
        FLAIR world mm -> T1w world mm.
    """
    from ironmap.spatial.grid import resample_image, same_grid
    from ironmap.spatial.registration import register

    if same_grid(t1w, flair):
        return np.asarray(t1w.get_fdata(dtype=np.float32)), np.eye(4)
    matrix = np.asarray(register(flair, t1w, model="rigid", seed=1).matrix, dtype=float)
    return resample_image(t1w, flair, matrix).astype(np.float32), matrix


def t1w_brain_on_flair(t1w: nib.Nifti1Image, flair: nib.Nifti1Image, matrix: np.ndarray,
                       label: str) -> np.ndarray:
    """Brain mask of a T1w head image (template + Atropos, scalp removed) on the FLAIR grid.

    Parameters
    ----------
    t1w, flair : nibabel.Nifti1Image
        The two images.
    matrix : ndarray of shape (4, 4)
        FLAIR world mm -> T1w world mm (:func:`t1w_on_flair`).
    label : str
        The participant, named in messages.

    Returns
    -------
    ndarray of bool, shape of ``flair``
        The brain.
    """
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.segmentation import segment_tissues

    tissues = segment_tissues(t1w, label=label)
    mask = nib.Nifti1Image(tissues.mask.astype(np.uint8), t1w.affine)
    return resample_labels(mask, flair, matrix) > 0


def flair_priors(flair: nib.Nifti1Image, t1w: nib.Nifti1Image | None = None, *,
                 label: str = "FLAIR", erode_mm: float = 2.0, seed: int = 1) -> FlairPriors:
    """Register the template onto the subject and return priors and a brain mask on the FLAIR grid.

    Parameters
    ----------
    flair : nibabel image, 3D
    t1w : nibabel image, 3D, optional
        Used for the registration (and returned on the FLAIR grid) when given.
    erode_mm : float
        The brain mask is eroded by this much (removes the bright rim left by skull stripping
        or the template mask edge).

    Returns
    -------
    FlairPriors
        Brain mask, GM/WM/CSF prior fractions and the T1w on the FLAIR grid, whether the FLAIR
        is skull-stripped, and the registration's similarity.

    Raises
    ------
    ironmap.spatial.segmentation.SegmentationError
        When the registered template does not match the image.
    """
    ants = import_ants()

    from ironmap.spatial.segmentation import check_warped_similarity, load_template

    data = np.nan_to_num(np.asarray(flair.get_fdata(dtype=np.float32)))
    stripped = is_skull_stripped(data, flair.affine)
    t1_data, head_brain = None, None
    if t1w is not None:
        t1_data, matrix = t1w_on_flair(t1w, flair)
        if not stripped:  # skull-strip with the T1w, then match brain to brain
            head_brain = t1w_brain_on_flair(t1w, flair, matrix, label)
            t1_data = np.where(head_brain, t1_data, 0.0).astype(np.float32)
            stripped = True
    guide = data if t1_data is None else t1_data
    tpl = load_template(2)
    moving = tpl.t1.get_fdata(dtype=np.float32) * (tpl.mask if stripped else 1.0)
    small = downsample(nib.Nifti1Image(guide, flair.affine), 2.0)
    fixed_small = to_ants(small)
    fixed = to_ants(flair, guide)
    with tempfile.TemporaryDirectory(prefix="ironmap-lesseg-") as tmp, ants_random_seed(seed):
        reg = ants.registration(fixed=fixed_small, moving=to_ants(tpl.t1, moving),
                                type_of_transform="SyN", aff_metric="mattes",
                                syn_metric="mattes", outprefix=f"{tmp}/tpl_", verbose=False)
        similarity = check_warped_similarity(fixed_small, reg["warpedmovout"],
                                             "template registration", label) \
            if t1_data is not None else float("nan")

        def warp(arr):
            moved = ants.apply_transforms(fixed, to_ants(tpl.t1, arr.astype(np.float32)),
                                          reg["fwdtransforms"], interpolator="linear")
            return np.clip(moved.numpy(), 0.0, 1.0)

        priors = {k: warp(getattr(tpl, k)) for k in ("gm", "wm", "csf")}
        tmask = warp(tpl.mask.astype(np.float32)) >= 0.5
    if head_brain is not None:
        brain = head_brain
    else:
        brain = (data > 0) if stripped else tmask
        if t1_data is not None and stripped:
            brain &= t1_data > 0
    vox = np.linalg.norm(flair.affine[:3, :3], axis=0)
    iters = max(1, int(round(erode_mm / float(vox.min()))))
    brain = ndimage.binary_erosion(brain, iterations=iters)
    log.info("%s: template priors on the FLAIR grid (%s input, registered on %s)", label,
             "skull-stripped" if stripped else "head", "T1w" if t1_data is not None else "FLAIR")
    return FlairPriors(brain=brain, priors=priors, t1w=t1_data, skull_stripped=stripped,
                       similarity=similarity)
