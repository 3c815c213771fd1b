"""Voxel grids: same-grid checks and resampling through world (scanner, RAS+ mm) coordinates.

An image grid is its shape plus its 4x4 voxel-to-world affine (nibabel's RAS+ convention).
Resampling maps every voxel centre of a *target* grid to world mm, through one 4x4
``world_to_source`` matrix (target world mm -> source world mm) and into the source image's
voxel indices. Callers compose all transforms into that one matrix first, so that an image is
interpolated once (no double resampling).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Target voxels handled per chunk when resampling (bounds the memory of the coordinate arrays).
_CHUNK_VOXELS = 1_000_000


def same_grid(img_a, img_b, atol: float = 1e-3) -> bool:
    """Whether two images share a voxel grid (same 3D shape and affine within ``atol`` mm).

    Parameters
    ----------
    img_a, img_b : nibabel spatial images
        Only ``.shape`` and ``.affine`` are read.
    atol : float
        Absolute tolerance on affine entries (mm for the translation column).

    Returns
    -------
    bool
        True when shapes are equal and affines agree within ``atol``.
    """
    shape_a, shape_b = tuple(img_a.shape[:3]), tuple(img_b.shape[:3])
    if shape_a != shape_b:
        return False
    return bool(np.allclose(img_a.affine, img_b.affine, rtol=0.0, atol=atol))


def _voxel_map(target_shape, target_affine, source_affine, world_to_source) -> np.ndarray:
    """4x4 matrix mapping target voxel indices to source voxel indices (float)."""
    w2s = np.eye(4) if world_to_source is None else np.asarray(world_to_source, dtype=float)
    if w2s.shape != (4, 4):
        raise ValueError(f"world_to_source must be a 4x4 matrix, got shape {w2s.shape}")
    return np.linalg.inv(source_affine) @ w2s @ np.asarray(target_affine, dtype=float)


def _chunks(shape: tuple[int, int, int]):
    """Yield slices along the last axis so that each chunk has about ``_CHUNK_VOXELS`` voxels."""
    per_slice = max(1, shape[0] * shape[1])
    step = max(1, _CHUNK_VOXELS // per_slice)
    for start in range(0, shape[2], step):
        yield slice(start, min(shape[2], start + step))


def _source_coords(vox_map: np.ndarray, shape, zslice: slice) -> np.ndarray:
    """Source voxel coordinates, shape (3, nx, ny, nz_chunk), of a chunk of target voxels.

    Each row is ``(a0 * i + a1 * j) + a2 * k + t`` by broadcasting (no index grids): the sums
    in the order of ``einsum("ij,j...->i...", A, (i, j, k)) + t``, so the same bits.
    """
    a, t = vox_map[:3, :3], vox_map[:3, 3]
    i = np.arange(shape[0], dtype=float)[:, None, None]
    j = np.arange(shape[1], dtype=float)[None, :, None]
    k = np.arange(zslice.start, zslice.stop, dtype=float)[None, None, :]
    out = np.empty((3, shape[0], shape[1], zslice.stop - zslice.start))
    for r in range(3):
        out[r] = ((a[r, 0] * i + a[r, 1] * j) + a[r, 2] * k) + t[r]
    return out


def _target_grid(target_img) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(int(n) for n in target_img.shape[:3])
    return shape, np.asarray(target_img.affine, dtype=float)


def _data3d(img, what: str) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{what} must be a 3D image, got shape {data.shape}")
    return data


def resample_labels(label_img, target_img, world_to_source=None) -> np.ndarray:
    """Carry a label image onto a target grid by nearest-neighbour lookup (labels preserved).

    Every target voxel centre is mapped to the source grid and takes the label of the source
    voxel whose centre is nearest (indices rounded half up); voxels falling outside
    the source field of view get label 0. No label value is created or averaged.

    Parameters
    ----------
    label_img : nibabel image, 3D integer labels
        Source labels (0 = background).
    target_img : nibabel image
        Defines the output grid (only ``shape[:3]`` and ``affine`` are used).
    world_to_source : ndarray of shape (4, 4), optional
        Maps TARGET world mm to SOURCE (label image) world mm, RAS+. ``None`` means identity
        (both images already in the same world space). Compose all transforms before calling.

    Returns
    -------
    ndarray of shape target_img.shape[:3], integer (the source's integer dtype, else int32)
    """
    labels = _data3d(label_img, "label image")
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.allclose(rounded[np.isfinite(labels)], labels[np.isfinite(labels)]):
            raise ValueError("label image holds non-integer values; expected integer labels")
        labels = np.nan_to_num(rounded).astype(np.int32)
    shape, t_aff = _target_grid(target_img)
    vox_map = _voxel_map(shape, t_aff, label_img.affine, world_to_source)
    from ironmap.spatial import nearest_lookup

    if nearest_lookup.AVAILABLE:  # the same labels, compiled (no per-chunk index arrays)
        return nearest_lookup.lookup_labels(labels, vox_map, shape)
    return _lookup_numpy(labels, vox_map, shape)


def _lookup_numpy(labels: np.ndarray, vox_map: np.ndarray, shape) -> np.ndarray:
    """:func:`resample_labels`' lookup in numpy chunks (the reference of the compiled one)."""
    out = np.zeros(shape, dtype=labels.dtype)
    src_shape = np.array(labels.shape)[:, None]
    for zs in _chunks(shape):
        coords = _source_coords(vox_map, shape, zs).reshape(3, -1)
        idx = np.floor(coords + 0.5).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < src_shape), axis=0)
        chunk = np.zeros(idx.shape[1], dtype=labels.dtype)
        chunk[inside] = labels[idx[0, inside], idx[1, inside], idx[2, inside]]
        out[:, :, zs] = chunk.reshape(shape[0], shape[1], -1)
    return out


def resample_image(img, target_img, world_to_source=None, order: int = 1) -> np.ndarray:
    """Interpolate an intensity image onto a target grid (linear by default).

    Parameters
    ----------
    img : nibabel image, 3D
        Source intensities (any unit; NaN marks invalid voxels and spreads to their neighbours).
    target_img : nibabel image
        Defines the output grid (``shape[:3]`` and ``affine``).
    world_to_source : ndarray of shape (4, 4), optional
        TARGET world mm -> SOURCE world mm (RAS+); identity when ``None``.
    order : int
        Spline order for :func:`scipy.ndimage.map_coordinates` (0 nearest, 1 linear, 3 cubic).

    Returns
    -------
    ndarray of shape target_img.shape[:3], float64
        NaN where the target voxel falls outside the source field of view.
    """
    data = np.asarray(_data3d(img, "image"), dtype=np.float64)
    shape, t_aff = _target_grid(target_img)
    vox_map = _voxel_map(shape, t_aff, img.affine, world_to_source)
    out = np.empty(shape, dtype=np.float64)
    for zs in _chunks(shape):
        out[:, :, zs] = _sample_slab(data, vox_map, shape, zs, order)
    return out


def _sample_slab(data: np.ndarray, vox_map: np.ndarray, shape, zs: slice,
                 order: int) -> np.ndarray:
    """Source values at the target planes ``zs`` (X, Y, nz); NaN outside the source."""
    coords = _source_coords(vox_map, shape, zs).reshape(3, -1)
    vals = ndimage.map_coordinates(data, coords, order=order, mode="nearest")
    hi = np.array(data.shape, dtype=float)[:, None] - 0.5
    vals[np.any((coords < -0.5) | (coords > hi), axis=0)] = np.nan
    return vals.reshape(shape[0], shape[1], -1)


def resample_planes(img, target_img, planes, world_to_source=None,
                    order: int = 1) -> np.ndarray:
    """Interpolate an intensity image onto some axial planes of a target grid.

    The same values as :func:`resample_image` at those planes, without computing the rest
    of the target grid (for figures that show a few slices).

    Parameters
    ----------
    img : nibabel image, 3D
        Source intensities.
    target_img : nibabel image
        Defines the output grid (``shape[:3]`` and ``affine``).
    planes : sequence of int
        Indices along the target's third voxel axis.
    world_to_source : ndarray of shape (4, 4), optional
        TARGET world mm -> SOURCE world mm (RAS+); identity when ``None``.
    order : int
        Spline order for :func:`scipy.ndimage.map_coordinates`.

    Returns
    -------
    ndarray of shape (X, Y, len(planes)), float64
        NaN where a target voxel falls outside the source field of view.
    """
    data = np.asarray(_data3d(img, "image"), dtype=np.float64)
    shape, t_aff = _target_grid(target_img)
    vox_map = _voxel_map(shape, t_aff, img.affine, world_to_source)
    out = np.empty((shape[0], shape[1], len(planes)), dtype=np.float64)
    for i, k in enumerate(planes):
        out[:, :, i] = _sample_slab(data, vox_map, shape, slice(int(k), int(k) + 1), order)[..., 0]
    return out


def planes_holding(img, target_img, world_to_source=None, stride: int = 2) -> np.ndarray:
    """Target axial planes (sorted indices) onto which non-zero source voxels map.

    Every ``stride``-th source voxel along each axis is mapped (nearest plane), so thin
    structures may be missed at their edges; meant for choosing slices to show.

    Parameters
    ----------
    img : nibabel image, 3D
        Source image; voxels above 0 (finite) count.
    target_img : nibabel image
        Defines the target grid.
    world_to_source : ndarray of shape (4, 4), optional
        TARGET world mm -> SOURCE world mm (RAS+); identity when ``None``.
    stride : int
        Source subsampling step.

    Returns
    -------
    ndarray of int, shape (n,)
        Plane indices in ``[0, Z)``; empty when the source has no voxel above 0 on the grid.
    """
    data = np.asarray(_data3d(img, "image"))[::stride, ::stride, ::stride]
    idx = np.argwhere(np.nan_to_num(data) > 0).T * stride
    shape, t_aff = _target_grid(target_img)
    if idx.size == 0:
        return np.zeros(0, int)
    src_to_tgt = np.linalg.inv(_voxel_map(shape, t_aff, img.affine, world_to_source))
    tgt = np.floor(src_to_tgt[:3, :3] @ idx + src_to_tgt[:3, 3, None] + 0.5).astype(np.int64)
    inside = np.all((tgt >= 0) & (tgt < np.array(shape)[:, None]), axis=0)
    return np.unique(tgt[2, inside])


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths from a 4x4 affine (column norms).

    Parameters
    ----------
    affine : ndarray of shape (4, 4)
        Voxel -> world matrix.

    Returns
    -------
    ndarray of shape (3,)
        Edge lengths in mm.
    """
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
