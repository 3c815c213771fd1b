"""Group level: participant tables -> age correction -> statistics -> tables + stats.json.

Order of steps (:func:`run_group_level`):

1. settings from the command line and ``study.toml``; ``participants.tsv`` checked
   (:func:`ironmap.core.group.cohort_table.validate_participants`);
2. ``OUTPUT_DIR/group/regional_r2star.tsv`` (required), ``lesions.tsv`` and ``volumes.tsv``
   (optional) joined to the participants;
3. per region and hemisphere, the age model (``--age-model``) fitted on the controls and every
   subject adjusted to the reference age (``regional_r2star.tsv`` gains ``r2star_agecorr``
   and its bootstrap SD ``r2star_agecorr_sd``; :mod:`ironmap.workflows.group_agecorr`);
4. Table 1, Table 2 (bilateral rows), lesion analysis, multicenter checks, optional FDR;
5. ``table1.tsv``, ``table2.tsv``, ``agefit.tsv``, ``stats.json`` (each TSV with its JSON
   dictionary), then the HTML report when requested.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.group.cohort_table import Issue, normalise_id, validate_participants
from ironmap.core.group.paper_tables import (
    GroupSettings,
    add_fdr,
    lesion_analysis,
    multicenter_region,
    table1,
    table2_region,
)
from ironmap.core.regions.names import REGION_TITLES, REGIONS
from ironmap.io import dictionaries as dicts
from ironmap.io import study as study_io
from ironmap.io.atomic import write_json
from ironmap.io.layout import column_dictionary, file_name, output_path, relative_path
from ironmap.io.tables import read_dictionary, write_tsv
from ironmap.workflows import group_dicts
from ironmap.workflows.config import RunConfig
from ironmap.workflows.group_agecorr import age_correct_all, model_summary
from ironmap.workflows.group_dicts import clean_json
from ironmap.workflows.repeated import (
    HARMONISED_COLUMN,
    HARMONISED_DICTIONARY,
    run_repeated_measures,
)

log = logging.getLogger(__name__)

__all__ = ["run_group_level", "GroupInputError"]


class GroupInputError(ValueError):
    """The group level cannot run on these inputs (message names the file or problem)."""


def _load_settings(cfg: RunConfig) -> tuple[GroupSettings, dict]:
    study = study_io.read_study_config(cfg.study_config)
    return study_io.group_settings(
        study, control_label=cfg.control_label, group_column=cfg.group_column,
        reference_age=cfg.reference_age, fdr=cfg.fdr, per_site=cfg.per_site_agecorr,
        age_model=cfg.age_model)


def _one_session(df: pd.DataFrame, cfg: RunConfig, name: str, notes: list[str]
                 ) -> pd.DataFrame:
    """Keep one session per participant (the requested one, else the first in sort order)."""
    df = df.copy()
    df["participant_id"] = df["participant_id"].map(normalise_id)
    if cfg.participant_label:
        keep = {normalise_id(p) for p in cfg.participant_label}
        df = df[df["participant_id"].isin(keep)]
    if "session_id" not in df or df["session_id"].isna().all():
        return df
    if cfg.session_label:
        wanted = {s if s.startswith("ses-") else f"ses-{s}" for s in cfg.session_label}
        df = df[df["session_id"].fillna("").map(
            lambda s: s if s.startswith("ses-") else f"ses-{s}").isin(wanted)]
    first = df.groupby("participant_id")["session_id"].transform(
        lambda s: sorted(s.fillna("").unique())[0])
    dropped = df.loc[df["session_id"].fillna("") != first, "participant_id"].unique()
    if len(dropped):
        notes.append(f"{name}: {len(dropped)} participant(s) with several sessions; the "
                     "first session is analysed")
    return df[df["session_id"].fillna("") == first]


def _volume_columns(vol: pd.DataFrame) -> dict[str, str]:
    out = {}
    for canon in ("cortical_gm", "wm"):
        for col in (f"{canon}_norm_cm3", f"{canon}_cm3"):
            if col in vol.columns and vol[col].notna().any():
                out[f"{canon}_cm3"] = col
                break
    return out


def _attach_measures(subjects, parts, cfg, notes) -> tuple[pd.DataFrame, dict]:
    """Join lesion load, lesion R2* and brain volumes to the subject table."""
    sources: dict = {}
    lesions = study_io.read_group_table(cfg.output_dir, "group_lesions")
    if lesions is not None:
        les = _one_session(lesions, cfg, file_name("group_lesions"), notes)
        les = les.rename(columns={"lesion_r2star_mean": "lesion_r2star"})
        keep = [c for c in ("lesion_load_cm3", "lesion_r2star") if c in les]
        subjects = subjects.merge(les[["participant_id", *keep]], on="participant_id",
                                  how="left")
        sources["lesions"] = (f"{relative_path('group_lesions')} (lesion_load_cm3, "
                              "lesion_r2star_mean)")
    volumes = study_io.read_group_table(cfg.output_dir, "group_volumes")
    vcols = _volume_columns(volumes) if volumes is not None else {}
    if vcols:
        vol = _one_session(volumes, cfg, file_name("group_volumes"), notes)
        vol = vol[["participant_id", *vcols.values()]].rename(
            columns={v: k for k, v in vcols.items()})
        subjects = subjects.merge(vol, on="participant_id", how="left")
        sources["volumes"] = {k: f"{relative_path('group_volumes')}:{v}"
                              for k, v in vcols.items()}
    else:
        for canon in ("cortical_gm", "wm"):
            col = parts["columns"].get(canon)
            raw = parts["participants"]
            if col in raw.columns:
                ids = raw["participant_id"].map(normalise_id)
                values = pd.Series(pd.to_numeric(raw[col], errors="coerce").to_numpy(),
                                   index=ids)
                subjects[f"{canon}_cm3"] = subjects["participant_id"].map(
                    values[~values.index.duplicated()])
                sources.setdefault("volumes", {})[f"{canon}_cm3"] = f"participants.tsv:{col}"
    for col in ("lesion_load_cm3", "lesion_r2star", "cortical_gm_cm3", "wm_cm3"):
        if col not in subjects:
            subjects[col] = np.nan
    return subjects, sources


def _region_order(names) -> list[str]:
    known = [r for r in REGIONS if r in set(names)]
    return known + sorted(set(names) - set(known))


def _table2(regional, subjects, settings) -> tuple[pd.DataFrame, list, dict]:
    bil = regional[regional["hemisphere"] == "bilateral"]
    rows, records, multicenter = [], [], {}
    for region in _region_order(bil["region"].unique()):
        y = bil.loc[bil["region"] == region].set_index("participant_id")["r2star_agecorr"]
        data = subjects.assign(y=subjects["participant_id"].map(y[~y.index.duplicated()]))
        data = data[data["y"].notna()]
        if data.empty:
            continue
        row, recs = table2_region(data, settings, region)
        multicenter[region] = multicenter_region(data, settings, region, row, recs)
        row = {"region": region, "title": REGION_TITLES.get(region, region), **row}
        rows.append(row)
        records += recs
    table = pd.DataFrame(rows)
    if settings.fdr and not table.empty:
        table = add_fdr(table)
    return table, records, multicenter


def _exclusions(issues: list[Issue], notes: list[str]) -> dict:
    excluded = sorted({i.participant_id for i in issues if i.action == "excluded"})
    counts: dict[str, int] = {}
    for i in issues:
        key = f"{i.column}: {i.action}"
        counts[key] = counts.get(key, 0) + 1
    return {"participants_excluded": excluded, "n_excluded": len(excluded),
            "counts": counts, "issues": [i.message() for i in issues], "notes": notes}


def _read_inputs(cfg, settings, columns, notes):
    raw, meta = study_io.read_participants(cfg.bids_dir)
    subjects, issues = validate_participants(raw, columns, settings.control,
                                             settings.phenotypes)
    for issue in issues:
        log.warning("participants.tsv: %s", issue.message())
    regional = study_io.read_group_table(cfg.output_dir, "group_regional", required=True)
    if settings.value_column not in regional.columns:
        raise GroupInputError(f"{output_path(cfg.output_dir, 'group_regional')}: no column "
                              f"{settings.value_column!r}")
    regional_all = regional.copy()
    regional = _one_session(regional, cfg, file_name("group_regional"), notes)
    unknown = sorted(set(regional["participant_id"]) - set(subjects["participant_id"]))
    excluded = {i.participant_id for i in issues if i.action == "excluded"}
    dropped = [pid for pid in unknown if pid not in excluded]
    for pid in dropped:
        issues.append(Issue(pid, "participant_id", "has R2* values but no row in "
                            "participants.tsv", "excluded"))
    if dropped:
        log.warning("%s: %d processed participant(s) have no row there and are left out of "
                    "the group statistics: %s", Path(cfg.bids_dir) / "participants.tsv",
                    len(dropped), ", ".join(dropped))
    without = sorted(set(subjects["participant_id"]) - set(regional["participant_id"]))
    if without:
        notes.append(f"{len(without)} participant(s) in participants.tsv have no regional "
                     f"R2* values: {', '.join(without[:10])}{' ...' if len(without) > 10 else ''}")
    subjects, sources = _attach_measures(
        subjects[subjects["participant_id"].isin(regional["participant_id"])],
        {"columns": columns, "participants": raw}, cfg, notes)
    return subjects.reset_index(drop=True), regional, regional_all, issues, sources, meta


def _reference_age(subjects, settings) -> float:
    if settings.reference_age is not None:
        return float(settings.reference_age)
    ages = subjects.loc[subjects["is_control"], "age"]
    if ages.empty:
        raise GroupInputError(f"no controls (group {settings.control!r}) with an age: the "
                              "age model cannot be fitted; check --control-label")
    return float(ages.mean())


def _write_regional(regional_all, regional, ages, output_dir) -> None:
    out = regional_all.drop(columns=["r2star_agecorr", "r2star_agecorr_sd"], errors="ignore")
    key = ["participant_id", "session_id"] if "session_id" in out else ["participant_id"]
    adj = regional.assign(r2star_agecorr=ages.adjusted, r2star_agecorr_sd=ages.sd)[
        [*key, "region", "hemisphere", "r2star_agecorr", "r2star_agecorr_sd"]]
    out = out.assign(participant_id=out["participant_id"].map(normalise_id))
    out = out.merge(adj, on=[*key, "region", "hemisphere"], how="left")
    path = output_path(output_dir, "group_regional")
    dictionary = read_dictionary(path) or {}
    dictionary["r2star_agecorr"] = dicts.AGECORR_COLUMN
    dictionary["r2star_agecorr_sd"] = dicts.AGECORR_SD_COLUMN
    if HARMONISED_COLUMN in out:
        dictionary[HARMONISED_COLUMN] = HARMONISED_DICTIONARY
    write_tsv(out, path, dictionary)


def run_group_level(cfg: RunConfig) -> int:
    """Run the group level; returns 0 (ok) or 2 (unusable input, message logged).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    int
        Exit code.
    """
    try:
        settings, columns = _load_settings(cfg)
        notes: list[str] = []
        subjects, regional, regional_all, issues, sources, meta = _read_inputs(
            cfg, settings, columns, notes)
        regional_all, regional, settings = run_repeated_measures(
            cfg, settings, subjects, regional_all, regional, Path(cfg.output_dir), notes)
        ref_age = _reference_age(subjects, settings)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.error("group level: %s", exc)
        return 2
    out = cfg.output_dir
    log.info("group level: %d participants (%d controls), reference age %.1f y",
             len(subjects), int(subjects["is_control"].sum()), ref_age)
    ages = age_correct_all(regional, subjects, settings, ref_age, notes)
    fits = ages.fits
    regional = regional.assign(r2star_agecorr=ages.adjusted)
    for note in notes:
        log.warning("%s", note)
    t1 = table1(subjects, settings)
    t2, records, multicenter = _table2(regional, subjects, settings)
    lesions, lesion_records = lesion_analysis(subjects, settings)
    _write_regional(regional_all, regional, ages, out)
    write_tsv(t1, output_path(out, "table1"), column_dictionary("table1", t1))
    write_tsv(t2, output_path(out, "table2"), column_dictionary("table2", t2, settings))
    write_tsv(fits, output_path(out, "agefit"), column_dictionary("agefit", fits))
    doc = group_dicts.stats_document(
        settings=settings, reference_age=ref_age, subjects=subjects, sources=sources,
        records=records + lesion_records, lesions=lesions, multicenter=multicenter,
        exclusions=_exclusions(issues, notes), fits=fits, participants_meta=meta)
    doc["age_model"] = clean_json({**model_summary(fits, settings), "bands": ages.bands})
    doc["methods"] = _methods_record(cfg, doc, fits, ref_age)
    write_json(output_path(out, "stats"), doc)
    log.info("group level: wrote %s", ", ".join(
        relative_path(k) for k in ("table1", "table2", "agefit", "stats", "group_regional")))
    if cfg.report:
        _report(cfg)
    return 0


def _methods_record(cfg: RunConfig, doc: dict, fits: pd.DataFrame, ref_age: float) -> dict:
    """What ran, for the methods text (``stats.json`` ``methods``); {} when it cannot be made."""
    try:
        from ironmap.workflows.provenance import methods_record_for_run

        volumes = (doc.get("sources") or {}).get("volumes")
        record = methods_record_for_run(cfg, settings=doc.get("settings"), agefit=fits,
                                        reference_age=ref_age,
                                        volume_sources=volumes if isinstance(volumes, dict)
                                        else None)
        # the age step's own description of each model it used (with the prior's numbers)
        record["age_model"]["descriptions"] = dict(
            (doc.get("age_model") or {}).get("descriptions") or {})
        return record
    except Exception as exc:  # noqa: BLE001 - provenance never stops the statistics
        log.warning("methods record not written: %s", exc, exc_info=True)
        return {}


def _report(cfg: RunConfig) -> None:
    try:
        from ironmap.workflows.report import write_reports

        write_reports(cfg)
    except ImportError as exc:
        log.error("report not written (report module unavailable: %s)", exc)
    except Exception as exc:  # noqa: BLE001 - report errors are logged, never fatal
        log.error("report not written: %s: %s", type(exc).__name__, exc)
