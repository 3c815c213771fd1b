"""Compiled nearest-neighbour label lookup, the loop of ``grid.resample_labels``.

For every target voxel ``(i, j, k)`` the kernel computes the source voxel coordinate of each
axis as ``((a0 * i + a1 * j) + a2 * k) + t`` - the same floating-point operations, in the same
order, as :func:`ironmap.spatial.grid._source_coords` (no fused multiply-add: compiled without
fast-math flags) - rounds it half up with ``floor(c + 0.5)`` and copies the label of that
source voxel, or leaves 0 outside the source grid. So it returns the numpy path's labels
exactly, without its per-chunk coordinate, index and mask arrays (about 7x less CPU on a
seed-protocol R2* grid). Compiled on first use and cached on disk; without numba
:data:`AVAILABLE` is False and the grid module keeps its numpy path.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; the numpy path stays for an install without it
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover
    numba = None
    AVAILABLE = False


def _lookup(labels, vox_map, out):  # pragma: no cover - compiled (numba reports no lines)
    sx, sy, sz = labels.shape
    nx, ny, nz = out.shape
    for i in range(nx):
        fi = float(i)
        for j in range(ny):
            fj = float(j)
            b0 = vox_map[0, 0] * fi + vox_map[0, 1] * fj
            b1 = vox_map[1, 0] * fi + vox_map[1, 1] * fj
            b2 = vox_map[2, 0] * fi + vox_map[2, 1] * fj
            for k in range(nz):
                fk = float(k)
                i0 = np.int64(np.floor(((b0 + vox_map[0, 2] * fk) + vox_map[0, 3]) + 0.5))
                i1 = np.int64(np.floor(((b1 + vox_map[1, 2] * fk) + vox_map[1, 3]) + 0.5))
                i2 = np.int64(np.floor(((b2 + vox_map[2, 2] * fk) + vox_map[2, 3]) + 0.5))
                if 0 <= i0 < sx and 0 <= i1 < sy and 0 <= i2 < sz:
                    out[i, j, k] = labels[i0, i1, i2]


if AVAILABLE:
    _lookup_compiled = numba.njit(cache=True, nogil=True)(_lookup)


def lookup_labels(labels: np.ndarray, vox_map: np.ndarray, shape) -> np.ndarray:
    """Labels of the nearest source voxel of every target voxel (0 outside the source).

    Parameters
    ----------
    labels : ndarray of shape (sx, sy, sz), integer
        Source labels.
    vox_map : ndarray of shape (4, 4)
        Target voxel indices -> source voxel indices (float).
    shape : tuple of 3 int
        Target grid shape.

    Returns
    -------
    ndarray of shape ``shape``, ``labels.dtype``
        The looked-up labels.

    Raises
    ------
    RuntimeError
        When numba is not installed (check :data:`AVAILABLE` first).
    """
    if not AVAILABLE:  # pragma: no cover
        raise RuntimeError("the compiled label lookup needs numba")
    dtype = np.asarray(labels).dtype
    native = dtype.newbyteorder("=")  # a big-endian file's labels: compiled code needs native
    out = np.zeros(tuple(int(n) for n in shape), dtype=native)
    _lookup_compiled(np.ascontiguousarray(labels, dtype=native),
                     np.ascontiguousarray(vox_map, dtype=np.float64), out)
    return out if native == dtype else out.astype(dtype)
