"""Write the study report, the participant QC pages, their figures and ``group/qc.tsv``.

Reads only what the participant and group levels wrote (and the raw images for the QC views);
every figure and page is made inside its own ``try``: a failure is logged, shown in the page
and never stops the rest. Outputs:

- ``OUTPUT_DIR/report.html`` (self-contained), ``OUTPUT_DIR/sub-X[_ses-Y].html``;
- ``OUTPUT_DIR/group/figures/*.png|svg``, ``OUTPUT_DIR/sub-X/figures/*.png|svg``;
- ``OUTPUT_DIR/group/qc.tsv`` (+ JSON dictionary).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from ironmap.core.qc import run_flags
from ironmap.io.atomic import write_text
from ironmap.io.layout import column_dictionary, output_path, relative_path
from ironmap.io.outputs import derivative_path, subject_prefix
from ironmap.io.tables import read_dictionary, read_tsv, write_tsv
from ironmap.report import html, study
from ironmap.report import subject as subj
from ironmap.report.figures import FigureJob
from ironmap.report.methods import build_methods
from ironmap.report.viewer import script as viewer_script
from ironmap.workflows.config import RunConfig
from ironmap.workflows.provenance import first_r2star_sidecar, mask_sources, run_config
from ironmap.workflows.report_figures import realise

log = logging.getLogger(__name__)

#: cohort tables the report reads: layout key -> name in ``StudyInputs.tables``
GROUP_TABLES = {"table1": "table1", "table2": "table2", "agefit": "agefit",
                "group_lesions": "lesions", "group_volumes": "volumes"}

#: column dictionary of ``group/qc.tsv`` (kept under its former name)
QC_DICTIONARY = column_dictionary("qc_table")


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------

def _read_optional(path: Path, problems: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return read_tsv(path)
    except Exception as exc:  # a broken table is reported, not fatal
        problems.append(f"{path}: unreadable ({exc})")
        return None


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: unreadable ({exc})")
        return {}


def load_study(cfg: RunConfig) -> study.StudyInputs:
    """Read the cohort tables, ``stats.json``, participants and failures.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    StudyInputs
        The tables (missing ones absent, unreadable ones listed in ``problems``).
    """
    out = Path(cfg.output_dir)
    problems: list[str] = []
    inputs = study.StudyInputs(output_dir=out, config=run_config(cfg), problems=problems)
    inputs.participants = _read_optional(Path(cfg.bids_dir) / "participants.tsv", problems)
    inputs.regional = _read_optional(output_path(out, "group_regional"), problems)
    for key, name in GROUP_TABLES.items():
        path = output_path(out, key)
        df = _read_optional(path, problems)
        if df is not None:
            inputs.tables[name] = (df, read_dictionary(path))
    inputs.stats = _read_json(output_path(out, "stats"), problems)
    inputs.failures = _read_optional(output_path(out, "failures"), problems)
    check = _read_optional(output_path(out, "autoanatomy_check"), problems)
    if check is not None:
        inputs.anatomy_check = (check, read_dictionary(output_path(out, "autoanatomy_check")))
    return inputs


def _canonical(arr: np.ndarray | None, affine: np.ndarray) -> np.ndarray | None:
    """Reorder a 3-D array to closest RAS+ voxel axes."""
    if arr is None:
        return None
    from nibabel.orientations import apply_orientation, io_orientation

    arr = np.asarray(arr)
    if arr.ndim == 4:
        arr = arr[..., 0]
    return np.ascontiguousarray(apply_orientation(arr, io_orientation(affine)))


def _load(path: Path | None, problems: list[str], what: str):
    from ironmap.io.nifti import load_image

    if path is None or not Path(path).exists():
        problems.append(f"{what}: not found" + (f" ({path})" if path else ""))
        return None
    try:
        return load_image(path)
    except Exception as exc:
        problems.append(f"{what}: {exc}")
        return None


def _array(img) -> np.ndarray | None:
    if img is None:
        return None
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data[..., 0] if data.ndim == 4 else data


def _slices_on_t1w(img, t1w_can, xfm_path: Path, problems: list[str], what: str,
                   n_slices: int = 3) -> tuple[np.ndarray | None, list[int]]:
    """The axial planes of ``img`` that its registration figure shows, on the T1w grid.

    ``t1w_can`` is the T1w in closest-RAS axis order. The planes are ``n_slices`` spread over
    the T1w slices that ``img`` covers; only they are resampled (linear, through the saved
    transform). Returns a T1w-shaped float32 array, NaN outside those planes, and the planes.
    """
    if img is None or t1w_can is None:
        return None, []
    if not xfm_path.exists():
        problems.append(f"{what}: transform {xfm_path.name} not found")
        return None, []
    try:
        from ironmap.report.figures import spread_over
        from ironmap.spatial.grid import planes_holding, resample_planes
        from ironmap.spatial.registration import load_transform

        matrix = np.asarray(load_transform(xfm_path).matrix, float)
        shape = t1w_can.shape[:3]
        zs = planes_holding(img, t1w_can, matrix)
        ks = spread_over(zs if zs.size else np.arange(shape[2]), n_slices)
        out = np.full(shape, np.nan, np.float32)
        out[:, :, ks] = resample_planes(img, t1w_can, ks, matrix, order=1)
        return out, ks
    except Exception as exc:
        problems.append(f"{what}: resampling failed ({exc})")
        return None, []


def in_memory_inputs(subject, images: dict[str, Any]) -> dict[str, Any]:
    """The participant's raw images the participant level holds, as in-memory images.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    images : dict
        ``echoes`` (list, in echo order), ``t1w`` and ``flair`` (each None when absent or
        not from its own file): nibabel images as the participant level loaded them.

    Returns
    -------
    dict of str to nibabel.Nifti1Image
        Path -> image holding its float32 data (what :func:`load_subject` reads from the
        file: the same values, without reading and decompressing it again).
    """
    import nibabel as nib

    pairs = [(e.path, img) for e, img in zip(subject.echoes, images.get("echoes") or [],
                                            strict=False)]
    pairs += [(subject.t1w, images.get("t1w")), (subject.flair, images.get("flair"))]
    return {str(path): nib.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine,
                                       img.header)
            for path, img in pairs if path is not None and img is not None}


def _canonical_zooms(img) -> tuple[float, float, float]:
    """Voxel sizes (mm) of an image in the closest-RAS axis order of :func:`_canonical`."""
    from nibabel.orientations import io_orientation

    zooms = img.header.get_zooms()[:3]
    out = [1.0, 1.0, 1.0]
    for in_axis, (out_axis, _) in enumerate(io_orientation(img.affine)):
        out[int(out_axis)] = float(zooms[in_axis])
    return out[0], out[1], out[2]


def _brain_mask(out: Path, pid: str, sid: str | None, ref) -> np.ndarray | None:
    """A ``desc-brain_mask`` of the participant on the R2* grid (closest RAS), or None."""
    from ironmap.spatial.grid import same_grid

    folder = derivative_path(out, "r2starmap", pid, sid).parent
    for path in sorted(folder.glob("*desc-brain_mask.nii*")):
        img = _load(path, [], "brain mask")
        if img is not None and same_grid(img, ref):
            return _canonical(np.asarray(img.dataobj) > 0, ref.affine)
    return None


def load_subject(cfg: RunConfig, inputs, preloaded: dict[str, Any] | None = None
                 ) -> subj.SubjectImages:
    """Arrays of one participant, closest RAS+.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    inputs : SubjectInputs
        The participant.
    preloaded : dict of str to nibabel image, optional
        Raw input images already in memory, by path (:func:`in_memory_inputs`); the others
        are read from their files.

    Returns
    -------
    SubjectImages
        Maps, echoes, labels, masks, the T1w with the other series resampled onto it, tables
        and registration similarities; what is missing is listed in ``problems``.
    """
    out = Path(cfg.output_dir)
    pid, sid = inputs.participant_id, inputs.session_id
    s = subj.SubjectImages(label=inputs.label, participant_id=pid, session_id=sid,
                           has_flair=inputs.flair is not None)
    p = s.problems
    r2 = _load(derivative_path(out, "r2starmap", pid, sid), p, "R2* map")
    echoes = list(inputs.echoes)
    s.echo_times = [e.echo_time for e in echoes]
    mem = preloaded or {}

    def raw(path, what):
        return mem[str(path)] if str(path) in mem else _load(path, p, what)

    e1 = raw(echoes[0].path if echoes else None, "GRE echo 1")
    e2 = raw(echoes[1].path if len(echoes) > 1 else None, "GRE echo 2")
    t1w = raw(inputs.t1w, "T1w")
    flair = raw(inputs.flair, "FLAIR")
    ref = r2 if r2 is not None else e1
    if ref is not None:
        aff = ref.affine
        s.r2star, s.echo1, s.echo2 = (_canonical(_array(i), aff) for i in (r2, e1, e2))
        s.voxel_sizes = _canonical_zooms(ref)
        for name, key in (("fitflags", "flags"), ("dseg_r2star", "labels"),
                          ("dseg_eroded", "eroded"), ("lesion_r2star", "lesion"),
                          ("brain_mask_r2star", "brain")):
            path = derivative_path(out, name, pid, sid)
            img = _load(path, [], name) if path.exists() else None
            setattr(s, key, _canonical(np.asarray(img.dataobj) if img is not None else None,
                                       aff))
        s.brain = _brain_mask(out, pid, sid, ref)
        names = _read_optional(derivative_path(out, "dseg_labels", pid, sid), [])
        if names is not None and {"index", "name"} <= set(names.columns):
            s.label_names = {int(i): str(n) for i, n in zip(names["index"], names["name"],
                                                           strict=True)}
    if t1w is not None:
        import nibabel as nib

        t1w_can = nib.as_closest_canonical(t1w)
        s.t1w = _array(t1w_can)
        s.t1w_voxel_sizes = tuple(float(z) for z in t1w_can.header.get_zooms()[:3])
        for img, name, attr in ((flair, "xfm_flair_to_t1w", "flair_on_t1w"),
                                (e1, "xfm_megre_to_t1w", "megre_on_t1w")):
            arr, ks = _slices_on_t1w(img, t1w_can, derivative_path(out, name, pid, sid), p,
                                     attr)
            setattr(s, attr, arr)
            s.t1w_slices[attr] = ks
    for name, attr in (("regions_table", "regions"), ("lesions_table", "lesions")):
        setattr(s, attr, _read_optional(derivative_path(out, name, pid, sid), p))
    manifest = _read_json(output_path(out, "manifest", pid, sid), p)
    summary = manifest.get("summary") or {}
    nmi = summary.get("registration_nmi") or {}
    s.similarity = {k: float(v) for k, v in nmi.items() if v is not None}
    s.segmentation_errors = dict(summary.get("segmentation_errors") or {})
    s.registration_checks = dict(summary.get("registration_check_flags") or {})
    return s


# ---------------------------------------------------------------------------------------------
# figures and pages
# ---------------------------------------------------------------------------------------------

def write_subject_page(cfg: RunConfig, inputs, info: dict[str, str],
                       thresholds: run_flags.QCThresholds,
                       preloaded: dict[str, Any] | None = None
                       ) -> tuple[Path, dict[str, Any]]:
    """Write ``sub-X.html`` and its figures.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    inputs : SubjectInputs
        The participant.
    info : dict of str to str
        Its ``participants.tsv`` fields.
    thresholds : QCThresholds
        The QC limits.
    preloaded : dict of str to nibabel image, optional
        Raw images already in memory (:func:`load_subject`).

    Returns
    -------
    page : pathlib.Path
        The page.
    result : dict
        ``row`` (its ``qc.tsv`` row) and ``flags``.
    """
    from ironmap import __version__

    out = Path(cfg.output_dir)
    s = load_subject(cfg, inputs, preloaded)
    m = subj.metrics(s)
    flags = subj.flags_for(s, m, thresholds)
    fig_dir = derivative_path(out, "figure_dir", s.participant_id, s.session_id)
    sections: dict[str, list[html.FigureView]] = {"maps": [], "registration": [],
                                                  "overlays": []}
    for section, job in subj.figure_jobs(s):
        sections[section].append(realise(job, fig_dir, out))
    from ironmap.workflows.participant_lesions import lesion_qc_job

    lesion_job = lesion_qc_job(out, inputs)  # automatic lesion masks only
    if lesion_job is not None:
        sections["overlays"].append(realise(lesion_job, fig_dir, out))
    try:
        viewer = subj.viewer_view(s)
    except Exception as exc:  # the page is written without the viewer
        log.warning("%s: viewer not made: %s", s.label, exc, exc_info=True)
        s.problems.append(f"interactive viewer: {exc}")
        viewer = None
    page = output_path(out, "subject_page", s.participant_id, s.session_id)
    text = html.render("subject.html", version=__version__, label=s.label,
                       info=list(info.items()), missing=s.problems, flags=flags,
                       metrics=subj.metrics_view(m), maps=sections["maps"],
                       registration=sections["registration"], overlays=sections["overlays"],
                       regions=subj.regions_view(s), lesions=subj.lesions_view(s),
                       viewer=viewer, viewer_script=Markup(viewer_script()) if viewer else "",
                       figure_dir=str(fig_dir.relative_to(out)))
    write_text(page, text)
    row = {"participant_id": s.participant_id, "session_id": s.session_id,
           **{k: v for k, v in m.items() if not isinstance(v, dict)},
           "n_flags": len(flags), "flags": "; ".join(f"{f.rule}:{f.item}" for f in flags)}
    return page, {"row": row, "flags": flags}


def _subjects(cfg: RunConfig):
    from ironmap.io.bids import discover

    return discover(cfg.bids_dir, participant_label=cfg.participant_label,
                    session_label=cfg.session_label)


def _participant_info(inputs: study.StudyInputs, pid: str) -> dict[str, str]:
    parts = inputs.participants
    if parts is None or "participant_id" not in parts:
        return {}
    row = parts[parts["participant_id"] == pid]
    if row.empty:
        return {"participants.tsv": "not listed"}
    rec = row.iloc[0]
    keys = [inputs.group_column, "age", "sex", "site", "edss", "disease_duration"]
    return {k: html.format_value(rec[k], k)[0] for k in keys if k in rec}


def _failed_ids(inputs: study.StudyInputs) -> dict[str, str]:
    f = inputs.failures
    if f is None or f.empty:
        return {}
    label = f.apply(lambda r: subject_prefix(r["participant_id"], r.get("session_id")
                                             if isinstance(r.get("session_id"), str) else None),
                    axis=1)
    return dict(zip(label, f["error"].astype(str), strict=True))


def subject_pages(cfg: RunConfig, inputs: study.StudyInputs,
                  thresholds: run_flags.QCThresholds) -> tuple[list[dict], list, list[Path]]:
    """All participant pages.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    inputs : StudyInputs
        The loaded study tables.
    thresholds : QCThresholds
        The QC limits.

    Returns
    -------
    listing : list of dict
        One entry per participant for the subject list.
    flags : list of QCFlag
        Every flag raised.
    pages : list of pathlib.Path
        The pages written or reused.
    """
    failed = _failed_ids(inputs)
    listing, all_flags, pages, qc_rows = [], [], [], []
    subjects = list(_subjects(cfg))
    entries = _entries(cfg, inputs, subjects, failed, thresholds)
    for entry in entries:
        listing.append(entry)
        if entry.pop("result", None):
            pages.append(Path(cfg.output_dir) / entry["page"])
            qc_rows.append(entry["row"])
            all_flags += entry.pop("flags")
        entry.pop("row", None)
    write_qc_table(Path(cfg.output_dir), qc_rows)
    return listing, all_flags, pages


def _entries(cfg: RunConfig, inputs: study.StudyInputs, subjects: list, failed: dict[str, str],
             thresholds: run_flags.QCThresholds) -> list[dict[str, Any]]:
    """The entries of all participants in order, their pages made in ``cfg.nprocs`` processes.

    Participants without a page and pages that can be reused are settled here first; only the
    pages to make go to the process pool, whose workers each cost a start-up (they are
    spawned: docs/performance.md). Serially for 1, with progress and an estimate of the time
    left.
    """
    import functools
    from concurrent.futures import as_completed

    from ironmap.parallel import Progress, process_pool

    make = functools.partial(_subject_entry, cfg, inputs, failed=failed, thresholds=thresholds)
    entries: list[dict[str, Any]] = [{}] * len(subjects)
    with Progress(len(subjects), "participant pages", logger=log) as progress:
        def finished(i: int, entry: dict[str, Any]) -> None:
            entries[i] = entry
            progress.done(subjects[i].label, entry.pop("progress", entry["status"]))

        todo = []
        for i, s in enumerate(subjects):
            entry = make(s, reuse_only=True)
            if entry is None:
                todo.append(i)
            else:
                finished(i, entry)
        if cfg.nprocs > 1 and len(todo) > 1:
            with process_pool(cfg.nprocs) as pool:
                futures = {pool.submit(make, subjects[i]): i for i in todo}
                for fut in as_completed(futures):
                    finished(futures[fut], fut.result())
        else:
            for i in todo:
                finished(i, make(subjects[i]))
    return entries


def _subject_entry(cfg: RunConfig, inputs: study.StudyInputs, s, *, failed: dict[str, str],
                   thresholds: run_flags.QCThresholds,
                   reuse_only: bool = False) -> dict[str, Any] | None:
    """The subject-list entry of one participant.

    Its page is written, or reused when nothing it is made from has changed
    (:mod:`ironmap.workflows.pagecache`); with ``reuse_only``, None when the page must be made.
    """
    info = _participant_info(inputs, s.participant_id)
    entry = {"label": s.label, "group": info.get(inputs.group_column, "n/a"),
             "site": info.get("site", "n/a"), "page": None, "n_flags": 0}
    r2 = derivative_path(cfg.output_dir, "r2starmap", s.participant_id, s.session_id)
    if s.label in failed or not r2.exists():
        entry["status"] = "failed" if s.label in failed else "not processed"
        return entry
    if reuse_only:
        page, res = _reused_page(cfg, s, info, thresholds)[:2]
        if res is None:
            return None
        entry["progress"] = REUSED
    else:
        page, res, entry["progress"] = page_made_or_reused(cfg, s, info, thresholds)
    if res is None:
        entry["status"] = f"page failed: {entry['progress']}"
        return entry
    entry.update(status="ok", page=page.name, n_flags=len(res["flags"]), result=True,
                 row=res["row"], flags=res["flags"])
    return entry


#: progress status of a page whose key matched
REUSED = "ok (unchanged, page reused)"


def _reused_page(cfg: RunConfig, s, info: dict[str, str], thresholds: run_flags.QCThresholds
                 ) -> tuple[Path, dict[str, Any] | None, str]:
    """(page, its stored ``row`` and ``flags`` when its key matches else None, the key now).

    Arguments as for :func:`page_made_or_reused`; see :mod:`~.pagecache`.
    """
    from ironmap.workflows import pagecache

    out = Path(cfg.output_dir)
    page = output_path(out, "subject_page", s.participant_id, s.session_id)
    fig_dir = derivative_path(out, "figure_dir", s.participant_id, s.session_id)
    key = pagecache.page_key(out, s, info, thresholds)
    return page, pagecache.load(fig_dir, page, key), key


def page_made_or_reused(cfg: RunConfig, s, info: dict[str, str],
                        thresholds: run_flags.QCThresholds,
                        preloaded: dict[str, Any] | None = None
                        ) -> tuple[Path, dict[str, Any] | None, str]:
    """A participant's page: reused when its key matches (:mod:`~.pagecache`), else written.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    s : SubjectInputs
        The participant.
    info : dict of str to str
        Its ``participants.tsv`` fields.
    thresholds : QCThresholds
        The QC limits.
    preloaded : dict of str to nibabel image, optional
        Raw images already in memory (:func:`load_subject`).

    Returns
    -------
    page : pathlib.Path
        The page.
    result : dict or None
        ``row`` and ``flags``; None when the page could not be made.
    status : str
        ``ok``, ``ok (unchanged, page reused)`` or the error.
    """
    from ironmap.workflows import pagecache

    page, res, key = _reused_page(cfg, s, info, thresholds)
    if res is not None:
        return page, res, REUSED
    fig_dir = derivative_path(cfg.output_dir, "figure_dir", s.participant_id, s.session_id)
    try:
        page, res = write_subject_page(cfg, s, info, thresholds, preloaded)
    except Exception as exc:  # one broken page never stops the others
        log.warning("%s: QC page failed: %s", s.label, exc, exc_info=True)
        return page, None, str(exc)
    pagecache.store(fig_dir, page, key, res)
    return page, res, "ok"


def page_thresholds(inputs: study.StudyInputs) -> run_flags.QCThresholds:
    """The QC limits of a run (``min_region_voxels`` from its configuration).

    Parameters
    ----------
    inputs : StudyInputs
        The run's configuration and tables.

    Returns
    -------
    QCThresholds
        The limits the pages are flagged with.
    """
    return run_flags.QCThresholds(
        min_region_voxels=int(inputs.config.get("min_region_voxels") or 10))


def participant_page(cfg: RunConfig, subject, images: dict[str, Any] | None = None
                     ) -> Path | None:
    """Make one participant's QC page at the end of its participant-level run.

    The page is keyed as the group level's report keys it (:mod:`~.pagecache`), so the
    report reuses it while nothing it is made from changes. Never raises: a page that cannot
    be made is logged, and the report tries again.

    Parameters
    ----------
    cfg : RunConfig
        The participant level's configuration (``cfg.report`` False: nothing is made).
    subject : SubjectInputs
        The participant just processed.
    images : dict, optional
        Its raw images as the participant level loaded them (:func:`in_memory_inputs`): not
        read from their files again.

    Returns
    -------
    pathlib.Path or None
        The page, or None when none was made.
    """
    if not cfg.report:
        return None
    try:
        problems: list[str] = []
        inputs = study.StudyInputs(output_dir=Path(cfg.output_dir), config=run_config(cfg),
                                   problems=problems)
        inputs.participants = _read_optional(Path(cfg.bids_dir) / "participants.tsv",
                                             problems)
        info = _participant_info(inputs, subject.participant_id)
        mem = in_memory_inputs(subject, images) if images else None
        page, res, _ = page_made_or_reused(cfg, subject, info, page_thresholds(inputs), mem)
    except Exception as exc:  # the participant's results stand; the report makes the page
        log.warning("%s: QC page not made: %s", subject.label, exc, exc_info=True)
        return None
    return page if res is not None else None


def write_qc_table(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``group/qc.tsv``: one row per participant page with metrics and raised flags.

    Parameters
    ----------
    out : pathlib.Path
        OUTPUT_DIR.
    rows : list of dict
        The pages' rows.

    Returns
    -------
    pathlib.Path
        The table written (with its JSON dictionary).
    """
    columns = list(QC_DICTIONARY)
    table = pd.DataFrame(rows).reindex(columns=columns)
    return write_tsv(table, output_path(out, "qc_table"), QC_DICTIONARY)


# ---------------------------------------------------------------------------------------------
# the study page
# ---------------------------------------------------------------------------------------------

def excluded_rows(inputs: study.StudyInputs, listing: list[dict]) -> list[dict[str, str]]:
    """Failed (logs/failures.tsv), unprocessed and group-level excluded participants.

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables.
    listing : list of dict
        The subject list.

    Returns
    -------
    list of dict
        ``participant``, ``stage``, ``reason``.
    """
    rows = [{"participant": k, "stage": "participant level", "reason": v}
            for k, v in _failed_ids(inputs).items()]
    seen = {r["participant"] for r in rows}
    for e in listing:
        if e["status"] == "not processed" and e["label"] not in seen:
            rows.append({"participant": e["label"], "stage": "participant level",
                         "reason": "no R2* map in the output folder (not run yet?)"})
    excl = inputs.stats.get("exclusions") or {}
    if isinstance(excl, dict):
        issues = [str(i) for i in excl.get("issues", []) or []]
        for pid in excl.get("participants_excluded", []) or []:
            why = "; ".join(i for i in issues if i.startswith(f"{pid}:")) or "excluded"
            rows.append({"participant": str(pid), "stage": "group level", "reason": why})
    return rows


def group_notes(inputs: study.StudyInputs) -> list[str]:
    """Group-level issues (values ignored) and notes (fallbacks, skipped regions).

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables.

    Returns
    -------
    list of str
        From ``stats.json`` ``exclusions``.
    """
    excl = inputs.stats.get("exclusions") or {}
    if not isinstance(excl, dict):
        return []
    return [str(i) for i in (excl.get("issues") or []) + (excl.get("notes") or [])]


def lesion_stats_view(stats: dict[str, Any]) -> html.TableView | None:
    """Lesion R2* correlations and regression from ``stats.json``.

    Parameters
    ----------
    stats : dict
        ``stats.json``.

    Returns
    -------
    TableView or None
        None without lesion correlations.
    """
    les = stats.get("lesions") or {}
    corr = les.get("correlations") if isinstance(les, dict) else None
    if not corr:
        return None
    rows = [{"variable": k, **{c: v.get(c) for c in ("r", "p", "method", "n")}}
            for k, v in corr.items() if isinstance(v, dict)]
    reg = les.get("regression") or {}
    note = ""
    if isinstance(reg, dict) and reg.get("r") is not None:
        betas = ", ".join(f"{k} β = {html.format_number(v)}"
                          for k, v in (reg.get("std_betas") or {}).items() if v is not None)
        p = reg.get("f_pvalue")
        note = (f"Multiple regression of lesion R2* in patients: R = "
                f"{html.format_number(reg['r'])}" + (f", p = {html.format_number(p, 'p')}"
                                                      if p is not None else "")
                + (f"; {betas}" if betas else "") + ".")
    return html.table_view(pd.DataFrame(rows), id="lesion-stats", combine_mean_sd=False,
                           caption=f"Correlations of {les.get('value', 'lesion R2*')} in "
                           "patients", note=note, source=relative_path("stats"))


def multicenter_view(inputs: study.StudyInputs) -> html.TableView | None:
    """Inter-site CV of control R2* and site-model group effects per region (Table 2).

    Parameters
    ----------
    inputs : StudyInputs
        The loaded study tables.

    Returns
    -------
    TableView or None
        None without Table 2 or its multicenter columns.
    """
    t2 = study.table(inputs, "table2")
    if t2 is None or t2.empty:
        return None
    cols = ["title" if "title" in t2 else "region"]
    cols += [c for c in t2.columns if c == "intersite_cv_controls"
             or c.startswith(("mixed_", "siteadj_"))]
    if len(cols) == 1:
        return None
    return html.table_view(t2, id="multicenter-table", columns=cols, combine_mean_sd=False,
                           dictionary=inputs.tables["table2"][1], source=relative_path("table2"),
                           labels={"title": "region"},
                           caption="Inter-site coefficient of variation of control R2* and "
                           "group effects with site as a random intercept (mixed model)")


def _lesion_summary(inputs: study.StudyInputs) -> html.TableView | None:
    les = study.table(inputs, "lesions")
    if les is None or les.empty:
        return None
    df = les.copy()
    parts = inputs.participants
    if parts is not None and inputs.group_column in parts:
        df = df.merge(parts[["participant_id", inputs.group_column]], on="participant_id",
                      how="left").rename(columns={inputs.group_column: "group"})
    else:
        df["group"] = "all"
    rows = []
    order = {g: i for i, g in enumerate(study.group_order(inputs, df.assign(region="")))}
    for g, d in sorted(df.groupby("group"), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        row = {"group": g, "n": len(d)}
        for c in ("lesion_load_cm3", "lesion_count", "lesion_r2star_mean"):
            if c in d:
                vals = pd.to_numeric(d[c], errors="coerce")
                row[f"{c}_mean"], row[f"{c}_sd"] = vals.mean(), vals.std()
        rows.append(row)
    return html.table_view(pd.DataFrame(rows), id="lesions", caption="Lesions per group "
                           "(T2 lesion load in cm³, lesion R2* in s⁻¹), mean (SD)",
                           source=f"{relative_path('group_lesions')} (summarised)",
                           labels={"lesion_load_cm3_mean": "T2 lesion load (cm³)",
                                   "lesion_count_mean": "lesion count",
                                   "lesion_r2star_mean_mean": "lesion R2* (s⁻¹)"})


def _qc_flag_view(flags: list) -> html.TableView | None:
    if not flags:
        return None
    df = pd.DataFrame([f.as_dict() for f in flags])
    return html.table_view(df, id="qc-flags", caption="Automatic QC flags",
                           combine_mean_sd=False, source=relative_path("qc_table"))


def _fig_views(jobs: dict[str, list[FigureJob]], out: Path) -> dict[str, list]:
    fig_dir = output_path(out, "group_figures")
    return {k: [realise(j, fig_dir, out) for j in v] for k, v in jobs.items()}


def study_page(cfg: RunConfig, inputs: study.StudyInputs, listing: list[dict], flags: list,
               thresholds: run_flags.QCThresholds) -> Path:
    """Write ``report.html``.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    inputs : StudyInputs
        The loaded study tables.
    listing : list of dict
        The subject list.
    flags : list of QCFlag
        Every flag raised.
    thresholds : QCThresholds
        The QC limits.

    Returns
    -------
    pathlib.Path
        The page.
    """
    from ironmap import __version__
    from ironmap.io.outputs import command_line
    from ironmap.workflows.repeated import report_context

    out = Path(cfg.output_dir)
    data = study.cohort(inputs)
    figs = _fig_views(study.figure_jobs(inputs, data), out)
    excluded = excluded_rows(inputs, listing)
    t1, t1_full = study.table1_views(inputs)
    t2, t2_full = study.table2_views(inputs)
    errors = [f"{v.title}: {v.error}" for vs in figs.values() for v in vs if v.error]
    methods = build_methods(inputs.config, r2star_sidecar=first_r2star_sidecar(out),
                            agefit=study.table(inputs, "agefit"), stats=inputs.stats,
                            sources=None if "methods" in inputs.stats else mask_sources(out))
    text = html.render(
        "study.html", version=__version__, command=command_line(),
        dataset_name=Path(cfg.bids_dir).name, output_dir=str(out),
        summary=study.summary_cards(inputs, data, len(flags), len(excluded)),
        missing=study.missing_items(inputs, data), report_errors=errors,
        table1=t1, table1_full=t1_full,
        table1_missing=f"{relative_path('table1')} not found (run the group level)",
        table2=t2, table2_full=t2_full,
        table2_missing=f"{relative_path('table2')} not found (run the group level)",
        agefit=study.agefit_view(inputs), notes=group_notes(inputs),
        lesions=_lesion_summary(inputs),
        lesions_missing=f"{relative_path('group_lesions')} not found",
        lesion_stats=lesion_stats_view(inputs.stats), sites=multicenter_view(inputs),
        sitefig=figs["sitefig"], fig2=figs["fig2"], fig3=figs["fig3"],
        agecurves=figs["agecurves"], qc_flags=_qc_flag_view(flags),
        qc_rules=_rules_text(thresholds), subjects=listing, excluded=excluded,
        methods=methods, repeated=report_context(out),
        anatomy_check=study.anatomy_check_view(*(inputs.anatomy_check or (None, {}))))
    return write_text(output_path(out, "report"), text)


def _rules_text(t: run_flags.QCThresholds) -> str:
    return (f"registration NMI < {t.min_registration_similarity:g}, first-echo SNR < "
            f"{t.min_snr:g}, flagged head voxels > {100 * t.max_flagged_fraction:g}%, flagged "
            f"region voxels > {100 * t.max_region_flagged_fraction:g}%, a region with fewer "
            f"than {t.min_region_voxels} voxels after erosion, a failed T1w "
            "segmentation or template registration")


def write_reports(cfg: RunConfig, thresholds: run_flags.QCThresholds | None = None) -> list[Path]:
    """Write the participant pages, ``group/qc.tsv`` and ``report.html``; returns the pages.

    Individual figure or page failures are logged and shown in the pages; this function
    raises only when the output folder itself cannot be written.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    thresholds : QCThresholds, optional
        The QC limits (defaults from the run).

    Returns
    -------
    list of pathlib.Path
        ``report.html``, then the participant pages.
    """
    t0 = time.monotonic()
    inputs = load_study(cfg)
    thr = thresholds or page_thresholds(inputs)
    try:
        listing, flags, pages = subject_pages(cfg, inputs, thr)
    except Exception as exc:  # e.g. the raw dataset is gone: still write the study page
        log.warning("participant pages failed: %s", exc, exc_info=True)
        inputs.problems.append(f"participant pages could not be made: {exc}")
        listing, flags, pages = [], [], []
    report = study_page(cfg, inputs, listing, flags, thr)
    log.info("report written in %.1f s: %s (%d participant pages)", time.monotonic() - t0,
             report, len(pages))
    return [report, *pages]
