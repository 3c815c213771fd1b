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

from ironmap.core.regions.names import REGION_TITLES, REGIONS
from ironmap.io.layout import file_name, relative_path
from ironmap.report import figures as F
from ironmap.report.html import Cell, TableView, format_value, table_view

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
    #: ``ironmap demo``'s automatic anatomy check: (table, JSON sidecar), absent otherwise
    anatomy_check: tuple[pd.DataFrame, dict] | None = None

    @property
    def control_label(self) -> str:
        """The control group's label in ``participants.tsv`` (default ``HC``)."""
        return str(self.config.get("control_label", "HC"))

    @property
    def group_column(self) -> str:
        """The ``participants.tsv`` column holding the group (default ``group``)."""
        return str(self.config.get("group_column", "group"))


def table(inputs: StudyInputs, name: str) -> pd.DataFrame | None:
    """A loaded cohort table.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    name : str
        ``table1``, ``table2``, ``agefit``, ``lesions`` or ``volumes``.

    Returns
    -------
    pandas.DataFrame or None
        The table, or None when it was not found.
    """
    entry = inputs.tables.get(name)
    return None if entry is None else entry[0]


def cohort(inputs: StudyInputs) -> pd.DataFrame:
    """One row per participant(/session) and bilateral region.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id``, ``session_id``, ``region``, ``r2star_mean`` (s^-1),
        ``r2star_agecorr`` (s^-1, NaN when absent), ``group``, ``age`` (years), ``site``,
        ``cortical_gm_cm3``.
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
    vcol = volume_column(inputs)
    if vols is not None and vcol in vols:
        v = vols[["participant_id", vcol]].drop_duplicates("participant_id")
        df = df.merge(v.rename(columns={vcol: "cortical_gm_cm3"}), on="participant_id",
                      how="left")
    for c in cols:
        if c not in df:
            df[c] = np.nan
    df["group"] = df["group"].astype(object).where(df["group"].notna(), "unknown")
    return df[cols].reset_index(drop=True)


def volume_column(inputs: StudyInputs) -> str:
    """The ``volumes.tsv`` column the group statistics used for cortical GM volume.

    From ``stats.json`` ``sources.volumes.cortical_gm_cm3`` (``group/volumes.tsv:COLUMN``);
    otherwise the group level's rule: the normalised volume when it has values.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    str
        The column name (cm³).
    """
    src = ((inputs.stats.get("sources") or {}).get("volumes") or {})
    named = src.get("cortical_gm_cm3") if isinstance(src, dict) else None
    if isinstance(named, str) and named.startswith("group/volumes.tsv:"):
        return named.split(":", 1)[1]
    vols = table(inputs, "volumes")
    if vols is not None and "cortical_gm_norm_cm3" in vols and \
            vols["cortical_gm_norm_cm3"].notna().any():
        return "cortical_gm_norm_cm3"
    return "cortical_gm_cm3"


def group_order(inputs: StudyInputs, data: pd.DataFrame) -> list[str]:
    """Groups in display order: controls first, then the seed's phenotypes, then other labels.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    data : pandas.DataFrame
        The cohort table of :func:`cohort`.

    Returns
    -------
    list of str
        The groups present in ``data``.
    """
    present = [str(g) for g in pd.unique(data["group"].dropna())]
    if inputs.participants is not None and inputs.group_column in inputs.participants:
        present += [str(g) for g in pd.unique(inputs.participants[inputs.group_column].dropna())]
    order = [inputs.control_label] + [p for p in PHENOTYPES]
    rest = sorted(set(present) - set(order))
    return [g for g in order if g in present] + rest


def regions_present(data: pd.DataFrame) -> list[str]:
    """Regions in display order: canonical regions first (Table 2 order), then any others.

    Parameters
    ----------
    data : pandas.DataFrame
        The cohort table of :func:`cohort`.

    Returns
    -------
    list of str
        The regions present in ``data``.
    """
    found = [str(r) for r in pd.unique(data["region"])]
    return [r for r in REGIONS if r in found] + sorted(set(found) - set(REGIONS))


def _value_column(data: pd.DataFrame) -> tuple[str, str]:
    if data["r2star_agecorr"].notna().any():
        return "r2star_agecorr", "age-corrected R2* (1/s)"
    return "r2star_mean", "R2* (1/s), not age-corrected"


def missing_items(inputs: StudyInputs, data: pd.DataFrame) -> list[str]:
    """Sentences naming what the report cannot show and why.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    data : pandas.DataFrame
        The cohort table of :func:`cohort`.

    Returns
    -------
    list of str
        One sentence per missing table, column or figure input (loading problems first).
    """
    out = list(inputs.problems)
    ctrl, gcol = inputs.control_label, inputs.group_column
    parts = inputs.participants
    if parts is None:
        out.append("participants.tsv not found: groups, ages and sites are unknown")
    elif gcol not in parts:
        out.append(f"participants.tsv has no '{gcol}' column: no group comparisons")
    if inputs.regional is None:
        out.append(f"{relative_path('group_regional')} not found: run the participant level "
                   "first")
    elif not data.empty and data["r2star_agecorr"].isna().all():
        out.append(f"{file_name('group_regional')} has no r2star_agecorr values (group level "
                   "not run or age model failed): figures show R2* without age correction")
    for name, what in (("table1", "Table 1"), ("table2", "Table 2"), ("agefit", "age model")):
        if table(inputs, name) is None:
            out.append(f"{relative_path(name)} not found: {what} is not shown")
    if table(inputs, "volumes") is None:
        out.append(f"{relative_path('group_volumes')} not found (participant level without "
                   "--volumes): Figure 3 and volume correlations are not available")
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


def significance(inputs: StudyInputs) -> tuple[float, bool]:
    """Significance level of the run and whether FDR q-values replace p-values.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    alpha : float
        From ``stats.json`` settings (default 0.05).
    fdr : bool
        Whether Benjamini-Hochberg q-values are shown instead of p-values.
    """
    settings = inputs.stats.get("settings") or {}
    record = inputs.stats.get("methods") or {}
    fdr = (record.get("fdr") or {}).get("applied") if isinstance(record, dict) else None
    if fdr is None:
        fdr = settings.get("fdr") is True
    try:
        alpha = float(settings.get("alpha", 0.05))
    except (TypeError, ValueError):
        alpha = 0.05
    return alpha, bool(fdr)


def group_pvalues(inputs: StudyInputs, region: str, groups: list[str]) -> dict[str, float]:
    """Group -> p (q with FDR) of its Mann-Whitney comparison with the controls (Table 2).

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    region : str
        Canonical region.
    groups : list of str
        Groups to look up.

    Returns
    -------
    dict of str to float
        The groups that have a value in Table 2.
    """
    t2 = table(inputs, "table2")
    if t2 is None or "region" not in t2:
        return {}
    rows = t2[t2["region"] == region]
    if rows.empty:
        return {}
    _, fdr = significance(inputs)
    out = {}
    for g in groups:
        base = f"mw_{g}_vs_{inputs.control_label}"
        col = f"{base}_q" if fdr and f"{base}_q" in rows else f"{base}_p"
        if col in rows:
            value = pd.to_numeric(rows[col], errors="coerce").iloc[0]
            if np.isfinite(value):
                out[g] = float(value)
    return out


def _fig2_job(inputs, data, region, groups, value_col, ylabel) -> F.FigureJob:
    sub = data[data["region"] == region]
    alpha, fdr = significance(inputs)
    which = "FDR q" if fdr else "p"
    return F.FigureJob(
        f"fig2-{region}", f"Figure 2 · {F.region_title(region)}",
        f"{ylabel} per group; box = median and quartiles, points = participants. Above each "
        f"patient group: Mann-Whitney {which} against the controls (Table 2), * = below "
        f"{alpha:g}.",
        f"region-{region}_desc-groups_r2star",
        partial(F.group_distribution_figure, sub, region, groups, value_column=value_col,
                ylabel=ylabel, pvalues=group_pvalues(inputs, region, groups), alpha=alpha))


def _fig3_job(data, region, ctrl, value_col, ylabel, groups, vcol) -> F.FigureJob:
    sub = data[data["region"] == region]
    what = ("normalised cortical GM volume" if "norm" in vcol else "cortical GM volume")
    return F.FigureJob(
        f"fig3-{region}", f"Figure 3 · {F.region_title(region)}",
        f"{what.capitalize()} (volumes.tsv {vcol}, as in the Table 2 correlations) against "
        f"{ylabel} in (left) controls and (right) patients (coloured by group), with the "
        "least-squares line and Pearson r over each panel.",
        f"region-{region}_desc-corticalgm_r2star",
        partial(F.volume_correlation_figure, sub, region, control_label=ctrl,
                value_column=value_col, ylabel=ylabel, groups=groups,
                xlabel=f"{what} (cm³)"))


def figure_jobs(inputs: StudyInputs, data: pd.DataFrame) -> dict[str, list[F.FigureJob]]:
    """The study figures per report section.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    data : pandas.DataFrame
        The cohort table of :func:`cohort`.

    Returns
    -------
    dict of str to list of FigureJob
        Section (``fig2``, ``fig3``, ``agecurves``, ``sitefig``) -> figures to make.
    """
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
        "fig2": [_fig2_job(inputs, data, r, groups, value_col, ylabel) for r in regions],
        "fig3": [_fig3_job(data, r, ctrl, value_col, ylabel, groups, volume_column(inputs))
                 for r in regions]
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
    """Table 1 in the seed's layout (range (mean) and mean (SD) text columns) and in full.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    main, full : TableView or None
        The two views; None when Table 1 is absent (``full`` also without text columns).
    """
    entry = inputs.tables.get("table1")
    if entry is None:
        return None, None
    df, dictionary = entry
    text = [c for c in df.columns if c.endswith("_text")]
    main = [c for c in ("group", "n") if c in df.columns] + text
    labels = {c: T1_LABELS.get(c, c[:-5].replace("_", " ")) for c in text}
    view = table_view(df, id="table1", caption="Characteristics of participants per group",
                      dictionary=dictionary, columns=main if text else None, labels=labels,
                      source=relative_path("table1"),
                      note="Ranges with the mean in parentheses (age, disease duration, EDSS); "
                      "mean (SD) for lesion load and volumes, as in the seed study.")
    full = None
    if text:
        full = table_view(df, id="table1-full", caption="table1.tsv, all columns",
                          dictionary=dictionary, combine_mean_sd=False,
                          source=relative_path("table1"))
    return view, full


T1_LABELS = {"sex_text": "sex (F/M)", "age_text": "age, years",
             "disease_duration_text": "disease duration, years", "edss_text": "EDSS",
             "lesion_load_cm3_text": "T2 lesion load (cm³)",
             "cortical_gm_cm3_text": "cortical GM volume (cm³)",
             "wm_cm3_text": "total WM volume (cm³)"}


#: Table 2's association columns: (r or beta column, its p column or None, header)
T2_ASSOCIATIONS = (("r_cortical_gm_cm3_patients", "p_cortical_gm_cm3_patients",
                    "cortical GM r"),
                   ("r_wm_cm3_patients", "p_wm_cm3_patients", "WM r"),
                   ("beta_edss", None, "EDSS β"),
                   ("beta_disease_duration", None, "duration β"),
                   ("model_R", "model_p", "model R"))


def _table2_groups(df: pd.DataFrame, control: str) -> list[str]:
    """Groups with mean/SD columns: controls, the seed's phenotypes, then the rest."""
    groups = [c[:-5] for c in df.columns if c.endswith("_mean") and f"{c[:-5]}_sd" in df]
    order = [control, *PHENOTYPES]
    return [g for g in order if g in groups] + [g for g in groups if g not in order]


def _p_parts(rec: pd.Series, column: str | None, alpha: float,
             fdr: bool) -> tuple[list[tuple[str, str | None]], str]:
    """The "p = 0.012 *" line of a cell (q with FDR) and its CSS class (sig / ns)."""
    if column is None:
        return [], ""
    qcol = ("q_" + column[2:] if column.startswith("p_") else column[:-2] + "_q"
            if column.endswith("_p") else None)
    col = qcol if fdr and qcol in rec.index else column
    if col not in rec.index:
        return [], ""
    text, is_num = format_value(rec[col], col)
    if not is_num:
        return [], ""
    value = float(rec[col])
    mark = " *" if value < alpha else ""
    name = "q" if col != column else "p"
    sign = "" if text.startswith("<") else "= "
    return [(f"{name} {sign}", None), (text, col), (mark, None)], "sig" if mark else "ns"


def _table2_row(rec: pd.Series, groups: list[str], control: str, alpha: float,
                fdr: bool) -> list[Cell]:
    name = "title" if "title" in rec.index else "region"
    row = [Cell(str(rec[name]), (name,))]
    for g in groups:
        m, s_ = f"{g}_mean", f"{g}_sd"
        mt, num = format_value(rec[m], m)
        st_, _ = format_value(rec[s_], s_)
        sub, css = ([], "") if g == control else _p_parts(
            rec, f"mw_{g}_vs_{control}_p", alpha, fdr)
        row.append(Cell(f"{mt} ({st_})", (m, s_), num, css=css, sub=sub,
                        parts=[(mt, m), (" (", None), (st_, s_), (")", None)]))
    for col, pcol, _ in T2_ASSOCIATIONS:
        if col not in rec.index:
            continue
        text, num = format_value(rec[col], col)
        tip = ""
        if col.startswith("beta_") and not num:
            text, tip = "n.s.", "not selected by the stepwise model"
        sub, css = _p_parts(rec, pcol, alpha, fdr)
        row.append(Cell(text, (col,), num, sub=sub, css=css, tip=tip))
    return row


def table2_main_view(df: pd.DataFrame, dictionary: dict, control: str, alpha: float = 0.05,
                     fdr: bool = False) -> TableView:
    """Table 2 in the seed's layout.

    Mean (SD) per group with the Mann-Whitney p against the controls below it, volume correlations
    with their p, stepwise betas, model R and p; significant values (p, or FDR q, below ``alpha``)
    bold with ``*``.

    Parameters
    ----------
    df : pandas.DataFrame
        ``table2.tsv``.
    dictionary : dict
        Its column dictionary.
    control : str
        The controls' group label.
    alpha : float, optional
        Significance level.
    fdr : bool, optional
        Show q-values instead of p-values.

    Returns
    -------
    TableView
        The table for the template.
    """
    groups = _table2_groups(df, control)
    header = [("region", "Region")]
    for g in groups:
        tip = dictionary.get(f"{g}_mean", {}).get("Description", "") \
            if isinstance(dictionary.get(f"{g}_mean"), dict) else ""
        header.append((f"{g} (s⁻¹)", tip))
    header += [(label, "") for col, _, label in T2_ASSOCIATIONS if col in df.columns]
    rows = [_table2_row(rec, groups, control, alpha, fdr) for _, rec in df.iterrows()]
    which = "FDR q-values (Benjamini-Hochberg across regions)" if fdr else "p-values"
    note = (f"Mean (SD) of age-corrected R2* per group; below each patient group the "
            f"Mann-Whitney {which} against {control}; cortical GM r and WM r: correlation of "
            f"the (normalised, when available) volume with age-corrected R2* in patients "
            f"(Pearson or Spearman, see the full table) with its p; EDSS and disease duration β: "
            f"standardised betas of the stepwise model (n.s. = not selected); model R with the "
            f"model's F-test p. Bold with * = below {alpha:g}, grey = not significant. Values "
            f"are rounded for display; the full table below has every column.")
    return TableView("table2", "Regional age-corrected R2* (s⁻¹), mean (SD) per group, and "
                     "associations in patients", header, rows, note,
                     relative_path("table2"))


def table2_views(inputs: StudyInputs) -> tuple[TableView | None, TableView | None]:
    """Table 2 in the seed's layout and the full table.

    The first as :func:`table2_main_view`, the second with every test, statistic and convention.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    main, full : TableView or None
        The two views; None when Table 2 is absent or empty.
    """
    entry = inputs.tables.get("table2")
    if entry is None:
        return None, None
    df, dictionary = entry
    if df.empty:
        return None, None
    alpha, fdr = significance(inputs)
    view = table2_main_view(df, dictionary or {}, inputs.control_label, alpha, fdr)
    full = table_view(df, id="table2-full", caption="table2.tsv, all columns",
                      dictionary=dictionary, combine_mean_sd=False,
                      source=relative_path("table2"))
    return view, full


def agefit_view(inputs: StudyInputs) -> TableView | None:
    """The pooled bilateral age model per region.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.

    Returns
    -------
    TableView or None
        None when ``agefit.tsv`` is absent.
    """
    fits = bilateral_fits(table(inputs, "agefit"))
    if fits is None:
        return None
    cols = ["region", "method", "model", "n", "age_min", "age_max", "a", "b", "c", "slope",
            "b_sd_ratio", "r2", "correction_sd_median", "n_extrapolated", "warning"]
    return table_view(fits, id="agefit", caption="Age model per region (controls, bilateral, "
                      "all sites)", dictionary=inputs.tables["agefit"][1],
                      combine_mean_sd=False, columns=cols,
                      source=relative_path("agefit"))


def bilateral_fits(agefit: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows of ``agefit.tsv`` for bilateral regions pooled over sites.

    Parameters
    ----------
    agefit : pandas.DataFrame or None
        ``agefit.tsv``.

    Returns
    -------
    pandas.DataFrame or None
        The rows with ``hemisphere`` bilateral and ``site`` all (None for None).
    """
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
    """The numbers at the top of the page.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables and ``stats.json``.
    data : pandas.DataFrame
        The cohort table of :func:`cohort`.
    n_flags : int
        QC flags raised.
    n_failed : int
        Participants failed or excluded.

    Returns
    -------
    list of dict
        ``value``, ``label`` and ``kind`` (``ok``, ``warn``, ``bad`` or "") per card.
    """
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


def _pct(value: float) -> str:
    return f"{value:+.1f} %"


def anatomy_check_text(check: pd.DataFrame, record: dict[str, Any]) -> str:
    """The sentence above the automatic anatomy check's table, from the table itself.

    Parameters
    ----------
    check : pandas.DataFrame
        ``group/autoanatomy_r2star.tsv``.
    record : dict
        Its provenance record (sidecar key ``AutomaticAnatomyCheck``).

    Returns
    -------
    str
        Which participant, how it was processed, the median and range of the per-region
        differences (bilateral rows measured both ways), and the regions left without voxels.
    """
    pid = str(record.get("ParticipantId") or check["participant_id"].iloc[0])
    cohort = record.get("Cohort", "")
    rows = check[check["hemisphere"] == "bilateral"]
    both = rows[np.isfinite(rows["r2star_rater"]) & np.isfinite(rows["r2star_automatic"])]
    text = (f"Participant {pid}" + (f" of {cohort}" if cohort else "")
            + " (a simulated control with template-built anatomy, outside the study: it is "
            "not counted in Table 1, Table 2 or the figures) was processed twice, with its "
            "rater masks and with automatic anatomy (template registration and atlas labels, "
            "no masks).")
    if not both.empty:
        pct = both["difference_pct"].to_numpy(float)
        worst = both.iloc[int(np.argmax(np.abs(pct)))]
        worst_pct = _pct(float(worst["difference_pct"]))
        text += (f" Over the {len(both)} regions measured both ways, the automatic mean R2* "
                 f"differs from the rater-mask mean by a median of "
                 f"{float(np.median(np.abs(pct))):.1f} % (from {_pct(pct.min())} to "
                 f"{_pct(pct.max())}); the largest difference is "
                 f"{REGION_TITLES.get(worst['region'], worst['region']).lower()}, "
                 f"{float(worst['difference']):+.2f} s⁻¹ ({worst_pct}).")
    empty = [REGION_TITLES.get(r, r).lower() for r in rows["region"]
             if r not in set(both["region"])]
    if empty:
        text += (" Not measured both ways (no voxel left after erosion in at least one of them): "
                 + ", ".join(empty) + ".")
    return text


def anatomy_check_view(check: pd.DataFrame | None, dictionary: dict[str, Any]
                       ) -> dict[str, Any] | None:
    """The report's "Automatic anatomy check" section (``ironmap demo``).

    Parameters
    ----------
    check : pandas.DataFrame or None
        ``group/autoanatomy_r2star.tsv``; None when the run wrote none.
    dictionary : dict
        Its JSON sidecar (column dictionary + provenance record).

    Returns
    -------
    dict or None
        ``text`` and ``table`` (bilateral rows); None without a check.
    """
    if check is None or check.empty:
        return None
    from ironmap.core.regions.anatomy_check import CHECK_COLUMNS

    record = dictionary.get("AutomaticAnatomyCheck") or {}
    rows = check[check["hemisphere"] == "bilateral"].copy()
    rows["region"] = [REGION_TITLES.get(r, r) for r in rows["region"]]
    shown = [c for c in CHECK_COLUMNS if c not in ("participant_id", "hemisphere")]
    view = table_view(rows, id="autoanatomy-check", combine_mean_sd=False, columns=shown,
                      dictionary=dictionary, source=relative_path("autoanatomy_check"),
                      caption="Regional R2* (s⁻¹, hemispheres pooled) of one participant with "
                      "rater masks and with automatic anatomy; difference = automatic − rater",
                      labels={"r2star_rater": "rater masks (s⁻¹)",
                              "r2star_automatic": "automatic (s⁻¹)",
                              "difference": "difference (s⁻¹)",
                              "difference_pct": "difference (%)",
                              "n_voxels_rater": "voxels, rater",
                              "n_voxels_automatic": "voxels, automatic",
                              "dice": "Dice of the labels"})
    return {"text": anatomy_check_text(check, record), "table": view}
