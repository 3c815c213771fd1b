"""Report content for repeated scans: longitudinal change and site harmonisation.

Tables in, table views and deferred figures out (no files are read here); rendered by the
``_repeated.html`` template block of the study report.
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from ironmap.core.regions.names import REGIONS
from ironmap.io.layout import relative_path
from ironmap.report import figures as F
from ironmap.report.html import TableView, table_view


def longitudinal_view(table: pd.DataFrame, dictionary: dict) -> TableView:
    """``longitudinal.tsv`` as a report table.

    Parameters
    ----------
    table : pandas.DataFrame
        ``group/longitudinal.tsv``.
    dictionary : dict
        Its column dictionary.

    Returns
    -------
    TableView
        The table for the template.
    """
    cols = ["region", "group", "r2star_change_per_year", "ci_low", "ci_high", "pvalue",
            "n_participants", "n_scans", "model"]
    return table_view(table, id="longitudinal", columns=cols, dictionary=dictionary,
                      caption="Annual R2* change per region and group (s⁻¹/year; linear mixed "
                              "model, random intercept and slope per participant, site fixed; "
                              "95 % CI)", source=relative_path("longitudinal"))


def harmonisation_view(table: pd.DataFrame, dictionary: dict) -> TableView:
    """``harmonisation.tsv`` as a report table.

    Parameters
    ----------
    table : pandas.DataFrame
        ``group/harmonisation.tsv``.
    dictionary : dict
        Its column dictionary.

    Returns
    -------
    TableView
        The table for the template.
    """
    return table_view(table, id="harmonisation", dictionary=dictionary,
                      caption="Site effects before and after harmonisation: site "
                              "classification AUC and travelling-head reliability (ICC, "
                              "within-subject SD in s⁻¹, CoV)",
                      source=relative_path("harmonisation"))


def longitudinal_jobs(scans: pd.DataFrame, rates: pd.DataFrame, groups: list[str],
                      value_column: str) -> list[F.FigureJob]:
    """One spaghetti figure per region of ``rates`` (canonical order).

    Parameters
    ----------
    scans : pandas.DataFrame
        Bilateral regional values per scan with ``years`` since the first scan.
    rates : pandas.DataFrame
        ``longitudinal.tsv``.
    groups : list of str
        Groups in colour order.
    value_column : str
        The analysed R2* column (s^-1).

    Returns
    -------
    list of FigureJob
        The figures to make.
    """
    present = list(dict.fromkeys(rates["region"]))
    regions = [r for r in REGIONS if r in present] + [r for r in present if r not in REGIONS]
    return [F.FigureJob(
        f"long-{region}", f"Longitudinal · {F.region_title(region)}",
        "R2* of each participant over time (thin lines) and the group's annual change from the "
        "mixed model, drawn from the group's mean first-scan value (thick lines).",
        f"region-{region}_desc-longitudinal_r2star",
        partial(F.longitudinal_figure, scans[scans["region"] == region],
                rates[rates["region"] == region], region, groups, value_column=value_column))
        for region in regions]


def methods_text(harmonisation: pd.DataFrame | None, longitudinal: pd.DataFrame | None) -> str:
    """Methods paragraph of the repeated-scans analyses that were run.

    Parameters
    ----------
    harmonisation : pandas.DataFrame or None
        ``harmonisation.tsv`` (None: not run).
    longitudinal : pandas.DataFrame or None
        ``longitudinal.tsv`` (None: not run).

    Returns
    -------
    str
        The paragraph ("" when neither ran).
    """
    parts = []
    stages = [] if harmonisation is None else [
        s for s in dict.fromkeys(harmonisation["stage"]) if s.startswith("after ")]
    if stages:
        gam = "combat-gam" in stages[0]
        parts.append(
            "Regional R2* was harmonised across sites with ComBat (Johnson et al. 2007; "
            "neuroCombat, Fortin et al. 2018) with diagnostic group and age as protected "
            "covariates" + (", age entered as a cubic B-spline (as in ComBat-GAM, Pomponio et "
                            "al. 2020)" if gam else "") + ".")
    if harmonisation is not None and harmonisation["icc2_1"].notna().any():
        parts.append("Inter-site reliability of participants scanned at several sites was "
                     "expressed as ICC(2,1) and ICC(3,1) (Shrout & Fleiss 1979), within-subject "
                     "SD and coefficient of variation.")
    if longitudinal is not None:
        parts.append("Annual R2* change per region and group was estimated with linear mixed "
                     "models (random intercept and slope per participant, site as a fixed "
                     "factor, REML; statsmodels) and reported with Wald 95 % confidence "
                     "intervals.")
    return " ".join(parts)
