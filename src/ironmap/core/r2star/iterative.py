"""Iterative R2* fits, vectorised over voxels: nonlinear least squares and Rician likelihood.

Both eliminate S0 by variable projection: for a given R2*, the best amplitude is
``c = A0 / B0`` with ``A0 = sum_j S_j e_j``, ``B0 = sum_j e_j^2`` and ``e_j = exp(-R2* t_j)``.
What is left is a one-dimensional problem in R2*: maximise ``phi = ln(A0^2 / B0)``. Each step is a
Newton step on ``phi`` (its exact second derivative, or the Gauss-Newton curvature where that is
not negative), for all voxels at once; converged voxels leave the active set.

The Rician fit maximises the Rician likelihood with the expectation-maximisation identity
``d logL / d nu_j = (S_j r(S_j nu_j / sigma^2) - nu_j) / sigma^2`` (r = I1/I0): each iteration
replaces the data by ``S_j r(S_j nu_j / sigma^2)`` and takes one least-squares Newton step, so the
fixed point is the maximum-likelihood estimate.
"""

from __future__ import annotations

import numpy as np
from scipy.special import i0e, i1e

from ironmap.core.r2star import compiled_iterative as fastfit

#: Above this argument, I1(x)/I0(x) uses its asymptotic series (error < 2e-9).
_BESSEL_ASYMPTOTIC_X = 50.0


def start_loglinear(S: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Log-linear R2* per row, robust to non-positive samples (clipped), for a start.

    Parameters
    ----------
    S : ndarray of shape (m, n)
        Magnitude signal.
    t : ndarray of shape (n,)
        Echo times in s.

    Returns
    -------
    ndarray of shape (m,)
        R2* in s^-1.
    """
    tc = t - t.mean()
    w = (tc / np.sum(tc * tc)).astype(S.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        R = -(np.log(S) @ w)
    bad = np.flatnonzero(~np.isfinite(R))
    if bad.size:  # zeros or negatives: clip at 1e-3 of the row maximum
        Sb = S[bad]
        floor = Sb.dtype.type(1e-3) * np.max(Sb, axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            R[bad] = -(np.log(np.maximum(Sb, floor)) @ w)
    return R


def _moments(S, R, tmat):
    """Weighted sums (A0, A1, A2) of S*e and (B0, B1, B2) of e*e against 1, t, t^2."""
    e = np.exp(np.multiply.outer(-R, tmat[:, 1]))
    a = (S * e) @ tmat
    np.square(e, out=e)
    b = e @ tmat
    return a, b


def _newton_step(a, b, max_step):
    """Safeguarded Newton step on phi = ln(A0^2/B0) for each row; NaN where undefined."""
    m_a = a[:, 1] / a[:, 0]
    m_b = b[:, 1] / b[:, 0]
    v_a = a[:, 2] / a[:, 0] - m_a * m_a
    v_b = b[:, 2] / b[:, 0] - m_b * m_b
    grad = 2.0 * (m_b - m_a)
    curv = 2.0 * v_a - 4.0 * v_b
    curv = np.where(curv < 0, curv, -2.0 * v_b)
    step = -grad / curv
    return np.clip(step, -max_step, max_step)


def _vp_iterate(S, t, R, max_iter, tol, transform=None):
    """Iterate Newton steps for all rows; returns (R, a, b) with moments at the final R.

    ``transform(S_rows, R_rows, c_rows)``, when given, replaces the data before each step
    (``c`` = current amplitude at t = 0 of the shifted time axis ``t``).
    """
    tmat = np.stack([np.ones_like(t), t, t * t], axis=1)
    max_step = 2.0 / max(t[-1] - t[0], 1e-6)
    R = R.copy()
    a = np.full((S.shape[0], 3), np.nan)
    b = np.full((S.shape[0], 3), np.nan)
    active = np.flatnonzero(np.isfinite(R))
    if transform is not None and active.size:
        a0, b0 = _moments(S[active], R[active], tmat)
        a[active], b[active] = a0, b0
    for _ in range(max_iter):
        if active.size == 0:
            break
        Ra, Sa = R[active], S[active]
        if transform is not None:
            Sa = transform(Sa, Ra, a[active, 0] / b[active, 0])
        aa, bb = _moments(Sa, Ra, tmat)
        step = _newton_step(aa, bb, max_step)
        R[active] = Ra + step
        # first-order update of the moments to the new R (error O(step^2))
        aa[:, 0] -= step * aa[:, 1]
        bb[:, 0] -= 2.0 * step * bb[:, 1]
        a[active], b[active] = aa, bb
        done = ~(np.abs(step) > tol * np.maximum(np.abs(R[active]), 1.0))
        active = active[~done]
    R[active] = np.nan  # not converged
    return R, a, b


def _even_step(t: np.ndarray) -> float:
    """The spacing of ``t`` if evenly spaced to rounding error, else 0."""
    d = np.diff(t)
    return float(d.mean()) if np.ptp(d) <= 1e-9 * d.mean() else 0.0


def kernel_nonlinear(rows, te, *, want_rmse, max_iter=50, tol=1e-9):
    """Least squares of S0*exp(-R2* TE) on the magnitude.

    Parameters
    ----------
    rows : ndarray of shape (m, n_echoes)
        Magnitude signal per voxel.
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    want_rmse : bool
        Also return the RMS residual.
    max_iter : int, optional
        Most Newton steps.
    tol : float, optional
        Relative step tolerance.

    Returns
    -------
    r2star, s0 : ndarray of shape (m,)
        R2* in s^-1 and the signal at TE = 0 (NaN where the fit fails).
    rmse : ndarray of shape (m,) or None
        RMS residual (signal units), None unless ``want_rmse``.
    used : tuple of int
        First and last echo read.
    """
    t = te - te[0]
    if fastfit.AVAILABLE:
        R0 = start_loglinear(rows, t).astype(np.float64)
        R, c, rss = (np.empty(rows.shape[0]) for _ in range(3))
        dt = _even_step(t)
        fastfit.nonlinear_loop(rows, R0, t, dt > 0, dt, max_iter, tol, R, c, rss)
        rm = np.sqrt(rss / rows.shape[1]) if want_rmse else None
    else:
        S = np.asarray(rows, dtype=np.float64)
        R, a, b = _vp_iterate(S, t, start_loglinear(S, t), max_iter, tol)
        c = a[:, 0] / b[:, 0]
        rm = None
        if want_rmse:
            ss = np.einsum("ij,ij->i", S, S)
            rm = np.sqrt(np.maximum(ss - a[:, 0] * c, 0.0) / S.shape[1])
    s0 = c * np.exp(R * te[0])
    dt = rows.dtype
    return R.astype(dt), s0.astype(dt), None if rm is None else rm.astype(dt), (0, te.size - 1)


def bessel_ratio(x: np.ndarray) -> np.ndarray:
    """I1(x)/I0(x) for x >= 0 (exact scaled Bessel functions below 50, asymptotic above).

    Parameters
    ----------
    x : ndarray
        Arguments, >= 0.

    Returns
    -------
    ndarray
        The ratio, shape of ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    big = x >= _BESSEL_ASYMPTOTIC_X
    xb = x[big]
    inv = 1.0 / xb
    out[big] = 1.0 - inv * (0.5 + inv * (0.125 + inv * (0.125 + inv * (25.0 / 128.0))))
    xs = x[~big]
    out[~big] = i1e(xs) / i0e(xs)
    return out


def rician_expected_magnitude(nu, sigma):
    """Mean of a Rician magnitude with true signal ``nu`` and noise ``sigma``.

    Parameters
    ----------
    nu : array-like
        True signal.
    sigma : float
        Noise SD per channel (same units).

    Returns
    -------
    ndarray
        Expected magnitude, shape of ``nu``.
    """
    z = np.square(np.asarray(nu, dtype=np.float64)) / (4.0 * sigma * sigma)
    return sigma * np.sqrt(np.pi / 2.0) * ((1.0 + 2.0 * z) * i0e(z) + 2.0 * z * i1e(z))


def _rician_numpy(S, t, R0, inv_var, max_iter, tol):
    """Expectation-maximisation iterations (numpy); returns (R, c, e)."""
    def corrected(Sa, Ra, ca):
        nu = np.exp(np.multiply.outer(-Ra, t))
        nu *= np.maximum(ca, 0.0)[:, None]
        return Sa * bessel_ratio(Sa * nu * inv_var)

    R, a, b = _vp_iterate(S, t, R0, max_iter, tol, transform=corrected)
    ok = np.isfinite(R)
    Rf = np.where(ok, R, 0.0)
    e = np.exp(np.multiply.outer(-Rf, t))
    Sc = corrected(S, Rf, np.where(ok, a[:, 0] / b[:, 0], 0.0))
    c = (Sc * e).sum(axis=1) / np.square(e).sum(axis=1)
    return R, np.where(ok, c, np.nan), e


def kernel_rician(rows, te, *, want_rmse, sigma, max_iter=200, tol=1e-9):
    """Rician maximum likelihood of S0*exp(-R2* TE).

    Samples below 0 are invalid for a magnitude; zeros are allowed (the likelihood is defined).
    The RMSE is that of the magnitude data against the *expected* Rician magnitude.

    Parameters
    ----------
    rows : ndarray of shape (m, n_echoes)
        Magnitude signal per voxel.
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    want_rmse : bool
        Also return the RMS residual.
    sigma : float
        Noise SD per channel (signal units).
    max_iter : int, optional
        Most iterations.
    tol : float, optional
        Relative step tolerance.

    Returns
    -------
    r2star, s0 : ndarray of shape (m,)
        R2* in s^-1 and the signal at TE = 0 (NaN where the fit fails).
    rmse : ndarray of shape (m,) or None
        RMS residual (signal units), None unless ``want_rmse``.
    used : tuple of int
        First and last echo read.
    """
    t = te - te[0]
    inv_var = 1.0 / (sigma * sigma)
    if fastfit.AVAILABLE:
        S = rows
        R0 = start_loglinear(S, t).astype(np.float64)
        R0[(S < 0).any(axis=1)] = np.nan
        m = S.shape[0]
        R, c, c0, rss = (np.empty(m) for _ in range(4))
        dt = _even_step(t)
        fastfit.amplitude_loop(S, np.where(np.isfinite(R0), R0, 0.0), t, dt > 0, dt, c0, rss)
        fastfit.rician_loop(S, R0, c0, t, dt > 0, dt, inv_var, max_iter, tol, R, c)
        e = None
        if want_rmse:
            S = np.asarray(S, dtype=np.float64)
            e = np.exp(np.multiply.outer(-np.where(np.isfinite(R), R, 0.0), t))
    else:
        S = np.asarray(rows, dtype=np.float64)
        R0 = start_loglinear(S, t)
        R0[(S < 0).any(axis=1)] = np.nan
        R, c, e = _rician_numpy(S, t, R0, inv_var, max_iter, tol)
    s0 = c * np.exp(R * te[0])
    rm = None
    if want_rmse:
        mean = rician_expected_magnitude(c[:, None] * e, sigma)
        rm = np.sqrt(np.mean(np.square(S - mean), axis=1))
    dt = rows.dtype
    return R.astype(dt), s0.astype(dt), None if rm is None else rm.astype(dt), (0, te.size - 1)
