"""Identifiable age models: penalised saturation fit, fixed rate, fixed curves, bootstrap,
extrapolation and bad input (core, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.core.group import age_correction as agecorr
from ironmap.core.group import age_fits

A, B, C = 14.0, 0.07, 20.0
REF = 32.0


def _controls(rng, n, lo=18.0, hi=57.0, sd=3.0):
    age = rng.uniform(lo, hi, n)
    return age, agecorr.saturation(age, A, B, C) + rng.normal(0, sd, n)


def test_auto_equals_the_seed_fit_when_the_data_determine_b(rng):
    """Ages 1-90 with little noise: the prior barely matters and the MAP is the LS curve."""
    age, y = _controls(rng, 200, lo=1.0, hi=90.0, sd=0.3)
    auto = agecorr.fit_age_model(age, y, "auto")
    seed = agecorr.fit_age_model(age, y, "seed")
    assert auto.model == seed.model == "saturation" and seed.warning is None
    assert auto.diagnostics["b_sd_ratio"] < 0.1  # the data, not the prior
    for name in ("a", "b", "c"):
        assert auto.params[name] == pytest.approx(seed.params[name], rel=0.01)
        lo, hi = auto.ci[name]
        assert lo < {"a": A, "b": B, "c": C}[name] < hi


def test_auto_leans_on_the_prior_with_seed_like_controls(rng):
    age, y = _controls(rng, 24)
    fit = agecorr.fit_age_model(age, y, "auto")
    assert fit.model == "saturation" and fit.method == "auto"
    assert fit.diagnostics["b_sd_ratio"] > 0.7
    assert fit.diagnostics["b_prior_median"] == pytest.approx(np.exp(age_fits.B_PRIOR[0]))
    row = fit.to_row()
    assert row["method"] == "auto" and 0 < row["b_sd_ratio"] <= 1.0


def test_seed_model_warns_but_keeps_its_curve(rng):
    age, y = _controls(rng, 24)
    with pytest.warns(agecorr.AgeModelWarning, match="ill-determined"):
        fit = agecorr.fit_age_model(age, y, "seed")
    assert fit.model == "saturation" and fit.method == "seed" and "no fallback" in fit.warning


def test_prior_model_fixes_b_at_the_prior_median(rng):
    age, y = _controls(rng, 40)
    fit = agecorr.fit_age_model(age, y, "prior")
    b = float(np.exp(age_fits.B_PRIOR[0]))
    assert fit.b == b and fit.b_se == 0.0
    x = age_fits.saturation_design(age, b)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit.a == pytest.approx(slope) and fit.c == pytest.approx(intercept)


def test_profile_engine_matches_the_bounded_least_squares_fit(rng):
    age, y = _controls(rng, 300, lo=1.0, hi=90.0, sd=0.5)
    a, b, c = age_fits.profile_fit(age, y, prior=None)
    ls = agecorr.fit_saturation(age, y)
    assert b[0] == pytest.approx(ls.b, rel=0.01) and a[0] == pytest.approx(ls.a, rel=0.02)


def test_fixed_curve_reproduces_the_truth_exactly(rng):
    age = rng.uniform(18, 63, 50)
    corrected_true = rng.normal(30.0, 3.0, 50)
    y = corrected_true + agecorr.saturation(age, A, B, C) - agecorr.saturation(REF, A, B, C)
    controls = np.arange(50) < 20
    res = agecorr.correct_region(y, age, controls, REF, fixed={"a": A, "b": B, "c": C})
    assert res.fit.method == "fixed"
    np.testing.assert_allclose(res.adjusted, corrected_true, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(res.sd, 0.0)


def test_bootstrap_sd_is_seeded_and_grows_away_from_the_reference_age(rng):
    age, y = _controls(rng, 40)
    all_age = np.r_[age, [32.0, 63.0]]
    all_y = np.r_[y, [30.0, 35.0]]
    ctl = np.r_[np.ones(40, bool), [False, False]]
    one = agecorr.correct_region(all_y, all_age, ctl, REF, n_boot=100, seed=3)
    two = agecorr.correct_region(all_y, all_age, ctl, REF, n_boot=100, seed=3)
    np.testing.assert_array_equal(one.sd, two.sd)
    assert one.sd[-2] == pytest.approx(0.0, abs=1e-12)  # at the reference age
    assert one.sd[-1] > np.median(one.sd[:40]) > 0
    band = one.band
    assert len(band["age"]) == 60 and np.all(np.asarray(band["low"]) <= band["high"])
    # the band covers the true curve over most of the controls' ages
    grid = np.asarray(band["age"])
    inside = (grid >= 18) & (grid <= 57)
    truth = agecorr.saturation(grid, A, B, C)
    covered = (np.asarray(band["low"]) <= truth) & (truth <= np.asarray(band["high"]))
    assert covered[inside].mean() > 0.8


def test_extrapolation_is_named_and_bounded_by_the_plateau(rng):
    age, y = _controls(rng, 40, hi=50.0)
    all_age, all_y = np.r_[age, [60.0, 75.0]], np.r_[y, [36.0, 36.0]]
    ctl = np.r_[np.ones(40, bool), [False, False]]
    res = agecorr.correct_region(all_y, all_age, ctl, REF, n_boot=0, label="caudate")
    fit = res.fit
    assert res.extrapolation["n"] == 2 and "saturation curve" in res.extrapolation["how"]
    assert any("caudate: 2 participant(s) aged 60-75 y outside" in m for m in res.messages)
    # beyond the oldest control the curve rises by at most its remaining amplitude
    hi = fit.age_range[1]
    assert res.extrapolation["max_shift"] <= fit.a * np.exp(-fit.b * hi) + 1e-9
    assert fit.predict(200.0) <= fit.c + fit.a + 1e-9
    lin = agecorr.correct_region(all_y, all_age, ctl, REF, method="linear", n_boot=0)
    assert "held at the nearest end" in lin.extrapolation["how"]


def test_none_means_no_correction(rng):
    age, y = _controls(rng, 20)
    res = agecorr.correct_region(y, age, np.ones(20, bool), REF, method="none")
    np.testing.assert_array_equal(res.adjusted, y)
    assert res.fit.model == "none" and res.fit.warning is None and not res.messages


@pytest.mark.parametrize(("ages", "fragment"), [
    ([30.0, 40.0], "only 2 controls"),
    ([35.0, 35.0, 35.0, 35.0], "all 4 controls are aged 35 years"),
])
@pytest.mark.parametrize("method", ["auto", "seed", "prior", "linear"])
def test_too_few_or_one_age_excludes_the_region(ages, fragment, method):
    n = len(ages)
    values = np.r_[np.full(n, 25.0), [30.0, 31.0]]
    all_age = np.r_[ages, [40.0, 50.0]]
    ctl = np.r_[np.ones(n, bool), [False, False]]
    res = agecorr.correct_region(values, all_age, ctl, REF, method=method, label="red_nucleus")
    assert res.fit.model == "none" and np.all(np.isnan(res.adjusted))
    assert any(m.startswith("red_nucleus: no age model") and fragment in m
               and "region excluded" in m for m in res.messages), res.messages


def test_ages_outside_0_120_are_not_used_and_named(rng):
    age, y = _controls(rng, 30)
    age[:2] = [-4.0, 130.0]
    res = agecorr.correct_region(y, age, np.ones(30, bool), REF, n_boot=0, label="caudate")
    assert np.isnan(res.adjusted[:2]).all() and np.isfinite(res.adjusted[2:]).all()
    assert res.fit.n == 28
    assert any("2 age(s) outside 0-120 years (-4, 130)" in m for m in res.messages)


def test_unknown_age_model_is_refused():
    with pytest.raises(ValueError, match="unknown age model 'cubic'"):
        agecorr.fit_age_model([20.0, 30.0, 40.0], [1.0, 2.0, 3.0], "cubic")


def test_auto_is_unbiased_where_the_line_is_not_on_simulated_cohorts():
    """Seed-size simulated cohorts (81 controls 18-57 y): the progressive groups' corrected
    means are not pulled toward the controls by the auto model as they are by the line."""
    from _sim_tables import progressive_errors
    from ironmap.sim import cohort

    errors = progressive_errors(cohort.SEED_COUNTS, cohort.SEED_SITES, range(3),
                                ("auto", "linear"), REF)
    auto, line = np.asarray(errors["auto"]), np.asarray(errors["linear"])
    assert abs(auto.mean()) < 0.15 and line.mean() < -0.3
    assert np.sqrt(np.mean(auto**2)) < np.sqrt(np.mean(line**2))
