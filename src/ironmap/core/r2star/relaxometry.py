"""R2* estimators for multi-echo gradient-echo magnitude data: S(TE) = S0 * exp(-R2* * TE).

All estimators take magnitude stacks of shape ``(..., n_echoes)`` and echo times in seconds and
return an :class:`~ironmap._types.R2starFit` (R2* in s^-1, S0, RMSE, quality flags). Voxels are
processed in chunks, so the extra memory is a few chunk-sized buffers plus the output maps.

Estimators (``method=``):

``"two_point"``
    Closed form from two echoes i < j: R2* = ln(S_i / S_j) / (TE_j - TE_i). Default pair: the
    first two echoes (``echo_pair=(0, 1)``). Default of ``"auto"`` for two echoes.
``"loglinear"``
    Ordinary least squares on ln S.
``"wls"``
    Least squares on ln S weighted by S^2 (the measured signal), as hMRI's default WLS.
``"nonlinear"``
    Least squares on S itself, vectorised over voxels (variable projection + safeguarded Newton,
    started from the log-linear fit). Default of ``"auto"`` for three or more echoes.
``"rician"``
    Maximum likelihood under Rician noise (noise-floor aware) with a known or estimated sigma.
``"arlo"``
    Auto-Regression on Linear Operations (Pei et al., MRM 2015) for >= 3 evenly spaced echoes.

The estimators are listed once, in :data:`ironmap.core.r2star.estimators.ESTIMATORS` (names,
descriptions, options, citations, echo requirements); :func:`fit_r2star` dispatches through
that table to the ``setup_*`` functions below.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ironmap._types import R2starFit
from ironmap.core.r2star import compiled_closed_form as fastclosed
from ironmap.core.r2star import compiled_iterative, estimators
from ironmap.core.r2star.arlo import arlo_evenly_spaced, check_even_spacing, kernel_arlo
from ironmap.core.r2star.fit_flags import (  # noqa: F401  (re-exported flag constants)
    FLAG_FIT_FAILED,
    FLAG_LATE_ECHO_FLOOR,
    FLAG_NOISE_FLOOR,
    FLAG_NONFINITE,
    FLAG_NONPOSITIVE,
    FLAG_OUT_OF_RANGE,
    FLAG_OUTSIDE_MASK,
    FLAG_RISING,
    FLAGS_INVALID,
    FLAGS_WARNING,
    classify_invalid,
    describe_flags,
)
from ironmap.core.r2star.iterative import kernel_nonlinear, kernel_rician
from ironmap.units import MAX_PLAUSIBLE_TE_S

#: Every ``method=`` value, from the table in :mod:`ironmap.core.r2star.estimators`.
METHODS = estimators.method_names()

#: Default open interval of accepted R2* values (s^-1): decay must be positive; above 1000 s^-1
#: (T2* < 1 ms) no GRE echo train used for brain iron can measure it.
DEFAULT_R2STAR_RANGE = (0.0, 1000.0)

#: Voxels per chunk of the iterative fits; the numpy closed forms use about 2**19 samples per
#: chunk.
DEFAULT_CHUNK = 65536

#: Voxels per chunk of the fused closed forms when the stack cannot be fitted in place (a mask,
#: echoes out of order or an echo-major stack): each chunk is gathered into a contiguous copy.
FUSED_CHUNK = 2**18


#: Kernels that run compiled loops (threads inside, one chunk at a time).
_ITERATIVE = (kernel_nonlinear, kernel_rician, kernel_arlo)


class EchoTimeError(ValueError):
    """Echo times that cannot be used (too few, duplicated, non-finite, milliseconds...)."""


def check_echo_times(echo_times, n_echoes: int | None = None) -> np.ndarray:
    """Validate echo times in seconds; return them as float64.

    Parameters
    ----------
    echo_times : array-like of shape (n_echoes,)
        Echo times in s.
    n_echoes : int, optional
        Echoes in the data, when known.

    Returns
    -------
    ndarray of float64, shape (n_echoes,)
        The echo times.

    Raises
    ------
    EchoTimeError
        Fewer than two echoes, a count that does not match the data, non-finite or negative
        values, duplicates, or values that look like milliseconds (any > 0.5 s).
    """
    te = np.atleast_1d(np.asarray(echo_times, dtype=np.float64))
    if te.ndim != 1:
        raise EchoTimeError(f"echo times must be a 1-D sequence, got shape {te.shape}")
    if te.size < 2:
        raise EchoTimeError(f"R2* needs at least two echoes, got {te.size}")
    if n_echoes is not None and te.size != n_echoes:
        raise EchoTimeError(f"{te.size} echo times given for {n_echoes} echoes")
    if not np.all(np.isfinite(te)) or np.any(te < 0):
        raise EchoTimeError(f"echo times must be finite and >= 0 s, got {te.tolist()}")
    if np.any(te > MAX_PLAUSIBLE_TE_S):
        raise EchoTimeError(
            f"echo times {te.tolist()} look like milliseconds; give them in seconds "
            f"(e.g. {(te / 1000).tolist()})")
    if np.unique(te).size != te.size:
        raise EchoTimeError(f"duplicate echo times: {te.tolist()}")
    return te


def fit_r2star(echoes, echo_times, method: str = "auto", *, mask=None,
               r2star_range=DEFAULT_R2STAR_RANGE, sigma=None, floor_snr: float = 3.0,
               rmse: bool = True, chunk_size: int | None = None, n_jobs: int | None = None,
               **options) -> R2starFit:
    """Fit S(TE) = S0 * exp(-R2* * TE) in every voxel.

    Parameters
    ----------
    echoes : array_like of shape (..., n_echoes)
        Magnitude signal, any real dtype. The maps are float64 for float64 input and float32
        otherwise. With numba (a dependency), the closed forms (``two_point``, ``loglinear``,
        ``wls``, ``arlo`` on even echoes) read float32 or float64 samples directly, round
        each to float32 and compute in float32 (relative error of R2* and S0 about 1e-6, far
        below the noise of any MRI data); the iterative fits compute in float64.
    echo_times : array_like of shape (n_echoes,)
        Echo times in seconds. Descending or shuffled times are sorted with a warning.
    method : str
        One of :data:`METHODS` (see the module docstring).
    mask : array_like of bool of shape (...), optional
        Voxels to fit; the others get NaN and ``FLAG_OUTSIDE_MASK``.
    r2star_range : (float, float)
        Open interval of accepted R2* (s^-1); values outside are NaN + ``FLAG_OUT_OF_RANGE``.
    sigma : float or "auto", optional
        Noise standard deviation (signal units) of the magnitude data. Required by
        ``"rician"``; ``"auto"`` estimates it from the voxels outside ``mask``
        (:func:`ironmap.core.r2star.noise.estimate_sigma`). When known, voxels whose first echo is
        below ``floor_snr * sigma`` get ``FLAG_NOISE_FLOOR`` (NaN) and voxels whose last echo is
        below it get the warning ``FLAG_LATE_ECHO_FLOOR``.
    floor_snr : float
        Signal-to-noise ratio under which a sample counts as "at the noise floor".
    rmse : bool
        Compute the RMS residual map (signal units). The compiled closed forms sum the
        residuals in the same pass as the fit (two exponentials per voxel for evenly spaced
        echoes, one per echo otherwise); free for ``"nonlinear"``; Bessel functions for
        ``"rician"`` (residual against the expected Rician magnitude).
    chunk_size : int, optional
        Voxels per processing chunk (default: the whole C-ordered stack for the compiled
        closed forms, :data:`FUSED_CHUNK` voxels when they gather rows (a mask, reordered
        echoes, an echo-major stack), about 2**19 samples for their numpy versions,
        :data:`DEFAULT_CHUNK` voxels for the
        iterative fits).
    n_jobs : int, optional
        Threads: over blocks for the closed forms (numpy and the fused kernels release the
        GIL), inside the compiled loops for ``"nonlinear"``, ``"rician"`` and uneven ``"arlo"``.
        Default: the cores this process may use (its CPU affinity).
    **options
        Method options: ``echo_pair`` (two_point), ``max_iter``/``tol`` (nonlinear, rician),
        ``spacing_rtol``/``simpson_exact`` (arlo).

    Returns
    -------
    R2starFit
        Maps of shape ``echoes.shape[:-1]``.
    """
    data = np.asarray(echoes)
    if data.ndim < 1 or not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError("echoes must be a real numeric array of shape (..., n_echoes)")
    te = check_echo_times(echo_times, data.shape[-1])
    order = np.argsort(te, kind="stable")
    if np.any(order != np.arange(te.size)):
        warnings.warn(f"echo times {te.tolist()} are not ascending; echoes were reordered",
                      UserWarning, stacklevel=2)
        te = te[order]
    method = _resolve_method(method, te.size)
    vox_shape = data.shape[:-1]
    fitmask = _check_mask(mask, vox_shape)
    sig = _resolve_sigma(sigma, data, fitmask, method)
    kernel, kw = _prepare(method, te, sig, options)
    if n_jobs is None:
        n_jobs = compiled_iterative.available_cores()
    out = _run_chunks(data, order, te, fitmask, kernel, kw, r2star_range, sig, floor_snr,
                      rmse, chunk_size, n_jobs)
    r2, s0, flags = (out[k].reshape(vox_shape) for k in (0, 1, 3))
    rm = out[2].reshape(vox_shape) if rmse else None
    return R2starFit(r2star=r2, s0=s0, flags=flags, rmse=rm,
                     method=method, echo_times=te, sigma=sig)


_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _resolve_method(method: str, n_echoes: int) -> str:
    if method == estimators.AUTO:
        return estimators.resolve_auto(n_echoes)
    est = estimators.get_estimator(method)
    if n_echoes < est.min_echoes:
        spacing = " evenly spaced" if est.even_spacing else ""
        count = _COUNT_WORDS.get(est.min_echoes, str(est.min_echoes))
        raise EchoTimeError(f"method {method!r} needs at least {count}{spacing} echoes, got "
                            f"{n_echoes}")
    return method


def _check_mask(mask, vox_shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != vox_shape:
        raise ValueError(f"mask shape {m.shape} does not match the voxel shape {vox_shape}")
    return m.astype(bool, copy=False)


def _resolve_sigma(sigma, data, fitmask, method) -> float | None:
    if isinstance(sigma, str):
        if sigma != "auto":
            raise ValueError(f"sigma must be a number or 'auto', got {sigma!r}")
        from ironmap.core.r2star.noise import estimate_sigma

        return estimate_sigma(data, fitmask)
    if sigma is None:
        if method == "rician":
            raise ValueError("method 'rician' needs the noise level: pass sigma=<float> or "
                             "sigma='auto' with a mask (background outside the mask)")
        return None
    s = float(sigma)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    return s


def _prepare(method: str, te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Kernel function and its keyword arguments for one method (from the estimator table)."""
    est = estimators.get_estimator(method)
    unknown = sorted(set(options) - set(est.options))
    if unknown:
        raise TypeError(f"unknown option(s) for method {method!r}: {', '.join(unknown)}")
    return est.load_setup()(te, sigma, dict(options))


# setup functions named by the estimator table: (te, sigma, options) -> (kernel, kwargs)

def setup_two_point(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Two-point closed form on ``echo_pair`` (default the first two echoes).

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.

    Raises
    ------
    ValueError
        When ``echo_pair`` does not name two echoes in ascending order.
    """
    pair = tuple(options.get("echo_pair", (0, 1)))
    i, j = (p % te.size for p in pair)
    if i >= j:
        raise ValueError(f"echo_pair {pair} must name two echoes in ascending order")
    return _kernel_two_point, {"pair": (i, j)}


def setup_loglinear(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Ordinary least squares on ln S.

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.
    """
    return _kernel_loglinear, {}


def setup_wls(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Least squares on ln S weighted by S^2.

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.
    """
    return _kernel_wls, {}


def setup_nonlinear(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Nonlinear least squares; with two echoes the closed form is the least-squares fit.

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.
    """
    if te.size == 2:  # two samples, two parameters: the least-squares fit is the closed form
        return _kernel_two_point, {"pair": (0, 1)}
    return kernel_nonlinear, {"max_iter": int(options.get("max_iter", 50)),
                              "tol": float(options.get("tol", 1e-9))}


def setup_rician(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """Rician maximum likelihood with the noise level ``sigma``.

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.
    """
    return kernel_rician, {"max_iter": int(options.get("max_iter", 200)),
                           "tol": float(options.get("tol", 1e-9)), "sigma": sigma}


def setup_arlo(te: np.ndarray, sigma, options: dict) -> tuple[Callable, dict]:
    """ARLO on evenly spaced echoes (relative tolerance ``spacing_rtol``).

    Parameters
    ----------
    te : ndarray of shape (n_echoes,)
        Echo times in s, ascending.
    sigma : float or None
        Noise SD of the magnitude (signal units), for estimators that use it.
    options : dict
        The estimator's options (see :mod:`ironmap.core.r2star.estimators`).

    Returns
    -------
    kernel : callable
        ``kernel(rows, te, want_rmse=..., **kwargs) -> (r2star, s0, rmse, used)`` on rows of
        shape (m, n_echoes).
    kwargs : dict
        Keyword arguments bound to the kernel.
    """
    check_even_spacing(te, options.get("spacing_rtol", 1e-2))
    return kernel_arlo, {"simpson_exact": bool(options.get("simpson_exact", True))}


def _flat_view(data: np.ndarray) -> tuple[np.ndarray, str]:
    """(n_voxels, n_echoes) view of the stack without copying, and its memory order."""
    n = data.shape[-1]
    if data.flags.c_contiguous:
        return data.reshape(-1, n), "C"
    if data.flags.f_contiguous:
        return data.reshape(-1, n, order="F"), "F"
    data = np.ascontiguousarray(data)
    return data.reshape(-1, n), "C"


def _run_chunks(data, order, te, fitmask, kernel, kw, r2star_range, sigma, floor_snr,
                want_rmse, chunk_size, n_jobs):
    """Run ``kernel`` over voxel chunks; return flat (r2star, s0, rmse, flags)."""
    flat, mem = _flat_view(data)
    nvox = flat.shape[0]
    out_dtype = np.float64 if data.dtype == np.float64 else np.float32
    r2, s0 = np.empty(nvox, dtype=out_dtype), np.empty(nvox, dtype=out_dtype)
    rm = np.empty(nvox, dtype=out_dtype) if want_rmse else None
    flags = np.zeros(nvox, dtype=np.uint16)
    index, n_fit = None, nvox
    if fitmask is not None:
        fm = fitmask.reshape(-1, order=mem)
        outside = ~fm
        flags[outside] = FLAG_OUTSIDE_MASK
        for arr in (r2, s0, rm):
            if arr is not None:
                arr[outside] = np.nan
        index = np.flatnonzero(fm)
        n_fit = index.size
    identity = bool(np.all(order == np.arange(order.size)))
    fused = _fused_plan(kernel, kw, te, out_dtype, r2star_range)
    rising = [0]
    if chunk_size is None:
        chunk_size = (FUSED_CHUNK if fused is not None else DEFAULT_CHUNK
                      if kernel in _ITERATIVE else max(4096, 2**19 // te.size))
    step = max(int(chunk_size), 1)
    if fused is not None and index is None and identity and mem == "C":
        step = max(step, n_fit)  # fit the stack in place, in one call

    def work(start: int) -> None:
        sel = slice(start, min(start + step, n_fit))
        where = sel if index is None else index[sel]
        rows = flat[where]
        if not identity:
            rows = rows[:, order]
        rows = np.ascontiguousarray(rows, dtype=out_dtype)
        if fused is None:
            c_r2, c_s0, c_rm, bad, bad_flags = _fit_rows(
                rows, te, kernel, kw, r2star_range, sigma, floor_snr, want_rmse)
        else:
            c_r2, c_s0, c_rm = ((r2[sel], s0[sel], None if rm is None else rm[sel])
                                if index is None else
                                tuple(np.empty(rows.shape[0], out_dtype) for _ in range(3)))
            nbad = fastclosed.run_plan(fused, rows, c_r2, c_s0, c_rm if want_rmse else None,
                                       n_jobs)
            bad, bad_flags = _plan_flags(rows, c_r2, c_s0, fused.used, nbad, r2star_range,
                                         kernel, sigma, floor_snr)
        if index is not None:
            r2[where], s0[where] = c_r2, c_s0
            if rm is not None:
                rm[where] = c_rm
        elif fused is None:
            r2[sel], s0[sel] = c_r2, c_s0
            if rm is not None:
                rm[sel] = c_rm
        if bad.size:
            rising[0] += int(np.count_nonzero(bad_flags & FLAG_RISING))
            pos = (start + bad) if index is None else index[sel][bad]
            flags[pos] = bad_flags
            invalid = pos[(bad_flags & FLAGS_INVALID) != 0]
            for arr in (r2, s0, rm):
                if arr is not None:
                    arr[invalid] = np.nan

    starts = range(0, n_fit, step)
    with _one_blas_thread(kernel if fused is None else None):
        _dispatch(work, starts, kernel, n_jobs, n_fit > step, fused is not None)
    _warn_rising(rising[0], n_fit)
    out_rm = rm if rm is not None else np.empty(0, dtype=out_dtype)
    if mem == "F":
        shape = data.shape[:-1]
        return tuple(a.reshape(shape, order="F").ravel() if a.size == nvox else a
                     for a in (r2, s0, out_rm, flags))
    return r2, s0, out_rm, flags


_BLAS_CONTROLLER: list = []


def _one_blas_thread(kernel):
    """Context that limits BLAS to one thread for kernels with tiny matrix products.

    With ``kernel`` None no BLAS is used and nothing is limited.

    Multi-threaded BLAS only adds spinning threads to (chunk x n_echoes) @ (n_echoes x 2).
    """
    import contextlib

    if kernel is None or kernel is _kernel_two_point or kernel is kernel_arlo:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER.append(ThreadpoolController())
        except ImportError:  # pragma: no cover
            _BLAS_CONTROLLER.append(None)
    ctl = _BLAS_CONTROLLER[0]
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")


def _dispatch(work, starts, kernel, n_jobs, several, fused=False):
    """Run ``work`` over chunk starts.

    Threads over chunks (numpy releases the GIL), or threads inside the compiled loops (iterative
    fits) and fused kernels (closed forms).
    """
    inside = kernel in _ITERATIVE and not fused
    if inside:
        compiled_iterative.set_threads(n_jobs)
    if n_jobs > 1 and several and not inside and not fused:
        with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
            list(pool.map(work, starts))
    else:
        for start in starts:
            work(start)


def _fused_plan(kernel, kw, te, dtype, r2star_range) -> fastclosed.ClosedFormPlan | None:
    """Compiled fused version of a closed-form kernel for float32 or float64 rows, or None."""
    if dtype not in (np.float32, np.float64) or not compiled_iterative.AVAILABLE:
        return None
    if kernel is _kernel_two_point:
        return fastclosed.plan_two_point(te, kw["pair"], r2star_range)
    if kernel is _kernel_loglinear:
        return fastclosed.plan_loglinear(te, _loglinear_weights(te, np.float32), r2star_range)
    if kernel is _kernel_wls:
        return fastclosed.plan_wls(te, r2star_range)
    if kernel is kernel_arlo and arlo_evenly_spaced(te):
        return fastclosed.plan_arlo(te, kw["simpson_exact"], r2star_range)
    return None


def _fit_rows(rows, te, kernel, kw, r2star_range, sigma, floor_snr, want_rmse):
    """Fit one chunk; return maps and the (sparse) positions and bits of flagged voxels."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        r2, s0, rm, used = kernel(rows, te, want_rmse=want_rmse, **kw)
    first, last = rows[:, used[0]], rows[:, used[-1]]
    bad, bad_flags = _bad_voxels(rows, r2, s0, used, first, last, r2star_range, kernel)
    bad, bad_flags = _floor_flags(first, last, bad, bad_flags, sigma, floor_snr)
    return r2, s0, rm, bad, bad_flags


def _plan_flags(rows, r2, s0, used, nbad_blocks, r2star_range, kernel, sigma, floor_snr):
    """Flagged voxels of a fused fit.

    The full validity test runs only on the blocks whose kernel count says that some voxel may have
    failed.
    """
    first, last = rows[:, used[0]], rows[:, used[-1]]
    bad, bad_flags = np.empty(0, np.intp), np.empty(0, np.uint16)
    if np.any(nbad_blocks):
        idx = np.flatnonzero(np.repeat(nbad_blocks > 0, fastclosed.BLOCK)[:rows.shape[0]])
        pos, bad_flags = _bad_voxels(rows[idx], r2[idx], s0[idx], used, first[idx],
                                     last[idx], r2star_range, kernel)
        bad = idx[pos]
    return _floor_flags(first, last, bad, bad_flags, sigma, floor_snr)


def _floor_flags(first, last, bad, bad_flags, sigma, floor_snr):
    """Add the noise-floor bits (sigma known) to the sparse (positions, bits) of a chunk."""
    if sigma is None:
        return bad, bad_flags
    level = floor_snr * sigma
    floor_bits = np.where(first < level, FLAG_NOISE_FLOOR, 0).astype(np.uint16)
    floor_bits |= np.where(last < level, FLAG_LATE_ECHO_FLOOR, 0).astype(np.uint16)
    floor_bits[bad] |= bad_flags
    bad = np.flatnonzero(floor_bits)
    return bad, floor_bits[bad]


def _bad_voxels(rows, r2, s0, used, first, last, r2star_range, kernel):
    """Positions and reason bits of the voxels without a valid fit."""
    empty = np.empty(0, dtype=np.intp), np.empty(0, dtype=np.uint16)
    lo, hi = r2star_range
    with np.errstate(invalid="ignore"):
        valid = r2 > lo
        valid &= r2 < hi
        valid &= s0 < np.inf
        if kernel is _kernel_two_point:
            valid &= last > 0  # with r2 > lo >= 0 this implies first > last > 0
            if lo < 0:
                valid &= last < first
        else:
            valid &= s0 > 0
            valid &= last < first
    if valid.all():
        return empty
    bad = np.flatnonzero(~valid)
    return bad, classify_invalid(rows[bad][:, list(used)], r2[bad], s0[bad], r2star_range)


def _warn_rising(n_rising: int, n_fit: int) -> None:
    if n_fit >= 10 and n_rising > 0.5 * n_fit:
        warnings.warn(f"the signal rises with echo time in {100 * n_rising / n_fit:.0f}% of "
                      "voxels: are the echoes in the right order and the echo times right?",
                      UserWarning, stacklevel=5)


# --------------------------------------------------------------------------------------------
# closed-form kernels: rows (m, n) ascending TE -> (r2star, s0, rmse | None, used echo indices)


def _rmse_closed(rows, te, r2, s0, want_rmse):
    """Signal-domain RMS residual of a fitted curve (or None)."""
    if not want_rmse:
        return None
    pred = np.exp(np.multiply.outer(-r2, te.astype(rows.dtype)))
    pred *= s0[:, None]
    pred -= rows
    np.square(pred, out=pred)
    return np.sqrt(pred.mean(axis=1))


def _kernel_two_point(rows, te, *, pair, want_rmse):
    """R2* = ln(S_i / S_j) / (TE_j - TE_i); S0 = S_i * exp(R2* TE_i)."""
    i, j = pair
    si, sj = rows[:, i], rows[:, j]
    r2 = np.divide(si, sj)
    np.log(r2, out=r2)
    r2 *= rows.dtype.type(1.0 / (te[j] - te[i]))
    if te[i] == 0:
        s0 = si.copy()
    else:
        s0 = np.multiply(r2, rows.dtype.type(te[i]))
        np.exp(s0, out=s0)
        s0 *= si
    rm = _rmse_closed(rows, te, r2, s0, want_rmse)
    return r2, s0, rm, (i, j)


def _loglinear_weights(te: np.ndarray, dtype) -> np.ndarray:
    """(n, 2) matrix W with ln(S) @ W = (-R2*, ln S0) for ordinary least squares."""
    tc = te - te.mean()
    w_slope = tc / np.sum(tc * tc)
    w_icpt = 1.0 / te.size - te.mean() * w_slope
    return np.stack([w_slope, w_icpt], axis=1).astype(dtype)


def _kernel_loglinear(rows, te, *, want_rmse):
    """Ordinary least squares on ln S."""
    y = np.log(rows)
    coef = y @ _loglinear_weights(te, rows.dtype)
    r2 = -coef[:, 0]
    s0 = np.exp(coef[:, 1])
    rm = _rmse_closed(rows, te, r2, s0, want_rmse)
    return r2, s0, rm, (0, te.size - 1)


def _kernel_wls(rows, te, *, want_rmse):
    """Least squares on ln S with weights S^2 (measured signal)."""
    w = np.square(rows, dtype=np.float64)
    y = np.log(rows, dtype=np.float64)
    t = te - te[0]  # centred on TE1 for conditioning
    tmat = np.stack([np.ones_like(t), t, t * t], axis=1)
    sw, swt, swtt = (w @ tmat).T
    wy = w * y
    swy, swty = (wy @ tmat[:, :2]).T
    det = sw * swtt - swt * swt
    slope = (sw * swty - swt * swy) / det
    icpt = (swy - slope * swt) / sw  # ln S at TE1
    r2 = -slope
    s0 = np.exp(icpt + r2 * te[0])
    dt = rows.dtype
    r2, s0 = r2.astype(dt), s0.astype(dt)
    rm = _rmse_closed(rows, te, r2, s0, want_rmse)
    return r2, s0, rm, (0, te.size - 1)


def fit_loglinear(echoes, echo_times, **kwargs) -> R2starFit:
    """Ordinary least squares on ln S.

    Parameters
    ----------
    echoes : array-like of shape (..., n_echoes)
        Magnitude signal, echoes last.
    echo_times : array-like of shape (n_echoes,)
        Echo times in s.
    **kwargs
        As for :func:`fit_r2star`.

    Returns
    -------
    R2starFit
        R2* (s^-1), S0, flags and RMSE maps.
    """
    return fit_r2star(echoes, echo_times, "loglinear", **kwargs)


def fit_two_point(echoes, echo_times, **kwargs) -> R2starFit:
    """Closed-form two-echo R2*.

    Parameters
    ----------
    echoes : array-like of shape (..., n_echoes)
        Magnitude signal, echoes last.
    echo_times : array-like of shape (n_echoes,)
        Echo times in s.
    **kwargs
        As for :func:`fit_r2star`.

    Returns
    -------
    R2starFit
        R2* (s^-1), S0, flags and RMSE maps.
    """
    return fit_r2star(echoes, echo_times, "two_point", **kwargs)
