"""Age model ``pooled``: rate and amplitude partially pooled across regions (ground truth)."""

from __future__ import annotations

import numpy as np

from _sim_tables import progressive_errors
from ironmap.core.group import age_correction, age_fits, age_pooling

REF = 32.0


def _regions(rng, n: int, curves, sd: float, lo: float = 18.0, hi: float = 57.0):
    age = rng.uniform(lo, hi, n)
    return [(age, age_correction.saturation(age, a, b, c) + rng.normal(0, sd, n))
            for a, b, c in curves]


def test_pool_prior_recovers_a_curve_shared_by_every_region(rng):
    """Eight regions with the same a = 12 s^-1 and b = 0.06/y, 300 controls aged 2-85 y,
    noise SD 1 s^-1: the pooled means are those values and each region's curve is within
    0.5 s^-1 of its true curve at 10-80 y."""
    regions = _regions(rng, 300, [(12.0, 0.06, 20.0 + 2 * k) for k in range(8)], 1.0,
                       lo=2.0, hi=85.0)
    pool = age_pooling.pool_prior(regions)
    assert abs(pool[0] - np.log(0.06)) < 0.1
    assert abs(pool[2] - 12.0) < 1.0
    assert pool[1] >= age_pooling.TAU_FLOOR[0] and pool[3] >= age_pooling.TAU_FLOOR[1]
    for k, (age, y) in enumerate(regions):
        fit = age_correction.fit_age_model(age, y, "pooled", pool=pool)
        assert fit.method == "pooled" and fit.model == "saturation"
        grid = np.linspace(10.0, 80.0, 50)
        true = age_correction.saturation(grid, 12.0, 0.06, 20.0 + 2 * k)
        assert np.max(np.abs(fit.predict(grid) - true)) < 0.5
        assert abs(fit.b - 0.06) < 0.01
        assert np.isfinite([fit.a_se, fit.b_se, fit.c_se]).all()
        assert fit.diagnostics["a_prior_mean"] == pool[2]


def test_pooled_correction_sd_is_the_unpooled_spread_around_the_pooled_curve(rng):
    """The bootstrap SD of a pooled correction equals auto's (same resamples) and the band is
    auto's spread moved onto the pooled curve."""
    regions = _regions(rng, 40, [(12.0, 0.06, 20.0), (14.0, 0.05, 25.0), (9.0, 0.05, 15.0)],
                       2.0)
    pool = age_pooling.pool_prior(regions)
    age, y = regions[0]
    ages = np.array([20.0, 50.0, 63.0])
    ctl = np.ones(age.size, bool)
    kw = {"n_boot": 100, "band_ages": ages}
    pooled = age_correction.correct_region(y, age, ctl, REF, method="pooled", pool=pool, **kw)
    auto = age_correction.correct_region(y, age, ctl, REF, method="auto", **kw)
    assert pooled.fit.method == "pooled" and pooled.fit.b != auto.fit.b
    np.testing.assert_allclose(pooled.sd, auto.sd, rtol=1e-9)
    assert np.all(pooled.sd > 0)
    shift = pooled.fit.predict(ages) - auto.fit.predict(ages)
    np.testing.assert_allclose(pooled.band["low"], np.asarray(auto.band["low"]) + shift,
                               atol=1e-9)
    assert np.all(np.asarray(pooled.band["low"]) < pooled.fit.predict(ages))
    assert np.all(pooled.fit.predict(ages) < np.asarray(pooled.band["high"]))
    w = age_fits.resample_weights(age.size, 100, 0)
    assert w.shape == (100, age.size) and np.all(w.sum(1) == age.size)


def test_pooled_without_a_pooled_prior_excludes_the_region():
    age = np.linspace(20, 60, 10)
    fit = age_correction.fit_age_model(age, 20 + 0.1 * age, "pooled")
    assert fit.model == "none" and "region excluded" in fit.warning


def test_correction_does_not_depend_on_the_offset_c():
    """The correction f(ref) - f(age) = a (exp(-b age) - exp(-b ref)) has no c: a curve with
    the true a and b corrects exactly whatever c is fitted (the 'true-ab' oracle is 0)."""
    age = np.array([18.0, 35.0, 63.0])
    y = np.array([30.0, 33.0, 36.0])
    one = age_correction.fixed_curve(12.0, 0.06, 20.0).adjust(y, age, REF)
    two = age_correction.fixed_curve(12.0, 0.06, -7.0).adjust(y, age, REF)
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one, y + 12.0 * (np.exp(-0.06 * age) - np.exp(-0.06 * REF)))


def test_pooled_beats_auto_for_24_controls_on_simulated_cohorts():
    """Cohorts drawn as ``ironmap simulate`` draws them (24 controls 18-57 y, 24 RRMS, 6 SPMS,
    6 PPMS; seeds 0-2, not the seeds 100-119 the pooling floors were chosen on): the
    progressive groups' corrected means are closer to the truth (the same values corrected
    with the true curve) with ``pooled`` than with ``auto``."""
    errors = progressive_errors({"HC": 24, "RRMS": 24, "SPMS": 6, "PPMS": 6}, 3, range(3),
                                ("auto", "pooled"), REF)
    rms = {m: float(np.sqrt(np.mean(np.square(e)))) for m, e in errors.items()}
    assert rms["pooled"] < rms["auto"], rms
