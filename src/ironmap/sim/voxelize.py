"""Partial-volume voxelisation of the phantom on any image grid and head pose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ironmap.sim.anatomy import N_LABELS, Geometry, label_points

_CHUNK_POINTS = 250_000


@dataclass(frozen=True)
class PartialVolume:
    """Tissue content of every voxel of a grid.

    Attributes
    ----------
    labels : ndarray of shape (X, Y, Z), uint8
        Label at the voxel centre.
    edge : ndarray of shape (n_edge,), int64
        Flat (C-order) indices of voxels whose content was supersampled (label boundaries).
    fractions : ndarray of shape (n_edge, N_LABELS), float32
        Volume fraction of each label in the edge voxels (rows sum to 1).
    """

    labels: np.ndarray
    edge: np.ndarray
    fractions: np.ndarray

    def apply(self, lut: np.ndarray) -> np.ndarray:
        """Voxel values from per-label values, partial-volume weighted.

        Parameters
        ----------
        lut : ndarray of shape (N_LABELS,) or (N_LABELS, k)
            Value of each label (e.g. signal per echo).

        Returns
        -------
        ndarray of shape (X, Y, Z) or (X, Y, Z, k), float64
        """
        lut = np.asarray(lut, dtype=np.float64)
        out = lut[self.labels.reshape(-1)]
        out[self.edge] = self.fractions.astype(np.float64) @ lut
        return out.reshape(self.labels.shape + lut.shape[1:])

    def fraction(self, label_codes) -> np.ndarray:
        """Volume fraction of the union of ``label_codes``.

        Parameters
        ----------
        label_codes : iterable of int
            Labels.

        Returns
        -------
        ndarray of shape (X, Y, Z)
            Fractions 0-1.
        """
        codes = np.unique(np.atleast_1d(label_codes))
        lut = np.zeros(N_LABELS)
        lut[codes] = 1.0
        if codes.size != 1:
            return self.apply(lut)
        # one label: the edge voxels' weighted sum is that label's fraction (the other terms
        # are +0), so its column is taken as it is, without the float64 copy of all of them
        out = lut[self.labels.reshape(-1)]
        out[self.edge] = self.fractions[:, codes[0]]
        return out.reshape(self.labels.shape)

    def majority(self) -> np.ndarray:
        """Label with the largest volume fraction in each voxel.

        Returns
        -------
        ndarray of uint8, shape (X, Y, Z)
            The labels.
        """
        out = self.labels.reshape(-1).copy()
        out[self.edge] = np.argmax(self.fractions, axis=1).astype(np.uint8)
        return out.reshape(self.labels.shape)

    def volumes_mm3(self, voxel_volume_mm3: float) -> np.ndarray:
        """Volume of each label.

        Parameters
        ----------
        voxel_volume_mm3 : float
            Voxel volume in mm^3.

        Returns
        -------
        ndarray of shape (N_LABELS,)
            mm^3.
        """
        counts = np.bincount(self.labels.reshape(-1), minlength=N_LABELS).astype(np.float64)
        counts -= np.bincount(self.labels.reshape(-1)[self.edge], minlength=N_LABELS)
        counts += self.fractions.sum(axis=0, dtype=np.float64)
        return counts * voxel_volume_mm3


def _labels_at(points: np.ndarray, geom) -> np.ndarray:
    """Labels at head points.

    The geometry's own ``label_points`` method (template-built heads,
    :mod:`ironmap.sim.template`) or the analytic phantom's.
    """
    own = getattr(geom, "label_points", None)
    return own(points) if own is not None else label_points(points, geom)


def voxel_points(shape, vox_to_head: np.ndarray, index=None, offsets=None) -> np.ndarray:
    """Head coordinates of voxel centres (or sub-voxel points).

    Parameters
    ----------
    shape : tuple of int
        Grid shape.
    vox_to_head : ndarray of shape (4, 4)
        Voxel -> head mm.
    index : ndarray of int, optional
        Flat voxel indices (all voxels when None).
    offsets : ndarray of shape (k, 3), optional
        Sub-voxel offsets in voxel units, giving N = n_voxels * k points (voxel-major).

    Returns
    -------
    ndarray of float32, shape (N, 3)
        Head mm.
    """
    if index is None:
        ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    else:
        ijk = np.stack(np.unravel_index(index, shape), axis=1).astype(np.float32)
    m = np.asarray(vox_to_head, dtype=np.float32)
    pts = ijk @ m[:3, :3].T + m[:3, 3]
    if offsets is not None:
        step = np.asarray(offsets, np.float32) @ m[:3, :3].T
        pts = (pts[:, None, :] + step[None]).reshape(-1, 3)
    return pts


def subvoxel_offsets(n) -> np.ndarray:
    """Regular sub-voxel offsets for ``n`` samples per axis.

    Parameters
    ----------
    n : sequence of 3 int
        Samples per axis.

    Returns
    -------
    ndarray of shape (prod(n), 3)
        Offsets in voxel units.
    """
    axes = [(np.arange(k) + 0.5) / k - 0.5 for k in n]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.reshape(-1) for g in grid], axis=1)


def _boundary_voxels(labels: np.ndarray) -> np.ndarray:
    """Flat indices of voxels with a 6-neighbour of another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    for ax in range(3):
        diff = np.diff(labels, axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(None, -1)
        hi[ax] = slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    return np.flatnonzero(edge)


def _labels_on_index_grid(geom, axes, vox_to_head: np.ndarray) -> np.ndarray:
    """Labels at the voxel centres of the product grid of the index arrays ``axes``."""
    m = np.asarray(vox_to_head, dtype=np.float32)
    ii, jj, kk = (np.asarray(a, dtype=np.float32) for a in axes)
    out = np.empty((ii.size, jj.size, kk.size), dtype=np.uint8)
    slab = max(1, _CHUNK_POINTS // (jj.size * kk.size))
    for start in range(0, ii.size, slab):
        i = ii[start:start + slab, None, None]
        pts = np.empty((i.shape[0], jj.size, kk.size, 3), dtype=np.float32)
        for c in range(3):
            pts[..., c] = ((m[c, 0] * i + m[c, 3]) + m[c, 1] * jj[None, :, None]
                           + m[c, 2] * kk[None, None, :])
        flat = _labels_at(pts.reshape(-1, 3), geom)
        out[start:start + slab] = flat.reshape(pts.shape[:3])
    return out


def centre_labels(geom: Geometry, shape, vox_to_head: np.ndarray) -> np.ndarray:
    """Labels at all voxel centres.

    Parameters
    ----------
    geom : Geometry
        The phantom.
    shape : tuple of int
        Grid shape.
    vox_to_head : ndarray of shape (4, 4)
        Voxel -> head mm.

    Returns
    -------
    ndarray of uint8, shape ``shape``
        Labels.
    """
    return _labels_on_index_grid(geom, [np.arange(n) for n in shape], vox_to_head)


def voxelize(geom: Geometry, shape, affine: np.ndarray, world_to_head: np.ndarray,
             supersample=(2, 2, 2)) -> PartialVolume:
    """Partial-volume content of an image grid looking at the phantom.

    Parameters
    ----------
    geom : Geometry or ironmap.sim.template.TemplateGeometry
        The subject's phantom, or a template-built head.
    shape : tuple of 3 int
        Grid shape.
    affine : ndarray of shape (4, 4)
        Voxel -> scanner world (mm).
    world_to_head : ndarray of shape (4, 4)
        Scanner world (mm) -> head (mm): the head pose of this series.
    supersample : tuple of 3 int
        Sub-samples per axis in boundary voxels.

    Returns
    -------
    PartialVolume
    """
    shape = tuple(int(s) for s in shape)
    vox_to_head = np.asarray(world_to_head) @ np.asarray(affine)
    labels = centre_labels(geom, shape, vox_to_head)
    edge = _boundary_voxels(labels)
    offsets = subvoxel_offsets(supersample)
    k = offsets.shape[0]
    fractions = np.zeros((edge.size, N_LABELS), dtype=np.float32)
    per_chunk = max(1, _CHUNK_POINTS // k)
    for start in range(0, edge.size, per_chunk):
        sel = edge[start:start + per_chunk]
        sub = _labels_at(voxel_points(shape, vox_to_head, sel, offsets), geom)
        flat = np.repeat(np.arange(sel.size) * N_LABELS, k) + sub
        counts = np.bincount(flat, minlength=sel.size * N_LABELS)
        fractions[start:start + sel.size] = counts.reshape(sel.size, N_LABELS) / np.float32(k)
    return PartialVolume(labels, edge, fractions)
