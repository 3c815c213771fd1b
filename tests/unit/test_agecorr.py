"""Age model: recovery, confidence-interval coverage, adjustment, fallbacks, per-site mode."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ironmap
from ironmap import agecorr

A, B, C = 12.0, 0.08, 14.0


def _draw(rng, n=80, sd=0.6, lo=10.0, hi=75.0):
    age = rng.uniform(lo, hi, n)
    return age, agecorr.saturation(age, A, B, C) + rng.normal(0, sd, n)


def test_public_modules_resolve():
    import ironmap.agecorr as public_agecorr
    import ironmap.stats as public_stats

    assert ironmap.agecorr is public_agecorr and ironmap.stats is public_stats
    assert callable(public_stats.mann_whitney) and callable(public_agecorr.fit_saturation)


def test_fit_saturation_recovers_parameters_within_ci(rng):
    age, y = _draw(rng)
    fit = agecorr.fit_saturation(age, y)
    assert fit.model == "saturation" and fit.warning is None
    for name, true in (("a", A), ("b", B), ("c", C)):
        lo, hi = fit.ci[name]
        assert lo < true < hi, (name, fit.ci[name])
    assert fit.a_se > 0 and fit.b_se > 0 and fit.c_se > 0
    assert fit.diagnostics["residual_sd"] == pytest.approx(0.6, rel=0.25)
    assert fit.diagnostics["saturation_reached"] > 0.9


def test_confidence_intervals_cover_at_nominal_rate(rng):
    hits = 0
    reps = 60
    for _ in range(reps):
        age, y = _draw(rng, n=60, sd=1.0)
        fit = agecorr.fit_saturation(age, y, warn=False)
        hits += fit.model == "saturation" and fit.ci["b"][0] < B < fit.ci["b"][1]
    # 95% intervals: P(hits <= 51 | p = 0.95, n = 60) ~ 0.01
    assert hits >= 52


def test_adjust_moves_subjects_along_the_curve(rng):
    age, y = _draw(rng, sd=0.0)
    fit = agecorr.fit_saturation(age, y + rng.normal(0, 1e-6, age.size))
    ref = 32.0
    adjusted = fit.adjust(y, age, ref)
    np.testing.assert_allclose(adjusted, agecorr.saturation(ref, A, B, C), atol=1e-3)
    # a subject at the reference age is unchanged; the formula is y - f(age) + f(ref)
    assert fit.adjust([25.0], [ref], ref)[0] == pytest.approx(25.0)
    np.testing.assert_allclose(fit.adjust(y, age, ref),
                               y - fit.predict(age) + fit.predict(ref))


def test_flat_data_falls_back_to_linear_with_warning(rng):
    age = rng.uniform(18, 57, 81)
    y = 20.0 + rng.normal(0, 2.0, 81)
    with pytest.warns(agecorr.AgeModelWarning, match="not identifiable"):
        fit = agecorr.fit_saturation(age, y)
    assert fit.model == "linear"
    assert np.isnan(fit.a) and np.isfinite(fit.slope) and "linear" in fit.warning
    assert abs(fit.slope) < 3 * fit.se["slope"] + 1e-12
    # the linear fallback still adjusts: y - slope * (age - ref)
    np.testing.assert_allclose(fit.adjust(y, age, 30.0), y - fit.slope * (age - 30.0))


def test_too_few_controls_gives_no_model_and_nan(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", agecorr.AgeModelWarning)
        fit = agecorr.fit_saturation([30.0, 40.0], [20.0, 21.0])
    assert fit.model == "none" and "no age model" in fit.warning
    assert np.all(np.isnan(fit.adjust([20.0], [30.0], 32.0)))


def test_age_correct_per_site_removes_site_offsets(rng):
    n = 240
    age = rng.uniform(18, 70, n)
    site = np.array(["s1", "s2", "s3"])[np.arange(n) % 3]
    offset = np.select([site == "s1", site == "s2"], [0.0, 2.0], -1.5)
    controls = np.arange(n) % 2 == 0
    y = agecorr.saturation(age, A, B, C) + offset + rng.normal(0, 0.3, n)
    pooled_adj, pooled, _, _ = agecorr.age_correct(y, age, controls, 32.0)
    site_adj, _, site_fits, msgs = agecorr.age_correct(y, age, controls, 32.0, sites=site,
                                                       per_site=True, label="caudate")
    assert set(site_fits) == {"s1", "s2", "s3"}
    spread = [np.ptp([np.mean(a[site == s]) for s in ("s1", "s2", "s3")])
              for a in (pooled_adj, site_adj)]
    assert spread[0] > 3.0 and spread[1] < 0.3


def test_age_correct_site_without_controls_is_nan_and_named(rng):
    age = rng.uniform(18, 70, 60)
    site = np.where(np.arange(60) < 50, "s1", "s2")
    controls = (np.arange(60) % 2 == 0) & (site == "s1")
    y = agecorr.saturation(age, A, B, C) + rng.normal(0, 0.3, 60)
    adj, _, _, msgs = agecorr.age_correct(y, age, controls, 32.0, sites=site, per_site=True,
                                          label="red_nucleus")
    assert np.all(np.isnan(adj[site == "s2"])) and np.all(np.isfinite(adj[site == "s1"]))
    assert any("red_nucleus, s2: no controls" in m for m in msgs)


def test_linear_fallback_is_never_extrapolated():
    """A line fitted on controls aged 23-28 must not move a 50-year-old by 22 years' slope."""
    from ironmap.core.group.age_correction import fit_linear

    age = np.array([23.0, 25.0, 26.0, 28.0])
    y = 30.0 - 1.0 * (age - 23.0)
    fit = fit_linear(age, y)
    assert fit.slope == pytest.approx(-1.0)
    # inside the range: moved along the line
    assert fit.adjust([30.0], [24.0], 26.0)[0] == pytest.approx(30.0 - 2.0)
    # outside: held at the oldest control (28), reference inside -> shift of f(26) - f(28)
    assert fit.adjust([30.0], [50.0], 26.0)[0] == pytest.approx(30.0 + 2.0)
    # reference outside the range is clipped too
    assert fit.adjust([30.0], [26.0], 40.0)[0] == pytest.approx(30.0 - 2.0)
