"""R2* engine: bad inputs, quality flags, masks, chunking, memory, noise estimation."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from ironmap import fit_r2star
from ironmap.core.r2star import relaxometry as rx
from ironmap.core.r2star.fit_flags import describe_flags, failure_fraction, flag_names
from ironmap.core.r2star.noise import estimate_sigma

TE3 = np.array([0.005, 0.015, 0.025])


def decay(r2, te, s0=1000.0):
    return s0 * np.exp(-np.multiply.outer(np.asarray(r2, dtype=float), te))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["two_point", "loglinear", "wls", "nonlinear", "arlo"])
def test_bad_voxels_are_nan_and_flagged(method, dtype):
    rows = np.array([
        [1000.0, 600.0, 360.0],  # good
        [1000.0, 0.0, 0.0],  # zeros
        [-5.0, -10.0, -20.0],  # negatives
        [np.nan, 600.0, 360.0],  # NaN
        [np.inf, 600.0, 360.0],  # Inf
        [300.0, 600.0, 900.0],  # rising
        [1000.0, 1e-30, 1e-36],  # R2* far above the physical range
    ], dtype=dtype)
    fit = fit_r2star(rows, TE3, method)
    assert fit.flags[0] == 0 and np.isfinite(fit.r2star[0])
    assert np.all(np.isnan(fit.r2star[1:])) and np.all(np.isnan(fit.s0[1:]))
    assert np.all(fit.r2star != 0)
    assert np.all(fit.flags[1:] & rx.FLAGS_INVALID)
    names = [flag_names(f) for f in fit.flags]
    assert "nonfinite" in names[3] and "nonfinite" in names[4]
    assert "rising" in names[5]
    # closed forms land outside the range; iterative fits may stop first (no convergence)
    assert {"out_of_range", "fit_failed"} & set(names[6])
    if method != "two_point":  # two_point uses echoes 1 and 2 only
        assert "nonpositive" in names[1]
    assert "nonpositive" in names[2]
    assert fit.failed.tolist() == [False] + [True] * 6


def test_configurable_range_and_describe():
    fit = fit_r2star(decay([20.0, 80.0], TE3), TE3, "loglinear", r2star_range=(0.0, 50.0))
    assert np.isfinite(fit.r2star[0]) and np.isnan(fit.r2star[1])
    assert fit.flags[1] == rx.FLAG_OUT_OF_RANGE
    summary = describe_flags(fit.flags)
    assert summary["out_of_range"] == 1 and summary["good"] == 1 and summary["invalid"] == 1
    assert failure_fraction(fit.flags) == 0.5
    assert set(describe_flags()) >= {int(rx.FLAG_RISING), int(rx.FLAG_NOISE_FLOOR)}


def test_noise_floor_flags_with_sigma():
    rows = decay([20.0, 20.0, 150.0], TE3) * np.array([[1.0], [0.02], [1.0]])
    fit = fit_r2star(rows, TE3, "loglinear", sigma=10.0)
    assert fit.flags[0] == 0
    assert fit.flags[1] & rx.FLAG_NOISE_FLOOR and np.isnan(fit.r2star[1])
    # last echo near the floor: a warning only, the value is kept
    assert fit.flags[2] == rx.FLAG_LATE_ECHO_FLOOR and np.isfinite(fit.r2star[2])


def test_mask_outside_is_nan():
    data = decay(np.full((4, 5), 30.0), TE3)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    fit = fit_r2star(data, TE3, "nonlinear", mask=mask)
    assert np.allclose(fit.r2star[mask], 30.0)
    assert np.all(np.isnan(fit.r2star[~mask]))
    assert np.all(fit.flags[~mask] == rx.FLAG_OUTSIDE_MASK)
    with pytest.raises(ValueError, match="mask shape"):
        fit_r2star(data, TE3, mask=mask[:3])


def test_echo_time_errors():
    data = decay([30.0], TE3)
    with pytest.raises(rx.EchoTimeError, match="milliseconds"):
        fit_r2star(data, TE3 * 1000)
    with pytest.raises(rx.EchoTimeError, match="at least two"):
        fit_r2star(data[:, :1], TE3[:1])
    with pytest.raises(rx.EchoTimeError, match="3 echo times given for 2"):
        fit_r2star(data[:, :2], TE3)
    with pytest.raises(rx.EchoTimeError, match="duplicate"):
        fit_r2star(data, [0.005, 0.005, 0.01])
    with pytest.raises(ValueError, match="unknown R2\\* method"):
        fit_r2star(data, TE3, "magic")
    with pytest.raises(TypeError, match="unknown option"):
        fit_r2star(data, TE3, "loglinear", echo_pair=(0, 1))
    with pytest.raises(ValueError, match="sigma"):
        fit_r2star(data, TE3, "rician")


def test_descending_echoes_are_reordered_with_warning():
    data = decay(np.linspace(10, 60, 6), TE3)
    ref = fit_r2star(data, TE3, "loglinear")
    with pytest.warns(UserWarning, match="not ascending"):
        rev = fit_r2star(data[:, ::-1], TE3[::-1], "loglinear")
    np.testing.assert_allclose(rev.r2star, ref.r2star, rtol=1e-12)


def test_rising_signal_almost_everywhere_warns():
    data = decay(np.linspace(10, 60, 20), TE3)[:, ::-1]  # echoes swapped, TEs not
    with pytest.warns(UserWarning, match="rises with echo time"):
        fit = fit_r2star(data, TE3, "loglinear")
    assert np.all(fit.flags & rx.FLAG_RISING)


@pytest.mark.parametrize("method", ["two_point", "loglinear", "nonlinear", "arlo", "rician"])
def test_chunks_threads_and_memory_order_do_not_change_results(rng, method):
    r2 = rng.uniform(10, 60, (6, 7, 5))
    data = decay(r2, TE3) + rng.normal(0, 5, (6, 7, 5, 3))
    mask = r2 > 20
    kw = {"mask": mask, "sigma": 5.0}
    ref = fit_r2star(data, TE3, method, **kw)
    for alt in (fit_r2star(data, TE3, method, chunk_size=7, n_jobs=2, **kw),
                fit_r2star(np.asfortranarray(data), TE3, method, chunk_size=11, **kw)):
        np.testing.assert_array_equal(alt.flags, ref.flags)
        np.testing.assert_allclose(alt.r2star, ref.r2star, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(alt.s0, ref.s0, rtol=1e-12, equal_nan=True)


def test_integer_input_and_result_helpers():
    data = np.round(decay([[20.0, 40.0]], TE3)).astype(np.int16)
    fit = fit_r2star(data, TE3, "nonlinear")
    assert fit.r2star.dtype == np.float32 and fit.shape == (1, 2)
    np.testing.assert_allclose(fit.r2star, [[20.0, 40.0]], rtol=1e-2)
    np.testing.assert_allclose(fit.t2star, 1 / fit.r2star, rtol=1e-6)
    np.testing.assert_allclose(fit.predict(), data, rtol=1e-2)
    assert fit_r2star(data, TE3, "loglinear", rmse=False).rmse is None


@pytest.mark.parametrize("order", ["C", "F"])
def test_extra_memory_is_bounded(rng, order):
    """Extra peak memory of a 12-echo float32 fit stays below the size of the stack itself."""
    te = 0.003 + 0.004 * np.arange(12)
    r2 = rng.uniform(10, 60, (48, 48, 24)).astype(np.float32)
    data = np.asarray((1000 * np.exp(-r2[..., None] * te)).astype(np.float32), order=order)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fit = fit_r2star(data, te, "nonlinear", chunk_size=1024)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert np.isfinite(fit.r2star).all()
    assert peak <= data.nbytes, f"extra peak {peak / 1e6:.1f} MB > {data.nbytes / 1e6:.1f} MB"


def test_estimate_sigma_from_rayleigh_background(rng):
    sigma = 7.0
    shape = (40, 40, 6, 3)
    noise = np.abs(sigma * rng.standard_normal(shape) + 1j * sigma * rng.standard_normal(shape))
    mask = np.zeros(shape[:3], bool)
    mask[10:30, 10:30] = True
    noise[mask] += 500.0  # the object
    noise[:3] = 0.0  # zero-filled border is ignored
    noise[35:, :, :, 0] += 300.0  # some bright non-object voxels (scalp) are trimmed
    assert estimate_sigma(noise, mask) == pytest.approx(sigma, rel=0.03)
    with pytest.raises(ValueError, match="mask"):
        estimate_sigma(noise, None)
    fit = fit_r2star(noise, [0.005, 0.01, 0.02], "loglinear", mask=mask, sigma="auto")
    assert fit.sigma == pytest.approx(sigma, rel=0.03)


def test_no_warnings_on_clean_data():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_r2star(decay(np.linspace(5, 150, 30), TE3), TE3, "nonlinear")


@pytest.mark.parametrize("method", ["nonlinear", "rician", "arlo"])
def test_numpy_fallback_matches_compiled_loops(rng, monkeypatch, method):
    """Without numba the numpy implementations give the same fits."""
    from ironmap.core.r2star import compiled_iterative

    te = np.linspace(0.004, 0.032, 8)
    nu = decay(rng.uniform(10, 80, 300), te)
    data = np.abs(nu + 10 * rng.standard_normal(nu.shape) + 10j * rng.standard_normal(nu.shape))
    ref = fit_r2star(data, te, method, sigma=10.0)
    monkeypatch.setattr(compiled_iterative, "AVAILABLE", False)
    alt = fit_r2star(data, te, method, sigma=10.0)
    ok = np.isfinite(ref.r2star) & np.isfinite(alt.r2star)
    assert ok.mean() > 0.99
    # evenly spaced ARLO runs the fused float32 kernel even on float64 input
    rtol = 1e-5 if method == "arlo" else 1e-6
    np.testing.assert_allclose(alt.r2star[ok], ref.r2star[ok], rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(alt.s0[ok], ref.s0[ok], rtol=rtol)


def test_compiled_float32_exp_matches_numpy():
    from ironmap.core.r2star import compiled_closed_form as fastclosed

    x = np.linspace(-86.0, 87.0, 20001).astype(np.float32)
    got = np.array([fastclosed.exp32(v) for v in x[::50]])
    np.testing.assert_allclose(got, np.exp(x[::50].astype(np.float64)), rtol=2e-7)
    assert fastclosed.exp32(np.float32(100.0)) == np.inf
    assert fastclosed.exp32(np.float32(-100.0)) == 0.0
    assert np.isnan(fastclosed.exp32(np.float32(np.nan)))


def test_compiled_float32_log_matches_numpy(rng):
    from ironmap.core.r2star import compiled_closed_form as fastclosed

    x = np.concatenate([np.exp(rng.uniform(-85, 85, 4000)), rng.uniform(0.5, 2.0, 4000),
                        1.0 + rng.uniform(-1e-3, 1e-3, 2000)]).astype(np.float32)
    got = np.array([fastclosed.log32(v) for v in x], dtype=np.float64)
    ref = np.log(x.astype(np.float64))
    # within about one float32 rounding of the result, and of ln(1 + f) near 1
    assert np.all(np.abs(got - ref) <= 1.2e-7 * np.maximum(np.abs(ref), 1.0))
    near_one = np.abs(ref) < 1e-3
    assert np.all(np.abs(got - ref)[near_one] <= 2e-7 * np.abs(ref)[near_one] + 1e-12)
    for v in (0.0, -1.0, np.inf, np.nan):
        assert np.isnan(fastclosed.log32(np.float32(v)))


def _numpy_reference(monkeypatch, data, te, method, **kw):
    """The float64 numpy implementation of a fit (the compiled kernels switched off)."""
    from ironmap.core.r2star import compiled_iterative

    with monkeypatch.context() as mp:
        mp.setattr(compiled_iterative, "AVAILABLE", False)
        return fit_r2star(np.asarray(data, dtype=np.float64), te, method, **kw)


def _direct_rmse(data, fit):
    """RMS residual of the returned fit, computed in float64 from its R2* and S0."""
    pred = np.asarray(fit.s0, float)[..., None] * np.exp(
        -np.multiply.outer(np.asarray(fit.r2star, float), fit.echo_times))
    return np.sqrt(np.mean(np.square(np.asarray(data, float) - pred), axis=-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["two_point", "loglinear", "wls", "arlo"])
def test_fused_kernels_equal_the_numpy_fits_across_blocks(rng, monkeypatch, method, dtype):
    """float32 and float64 stacks (fused kernels, several blocks, 1 or 2 threads, in place or
    masked/echo-major) against the float64 numpy path, with failing voxels in different
    blocks; the fused RMSE map against a direct computation."""
    from ironmap.core.r2star import compiled_closed_form as fastclosed

    te = np.linspace(0.004, 0.032, 8)
    n = 3 * fastclosed.BLOCK + 77
    nu = decay(rng.uniform(10, 80, n), te)
    data = np.abs(nu + 8 * rng.standard_normal(nu.shape)).astype(np.float32).astype(dtype)
    for pos, bad in zip((5, fastclosed.BLOCK + 9, 2 * fastclosed.BLOCK + 1, n - 1, n - 3),
                        (0.0, -3.0, np.nan, np.inf, 2000.0), strict=True):
        data[pos, [0, 1, -1]] = bad  # two-point reads echoes 1 and 2
    data[fastclosed.BLOCK + 20] = data[fastclosed.BLOCK + 20, ::-1]  # rising
    ref = _numpy_reference(monkeypatch, data, te, method)
    mask = rng.random(n) > 0.3
    mask[[5, fastclosed.BLOCK + 9, fastclosed.BLOCK + 20]] = True
    fits = [fit_r2star(data, te, method, n_jobs=j) for j in (1, 2)]
    fits.append(fit_r2star(np.asfortranarray(data), te, method))
    masked = fit_r2star(data, te, method, mask=mask, n_jobs=2)
    np.testing.assert_array_equal(fits[1].r2star, fits[0].r2star)
    rtol = 1e-4 if method == "wls" else 3e-5  # float32 sums of S^2-weighted terms
    for fit in fits:
        assert fit.r2star.dtype == fit.rmse.dtype == dtype
        np.testing.assert_array_equal(fit.flags, ref.flags)
        np.testing.assert_allclose(fit.r2star, ref.r2star, rtol=rtol, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(fit.s0, ref.s0, rtol=rtol, equal_nan=True)
        np.testing.assert_allclose(fit.rmse, ref.rmse, rtol=1e-3, atol=1e-2, equal_nan=True)
        np.testing.assert_allclose(fit.rmse, _direct_rmse(data, fit), rtol=1e-4, atol=1e-3,
                                   equal_nan=True)
    np.testing.assert_array_equal(masked.flags[mask], ref.flags[mask])
    np.testing.assert_array_equal(masked.r2star[mask], fits[0].r2star[mask])
    assert np.all(masked.flags[~mask] == rx.FLAG_OUTSIDE_MASK)
    assert np.count_nonzero(ref.flags & rx.FLAGS_INVALID) >= 5


@pytest.mark.parametrize("te", [np.linspace(0.003, 0.031, 8),
                                np.array([0.004, 0.006, 0.011, 0.020, 0.035])],
                         ids=["even8", "uneven5"])
@pytest.mark.parametrize("method", ["two_point", "loglinear", "wls"])
def test_fused_noise_free_exact_for_both_dtypes(monkeypatch, method, te):
    """Noise-free decays: float32 and float64 input through the fused kernels and the float64
    numpy path give R2* and S0 to 3e-5 (float32 rounding of S_1/S_2 on a 2 ms pair), the same
    (empty) flags, and an RMSE of ~0."""
    r2 = np.geomspace(5.0, 150.0, 5000)
    clean = decay(r2, te)
    ref = _numpy_reference(monkeypatch, clean, te, method)
    for data in (clean, clean.astype(np.float32)):
        fit = fit_r2star(data, te, method)
        assert fit.r2star.dtype == data.dtype
        np.testing.assert_array_equal(fit.flags, ref.flags)
        assert not fit.flags.any()
        np.testing.assert_allclose(fit.r2star, r2, rtol=3e-5)
        np.testing.assert_allclose(fit.s0, 1000.0, rtol=3e-5)
        assert np.max(fit.rmse) < 2e-3  # float32 rounding of a 1000-unit signal
        np.testing.assert_allclose(fit.rmse, _direct_rmse(data, fit), atol=2e-3)


def test_default_threads_are_the_available_cores():
    import os

    from ironmap.core.r2star import compiled_iterative

    assert compiled_iterative.available_cores() == len(os.sched_getaffinity(0))
