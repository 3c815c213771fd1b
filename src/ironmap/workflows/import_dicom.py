"""DICOM -> BIDS import of one participant (one session) with de-identification.

Order of steps: read every DICOM header (corrupt files, mixed patients) -> convert with
dcm2niix into a private work folder -> recognise series (MEGRE, T1w, FLAIR) -> verify what R2*
depends on (echo times, geometry, Philips scaling, magnitude vs phase) -> write cleaned images
and scrubbed sidecars into a staging folder inside the BIDS dataset -> scan the staged files
for identifying values -> move into place -> update ``participants.tsv`` and the protocol
tables in ``code/ironmap-import/``. An error before the move leaves the dataset untouched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ironmap import __version__
from ironmap.core.metadata import deid, protocol
from ironmap.io import dicom, labels
from ironmap.io.atomic import OutputExistsError, write_json, write_text
from ironmap.io.scratch import scratch_dir
from ironmap.io.tables import read_tsv, write_tsv

log = logging.getLogger(__name__)

#: Folder (inside the BIDS dataset) for the import log and the protocol tables.
IMPORT_CODE_DIR = Path("code") / "ironmap-import"


@dataclass
class Acquisition:
    """One output acquisition: its BIDS suffix and the converted images it is made of."""

    suffix: str
    label: str
    magnitude: list[dicom.ConvertedImage]
    phase: list[dicom.ConvertedImage] = field(default_factory=list)
    run: int | None = None


@dataclass
class ImportResult:
    """What an import wrote: BIDS paths, protocol row(s), warnings."""

    participant_id: str
    session_id: str | None
    written: list[Path]
    protocols: list[dict[str, Any]]
    warnings: list[str]
    log_path: Path


def bids_label(value: str, prefix: str) -> str:
    """The label of a BIDS entity value without its prefix, checked.

    Parameters
    ----------
    value : str
        ``sub-01`` or ``01``.
    prefix : str
        The entity (``"sub"``, ``"ses"``).

    Returns
    -------
    str
        ``01``.

    Raises
    ------
    ironmap.io.dicom.DicomImportError
        For a label that is not letters and digits only.
    """
    try:
        return labels.bids_label(value, prefix)
    except ValueError as exc:
        raise dicom.DicomImportError(str(exc)) from None


def import_dicom(dicom_dir: str | os.PathLike, bids_dir: str | os.PathLike,
                 participant_label: str, *, session_label: str | None = None,
                 site: str | None = None, series_map: str | os.PathLike | None = None,
                 overwrite: bool = False, work_dir: str | os.PathLike | None = None,
                 group: str | None = None, age: float | None = None, sex: str | None = None
                 ) -> ImportResult:
    """Convert one participant's DICOM folder into ``bids_dir`` (see module docstring).

    Parameters
    ----------
    dicom_dir : path
        Folder with the DICOM files of one participant and session (read only; ``.dcm.gz``
        files are decompressed into the work folder).
    bids_dir : path
        BIDS dataset to add to (created when absent).
    participant_label, session_label : str
        BIDS labels (with or without ``sub-``/``ses-``).
    site : str, optional
        Site label for ``participants.tsv`` and the protocol tables.
    series_map : path, optional
        TSV (``pattern``, ``suffix``) overriding the series recognition rules.
    overwrite : bool
        Replace an existing ``anat`` folder of this participant/session.
    work_dir : path, optional
        Where the temporary conversion folder goes (default: ``bids_dir/.ironmap-work``,
        so that decompressed DICOMs never land in the system temp folder; a folder left by
        a killed run is removed by the next import).
    group, age, sex : optional
        ``participants.tsv`` values given by the user (``group``: the diagnosis column the
        group level reads; ``age`` in years and ``sex`` M/F/O replace the header values).

    Returns
    -------
    ImportResult
        The files written, the protocol rows, warnings and the import log.

    Raises
    ------
    ironmap.io.dicom.DicomImportError
        Bad input, naming the series or file, or the ``dicom`` extra not installed; nothing
        is written into ``bids_dir`` then.
    """
    dicom.require_tools()
    pid = bids_label(participant_label, "sub")
    ses = bids_label(session_label, "ses") if session_label else None
    dicom_dir, bids_dir = Path(dicom_dir).resolve(), Path(bids_dir).resolve()
    if bids_dir == dicom_dir or dicom_dir in bids_dir.parents:
        raise dicom.DicomImportError(f"{bids_dir}: the BIDS folder must not be inside the "
                                     "DICOM folder (the source is never written to)")
    anat_rel = Path(f"sub-{pid}") / (f"ses-{ses}" if ses else "") / "anat"
    if (bids_dir / anat_rel).exists() and not overwrite:
        raise OutputExistsError(f"{bids_dir / anat_rel}: exists; pass --overwrite to replace")
    if site is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+", site):
        raise dicom.DicomImportError(f"invalid site label {site!r}: letters, digits, - and _")
    given = participant_values(group, age, sex)
    smap = dicom.read_series_map(Path(series_map)) if series_map else []
    notes: list[str] = []
    with scratch_dir(work_dir if work_dir is not None else bids_dir) as work:
        if dicom_dir in Path(work).resolve().parents:
            raise dicom.DicomImportError("the work folder must not be inside the DICOM folder")
        in_dir = dicom.prepare_input(dicom_dir, Path(work))
        headers = dicom.scan_dicom_folder(in_dir)
        idents = sorted({v for h in headers for v in deid.identifying_values(h.header)},
                        key=lambda v: (-len(v), v))
        converted = dicom.run_dcm2niix(in_dir, Path(work) / "nifti")
        acquisitions = plan_acquisitions(converted, headers, smap, notes)
        if not acquisitions:
            raise dicom.DicomImportError(
                "no MEGRE, T1w or FLAIR series recognised among "
                f"{', '.join(h.label for h in headers)}; name them with --map")
        checked = verify_acquisitions(acquisitions, headers, notes)
        return _write_dataset(bids_dir, anat_rel, pid, ses, site, headers, acquisitions,
                              checked, idents, notes, dicom_dir, given)


def plan_acquisitions(converted: list[dicom.ConvertedImage], headers: list[dicom.SeriesHeader],
                      series_map: list[tuple[str, str]], notes: list[str]) -> list[Acquisition]:
    """Group converted images by series, recognise them, pair phase with magnitude.

    Parameters
    ----------
    converted : list of ConvertedImage
        Images written by dcm2niix.
    headers : list of SeriesHeader
        The DICOM series.
    series_map : list of (str, str)
        ``--map`` rows.
    notes : list of str
        Skipped series are noted here.

    Returns
    -------
    list of Acquisition
        The acquisitions to write.
    """
    by_number = {h.number: h for h in headers}
    groups: dict[int, list[dicom.ConvertedImage]] = {}
    for img in converted:
        groups.setdefault(img.series_number, []).append(img)
    found: list[Acquisition] = []
    for number in sorted(groups):
        imgs = groups[number]
        head = by_number.get(number)
        label = head.label if head else f"series {number}"
        suffix = dicom.match_series_map(imgs[0].sidecar, series_map) if series_map else None
        if suffix is None:
            expected = head.expected_echoes if head else None
            suffix = dicom.classify_series([i.sidecar for i in imgs], expected)
        if suffix in (None, "ignore"):
            notes.append(f"{label}: not imported (no MEGRE/T1w/FLAIR rule matched)")
            continue
        found.extend(_split_series(suffix, label, imgs, notes))
    found = _attach_phase_series(found, notes)
    _number_runs(found)
    return found


def _split_series(suffix: str, label: str, imgs: list[dicom.ConvertedImage],
                  notes: list[str]) -> list[Acquisition]:
    parts = {p: [i for i in imgs if dicom.image_part(i.sidecar) == p]
             for p in ("mag", "phase", "real", "imag")}
    if parts["real"] or parts["imag"]:
        notes.append(f"{label}: real/imaginary images not imported")
    te = lambda i: float(i.sidecar.get("EchoTime") or 0.0)  # noqa: E731
    if suffix == "MEGRE":
        return [Acquisition("MEGRE", label, sorted(parts["mag"], key=te),
                            sorted(parts["phase"], key=te))]
    return [Acquisition(suffix, label, [img]) for img in sorted(parts["mag"], key=te)]


def _attach_phase_series(found: list[Acquisition], notes: list[str]) -> list[Acquisition]:
    """Join phase-only MEGRE series (Siemens exports them separately) to their magnitude."""
    mags = [a for a in found if a.suffix == "MEGRE" and a.magnitude]
    out = [a for a in found if not (a.suffix == "MEGRE" and not a.magnitude)]
    for acq in (a for a in found if a.suffix == "MEGRE" and not a.magnitude):
        tes = [round(float(i.sidecar.get("EchoTime") or 0), 7) for i in acq.phase]
        match = [m for m in mags if not m.phase and tes ==
                 [round(float(i.sidecar.get("EchoTime") or 0), 7) for i in m.magnitude]]
        if match:
            match[0].phase = acq.phase
        else:
            notes.append(f"{acq.label}: phase images without matching magnitude, not imported")
    return out


def _number_runs(found: list[Acquisition]) -> None:
    for suffix in dicom.SUFFIXES:
        same = [a for a in found if a.suffix == suffix]
        if len(same) > 1:
            for k, acq in enumerate(same, start=1):
                acq.run = k


def verify_acquisitions(acquisitions: list[Acquisition], headers: list[dicom.SeriesHeader],
                        notes: list[str]) -> dict[int, dict[str, Any]]:
    """Check every MEGRE acquisition; returns per-acquisition info (voxel size, ...).

    Parameters
    ----------
    acquisitions : list of Acquisition
        What is imported.
    headers : list of SeriesHeader
        The DICOM series.
    notes : list of str
        Notes are appended here.

    Returns
    -------
    dict of int to dict
        Acquisition position -> ``{"zooms": voxel size in mm (None without images)}``.

    Raises
    ------
    ironmap.io.dicom.DicomImportError
        Listing every problem found, each naming its series.
    """
    expected = {h.label: h.expected_echoes for h in headers}
    errors: list[str] = []
    info: dict[int, dict[str, Any]] = {}
    if not any(a.suffix == "MEGRE" for a in acquisitions):
        notes.append("no multi-echo GRE series found")
    for k, acq in enumerate(acquisitions):
        infos = [dicom.nifti_info(i.nifti) for i in acq.magnitude]
        info[k] = {"zooms": infos[0]["zooms"] if infos else None}
        if acq.suffix != "MEGRE":
            continue
        sidecars = [i.sidecar for i in acq.magnitude]
        if not sidecars:
            errors.append(f"{acq.label}: no magnitude images")
            continue
        errors += protocol.check_echo_set(sidecars, expected.get(acq.label), acq.label)
        errors += _check_geometry(acq, infos)
        errors += _check_phase(acq, infos)
        errs, msgs = protocol.check_philips_scaling(
            sidecars, [i["slope"] for i in infos], [i["inter"] for i in infos],
            [i["float_data"] for i in infos], acq.label)
        errors += errs
        notes += msgs
    if errors:
        raise dicom.DicomImportError("; ".join(errors))
    return info


def _check_geometry(acq: Acquisition, infos: list[dict[str, Any]]) -> list[str]:
    ref = infos[0]
    for n, other in enumerate(infos[1:], start=2):
        if other["shape"] != ref["shape"] or not np.allclose(other["affine"], ref["affine"],
                                                             atol=1e-3):
            return [f"{acq.label}: echo {n} has another geometry than echo 1 (shape "
                    f"{other['shape']} vs {ref['shape']}; missing slices?)"]
    bad = [n for n, i in enumerate(infos, start=1) if i["min"] < 0]
    if bad:
        return [f"{acq.label}: magnitude echo(es) {bad} hold negative values "
                "(phase labelled as magnitude?)"]
    return []


def _check_phase(acq: Acquisition, infos: list[dict[str, Any]]) -> list[str]:
    if not acq.phase:
        return []
    if len(acq.phase) != len(acq.magnitude):
        return [f"{acq.label}: {len(acq.phase)} phase but {len(acq.magnitude)} magnitude "
                "echoes"]
    for n, img in enumerate(acq.phase, start=1):
        pinfo = dicom.nifti_info(img.nifti)
        if pinfo["shape"] != infos[0]["shape"] or not np.allclose(pinfo["affine"],
                                                                 infos[0]["affine"], atol=1e-3):
            return [f"{acq.label}: phase echo {n} has another geometry than the magnitude"]
        if abs(img.sidecar["EchoTime"] - acq.magnitude[n - 1].sidecar["EchoTime"]) > 1e-7:
            return [f"{acq.label}: phase echo {n} EchoTime differs from magnitude echo {n}"]
    return []


def output_name(pid: str, ses: str | None, acq: Acquisition, echo: int | None,
                part: str | None) -> str:
    """BIDS file name (without extension) of one image of an acquisition.

    Parameters
    ----------
    pid : str
        Participant label (without ``sub-``).
    ses : str or None
        Session label.
    acq : Acquisition
        The acquisition.
    echo : int or None
        Echo number (MEGRE).
    part : str or None
        ``mag`` or ``phase``.

    Returns
    -------
    str
        E.g. ``sub-01_echo-2_part-mag_MEGRE``.
    """
    entities = [f"sub-{pid}"]
    if ses:
        entities.append(f"ses-{ses}")
    if acq.run is not None:
        entities.append(f"run-{acq.run}")
    if echo is not None:
        entities.append(f"echo-{echo}")
    if part is not None:
        entities.append(f"part-{part}")
    return "_".join([*entities, acq.suffix])


def participant_values(group: str | None, age: float | None, sex: str | None
                       ) -> dict[str, str]:
    """User-given ``participants.tsv`` values, checked.

    Parameters
    ----------
    group : str or None
        Letters, digits, - and _.
    age : float or None
        Years, 0-120.
    sex : str or None
        M, F or O.

    Returns
    -------
    dict of str to str
        The given values as text.

    Raises
    ------
    ironmap.io.dicom.DicomImportError
        Naming the bad value.
    """
    out: dict[str, str] = {}
    if group is not None:
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(group)):
            raise dicom.DicomImportError(f"invalid group label {group!r}: letters, digits, - "
                                         "and _")
        out["group"] = str(group)
    if age is not None:
        if not 0 <= float(age) <= 120:
            raise dicom.DicomImportError(f"invalid age {age!r}: years between 0 and 120")
        out["age"] = f"{float(age):g}"
    if sex is not None:
        if str(sex).upper() not in ("M", "F", "O"):
            raise dicom.DicomImportError(f"invalid sex {sex!r}: M, F or O")
        out["sex"] = str(sex).upper()
    return out


def anatomy_warnings(pid: str, acquisitions: list[Acquisition]) -> list[str]:
    """Warnings for a participant imported without a T1w or without a FLAIR.

    Parameters
    ----------
    pid : str
        Participant label.
    acquisitions : list of Acquisition
        What is imported.

    Returns
    -------
    list of str
        The warnings.
    """
    found = {a.suffix for a in acquisitions}
    out = []
    if "T1w" not in found:
        out.append(f"sub-{pid}: no T1w series imported; the participant level registers "
                   "every image and mask through the T1w (and measures tissue volumes on it): "
                   "import the T1w series (name it with --map) if one was acquired")
    if "FLAIR" not in found:
        out.append(f"sub-{pid}: no FLAIR series imported; lesion masks and T2 lesion load "
                   "need a FLAIR")
    return out


def _write_dataset(bids_dir, anat_rel, pid, ses, site, headers, acquisitions, checked,
                   idents, notes, dicom_dir, given=None) -> ImportResult:
    bids_dir.mkdir(parents=True, exist_ok=True)
    staging = bids_dir / f".ironmap-staging-{uuid.uuid4().hex[:8]}"
    log_rel = IMPORT_CODE_DIR / f"{'_'.join(anat_rel.parts[:-1])}_import.log"
    try:
        written = _stage_images(staging / anat_rel, pid, ses, acquisitions, idents)
        rows = _protocol_rows(pid, ses, site, acquisitions, checked)
        warnings = anatomy_warnings(pid, acquisitions) + _stage_protocols(bids_dir, staging,
                                                                          rows)
        notes += dicom.stage_participant(bids_dir, staging,
                                         {**participant_row(pid, site, headers, acquisitions),
                                          **(given or {})})
        lines = [deid.clean_text(n.replace(str(dicom_dir), "DICOM_DIR"), idents)
                 for n in notes]
        text = _log_header(pid, ses, written) + lines + [f"WARNING: {w}" for w in warnings]
        write_text(staging / log_rel, "\n".join(text) + "\n")
        dicom.check_no_identifiers(staging, idents)
        dicom.move_into_place(staging, bids_dir, anat_rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    dicom.ensure_dataset_description(bids_dir, __version__, dicom.dcm2niix_version())
    for line in lines:
        log.info("%s", line)
    for warning in warnings:
        log.warning("%s", deid.clean_text(warning, idents))
    return ImportResult(pid, ses, [bids_dir / anat_rel / p.name for p in written], rows,
                        warnings, bids_dir / log_rel)


def _stage_protocols(bids_dir: Path, staging: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Merge this import's rows into the protocol tables (staged); returns the warnings."""
    table = load_protocols(bids_dir)
    for row in rows:
        same = (table["participant_id"] == row["participant_id"]) & (
            table["session_id"].fillna("n/a") == (row["session_id"] or "n/a"))
        table = table[~same]
    new = pd.DataFrame(rows, columns=list(protocol.PROTOCOL_COLUMNS))
    table = pd.concat([t for t in (table, new) if not t.empty], ignore_index=True) \
        if rows or not table.empty else new
    table = table.sort_values(["site", "participant_id"], kind="stable", na_position="last")
    write_tsv(table, staging / IMPORT_CODE_DIR / "protocols.tsv",
              {c: protocol.PROTOCOL_DICTIONARY[c] for c in protocol.PROTOCOL_COLUMNS})
    sites = protocol.site_protocols(table)
    write_tsv(sites, staging / IMPORT_CODE_DIR / "site_protocols.tsv",
              {c: protocol.PROTOCOL_DICTIONARY[c] for c in sites.columns if c != "site"}
              | {"site": protocol.PROTOCOL_DICTIONARY["site"]})
    return protocol.protocol_warnings(table)


def participant_row(pid: str, site: str | None, headers: list[dicom.SeriesHeader],
                    acquisitions: list[Acquisition]) -> dict[str, str]:
    """``participants.tsv`` row: id, age in whole years, sex, site (``n/a`` when unknown).

    Parameters
    ----------
    pid : str
        Participant label.
    site : str or None
        ``--site``.
    headers : list of SeriesHeader
        The DICOM series (age and sex from their headers).
    acquisitions : list of Acquisition
        What is imported.

    Returns
    -------
    dict of str to str
        The row.
    """
    labels = [a.label for a in acquisitions]
    header = ([h for h in headers if h.label in labels] or headers)[0].header
    age = deid.age_in_years(header.get("PatientAge"), header.get("PatientBirthDate"),
                            header.get("StudyDate"))
    sex = deid.sex_code(header.get("PatientSex"))
    return {"participant_id": f"sub-{pid}", "age": "n/a" if age is None else str(age),
            "sex": sex or "n/a", "site": site or "n/a"}


def _log_header(pid: str, ses: str | None, written: list[Path]) -> list[str]:
    return [f"ironmap {__version__} import-dicom: sub-{pid}" + (f" ses-{ses}" if ses else ""),
            f"converted with {dicom.dcm2niix_version()}, options "
            f"{' '.join(repr(o) if not o else o for o in dicom.DCM2NIIX_OPTIONS)}",
            *[f"wrote {p.name}" for p in written]]


def _stage_images(anat: Path, pid: str, ses: str | None, acquisitions: list[Acquisition],
                  idents: list[str]) -> list[Path]:
    written = []
    for acq in acquisitions:
        multi = acq.suffix == "MEGRE"
        for part, imgs in (("mag", acq.magnitude), ("phase", acq.phase)):
            for n, img in enumerate(imgs, start=1):
                name = output_name(pid, ses, acq, n if multi else None,
                                   part if multi else None)
                dst = anat / f"{name}.nii.gz"
                dicom.write_clean_nifti(img.nifti, dst)
                write_json(anat / f"{name}.json", deid.scrub_sidecar(img.sidecar, idents))
                written.append(dst)
    return written


def _protocol_rows(pid, ses, site, acquisitions, checked) -> list[dict[str, Any]]:
    rows = []
    for k, acq in enumerate(acquisitions):
        if acq.suffix != "MEGRE":
            continue
        row = {"participant_id": f"sub-{pid}", "session_id": f"ses-{ses}" if ses else None,
               "site": site}
        row.update(protocol.acquisition_summary([i.sidecar for i in acq.magnitude],
                                                checked[k]["zooms"], bool(acq.phase)))
        rows.append(row)
    return rows


def load_protocols(bids_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-acquisition protocol table of a dataset.

    Parameters
    ----------
    bids_dir : path-like
        The BIDS dataset.

    Returns
    -------
    pandas.DataFrame
        ``code/ironmap-import/protocols.tsv``; empty when none was written.
    """
    path = Path(bids_dir) / IMPORT_CODE_DIR / "protocols.tsv"
    return read_tsv(path) if path.exists() else pd.DataFrame(
        columns=list(protocol.PROTOCOL_COLUMNS))
