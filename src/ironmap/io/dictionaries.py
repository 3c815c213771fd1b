"""Column dictionaries (BIDS JSON data dictionaries) of every table ironmap writes.

Each TSV under OUTPUT_DIR is written with a JSON sidecar describing its columns; the
descriptions live here, beside the derivative layout (:mod:`ironmap.io.layout`) that names the
files. Column dictionaries of the per-participant tables whose columns are computed in
``core`` (regional and per-lesion R2*, tissue volumes) stay next to that computation and are
referred to from here. Some dictionaries depend on the table (Table 1/2, age fits): those are
functions of the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pandas as pd

from ironmap.core.lesions.lesion_values import COLUMN_DESCRIPTIONS as LESION_COLUMNS  # noqa: F401 - layout
from ironmap.core.regions.anatomy_check import CHECK_DICTIONARY as AUTOANATOMY_CHECK  # noqa: F401 - layout
from ironmap.core.regions.regional_values import COLUMN_DESCRIPTIONS as REGION_COLUMNS
from ironmap.core.regions.tissue_volumes import VOLUME_DICTIONARY

if TYPE_CHECKING:  # paper_tables imports scipy.stats (about 1 CPU-s a process); Table 2 only
    from ironmap.core.group.paper_tables import GroupSettings

Dictionary = dict[str, dict[str, str]]

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


def entry(desc: str, units: str | None = None) -> dict[str, str]:
    """One column's dictionary entry.

    Parameters
    ----------
    desc : str
        What the column holds.
    units : str, optional
        Its units (BIDS ``Units``), left out when None.

    Returns
    -------
    dict
        ``{"Description": desc, "Units": units}`` (``Units`` only when given).
    """
    return {"Description": desc, **({"Units": units} if units else {})}


def table1_dictionary(t1: pd.DataFrame) -> dict:
    """Column dictionary of ``group/table1.tsv``.

    Parameters
    ----------
    t1 : pandas.DataFrame
        Table 1 as written (one row per group; columns ``<variable>_<statistic>``).

    Returns
    -------
    dict
        Column name -> ``{"Description", "Units"}`` for every known column of ``t1``.
    """
    out = {}
    for col in t1.columns:
        if col in _T1:
            out[col] = entry(_T1[col])
            continue
        for var, (title, units) in _T1_VARS.items():
            if col.startswith(var + "_"):
                stat = col[len(var) + 1:]
                out[col] = entry(f"{title}: {_STATS.get(stat, stat)}",
                                  None if stat in ("n", "text") else units)
    return out


def _t2_entry(col: str, settings: GroupSettings) -> dict:  # noqa: C901 - flat lookup
    from ironmap.core.group.paper_tables import CORRELATES

    if col == "region":
        return entry("Canonical region name (bilateral)")
    if col == "title":
        return entry("Region title")
    if col.startswith("mw_"):
        body, stat = col[3:].rsplit("_", 1)
        a, b = body.split("_vs_")
        text = {"U": "Mann-Whitney U of the first group", "p": "two-sided p-value",
                "method": "how p was computed (exact without ties and n < 50, else normal "
                "approximation with tie and continuity correction)",
                "q": "Benjamini-Hochberg q across regions"}[stat]
        return entry(f"{a} vs {b}: {text} (age-corrected R2*)")
    for prefix, text in (("r_", "correlation coefficient"), ("p_", "two-sided p-value"),
                         ("q_", "Benjamini-Hochberg q across regions"),
                         ("method_", "pearson or spearman (Shapiro-Wilk on both variables, "
                          f"alpha {settings.normality_alpha}, with correlation=auto)")):
        if col.startswith(prefix):
            var, cohort = col[len(prefix):].rsplit("_", 1)
            return entry(f"Age-corrected R2* vs {CORRELATES.get(var, var)} in {cohort}: {text}")
    if col.startswith("beta_"):
        return entry(f"Standardized beta of {CORRELATES.get(col[5:], col[5:])} in the final "
                      "stepwise model (patients); n/a when not selected")
    model = {"model_selected": "variables in the final stepwise model, in order of entry",
             "model_R": "multiple R of the final model", "model_R2": "R^2 of the final model",
             "model_p": "p of the final model's F-test", "model_n": "patients in the model",
             "intersite_cv_controls": "inter-site coefficient of variation of the controls' "
             "site means (fraction)"}
    if col in model:
        return entry(model[col])
    if col.startswith("sex_"):
        return entry("Sex difference (F minus M) in " + col.rsplit("_", 1)[1] + ": " + (
            "Student's t" if col.startswith("sex_t_") else "Welch p" if "welch" in col
            else "Student p"))
    for tag, text in (("mixed_", "mixed model with a random site intercept"),
                      ("siteadj_", "OLS with site as a fixed covariate")):
        if col.startswith(tag):
            g, stat = col[len(tag):].rsplit("_", 1)
            return entry(f"{g} minus {settings.control} ({text}): {stat}",
                          R2 if stat == "estimate" else None)
    for suffix, text in (("_n", "participants with a value"), ("_mean", "mean age-corrected "
                          "R2*"), ("_sd", "SD of age-corrected R2*")):
        if col.endswith(suffix):
            return entry(f"{col[:-len(suffix)]}: {text}", None if suffix == "_n" else R2)
    return entry(col)


def table2_dictionary(t2: pd.DataFrame, settings: GroupSettings) -> dict:
    """Column dictionary of ``group/table2.tsv``.

    Parameters
    ----------
    t2 : pandas.DataFrame
        Table 2 as written (one row per bilateral region).
    settings : GroupSettings
        The group settings (control label, normality alpha) named in the descriptions.

    Returns
    -------
    dict
        Column name -> ``{"Description", "Units"}`` for every column of ``t2``.
    """
    return {col: _t2_entry(col, settings) for col in t2.columns}


def agefit_dictionary(fits: pd.DataFrame) -> dict:
    """Column dictionary of ``group/agefit.tsv``.

    Parameters
    ----------
    fits : pandas.DataFrame
        The age-model fits (one row per region, hemisphere and site).

    Returns
    -------
    dict
        Column name -> ``{"Description", "Units"}`` for every column of ``fits``.
    """
    base = {
        "region": entry("Canonical region name"), "hemisphere": entry("left/right/bilateral"),
        "site": entry("Site of the curve ('all': pooled controls)"),
        "method": entry("Age model used: auto (saturation, log-normal prior on b), seed "
                         "(saturation, least squares, no fallback), prior (b fixed at the "
                         "prior median), pooled (saturation, rate and amplitude partially pooled "
                         "across regions), linear, none (no correction), fixed (study.toml)"),
        "model": entry("saturation: a*(1-exp(-b*age))+c; linear: c+slope*age; none: no "
                        "curve (no correction requested, or region excluded: see warning)"),
        "b_prior_median": entry("Median of the log-normal prior on b", "1/years"),
        "b_prior_sd_log": entry("SD of log b under the prior"),
        "a_prior_mean": entry("Mean of the normal prior on a (age model pooled: estimated "
                              "across regions)", R2),
        "a_prior_sd": entry("SD of the normal prior on a (age model pooled)", R2),
        "b_sd_ratio": entry("Posterior SD / prior SD of log b (1: b from the prior alone; "
                             "near 0: from the data)"),
        "n_boot": entry("Bootstrap resamples of the controls behind r2star_agecorr_sd"),
        "correction_sd_median": entry("Median over participants of r2star_agecorr_sd", R2),
        "n_extrapolated": entry("Participants outside the controls' age range"),
        "extrapolation": entry("How they were corrected (saturation: along the curve, "
                                "bounded by its plateau; linear: held at the range's end)"),
        "n": entry("Controls in the fit"), "age_min": entry("Youngest control", "years"),
        "age_max": entry("Oldest control", "years"),
        "rss": entry("Residual sum of squares", "1/s^2"),
        "residual_sd": entry("Residual standard deviation", R2),
        "r2": entry("Coefficient of determination"), "converged": entry("Solver converged"),
        "saturation_reached": entry("1 - exp(-b*(age_max-age_min)): curvature covered"),
        "warning": entry("Why the fit is ill-determined, flat, or the region excluded"),
    }
    units = {"a": R2, "b": "1/years", "c": R2, "slope": "1/s per year"}
    for p, u in units.items():
        base[p] = entry(f"Parameter {p}", u)
        base[f"{p}_se"] = entry(f"Standard error of {p}", u)
        base[f"{p}_ci_low"] = entry(f"Lower 95% confidence limit of {p}", u)
        base[f"{p}_ci_high"] = entry(f"Upper 95% confidence limit of {p}", u)
    return {c: base.get(c, entry(c)) for c in fits.columns}



def described(columns: Iterable[str], known: Mapping[str, dict[str, str]]) -> Dictionary:
    """Dictionary entries for ``columns``: the known ones, else the column name as description.

    Parameters
    ----------
    columns : iterable of str
        Column names, in table order.
    known : mapping
        Column name -> dictionary entry.

    Returns
    -------
    dict
        Column name -> entry, one per column, in the order given.
    """
    return {c: known.get(c, {"Description": c}) for c in columns}


#: ``participant_id`` and ``session_id`` of every cohort table.
IDS: Dictionary = {
    "participant_id": {"Description": "Participant label (sub-...)"},
    "session_id": {"Description": "Session label (ses-...), n/a without sessions"},
}

#: The lesion summary of each participant (``group/lesions.tsv``).
LESION_SUMMARY: Dictionary = {
    "lesion_load_cm3": {"Description": "T2 lesion load: lesion area per FLAIR slice x "
                        "slice thickness, summed (lesion voxels x voxel volume on the "
                        "FLAIR grid)", "Units": "cm3"},
    "lesion_count": {"Description": "Number of connected lesions on the R2* grid"},
    "lesion_r2star_mean": {"Description": "Mean R2* over all valid lesion voxels",
                           "Units": "1/s"},
    "lesion_r2star_median": {"Description": "Median R2* over all valid lesion voxels",
                             "Units": "1/s"},
    "n_voxels": {"Description": "Lesion voxels with a valid R2* on the R2* grid"},
    "lesion_source": {"Description": "Where the lesion mask came from: rater (derivative "
                      "mask) or automatic (ironmap lesions segment)"},
}

#: ``logs/failures.tsv``.
FAILURES: Dictionary = {
    **IDS,
    "error": {"Description": "Why the participant failed (see logs/<participant>.log)"},
}


def regional_dictionary(columns: Iterable[str]) -> Dictionary:
    """Dictionary of ``group/regional_r2star.tsv`` as the participant level writes it.

    Parameters
    ----------
    columns : iterable of str
        The table's columns after ``participant_id`` and ``session_id``.

    Returns
    -------
    dict
        The id entries, then one entry per column (:data:`REGION_COLUMNS` where known).
    """
    return {**IDS, **described(columns, REGION_COLUMNS)}


def group_volumes_dictionary(columns: Iterable[str]) -> Dictionary:
    """Dictionary of ``group/volumes.tsv`` (volumes in cm3, the rest as named).

    Parameters
    ----------
    columns : iterable of str
        The table's columns after ``participant_id`` and ``session_id``.

    Returns
    -------
    dict
        The id entries, then one entry per column; ``*_cm3`` columns carry ``Units: cm3``.
    """
    return {**IDS, **{c: {"Description": c.replace("_", " "), "Units": "cm3"}
                      if c.endswith("_cm3") else {"Description": c.replace("_", " ")}
                      for c in columns}}


#: ``sub-X_desc-volumes.tsv``: the volume columns and the plausibility verdict.
VOLUMES_TABLE: Dictionary = {
    **VOLUME_DICTIONARY,
    "volumes_valid": {"Description": "true when every checked value lies in its plausible "
                      "adult range (ironmap.core.regions.tissue_volumes.PLAUSIBLE_RANGES); "
                      "false values are left out of group/volumes.tsv and raise the QC flag "
                      "volumes:implausible"},
    "volumes_qc": {"Description": "the values outside their plausible range, or 'ok'"},
}

#: QC metrics of one participant (the QC page and ``group/qc.tsv``).
QC_METRICS: Dictionary = {
    "registration_nmi_flair": {"Description": "Normalised mutual information of FLAIR and T1w "
                               "after registration (1 = independent, 2 = identical)"},
    "registration_nmi_megre": {"Description": "Normalised mutual information of GRE echo 1 and "
                               "T1w after registration"},
    "snr_echo1": {"Description": "First-echo SNR: mean head signal / noise SD estimated from "
                  "the background (Rayleigh)"},
    "flagged_fraction_head": {"Description": "Fraction of head voxels whose R2* fit failed or "
                              "was flagged invalid"},
    "max_region_flagged_fraction": {"Description": "Largest fraction of a region's eroded "
                                    "voxels excluded by the fit flags"},
}

#: ``group/qc.tsv``: one row per participant page.
QC_TABLE: Dictionary = {
    "participant_id": {"Description": "Participant"},
    "session_id": {"Description": "Session (n/a without sessions)"},
    **QC_METRICS,
    "n_flags": {"Description": "Number of automatic QC flags raised"},
    "flags": {"Description": "Raised flags as rule:item, separated by '; ' (empty = pass)"},
}

#: Repeated scans: ``group/sessions.tsv``, ``group/harmonisation.tsv``,
#: ``group/longitudinal.tsv``.
REPEATED: dict[str, Dictionary] = {
    "sessions": {"participant_id": entry("Participant"),
                 "session_id": entry("Session (n/a without)"),
                 "site": entry("Site of the scan"), "group": entry("Diagnostic group"),
                 "age": entry("Age at the scan", "years"),
                 "years": entry("Time since the participant's first scan", "years")},
    "harmonisation": {
        "stage": entry("before (analysed R2*) or after harmonisation (method named)"),
        "region": entry("Canonical region, or 'all regions' for the site classification"),
        "hemisphere": entry("left, right, bilateral; n/a for the site classification"),
        "n_participants": entry("Participants measured at every site (ICC) or scans (AUC "
                                "row)"),
        "n_sites": entry("Sites"),
        "icc2_1": entry("ICC(2,1): two-way random effects, absolute agreement, single "
                        "measurement (Shrout & Fleiss 1979); site differences count as error"),
        "icc3_1": entry("ICC(3,1): two-way mixed effects, consistency, single measurement"),
        "within_subject_sd": entry("sqrt of the mean within-participant variance across "
                                   "sites", R2),
        "cov": entry("Within-subject SD / grand mean (fraction)"),
        "site_auc": entry("Cross-validated macro one-vs-rest ROC AUC of telling the site from "
                          "the regional R2* (LDA, participants held out; 0.5 = no site "
                          "signal)"),
        "site_auc_centred": entry("The same after subtracting each participant's mean over "
                                  "their scans (travelling heads only)"),
    },
    "longitudinal": {
        "region": entry("Canonical region"), "hemisphere": entry("Hemisphere (bilateral)"),
        "group": entry("Diagnostic group"),
        "r2star_change_per_year": entry("Annual R2* change of the group (mixed-model slope)",
                                        "1/s/year"),
        "ci_low": entry("Lower bound of the 95 % confidence interval", "1/s/year"),
        "ci_high": entry("Upper bound of the 95 % confidence interval", "1/s/year"),
        "se": entry("Standard error of the slope", "1/s/year"),
        "pvalue": entry("Wald test of no change"),
        "n_participants": entry("Participants of the group in the model"),
        "n_scans": entry("Scans of the group in the model"),
        "model": entry("random intercept + slope per participant, or random intercept only "
                       "(fallback when the slope model does not converge)"),
        "converged": entry("Whether the optimiser converged"),
    },
}

#: The site-harmonised R2* column of ``group/regional_r2star.tsv`` (``--harmonise``).
HARMONISED_COLUMN = "r2star_harmonised"
HARMONISED: dict[str, str] = entry("R2* harmonised across sites (ComBat; group and age "
                                   "protected); see harmonisation.tsv", R2)
