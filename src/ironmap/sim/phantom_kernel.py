"""Compiled evaluation of the analytic phantom's labels, bit for bit the numpy reference's.

:func:`ironmap.sim.anatomy.label_points` paints a point set with about forty array passes (one
per shape: bounding box, then the ellipsoid test, each pass gathering the points it keeps).
The kernel here takes each point once through the same shapes in the same order, with the
same float32 arithmetic (``(p - c) / a``, squared radius summed x, y, z; the cortical folding
in float64 as numpy promotes it), and the same per-call bounding-box shortcuts of the deep
grey matter and the lesions, so its labels equal the reference's exactly (tested on every
voxel of simulated grids). The caller builds the shape table
(:func:`ironmap.sim.anatomy.label_points`); nothing here knows the phantom's shapes.

Without numba, :data:`AVAILABLE` is False and the caller uses the numpy reference.
"""

from __future__ import annotations

import math

import numpy as np

from ironmap.sim.jit import AVAILABLE, compiled, inline  # noqa: F401 - AVAILABLE re-exported

#: Rows of the shape table (centre x, y, z, semi-axis x, y, z; float32).
HEAD_MAIN, HEAD_FOSSA, CSF_MAIN, CSF_FOSSA = 0, 1, 2, 3
CEREBRUM_OUTER, CEREBRUM_INNER = 4, 5
CEREBELLUM_OUTER, CEREBELLUM_INNER, BRAINSTEM = 6, 7, 8
DEEP_BOX, THALAMUS, VENTRICLES, THIRD_VENTRICLE = 9, 10, 11, 12
#: First row of the deep grey-matter nuclei (then one row per nucleus and hemisphere).
DEEP_GM = 13


@inline
def _in_box(x, y, z, s):
    return abs(x - s[0]) <= s[3] and abs(y - s[1]) <= s[4] and abs(z - s[2]) <= s[5]


@inline
def _r2(x, y, z, s):
    q0 = (x - s[0]) / s[3]
    q1 = (y - s[1]) / s[4]
    q2 = (z - s[2]) / s[5]
    return q0 * q0 + q1 * q1 + q2 * q2


@inline
def _inside(x, y, z, s):
    return _in_box(x, y, z, s) and _r2(x, y, z, s) <= 1.0


@inline
def _paint(x, y, z, shapes, rows, values, lab):
    """``lab`` painted by each listed shape (in order) that holds the point."""
    for j in range(rows.shape[0]):
        if _inside(x, y, z, shapes[rows[j]]):
            lab = values[j]
    return lab


@inline
def _grow(lo, hi, x, y, z):
    """Widen the bounds ``lo``, ``hi`` to hold the point."""
    lo[0], lo[1], lo[2] = min(lo[0], x), min(lo[1], y), min(lo[2], z)
    hi[0], hi[1], hi[2] = max(hi[0], x), max(hi[1], y), max(hi[2], z)


@inline
def _missed(s, lo, hi):
    """The reference's shortcut: the shape's box misses the bounds of the point set."""
    for ax in range(3):
        if s[ax] + s[3 + ax] < lo[ax] or s[ax] - s[3 + ax] > hi[ax]:
            return True
    return False


@compiled
def phantom_labels(p, shapes, values, putamen_rows, lesions, codes, fold, limit64):  # noqa: PLR0912
    """Labels of points already divided by the head scale (float32, shape (N, 3)).

    Parameters
    ----------
    p : ndarray of float32, shape (N, 3)
        Points in template mm.
    shapes : ndarray of float32, shape (n_shapes, 6)
        Centre and semi-axes of each shape (rows as the module constants name them).
    values : ndarray of uint8, shape (n_shapes,)
        Label each deep grey-matter row paints.
    putamen_rows : ndarray of uint8, shape (n_shapes, 2)
        For putamen rows, the anterior (y >= 0) and posterior labels; 0 for other rows.
    lesions : ndarray of float32, shape (n_lesions, 6)
        Lesion ellipsoids.
    codes : ndarray of uint8
        SCALP, CSF, VENTRICLE, CORTEX, WM, LESION, THALAMUS.
    fold : ndarray of float64, shape (7,)
        Folding wave number (float32 value), the three phases, the folding coefficient,
        the mean inner semi-axis, and the fissure height (float32 value).
    limit64 : bool
        The folding limit in float64 (a numpy-scalar cortex thickness) instead of float32.

    Returns
    -------
    ndarray of uint8, shape (N,)
        Label codes.
    """
    scalp, csf, ventricle, cortex, wm, lesion, thalamus = (
        codes[0], codes[1], codes[2], codes[3], codes[4], codes[5], codes[6])
    n = p.shape[0]
    out = np.zeros(n, dtype=np.uint8)
    deep = np.zeros(n, dtype=np.bool_)
    big = np.float32(np.inf)
    lo = np.full(3, big, dtype=np.float32)
    hi = np.full(3, -big, dtype=np.float32)
    k = np.float32(fold[0])
    coef32, mean32 = np.float32(fold[4]), np.float32(fold[5])
    top = np.float32(fold[6])
    csf_rows = np.array([CSF_MAIN, CSF_FOSSA])
    csf_values = np.array([csf, csf], dtype=np.uint8)
    hind_rows = np.array([CEREBELLUM_OUTER, CEREBELLUM_INNER, BRAINSTEM])
    hind_values = np.array([cortex, wm, wm], dtype=np.uint8)
    for i in range(n):
        x, y, z = p[i, 0], p[i, 1], p[i, 2]
        if not (_inside(x, y, z, shapes[HEAD_MAIN]) or _inside(x, y, z, shapes[HEAD_FOSSA])):
            continue
        lab = _paint(x, y, z, shapes, csf_rows, csf_values, scalp)
        if _inside(x, y, z, shapes[CEREBRUM_OUTER]):
            lab = cortex
            f = np.float32(math.sin(np.float64(k * x) + fold[1])
                           * math.sin(np.float64(k * y) + fold[2])
                           * math.sin(np.float64(k * z) + fold[3]))
            rho = np.float32(math.sqrt(_r2(x, y, z, shapes[CEREBRUM_INNER])))
            if limit64:
                white = np.float64(rho) <= 1.0 + fold[4] * np.float64(f) / fold[5]
            else:
                white = rho <= np.float32(1.0) + coef32 * f / mean32
            if white:
                lab = wm
            if z > top:
                ax = abs(x)
                if ax < 3.5 and lab == wm:
                    lab = cortex
                if ax < 1.0:
                    lab = csf
        out[i] = _paint(x, y, z, shapes, hind_rows, hind_values, lab)
        if _in_box(x, y, z, shapes[DEEP_BOX]):
            deep[i] = True
            _grow(lo, hi, x, y, z)
    n_shapes = shapes.shape[0]
    skip = np.zeros(n_shapes, dtype=np.bool_)
    for s in range(DEEP_GM, n_shapes):
        skip[s] = _missed(shapes[s], lo, hi)
    wlo = np.full(3, big, dtype=np.float32)
    whi = np.full(3, -big, dtype=np.float32)
    for i in range(n):
        if deep[i]:
            x, y, z = p[i, 0], p[i, 1], p[i, 2]
            lab = out[i]
            mx = abs(x)
            if _inside(mx, y, z, shapes[THALAMUS]):
                lab = thalamus
            if _inside(mx, y, z, shapes[VENTRICLES]):
                lab = ventricle
            if _inside(x, y, z, shapes[THIRD_VENTRICLE]):
                lab = ventricle
            for s in range(DEEP_GM, n_shapes):
                if not skip[s] and _inside(x, y, z, shapes[s]):
                    if putamen_rows[s, 0]:
                        lab = putamen_rows[s, 0] if y >= 0.0 else putamen_rows[s, 1]
                    else:
                        lab = values[s]
            out[i] = lab
        if out[i] == wm:
            _grow(wlo, whi, p[i, 0], p[i, 1], p[i, 2])
    n_les = lesions.shape[0]
    if n_les == 0:
        return out
    les_skip = np.zeros(n_les, dtype=np.bool_)
    for s in range(n_les):
        les_skip[s] = _missed(lesions[s], wlo, whi)
    for i in range(n):
        if out[i] != wm:
            continue
        x, y, z = p[i, 0], p[i, 1], p[i, 2]
        for s in range(n_les):
            if not les_skip[s] and _inside(x, y, z, lesions[s]):
                out[i] = lesion
    return out
