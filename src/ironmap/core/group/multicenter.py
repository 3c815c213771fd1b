"""Multicenter checks: inter-site variation of controls, site covariate and mixed models.

- :func:`intersite_cv`: coefficient of variation of the per-site mean R2* of controls,
  ``SD(site means) / mean(site means)`` (sample SD), per region.
- :func:`group_effects_site_adjusted`: OLS ``y ~ C(group) + C(site)``; each phenotype's
  coefficient against the controls with its p-value (site as a fixed covariate).
- :func:`group_effects_mixed`: linear mixed model ``y ~ C(group)`` with a random intercept
  per site (:func:`statsmodels.formula.api.mixedlm`, REML), a sensitivity analysis for the
  rank tests, which ignore sites.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["intersite_cv", "group_effects_site_adjusted", "group_effects_mixed"]


def intersite_cv(values, sites, *, min_per_site: int = 2) -> dict:
    """Inter-site coefficient of variation of a region's control R2*.

    Parameters
    ----------
    values : array_like of shape (n,)
        Controls' R2* (s^-1); NaN dropped.
    sites : array_like of shape (n,)
        Site labels.
    min_per_site : int
        Sites with fewer controls are left out.

    Returns
    -------
    dict
        ``cv`` (fraction, NaN with fewer than 2 sites), ``n_sites``, ``site_means``
        (site -> mean s^-1), ``site_n``.
    """
    df = pd.DataFrame({"y": np.asarray(values, dtype=float), "site": np.asarray(sites)})
    df = df.dropna()
    g = df.groupby("site")["y"].agg(["mean", "size"])
    g = g[g["size"] >= min_per_site]
    means = g["mean"].to_numpy(float)
    cv = float(np.std(means, ddof=1) / np.mean(means)) if means.size >= 2 else float("nan")
    return {"cv": cv, "n_sites": int(means.size),
            "site_means": {str(k): float(v) for k, v in g["mean"].items()},
            "site_n": {str(k): int(v) for k, v in g["size"].items()}}


def _frame(values, groups, sites) -> pd.DataFrame:
    df = pd.DataFrame({"y": np.asarray(values, dtype=float),
                       "grp": np.asarray(groups).astype(str),
                       "site": np.asarray(sites).astype(str)})
    return df.dropna()


def _effects(res, df: pd.DataFrame, control: str) -> dict:
    out = {}
    for g in sorted(set(df["grp"]) - {control}):
        term = f"C(grp, Treatment({control!r}))[T.{g}]"
        if term in res.params.index:
            out[g] = {"estimate": float(res.params[term]), "se": float(res.bse[term]),
                      "pvalue": float(res.pvalues[term])}
    return out


def group_effects_site_adjusted(values, groups, sites, control: str) -> dict:
    """Group differences from the controls with site as a fixed covariate (OLS).

    Parameters
    ----------
    values : array_like of shape (n,)
        R2* (s^-1).
    groups, sites : array_like of shape (n,)
        Group and site labels.
    control : str
        Label of the reference group.

    Returns
    -------
    dict
        ``effects`` (group -> estimate (s^-1), se, pvalue), ``n``, ``model``.
    """
    import statsmodels.formula.api as smf

    df = _frame(values, groups, sites)
    formula = f"y ~ C(grp, Treatment({control!r}))"
    if df["grp"].nunique() < 2 or control not in set(df["grp"]):
        return {"effects": {}, "n": int(len(df)), "model": formula,
                "error": "needs the controls and at least one other group"}
    if df["site"].nunique() > 1:
        formula += " + C(site)"
    res = smf.ols(formula, data=df).fit()
    return {"effects": _effects(res, df, control), "n": int(len(df)), "model": formula}


def group_effects_mixed(values, groups, sites, control: str) -> dict:
    """Group differences from the controls with a random intercept per site (REML).

    Parameters
    ----------
    values : array-like of shape (n,)
        R2* in s^-1.
    groups, sites : array-like of shape (n,)
        Group and site labels.
    control : str
        The controls' label.

    Returns
    -------
    dict
        ``effects`` (group -> estimate, se, pvalue), ``site_variance`` (s^-2),
        ``residual_variance``, ``converged``, ``n``, ``n_sites``, ``model``; ``error`` instead
        when the model cannot be fitted (fewer than 2 sites).
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    df = _frame(values, groups, sites)
    formula = f"y ~ C(grp, Treatment({control!r}))"
    base = {"n": int(len(df)), "n_sites": int(df["site"].nunique()),
            "model": formula + " + (1 | site)"}
    if base["n_sites"] < 2:
        return {**base, "error": "fewer than 2 sites: no random site intercept"}
    if df["grp"].nunique() < 2 or control not in set(df["grp"]):
        return {**base, "error": "needs the controls and at least one other group"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            res = smf.mixedlm(formula, df, groups=df["site"]).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return {**base, "error": f"mixed model failed: {exc}"}
    converged = bool(res.converged) and not any(
        issubclass(w.category, ConvergenceWarning) for w in caught)
    return {**base, "effects": _effects(res, df, control),
            "site_variance": float(res.cov_re.iloc[0, 0]), "residual_variance": float(res.scale),
            "converged": converged}
