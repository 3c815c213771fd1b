"""Where the brain is in a T1w image: a starting pose for registering a brain-only template.

nilearn's ICBM 2009a template (:func:`ironmap.spatial.segmentation.load_template`) is a
skull-stripped brain. ANTs' default start (centres of mass aligned) puts that brain at the
centre of mass of the whole field of view: on a head with neck and face (a sagittal MPRAGE, a
clinical 2D T1w) this is 3-5 cm below and in front of the brain, and an affine fit then inflates
the brain over the scalp (the XA30 MPRAGE of ``../shared/data``: correlation -0.05, the brain
mask 5,170 cm³). Here the brain's centre is estimated from the top of the head instead:

1. head = voxels above 10 % of the 99th intensity percentile, closed, largest component;
2. top of the head = the 99.9th percentile of the head voxels' world z (superior);
3. the brain's top lies ``scalp_mm`` below it (12 mm for a head; 0 mm for an image that is
   already skull-stripped: at least a third of it exactly 0, less than 2,200 cm³ of head and
   its outer layer darker than its interior, :func:`is_skull_stripped`);
4. the brain's centre lies below its top by the template brain's own centre-to-top distance;
   its x and y are the head's centroid in a slab around that height (40 mm above to 20 mm
   below, over the orbits).

:func:`initial_pose` returns the translation (a starting transform written for ANTs) and a
metric mask: the template brain mask moved there and widened by ``margin_mm``, so that the
affine and SyN stages compare the template with the brain and its surroundings only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

#: Distance (mm) from the top of the head to the top of the brain (scalp, skull, CSF).
SCALP_MM = 12.0
#: Margin (mm) added around the placed template brain mask for the registration metric.
MARGIN_MM = 20.0


@dataclass(frozen=True)
class InitialPose:
    """Translation from subject world mm (RAS) to template world mm, and the metric mask.

    The mask is on the subject grid (bool, shape of the subject image).
    """

    translation: np.ndarray  # (3,) mm, RAS: template point = subject point + translation
    mask: np.ndarray
    skull_stripped: bool
    head_top_mm: float


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def head_mask(data: np.ndarray) -> np.ndarray:
    """Voxels of the head (step 1 of the module notes).

    Parameters
    ----------
    data : ndarray of shape (X, Y, Z)
        T1w intensities.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The head.
    """
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    positive = data[data > 0]
    if positive.size == 0:
        return np.zeros(data.shape, bool)
    mask = data > 0.1 * float(np.percentile(positive, 99))
    mask = ndimage.binary_closing(mask, iterations=2)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
        mask = lab == 1 + int(np.argmax(sizes))
    return mask


def is_skull_stripped(data: np.ndarray, head: np.ndarray, voxel_cm3: float) -> bool:
    """At least a third of the image exactly 0, less than 2,200 cm³ of head, and no bright shell.

    The outer voxel layer of the head is darker than its interior (median), whereas the scalp of a
    T1w head (fat) is brighter.

    Parameters
    ----------
    data : ndarray of shape (X, Y, Z)
        T1w intensities.
    head : ndarray of bool, shape (X, Y, Z)
        Its head mask (:func:`head_mask`).
    voxel_cm3 : float
        Volume of one voxel in cm³.

    Returns
    -------
    bool
        Whether the image holds a brain without scalp.
    """
    zeros = float(np.mean(np.asarray(data) == 0))
    if zeros < 1 / 3 or float(head.sum()) * voxel_cm3 >= 2200.0:
        return False
    core = ndimage.binary_erosion(head, iterations=3)
    shell = head & ~ndimage.binary_erosion(head)
    if not core.any() or not shell.any():
        return False
    return float(np.median(data[shell])) < float(np.median(data[core]))


def initial_pose(t1w: nib.Nifti1Image, template_mask: np.ndarray, template_affine: np.ndarray,
                 *, scalp_mm: float = SCALP_MM, margin_mm: float = MARGIN_MM) -> InitialPose:
    """Starting pose of the template brain in the subject (see the module notes).

    Parameters
    ----------
    t1w : nibabel image of shape (X, Y, Z)
        The subject T1w (any orientation).
    template_mask : ndarray of bool, shape of the template
        The template's brain mask.
    template_affine : ndarray of shape (4, 4)
        Its voxel -> world (RAS mm) affine.

    Returns
    -------
    InitialPose
    """
    data = np.nan_to_num(np.asarray(t1w.get_fdata(dtype=np.float32)))
    head = head_mask(data)
    if not head.any():
        raise ValueError("no head signal in the image")
    vox_mm = np.linalg.norm(t1w.affine[:3, :3], axis=0)
    stripped = is_skull_stripped(data, head, float(np.prod(vox_mm)) / 1000.0)
    xyz = _world(t1w.affine, np.argwhere(head).astype(float))
    top = float(np.percentile(xyz[:, 2], 99.9))
    t_xyz = _world(template_affine, np.argwhere(template_mask).astype(float))
    t_centre = t_xyz.mean(axis=0)
    t_top = float(np.percentile(t_xyz[:, 2], 99.9))
    z = top - (0.0 if stripped else scalp_mm) - (t_top - t_centre[2])
    slab = (xyz[:, 2] > z - 20.0) & (xyz[:, 2] < z + 40.0)
    xy = xyz[slab, :2].mean(axis=0) if slab.sum() > 100 else xyz[:, :2].mean(axis=0)
    centre = np.array([xy[0], xy[1], z])
    translation = t_centre - centre
    # metric mask: subject voxels whose template point lies within margin_mm of the brain
    outside = ndimage.distance_transform_edt(
        ~template_mask, sampling=np.linalg.norm(template_affine[:3, :3], axis=0))
    ijk = np.indices(data.shape).reshape(3, -1).T.astype(float)
    t_ijk = np.linalg.solve(template_affine, np.c_[_world(t1w.affine, ijk) + translation,
                                                  np.ones(len(ijk))].T)[:3]
    dist = ndimage.map_coordinates(outside, t_ijk, order=1, mode="constant", cval=1e6)
    mask = (dist <= margin_mm).reshape(data.shape)
    log.info("template start: brain centre at (%.0f, %.0f, %.0f) mm, head top z %.0f mm, %s",
             *centre, top, "skull-stripped image" if stripped else "head with scalp")
    return InitialPose(translation=translation, mask=mask, skull_stripped=stripped,
                       head_top_mm=top)


def write_ants_translation(translation_ras: np.ndarray, path: str | Path) -> str:
    """Write the translation as an ANTs affine transform file; return its path.

    Fixed = subject, moving = template; ANTs maps fixed LPS points to moving LPS points.

    Parameters
    ----------
    translation_ras : ndarray of shape (3,)
        Subject point -> template point, RAS mm.
    path : path-like
        The ``.mat`` file to write.

    Returns
    -------
    str
        ``path``.
    """
    from ironmap.spatial.registration import import_ants

    ants = import_ants()

    t = np.asarray(translation_ras, dtype=float) * np.array([-1.0, -1.0, 1.0])  # RAS -> LPS
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    matrix=np.eye(3), translation=t.tolist())
    ants.write_transform(tx, str(path))
    return str(path)
