"""Multicenter helpers: inter-site CV, site-adjusted OLS and the random-site-intercept model."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap import stats


def test_intersite_cv_by_definition():
    values = [9, 11, 12, 12, 13, 15, 99]
    sites = ["a", "a", "b", "b", "c", "c", "d"]  # site d has one control: left out
    res = stats.intersite_cv(values, sites)
    # site means 10, 12, 14: SD 2, mean 12
    assert res["cv"] == pytest.approx(2.0 / 12.0)
    assert res["n_sites"] == 3 and "d" not in res["site_means"]


def _multisite(rng, n=240, n_sites=6, effect=3.0, site_sd=2.0):
    sites = np.array([f"s{i % n_sites}" for i in range(n)])
    offsets = dict(zip(np.unique(sites), rng.normal(0, site_sd, n_sites), strict=True))
    groups = np.where(rng.random(n) < 0.5, "HC", "RRMS")
    y = (30.0 + np.vectorize(offsets.get)(sites) + effect * (groups == "RRMS")
         + rng.normal(0, 1.5, n))
    return y, groups, sites


def test_mixed_model_recovers_group_effect_and_site_variance(rng):
    y, groups, sites = _multisite(rng)
    res = stats.group_effects_mixed(y, groups, sites, "HC")
    eff = res["effects"]["RRMS"]
    assert abs(eff["estimate"] - 3.0) < 3 * eff["se"] and eff["pvalue"] < 1e-10
    assert res["converged"] and res["n_sites"] == 6 and res["site_variance"] > 0.5
    assert res["residual_variance"] == pytest.approx(1.5**2, rel=0.3)


def test_site_adjusted_ols_and_degenerate_inputs(rng):
    y, groups, sites = _multisite(rng)
    res = stats.group_effects_site_adjusted(y, groups, sites, "HC")
    eff = res["effects"]["RRMS"]
    assert abs(eff["estimate"] - 3.0) < 3 * eff["se"] and "C(site)" in res["model"]
    one_site = stats.group_effects_mixed(y, groups, np.full(y.size, "s0"), "HC")
    assert "error" in one_site
    one_group = stats.group_effects_mixed(y, np.full(y.size, "HC"), sites, "HC")
    assert "error" in one_group
