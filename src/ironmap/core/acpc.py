"""Putamen anterior/posterior split at the plane through the anterior commissure (AC).

The seed study separated the putamen at the line through the AC; in 3D this is the plane
through AC perpendicular to the AC-PC line. AC and PC are world coordinates (mm, RAS+) of the
label image's space; they come from a sidecar/TSV or from a template registration.
"""

from __future__ import annotations

import numpy as np

#: (whole putamen, anterior, posterior) label indices per hemisphere, rater dseg convention.
PUTAMEN_LABELS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "left": ((3, 5, 15), 3, 5),
    "right": ((4, 6, 16), 4, 6),
}


def acpc_axis(ac_mm, pc_mm) -> np.ndarray:
    """Unit vector from PC to AC (pointing anterior), shape (3,).

    Raises
    ------
    ValueError
        When AC and PC are closer than 10 mm or not finite (implausible landmarks).
    """
    ac = np.asarray(ac_mm, dtype=float)
    pc = np.asarray(pc_mm, dtype=float)
    d = ac - pc
    length = float(np.linalg.norm(d))
    if not np.all(np.isfinite(d)) or length < 10.0 or length > 50.0:
        raise ValueError(f"implausible AC-PC distance {length:.1f} mm (expected 20-35 mm)")
    return d / length


def anterior_of_ac(points_mm: np.ndarray, ac_mm, pc_mm) -> np.ndarray:
    """True for points (n, 3) in front of (or on) the plane through AC perpendicular to AC-PC."""
    u = acpc_axis(ac_mm, pc_mm)
    offset = (np.asarray(points_mm, dtype=float) - np.asarray(ac_mm, dtype=float)) @ u
    return offset >= -1e-6


def split_putamen(labels: np.ndarray, affine: np.ndarray, ac_mm, pc_mm,
                  putamen_labels: dict[str, tuple[tuple[int, ...], int, int]] | None = None
                  ) -> np.ndarray:
    """Relabel putamen voxels as anterior or posterior of the AC plane.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label image; putamen voxels carry any index of the "whole" tuple per hemisphere.
    affine : ndarray of shape (4, 4)
        Voxel -> world mm of ``labels``.
    ac_mm, pc_mm : sequence of 3 float
        AC and PC in the same world space (mm).
    putamen_labels : dict, optional
        ``{hemisphere: (whole indices, anterior index, posterior index)}``; default
        :data:`PUTAMEN_LABELS`.

    Returns
    -------
    ndarray of the same shape and dtype
        Copy of ``labels`` with putamen voxels set to the anterior/posterior index.
    """
    table = PUTAMEN_LABELS if putamen_labels is None else putamen_labels
    out = np.array(labels, copy=True)
    for whole, ant, post in table.values():
        sel = np.isin(labels, whole)
        if not sel.any():
            continue
        ijk = np.argwhere(sel)
        xyz = ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
        front = anterior_of_ac(xyz, ac_mm, pc_mm)
        out[tuple(ijk.T)] = np.where(front, ant, post).astype(out.dtype)
    return out
