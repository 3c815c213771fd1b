"""Truth of lesion change between two simulated sessions, on any image grid.

Each simulated scan sees the head at its own pose (``truth/poses.tsv``: scanner world mm ->
head mm per session and series) and each session has its own phantom (``truth/geometry.json``:
lesions grown or added). :func:`new_lesion_truth` evaluates both sessions' phantoms at the
voxel centres of one image (through that image's pose): lesion at the later session and not at
the first = new or enlarging lesion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ironmap.sim import anatomy


def pose_matrix(poses: pd.DataFrame, participant_id: str, session_id: str,
                series: str = "FLAIR") -> np.ndarray:
    """One scan's scanner world mm -> head mm matrix from a ``poses.tsv`` table.

    Parameters
    ----------
    poses : DataFrame
        ``truth/poses.tsv`` of a simulation with sessions (``participant_id``, ``session_id``,
        ``series``, ``m00`` ... ``m33``).
    participant_id, session_id, series : str

    Returns
    -------
    ndarray of shape (4, 4)
    """
    sel = poses[(poses["participant_id"] == participant_id)
                & (poses["session_id"] == session_id) & (poses["series"] == series)]
    if len(sel) != 1:
        raise KeyError(f"no single pose for {participant_id} {session_id} {series}")
    row = sel.iloc[0]
    return np.array([[row[f"m{i}{j}"] for j in range(4)] for i in range(4)], dtype=float)


def new_lesion_truth(first_geometry: dict, later_geometry: dict, shape, affine: np.ndarray,
                     world_to_head: np.ndarray) -> np.ndarray:
    """Voxels whose centre is lesion in the later phantom and not in the first one.

    Parameters
    ----------
    first_geometry, later_geometry : dict
        The sessions' entries of ``truth/geometry.json``.
    shape : tuple of 3 int
        Image grid shape.
    affine : ndarray of shape (4, 4)
        Image voxel -> scanner world mm.
    world_to_head : ndarray of shape (4, 4)
        That image's pose (scanner world mm -> head mm).

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    ijk = np.indices(tuple(shape)).reshape(3, -1)
    world = np.asarray(affine, float)[:3, :3] @ ijk + np.asarray(affine, float)[:3, 3:4]
    head = (np.asarray(world_to_head, float)[:3, :3] @ world
            + np.asarray(world_to_head, float)[:3, 3:4]).T
    labels = [anatomy.label_points(head, anatomy.geometry_from_dict(g))
              for g in (first_geometry, later_geometry)]
    return ((labels[1] == anatomy.LESION) & (labels[0] != anatomy.LESION)).reshape(tuple(shape))
