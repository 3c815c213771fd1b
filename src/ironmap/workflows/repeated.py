"""Group level for repeated scans: site harmonisation, travelling heads, longitudinal change.

Called once from :func:`ironmap.workflows.group_level.run_group_level`
(:func:`run_repeated_measures`), before the cross-sectional analysis:

1. every scan of ``group/regional_r2star.tsv`` gets its age, site and group: the age and site
   at the session from ``sub-X/sub-X_sessions.tsv`` when present, else from
   ``participants.tsv``; ``years`` since the participant's first scan from those ages
   (``acq_time`` when there is no age) -> ``group/sessions.tsv``;
2. ``--harmonise combat|combat-gam``: the analysed R2* column harmonised across the sites of
   the scans (:mod:`ironmap.core.group.harmonise`, group and age protected) into
   ``r2star_harmonised``, which the cross-sectional analysis then uses;
3. ``group/harmonisation.tsv``: site effects before (and after) harmonisation: site
   classification AUC, and for participants scanned at several sites (travelling heads)
   ICC(2,1), ICC(3,1), within-subject SD and CoV (:mod:`ironmap.core.group.reliability`);
4. when participants have scans at different times: ``group/longitudinal.tsv``, the annual
   R2* change per region and group from a linear mixed model
   (:mod:`ironmap.core.group.longitudinal`), bilateral regions.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.group import reliability
from ironmap.core.group.cohort_table import normalise_id
from ironmap.core.group.harmonise import HARMONISERS, harmonise
from ironmap.core.group.longitudinal import change_rate_table, years_since_first
from ironmap.io import dictionaries as dicts
from ironmap.io import study as study_io
from ironmap.io.layout import column_dictionary, output_path
from ironmap.io.tables import write_tsv

log = logging.getLogger(__name__)

#: column dictionaries of the tables written here (kept under their former names)
DICTIONARIES = dicts.REPEATED
HARMONISED_COLUMN = dicts.HARMONISED_COLUMN
HARMONISED_DICTIONARY = dicts.HARMONISED


def _session_key(values: pd.Series) -> pd.Series:
    return values.fillna("").astype(str).map(
        lambda s: s if not s or s.startswith("ses-") else f"ses-{s}")


def scan_table(bids_dir, regional: pd.DataFrame, subjects: pd.DataFrame,
               notes: list[str]) -> pd.DataFrame:
    """One row per scan: ``participant_id, session_id, site, group, age, years``.

    Parameters
    ----------
    bids_dir : path-like
        BIDS_DIR (sessions files).
    regional : pandas.DataFrame
        The cohort regional table.
    subjects : pandas.DataFrame
        One row per participant.
    notes : list of str
        Notes are appended here.

    Returns
    -------
    pandas.DataFrame
        One row per scan; ``age`` and ``years`` in years.
    """
    scans = regional[["participant_id", "session_id"]].copy() if "session_id" in regional \
        else regional[["participant_id"]].assign(session_id=np.nan)
    scans["participant_id"] = scans["participant_id"].map(normalise_id)
    scans["session_id"] = _session_key(scans["session_id"])
    scans = scans.drop_duplicates().reset_index(drop=True)
    info = subjects.set_index("participant_id")
    scans["group"] = scans["participant_id"].map(info["group"])
    scans["site"] = scans["participant_id"].map(info["site"]).astype(object)
    scans["age"] = scans["participant_id"].map(info["age"]).astype(float)
    sessions = study_io.read_sessions(bids_dir)
    if sessions is not None:
        sessions = sessions.assign(participant_id=sessions["participant_id"].map(normalise_id),
                                   session_id=_session_key(sessions["session_id"]))
        sessions = sessions.drop_duplicates(["participant_id", "session_id"])
        merged = scans.merge(sessions, on=["participant_id", "session_id"], how="left",
                             suffixes=("", "_ses"))
        if "age_ses" in merged:
            ses_age = pd.to_numeric(merged["age_ses"], errors="coerce")
            scans["age"] = ses_age.where(ses_age.notna(), scans["age"]).to_numpy()
        if "site_ses" in merged:
            scans["site"] = merged["site_ses"].where(merged["site_ses"].notna(),
                                                     scans["site"]).to_numpy()
        if "acq_time" in merged and "age_ses" not in merged:
            t = pd.to_datetime(merged["acq_time"], errors="coerce")
            days = (t - t.groupby(merged["participant_id"]).transform("min")).dt.days
            scans["years"] = (days / 365.25).to_numpy()
    if "years" not in scans:
        scans["years"] = years_since_first(scans["participant_id"], scans["age"])
    missing = scans["site"].isna().sum()
    if missing:
        notes.append(f"{missing} scan(s) without a site")
    return scans


def _wide(regional: pd.DataFrame, scans: pd.DataFrame, value: str) -> pd.DataFrame:
    """Scans (rows, in ``scans`` order) x ``region|hemisphere`` features."""
    df = regional.assign(participant_id=regional["participant_id"].map(normalise_id),
                         session_id=_session_key(regional.get("session_id",
                                                              pd.Series(index=regional.index))),
                         feature=regional["region"] + "|" + regional["hemisphere"],
                         v=pd.to_numeric(regional[value], errors="coerce"))
    wide = df.pivot_table(index=["participant_id", "session_id"], columns="feature",
                          values="v", aggfunc="mean", dropna=False)
    return wide.reindex(pd.MultiIndex.from_frame(scans[["participant_id", "session_id"]]))


def _long(wide: pd.DataFrame, scans: pd.DataFrame, name: str) -> pd.DataFrame:
    long = wide.reset_index(drop=True).assign(
        participant_id=scans["participant_id"].to_numpy(),
        session_id=scans["session_id"].to_numpy(), site=scans["site"].to_numpy())
    long = long.melt(id_vars=["participant_id", "session_id", "site"], var_name="feature",
                     value_name=name)
    parts = long["feature"].str.split("|", n=1, expand=True)
    return long.assign(region=parts[0], hemisphere=parts[1]).drop(columns="feature")


def site_effects(wide: pd.DataFrame, scans: pd.DataFrame, stage: str) -> pd.DataFrame:
    """Rows of ``harmonisation.tsv`` for one stage (AUC row + per-region reliability).

    Parameters
    ----------
    wide : pandas.DataFrame
        Scans x region/hemisphere R2* (s^-1).
    scans : pandas.DataFrame
        :func:`scan_table`.
    stage : str
        ``before`` or ``after <method>``.

    Returns
    -------
    pandas.DataFrame
        The rows, columns of the harmonisation dictionary.
    """
    bil = [c for c in wide.columns if c.endswith("|bilateral")] or list(wide.columns)
    x = wide[bil].to_numpy(dtype=float)
    keep = np.isfinite(x).all(axis=1) & scans["site"].notna().to_numpy()
    rows = []
    travelling = scans.groupby("participant_id")["site"].nunique().max() >= 2
    if keep.sum() >= 4:
        rows.append({"stage": stage, "region": "all regions", "hemisphere": np.nan,
                     "n_participants": int(keep.sum()),
                     "n_sites": int(scans.loc[keep, "site"].nunique()),
                     "site_auc": reliability.site_auc(x[keep], scans["site"][keep],
                                                      scans["participant_id"][keep]),
                     "site_auc_centred": reliability.site_auc(
                         x[keep], scans["site"][keep], scans["participant_id"][keep],
                         centre_subjects=True) if travelling else np.nan})
    if travelling:
        rel = reliability.reliability_table(_long(wide, scans, "v"), "v")
        rel = rel.rename(columns={"wsd": "within_subject_sd"}).assign(stage=stage)
        rows += rel.to_dict("records")
    cols = list(DICTIONARIES["harmonisation"])
    return pd.DataFrame(rows).reindex(columns=cols)


def _harmonise(regional, regional_one, scans, wide, method, value, notes):
    features, msgs = harmonise(wide.reset_index(drop=True), scans["site"],
                               groups=scans["group"], ages=scans["age"], method=method)
    notes.extend(f"harmonisation: {m}" for m in msgs)
    features.index = wide.index
    long = _long(features, scans, HARMONISED_COLUMN).drop(columns="site")
    out = []
    for df in (regional, regional_one):
        key = df.assign(participant_id=df["participant_id"].map(normalise_id),
                        session_id=_session_key(df.get("session_id",
                                                       pd.Series(index=df.index))))
        key = key.drop(columns=HARMONISED_COLUMN, errors="ignore")
        merged = key.merge(long, on=["participant_id", "session_id", "region", "hemisphere"],
                           how="left")
        merged["session_id"] = df["session_id"].to_numpy() if "session_id" in df else np.nan
        merged["participant_id"] = df["participant_id"].to_numpy()
        out.append(merged)
    return out[0], out[1], features


def run_repeated_measures(cfg, settings, subjects: pd.DataFrame, regional_all: pd.DataFrame,
                          regional: pd.DataFrame, output_dir: Path, notes: list[str]):
    """Steps 1-4 (module docstring); returns ``(regional_all, regional, settings)``.

    ``settings.value_column`` becomes ``r2star_harmonised`` when harmonising.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration (``harmonise``).
    settings : GroupSettings
        The group settings.
    subjects : pandas.DataFrame
        One row per participant.
    regional_all : pandas.DataFrame
        Every scan's regional values.
    regional : pandas.DataFrame
        One session per participant.
    output_dir : pathlib.Path
        OUTPUT_DIR.
    notes : list of str
        Notes are appended here.

    Returns
    -------
    tuple
        ``(regional_all, regional, settings)``.
    """
    method = getattr(cfg, "harmonise", "none") or "none"
    if method != "none" and method not in HARMONISERS:
        raise ValueError(f"unknown --harmonise {method!r}; expected none or "
                         f"{', '.join(HARMONISERS)}")
    # a harmonised column of an earlier run is never carried into this one
    regional_all = regional_all.drop(columns=HARMONISED_COLUMN, errors="ignore")
    regional = regional.drop(columns=HARMONISED_COLUMN, errors="ignore")
    scans = scan_table(cfg.bids_dir, regional_all, subjects, notes)
    value = settings.value_column
    if method == "none" and not scans["participant_id"].duplicated().any():
        return regional_all, regional, settings
    write_tsv(scans, output_path(output_dir, "sessions"), column_dictionary("sessions"))
    wide = _wide(regional_all, scans, value)
    effects = [site_effects(wide, scans, "before")]
    if method != "none":
        regional_all, regional, hwide = _harmonise(regional_all, regional, scans, wide,
                                                   method, value, notes)
        effects.append(site_effects(hwide, scans, f"after {method}"))
        settings = dataclasses.replace(settings, value_column=HARMONISED_COLUMN)
        value = HARMONISED_COLUMN
        log.info("group level: R2* harmonised across %d sites (%s)", scans["site"].nunique(),
                 method)
    write_tsv(pd.concat(effects, ignore_index=True), output_path(output_dir, "harmonisation"),
              column_dictionary("harmonisation"))
    if (scans.groupby("participant_id")["years"].nunique() >= 2).sum() >= 2:
        _longitudinal(regional_all, scans, value, output_dir, notes)
    return regional_all, regional, settings


def _longitudinal(regional_all, scans, value, output_dir, notes) -> None:
    long = regional_all.assign(participant_id=regional_all["participant_id"].map(normalise_id),
                               session_id=_session_key(regional_all["session_id"]))
    long = long[long["hemisphere"] == "bilateral"]
    long = long.merge(scans, on=["participant_id", "session_id"], how="left")
    table = change_rate_table(long, value)
    if table.empty:
        notes.append("longitudinal: no region could be modelled")
        return
    if not table["converged"].all():
        notes.append("longitudinal: the mixed model did not converge for "
                     f"{int((~table['converged']).sum())} region/group row(s)")
    write_tsv(table, output_path(output_dir, "longitudinal"), column_dictionary("longitudinal"))
    log.info("group level: annual R2* change of %d region(s) x %d group(s) -> "
             "longitudinal.tsv", table["region"].nunique(), table["group"].nunique())


def report_context(output_dir) -> dict | None:
    """Template context of the study report's repeated-scans block.

    Failures are logged and give None: the report never fails on this block.

    Parameters
    ----------
    output_dir : path-like
        OUTPUT_DIR.

    Returns
    -------
    dict or None
        Tables, figures and methods text; None without results.
    """
    from ironmap.io.tables import read_dictionary, read_tsv
    from ironmap.report import repeated as view
    from ironmap.workflows.report_figures import realise

    path = {k: output_path(output_dir, k) for k in ("harmonisation", "longitudinal",
                                                    "group_regional", "sessions")}
    try:
        ctx: dict = {}
        harm = rates = None
        if path["harmonisation"].exists():
            harm = read_tsv(path["harmonisation"])
            ctx["harmonisation"] = view.harmonisation_view(
                harm, read_dictionary(path["harmonisation"]))
        if path["longitudinal"].exists():
            rates = read_tsv(path["longitudinal"])
            ctx["longitudinal"] = view.longitudinal_view(
                rates, read_dictionary(path["longitudinal"]))
            regional = read_tsv(path["group_regional"])
            value = HARMONISED_COLUMN if HARMONISED_COLUMN in regional and \
                regional[HARMONISED_COLUMN].notna().any() else "r2star_mean"
            scans = regional[regional["hemisphere"] == "bilateral"].assign(
                session_id=lambda d: _session_key(d["session_id"]))
            scans = scans.merge(read_tsv(path["sessions"]).assign(
                session_id=lambda d: _session_key(d["session_id"])),
                on=["participant_id", "session_id"])
            groups = list(dict.fromkeys(rates["group"]))
            jobs = view.longitudinal_jobs(scans, rates, groups, value)
            ctx["figures"] = [realise(j, output_path(output_dir, "group_figures"),
                                      Path(output_dir)) for j in jobs]
        if ctx:
            ctx["methods"] = view.methods_text(harm, rates)
        return ctx or None
    except Exception as exc:  # noqa: BLE001 - report errors are logged, never fatal
        log.error("report: repeated-scans block not written: %s: %s", type(exc).__name__, exc)
        return None
