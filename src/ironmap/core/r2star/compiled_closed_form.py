"""Fused compiled kernels for the closed-form R2* estimators.

One kernel per estimator and echo count fits a (m, n) voxel-major float32 or float64 stack in
blocks of :data:`BLOCK` voxels and writes R2*, S0 and (when asked) the RMS residual in place,
in one pass over the stack: the residuals of a block are summed while its samples are still in
cache. Samples are rounded to float32 as they are read, and the arithmetic is float32. The
echo count (and, for the two-point form, the echo pair) is a compile-time constant of each
kernel (:func:`two_point_kernel`, :func:`loglinear_kernel`, :func:`wls_kernel`,
:func:`arlo_kernel`, built once per shape and input dtype and cached on disk), so the
per-voxel loops over echoes unroll and the compiler vectorises across voxels with
de-interleaving loads. Logarithm and exponential are branch-free float32 polynomials
(:func:`log32`, :func:`exp32`; numba's own ``log``/``exp`` are scalar library calls, this
llvmlite has no vector math library). Each kernel also marks the blocks that may hold failed
voxels, so the caller runs its full validity test only on those blocks.
:func:`run_plan` splits the blocks over threads (the kernels release the GIL).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ironmap.core.r2star.compiled_iterative import AVAILABLE, numba

if AVAILABLE:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _f2i(typingctx, x):
        """Bit pattern of a float32 as int32."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.int32(types.float32), codegen

    @intrinsic
    def _i2f(typingctx, x):
        """int32 bit pattern as float32."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.int32), codegen
else:  # pragma: no cover
    def _f2i(x):
        return np.float32(x).view(np.int32)

    def _i2f(x):
        return np.int32(x).view(np.float32)


def _inline(func):
    """Compile ``func`` to be inlined into the kernels (still callable from Python)."""
    if not AVAILABLE:  # pragma: no cover
        return func
    return numba.njit(inline="always", error_model="numpy")(func)


def _kernel_jit(func):
    if not AVAILABLE:  # pragma: no cover
        return func
    return numba.njit(cache=True, nogil=True, error_model="numpy",
                      fastmath={"contract"})(func)


F = np.float32
_INF = F(np.inf)
_NAN = F(np.nan)
_ONE = F(1.0)
_ZERO = F(0.0)
_FLT_MAX = F(np.finfo(np.float32).max)
_LN2_HI = F(0.693359375)
_LN2_LO = F(-2.12194440e-4)
_LN2 = F(0.69314718055994531)
_LOG2E = F(1.44269504088896341)
_ROUND = F(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds to an integer
_ROUND_BITS = np.int32(_ROUND.view(np.int32))
_I23, _I127 = np.int32(23), np.int32(127)
_EXP_HI = F(88.0)
_EXP_LO = F(-87.0)
_E0, _E1, _E2, _E3, _E4, _E5 = (F(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))
_SQRT_HALF_BITS = np.int32(0x3F3504F3)  # float32 bits of sqrt(1/2)
_MANTISSA = np.int32(0x007FFFFF)
#: ln(1 + f) = f - f^2/2 + f^3 P(f) on f in [sqrt(1/2) - 1, sqrt(2) - 1): P of degree 6, fitted
#: at Chebyshev nodes; the float32 result is within 7.3e-8 of ln(1 + f) (about 1 ulp).
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (F(c) for c in (
    0.09272216, -0.14118426, 0.14676397, -0.16592856, 0.19985127, -0.2500092, 0.3333341))


@_inline
def exp32(x):
    """Exponential of a float32 (0 below -87, inf above 88, NaN for NaN); branch-free.

    Parameters
    ----------
    x : float32
        The argument.

    Returns
    -------
    float32
        exp(x).
    """
    xc = x if x > _EXP_LO else _EXP_LO
    xc = xc if xc < _EXP_HI else _EXP_HI
    fx = (xc * _LOG2E + _ROUND) - _ROUND
    r = xc - fx * _LN2_HI - fx * _LN2_LO
    z = r * r
    y = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * z + r + _ONE
    y *= _i2f((_f2i(fx + _ROUND) - _ROUND_BITS + _I127) << _I23)
    y = _INF if x > _EXP_HI else y
    y = _ZERO if x < _EXP_LO else y
    return y if x == x else x


@_inline
def log32(x):
    """Natural logarithm of a float32; NaN for x <= 0, +inf and NaN (no value); branch-free.

    x = 2^e (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)) by integer arithmetic on the bits, then
    ln x = e ln 2 + ln(1 + f) by a polynomial. Normal numbers only: subnormal inputs
    (< 1.2e-38) come out near -88 instead of their true logarithm.

    Parameters
    ----------
    x : float32
        The argument.

    Returns
    -------
    float32
        ln(x).
    """
    b = _f2i(x) - _SQRT_HALF_BITS
    e = b >> _I23
    f = _i2f((b & _MANTISSA) + _SQRT_HALF_BITS) - _ONE
    z = f * f
    p = ((_P0 * f + _P1) * z + (_P2 * f + _P3)) * z + (_P4 * f + _P5)
    p = p * f + _P6
    y = F(e) * _LN2 + (f + z * (p * f - F(0.5)))
    return y if (x > _ZERO) & (x < _INF) else _NAN


#: Voxels per block: the unit of the validity counts and of the work split between threads.
BLOCK = 2048

_LN_S0_LO = F(-87.0)  # exp() of a value in (_LN_S0_LO, _LN_S0_HI) is a normal float32
_LN_S0_HI = F(88.0)
_RISE_MARGIN = F(-1e-4)  # ln(S_last / S_first) below this is a decay despite log rounding


@_inline
def _block(flat, n, m, b):
    """First voxel, voxel count and rows (flat view) of block ``b`` of an (m, n) stack."""
    k0 = b * BLOCK
    nb = min(BLOCK, m - k0)
    return k0, nb, flat[n * k0:n * (k0 + nb)]


@_inline
def _block_rmse(src, n, nb, rr, ss, trel, t0, dt, out):
    """RMS over the n echoes of S - S0 e^(-R2* TE) for the nb voxels of a block.

    From their R2* and S0 in ``rr`` and ``ss``; with evenly spaced echoes (``dt`` > 0) the decay
    factors follow e^(-R2* TE_j) = e^(-R2* TE_1) q^j with q = e^(-R2* dt): two exponentials per
    voxel.
    """
    inv_n = _ONE / F(n)
    if dt > _ZERO:
        for k in range(nb):
            r = F(rr[k])
            e = F(ss[k]) * exp32(-r * t0)
            q = exp32(-r * dt)
            acc = _ZERO
            for jj in range(n):
                d = e - F(src[n * k + jj])
                acc += d * d
                e *= q
            out[k] = np.sqrt(acc * inv_n)
    else:
        for k in range(nb):
            r = F(rr[k])
            a = F(ss[k]) * exp32(-r * t0)
            acc = _ZERO
            for jj in range(n):
                d = a * exp32(-r * trel[jj]) - F(src[n * k + jj])
                acc += d * d
            out[k] = np.sqrt(acc * inv_n)


@_inline
def _log_fit_ok(r, ln_s0, ln_first, ln_last, lo, hi):
    """A log-domain fit is certainly valid: R2* in range, S0 a normal float32, decay."""
    return ((r > lo) & (r < hi) & (ln_s0 > _LN_S0_LO) & (ln_s0 < _LN_S0_HI)
            & (ln_last - ln_first < _RISE_MARGIN))


@_inline
def _log_fit_finish(src, n, nb, rr, ss, want, trel, t0, dt, out):
    """S0 = exp(ln S0) in place, then the block's RMS residuals when wanted."""
    for k in range(nb):
        ss[k] = exp32(F(ss[k]))
    if want:
        _block_rmse(src, n, nb, rr, ss, trel, t0, dt, out)


@functools.cache
def two_point_kernel(n: int, i: int, j: int):
    """Kernel for R2* = ln(S_i / S_j) / (TE_j - TE_i), S0 = S_i exp(R2* TE_i) on rows of n.

    ``kernel(flat, inv_dte, te_i, lo, hi, r2, s0, rmse, trel, t0, dt, nbad, b0, b1)`` fits
    blocks ``b0..b1-1`` of the flat (m * n,) stack (float32 or float64, read as float32);
    ``rmse`` of size 0 skips the residual map; ``trel``, ``t0``, ``dt``: echo times relative to
    the first, the first, and the even spacing (0 when uneven), float32 s; ``nbad[b]`` is 1
    where block b may hold failed voxels, else 0 (an OR over the block: cheaper than a count).

    Parameters
    ----------
    n : int
        Echoes per row.
    i, j : int
        The two echoes.

    Returns
    -------
    callable
        The compiled kernel (cached per argument set).
    """
    @_kernel_jit
    def kernel(flat, inv_dte, te_i, lo, hi, r2, s0, rmse, trel, t0, dt, nbad, b0, b1):
        m = r2.shape[0]
        want = rmse.shape[0] > 0
        lo = lo if lo > _ZERO else _ZERO  # decay must be positive
        for b in range(b0, b1):
            k0, nb, src = _block(flat, n, m, b)
            rr = r2[k0:k0 + nb]
            ss = s0[k0:k0 + nb]
            bad = False
            for k in range(nb):  # one loop: faster than a separate de-interleaving loop
                x = F(src[n * k + i])
                r = log32(x / F(src[n * k + j])) * inv_dte
                s = x * exp32(r * te_i)
                rr[k] = r
                ss[k] = s
                bad |= not ((r > lo) & (r < hi) & (s > _ZERO) & (s <= _FLT_MAX))
            if want:
                if n == 2:  # exactly determined: the curve passes through both samples
                    rmse[k0:k0 + nb] = _ZERO
                else:
                    _block_rmse(src, n, nb, rr, ss, trel, t0, dt, rmse[k0:k0 + nb])
            nbad[b] = bad

    return kernel


@functools.cache
def loglinear_kernel(n: int):
    """Kernel for least squares on ln S with fixed weights.

    ln S @ (w_slope, w_icpt) = (-R2*, ln S0); arguments as :func:`two_point_kernel` with (w_slope,
    w_icpt) as the two parameters (float32 arrays of n).

    Parameters
    ----------
    n : int
        Echoes per row.

    Returns
    -------
    callable
        The compiled kernel (cached per argument set).
    """
    @_kernel_jit
    def kernel(flat, w_slope, w_icpt, lo, hi, r2, s0, rmse, trel, t0, dt, nbad, b0, b1):
        m = r2.shape[0]
        want = rmse.shape[0] > 0
        logs = np.empty(n * BLOCK, F)
        for b in range(b0, b1):
            k0, nb, src = _block(flat, n, m, b)
            for q in range(n * nb):
                logs[q] = log32(F(src[q]))
            rr = r2[k0:k0 + nb]
            ss = s0[k0:k0 + nb]
            bad = False
            for k in range(nb):
                slope = _ZERO
                icpt = _ZERO
                for jj in range(n):
                    v = logs[n * k + jj]
                    slope += w_slope[jj] * v
                    icpt += w_icpt[jj] * v
                rr[k] = -slope
                ss[k] = icpt
                bad |= not _log_fit_ok(-slope, icpt, logs[n * k], logs[n * k + n - 1], lo, hi)
            _log_fit_finish(src, n, nb, rr, ss, want, trel, t0, dt, rmse[k0:k0 + nb])
            nbad[b] = bad

    return kernel


@functools.cache
def wls_kernel(n: int):
    """Kernel for least squares on ln S with weights S^2 (the measured signal), per voxel.

    One parameter: the echo times ``t`` (float32 array of n, s). The weighted line through
    (t_j, ln S_j) is solved about the weighted mean echo time, which keeps float32 sums
    well conditioned: slope = sum w (t - t_w)(y - y_w) / sum w (t - t_w)^2.

    Parameters
    ----------
    n : int
        Echoes per row.

    Returns
    -------
    callable
        The compiled kernel (cached per argument set).
    """
    @_kernel_jit
    def kernel(flat, t, lo, hi, r2, s0, rmse, trel, t0, dt, nbad, b0, b1):
        m = r2.shape[0]
        want = rmse.shape[0] > 0
        logs = np.empty(n * BLOCK, F)
        wts = np.empty(n * BLOCK, F)
        for b in range(b0, b1):
            k0, nb, src = _block(flat, n, m, b)
            for q in range(n * nb):
                x = F(src[q])
                logs[q] = log32(x)
                wts[q] = x * x
            rr = r2[k0:k0 + nb]
            ss = s0[k0:k0 + nb]
            bad = False
            for k in range(nb):
                sw = _ZERO
                swt = _ZERO
                swy = _ZERO
                for jj in range(n):
                    w = wts[n * k + jj]
                    sw += w
                    swt += w * t[jj]
                    swy += w * logs[n * k + jj]
                tw = swt / sw
                yw = swy / sw
                sxx = _ZERO
                sxy = _ZERO
                for jj in range(n):
                    w = wts[n * k + jj]
                    dtj = t[jj] - tw
                    sxx += w * dtj * dtj
                    sxy += w * dtj * (logs[n * k + jj] - yw)
                r = -(sxy / sxx)
                icpt = yw + r * tw  # ln S0
                rr[k] = r
                ss[k] = icpt
                bad |= not _log_fit_ok(r, icpt, logs[n * k], logs[n * k + n - 1], lo, hi)
            _log_fit_finish(src, n, nb, rr, ss, want, trel, t0, dt, rmse[k0:k0 + nb])
            nbad[b] = bad

    return kernel


@functools.cache
def arlo_kernel(n: int, exact: bool):
    """Kernel for ARLO on n evenly spaced echoes; parameters (-1/dTE, TE_1).

    kappa = (sum d^2 + sum s d) / (sum s^2 + sum s d) with s_j = S_j + 4 S_j+1 + S_j+2 and
    d_j = S_j - S_j+2 (Pei et al. 2015, with erratum). ``exact``: the decay factor per echo
    spacing q = exp(-R2* dTE) inverts Simpson's rule for an exponential,
    q = (sqrt(3 kappa^2 + 1) - 2 kappa) / (kappa + 1); else the published R2* dTE = 3 kappa.
    S0 is the least-squares amplitude sum_j S_j q^j / sum_j q^2j carried back to TE = 0.

    Parameters
    ----------
    n : int
        Echoes per row.
    exact : bool
        Exact inversion of Simpson's rule.

    Returns
    -------
    callable
        The compiled kernel (cached per argument set).
    """
    @_kernel_jit
    def kernel(flat, neg_inv_dte, te0, lo, hi, r2, s0, rmse, trel, t0, dt, nbad, b0, b1):
        m = r2.shape[0]
        want = rmse.shape[0] > 0
        for b in range(b0, b1):
            k0, nb, src = _block(flat, n, m, b)
            qv = r2[k0:k0 + nb]
            amp = s0[k0:k0 + nb]
            bad = False
            for k in range(nb):
                s_s = _ZERO
                s_d = _ZERO
                d_d = _ZERO
                for jj in range(n - 2):
                    x = F(src[n * k + jj])
                    z = F(src[n * k + jj + 2])
                    s = x + F(4.0) * F(src[n * k + jj + 1]) + z
                    d = x - z
                    s_s += s * s
                    s_d += s * d
                    d_d += d * d
                kappa = (d_d + s_d) / (s_s + s_d)
                if exact:
                    q = (np.sqrt(F(3.0) * kappa * kappa + _ONE) - F(2.0) * kappa) / (
                        kappa + _ONE)
                else:
                    q = exp32(F(-3.0) * kappa)
                e = _ONE
                num = F(src[n * k])
                den = _ONE
                for jj in range(1, n):
                    e *= q
                    num += F(src[n * k + jj]) * e
                    den += e * e
                qv[k] = q
                amp[k] = num / den
                bad |= not (F(src[n * k + n - 1]) < F(src[n * k]))
            for k in range(nb):
                r = log32(F(qv[k])) * neg_inv_dte
                s = F(amp[k]) * exp32(r * te0)
                qv[k] = r
                amp[k] = s
                bad |= not ((r > lo) & (r < hi) & (s > _ZERO) & (s <= _FLT_MAX))
            if want:
                _block_rmse(src, n, nb, qv, amp, trel, t0, dt, rmse[k0:k0 + nb])
            nbad[b] = bad

    return kernel


@dataclass(frozen=True)
class ClosedFormPlan:
    """A fused closed-form fit: kernel, its parameters, the R2* range and echo times.

    ``used`` names the first and last echo the estimator reads (for the caller's validity
    test).
    """

    kernel: object
    params: tuple
    r2star_range: tuple[float, float]
    echo_times: np.ndarray  # float32, s
    used: tuple[int, int]


def _plan(kernel, params, te, r2star_range, used) -> ClosedFormPlan:
    return ClosedFormPlan(kernel, params, r2star_range, np.asarray(te, dtype=F),
                          (int(used[0]), int(used[1])))


def plan_two_point(te, pair, r2star_range) -> ClosedFormPlan:
    """Plan of the two-point form on echoes ``pair``.

    Parameters
    ----------
    te : ndarray of shape (n,)
        Echo times in s.
    pair : tuple of int
        The two echoes.
    r2star_range : (float, float)
        Valid R2* range in s^-1.

    Returns
    -------
    ClosedFormPlan
        Kernel, parameters, range and echo times.
    """
    i, j = pair
    params = (F(1.0 / (te[j] - te[i])), F(te[i]))
    return _plan(two_point_kernel(int(te.size), int(i), int(j)), params, te, r2star_range,
                 (i, j))


def plan_loglinear(te, weights, r2star_range) -> ClosedFormPlan:
    """Plan of a log-linear fit with weights: ln S @ weights = (-R2*, ln S0).

    Parameters
    ----------
    te : ndarray of shape (n,)
        Echo times in s.
    weights : ndarray of shape (n, 2)
        Least-squares weights of slope and intercept.
    r2star_range : (float, float)
        Valid R2* range in s^-1.

    Returns
    -------
    ClosedFormPlan
        Kernel, parameters, range and echo times.
    """
    w = np.asarray(weights, dtype=F)
    params = (np.ascontiguousarray(w[:, 0]), np.ascontiguousarray(w[:, 1]))
    return _plan(loglinear_kernel(int(te.size)), params, te, r2star_range, (0, te.size - 1))


def plan_wls(te, r2star_range) -> ClosedFormPlan:
    """Plan of the log-linear fit weighted by S^2.

    Parameters
    ----------
    te : ndarray of shape (n,)
        Echo times in s.
    r2star_range : (float, float)
        Valid R2* range in s^-1.

    Returns
    -------
    ClosedFormPlan
        Kernel, parameters, range and echo times.
    """
    params = (np.asarray(te, dtype=F),)
    return _plan(wls_kernel(int(te.size)), params, te, r2star_range, (0, te.size - 1))


def plan_arlo(te, simpson_exact, r2star_range) -> ClosedFormPlan:
    """Plan of ARLO on evenly spaced echoes.

    Parameters
    ----------
    te : ndarray of shape (n,)
        Echo times in s, evenly spaced.
    simpson_exact : bool
        Invert Simpson's rule exactly (else the published R2* dTE = 3 kappa).
    r2star_range : (float, float)
        Valid R2* range in s^-1.

    Returns
    -------
    ClosedFormPlan
        Kernel, parameters, range and echo times.
    """
    dte = float(np.mean(np.diff(te)))
    params = (F(-1.0 / dte), F(te[0]))
    return _plan(arlo_kernel(int(te.size), bool(simpson_exact)), params, te, r2star_range,
                 (0, te.size - 1))


def n_blocks(n_voxels: int) -> int:
    """Number of :data:`BLOCK`-voxel blocks covering ``n_voxels``.

    Parameters
    ----------
    n_voxels : int
        Voxels.

    Returns
    -------
    int
        Blocks (the last may be partial).
    """
    return (int(n_voxels) + BLOCK - 1) // BLOCK


def _timing(te: np.ndarray) -> tuple[np.ndarray, np.float32, np.float32]:
    """Echo times relative to the first, the first, and the spacing when even (else 0)."""
    te = np.asarray(te, dtype=np.float64)
    d = np.diff(te)
    even = d.size > 0 and np.ptp(d) <= 1e-6 * d.mean()
    return (np.asarray(te - te[0], dtype=F), F(te[0]),
            F(d.mean()) if even else F(0.0))


def run_plan(plan: ClosedFormPlan, rows: np.ndarray, r2: np.ndarray, s0: np.ndarray,
             rmse: np.ndarray | None = None, n_jobs: int = 1) -> np.ndarray:
    """Fit C-contiguous rows (m, n) into r2, s0 (and rmse), each of shape (m,), in one pass.

    ``rows`` may be float32 or float64: each sample is rounded to float32 as it is read and
    the fit runs in float32 arithmetic; the maps take the dtype of the arrays passed in.
    Returns, per block of :data:`BLOCK` voxels, 1 where the block may hold failed voxels and 0
    where it holds only valid fits. ``n_jobs`` threads share the blocks.

    Parameters
    ----------
    plan : ClosedFormPlan
        The fit.
    rows : ndarray of shape (m, n)
        Magnitude signal, C-contiguous.
    r2, s0 : ndarray of shape (m,)
        Output R2* (s^-1) and S0.
    rmse : ndarray of shape (m,), optional
        Output RMS residual.
    n_jobs : int, optional
        Threads.

    Returns
    -------
    ndarray of shape (n_blocks,)
        1 where a block may hold failed voxels, else 0.
    """
    m = rows.shape[0]
    nblk = n_blocks(m)
    nbad = np.zeros(nblk, dtype=np.int64)
    if m == 0:
        return nbad
    flat = rows.reshape(-1)
    lo, hi = (F(v) for v in plan.r2star_range)
    if rmse is None:
        rmse = np.empty(0, dtype=r2.dtype)
    args = (flat, *plan.params, lo, hi, r2, s0, rmse, *_timing(plan.echo_times), nbad)
    _each(lambda part: plan.kernel(*args, *part), _split(nblk, n_jobs))
    return nbad


def _split(nblk: int, n_jobs: int) -> list[tuple[int, int]]:
    k = max(1, min(int(n_jobs), nblk))
    edges = np.linspace(0, nblk, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _each(func, parts) -> None:
    """``func(part)`` for every part.

    The first in the calling thread, the others in pool threads (a pool of that size is made on
    first use and kept: starting threads costs about as much as fitting a quarter of a brain).
    """
    if len(parts) > 1:
        pool = _POOLS.get(len(parts) - 1)
        if pool is None:
            pool = _POOLS.setdefault(len(parts) - 1, ThreadPoolExecutor(
                max_workers=len(parts) - 1, thread_name_prefix="ironmap-r2star"))
        futures = [pool.submit(func, part) for part in parts[1:]]
    func(parts[0])
    if len(parts) > 1:
        for f in futures:
            f.result()
