"""Random rigid head poses: each series sees the head at its own position in the scanner."""

from __future__ import annotations

import numpy as np

#: Default spread of head poses: rotation SD (degrees) and translation SD (mm) per axis.
ROTATION_SD_DEG = 3.0
TRANSLATION_SD_MM = 4.0


def rotation_matrix(angles_deg) -> np.ndarray:
    """3x3 rotation from angles about x, y, z, applied in that order.

    Parameters
    ----------
    angles_deg : sequence of 3 float
        Degrees.

    Returns
    -------
    ndarray of shape (3, 3)
        The rotation.
    """
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_matrix(angles_deg, translation_mm) -> np.ndarray:
    """4x4 rigid transform from rotation angles and a translation.

    Parameters
    ----------
    angles_deg : sequence of 3 float
        Degrees about x, y, z (:func:`rotation_matrix`).
    translation_mm : sequence of 3 float
        mm.

    Returns
    -------
    ndarray of shape (4, 4)
        The transform.
    """
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(angles_deg)
    m[:3, 3] = np.asarray(translation_mm, dtype=float)
    return m


def random_pose(rng: np.random.Generator, rotation_sd_deg: float = ROTATION_SD_DEG,
                translation_sd_mm: float = TRANSLATION_SD_MM) -> np.ndarray:
    """A random rigid 4x4 matrix mapping scanner world mm -> head mm.

    Angles and shifts are normal, clipped at 2.5 SD (a few degrees, a few mm).

    Parameters
    ----------
    rng : numpy.random.Generator
    rotation_sd_deg : float
        SD of each rotation angle in degrees (0 gives no rotation).
    translation_sd_mm : float
        SD of each translation component in mm.

    Returns
    -------
    ndarray of shape (4, 4)
    """
    angles = np.clip(rng.normal(0.0, 1.0, 3), -2.5, 2.5) * rotation_sd_deg
    shift = np.clip(rng.normal(0.0, 1.0, 3), -2.5, 2.5) * translation_sd_mm
    return rigid_matrix(angles, shift)
