"""Age models on simulated cohorts: error of the age-corrected group means against the truth.

Cohorts come from the simulator's plan (:func:`ironmap.sim.truth.plan_cohort`: participants,
sites and regional truth at the seed's ages, the same draw as ``ironmap simulate``), without
images: the bilateral regional R2* of each participant is the value the images carry (age curve
and site bias included, ``regions.tsv`` ``r2star_true``) plus Gaussian measurement noise
(``--noise``, SD in s^-1). Each age model is fitted on the controls and applied to everyone
(:func:`ironmap.core.group.age_correction.correct_region`, reference age 32 y, as ``ironmap
group``). The truth of each participant is the same noisy value corrected with the true curve,
``y - f_true(age) + f_true(32)``, so the error of a group mean is the error of the fitted curve
alone.

Oracles (floors): ``true-b`` fixes ``b`` at the simulator's value and fits ``a`` and ``c`` (what
an exact prior on the rate would give; its ``se`` column is the analytic SE of the group mean's
correction); ``true-ab`` fixes ``a`` and ``b`` and fits ``c``: its error is 0 by construction,
because the correction ``f(ref) - f(age) = a (exp(-b age) - exp(-b ref))`` does not involve
``c``. ``pooled`` estimates its pooled prior on each cohort's 8 regions. The ``se`` column of
``auto``, ``linear`` and ``pooled`` is the bootstrap SE (200 resamples of the controls, as
``ironmap group``; for ``pooled`` that of ``auto``, as ``ironmap group`` reports it) of the
group mean's correction; ``coverage`` = share of |error| <= 1.96 se.

A second table (:func:`attainable`) puts each model beside the ``true-b`` oracle, for targets
that an estimator seeing only the controls can meet: the RMS error over cohorts of every
region x group cell against the limit (0.5 s^-1 at 81 controls, 1.0 at 24) or against the
oracle's own RMS in that cell where that is larger, the RMS over all cases relative to the
oracle's, and how often each error lies within the oracle's own
(analytic) standard error: per case within 1.96 SE, per cohort every one of its 32 means
within z_32 SE, z_32 = 3.16 the two-sided Bonferroni 95 % quantile for 32 means (a cohort the
known-rate fit passes with about 95 % probability when its SEs are right), and every mean within
the limit or that band, whichever is wider (the issue's limits, widened only where the
known-rate fit itself cannot meet them).

    python benchmarks/agemodel.py --seeds 0-19 --out agemodel_benchmark.tsv
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ironmap.core.group import age_correction, age_fits, age_pooling
from ironmap.sim import cohort, truth

SIZES = {24: ({"HC": 24, "RRMS": 24, "SPMS": 6, "PPMS": 6}, 3),
         81: (dict(cohort.SEED_COUNTS), cohort.SEED_SITES)}
METHODS = ("fallback", "seed", "linear", "auto", "pooled", "prior", "true-b", "true-ab")
REFERENCE_AGE = 32.0
N_BOOT = 200  # the group level's default
ORACLE = "true-b"
N_MEANS = 32  # 8 regions x 4 groups per cohort
#: two-sided 95 % quantile, Bonferroni-corrected for the 32 means of a cohort (3.16)
Z_COHORT = float(stats.norm.ppf(1 - 0.025 / N_MEANS))


def _group_mean_se(age, y, hc, groups, method) -> dict:
    """Bootstrap SE of each group's mean correction f(ref) - f(age) (``ironmap group``'s
    resampling of the controls, seed 0)."""
    evals = np.r_[age, REFERENCE_AGE]
    curves = age_fits.bootstrap_curves(age[hc], y[hc], evals, method, N_BOOT, 0,
                                       age_range=(age[hc].min(), age[hc].max()))
    corr = curves[:, [-1]] - curves[:, :-1]
    return {g: float(np.std(corr[:, groups == g].mean(axis=1), ddof=1))
            for g in cohort.GROUPS}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def _oracle_b_se(age, y, hc, groups, b) -> dict:
    """Analytic SE of each group's mean correction when ``b`` is known and ``a``, ``c`` are
    fitted by least squares: ``s |mean_g x - x_ref| / sqrt(Sxx)``, ``x = 1 - exp(-b age)``."""
    x = age_fits.saturation_design(age, b)
    res = age_fits.fit_fixed_rate(age[hc], y[hc], b)
    s = np.sqrt(res["rss"] / res["dof"])
    sxx = float(np.sum((x[hc] - x[hc].mean()) ** 2))
    x_ref = float(age_fits.saturation_design(REFERENCE_AGE, b))
    return {g: float(s * abs(x[groups == g].mean() - x_ref) / np.sqrt(sxx))
            for g in cohort.GROUPS}


def simulated_regions(n_controls: int, seed: int, noise: float,
                      control_ages: str = "random") -> list[dict]:
    """Bilateral regional R2* of one cohort drawn as ``ironmap simulate`` draws it.

    Returns, per region, ``region``, ``age`` (years), ``y`` (s^-1: the value the images carry
    plus Gaussian noise of SD ``noise``), ``hc`` (bool), ``groups`` and the true ``a``, ``b``,
    ``c``. ``control_ages``: as :func:`ironmap.sim.truth.plan_cohort` (``span``: the controls
    evenly spread over 18-57 y).
    """
    counts, n_sites = SIZES[n_controls]
    plan = truth.plan_cohort(counts, n_sites, seed, control_ages=control_ages)
    regions = truth.regions_table(plan)
    bil = regions[regions["hemisphere"] == "bilateral"].merge(
        plan.participants[["participant_id", "group", "age"]], on="participant_id")
    rng = np.random.default_rng([seed, 1])
    curves = plan.agecurves.set_index("region")
    out = []
    for region, d in bil.groupby("region", sort=False):
        a, b, c = curves.loc[region, ["a", "b", "c"]]
        age = d["age"].to_numpy(float)
        out.append({"region": region, "age": age,
                    "y": d["r2star_true"].to_numpy(float) + rng.normal(0.0, noise, age.size),
                    "hc": (d["group"] == "HC").to_numpy(), "groups": d["group"].to_numpy(),
                    "a": float(a), "b": float(b), "c": float(c)})
    return out


def _method_kwargs(method: str, r: dict, pool) -> dict:
    if method == "true-b":  # b known ("prior" fixes b at the prior's median), a, c fitted
        return {"method": "prior", "prior": (float(np.log(r["b"])), 1.0)}
    if method == "true-ab":  # a and b known, c fitted (the correction does not depend on c)
        c = float(np.mean(r["y"][r["hc"]] - r["a"] * age_fits.saturation_design(
            r["age"][r["hc"]], r["b"])))
        return {"method": "auto", "fixed": {"a": r["a"], "b": r["b"], "c": c}}
    if method == "pooled":
        return {"method": "pooled", "pool": pool}
    return {"method": method}


def cohort_errors(n_controls: int, seed: int, noise: float,
                  control_ages: str = "random") -> pd.DataFrame:
    """One simulated cohort: per method, region and group, fitted minus true corrected mean."""
    data = simulated_regions(n_controls, seed, noise, control_ages)
    pool = age_pooling.pool_prior([(r["age"][r["hc"]], r["y"][r["hc"]]) for r in data])
    rows = []
    for r in data:
        age, y, hc, groups = r["age"], r["y"], r["hc"], r["groups"]
        true = (y - cohort.age_curve(age, r["a"], r["b"], r["c"])
                + cohort.age_curve(REFERENCE_AGE, r["a"], r["b"], r["c"]))
        se = {m: _group_mean_se(age, y, hc, groups, m) for m in ("auto", "linear")}
        se["pooled"] = se["auto"]  # what ironmap group reports for pooled (auto's spread)
        se["true-b"] = _oracle_b_se(age, y, hc, groups, r["b"])
        for method in METHODS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", age_correction.AgeModelWarning)
                res = age_correction.correct_region(y, age, hc, REFERENCE_AGE, n_boot=0,
                                             **_method_kwargs(method, r, pool))
            for group in cohort.GROUPS:
                sel = groups == group
                rows.append({"n_controls": n_controls, "seed": seed, "method": method,
                             "model": res.fit.model, "region": r["region"], "group": group,
                             "error": float(np.mean(res.adjusted[sel]) - np.mean(true[sel])),
                             "se": se.get(method, {}).get(group, np.nan)})
    return pd.DataFrame(rows)


def summarise(errors: pd.DataFrame) -> pd.DataFrame:
    """Per size and method: worst |error| over regions x groups x seeds, per-group RMS, and the
    share of cohorts with every region x group within the threshold (0.5 s^-1 at 81 controls,
    1.0 at 24), and for ``auto`` and ``linear`` how often |error| <= 1.96 bootstrap SE of the
    group mean's correction (coverage of the propagated uncertainty)."""
    err = errors.assign(abs=errors["error"].abs())
    worst = err.groupby(["n_controls", "method", "seed"])["abs"].max().reset_index()
    worst["limit"] = _limit(worst["n_controls"])
    worst["ok"] = worst["abs"] <= worst["limit"]
    out = worst.groupby(["n_controls", "method"]).agg(
        cohorts=("seed", "size"), cohorts_within=("ok", "sum"),
        worst_abs_error=("abs", "max"), median_worst=("abs", "median"))
    err["covered"] = err["abs"] <= 1.96 * err["se"]
    boot = err[err["se"].notna()].groupby(["n_controls", "method"]).agg(
        coverage=("covered", "mean"), mean_se=("se", "mean"))
    out = out.join(boot)
    rms = err.groupby(["n_controls", "method", "group"])["error"].apply(
        lambda e: float(np.sqrt(np.mean(e**2)))).unstack("group")
    out = out.join(rms.add_prefix("rms_"))
    order = {m: i for i, m in enumerate(METHODS)}
    return out.reset_index().sort_values(["n_controls", "method"],
                                         key=lambda s: s.map(order) if s.name == "method"
                                         else s)


def _limit(n_controls) -> np.ndarray:
    return np.where(np.asarray(n_controls) >= 81, 0.5, 1.0)


def _rms(e) -> float:
    return float(np.sqrt(np.mean(np.square(e))))


def attainable(errors: pd.DataFrame) -> pd.DataFrame:
    """Per size and method, targets an estimator of the curve from the controls can meet.

    Parameters
    ----------
    errors : pandas.DataFrame
        :func:`cohort_errors` rows (``n_controls, seed, method, region, group, error, se``);
        the ``true-b`` rows' ``se`` is the oracle's analytic SE of each case.

    Returns
    -------
    pandas.DataFrame
        ``n_controls, method``; ``rms_all`` (s^-1, over every region x group x cohort case)
        and ``rms_vs_oracle`` (its ratio to the oracle's); ``median_cohort_rms`` (s^-1, median
        over cohorts of the RMS over a cohort's 32 means); ``worst_cell_rms`` (s^-1, largest
        RMS over cohorts of one region x group cell) and ``cells_rms_within`` (cells whose
        RMS over cohorts is within the limit, of ``cells``; ``cells_within_or_oracle``: within
        the limit or the oracle's own RMS in that cell, whichever is larger);
        ``within_oracle_se`` (share of cases with ``|error| <= 1.96 SE_oracle``) and
        ``cohorts_within_oracle`` (cohorts with every mean within ``Z_COHORT`` SE_oracle, of
        ``cohorts``); ``cohorts_within_limit_or_oracle`` (every mean within the limit or
        within ``Z_COHORT`` SE_oracle, whichever is wider).
    """
    keys = ["n_controls", "seed", "region", "group"]
    oracle = errors.loc[errors["method"] == ORACLE, keys + ["se"]].rename(
        columns={"se": "se_oracle"})
    err = errors.drop(columns="se").merge(oracle, on=keys, how="left")
    err["abs"] = err["error"].abs()
    err["in95"] = err["abs"] <= 1.96 * err["se_oracle"]
    err["in_band"] = err["abs"] <= Z_COHORT * err["se_oracle"]
    err["in_limit_or_band"] = err["abs"] <= np.maximum(_limit(err["n_controls"]),
                                                       Z_COHORT * err["se_oracle"])
    by = ["n_controls", "method"]
    cell = err.groupby(by + ["region", "group"])["error"].apply(_rms).rename("cell_rms")
    cell = cell.reset_index()
    cell["ok"] = cell["cell_rms"] <= _limit(cell["n_controls"])
    oracle_cell = cell.loc[cell["method"] == ORACLE, ["n_controls", "region", "group",
                                                      "cell_rms"]]
    cell = cell.merge(oracle_cell.rename(columns={"cell_rms": "oracle_rms"}),
                      on=["n_controls", "region", "group"], how="left")
    cell["ok_or_oracle"] = cell["cell_rms"] <= np.maximum(_limit(cell["n_controls"]),
                                                          cell["oracle_rms"])
    per_cohort = err.groupby(by + ["seed"]).agg(
        cohort_rms=("error", _rms), band=("in_band", "all"),
        limit_or_band=("in_limit_or_band", "all")).reset_index()
    out = err.groupby(by).agg(rms_all=("error", _rms), within_oracle_se=("in95", "mean"))
    out = out.join(per_cohort.groupby(by).agg(
        median_cohort_rms=("cohort_rms", "median"), cohorts_within_oracle=("band", "sum"),
        cohorts_within_limit_or_oracle=("limit_or_band", "sum"), cohorts=("seed", "size")))
    out = out.join(cell.groupby(by).agg(worst_cell_rms=("cell_rms", "max"),
                                        cells_rms_within=("ok", "sum"),
                                        cells_within_or_oracle=("ok_or_oracle", "sum"),
                                        cells=("ok", "size")))
    oracle_rms = out.xs(ORACLE, level="method")["rms_all"] if ORACLE in \
        out.index.get_level_values("method") else pd.Series(dtype=float)
    out["rms_vs_oracle"] = out["rms_all"] / out.index.get_level_values("n_controls").map(
        oracle_rms).to_numpy(float)
    cols = ["rms_all", "rms_vs_oracle", "median_cohort_rms", "worst_cell_rms",
            "cells_rms_within", "cells_within_or_oracle", "cells", "within_oracle_se",
            "cohorts_within_oracle", "cohorts_within_limit_or_oracle", "cohorts"]
    order = {m: i for i, m in enumerate(METHODS)}
    return out[cols].reset_index().sort_values(
        ["n_controls", "method"], key=lambda s: s.map(order) if s.name == "method" else s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5 (default 0-9)")
    parser.add_argument("--sizes", default="24,81", help="controls per cohort: 24 and/or 81")
    parser.add_argument("--noise", type=float, default=0.5,
                        help="measurement noise SD of regional R2* (s^-1, default 0.5)")
    parser.add_argument("--control-ages", choices=("random", "span"), default="random",
                        help="controls' ages drawn as the seed's Table 1 (default) or evenly "
                        "spread over 18-57 y")
    parser.add_argument("--out", default=None, help="write every error to this TSV")
    parser.add_argument("--errors", default=None,
                        help="summarise this TSV (an earlier --out) instead of drawing cohorts")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.errors:
        errors = pd.read_csv(args.errors, sep="\t")
    else:
        errors = pd.concat([cohort_errors(int(n), s, args.noise, args.control_ages)
                            for n in args.sizes.split(",") for s in _seeds(args.seeds)],
                           ignore_index=True)
    if args.out:
        errors.to_csv(args.out, sep="\t", index=False, float_format="%.4f")
    pd.set_option("display.width", 200)
    fmt = {"float_format": lambda v: f"{v:.2f}", "index": False}
    print(summarise(errors).to_string(**fmt))
    print(f"\nAttainable targets (beside the {ORACLE} oracle; z_32 = {Z_COHORT:.2f}):")
    print(attainable(errors).to_string(**fmt))
    print(f"\n{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
