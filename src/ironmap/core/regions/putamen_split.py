"""Putamen anterior/posterior split at the plane through the anterior commissure (AC).

The seed study separated the putamen at the line through the AC; in 3D this is the plane
through AC perpendicular to the AC-PC line. AC and PC are world coordinates (mm, RAS+) of the
label image's space; they come from a sidecar/TSV or from a template registration.
"""

from __future__ import annotations

import numpy as np

from ironmap.core.regions.names import canonical_region, region_label_name

#: (whole putamen, anterior, posterior) label indices per hemisphere, rater dseg convention.
PUTAMEN_LABELS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "left": ((3, 5, 15), 3, 5),
    "right": ((4, 6, 16), 4, 6),
}


def acpc_axis(ac_mm, pc_mm) -> np.ndarray:
    """Unit vector from PC to AC (pointing anterior), shape (3,).

    Parameters
    ----------
    ac_mm, pc_mm : array-like of 3 float
        AC and PC in world mm.

    Returns
    -------
    ndarray of shape (3,)
        The unit vector.

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
    """True for points in front of (or on) the plane through AC perpendicular to AC-PC.

    Parameters
    ----------
    points_mm : ndarray of shape (n, 3)
        World mm.
    ac_mm, pc_mm : array-like of 3 float
        AC and PC in the same world mm.

    Returns
    -------
    ndarray of bool, shape (n,)
        Whether each point is anterior.
    """
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
    return _split_at_ac(labels, affine, ac_mm, pc_mm, table.values())


def whole_putamen_labels(names: dict[int, str]) -> dict[int, str]:
    """Label indices naming a whole putamen, with their hemisphere.

    Only in the hemispheres whose labels do not already name both putamen parts.

    Parameters
    ----------
    names : dict of int to str
        Label index -> name.

    Returns
    -------
    dict of int to str
        Index -> ``left`` or ``right``.
    """
    regions = {i: canonical_region(n) for i, n in names.items()}
    parts = set(regions.values())
    return {i: hemi for i, (region, hemi) in sorted(regions.items())
            if region == "putamen"
            and not {("putamen_anterior", hemi), ("putamen_posterior", hemi)} <= parts}


def split_whole_putamen(labels: np.ndarray, names: dict[int, str], affine: np.ndarray, ac_mm,
                        pc_mm) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """Split every whole-putamen label (by name) at the AC plane into two labels.

    Hemispheres whose labels already name both putamen parts are left alone
    (:func:`whole_putamen_labels`). The anterior part keeps the whole putamen's index, the
    posterior part gets the next free index; names become ``Left-Putamen-Anterior`` and
    ``Left-Putamen-Posterior`` (``Right-...``).

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
    names : dict
        Label index -> name (``dseg.tsv``, FreeSurfer or atlas names).
    affine : ndarray of shape (4, 4)
        Voxel -> world mm of ``labels``, in the space of ``ac_mm``/``pc_mm``.
    ac_mm, pc_mm : sequence of 3 float

    Returns
    -------
    (labels, names, split)
        The relabelled copy, the updated names and the hemispheres that were split.
    """
    whole = whole_putamen_labels(names)
    if not whole:
        return labels, dict(names), []
    table, out_names = [], dict(names)
    free = max([int(np.max(labels, initial=0)), *names]) + 1
    for offset, (index, hemi) in enumerate(whole.items()):
        table.append(((index,), index, free + offset))
        out_names[index] = region_label_name("putamen_anterior", hemi)
        out_names[free + offset] = region_label_name("putamen_posterior", hemi)
    return _split_at_ac(labels, affine, ac_mm, pc_mm, table), out_names, list(whole.values())


def _split_at_ac(labels, affine, ac_mm, pc_mm, table) -> np.ndarray:
    """Copy of ``labels`` with each whole putamen split at the AC plane.

    The voxels of each ``(whole indices, anterior, posterior)`` entry are set to its anterior or
    posterior index by their side of the AC plane.
    """
    acpc_axis(ac_mm, pc_mm)  # refuse implausible landmarks before any work
    out = np.array(labels, copy=True)
    for whole, ant, post in table:
        sel = np.isin(labels, whole)
        if not sel.any():
            continue
        ijk = np.argwhere(sel)
        xyz = ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
        front = anterior_of_ac(xyz, ac_mm, pc_mm)
        out[tuple(ijk.T)] = np.where(front, ant, post).astype(out.dtype)
    return out
