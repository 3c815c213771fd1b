"""Noise level of magnitude images, for the noise-floor checks and the Rician fit.

In a single-channel (or adaptively combined) magnitude image, background voxels follow a
Rayleigh distribution whose median is ``sigma * sqrt(2 ln 2)``. Sum-of-squares multi-coil images
follow a non-central chi distribution instead; there this estimate is only approximate.
"""

from __future__ import annotations

import numpy as np

_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))


def estimate_sigma(echoes, mask, *, n_iter: int = 10, max_samples: int = 2_000_000) -> float:
    """Estimate the Gaussian noise sigma of magnitude data from the background.

    Parameters
    ----------
    echoes : ndarray of shape (..., n_echoes)
        Magnitude stack.
    mask : ndarray of bool of shape (...)
        Object (head/brain) mask; the voxels *outside* it are taken as background. Exact zeros
        (zero-filled or masked-out regions) are ignored.
    n_iter : int
        Iterations of the truncated median (values above 4 sigma, e.g. scalp or ghosts, are
        dropped each time).
    max_samples : int
        At most this many background values are used (an even subsample).

    Returns
    -------
    float
        sigma in signal units.

    Raises
    ------
    ValueError
        Without a mask, or when fewer than 100 usable background values exist.
    """
    if mask is None:
        raise ValueError("estimating sigma from the background needs a mask (the object); "
                         "pass sigma=<float> instead")
    data = np.asarray(echoes)
    m = np.asarray(mask, dtype=bool)
    values = data[~m].ravel()
    if values.size > max_samples:
        values = values[:: values.size // max_samples + 1]
    values = values[np.isfinite(values) & (values > 0)].astype(np.float64)
    if values.size < 100:
        raise ValueError(f"only {values.size} usable background values outside the mask; "
                         "cannot estimate sigma (pass sigma=<float>)")
    sigma = float(np.median(values)) / _RAYLEIGH_MEDIAN
    for _ in range(n_iter):
        kept = values[values < 4.0 * sigma]
        if kept.size < 100:
            break
        new = float(np.median(kept)) / _RAYLEIGH_MEDIAN
        if abs(new - sigma) <= 1e-6 * sigma:
            break
        sigma = new
    return sigma
