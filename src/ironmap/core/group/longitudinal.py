"""Longitudinal R2* change: linear mixed models with a random intercept and slope per participant.

Per region (and hemisphere) the model is

``y_ij = a_g + b_g t_ij + s_site + u_0i + u_1i t_ij + e_ij``

with ``y`` the R2* (s^-1) of participant ``i`` at scan ``j``, ``t`` the years since the
participant's first scan, ``a_g`` and ``b_g`` the intercept and annual change of the
participant's group ``g``, ``s_site`` a fixed site effect (treatment coded, only with more
than one site), ``(u_0i, u_1i)`` a participant's random intercept and slope (unstructured
covariance) and ``e`` the residual. It is fitted by REML with
:func:`statsmodels.formula.api.mixedlm`; ``b_g`` is reported with its Wald 95 % confidence
interval ``b_g +- 1.96 SE``. When the random-slope model does not converge (e.g. two scans per
participant and little spread in the intervals) the random-intercept model is fitted instead and
the table says so (``model``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["years_since_first", "fit_change_rates", "change_rate_table", "LONGITUDINAL_COLUMNS"]

LONGITUDINAL_COLUMNS = ("region", "hemisphere", "group", "r2star_change_per_year",
                        "ci_low", "ci_high", "se", "pvalue", "n_participants", "n_scans",
                        "model", "converged")


def years_since_first(participant_ids, ages) -> np.ndarray:
    """Years since each participant's first scan, from the age at each scan (years).

    Parameters
    ----------
    participant_ids : array_like of shape (n,)
    ages : array_like of shape (n,)
        Age at each scan (years); NaN stays NaN.

    Returns
    -------
    ndarray of shape (n,)
    """
    age = pd.Series(np.asarray(ages, dtype=float))
    first = age.groupby(np.asarray(participant_ids)).transform("min")
    return (age - first).to_numpy()


def _fit(df: pd.DataFrame, formula: str, re_formula: str | None):
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        res = smf.mixedlm(formula, df, groups=df["participant_id"],
                          re_formula=re_formula).fit(reml=True, method=["lbfgs", "powell"])
    converged = bool(res.converged) and not any(
        issubclass(w.category, ConvergenceWarning) for w in caught)
    return res, converged


def fit_change_rates(data: pd.DataFrame, *, level: float = 0.95) -> dict:
    """Annual R2* change per group from one region's repeated measures.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per scan: ``participant_id``, ``years`` (since the first scan), ``group``,
        ``site`` and ``y`` (R2*, s^-1). Rows with missing values are dropped.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        ``rates``: group -> ``{estimate, se, ci_low, ci_high, pvalue, n_participants,
        n_scans}`` (s^-1/year); ``model`` (``"random intercept + slope"`` or
        ``"random intercept"``), ``converged``, ``formula``; ``error`` when no model could be
        fitted (fewer than 2 participants with 2 scans).
    """
    df = data[["participant_id", "years", "group", "site", "y"]].dropna().copy()
    df["group"] = df["group"].astype(str)
    df["site"] = df["site"].astype(str)
    repeated = df.groupby("participant_id")["years"].transform("nunique") >= 2
    if df.loc[repeated, "participant_id"].nunique() < 2:
        return {"rates": {}, "error": "fewer than 2 participants with 2 or more scans"}
    formula = "y ~ 0 + C(group) + C(group):years"
    if df["site"].nunique() > 1:
        formula += " + C(site)"
    out: dict = {"formula": formula}
    try:
        res, ok = _fit(df, formula, "~years")
        out["model"] = "random intercept + slope"
        if not ok:
            raise np.linalg.LinAlgError("random-slope model did not converge")
    except (np.linalg.LinAlgError, ValueError):
        try:
            res, ok = _fit(df, formula, None)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return {"rates": {}, "error": f"mixed model failed: {exc}", "formula": formula}
        out["model"] = "random intercept"
    out["converged"] = ok
    z = norm.ppf(0.5 + level / 2)
    rates = {}
    for group in sorted(df["group"].unique()):
        term = f"C(group)[{group}]:years"
        if term not in res.params.index:
            continue
        est, se = float(res.params[term]), float(res.bse[term])
        sel = df[df["group"] == group]
        rates[group] = {"estimate": est, "se": se, "ci_low": est - z * se,
                        "ci_high": est + z * se, "pvalue": float(res.pvalues[term]),
                        "n_participants": int(sel["participant_id"].nunique()),
                        "n_scans": int(len(sel))}
    out["rates"] = rates
    return out


def change_rate_table(scans: pd.DataFrame, value_column: str, *,
                      level: float = 0.95) -> pd.DataFrame:
    """Fit :func:`fit_change_rates` per region and hemisphere.

    Parameters
    ----------
    scans : pandas.DataFrame
        One row per scan and region: ``participant_id, region, hemisphere, years, group,
        site`` and ``value_column`` (R2*, s^-1).
    value_column : str
    level : float

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LONGITUDINAL_COLUMNS` (rates and CI in s^-1/year).
    """
    rows = []
    for (region, hemi), part in scans.groupby(["region", "hemisphere"], sort=False):
        fit = fit_change_rates(part.assign(y=pd.to_numeric(part[value_column],
                                                           errors="coerce")), level=level)
        for group, r in fit["rates"].items():
            rows.append({"region": region, "hemisphere": hemi, "group": group,
                         "r2star_change_per_year": r["estimate"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "se": r["se"], "pvalue": r["pvalue"],
                         "n_participants": r["n_participants"], "n_scans": r["n_scans"],
                         "model": fit["model"], "converged": fit["converged"]})
    return pd.DataFrame(rows, columns=list(LONGITUDINAL_COLUMNS))
