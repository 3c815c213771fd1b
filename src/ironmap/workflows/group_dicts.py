"""Data dictionaries of the group tables and the ``stats.json`` document."""

from __future__ import annotations

import math
import platform
from typing import Any

import numpy as np
import pandas as pd

from ironmap.core.tables import CORRELATES, GroupSettings

R2 = "1/s"

AGECORR_COLUMN = {
    "Description": "R2* (from the analysed regional column) adjusted to the reference age "
    "along the controls' age curve: y - f(age) + f(reference age); see agefit.tsv",
    "Units": R2,
}

AGECORR_SD_COLUMN = {
    "Description": "Uncertainty of the age correction: SD of f(reference age) - f(age) over "
    "bootstrap resamples of the controls (refitting the same age model); 0 for fixed curves "
    "and no correction, n/a when not bootstrapped (per-site mode, bootstrap = 0)",
    "Units": R2,
}

_T1 = {
    "group": "Group (all patients, each phenotype, controls)",
    "n": "Number of participants", "n_female": "Number of women", "n_male": "Number of men",
    "sex_text": "Women/men",
}
_T1_VARS = {"age": ("age", "years"), "disease_duration": ("disease duration", "years"),
            "edss": ("EDSS", None), "lesion_load_cm3": ("T2 lesion load", "cm^3"),
            "cortical_gm_cm3": ("cortical grey-matter volume", "cm^3"),
            "wm_cm3": ("total white-matter volume", "cm^3")}
_STATS = {"min": "minimum", "max": "maximum", "mean": "mean", "sd": "standard deviation",
          "n": "number of participants with a value",
          "text": "formatted as in the seed's Table 1"}


def _entry(desc: str, units: str | None = None) -> dict:
    return {"Description": desc, **({"Units": units} if units else {})}


def table1_dictionary(t1: pd.DataFrame) -> dict:
    """JSON dictionary of ``table1.tsv``."""
    out = {}
    for col in t1.columns:
        if col in _T1:
            out[col] = _entry(_T1[col])
            continue
        for var, (title, units) in _T1_VARS.items():
            if col.startswith(var + "_"):
                stat = col[len(var) + 1:]
                out[col] = _entry(f"{title}: {_STATS.get(stat, stat)}",
                                  None if stat in ("n", "text") else units)
    return out


def _t2_entry(col: str, settings: GroupSettings) -> dict:  # noqa: C901 - flat lookup
    if col == "region":
        return _entry("Canonical region name (bilateral)")
    if col == "title":
        return _entry("Region title")
    if col.startswith("mw_"):
        body, stat = col[3:].rsplit("_", 1)
        a, b = body.split("_vs_")
        text = {"U": "Mann-Whitney U of the first group", "p": "two-sided p-value",
                "method": "how p was computed (exact without ties and n < 50, else normal "
                "approximation with tie and continuity correction)",
                "q": "Benjamini-Hochberg q across regions"}[stat]
        return _entry(f"{a} vs {b}: {text} (age-corrected R2*)")
    for prefix, text in (("r_", "correlation coefficient"), ("p_", "two-sided p-value"),
                         ("q_", "Benjamini-Hochberg q across regions"),
                         ("method_", "pearson or spearman (Shapiro-Wilk on both variables, "
                          f"alpha {settings.normality_alpha}, with correlation=auto)")):
        if col.startswith(prefix):
            var, cohort = col[len(prefix):].rsplit("_", 1)
            return _entry(f"Age-corrected R2* vs {CORRELATES.get(var, var)} in {cohort}: {text}")
    if col.startswith("beta_"):
        return _entry(f"Standardized beta of {CORRELATES.get(col[5:], col[5:])} in the final "
                      "stepwise model (patients); n/a when not selected")
    model = {"model_selected": "variables in the final stepwise model, in order of entry",
             "model_R": "multiple R of the final model", "model_R2": "R^2 of the final model",
             "model_p": "p of the final model's F-test", "model_n": "patients in the model",
             "intersite_cv_controls": "inter-site coefficient of variation of the controls' "
             "site means (fraction)"}
    if col in model:
        return _entry(model[col])
    if col.startswith("sex_"):
        return _entry("Sex difference (F minus M) in " + col.rsplit("_", 1)[1] + ": " + (
            "Student's t" if col.startswith("sex_t_") else "Welch p" if "welch" in col
            else "Student p"))
    for tag, text in (("mixed_", "mixed model with a random site intercept"),
                      ("siteadj_", "OLS with site as a fixed covariate")):
        if col.startswith(tag):
            g, stat = col[len(tag):].rsplit("_", 1)
            return _entry(f"{g} minus {settings.control} ({text}): {stat}",
                          R2 if stat == "estimate" else None)
    for suffix, text in (("_n", "participants with a value"), ("_mean", "mean age-corrected "
                          "R2*"), ("_sd", "SD of age-corrected R2*")):
        if col.endswith(suffix):
            return _entry(f"{col[:-len(suffix)]}: {text}", None if suffix == "_n" else R2)
    return _entry(col)


def table2_dictionary(t2: pd.DataFrame, settings: GroupSettings) -> dict:
    """JSON dictionary of ``table2.tsv``."""
    return {col: _t2_entry(col, settings) for col in t2.columns}


def agefit_dictionary(fits: pd.DataFrame) -> dict:
    """JSON dictionary of ``agefit.tsv``."""
    base = {
        "region": _entry("Canonical region name"), "hemisphere": _entry("left/right/bilateral"),
        "site": _entry("Site of the curve ('all': pooled controls)"),
        "method": _entry("Age model used: auto (saturation, log-normal prior on b), seed "
                         "(saturation, least squares, no fallback), prior (b fixed at the "
                         "prior median), pooled (saturation, rate and amplitude partially pooled "
                         "across regions), linear, none (no correction), fixed (study.toml)"),
        "model": _entry("saturation: a*(1-exp(-b*age))+c; linear: c+slope*age; none: no "
                        "curve (no correction requested, or region excluded: see warning)"),
        "b_prior_median": _entry("Median of the log-normal prior on b", "1/years"),
        "b_prior_sd_log": _entry("SD of log b under the prior"),
        "a_prior_mean": _entry("Mean of the normal prior on a (age model pooled: estimated "
                               "across regions)", R2),
        "a_prior_sd": _entry("SD of the normal prior on a (age model pooled)", R2),
        "b_sd_ratio": _entry("Posterior SD / prior SD of log b (1: b from the prior alone; "
                             "near 0: from the data)"),
        "n_boot": _entry("Bootstrap resamples of the controls behind r2star_agecorr_sd"),
        "correction_sd_median": _entry("Median over participants of r2star_agecorr_sd", R2),
        "n_extrapolated": _entry("Participants outside the controls' age range"),
        "extrapolation": _entry("How they were corrected (saturation: along the curve, "
                                "bounded by its plateau; linear: held at the range's end)"),
        "n": _entry("Controls in the fit"), "age_min": _entry("Youngest control", "years"),
        "age_max": _entry("Oldest control", "years"),
        "rss": _entry("Residual sum of squares", "1/s^2"),
        "residual_sd": _entry("Residual standard deviation", R2),
        "r2": _entry("Coefficient of determination"), "converged": _entry("Solver converged"),
        "saturation_reached": _entry("1 - exp(-b*(age_max-age_min)): curvature covered"),
        "warning": _entry("Why the fit is ill-determined, flat, or the region excluded"),
    }
    units = {"a": R2, "b": "1/years", "c": R2, "slope": "1/s per year"}
    for p, u in units.items():
        base[p] = _entry(f"Parameter {p}", u)
        base[f"{p}_se"] = _entry(f"Standard error of {p}", u)
        base[f"{p}_ci_low"] = _entry(f"Lower 95% confidence limit of {p}", u)
        base[f"{p}_ci_high"] = _entry(f"Upper 95% confidence limit of {p}", u)
    return {c: base.get(c, _entry(c)) for c in fits.columns}


def clean_json(obj: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python numbers, recursively."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def stats_document(*, settings, reference_age, subjects, sources, records, lesions,
                   multicenter, exclusions, fits, participants_meta) -> dict:
    """The machine-readable summary written to ``stats.json``."""
    import scipy
    import statsmodels

    from ironmap import __version__

    counts = subjects.groupby("group").size().to_dict()
    doc = {
        "GeneratedBy": {"Name": "ironmap", "Version": __version__},
        "software": {"python": platform.python_version(), "scipy": scipy.__version__,
                     "statsmodels": statsmodels.__version__, "pandas": pd.__version__},
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "reference_age_years": reference_age,
        "reference_age": reference_age,
        "n_participants": int(len(subjects)), "n_per_group": counts,
        "sources": sources,
        "conventions": {
            "age_correction": f"age model '{settings.age_model}' fitted on controls per region "
            "and hemisphere (see age_model and agefit); adjusted = y - f(age) + f(reference "
            "age); lesion R2* not age-corrected",
            "mann_whitney": "U of the first group; exact p without ties and n < 50, else "
            "normal approximation with tie and continuity correction; two-sided",
            "correlation": f"{settings.correlation_method}: Pearson when Shapiro-Wilk does not "
            f"reject normality of both variables at {settings.normality_alpha}, else Spearman",
            "stepwise": f"forward stepwise OLS, enter p < {settings.p_enter}, remove p > "
            f"{settings.p_remove}; candidates: variables correlated at p < {settings.alpha}",
            "ttest": "F minus M; Student's (pooled) and Welch's t, two-sided",
            "fdr": "Benjamini-Hochberg across regions, per comparison" if settings.fdr
            else "none",
        },
        "exclusions": exclusions,
        "agefit": fits.to_dict(orient="records"),
        "tests": records,
        "lesions": lesions,
        "multicenter": multicenter,
        "participants_dictionary": participants_meta,
    }
    return clean_json(doc)
