"""Compiled Rician magnitude, bit for bit the numpy reference's, written as float32.

:func:`ironmap.sim.signal.add_rician_noise` makes five full-size temporaries (the two scaled
draws, the real part, a float64 copy of the imaginary part, the float64 magnitude) and the
simulator then casts the magnitude to float32. The kernel here takes each voxel once through
the same operations in the same precisions - ``sigma * draw`` in float32 or float64 as numpy
promotes it for the type of ``sigma``, the real part summed in float64, the magnitude by the
C library's ``hypot`` in float64 as ``np.hypot`` computes it, then rounded to float32 - so
its values equal ``add_rician_noise(...).astype(np.float32)`` exactly
(``tests/unit/test_noise_kernel.py``).
The draws themselves stay numpy's (the same generator calls in the same order).

Without numba, :data:`AVAILABLE` is False and the caller uses the numpy reference.
"""

from __future__ import annotations

import math

import numpy as np

from ironmap.sim.jit import AVAILABLE, compiled  # noqa: F401 - AVAILABLE re-exported


@compiled
def rician_float32(image, sigma, scale32, draw_re, draw_im):
    """Rician magnitude of ``image`` from two standard-normal draws, as float32.

    Parameters
    ----------
    image : ndarray of float64, shape (X, Y, Z)
        Noise-free magnitude (any strides).
    sigma : float
        Noise SD per channel (a float32 value when ``scale32``).
    scale32 : bool
        Scale the draws in float32 (numpy's promotion for a Python float or numpy.float32
        ``sigma``) instead of float64 (a numpy.float64 ``sigma``).
    draw_re, draw_im : ndarray of float32, shape (X, Y, Z)
        Standard-normal draws of the real and imaginary channels.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        ``hypot(image + sigma * draw_re, sigma * draw_im)`` rounded to float32.
    """
    nx, ny, nz = image.shape
    out = np.empty((nx, ny, nz), dtype=np.float32)
    s32 = np.float32(sigma)
    s64 = np.float64(sigma)
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                if scale32:
                    dre = np.float64(s32 * draw_re[i, j, k])
                    dim = np.float64(s32 * draw_im[i, j, k])
                else:
                    dre = s64 * np.float64(draw_re[i, j, k])
                    dim = s64 * np.float64(draw_im[i, j, k])
                out[i, j, k] = np.float32(math.hypot(image[i, j, k] + dre, dim))
    return out


def load() -> None:
    """Load the compiled kernel now (from numba's cache, else compile it)."""
    z = np.zeros((1, 1, 1), dtype=np.float32)
    rician_float32(np.zeros((1, 1, 1)), 1.0, True, z, z)
