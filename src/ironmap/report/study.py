"""The study report's content: cohort data, what is missing, figure jobs, template context.

Input is what the workflow loaded from ``OUTPUT_DIR`` (:class:`StudyInputs`); no files are
read here. Tables are rendered from the TSV contents; figures are deferred
:class:`~ironmap.report.figures.FigureJob` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ironmap.core.regions import REGIONS
from ironmap.report import figures as F
from ironmap.report.html import TableView, table_view

PHENOTYPES = ("RRMS", "SPMS", "PPMS")


@dataclass
class StudyInputs:
    """Everything the study report is made from (loaded by the workflow)."""

    output_dir: Path
    config: dict[str, Any]
    participants: pd.DataFrame | None = None
    regional: pd.DataFrame | None = None
    #: name ("table1", "table2", "agefit", "lesions", "volumes") -> (table, JSON dictionary)
    tables: dict[str, tuple[pd.DataFrame, dict]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    failures: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)  # found while loading

    @property
    def control_label(self) -> str:
        return str(self.config.get("control_label", "HC"))

    @property
    def group_column(self) -> str:
        return str(self.config.get("group_column", "group"))


def table(inputs: StudyInputs, name: str) -> pd.DataFrame | None:
    """A loaded table, or None."""
    entry = inputs.tables.get(name)
    return None if entry is None else entry[0]


def cohort(inputs: StudyInputs) -> pd.DataFrame:
    """One row per participant(/session) and bilateral region.

    Columns: ``participant_id``, ``session_id``, ``region``, ``r2star_mean``,
    ``r2star_agecorr`` (NaN when absent), ``group``, ``age``, ``site``, ``cortical_gm_cm3``.
    """
    reg = inputs.regional
    cols = ["participant_id", "session_id", "region", "r2star_mean", "r2star_agecorr", "group",
            "age", "site", "cortical_gm_cm3"]
    if reg is None or reg.empty or "region" not in reg:
        return pd.DataFrame(columns=cols)
    if "hemisphere" in reg:
        reg = reg[reg["hemisphere"] == "bilateral"]
    df = reg.copy()
    for c in ("session_id", "r2star_agecorr", "r2star_mean"):
        if c not in df:
            df[c] = np.nan
    parts = inputs.participants
    gcol = inputs.group_column
    if parts is not None and "participant_id" in parts:
        keep = [c for c in (gcol, "age", "site") if c in parts]
        info = parts[["participant_id", *keep]].drop_duplicates("participant_id")
        df = df.merge(info.rename(columns={gcol: "group"}), on="participant_id", how="left")
    vols = table(inputs, "volumes")
    if vols is not None and "cortical_gm_cm3" in vols:
        v = vols[["participant_id", "cortical_gm_cm3"]].drop_duplicates("participant_id")
        df = df.merge(v, on="participant_id", how="left")
    for c in cols:
        if c not in df:
            df[c] = np.nan
    df["group"] = df["group"].astype(object).where(df["group"].notna(), "unknown")
    return df[cols].reset_index(drop=True)


def group_order(inputs: StudyInputs, data: pd.DataFrame) -> list[str]:
    """Controls first, then the seed's phenotypes, then other labels (sorted)."""
    present = [str(g) for g in pd.unique(data["group"].dropna())]
    if inputs.participants is not None and inputs.group_column in inputs.participants:
        present += [str(g) for g in pd.unique(inputs.participants[inputs.group_column].dropna())]
    order = [inputs.control_label] + [p for p in PHENOTYPES]
    rest = sorted(set(present) - set(order))
    return [g for g in order if g in present] + rest


def regions_present(data: pd.DataFrame) -> list[str]:
    """Canonical regions first (Table 2 order), then any others found."""
    found = [str(r) for r in pd.unique(data["region"])]
    return [r for r in REGIONS if r in found] + sorted(set(found) - set(REGIONS))


def _value_column(data: pd.DataFrame) -> tuple[str, str]:
    if data["r2star_agecorr"].notna().any():
        return "r2star_agecorr", "age-corrected R2* (1/s)"
    return "r2star_mean", "R2* (1/s), not age-corrected"


def missing_items(inputs: StudyInputs, data: pd.DataFrame) -> list[str]:
    """Sentences naming what the report cannot show and why."""
    out = list(inputs.problems)
    ctrl, gcol = inputs.control_label, inputs.group_column
    parts = inputs.participants
    if parts is None:
        out.append("participants.tsv not found: groups, ages and sites are unknown")
    elif gcol not in parts:
        out.append(f"participants.tsv has no '{gcol}' column: no group comparisons")
    if inputs.regional is None:
        out.append("group/regional_r2star.tsv not found: run the participant level first")
    elif not data.empty and data["r2star_agecorr"].isna().all():
        out.append("regional_r2star.tsv has no r2star_agecorr values (group level not run or "
                   "age model failed): figures show R2* without age correction")
    for name, what in (("table1", "Table 1"), ("table2", "Table 2"), ("agefit", "age model")):
        if table(inputs, name) is None:
            out.append(f"group/{name}.tsv not found: {what} is not shown")
    if table(inputs, "volumes") is None:
        out.append("group/volumes.tsv not found (participant level without --volumes): "
                   "Figure 3 and volume correlations are not available")
    if not data.empty:
        groups = set(data["group"].astype(str))
        if ctrl not in groups:
            out.append(f"no controls ('{ctrl}') with R2*: no age model, no group comparison")
        patients = groups - {ctrl, "unknown"}
        if not patients:
            out.append("no patients: patient comparisons, the patient panel of Figure 3 and "
                       "the lesion analysis are not available")
        else:
            absent = [p for p in PHENOTYPES if p not in groups]
            if absent and any(p in groups for p in PHENOTYPES):
                out.append(f"no participants with R2* in phenotype(s) {', '.join(absent)}: "
                           "their Table 2 columns and figure slots are empty")
        for region in REGIONS:
            vals = data.loc[data["region"] == region, "r2star_mean"]
            if vals.empty or not np.isfinite(vals.to_numpy(float)).any():
                out.append(f"region {region}: no R2* values in any participant (no label, or "
                           "all voxels eroded or flagged)")
    return out


def _fig2_job(data, region, groups, value_col, ylabel) -> F.FigureJob:
    sub = data[data["region"] == region]
    return F.FigureJob(
        f"fig2-{region}", f"Figure 2 · {F.region_title(region)}",
        f"{ylabel} per group; box = median and quartiles, points = participants.",
        f"region-{region}_desc-groups_r2star",
        partial(F.group_distribution_figure, sub, region, groups, value_column=value_col,
                ylabel=ylabel))


def _fig3_job(data, region, ctrl, value_col, ylabel) -> F.FigureJob:
    sub = data[data["region"] == region]
    return F.FigureJob(
        f"fig3-{region}", f"Figure 3 · {F.region_title(region)}",
        f"Cortical GM volume against {ylabel} in (left) controls and (right) patients, with "
        "the least-squares line and Pearson r.",
        f"region-{region}_desc-corticalgm_r2star",
        partial(F.volume_correlation_figure, sub, region, control_label=ctrl,
                value_column=value_col, ylabel=ylabel))


def figure_jobs(inputs: StudyInputs, data: pd.DataFrame) -> dict[str, list[F.FigureJob]]:
    """The study figures per report section (``fig2``, ``fig3``, ``agecurves``, ``sitefig``)."""
    regions = regions_present(data) or list(REGIONS)
    groups = group_order(inputs, data)
    value_col, ylabel = _value_column(data) if not data.empty else ("r2star_mean", "R2* (1/s)")
    ctrl = inputs.control_label
    controls = data[data["group"] == ctrl]
    ref = inputs.stats.get("reference_age", inputs.config.get("reference_age"))
    try:
        ref = float(ref) if ref is not None else None
    except (TypeError, ValueError):
        ref = None
    if ref is None and not controls.empty:
        ref = float(np.nanmean(controls.drop_duplicates("participant_id")["age"]
                               .to_numpy(float)))
    jobs: dict[str, list[F.FigureJob]] = {
        "fig2": [_fig2_job(data, r, groups, value_col, ylabel) for r in regions],
        "fig3": [_fig3_job(data, r, ctrl, value_col, ylabel) for r in regions]
        if table(inputs, "volumes") is not None else [],
        "agecurves": [F.FigureJob(
            "agecurves", "Control age curves",
            "Control R2* (not corrected) against age per region, the fitted age model (line: "
            "the saturation a·(1−e^(−b·age))+c, or the model named in the age-model table; "
            "dashed beyond the controls' ages), its 95 % bootstrap band (grey) and the "
            "reference age (vertical dashed line).",
            "desc-agecurves_r2star",
            partial(F.age_curves_figure, controls, bilateral_fits(table(inputs, "agefit")),
                    ref, regions, (inputs.stats.get("age_model") or {}).get("bands")))],
        "sitefig": [F.FigureJob(
            "sites", "Control R2* per site",
            "Control R2* (not age-corrected) per site and region; bar = site mean.",
            "desc-sites_r2star", partial(F.site_figure, controls, regions))],
    }
    return jobs


def table1_views(inputs: StudyInputs) -> tuple[TableView | None, TableView | None]:
    """Table 1 in the seed's layout (range (mean) and mean (SD) text columns) and in full."""
    entry = inputs.tables.get("table1")
    if entry is None:
        return None, None
    df, dictionary = entry
    text = [c for c in df.columns if c.endswith("_text")]
    main = [c for c in ("group", "n") if c in df.columns] + text
    labels = {c: T1_LABELS.get(c, c[:-5].replace("_", " ")) for c in text}
    view = table_view(df, id="table1", caption="Characteristics of participants per group",
                      dictionary=dictionary, columns=main if text else None, labels=labels,
                      source="group/table1.tsv",
                      note="Ranges with the mean in parentheses (age, disease duration, EDSS); "
                      "mean (SD) for lesion load and volumes, as in the seed study.")
    full = None
    if text:
        full = table_view(df, id="table1-full", caption="table1.tsv, all columns",
                          dictionary=dictionary, combine_mean_sd=False,
                          source="group/table1.tsv")
    return view, full


T1_LABELS = {"sex_text": "sex (F/M)", "age_text": "age, years",
             "disease_duration_text": "disease duration, years", "edss_text": "EDSS",
             "lesion_load_cm3_text": "T2 lesion load (cm³)",
             "cortical_gm_cm3_text": "cortical GM volume (cm³)",
             "wm_cm3_text": "total WM volume (cm³)"}

T2_LABELS = {"title": "region", "r_cortical_gm_cm3_patients": "cortical GM volume r",
             "r_wm_cm3_patients": "WM volume r", "beta_edss": "EDSS β",
             "beta_disease_duration": "disease duration β", "model_R": "model R",
             "model_p": "model p"}


def _table2_main(df: pd.DataFrame, control: str) -> list[str]:
    cols = list(df.columns)
    first = ["title"] if "title" in cols else ["region"]
    pairs = [c for c in cols if c.endswith("_mean") and f"{c[:-5]}_sd" in cols]
    pairs = [c for c in pairs if c == f"{control}_mean"] + \
        [c for c in pairs if c != f"{control}_mean"]
    out = first
    for c in pairs:
        out += [c, f"{c[:-5]}_sd"]
    return out + [c for c in T2_LABELS if c in cols and c not in out]


def table2_views(inputs: StudyInputs) -> tuple[TableView | None, TableView | None]:
    """Table 2 in the seed's layout (region, group mean (SD), volume r, betas, model R, p)
    and the full table (every test, statistic and convention)."""
    entry = inputs.tables.get("table2")
    if entry is None:
        return None, None
    df, dictionary = entry
    if df.empty:
        return None, None
    main = _table2_main(df, inputs.control_label)
    labels = {**T2_LABELS, **{c: f"{c[:-5]} (s⁻¹)" for c in main if c.endswith("_mean")}}
    view = table_view(df, id="table2", caption="Regional age-corrected R2* (s⁻¹), mean (SD) "
                      "per group, and associations in patients", dictionary=dictionary,
                      columns=main, labels=labels, source="group/table2.tsv",
                      note="r: correlation with age-corrected R2* in patients (Pearson or "
                      "Spearman, see the full table); β: standardised betas of the stepwise "
                      "model (n/a = not selected). Values are rounded for display; hover a "
                      "header for its definition.")
    full = table_view(df, id="table2-full", caption="table2.tsv, all columns",
                      dictionary=dictionary, combine_mean_sd=False, source="group/table2.tsv")
    return view, full


def agefit_view(inputs: StudyInputs) -> TableView | None:
    """The pooled bilateral age model per region."""
    fits = bilateral_fits(table(inputs, "agefit"))
    if fits is None:
        return None
    cols = ["region", "method", "model", "n", "age_min", "age_max", "a", "b", "c", "slope",
            "b_sd_ratio", "r2", "correction_sd_median", "n_extrapolated", "warning"]
    return table_view(fits, id="agefit", caption="Age model per region (controls, bilateral, "
                      "all sites)", dictionary=inputs.tables["agefit"][1],
                      combine_mean_sd=False, columns=cols, source="group/agefit.tsv")


def bilateral_fits(agefit: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows of ``agefit.tsv`` for bilateral regions pooled over sites."""
    if agefit is None or agefit.empty:
        return None
    rows = agefit
    if "hemisphere" in rows:
        rows = rows[rows["hemisphere"].isin(["bilateral"])]
    if "site" in rows:
        rows = rows[rows["site"].astype(str).isin(["all"])]
    return rows.reset_index(drop=True)


def summary_cards(inputs: StudyInputs, data: pd.DataFrame, n_flags: int,
                  n_failed: int) -> list[dict[str, Any]]:
    """The numbers at the top of the page."""
    n_sub = int(data["participant_id"].nunique()) if not data.empty else 0
    cards = [{"value": n_sub, "label": "participants with R2*", "kind": "ok" if n_sub else "bad"}]
    if not data.empty:
        per = data.drop_duplicates("participant_id")["group"].value_counts()
        for g in group_order(inputs, data):
            if g in per:
                cards.append({"value": int(per[g]), "label": f"group {g}", "kind": ""})
        cards.append({"value": len(regions_present(data)), "label": "regions", "kind": ""})
    cards.append({"value": n_failed, "label": "failed / excluded",
                  "kind": "bad" if n_failed else "ok"})
    cards.append({"value": n_flags, "label": "QC flags", "kind": "warn" if n_flags else "ok"})
    return cards
