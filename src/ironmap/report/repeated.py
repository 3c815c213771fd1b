"""Report content for repeated scans: longitudinal change and site harmonisation.

Tables in, table views and deferred figures out (no files are read here); rendered by the
``_repeated.html`` template block of the study report.
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from ironmap.core.regions import REGIONS
from ironmap.report import figures as F
from ironmap.report.html import TableView, table_view


def longitudinal_view(table: pd.DataFrame, dictionary: dict) -> TableView:
    """``longitudinal.tsv`` as a report table."""
    cols = ["region", "group", "r2star_change_per_year", "ci_low", "ci_high", "pvalue",
            "n_participants", "n_scans", "model"]
    return table_view(table, id="longitudinal", columns=cols, dictionary=dictionary,
                      caption="Annual R2* change per region and group (s⁻¹/year; linear mixed "
                              "model, random intercept and slope per participant, site fixed; "
                              "95 % CI)", source="group/longitudinal.tsv")


def harmonisation_view(table: pd.DataFrame, dictionary: dict) -> TableView:
    """``harmonisation.tsv`` as a report table."""
    return table_view(table, id="harmonisation", dictionary=dictionary,
                      caption="Site effects before and after harmonisation: site "
                              "classification AUC and travelling-head reliability (ICC, "
                              "within-subject SD in s⁻¹, CoV)", source="group/harmonisation.tsv")


def longitudinal_jobs(scans: pd.DataFrame, rates: pd.DataFrame, groups: list[str],
                      value_column: str) -> list[F.FigureJob]:
    """One spaghetti figure per region of ``rates`` (canonical order)."""
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
