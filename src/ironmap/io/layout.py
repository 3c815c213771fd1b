"""The derivative layout: every file ironmap writes under OUTPUT_DIR, in one table.

Each :class:`Output` names one file (or folder) by a key, says which level writes it and what
it holds, and carries its column dictionary when it is a table (the JSON sidecar written
beside the TSV; :mod:`ironmap.io.dictionaries`). Code never spells an output's name: it asks
:func:`output_path` (or :func:`ironmap.io.outputs.derivative_path` for a participant's files)
with the key, and the report names its sources with :func:`relative_path`.

Patterns are paths relative to OUTPUT_DIR with these fields:

``{subject}``
    the participant's folder, ``sub-X`` or ``sub-X/ses-Y``;
``{prefix}``
    the file-name prefix ``sub-X`` or ``sub-X_ses-Y`` (also the participant's label in logs);
``{stamp}``
    a run stamp (UTC date-time and process id) for files kept per run.

The table is in the spirit of tedana's output registry (``outputs.json``); ``docs/outputs.md``
lists it. Figures are named by the figure that makes them (their folder is registered here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ironmap.io import dictionaries as dicts
from ironmap.io.dictionaries import described

#: The levels that write outputs.
LEVELS = ("dataset", "participant", "group", "report", "logs", "run")


@dataclass(frozen=True)
class Output:
    """One registered output file or folder.

    Parameters
    ----------
    key : str
        The name code uses to ask for the file.
    level : str
        Which step writes it: one of :data:`LEVELS`.
    pattern : str
        Path relative to OUTPUT_DIR, with the fields ``{subject}``, ``{prefix}``, ``{stamp}``.
    description : str
        What the file holds (units in the text where it is an image).
    columns : mapping or callable, optional
        Column dictionary of a table: a mapping column -> ``{"Description", "Units"}``, or a
        function that builds it from the table (data-dependent columns); None otherwise.
    """

    key: str
    level: str
    pattern: str
    description: str
    columns: Mapping[str, dict[str, str]] | Callable[..., dict] | None = None

    @property
    def is_table(self) -> bool:
        """Whether the output is a TSV table with a JSON column dictionary."""
        return self.pattern.endswith(".tsv")


def _anat(key: str, suffix: str, description: str, columns=None) -> Output:
    return Output(key, "participant", "{subject}/anat/{prefix}_" + suffix, description, columns)


_OUTPUTS: tuple[Output, ...] = (
    Output("dataset_description", "dataset", "dataset_description.json",
           "BIDS derivative dataset description (GeneratedBy: name, version, command)"),
    # --- per participant ------------------------------------------------------------------
    _anat("r2starmap", "R2starmap.nii.gz", "R2* map in s^-1 (failed voxels NaN); sidecar: "
          "estimator, echo times in s"),
    _anat("t2starmap", "T2starmap.nii.gz", "T2* = 1/R2* in s (--write-t2star)"),
    _anat("s0map", "S0map.nii.gz", "Fitted signal at TE = 0 (arbitrary units)"),
    _anat("fitflags", "desc-fitflags_mask.nii.gz", "Fit flags per voxel (0 = valid)"),
    _anat("fitrmse", "desc-rmse_R2starmap.nii.gz", "Root-mean-square fit residual per voxel "
          "(signal units)"),
    _anat("dseg_r2star", "space-R2starmap_desc-deepgm_dseg.nii.gz", "Deep grey-matter labels "
          "on the R2* grid"),
    _anat("dseg_eroded", "space-R2starmap_desc-deepgmeroded_dseg.nii.gz", "The labels after "
          "erosion (the voxels that are measured)"),
    _anat("dseg_labels", "space-R2starmap_desc-deepgm_dseg.tsv", "Label index -> region name "
          "(columns index, name; BIDS dseg table, no JSON sidecar)"),
    _anat("lesion_r2star", "space-R2starmap_label-lesion_mask.nii.gz", "Lesion mask on the "
          "R2* grid"),
    _anat("lesion_auto", "space-FLAIR_desc-auto_label-lesion_mask.nii.gz", "Automatic lesion "
          "mask on the FLAIR grid"),
    _anat("lesion_auto_prob", "space-FLAIR_desc-auto_label-lesion_probseg.nii.gz",
          "Automatic lesion probability on the FLAIR grid"),
    _anat("lesion_auto_core", "space-FLAIR_desc-autocore_label-lesion_mask.nii.gz",
          "Cores of the automatic lesions on the FLAIR grid (voxels at least halfway in FLAIR "
          "from normal white matter to the lesion's bright end); lesion R2* is measured on them"),
    _anat("xfm_flair_to_t1w", "from-FLAIR_to-T1w_mode-image_xfm.mat", "FLAIR -> T1w "
          "transform of the registration (ITK binary .mat)"),
    _anat("xfm_megre_to_t1w", "from-MEGRE_to-T1w_mode-image_xfm.mat", "GRE -> T1w "
          "transform of the registration (ITK binary .mat)"),
    _anat("regions_table", "desc-regions_r2star.tsv", "Regional R2* per region and "
          "hemisphere, s^-1", dicts.REGION_COLUMNS),
    _anat("lesions_table", "desc-lesions_r2star.tsv", "R2* per lesion, s^-1",
          dicts.LESION_COLUMNS),
    _anat("volumes_table", "desc-volumes.tsv", "Tissue volumes in cm3 (raw and head-size "
          "normalised) with a plausibility verdict", dicts.VOLUMES_TABLE),
    _anat("brain_mask_r2star", "space-R2starmap_desc-brain_mask.nii.gz", "Brain mask on the "
          "R2* grid"),
    _anat("brain_mask_t1w", "space-T1w_desc-brain_mask.nii.gz", "Brain mask on the T1w grid"),
    Output("figure_dir", "report", "{subject}/figures", "The participant's QC figures "
           "(PNG with the panel layout in its text chunk; histograms SVG; named by figure)"),
    Output("page_key", "report", "{subject}/figures/page-key.json", "Key of the participant's "
           "QC page, its qc.tsv row and flags (a page is reused while the key matches)"),
    Output("subject_page", "report", "{prefix}.html", "The participant's QC page"),
    # --- group level ----------------------------------------------------------------------
    Output("group_dir", "group", "group", "Cohort tables, statistics and group figures"),
    Output("group_regional", "group", "group/regional_r2star.tsv", "Regional R2* of every "
           "participant (participant level); the group level adds the age-corrected columns",
           dicts.regional_dictionary),
    Output("group_lesions", "group", "group/lesions.tsv", "Lesion summary per participant",
           {**dicts.IDS, **dicts.LESION_SUMMARY}),
    Output("group_volumes", "group", "group/volumes.tsv", "Tissue volumes per participant "
           "(--volumes), cm3", dicts.group_volumes_dictionary),
    Output("table1", "group", "group/table1.tsv", "Table 1: demographics per group",
           dicts.table1_dictionary),
    Output("table2", "group", "group/table2.tsv", "Table 2: age-corrected R2* per region, "
           "group comparisons, correlations, multicenter checks", dicts.table2_dictionary),
    Output("agefit", "group", "group/agefit.tsv", "Age-model fits on the controls per region, "
           "hemisphere and site", dicts.agefit_dictionary),
    Output("stats", "group", "group/stats.json", "Machine-readable statistics: settings, "
           "tests, lesion analysis, exclusions, age model, methods record (provenance)"),
    Output("sessions", "group", "group/sessions.tsv", "One row per scan (repeated scans)",
           dicts.REPEATED["sessions"]),
    Output("harmonisation", "group", "group/harmonisation.tsv", "Site harmonisation: ICC, "
           "within-subject SD, CoV, site AUC before/after", dicts.REPEATED["harmonisation"]),
    Output("longitudinal", "group", "group/longitudinal.tsv", "Annual R2* change per region "
           "and group (mixed model)", dicts.REPEATED["longitudinal"]),
    Output("autoanatomy_check", "group", "group/autoanatomy_r2star.tsv", "ironmap demo: "
           "one simulated participant outside the study processed with rater masks and with "
           "automatic anatomy, regional R2* side by side (s^-1, difference in s^-1 and %); "
           "sidecar: which participant and where its outputs are", dicts.AUTOANATOMY_CHECK),
    Output("qc_table", "report", "group/qc.tsv", "QC metrics and raised flags per participant",
           dicts.QC_TABLE),
    Output("group_figures", "report", "group/figures", "Study figures (PNG + SVG)"),
    Output("report", "report", "report.html", "The study report (self-contained HTML)"),
    # --- logs, manifests, failures --------------------------------------------------------
    Output("logs_dir", "logs", "logs", "Logs, run configurations, manifests, failures"),
    Output("subject_log", "logs", "logs/{prefix}.log", "Log of one participant's last run"),
    Output("manifests_dir", "logs", "logs/manifests", "One manifest per participant"),
    Output("manifest", "logs", "logs/manifests/{prefix}.json", "SHA-256 of a participant's "
           "inputs and outputs, its parameters and summary (resuming skips unchanged work)"),
    Output("config_participant", "logs", "logs/config-participant.json", "Configuration of "
           "the latest participant-level run (read by the group level and the report)"),
    Output("config_participant_run", "logs", "logs/config-participant-{stamp}.json",
           "Configuration of one participant-level run, kept per run"),
    Output("failures", "logs", "logs/failures.tsv", "Participants that failed and why",
           dicts.FAILURES),
    # --- while a run is going -------------------------------------------------------------
    Output("lock", "run", ".ironmap.lock", "OS lock held by the run writing to OUTPUT_DIR"),
    Output("lock_info", "run", ".ironmap.lock.json", "Who holds the lock (pid, host, since)"),
    Output("staging", "run", ".ironmap-staging", "Participants' outputs before they are "
           "committed (removed when done)"),
)

#: Key -> output, every file and folder ironmap writes under OUTPUT_DIR.
LAYOUT: dict[str, Output] = {o.key: o for o in _OUTPUTS}


def subject_prefix(participant_id: str, session_id: str | None = None) -> str:
    """File-name prefix of a participant (and session).

    Parameters
    ----------
    participant_id : str
        Participant label, with or without ``sub-``.
    session_id : str, optional
        Session label, with or without ``ses-``.

    Returns
    -------
    str
        ``sub-01`` or ``sub-01_ses-1``.
    """
    sub = participant_id if participant_id.startswith("sub-") else f"sub-{participant_id}"
    if session_id:
        ses = session_id if session_id.startswith("ses-") else f"ses-{session_id}"
        return f"{sub}_{ses}"
    return sub


def relative_path(key: str, participant_id: str | None = None,
                  session_id: str | None = None, *, stamp: str = "") -> str:
    """Path of a registered output relative to OUTPUT_DIR, with ``/`` separators.

    Parameters
    ----------
    key : str
        A key of :data:`LAYOUT`.
    participant_id, session_id : str, optional
        The participant (and session), for per-participant outputs.
    stamp : str, optional
        Run stamp, for outputs kept per run.

    Returns
    -------
    str
        E.g. ``group/table1.tsv`` or ``sub-01/anat/sub-01_R2starmap.nii.gz``.

    Raises
    ------
    KeyError
        For an unknown key.
    ValueError
        When a per-participant output is asked for without a participant.
    """
    pattern = LAYOUT[key].pattern
    if "{subject}" in pattern or "{prefix}" in pattern:
        if not participant_id:
            raise ValueError(f"output {key!r} belongs to a participant: give participant_id")
        prefix = subject_prefix(participant_id, session_id)
        return pattern.format(subject=prefix.replace("_", "/"), prefix=prefix, stamp=stamp)
    return pattern.format(stamp=stamp)


def file_name(key: str, participant_id: str | None = None,
              session_id: str | None = None) -> str:
    """File name (last path part) of a registered output.

    Parameters
    ----------
    key : str
        A key of :data:`LAYOUT`.
    participant_id, session_id : str, optional
        The participant (and session), for outputs whose name holds them.

    Returns
    -------
    str
        E.g. ``regional_r2star.tsv`` or ``sub-01_desc-regions_r2star.tsv``.
    """
    name = LAYOUT[key].pattern.rsplit("/", 1)[-1]
    if "{" not in name:  # the same for every participant
        return name
    return relative_path(key, participant_id, session_id).rsplit("/", 1)[-1]


def output_path(root: str | os.PathLike, key: str, participant_id: str | None = None,
                session_id: str | None = None, *, stamp: str = "") -> Path:
    """Path of a registered output under a derivative root.

    Parameters
    ----------
    root : path-like
        OUTPUT_DIR (or a staging folder laid out like it).
    key : str
        A key of :data:`LAYOUT`.
    participant_id, session_id : str, optional
        The participant (and session), for per-participant outputs.
    stamp : str, optional
        Run stamp, for outputs kept per run.

    Returns
    -------
    pathlib.Path
        ``root`` joined with :func:`relative_path`.
    """
    return Path(root, *relative_path(key, participant_id, session_id, stamp=stamp).split("/"))


def participant_suffix(key: str) -> str:
    """The part of a participant file's name after ``sub-X[_ses-Y]_``.

    Parameters
    ----------
    key : str
        Key of a per-participant file in ``anat/``.

    Returns
    -------
    str
        E.g. ``R2starmap.nii.gz`` for ``r2starmap``.
    """
    return LAYOUT[key].pattern.split("{prefix}_", 1)[1]


def column_dictionary(key: str, table=None, *args) -> dict[str, dict[str, str]]:
    """Column dictionary of a registered table.

    Parameters
    ----------
    key : str
        A key of :data:`LAYOUT` whose output is a table.
    table : pandas.DataFrame or iterable of str, optional
        The table (or its columns), for dictionaries built from the data.
    *args
        Further arguments of the builder (e.g. the group settings of Table 2).

    Returns
    -------
    dict
        Column name -> ``{"Description", "Units"}``; ``{}`` for an output that is no table.
    """
    columns = LAYOUT[key].columns
    if columns is None:
        return {}
    if callable(columns):
        return columns(table, *args)
    return dict(columns)


def describe_columns(key: str, columns) -> dict[str, dict[str, str]]:
    """Column dictionary of a registered table for the columns it has.

    Parameters
    ----------
    key : str
        A key of :data:`LAYOUT` whose output is a table with a fixed dictionary.
    columns : iterable of str
        The table's columns, in order.

    Returns
    -------
    dict
        One entry per column: the registered one, else the column name as description.
    """
    return described(columns, column_dictionary(key))


_FIELDS = {"{subject}": r"sub-[A-Za-z0-9]+(?:/ses-[A-Za-z0-9]+)?",
           "{prefix}": r"sub-[A-Za-z0-9]+(?:_ses-[A-Za-z0-9]+)?", "{stamp}": r"[^/]+"}


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{subject\}|\{prefix\}|\{stamp\})", pattern)
    return re.compile("".join(_FIELDS.get(p, re.escape(p)) for p in parts))


_REGEX = {key: _regex(o.pattern) for key, o in LAYOUT.items()}
_SIDECAR_OF = (".nii.gz", ".tsv")
#: files inside the figure folders are named by the figure that makes them
_FIGURE_FILES = {key: re.compile(_REGEX[key].pattern + r"/[^/]+")
                 for key in ("figure_dir", "group_figures")}


def find_output(relative: str) -> str | None:
    """The layout key of a path under OUTPUT_DIR (the inverse of :func:`relative_path`).

    Parameters
    ----------
    relative : str
        Path relative to OUTPUT_DIR, with ``/`` separators.

    Returns
    -------
    str or None
        The key whose pattern names the file; for a JSON sidecar of a registered image or
        table, the key of that file; for a file inside a registered folder (figures), the
        folder's key; None when the layout does not name the file.
    """
    for key, rx in _REGEX.items():
        if rx.fullmatch(relative):
            return key
    if relative.endswith(".json"):
        stem = relative[: -len(".json")]
        for ext in _SIDECAR_OF:
            key = find_output(stem + ext)
            if key is not None and LAYOUT[key].pattern.endswith(ext):
                return key
    for key, rx in _FIGURE_FILES.items():
        if rx.fullmatch(relative):
            return key
    return None
