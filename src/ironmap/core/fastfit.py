"""Compiled (numba) per-voxel loops for the iterative R2* fits and ARLO.

The same mathematics as :mod:`ironmap.core.nlls` and :mod:`ironmap.core.arlo`, written as one
loop per voxel so that nothing is allocated per iteration and converged voxels stop early.
Functions are compiled on first use and cached on disk (``cache=True``). When numba is not
installed, :data:`AVAILABLE` is False and the numpy implementations are used.
"""

from __future__ import annotations

import math

import numpy as np

try:  # pragma: no cover - exercised when numba is installed (a dependency)
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover
    numba = None
    AVAILABLE = False


def _jit(**kw):
    def wrap(func):
        if not AVAILABLE:
            return func
        return numba.njit(cache=True, nogil=True, **kw)(func)

    return wrap


@_jit(fastmath={"contract", "reassoc", "arcp"})
def _decay_moments(S, R, t, even, dt):
    """(A0, A1, A2, B0, B1, B2): sums of S e, t S e, t^2 S e, e^2, t e^2, t^2 e^2."""
    a0 = a1 = a2 = b0 = b1 = b2 = 0.0
    q = math.exp(-R * dt) if even else 0.0
    e = 1.0
    for j in range(S.shape[0]):
        if j > 0:
            e = e * q if even else math.exp(-R * t[j])
        tj = t[j]
        se = S[j] * e
        ee = e * e
        a0 += se
        a1 += tj * se
        a2 += tj * tj * se
        b0 += ee
        b1 += tj * ee
        b2 += tj * tj * ee
    return a0, a1, a2, b0, b1, b2


@_jit()
def _newton(a0, a1, a2, b0, b1, b2, max_step):
    """Safeguarded Newton step on ln(A0^2/B0); returns (step, used_exact_curvature)."""
    m_a = a1 / a0
    m_b = b1 / b0
    v_b = b2 / b0 - m_b * m_b
    curv = 2.0 * (a2 / a0 - m_a * m_a) - 4.0 * v_b
    exact = curv < 0.0
    if not exact:
        curv = -2.0 * v_b
    step = -2.0 * (m_b - m_a) / curv
    if step > max_step:
        step = max_step
    elif step < -max_step:
        step = -max_step
    return step, exact


@_jit(parallel=True)
def nonlinear_loop(S, R0, t, even, dt, max_iter, tol, r2, amp, rss):
    """Least squares of c*exp(-R t) per row of S (m, n); writes R, c and the residual sum."""
    m = S.shape[0]
    max_step = 2.0 / max(t[t.shape[0] - 1], 1e-6)
    for i in numba.prange(m) if AVAILABLE else range(m):
        row = S[i]
        R = R0[i]
        r2[i] = np.nan
        amp[i] = np.nan
        rss[i] = np.nan
        if not math.isfinite(R):
            continue
        for _ in range(max_iter):
            a0, a1, a2, b0, b1, b2 = _decay_moments(row, R, t, even, dt)
            step, exact = _newton(a0, a1, a2, b0, b1, b2, max_step)
            if not math.isfinite(step):
                break
            R += step
            scale = max(abs(R), 1.0)
            if abs(step) <= (math.sqrt(tol) if exact else tol) * scale:
                a0 -= step * a1
                b0 -= 2.0 * step * b1
                c = a0 / b0
                ss = 0.0
                for j in range(row.shape[0]):
                    ss += row[j] * row[j]
                r2[i] = R
                amp[i] = c
                rss[i] = max(ss - a0 * c, 0.0)
                break


@_jit()
def bessel_ratio_scalar(x):
    """I1(x)/I0(x) for x >= 0; polynomial approximations (A&S 9.8.1-9.8.4), rel. error < 5e-7."""
    if x >= 50.0:
        inv = 1.0 / x
        return 1.0 - inv * (0.5 + inv * (0.125 + inv * (0.125 + inv * (25.0 / 128.0))))
    if x < 3.75:
        y = (x / 3.75) ** 2
        i0 = 1.0 + y * (3.5156229 + y * (3.0899424 + y * (1.2067492 + y * (
            0.2659732 + y * (0.0360768 + y * 0.0045813)))))
        i1 = x * (0.5 + y * (0.87890594 + y * (0.51498869 + y * (0.15084934 + y * (
            0.02658733 + y * (0.00301532 + y * 0.00032411))))))
        return i1 / i0
    y = 3.75 / x
    i0 = 0.39894228 + y * (0.01328592 + y * (0.00225319 + y * (-0.00157565 + y * (
        0.00916281 + y * (-0.02057706 + y * (0.02635537 + y * (-0.01647633 + y * 0.00392377)))))))
    i1 = 0.39894228 + y * (-0.03988024 + y * (-0.00362018 + y * (0.00163801 + y * (
        -0.01031555 + y * (0.02282967 + y * (-0.02895312 + y * (0.01787654 - y * 0.00420059)))))))
    return i1 / i0


@_jit(fastmath={"contract", "reassoc", "arcp"})
def _rician_step(row, c, R, t, even, dt, inv_var, max_step):
    """One safeguarded Newton step of the Rician log-likelihood in (c, R); returns (dc, dR)."""
    gc = gr = hcc = hcr = hrr = 0.0
    gcc = gcr = grr = 0.0  # Gauss-Newton (EM) curvature, always negative definite
    q = math.exp(-R * dt) if even else 0.0
    e = 1.0
    for j in range(row.shape[0]):
        if j > 0:
            e = e * q if even else math.exp(-R * t[j])
        nu = c * e
        x = row[j] * nu * inv_var
        r = bessel_ratio_scalar(x)
        w = (row[j] * r - nu) * inv_var
        h = (row[j] * row[j] * (1.0 - r * r - (r / x if x > 0 else 0.5)) * inv_var - 1.0) \
            * inv_var
        dnc = e
        dnr = -t[j] * nu
        gc += w * dnc
        gr += w * dnr
        hcc += h * dnc * dnc
        hcr += h * dnc * dnr - w * t[j] * e
        hrr += h * dnr * dnr + w * t[j] * t[j] * nu
        gcc -= inv_var * dnc * dnc
        gcr -= inv_var * dnc * dnr
        grr -= inv_var * dnr * dnr
    det = hcc * hrr - hcr * hcr
    if not (hcc < 0.0 and det > 0.0):
        hcc, hcr, hrr = gcc, gcr, grr
        det = hcc * hrr - hcr * hcr
    dc = -(hrr * gc - hcr * gr) / det
    dr = -(hcc * gr - hcr * gc) / det
    if dr > max_step:
        dr = max_step
    elif dr < -max_step:
        dr = -max_step
    return dc, dr


@_jit(parallel=True)
def rician_loop(S, R0, c0, t, even, dt, inv_var, max_iter, tol, r2, amp):
    """Rician maximum likelihood of c*exp(-R t) per row of S (m, n); writes R and c."""
    m = S.shape[0]
    max_step = 2.0 / max(t[t.shape[0] - 1], 1e-6)
    for i in numba.prange(m) if AVAILABLE else range(m):
        row = S[i]
        R = R0[i]
        c = c0[i]
        r2[i] = np.nan
        amp[i] = np.nan
        if not (math.isfinite(R) and math.isfinite(c) and c > 0.0):
            continue
        for _ in range(max_iter):
            dc, dr = _rician_step(row, c, R, t, even, dt, inv_var, max_step)
            if not (math.isfinite(dc) and math.isfinite(dr)):
                break
            if c + dc <= 0.0:
                dc = -0.5 * c
            c += dc
            R += dr
            if abs(dr) <= tol * max(abs(R), 1.0) and abs(dc) <= tol * c:
                r2[i] = R
                amp[i] = c
                break


@_jit(parallel=True, fastmath={"contract", "reassoc", "arcp"})
def arlo_loop(S, exact, q_out, amp, rss):
    """ARLO per row of S (m, n), evenly spaced echoes (Pei et al. with erratum).

    Writes ``q = exp(-R2* dTE)`` (exact inversion of Simpson's rule, or ``exp(-3 kappa)`` for
    the published estimate), the least-squares amplitude at the first echo and the residual sum.
    """
    m, n = S.shape
    for i in numba.prange(m) if AVAILABLE else range(m):
        ss = sd = dd = 0.0
        for j in range(n - 2):
            a = float(S[i, j])
            b = float(S[i, j + 1])
            c = float(S[i, j + 2])
            s = a + 4.0 * b + c
            d = a - c
            ss += s * s
            sd += s * d
            dd += d * d
        kappa = (dd + sd) / (ss + sd)
        if exact:
            q = (math.sqrt(3.0 * kappa * kappa + 1.0) - 2.0 * kappa) / (kappa + 1.0)
        else:
            q = math.exp(-3.0 * kappa)
        e = 1.0
        a0 = b0 = sq = 0.0
        for j in range(n):
            v = float(S[i, j])
            a0 += v * e
            b0 += e * e
            sq += v * v
            e *= q
        c = a0 / b0
        q_out[i] = q
        amp[i] = c
        rss[i] = max(sq - a0 * c, 0.0)


@_jit(parallel=True, fastmath={"contract", "reassoc", "arcp"})
def amplitude_loop(S, R, t, even, dt, amp, rss):
    """Least-squares amplitude c of c*exp(-R t) for a known R per row; and the residual sum."""
    m = S.shape[0]
    for i in numba.prange(m) if AVAILABLE else range(m):
        row = S[i]
        q = math.exp(-R[i] * dt) if even else 0.0
        e = 1.0
        a0 = b0 = ss = 0.0
        for j in range(row.shape[0]):
            if j > 0:
                e = e * q if even else math.exp(-R[i] * t[j])
            v = float(row[j])
            a0 += v * e
            b0 += e * e
            ss += v * v
        c = a0 / b0
        amp[i] = c
        rss[i] = max(ss - a0 * c, 0.0)


def set_threads(n_jobs: int) -> int:
    """Set numba's thread count for the calling thread (capped by numba's maximum)."""
    if not AVAILABLE:
        return 1
    n = max(1, min(int(n_jobs), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n
