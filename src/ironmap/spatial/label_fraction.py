"""Partial-volume-aware label transport: the fraction of each target voxel inside a label.

The automatic route carries atlas labels to the anatomical reference with ``genericLabel``
and from there to the R2* grid by nearest neighbour: a voxel is in or out of a nucleus,
whatever part of its volume the nucleus covers. For a thin nucleus (the substantia nigra is a
band about two voxels thick at 1 x 1 x 2 mm) most labelled voxels are border voxels that hold
darker neighbouring tissue too.

:func:`label_fractions` carries the label's indicator (1 inside, 0 outside, on the atlas's own
grid) through the composed transforms (linear interpolation) onto an axis-aligned grid of
:data:`SUBSAMPLE_MM` voxels in the reference's world, reads it (trilinear) at sub-samples of
every target voxel at most :data:`SUBSAMPLE_MM` apart (the target -> reference affine need not
be rigid) and averages them per voxel: the fraction of the voxel's volume that the carried
label covers. :mod:`ironmap.core.regions.fraction_core` turns fractions into a label and its
core; both rest on the carried shape alone (never on R2*).

``ants`` is imported inside the functions (slow import).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.regions.bounding_box import mask_box
from ironmap.spatial.registration import import_ants, to_ants

#: Largest distance (mm) between a voxel's sub-samples (a 1 mm edge gets 2, a 2 mm edge 4).
SUBSAMPLE_MM = 0.5
#: Margin (target voxels) around the nearest-neighbour label's bounding box where fractions
#: are computed (outside it the fraction is 0).
BOX_MARGIN_VOXELS = 4


def subsample_factors(voxel_sizes, step_mm: float = SUBSAMPLE_MM) -> np.ndarray:
    """Sub-samples per axis so that sub-samples are at most ``step_mm`` apart.

    Parameters
    ----------
    voxel_sizes : array-like of 3 float
        Target voxel edges (mm).
    step_mm : float, optional
        Largest distance between sub-samples (mm).

    Returns
    -------
    ndarray of 3 int
        At least 1 per axis.
    """
    return np.maximum(1, np.ceil(np.asarray(voxel_sizes, float) / step_mm - 1e-6)).astype(int)


def label_fractions(target: nib.Nifti1Image, target_to_reference: np.ndarray,
                    atlas_labels: nib.Nifti1Image, indices, transforms: list[str],
                    near: np.ndarray, *, step_mm: float = SUBSAMPLE_MM,
                    margin: int = BOX_MARGIN_VOXELS) -> dict[int, np.ndarray]:
    """Fraction of every target voxel covered by each atlas label carried through transforms.

    Parameters
    ----------
    target : nibabel.Nifti1Image
        The target grid (the R2* map); only its shape and affine are used.
    target_to_reference : ndarray of shape (4, 4)
        Target world mm -> the reference's world mm (where ``transforms`` end), rigid.
    atlas_labels : nibabel.Nifti1Image
        The atlas's (relabelled) label image in template space.
    indices : iterable of int
        Label values to carry.
    transforms : list of str
        ANTs transforms template -> reference (as for ``genericLabel`` transport).
    near : ndarray of int, shape of ``target``
        The nearest-neighbour labels on the target grid: fractions are computed in a box
        around their voxels of ``indices`` (grown by ``margin`` voxels); 0 outside it.
    step_mm : float, optional
        Largest distance between a voxel's sub-samples (:func:`subsample_factors`).
    margin : int, optional
        Growth of the box (target voxels).

    Returns
    -------
    dict of int to ndarray of float32, shape of ``target``
        Label -> fraction (0-1) of each voxel's volume inside it.
    """
    ants = import_ants()

    shape = tuple(int(s) for s in target.shape[:3])
    indices = [int(i) for i in indices]
    out = {i: np.zeros(shape, np.float32) for i in indices}
    box = mask_box(np.isin(near, indices), margin)
    if box is None:
        return out
    aff = np.asarray(target.affine, float)
    sizes = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    f = subsample_factors(sizes, step_mm)
    start = np.array([s.start for s in box], float)
    n = np.array([s.stop - s.start for s in box])
    # sub-sample k of voxel i along an axis sits at i - 1/2 + (k + 1/2) / f (voxel units)
    axes = [start[a] - 0.5 + (np.arange(n[a] * f[a]) + 0.5) / f[a] for a in range(3)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ (np.asarray(target_to_reference, float) @ aff)[:3, :3].T \
        + (np.asarray(target_to_reference, float) @ aff)[:3, 3]
    # the indicator is carried (linear) onto an axis-aligned grid of step_mm voxels in the
    # reference's world around the sub-samples, then read at each sub-sample (trilinear)
    lo = world.min(axis=0) - 2 * step_mm
    shape_fine = np.ceil((world.max(axis=0) + 2 * step_mm - lo) / step_mm).astype(int) + 1
    fine_aff = np.diag([step_mm, step_mm, step_mm, 1.0])
    fine_aff[:3, 3] = lo
    fixed = to_ants(nib.Nifti1Image(np.zeros(tuple(shape_fine), np.float32), fine_aff))
    coords = ((world - lo) / step_mm).T
    src = np.asarray(atlas_labels.dataobj)
    for index in indices:
        indicator = (src == index).astype(np.float32)
        if not indicator.any():
            continue
        moved = ants.apply_transforms(fixed, to_ants(atlas_labels, indicator), transforms,
                                      interpolator="linear").numpy()
        vals = ndimage.map_coordinates(moved, coords, order=1, mode="constant", cval=0.0)
        blocks = vals.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
        out[index][box] = np.clip(blocks, 0.0, 1.0)
    return out


def atlas_volumes_mm3(atlas_labels: nib.Nifti1Image, indices) -> dict[int, float]:
    """Volume (mm^3) of each label in the atlas's own grid.

    Parameters
    ----------
    atlas_labels : nibabel.Nifti1Image
        The atlas's (relabelled) label image.
    indices : iterable of int
        Label values.

    Returns
    -------
    dict of int to float
        Label -> voxel count times the atlas voxel volume.
    """
    src = np.asarray(atlas_labels.dataobj)
    voxel = abs(float(np.linalg.det(np.asarray(atlas_labels.affine, float)[:3, :3])))
    return {int(i): float((src == int(i)).sum()) * voxel for i in indices}


def affine_volume_scale(transforms: list[str]) -> float:
    """Subject volume per template volume of the affine part of ANTs forward transforms.

    The forward transforms carry template images onto the subject: their affine files map
    subject points to template points, so a template volume ``V`` covers ``V / |det A|`` in
    the subject (the product over every affine file in the list; warp fields are ignored).

    Parameters
    ----------
    transforms : list of str
        ANTs transform files (``*.mat`` affine files are read).

    Returns
    -------
    float
        ``1 / prod |det A|``.
    """
    ants = import_ants()

    det = 1.0
    for path in transforms:
        if str(path).endswith(".mat"):
            tx = ants.read_transform(str(path), precision="double")
            det *= abs(float(np.linalg.det(np.asarray(tx.parameters[:9], float).reshape(3, 3))))
    return 1.0 / det
