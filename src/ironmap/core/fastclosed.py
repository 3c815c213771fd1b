"""Fused compiled kernels for the closed-form R2* estimators on float32 stacks.

Each plan (:func:`plan_two_echo`, :func:`plan_loglinear`, :func:`plan_arlo`) fits one chunk of
voxels in a few passes over cache-sized buffers and writes the maps in place: numpy's SIMD
``log``/``exp`` (numba's are scalar library calls, this llvmlite has no vector math library),
BLAS for the log-linear product, and numba loops for the rest, which also count the voxels
that fail the validity test. When none fails, the quality flags cost no further pass.
Loops read the (m, n) stack with a constant stride or in transposed blocks so that they
vectorise.
"""

from __future__ import annotations

import threading

import numpy as np

from ironmap.core.fastfit import AVAILABLE, numba

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


def _jit(func):
    if not AVAILABLE:  # pragma: no cover
        return func
    return numba.njit(cache=True, nogil=True, error_model="numpy")(func)


F = np.float32
_INF = F(np.inf)
_NAN = F(np.nan)
_ONE = F(1.0)
_ZERO = F(0.0)
_FLT_MAX = F(np.finfo(np.float32).max)
_LN2_HI = F(0.693359375)
_LN2_LO = F(-2.12194440e-4)
_LOG2E = F(1.44269504088896341)
_ROUND = F(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds to an integer
_ROUND_BITS = np.int32(_ROUND.view(np.int32))
_I23, _I127 = np.int32(23), np.int32(127)
_EXP_HI = F(88.0)
_EXP_LO = F(-87.0)
_E0, _E1, _E2, _E3, _E4, _E5 = (F(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))


@_jit
def exp32(x):
    """Exponential of a float32 (0 below -87, inf above 88, NaN for NaN); branch-free."""
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


@_jit
def _rms_residual(S, k, r, s, t):
    """RMS of S[k, j] - s * exp(-r * t_j) over the echoes (float32)."""
    acc = F(0.0)
    for j in range(S.shape[1]):
        d = s * exp32(-r * t[j]) - S[k, j]
        acc += d * d
    return np.sqrt(acc / F(S.shape[1]))


@_jit
def two_echo_ratio(flat, lo, ratio):
    """ratio = S_1 / S_2 for a C-ordered (m, 2) stack given as its flat view (2 m,).

    Returns the number of voxels whose signs rule out a fit (S_2 <= 0, or S_2 >= S_1 when
    lo < 0). The constant stride lets the compiler vectorise the loop.
    """
    nbad = 0
    neg_ok = lo < F(0.0)
    for k in range(ratio.shape[0]):
        a = flat[2 * k]
        b = flat[2 * k + 1]
        ratio[k] = a / b
        nbad += not ((b > F(0.0)) & ((b < a) | (not neg_ok)))
    return nbad


@_jit
def scale_range(r2, inv_dte, te_i, lo, hi, arg):
    """r2 *= inv_dte in place, arg = r2 * te_i; returns the voxels outside (lo, hi)."""
    nbad = 0
    for k in range(r2.shape[0]):
        r = r2[k] * inv_dte
        r2[k] = r
        arg[k] = r * te_i
        nbad += not ((r > lo) & (r < hi))
    return nbad


@_jit
def times_column(flat, n, col, s0):
    """s0 *= S[:, col] for a C-ordered (m, n) stack given as its flat view; returns the
    number of voxels whose S0 is not finite and positive."""
    nbad = 0
    if n == 2 and col == 0:  # constant stride: vectorised
        for k in range(s0.shape[0]):
            v = s0[k] * flat[2 * k]
            s0[k] = v
            nbad += not ((v > F(0.0)) & (v <= _FLT_MAX))
        return nbad
    for k in range(s0.shape[0]):
        v = s0[k] * flat[n * k + col]
        s0[k] = v
        nbad += not ((v > F(0.0)) & (v <= _FLT_MAX))
    return nbad


@_jit
def times_positive(s0, amp):
    """s0 *= amp; returns the number of voxels whose S0 is not finite and positive."""
    nbad = 0
    for k in range(s0.shape[0]):
        v = s0[k] * amp[k]
        s0[k] = v
        nbad += not ((v > F(0.0)) & (v <= _FLT_MAX))
    return nbad


_LN_S0_LO = F(-87.0)  # exp() of a value in (_LN_S0_LO, _LN_S0_HI) is a normal float32
_LN_S0_HI = F(88.0)
_RISE_MARGIN = F(-1e-4)  # ln(S_last / S_first) below this is a decay despite log rounding


@_jit
def loglinear_finish(coef, r2, s0, lo, hi):
    """r2 = -coef[:, 0], s0 = coef[:, 1] (ln S0, to be exponentiated) from (m, 3) coefficients
    whose third column is ln S_last - ln S_first; returns the voxels that may have failed.

    A voxel passes when lo < R2* < hi, S0 will be a normal float32 and the last echo is below
    the first by more than log rounding; any other voxel is counted, and the caller's full
    test decides. The constant stride lets the compiler vectorise the loop.
    """
    flat = coef.ravel()
    nbad = 0
    for k in range(r2.shape[0]):
        r = -flat[3 * k]
        c = flat[3 * k + 1]
        r2[k] = r
        s0[k] = c
        nbad += not ((r > lo) & (r < hi) & (c > _LN_S0_LO) & (c < _LN_S0_HI)
                     & (flat[3 * k + 2] < _RISE_MARGIN))
    return nbad


@_jit
def rms_residual(S, r2, s0, t, rm):
    """rm = RMS over echoes of S - s0 exp(-r2 t) per row (float32)."""
    for k in range(S.shape[0]):
        rm[k] = _rms_residual(S, k, r2[k], s0[k], t)


_BLOCK = 256


@_jit
def arlo_block(S, exact, want_rmse, q, amp, rm):
    """ARLO decay factor q = exp(-R2* dTE), least-squares amplitude and RMSE per row of S.

    Returns the number of rows whose last echo is not below the first.

    kappa = (sum d^2 + sum s d) / (sum s^2 + sum s d) with s_j = S_j + 4 S_j+1 + S_j+2 and
    d_j = S_j - S_j+2 (Pei et al. 2015, with erratum). ``exact``: q inverts Simpson's rule for
    an exponential, q = (sqrt(3 kappa^2 + 1) - 2 kappa) / (kappa + 1); else the published
    R2* dTE = 3 kappa, q = exp(-3 kappa). Rows are transposed in blocks so that every loop
    runs over voxels and vectorises.
    """
    m, n = S.shape
    T = np.empty((n, _BLOCK), F)
    ss = np.empty(_BLOCK, F)
    sd = np.empty(_BLOCK, F)
    dd = np.empty(_BLOCK, F)
    a0 = np.empty(_BLOCK, F)
    b0 = np.empty(_BLOCK, F)
    e = np.empty(_BLOCK, F)
    n_rising = 0
    for k0 in range(0, m, _BLOCK):
        nb = min(_BLOCK, m - k0)
        for j in range(n):
            for k in range(nb):
                T[j, k] = S[k0 + k, j]
        ss[:] = 0.0
        sd[:] = 0.0
        dd[:] = 0.0
        for j in range(n - 2):
            for k in range(nb):
                s = T[j, k] + F(4.0) * T[j + 1, k] + T[j + 2, k]
                d = T[j, k] - T[j + 2, k]
                ss[k] += s * s
                sd[k] += s * d
                dd[k] += d * d
        for k in range(nb):
            kappa = (dd[k] + sd[k]) / (ss[k] + sd[k])
            if exact:
                q[k0 + k] = (np.sqrt(F(3.0) * kappa * kappa + _ONE) - F(2.0) * kappa) / (
                    kappa + _ONE)
            else:
                q[k0 + k] = exp32(F(-3.0) * kappa)
        _block_amplitude(T, nb, q[k0:k0 + nb], a0, b0, e, amp[k0:k0 + nb])
        if want_rmse:
            _block_rmse(T, nb, q[k0:k0 + nb], amp[k0:k0 + nb], e, a0, rm[k0:k0 + nb])
        for k in range(nb):
            n_rising += not (T[n - 1, k] < T[0, k])
    return n_rising


@_jit
def _block_amplitude(T, nb, q, a0, b0, e, amp):
    """amp = sum_j T_j q^j / sum_j q^2j for the first nb columns of T (n, block)."""
    for k in range(nb):
        a0[k] = T[0, k]
        b0[k] = _ONE
        e[k] = _ONE
    for j in range(1, T.shape[0]):
        for k in range(nb):
            ek = e[k] * q[k]
            e[k] = ek
            a0[k] += T[j, k] * ek
            b0[k] += ek * ek
    for k in range(nb):
        amp[k] = a0[k] / b0[k]


@_jit
def _block_rmse(T, nb, q, amp, e, acc, rm):
    """rm = RMS over j of T_j - amp q^j (direct sum; sum S^2 - A0 c cancels in float32)."""
    for k in range(nb):
        e[k] = amp[k]
        acc[k] = F(0.0)
    for j in range(T.shape[0]):
        for k in range(nb):
            dv = T[j, k] - e[k]
            acc[k] += dv * dv
            e[k] *= q[k]
    for k in range(nb):
        rm[k] = np.sqrt(acc[k] / F(T.shape[0]))


def plan_arlo(te, simpson_exact, r2star_range, want_rmse):
    """Fused ARLO fit of C-ordered float32 rows (m, n), evenly spaced echoes."""
    lo, hi = (F(v) for v in r2star_range)
    dte = float(np.mean(np.diff(te)))
    neg_inv_dte, te0 = F(-1.0 / dte), F(te[0])
    exact = bool(simpson_exact)
    buffers = {}

    def run(rows, out):
        r2, s0, rm = out
        m = rows.shape[0]
        key = threading.get_ident()
        if key not in buffers or buffers[key].shape[0] < m:
            buffers[key] = np.empty(m, F)
        amp = buffers[key][:m]
        nbad = arlo_block(rows, exact, bool(want_rmse), r2, amp, rm if want_rmse else amp)
        np.log(r2, out=r2)
        nbad += scale_range(r2, neg_inv_dte, te0, lo, hi, s0)
        np.exp(s0, out=s0)
        return nbad + times_positive(s0, amp)

    return run


def plan_two_echo(te, pair, r2star_range, want_rmse):
    """Fused two-point fit of C-ordered float32 rows (m, n); a function of (rows, out).

    ``out`` = (r2star, s0, rmse or None) chunk arrays that are written in place; the function
    returns a positive number when some voxel may have failed (0: every voxel passed).
    """
    i, j = pair
    lo, hi = (F(v) for v in r2star_range)
    inv_dte, te_i, t = F(1.0 / (te[j] - te[i])), F(te[i]), te.astype(F)

    def run(rows, out):
        r2, s0, rm = out
        n = rows.shape[1]
        flat = rows.reshape(-1)
        if n == 2:
            nbad = two_echo_ratio(flat, lo, r2)
        else:  # signs are checked by the caller's full validity test
            np.divide(rows[:, i], rows[:, j], out=r2)
            nbad = 1
        np.log(r2, out=r2)
        nbad += scale_range(r2, inv_dte, te_i, lo, hi, s0)
        np.exp(s0, out=s0)
        nbad += times_column(flat, n, i, s0)
        if want_rmse:
            rms_residual(rows, r2, s0, t, rm)
        return nbad

    return run


def plan_loglinear(te, weights, r2star_range, want_rmse):
    """Fused log-linear fit: one ``np.log`` pass and one (m, n) @ (n, 2) product per chunk."""
    lo, hi = (F(v) for v in r2star_range)
    rise = np.zeros(te.size)
    rise[0], rise[-1] = -1.0, 1.0
    w = np.ascontiguousarray(np.column_stack([weights, rise]), dtype=F)
    t = te.astype(F)
    buffers = {}

    def run(rows, out):
        r2, s0, rm = out
        m, n = rows.shape
        key = (threading.get_ident(), n)
        if key not in buffers or buffers[key][0].shape[0] < m:
            buffers[key] = (np.empty((m, n), F), np.empty((m, 3), F))
        logs, coef = (b[:m] for b in buffers[key])
        np.log(rows, out=logs)
        np.matmul(logs, w, out=coef)
        nbad = loglinear_finish(coef, r2, s0, lo, hi)
        np.exp(s0, out=s0)
        if want_rmse:
            rms_residual(rows, r2, s0, t, rm)
        return nbad

    return run
