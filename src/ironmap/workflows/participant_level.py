"""Participant level: every selected participant/session, in parallel, then the cohort tables.

``run_participant_level(cfg)`` discovers the inputs (:func:`ironmap.io.bids.discover`), runs
:func:`process_subject` for each participant through :func:`ironmap.parallel.run_tasks`
(serially, on a Dask LocalCluster with ``--nprocs``, or on an existing cluster with
``--dask-scheduler``), and writes ``OUTPUT_DIR/group/regional_r2star.tsv`` and
``lesions.tsv`` (+ ``volumes.tsv``) from the participants' outputs.

Resumable: each participant's manifest (``logs/manifests/``) records the SHA-256 of its input
files, the parameters and the SHA-256 of its outputs; a participant whose manifest matches is
skipped. Isolated: a failing participant is logged in ``logs/<label>.log`` and
``logs/failures.tsv``; the others finish and the exit code is 3.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ironmap.io import dictionaries as dicts
from ironmap.io.atomic import write_text
from ironmap.io.bids import InputError, SubjectInputs, discover
from ironmap.io.layout import column_dictionary, output_path, relative_path
from ironmap.io.manifest import hash_files, is_up_to_date, read_manifest, write_manifest
from ironmap.io.nifti import sidecar_path
from ironmap.io.outputs import derivative_path, write_dataset_description
from ironmap.io.tables import read_tsv, write_tsv
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3
STAGING = relative_path("staging")

#: parameters that change a participant's results (part of its manifest)
RESULT_PARAMETERS = ("method", "registration", "erosion_voxels", "write_t2star", "volumes",
                     "atlas", "putamen_split", "auto_anatomy", "lesions", "lesions_controls",
                     "lesion_method",
                     "erosion_mm", "erosion_space", "min_region_voxels", "brain_mask",
                     "erosion_fallback_mm", "nuclei_refine", "midbrain_refine", "sn_core",
                     "registration_check_mm", "midbrain_transport")

@dataclass(frozen=True)
class SubjectTask:
    """What a worker needs for one participant (picklable)."""

    subject: SubjectInputs
    cfg: RunConfig
    run_id: str = ""  # this run's staging folder: two runs never share one


# ------------------------------------------------------------------------------------------
# one participant (runs on a worker)
# ------------------------------------------------------------------------------------------

def manifest_path(output_dir: Path, subject: SubjectInputs) -> Path:
    """``OUTPUT_DIR/logs/manifests/<label>.json``.

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.
    subject : SubjectInputs
        The participant.

    Returns
    -------
    pathlib.Path
        The manifest's path.
    """
    return output_path(output_dir, "manifest", subject.participant_id, subject.session_id)


def subject_inputs_hash(subject: SubjectInputs, cfg: RunConfig) -> dict[str, str]:
    """SHA-256 of every file the participant's results depend on (images, sidecars, tsv).

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    dict of str to str
        Path relative to BIDS_DIR (when inside it) -> SHA-256.
    """
    files = []
    for p in subject.input_files():
        files += [p, sidecar_path(p)]
        tsv = Path(str(p).replace(".nii.gz", ".tsv").replace(".nii", ".tsv"))
        files.append(tsv)
    for root in (cfg.bids_dir, *cfg.masks):
        files += [Path(root) / n for n in ("dataset_description.json", "MEGRE.json",
                                           "T1w.json", "FLAIR.json", "dseg.tsv")]
    if cfg.landmarks is not None:
        files.append(Path(cfg.landmarks))
    return hash_files(files, root=cfg.bids_dir)


def subject_parameters(cfg: RunConfig) -> dict[str, Any]:
    """The parameters recorded in (and compared against) a participant's manifest.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    dict
        :data:`RESULT_PARAMETERS`, the registration options and the version.
    """
    from ironmap import __version__

    params = {name: getattr(cfg, name) for name in RESULT_PARAMETERS}
    atlas = params["atlas"]
    params["atlas"] = None if not atlas else [str(a) for a in (
        atlas if isinstance(atlas, tuple | list) else (atlas,))]
    params["registration_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in
                                      cfg.extra.get("registration_options", {}).items()}
    params["ironmap_version"] = __version__
    return params


def process_subject(task: SubjectTask) -> dict[str, Any]:
    """Process one participant; never raises (a failure is returned as a record).

    Parameters
    ----------
    task : SubjectTask
        The participant, the configuration and the run id.

    Returns
    -------
    dict
        ``participant_id``, ``session_id``, ``label``, ``status`` (ok, skipped, failed) and
        ``summary`` or ``error``.
    """
    from ironmap.parallel import pin_threads

    pin_threads()
    subject, cfg = task.subject, task.cfg
    out = Path(cfg.output_dir)
    record: dict[str, Any] = {"participant_id": subject.participant_id,
                              "session_id": subject.session_id, "label": subject.label}
    t0 = time.monotonic()
    handler = _subject_log(out, subject)
    stage = out / STAGING / task.run_id / subject.label
    try:
        inputs = subject_inputs_hash(subject, cfg)
        params = subject_parameters(cfg)
        mpath = manifest_path(out, subject)
        old = read_manifest(mpath)
        if not cfg.overwrite and is_up_to_date(old, inputs, params, out):
            log.info("%s: outputs up to date (inputs and parameters unchanged); skipped",
                     subject.label)
            return {**record, "status": "skipped", "summary": old.get("summary", {})}
        from ironmap.workflows.participant import analyse, commit

        shutil.rmtree(stage, ignore_errors=True)
        loaded: dict[str, Any] = {}
        summary = analyse(subject, cfg, stage, loaded)
        moved = commit(stage, out, subject)
        manifest = {"participant_id": subject.participant_id,
                    "session_id": subject.session_id, "status": "ok", "inputs": inputs,
                    "parameters": params, "outputs": hash_files(moved, root=out),
                    "summary": summary}
        write_manifest(mpath, manifest)
        _qc_page(cfg, subject, loaded)
        loaded.clear()
        log.info("%s: done in %.1f s", subject.label, time.monotonic() - t0)
        return {**record, "status": "ok", "summary": summary,
                "seconds": time.monotonic() - t0}
    except Exception as exc:  # isolate: any failure belongs to this participant only
        shutil.rmtree(stage, ignore_errors=True)
        message = _describe(exc)
        log.error("%s: FAILED: %s", subject.label, message,
                  exc_info=not isinstance(exc, InputError | ValueError | OSError))
        return {**record, "status": "failed", "error": message,
                "seconds": time.monotonic() - t0}
    finally:
        _close_log(handler)


def _qc_page(cfg: RunConfig, subject: SubjectInputs, images: dict[str, Any]) -> None:
    """The participant's QC page, made while its images are in memory (not with --no-report).

    The group level's report reuses it while nothing it shows changes.
    """
    if not cfg.report:  # --no-report: the report code is not even loaded
        return
    from ironmap.workflows.report import participant_page

    participant_page(cfg, subject, images)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, InputError | ValueError | OSError):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())


def _subject_log(output_dir: Path, subject: SubjectInputs) -> logging.Handler:
    path = output_path(output_dir, "subject_log", subject.participant_id, subject.session_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    pkg = logging.getLogger("ironmap")
    handler._previous_level = pkg.level  # type: ignore[attr-defined]
    if pkg.getEffectiveLevel() > logging.INFO:
        pkg.setLevel(logging.INFO)
    pkg.addHandler(handler)
    return handler


def _close_log(handler: logging.Handler) -> None:
    pkg = logging.getLogger("ironmap")
    pkg.removeHandler(handler)
    pkg.setLevel(handler._previous_level)  # type: ignore[attr-defined]
    handler.close()


# ------------------------------------------------------------------------------------------
# the level
# ------------------------------------------------------------------------------------------

def check_output_dir(cfg: RunConfig) -> str | None:
    """Error message when OUTPUT_DIR is BIDS_DIR or inside its raw tree, else None.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The message, or None.
    """
    out, raw = Path(cfg.output_dir).resolve(), Path(cfg.bids_dir).resolve()
    if out == raw:
        return "OUTPUT_DIR must differ from BIDS_DIR"
    if raw in out.parents and (raw / "derivatives") not in (out, *out.parents):
        return (f"{out}: OUTPUT_DIR inside the raw BIDS tree {raw} is refused; use "
                f"{raw / 'derivatives' / 'ironmap'} or a folder outside it")
    if out == raw / "derivatives":
        return f"{out}: OUTPUT_DIR must be a folder inside derivatives/, not derivatives/ itself"
    return None


def run_participant_level(cfg: RunConfig) -> int:
    """Run the participant level; returns 0 (all ok), 3 (some failed) or 2 (usage error).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    int
        Exit code.
    """
    problem = check_output_dir(cfg) or _check_options(cfg)
    if problem:
        log.error(problem)
        return EXIT_USAGE
    try:
        subjects = discover(cfg.bids_dir, participant_label=cfg.participant_label,
                            session_label=cfg.session_label, masks=cfg.masks)
    except (InputError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not subjects:
        log.error("%s: no participants (sub-*/) selected", cfg.bids_dir)
        return EXIT_USAGE
    problem = _check_anatomy(cfg, subjects)
    if problem:
        log.error(problem)
        return EXIT_USAGE
    out = Path(cfg.output_dir)
    _start_run(cfg, out)
    log.info("participant level: %d participant(s)/session(s)", len(subjects))
    run_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tasks = [SubjectTask(s, cfg, run_id) for s in subjects]
    results = run_tasks_for(tasks, cfg)
    results = [_as_record(r, s) for r, s in zip(results, subjects, strict=True)]
    write_group_tables(cfg, results + earlier_results(out, {r["label"] for r in results}))
    if cfg.longitudinal_template:  # sessions registered to each other (FLAIR, T1w)
        from ironmap.workflows.withinsubject import run_within_subject

        run_within_subject(cfg, subjects)
    failed = write_failures(out, results)
    for folder in (out / STAGING / run_id, out / STAGING):
        try:  # each participant removed its own staging folder; other runs may use theirs
            folder.rmdir()
        except OSError:
            pass
    return _summarise(results, failed)


def _check_options(cfg: RunConfig) -> str | None:
    """Options refused at start-up, before any participant is read or processed.

    Erosion options that cannot go together; an ``--sn-core`` level outside 0.5-1;
    ``--lesion-method samseg`` without SAMSEG.
    """
    from ironmap.workflows import sn_core
    from ironmap.workflows.erosion import option_problem
    from ironmap.workflows.participant_lesions import lesion_method_problem

    return option_problem(cfg) or sn_core.option_problem(cfg) or lesion_method_problem(cfg)


def _check_anatomy(cfg: RunConfig, subjects: list[SubjectInputs]) -> str | None:
    """Atlases checked at start-up when some participant lacks rater deep-GM labels."""
    from ironmap.workflows.anatomy import check_atlases

    if cfg.atlas or any(not s.dsegs for s in subjects):
        return check_atlases(cfg)
    return None


def run_tasks_for(tasks: list[SubjectTask], cfg: RunConfig) -> list[Any]:
    """Dispatch the participants to the configured executor.

    Parameters
    ----------
    tasks : list of SubjectTask
        One per participant.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    list
        One record (or exception) per task, in order.
    """
    from ironmap.parallel import run_tasks

    return run_tasks(process_subject, tasks, labels=[t.subject.label for t in tasks],
                     nprocs=cfg.nprocs, scheduler=cfg.dask_scheduler)


def _start_run(cfg: RunConfig, out: Path) -> None:
    output_path(out, "logs_dir").mkdir(parents=True, exist_ok=True)
    write_dataset_description(out, source_datasets=[f"file://{cfg.bids_dir}"])
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = cfg.dumps() + "\n"
    write_text(output_path(out, "config_participant_run", stamp=f"{stamp}-{os.getpid()}"), text)
    write_text(output_path(out, "config_participant"), text)


def _as_record(result: Any, subject: SubjectInputs) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    reason = _describe(result) if isinstance(result, BaseException) else repr(result)
    return {"participant_id": subject.participant_id, "session_id": subject.session_id,
            "label": subject.label, "status": "failed",
            "error": f"worker error: {reason}"}


def earlier_results(output_dir: Path, exclude: set[str]) -> list[dict[str, Any]]:
    """Records of participants finished by earlier runs (other labels) from their manifests.

    So that runs over subsets of the participants (``--participant-label`` batches) add up to
    complete cohort tables.

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.
    exclude : set of str
        Labels processed by this run.

    Returns
    -------
    list of dict
        Records with status ``skipped`` and the manifest's summary.
    """
    records = []
    for path in sorted(output_path(output_dir, "manifests_dir").glob("sub-*.json")):
        if path.stem in exclude:
            continue
        manifest = read_manifest(path)
        if manifest and manifest.get("status") == "ok":
            records.append({"participant_id": manifest["participant_id"],
                            "session_id": manifest.get("session_id"), "label": path.stem,
                            "status": "skipped", "summary": manifest.get("summary", {})})
    return records


def _ids(record: dict[str, Any]) -> dict[str, str | None]:
    return {"participant_id": record["participant_id"], "session_id": record["session_id"]}


def assemble_cohort_tables(output_dir: Path, records: list[dict[str, Any]],
                           volumes: bool = False) -> dict[str, pd.DataFrame]:
    """The cohort tables assembled from the participants' files and manifest summaries.

    Parameters
    ----------
    output_dir : path-like
        OUTPUT_DIR holding the participants' ``desc-regions_r2star.tsv`` tables.
    records : list of dict
        One record per participant (``participant_id``, ``session_id``, ``status``,
        ``summary``); only those ``ok`` or up to date (``skipped``) are used, sorted by id.
    volumes : bool, optional
        Whether to assemble the tissue volumes (``--volumes``).

    Returns
    -------
    dict of str to pandas.DataFrame
        Layout key (``group_regional``, ``group_lesions``, ``group_volumes``) -> table with
        ``participant_id`` and ``session_id`` first; a table without rows is left out.
        R2* in s^-1, volumes in cm3.
    """
    done = sorted((r for r in records if r["status"] in ("ok", "skipped")),
                  key=lambda r: (r["participant_id"], r["session_id"] or ""))
    regions, lesions, vols = [], [], []
    for r in done:
        path = derivative_path(output_dir, "regions_table", r["participant_id"],
                               r["session_id"])
        if path.exists():
            table = read_tsv(path)
            table.insert(0, "session_id", r["session_id"])
            table.insert(0, "participant_id", r["participant_id"])
            regions.append(table)
        summary = r.get("summary") or {}
        lesions.append({**_ids(r), **(summary.get("lesions") or {})})
        if volumes and summary.get("volumes"):
            vols.append({**_ids(r), **summary["volumes"]})
    tables = {}
    if regions:
        tables["group_regional"] = pd.concat(regions, ignore_index=True)
    if lesions:
        columns = ["participant_id", "session_id", *dicts.LESION_SUMMARY]
        tables["group_lesions"] = pd.DataFrame(lesions).reindex(columns=columns)
    if vols:
        tables["group_volumes"] = pd.DataFrame(vols)
    return tables


def write_group_tables(cfg: RunConfig, records: list[dict[str, Any]]) -> list[Path]:
    """Write the cohort tables of the participants that are ok or up to date.

    Parameters
    ----------
    cfg : RunConfig
        The run (``output_dir``, ``volumes``).
    records : list of dict
        One record per participant (see :func:`assemble_cohort_tables`).

    Returns
    -------
    list of pathlib.Path
        The tables written (``group/regional_r2star.tsv``, ``lesions.tsv``, ``volumes.tsv``),
        each with its JSON column dictionary.
    """
    out = Path(cfg.output_dir)
    written = []
    for key, table in assemble_cohort_tables(out, records, cfg.volumes).items():
        written.append(write_tsv(table, output_path(out, key),
                                 column_dictionary(key, table.columns[2:])))
    return written


def write_failures(out: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``logs/failures.tsv`` (participant_id, session_id, error); returns the failed records.

    Failures recorded by earlier runs for participants this run did not process are kept, so
    a run over other participants never hides them.

    Parameters
    ----------
    out : pathlib.Path
        OUTPUT_DIR.
    records : list of dict
        This run's records.

    Returns
    -------
    list of dict
        The failed records.
    """
    failed = [r for r in records if r["status"] == "failed"]
    table = pd.DataFrame([{**_ids(r), "error": r["error"]} for r in failed],
                         columns=["participant_id", "session_id", "error"])
    path = output_path(out, "failures")
    if path.exists():
        earlier = read_tsv(path)
        labels = earlier["participant_id"] + earlier["session_id"].map(
            lambda s: f"_{s}" if isinstance(s, str) and s else "")
        earlier = earlier[~labels.isin({r["label"] for r in records})]
        if len(earlier):
            table = pd.concat([earlier, table], ignore_index=True)
    write_tsv(table, path, column_dictionary("failures"))
    return failed


def _summarise(records: list[dict[str, Any]], failed: list[dict[str, Any]]) -> int:
    n_ok = sum(r["status"] == "ok" for r in records)
    n_skip = sum(r["status"] == "skipped" for r in records)
    log.info("participant level finished: %d processed, %d up to date (skipped), %d failed",
             n_ok, n_skip, len(failed))
    if not failed:
        return EXIT_OK
    lines = [f"{len(failed)} of {len(records)} participant(s) failed:"]
    lines += [f"  {r['label']}: {r['error']}" for r in failed]
    log.error("\n".join(lines))
    return EXIT_PARTIAL
