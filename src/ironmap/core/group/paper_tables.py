"""The study's Table 1 (cohort) and Table 2 (regional R2* and its associations).

Pure pandas: inputs are a subject table (one row per participant, canonical columns from
:func:`ironmap.core.group.cohort_table.validate_participants` plus ``lesion_load_cm3``,
``lesion_r2star``, ``cortical_gm_cm3``, ``wm_cm3``) and a long regional table
(``participant_id``, ``region``, ``hemisphere``, ``r2star_agecorr``). Every test run is also
returned as a record (statistic, p, n, convention) for ``stats.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ironmap.core.group import inference as st
from ironmap.core.group.regression import stepwise

__all__ = ["GroupSettings", "table1", "table2_region", "CORRELATES"]

#: Variables correlated with age-corrected R2* (subject-table column -> title).
CORRELATES: dict[str, str] = {
    "cortical_gm_cm3": "cortical GM volume",
    "wm_cm3": "WM volume",
    "edss": "EDSS",
    "disease_duration": "disease duration",
    "lesion_load_cm3": "T2 lesion load",
}


@dataclass(frozen=True)
class GroupSettings:
    """Conventions of the group analysis (study.toml ``[groups]``, ``[agecorr]``, ``[stats]``)."""

    control: str = "HC"
    patients_label: str = "MS"
    phenotypes: tuple[str, ...] = ("CIS", "RRMS", "SPMS", "PPMS", "MS")
    alpha: float = 0.05
    normality_alpha: float = 0.05
    correlation_method: str = "auto"
    p_enter: float = 0.05
    p_remove: float = 0.10
    fdr: bool = False
    site_covariate: bool = False
    mixed_model: bool = True
    min_controls: int = 6
    max_rel_se_b: float = 0.5
    per_site: bool = False
    reference_age: float | None = None
    value_column: str = "r2star_mean"
    #: age model (``auto`` | ``seed`` | ``prior`` | ``linear`` | ``none``), bootstrap
    #: resamples of the controls for the correction's uncertainty (0: none) and their seed,
    #: and fixed curves ``{region: {"a": .., "b": .., "c": ..}}`` that replace the fit
    age_model: str = "auto"
    bootstrap: int = 200
    bootstrap_seed: int = 0
    fixed_curves: dict = field(default_factory=dict)


def _fmt(x: float, digits: int = 1) -> str:
    return "n.a." if not np.isfinite(x) else f"{x:.{digits}f}"


def _range_mean(values: pd.Series) -> dict:
    v = values.dropna().astype(float)
    if v.empty:
        return {"min": np.nan, "max": np.nan, "mean": np.nan, "sd": np.nan, "text": "n.a."}
    lo, hi, mean = float(v.min()), float(v.max()), float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else np.nan
    return {"min": lo, "max": hi, "mean": mean, "sd": sd,
            "text": f"{lo:g}-{hi:g} ({_fmt(mean)})"}


def _mean_sd(values: pd.Series) -> dict:
    v = values.dropna().astype(float)
    mean = float(v.mean()) if v.size else np.nan
    sd = float(v.std(ddof=1)) if v.size > 1 else np.nan
    return {"mean": mean, "sd": sd, "n": int(v.size),
            "text": "n.a." if v.empty else f"{_fmt(mean)} ({_fmt(sd)})"}


def group_order(subjects: pd.DataFrame, settings: GroupSettings) -> list[str]:
    """Phenotypes present, in the study's order (unknown extras sorted after).

    Parameters
    ----------
    subjects : pandas.DataFrame
        One row per participant with ``group``.
    settings : GroupSettings
        The study's phenotypes.

    Returns
    -------
    list of str
        Patient groups present.
    """
    present = [g for g in subjects["group"].dropna().unique() if g != settings.control]
    known = [g for g in settings.phenotypes if g in present]
    return known + sorted(set(present) - set(known))


def _aggregate(phenotypes: list[str], settings: GroupSettings) -> bool:
    """True when an "all patients" row is added (several phenotypes, label not taken)."""
    return len(phenotypes) > 1 and settings.patients_label not in phenotypes


def _cohorts(subjects: pd.DataFrame, settings: GroupSettings) -> list[tuple[str, pd.DataFrame]]:
    phen = group_order(subjects, settings)
    patients = subjects[~subjects["is_control"]]
    rows = [(settings.patients_label, patients)] if _aggregate(phen, settings) else []
    rows += [(g, subjects[subjects["group"] == g]) for g in phen]
    return rows + [(settings.control, subjects[subjects["is_control"]])]


def table1(subjects: pd.DataFrame, settings: GroupSettings) -> pd.DataFrame:
    """Table 1: per group n, sex, age, disease duration, EDSS, lesion load and volumes.

    Parameters
    ----------
    subjects : DataFrame
        One row per participant (canonical columns; ages and durations in years, volumes and
        lesion load in cm^3).
    settings : GroupSettings

    Returns
    -------
    DataFrame
        One row per group (all patients first when there are several phenotypes, controls
        last); numeric columns plus ``*_text`` columns formatted as in the seed's Table 1.
    """
    rows = []
    for label, sub in _cohorts(subjects, settings):
        row: dict = {"group": label, "n": int(len(sub)),
                     "n_female": int((sub["sex"] == "F").sum()),
                     "n_male": int((sub["sex"] == "M").sum())}
        row["sex_text"] = f"{row['n_female']}/{row['n_male']}"
        for col in ("age", "disease_duration", "edss"):
            for key, val in _range_mean(sub.get(col, pd.Series(dtype=float))).items():
                row[f"{col}_{key}"] = val
        for col in ("lesion_load_cm3", "cortical_gm_cm3", "wm_cm3"):
            for key, val in _mean_sd(sub.get(col, pd.Series(dtype=float))).items():
                row[f"{col}_{key}"] = val
        rows.append(row)
    return pd.DataFrame(rows)


def _record(region: str, test: str, statistic_name: str, res, n, convention: str,
            **extra) -> dict:
    stat = getattr(res, "statistic", np.nan)
    return {"region": region, "test": test, "statistic_name": statistic_name,
            "statistic": float(stat), "p": float(res.pvalue), "n": n,
            "convention": convention, **extra}


def _group_block(data: pd.DataFrame, settings: GroupSettings, region: str,
                 row: dict, records: list) -> None:
    cohorts = _cohorts(data, settings)
    for label, sub in cohorts:
        ms = _mean_sd(sub["y"])
        row[f"{label}_n"], row[f"{label}_mean"], row[f"{label}_sd"] = ms["n"], ms["mean"], ms["sd"]
    phen = group_order(data, settings)
    ctl = data.loc[data["is_control"], "y"]
    pairs = [(g, settings.control) for g in phen]
    if _aggregate(phen, settings):
        pairs.insert(0, (settings.patients_label, settings.control))
    pairs += [(a, b) for i, a in enumerate(phen) for b in phen[i + 1:]]
    for a, b in pairs:
        xa = data.loc[~data["is_control"], "y"] if a == settings.patients_label else \
            data.loc[data["group"] == a, "y"]
        xb = ctl if b == settings.control else data.loc[data["group"] == b, "y"]
        key = f"mw_{a}_vs_{b}"
        if xa.notna().sum() == 0 or xb.notna().sum() == 0:
            row[f"{key}_U"], row[f"{key}_p"], row[f"{key}_method"] = np.nan, np.nan, "n.a."
            continue
        res = st.mann_whitney(xa, xb)
        row[f"{key}_U"], row[f"{key}_p"], row[f"{key}_method"] = res.statistic, res.pvalue, \
            res.method
        records.append(_record(region, "mann_whitney", "U", res, [res.n_x, res.n_y],
                               f"U of {a}; {res.method}; two-sided", groups=[a, b]))


def _correlation_block(data, settings, region, row, records) -> list[str]:
    significant = []
    for cohort, sub in (("patients", data[~data["is_control"]]),
                        ("controls", data[data["is_control"]])):
        for var in CORRELATES:
            key = f"{var}_{cohort}"
            if var not in sub or sub[var].notna().sum() < 3:
                row[f"r_{key}"], row[f"p_{key}"], row[f"method_{key}"] = np.nan, np.nan, "n.a."
                continue
            res = st.correlate(sub["y"], sub[var], settings.correlation_method,
                               normality_alpha=settings.normality_alpha)
            row[f"r_{key}"], row[f"p_{key}"], row[f"method_{key}"] = res.r, res.pvalue, \
                res.method
            if not np.isfinite(res.pvalue):
                row[f"method_{key}"] = "n.a."
                continue
            conv = f"{res.method} ({res.pvalue_method}); two-sided"
            if res.normality:
                conv += (f"; chosen by Shapiro-Wilk on both variables at alpha "
                         f"{settings.normality_alpha}")
            records.append(_record(region, "correlation", "r", res, res.n, conv,
                                   variable=var, cohort=cohort, method=res.method,
                                   normality=res.normality))
            if cohort == "patients" and res.pvalue < settings.alpha:
                significant.append(var)
    return significant


def _stepwise_block(data, settings, region, candidates, row, records) -> None:
    for var in CORRELATES:
        row[f"beta_{var}"] = np.nan
    row.update(model_selected="", model_R=np.nan, model_R2=np.nan, model_p=np.nan, model_n=0)
    patients = data[~data["is_control"]]
    if not candidates:
        return
    try:
        res = stepwise(patients, "y", candidates, settings.p_enter, settings.p_remove)
    except ValueError as exc:
        row["model_selected"] = f"not fitted: {exc}"
        return
    for var in res.selected:
        row[f"beta_{var}"] = res.std_betas[var]
    row.update(model_selected=";".join(res.selected), model_R=res.r, model_R2=res.rsquared,
               model_p=res.f_pvalue, model_n=res.n)
    records.append({
        "region": region, "test": "stepwise_regression", "statistic_name": "F",
        "statistic": res.fvalue, "p": res.f_pvalue, "n": res.n, "candidates": candidates,
        "selected": res.selected, "std_betas": res.std_betas, "params": res.params,
        "r": res.r, "rsquared": res.rsquared, "steps": res.steps,
        "convention": (f"forward stepwise OLS in patients; enter at partial-F p < "
                       f"{settings.p_enter}, remove at p > {settings.p_remove}; "
                       "standardized betas; overall model F-test")})


def _sex_block(data, region, row, records) -> None:
    for cohort, sub in (("patients", data[~data["is_control"]]),
                        ("controls", data[data["is_control"]])):
        f, m = sub.loc[sub["sex"] == "F", "y"], sub.loc[sub["sex"] == "M", "y"]
        row[f"sex_t_{cohort}"] = row[f"sex_p_{cohort}"] = row[f"sex_p_welch_{cohort}"] = np.nan
        if f.notna().sum() < 2 or m.notna().sum() < 2:
            continue
        for equal_var, tag in ((True, ""), (False, "_welch")):
            res = st.ttest(f, m, equal_var=equal_var)
            if equal_var:
                row[f"sex_t_{cohort}"] = res.statistic
            row[f"sex_p{tag}_{cohort}"] = res.pvalue
            records.append(_record(region, "ttest_sex", "t", res, [res.n_x, res.n_y],
                                   f"F minus M; {res.method}; two-sided", cohort=cohort,
                                   df=res.df))


def table2_region(data: pd.DataFrame, settings: GroupSettings, region: str
                  ) -> tuple[dict, list[dict]]:
    """One Table 2 row: group means, rank tests, correlations, stepwise model, sex tests.

    Parameters
    ----------
    data : DataFrame
        Subject table with the region's age-corrected R2* (s^-1) in column ``y``.
    settings : GroupSettings
    region : str

    Returns
    -------
    row : dict
    records : list of dict
        Every test run, for ``stats.json``.
    """
    row: dict = {"region": region}
    records: list[dict] = []
    _group_block(data, settings, region, row, records)
    significant = _correlation_block(data, settings, region, row, records)
    _stepwise_block(data, settings, region, significant, row, records)
    _sex_block(data, region, row, records)
    return row, records


def multicenter_region(data: pd.DataFrame, settings: GroupSettings, region: str,
                       row: dict, records: list) -> dict:
    """Inter-site CV of controls, site-adjusted OLS and mixed-model group effects.

    Adds ``intersite_cv_controls`` (fraction), ``siteadj_{G}_estimate``/``_p`` (with
    ``settings.site_covariate``) and ``mixed_{G}_estimate``/``_p`` (with
    ``settings.mixed_model``) to ``row``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant with ``y`` (age-corrected R2*, s^-1), ``group``, ``site``.
    settings : GroupSettings
        The group settings.
    region : str
        The region.
    row : dict
        Its Table 2 row (changed in place).
    records : list
        The region's test records.

    Returns
    -------
    dict
        The details for ``stats.json``.
    """
    from ironmap.core.group import multicenter as mc

    ctl = data[data["is_control"]]
    cv = mc.intersite_cv(ctl["y"], ctl["site"])
    row["intersite_cv_controls"] = cv["cv"]
    out: dict = {"intersite_cv_controls": cv}
    models = []
    if settings.site_covariate:
        models.append(("siteadj", mc.group_effects_site_adjusted))
    if settings.mixed_model:
        models.append(("mixed", mc.group_effects_mixed))
    for tag, fn in models:
        res = fn(data["y"], data["group"], data["site"], settings.control)
        out[tag] = res
        for g, eff in res.get("effects", {}).items():
            row[f"{tag}_{g}_estimate"], row[f"{tag}_{g}_p"] = eff["estimate"], eff["pvalue"]
            records.append({"region": region, "test": f"{tag}_group_effect",
                            "statistic_name": "estimate (s^-1)", "statistic": eff["estimate"],
                            "se": eff["se"], "p": eff["pvalue"], "n": res["n"],
                            "groups": [g, settings.control], "convention": res["model"]})
    return out


def add_fdr(table: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values across regions for every rank-test and correlation p.

    ``mw_*_p`` gains ``mw_*_q``; ``p_{variable}_{cohort}`` gains ``q_{variable}_{cohort}``.
    Each column is corrected on its own (one family per comparison, over regions).

    Parameters
    ----------
    table : pandas.DataFrame
        Table 2.

    Returns
    -------
    pandas.DataFrame
        A copy with the q columns.
    """
    out = table.copy()
    for col in list(out.columns):
        if col.startswith("mw_") and col.endswith("_p"):
            out[col[:-2] + "_q"] = st.fdr_bh(out[col].to_numpy(float))
        elif col.startswith("p_"):
            out["q_" + col[2:]] = st.fdr_bh(out[col].to_numpy(float))
    return out


def lesion_analysis(subjects: pd.DataFrame, settings: GroupSettings) -> tuple[dict, list]:
    """Lesion R2* (not age-corrected) vs disease duration, lesion load and age, in patients.

    Parameters
    ----------
    subjects : pandas.DataFrame
        One row per participant with ``lesion_r2star`` (s^-1), ``lesion_load_cm3``,
        ``disease_duration``, ``age`` and the group.
    settings : GroupSettings
        The group settings.

    Returns
    -------
    summary : dict
        ``correlations`` (variable -> r, p, method, n) and ``regression`` (OLS of lesion R2*
        on disease duration and lesion load: params, std_betas, pvalues, r, rsquared,
        f_pvalue, n) or an ``error``.
    records : list of dict
    """
    from ironmap.core.group.regression import ols

    pts = subjects[~subjects["is_control"]]
    summary: dict = {"correlations": {}, "value": "lesion_r2star (s^-1, not age-corrected)"}
    records: list = []
    if "lesion_r2star" not in pts or pts["lesion_r2star"].notna().sum() < 3:
        summary["error"] = "fewer than 3 patients with lesion R2*"
        return summary, records
    for var in ("disease_duration", "lesion_load_cm3", "age"):
        if var not in pts or pts[var].notna().sum() < 3:
            continue
        res = st.correlate(pts["lesion_r2star"], pts[var], settings.correlation_method,
                           normality_alpha=settings.normality_alpha)
        summary["correlations"][var] = {"r": res.r, "p": res.pvalue, "method": res.method,
                                        "n": res.n}
        records.append(_record("lesions", "correlation", "r", res, res.n,
                               f"{res.method} ({res.pvalue_method}); two-sided",
                               variable=var, cohort="patients"))
    try:
        reg = ols(pts, "lesion_r2star", ["disease_duration", "lesion_load_cm3"])
    except (ValueError, KeyError) as exc:
        summary["regression"] = {"error": str(exc)}
        return summary, records
    summary["regression"] = {k: getattr(reg, k) for k in (
        "params", "pvalues", "std_betas", "r", "rsquared", "fvalue", "f_pvalue", "n")}
    records.append({"region": "lesions", "test": "multiple_regression", "statistic_name": "F",
                    "statistic": reg.fvalue, "p": reg.f_pvalue, "n": reg.n,
                    "std_betas": reg.std_betas, "pvalues": reg.pvalues,
                    "convention": "OLS lesion_r2star ~ disease_duration + lesion_load_cm3"})
    return summary, records
