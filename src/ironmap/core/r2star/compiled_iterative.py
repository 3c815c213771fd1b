"""Compiled (numba) per-voxel loops for the iterative R2* fits and ARLO.

The same mathematics as :mod:`ironmap.core.r2star.iterative` and :mod:`ironmap.core.r2star.arlo`,
written as one loop per voxel so that nothing is allocated per iteration and converged voxels stop
early. Functions are compiled on first use and cached on disk (``cache=True``). When numba is not
installed, :data:`AVAILABLE` is False and the numpy implementations are used.
"""

from __future__ import annotations

import math
import os

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


_NL_BLOCK = 256


@_jit(parallel=True, fastmath={"contract"})
def nonlinear_loop(S, R0, t, even, dt, max_iter, tol, r2, amp, rss):
    """Least squares of c*exp(-R t) per row of S (m, n); writes R, c and the residual sum.

    Safeguarded Newton steps on ln(A0^2/B0) (see :mod:`ironmap.core.r2star.iterative`) from ``R0``;
    a voxel stops when its step is below ``tol`` relative (``sqrt(tol)`` for an exact Newton
    step, whose error is then of order tol); NaN where it fails or does not converge. Voxels
    run in blocks of 256 with the voxel index in the inner loops, so the moments and steps
    vectorise; with even spacing, e_j = q^j and q follows R by a series, not a library exp.

    Parameters
    ----------
    S : ndarray of shape (m, n)
        Magnitude signal per row.
    R0 : ndarray of shape (m,)
        Starting R2* (s^-1).
    t : ndarray of shape (n,)
        Echo times in s.
    even : bool
        Whether the echoes are evenly spaced.
    dt : float
        Their spacing (s) when even.
    max_iter : int
        Most Newton steps.
    tol : float
        Relative step tolerance.
    r2, amp, rss : ndarray of shape (m,)
        Outputs: R2* (s^-1), amplitude, residual sum of squares.
    """
    m, n = S.shape
    nblocks = (m + _NL_BLOCK - 1) // _NL_BLOCK
    max_step = 2.0 / max(t[n - 1], 1e-6)
    stol = math.sqrt(tol)
    for blk in numba.prange(nblocks) if AVAILABLE else range(nblocks):
        k0 = blk * _NL_BLOCK
        nb = min(_NL_BLOCK, m - k0)
        T = np.empty((n, _NL_BLOCK))
        mom = np.zeros((7, _NL_BLOCK))  # A0 A1 A2 B0 B1 B2 and e
        R = np.empty(_NL_BLOCK)
        q = np.empty(_NL_BLOCK)
        state = np.zeros(_NL_BLOCK, np.int8)  # 0 active, 1 done, 2 failed
        steps = np.empty(_NL_BLOCK)
        exacts = np.empty(_NL_BLOCK, np.bool_)
        for k in range(nb):
            for j in range(n):
                T[j, k] = S[k0 + k, j]
            R[k] = R0[k0 + k]
            r2[k0 + k] = np.nan
            amp[k0 + k] = np.nan
            rss[k0 + k] = np.nan
            if not math.isfinite(R[k]):
                state[k] = 2
        if even:
            for k in range(nb):
                q[k] = math.exp(-R[k] * dt)
        for _ in range(max_iter):
            _block_moments(T, nb, R, q, t, even, mom)
            _block_newton(mom, nb, max_step, steps, exacts)
            if even:  # q = exp(-R dt) follows R without a library exp per voxel
                for k in range(nb):
                    q[k] *= _exp_small(-steps[k] * dt)
            n_active = 0
            for k in range(nb):
                if state[k] != 0:
                    continue
                step = steps[k]
                exact = exacts[k]
                if not math.isfinite(step):
                    state[k] = 2
                    continue
                R[k] += step
                if abs(step) <= (stol if exact else tol) * max(abs(R[k]), 1.0):
                    state[k] = 1
                    a0 = mom[0, k] - step * mom[1, k]
                    b0 = mom[3, k] - 2.0 * step * mom[4, k]
                    c = a0 / b0
                    ss = 0.0
                    for j in range(n):
                        ss += T[j, k] * T[j, k]
                    r2[k0 + k] = R[k]
                    amp[k0 + k] = c
                    rss[k0 + k] = max(ss - a0 * c, 0.0)
                else:
                    n_active += 1
            if n_active == 0:
                break


_INV_FACT = tuple(1.0 / math.factorial(i) for i in range(13))


@_jit()
def _exp_small(x):
    """exp(x) to double precision for |x| <= 1: Taylor series of exp(x/4), squared twice.

    Multiplications only, so loops over voxels vectorise (the library exp does not).
    """
    y = 0.25 * x
    p = _INV_FACT[12]
    p = p * y + _INV_FACT[11]
    p = p * y + _INV_FACT[10]
    p = p * y + _INV_FACT[9]
    p = p * y + _INV_FACT[8]
    p = p * y + _INV_FACT[7]
    p = p * y + _INV_FACT[6]
    p = p * y + _INV_FACT[5]
    p = p * y + _INV_FACT[4]
    p = p * y + _INV_FACT[3]
    p = p * y + _INV_FACT[2]
    p = p * y + 1.0
    p = p * y + 1.0
    p = p * p
    return p * p


@_jit()
def _block_newton(mom, nb, max_step, steps, exacts):
    """Safeguarded Newton step on ln(A0^2/B0) for nb voxels.

    Also returns whether it used the exact curvature (else Gauss-Newton); selects instead of
    branches, so the loop vectorises.
    """
    a0, a1, a2, b0, b1, b2 = mom[0], mom[1], mom[2], mom[3], mom[4], mom[5]
    for k in range(nb):
        m_a = a1[k] / a0[k]
        m_b = b1[k] / b0[k]
        v_b = b2[k] / b0[k] - m_b * m_b
        curv = 2.0 * (a2[k] / a0[k] - m_a * m_a) - 4.0 * v_b
        exact = curv < 0.0
        curv = curv if exact else -2.0 * v_b
        step = -2.0 * (m_b - m_a) / curv
        step = max_step if step > max_step else step
        step = -max_step if step < -max_step else step
        steps[k] = step
        exacts[k] = exact


@_jit(fastmath={"contract"})
def _block_moments(T, nb, R, q, t, even, mom):
    """Sums A0, A1, A2 of S e t^0..2 and B0, B1, B2 of e^2 t^0..2 for nb voxels at once.

    Evenly spaced echoes use ``q = exp(-R dt)``, kept up to date by the caller.
    """
    if not even:
        for k in range(nb):
            a0 = a1 = a2 = b0 = b1 = b2 = 0.0
            for j in range(T.shape[0]):
                tj = t[j]
                e = math.exp(-R[k] * tj)
                se = T[j, k] * e
                ee = e * e
                a0 += se
                a1 += tj * se
                a2 += tj * tj * se
                b0 += ee
                b1 += tj * ee
                b2 += tj * tj * ee
            mom[0, k], mom[1, k], mom[2, k] = a0, a1, a2
            mom[3, k], mom[4, k], mom[5, k] = b0, b1, b2
        return
    _even_moments(T, nb, q, t, mom[0], mom[1], mom[2], mom[3], mom[4], mom[5], mom[6])


@_jit(fastmath={"contract"})
def _even_moments(T, nb, q, t, a0, a1, a2, b0, b1, b2, e):
    """Moments with e_j = q^j (t_0 = 0): only multiplications, vectorised over voxels."""
    for k in range(nb):
        v = T[0, k]
        a0[k] = v
        a1[k] = 0.0
        a2[k] = 0.0
        b0[k] = 1.0
        b1[k] = 0.0
        b2[k] = 0.0
        e[k] = 1.0
    for j in range(1, T.shape[0]):
        tj = t[j]
        tj2 = tj * tj
        for k in range(nb):
            ek = e[k] * q[k]
            e[k] = ek
            se = T[j, k] * ek
            ee = ek * ek
            a0[k] += se
            a1[k] += tj * se
            a2[k] += tj2 * se
            b0[k] += ee
            b1[k] += tj * ee
            b2[k] += tj2 * ee


@_jit()
def bessel_ratio_scalar(x):
    """I1(x)/I0(x) for x >= 0; polynomial approximations (A&S 9.8.1-9.8.4), rel. error < 5e-7.

    Parameters
    ----------
    x : float
        The argument, >= 0.

    Returns
    -------
    float
        The ratio.
    """
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
    exact = hcc < 0.0 and det > 0.0
    if not exact:
        hcc, hcr, hrr = gcc, gcr, grr
        det = hcc * hrr - hcr * hcr
    dc = -(hrr * gc - hcr * gr) / det
    dr = -(hcc * gr - hcr * gc) / det
    if dr > max_step:
        dr = max_step
    elif dr < -max_step:
        dr = -max_step
    return dc, dr, exact


@_jit(parallel=True)
def rician_loop(S, R0, c0, t, even, dt, inv_var, max_iter, tol, r2, amp):
    """Rician maximum likelihood of c*exp(-R t) per row of S (m, n); writes R and c.

    Parameters
    ----------
    S : ndarray of shape (m, n)
        Magnitude signal per row.
    R0, c0 : ndarray of shape (m,)
        Starting R2* (s^-1) and amplitude.
    t : ndarray of shape (n,)
        Echo times in s.
    even : bool
        Whether the echoes are evenly spaced.
    dt : float
        Their spacing (s) when even.
    inv_var : float
        1 / sigma^2 of the noise.
    max_iter : int
        Most iterations.
    tol : float
        Relative step tolerance.
    r2, amp : ndarray of shape (m,)
        Outputs: R2* (s^-1) and amplitude.
    """
    m = S.shape[0]
    max_step = 2.0 / max(t[t.shape[0] - 1], 1e-6)
    stol = math.sqrt(tol)
    for i in numba.prange(m) if AVAILABLE else range(m):
        row = S[i]
        R = R0[i]
        c = c0[i]
        r2[i] = np.nan
        amp[i] = np.nan
        if not (math.isfinite(R) and math.isfinite(c) and c > 0.0):
            continue
        for _ in range(max_iter):
            dc, dr, exact = _rician_step(row, c, R, t, even, dt, inv_var, max_step)
            if not (math.isfinite(dc) and math.isfinite(dr)):
                break
            if c + dc <= 0.0:
                dc = -0.5 * c
            c += dc
            R += dr
            # an exact Newton step of relative size h leaves an error of order h^2
            thr = stol if exact else tol
            if abs(dr) <= thr * max(abs(R), 1.0) and abs(dc) <= thr * c:
                r2[i] = R
                amp[i] = c
                break


@_jit(parallel=True, fastmath={"contract", "reassoc", "arcp"})
def arlo_loop(S, exact, q_out, amp, rss):
    """ARLO per row of S (m, n), evenly spaced echoes (Pei et al. with erratum).

    Writes ``q = exp(-R2* dTE)`` (exact inversion of Simpson's rule, or ``exp(-3 kappa)`` for
    the published estimate), the least-squares amplitude at the first echo and the residual sum.

    Parameters
    ----------
    S : ndarray of shape (m, n)
        Magnitude signal per row.
    exact : bool
        Exact inversion of Simpson's rule.
    q_out, amp, rss : ndarray of shape (m,)
        Outputs: decay per spacing, amplitude, residual sum of squares.
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
    """Least-squares amplitude c of c*exp(-R t) for a known R per row; and the residual sum.

    Parameters
    ----------
    S : ndarray of shape (m, n)
        Magnitude signal per row.
    R : ndarray of shape (m,)
        R2* in s^-1.
    t : ndarray of shape (n,)
        Echo times in s.
    even : bool
        Whether the echoes are evenly spaced.
    dt : float
        Their spacing (s) when even.
    amp, rss : ndarray of shape (m,)
        Outputs: amplitude and residual sum of squares.
    """
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


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; the CPU count where that is unknown).

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def set_threads(n_jobs: int) -> int:
    """Set numba's thread count for the calling thread (capped by numba's maximum).

    Parameters
    ----------
    n_jobs : int
        Threads wanted.

    Returns
    -------
    int
        Threads set.
    """
    if not AVAILABLE:
        return 1
    n = max(1, min(int(n_jobs), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n
