"""ARLO: Auto-Regression on Linear Operations (Pei et al., MRM 2015;73:843-850, with erratum).

For evenly spaced echoes (spacing dTE), Simpson's rule over consecutive echo triples gives
``s_i = dTE/3 (S_i + 4 S_{i+1} + S_{i+2})`` and ``d_i = S_i - S_{i+2}``; for an exponential,
``d_i ~ s_i / T2*``. Pei et al. estimate

    T2* = (sum s_i^2 + dTE/3 sum s_i d_i) / (dTE/3 sum d_i^2 + sum s_i d_i).

Simpson's rule is exact only in the limit dTE -> 0: for noise-free data the relative R2* error of
the published formula is about (R2* dTE)^4 / 180 (7e-4 at R2* = 150 s^-1, dTE = 4 ms). For an
exponential the ratio is known exactly: d_i / s_i = 3 (1 - q^2) / (dTE (1 + 4 q + q^2)) with
``q = exp(-R2* dTE)``. With ``simpson_exact=True`` (the default) ironmap inverts this relation
(one square root and one logarithm per voxel), so noise-free data give R2* to rounding error;
``simpson_exact=False`` returns the published estimate 1/T2*.
"""

from __future__ import annotations

import numpy as np

from ironmap.core.r2star import compiled_iterative


class SpacingError(ValueError):
    """Echo times that are not evenly spaced, which ARLO requires."""


def check_even_spacing(te: np.ndarray, rtol: float = 1e-2) -> float:
    """Return the mean echo spacing (s); raise :class:`SpacingError` if spacings differ.

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending, at least three.
    rtol : float
        Largest accepted deviation of any spacing from the mean spacing, relative.

    Returns
    -------
    float
        Mean echo spacing in s.
    """
    te = np.asarray(te, dtype=np.float64)
    if te.size < 3:
        raise SpacingError("ARLO needs at least three evenly spaced echoes")
    d = np.diff(te)
    mean = float(d.mean())
    dev = float(np.max(np.abs(d - mean)) / mean)
    if dev > rtol:
        raise SpacingError(
            f"ARLO needs evenly spaced echoes; spacings {np.round(d * 1e3, 4).tolist()} ms differ "
            f"by up to {100 * dev:.2f}% (limit {100 * rtol:.2f}%). Use method 'nonlinear' or "
            "'loglinear', or select evenly spaced echoes")
    return mean


def arlo_ratio(rows: np.ndarray) -> np.ndarray:
    """Dimensionless ARLO ratio kappa = (dTE/3) / T2* per row.

    Parameters
    ----------
    rows : ndarray of shape (m, n_echoes)
        Magnitude signal, evenly spaced echoes.

    Returns
    -------
    ndarray of shape (m,)
        kappa.
    """
    a, b, c = rows[:, :-2], rows[:, 1:-1], rows[:, 2:]
    s = a + c
    d = a - c
    s += 4 * b
    ss = np.einsum("ij,ij->i", s, s)
    sd = np.einsum("ij,ij->i", s, d)
    dd = np.einsum("ij,ij->i", d, d)
    return (dd + sd) / (ss + sd)


def kappa_to_r2star(kappa: np.ndarray, dte: float, simpson_exact: bool = True) -> np.ndarray:
    """R2* from the ARLO ratio.

    Parameters
    ----------
    kappa : ndarray
        ARLO ratios.
    dte : float
        Echo spacing in s.
    simpson_exact : bool, optional
        Exact inversion of Simpson's rule (else R2* dTE = 3 kappa).

    Returns
    -------
    ndarray
        R2* in s^-1, shape of ``kappa``.
    """
    if not simpson_exact:
        return kappa * (3.0 / dte)
    q = (np.sqrt(3.0 * kappa * kappa + 1.0) - 2.0 * kappa) / (kappa + 1.0)
    return -np.log(q) / dte


def arlo_evenly_spaced(te: np.ndarray) -> bool:
    """True when the echo spacing is constant to rounding error (relative 1e-9).

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s.

    Returns
    -------
    bool
        Whether the spacing is constant.
    """
    d = np.diff(np.asarray(te, dtype=np.float64))
    return bool(np.ptp(d) <= 1e-9 * float(np.mean(d)))


def kernel_arlo(rows, te, *, want_rmse, simpson_exact=True):
    """ARLO fit of rows.

    Parameters
    ----------
    rows : ndarray of shape (m, n_echoes)
        Magnitude signal per voxel.
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    want_rmse : bool
        Also return the RMS residual.
    simpson_exact : bool, optional
        Exact inversion of Simpson's rule.

    Returns
    -------
    r2star, s0 : ndarray of shape (m,)
        R2* in s^-1 and the signal at TE = 0 (NaN where the fit fails).
    rmse : ndarray of shape (m,) or None
        RMS residual (signal units), None unless ``want_rmse``.
    used : tuple of int
        First and last echo read.
    """
    dte = float(np.mean(np.diff(te)))
    t = te - te[0]
    if compiled_iterative.AVAILABLE and arlo_evenly_spaced(te):
        q, c, rss = (np.empty(rows.shape[0]) for _ in range(3))
        compiled_iterative.arlo_loop(rows, simpson_exact, q, c, rss)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.log(q)
        r2 *= -1.0 / dte
        dt = rows.dtype
        s0 = (c * np.exp(r2 * te[0])).astype(dt)
        rm = np.sqrt(rss / rows.shape[1]).astype(dt) if want_rmse else None
        return r2.astype(dt), s0, rm, (0, te.size - 1)
    r2 = kappa_to_r2star(arlo_ratio(rows), dte, simpson_exact)
    e = np.exp(np.multiply.outer(-r2, t.astype(rows.dtype)))
    a0 = np.einsum("ij,ij->i", rows, e)
    np.square(e, out=e)
    b0 = e.sum(axis=1)
    c = a0 / b0
    s0 = c * np.exp(r2 * rows.dtype.type(te[0]))
    rm = None
    if want_rmse:
        ss = np.einsum("ij,ij->i", rows, rows)
        rm = np.sqrt(np.maximum(ss - a0 * c, 0) / rows.shape[1])
    return r2, s0, rm, (0, te.size - 1)
