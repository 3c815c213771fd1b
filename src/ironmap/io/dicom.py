"""DICOM input: header scan (pydicom), conversion (dcm2niix), series recognition.

Nothing here writes into a DICOM folder: gzip-compressed files are decompressed into a work
folder, dcm2niix always writes to an explicit output folder (``-o``).
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ironmap.core.metadata.deid import clean_text, find_identifiers, identifying_values
from ironmap.io.atomic import atomic_path, write_json, write_text
from ironmap.io.readers import InputError, read_json_object, read_table_text, read_text

log = logging.getLogger(__name__)

#: BIDS suffixes the importer writes; ``ignore`` in a series map skips a series.
SUFFIXES = ("MEGRE", "T1w", "FLAIR")

#: dcm2niix options: BIDS sidecar, anonymised sidecar, no compression (ironmap compresses
#: after cleaning the NIfTI header), Philips floating-point scaling, original integer range,
#: no cropping, default slice merging, empty NIfTI comment, unique names.
DCM2NIIX_OPTIONS = ("-b", "y", "-ba", "y", "-z", "n", "-p", "y", "-l", "o", "-x", "n",
                    "-m", "2", "-w", "2", "-c", "", "-f", "%s_%e")

#: Header keywords collected from each series (identifying ones only to remove them).
HEADER_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "PatientAddress",
    "PatientAge", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "RequestingPhysician", "StationName", "DeviceSerialNumber",
    "SeriesNumber", "SeriesDescription", "ProtocolName", "SeriesInstanceUID",
    "StudyInstanceUID", "Manufacturer", "EchoTrainLength", "ScanningSequence", "Rows",
)

_NIFTI_TEXT_FIELDS = ((4, 10), (14, 18), (148, 80), (228, 24), (328, 16))  # offset, length
_LCONTRASTS = re.compile(rb"lContrasts\s*=\s*(\d+)")
_ENCAPSULATED = ("1.2.840.10008.1.2.4", "1.2.840.10008.1.2.5")


class DicomImportError(ValueError):
    """Unusable DICOM input; the message names the series or file."""


@dataclass
class SeriesHeader:
    """What the importer needs to know about one DICOM series before conversion."""

    number: int
    description: str
    files: list[Path] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    patient_ids: set[str] = field(default_factory=set)
    expected_echoes: int | None = None

    @property
    def label(self) -> str:
        """``series N (description)`` for messages (the description is cleaned by callers)."""
        return f"series {self.number} ({self.description})" if self.description else \
            f"series {self.number}"


@dataclass
class ConvertedImage:
    """One NIfTI written by dcm2niix into the work folder, with its sidecar."""

    nifti: Path
    sidecar: dict[str, Any]

    @property
    def series_number(self) -> int:
        """DICOM SeriesNumber (0 when absent)."""
        return int(self.sidecar.get("SeriesNumber", 0) or 0)


def require_tools() -> None:
    """Check that the ``dicom`` extra (pydicom and the dcm2niix package) is installed.

    Raises
    ------
    DicomImportError
        Naming the missing package and the install command.
    """
    for name in ("pydicom", "dcm2niix"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise DicomImportError(f"{name} is not installed (needed by import-dicom): "
                                   "pip install 'ironmap[dicom]'") from exc


def prepare_input(dicom_dir: Path, work_dir: Path) -> Path:
    """Folder for dcm2niix: ``dicom_dir`` itself, or a decompressed copy when it holds ``.gz``.

    The source folder is only read.

    Parameters
    ----------
    dicom_dir : pathlib.Path
        The DICOM folder.
    work_dir : pathlib.Path
        Scratch folder for the decompressed copy.

    Returns
    -------
    pathlib.Path
        The folder to convert.

    Raises
    ------
    DicomImportError
        When ``dicom_dir`` is not a folder.
    """
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise DicomImportError(f"{dicom_dir}: DICOM folder not found")
    files = [p for p in sorted(dicom_dir.rglob("*")) if p.is_file() and not _hidden(p, dicom_dir)]
    if not any(p.name.endswith(".gz") for p in files):
        return dicom_dir
    target = Path(work_dir) / "input"
    for src in files:
        rel = src.relative_to(dicom_dir)
        dst = target / (str(rel)[:-3] if src.name.endswith(".gz") else rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.name.endswith(".gz"):
            try:
                with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as exc:
                raise DicomImportError(f"{rel}: corrupt gzip file ({exc})") from exc
        else:
            shutil.copyfile(src, dst)
    return target


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def scan_dicom_folder(folder: Path) -> list[SeriesHeader]:
    """Read every DICOM header below ``folder``; check for corrupt files and mixed patients.

    Files without the ``DICM`` preamble are not DICOM for this purpose and are skipped, and
    so are DICOM objects without an image (DICOMDIR, structured reports).

    Parameters
    ----------
    folder : pathlib.Path
        The folder to scan (recursively).

    Returns
    -------
    list of SeriesHeader
        One entry per series, by series number, with its files and first header.

    Raises
    ------
    DicomImportError
        No DICOM file; a corrupt or truncated DICOM file (naming its series when its header
        is readable); images of more than one patient (differing PatientID).
    """
    folder = Path(folder)
    series: dict[int, SeriesHeader] = {}
    corrupt: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)):
        raw = path.read_bytes()
        if len(raw) < 132 or raw[128:132] != b"DICM":
            continue
        header, problem = _read_header(path, raw)
        rel = path.relative_to(folder)
        if header is None:
            corrupt.append(f"{rel}: not readable as DICOM ({problem})")
            continue
        if header.get("Rows") is None:  # DICOMDIR, reports, presentation states
            continue
        entry = _series_entry(series, header)
        entry.files.append(path)
        entry.patient_ids.add(str(header.get("PatientID") or ""))
        entry.expected_echoes = entry.expected_echoes or _expected_echoes(header, raw)
        if problem:
            corrupt.append(f"{entry.label}: file {rel} is corrupt ({problem})")
    if corrupt:
        raise DicomImportError("corrupt DICOM input: " + "; ".join(corrupt))
    if not series:
        raise DicomImportError(f"{folder}: no DICOM files found")
    _check_one_patient(list(series.values()))
    return [series[k] for k in sorted(series)]


def _series_entry(series: dict[int, SeriesHeader], header: dict[str, Any]) -> SeriesHeader:
    number = int(header.get("SeriesNumber") or 0)
    if number not in series:
        text = str(header.get("SeriesDescription") or header.get("ProtocolName") or "")
        series[number] = SeriesHeader(number, clean_text(text, identifying_values(header)),
                                      header=header)
    return series[number]


def _read_header(path: Path, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(header dict, problem) of one file; header None when even the header is unreadable."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        header = {k: _plain(ds.get(k)) for k in HEADER_KEYWORDS}
    except Exception as exc:  # pydicom raises many types for broken files
        return None, f"{type(exc).__name__}: {exc}"
    try:
        full = pydicom.dcmread(path)
        return header, _pixel_problem(full)
    except Exception as exc:
        return header, f"{type(exc).__name__}: {exc}"


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, int | float):
        return value
    return str(value)


def _pixel_problem(ds) -> str | None:
    """Describe missing or truncated pixel data of an uncompressed image (None if fine)."""
    if "PixelData" not in ds:
        return None if "Rows" not in ds else "no pixel data"
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
    if syntax.startswith(_ENCAPSULATED):
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    need = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
            * frames * int(ds.BitsAllocated) // 8)
    have = len(ds.PixelData)
    return None if have >= need else f"pixel data truncated: {have} of {need} bytes"


def _expected_echoes(header: dict[str, Any], raw: bytes) -> int | None:
    """Number of echoes of the acquisition, from the headers; None when they do not say.

    Siemens: ``lContrasts`` of the protocol (ASCCONV text in the CSA/XA private header).
    Other vendors: ``EchoTrainLength`` of gradient-echo (``GR``, non-EPI) sequences.
    """
    maker = str(header.get("Manufacturer") or "").lower()
    if maker.startswith("siemens"):
        match = _LCONTRASTS.search(raw)
        return int(match.group(1)) if match else None
    seq = header.get("ScanningSequence") or ""
    seq = " ".join(seq) if isinstance(seq, list) else str(seq)
    etl = header.get("EchoTrainLength")
    if "GR" in seq and "EP" not in seq and isinstance(etl, int | float) and etl > 1:
        return int(etl)
    return None


def _check_one_patient(series: list[SeriesHeader]) -> None:
    owners: dict[str, list[str]] = {}
    for s in series:
        for pid in s.patient_ids:
            owners.setdefault(pid, []).append(s.label)
    if len(owners) > 1:
        groups = " vs ".join(f"[{', '.join(labels)}]" for labels in owners.values())
        raise DicomImportError(f"images of {len(owners)} different patients (PatientID "
                               f"differs) in one DICOM folder: {groups}; import each "
                               "patient from its own folder")


def run_dcm2niix(in_dir: Path, out_dir: Path) -> list[ConvertedImage]:
    """Convert ``in_dir`` with the dcm2niix binary of the ``dcm2niix`` package.

    Parameters
    ----------
    in_dir : pathlib.Path
        DICOM folder (:func:`prepare_input`).
    out_dir : pathlib.Path
        Folder for dcm2niix's output.

    Returns
    -------
    list of ConvertedImage
        The written images (uncompressed ``.nii`` with sidecars), sorted by name.

    Raises
    ------
    DicomImportError
        When dcm2niix is missing or fails (its output quoted).
    """
    require_tools()
    import dcm2niix

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [dcm2niix.bin, *DCM2NIIX_OPTIONS, "-o", str(out_dir), str(in_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "HOME": str(out_dir)})  # no user defaults file
    for line in proc.stdout.splitlines() + proc.stderr.splitlines():
        if line.lower().startswith(("warning", "error")):
            log.debug("dcm2niix: %s", line)
    images = []
    for nii in sorted(out_dir.glob("*.nii")):
        sidecar = nii.with_suffix(".json")
        if sidecar.exists():
            images.append(ConvertedImage(nii, json.loads(sidecar.read_text(encoding="utf-8"))))
    if proc.returncode != 0 and not images:
        raise DicomImportError(f"dcm2niix failed (exit code {proc.returncode}) and wrote no "
                               "image")
    return images


def image_part(sidecar: dict[str, Any]) -> str:
    """``mag``, ``phase``, ``real`` or ``imag`` from the ImageType of a sidecar.

    Phase: a ``P``/``PHASE``/``PHASE MAP`` value; real / imaginary: ``R``/``REAL`` and
    ``I``/``IMAGINARY``; magnitude otherwise (also when ImageType is absent).

    Parameters
    ----------
    sidecar : dict
        A dcm2niix JSON sidecar.

    Returns
    -------
    str
        The BIDS ``part`` label.
    """
    tokens = {str(t).upper() for t in sidecar.get("ImageType", []) or []}
    if tokens & {"P", "PHASE", "PHASE MAP", "P_FFE"}:
        return "phase"
    if tokens & {"R", "REAL", "R_FFE"}:
        return "real"
    if tokens & {"I", "IMAGINARY", "I_FFE"}:
        return "imag"
    return "mag"


def nifti_info(path: Path) -> dict[str, Any]:
    """Geometry, scaling and value range of a converted NIfTI.

    Parameters
    ----------
    path : pathlib.Path
        A NIfTI written by dcm2niix.

    Returns
    -------
    dict
        ``shape``, ``affine`` (4x4), ``zooms`` (mm), ``slope``, ``inter`` (NIfTI scaling, 1/0
        when unset), ``float_data`` (bool), ``min`` (smallest scaled value).
    """
    img = nib.load(str(path))
    slope, inter = img.dataobj.slope, img.dataobj.inter
    return {
        "shape": tuple(int(n) for n in img.shape),
        "affine": img.affine.copy(),
        "zooms": tuple(float(z) for z in img.header.get_zooms()[:3]),
        "slope": 1.0 if slope is None or not np.isfinite(slope) else float(slope),
        "inter": 0.0 if inter is None or not np.isfinite(inter) else float(inter),
        "float_data": bool(np.issubdtype(img.get_data_dtype(), np.floating)),
        "min": float(np.min(img.get_fdata(dtype=np.float32))),
    }


def write_clean_nifti(src: Path, dst: Path) -> Path:
    """Copy a dcm2niix ``.nii`` to ``dst`` (``.nii.gz``) with its free-text fields blanked.

    ``db_name``, ``data_type``, ``descrip`` (dcm2niix puts the acquisition time of day
    there), ``aux_file`` and ``intent_name`` are zeroed; voxel data, scaling and geometry stay
    byte for byte. The gzip stream carries no file name and no time stamp.

    Parameters
    ----------
    src : pathlib.Path
        The ``.nii`` from dcm2niix.
    dst : pathlib.Path
        The ``.nii.gz`` to write.

    Returns
    -------
    pathlib.Path
        ``dst``.

    Raises
    ------
    DicomImportError
        When ``src`` is not a single-file NIfTI-1 image.
    """
    raw = bytearray(Path(src).read_bytes())
    if len(raw) < 352 or int.from_bytes(raw[:4], "little") != 348 or raw[344:347] != b"n+1":
        raise DicomImportError(f"{src.name}: unexpected NIfTI layout from dcm2niix")
    if raw[348] != 0:
        raise DicomImportError(f"{src.name}: NIfTI header extensions are not supported")
    for offset, length in _NIFTI_TEXT_FIELDS:
        raw[offset:offset + length] = bytes(length)
    with atomic_path(dst) as tmp, open(tmp, "wb") as fh, \
            gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(bytes(raw))
    return Path(dst)


def read_series_map(path: Path) -> list[tuple[str, str]]:
    """Read a series map: TSV with columns ``pattern`` and ``suffix``.

    ``pattern`` is a case-insensitive shell pattern matched against SeriesDescription,
    ProtocolName and the series number; ``suffix`` is ``MEGRE``, ``T1w``, ``FLAIR`` or
    ``ignore``. The first matching row wins.

    Parameters
    ----------
    path : pathlib.Path
        The TSV (``--map``).

    Returns
    -------
    list of (str, str)
        ``(pattern, suffix)`` rows in file order.

    Raises
    ------
    DicomImportError
        Naming the file, for missing columns or an unknown suffix.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DicomImportError(f"{path}: series map not found")
    try:
        table = pd.read_csv(io.StringIO(read_table_text(path)), sep="\t", dtype=str,
                            keep_default_na=False)
    except InputError as exc:
        raise DicomImportError(str(exc)) from None
    if not {"pattern", "suffix"} <= set(table.columns):
        raise DicomImportError(f"{path}: a series map needs the columns pattern and suffix")
    rows = [(p.strip(), s.strip()) for p, s in zip(table["pattern"], table["suffix"],
                                                    strict=True)]
    bad = [s for _, s in rows if s not in (*SUFFIXES, "ignore")]
    if bad:
        raise DicomImportError(f"{path}: unknown suffix(es) {bad}; use one of "
                               f"{', '.join(SUFFIXES)}, ignore")
    return rows


def match_series_map(sidecar: dict[str, Any], series_map: list[tuple[str, str]]) -> str | None:
    """Suffix of the first map row matching a series.

    Parameters
    ----------
    sidecar : dict
        The series' dcm2niix sidecar.
    series_map : list of (str, str)
        Rows of :func:`read_series_map`.

    Returns
    -------
    str or None
        ``MEGRE``, ``T1w``, ``FLAIR`` or ``ignore``; None when no row matches.
    """
    names = [str(sidecar.get(k, "")).lower() for k in ("SeriesDescription", "ProtocolName")]
    names.append(str(sidecar.get("SeriesNumber", "")))
    for pattern, suffix in series_map:
        if any(fnmatch.fnmatchcase(n, pattern.lower()) for n in names if n):
            return suffix
    return None


_IGNORE_RE = re.compile(r"localizer|localiser|scout|survey|aahead|_mpr_|calibration|"
                        r"(^|[^a-z])ref(erence)?scan", re.IGNORECASE)
_FLAIR_RE = re.compile(r"flair|dark[-_ ]?fluid|tirm|t2[-_ ]?fl(?!ash)", re.IGNORECASE)
_T1_RE = re.compile(r"(^|[^a-z0-9])t1(?!\d)|mp-?rage|mprage|bravo|spgr|(^|[^a-z])tfl|"
                    r"(^|[^a-z])tfe", re.IGNORECASE)


def classify_series(images: list[dict[str, Any]],
                    expected_echoes: int | None = None) -> str | None:
    """Recognise a series from its sidecars: ``MEGRE``, ``T1w``, ``FLAIR`` or None (skip).

    Rules, in order (first that applies wins; a ``--map`` entry overrides all of them):

    1. derived images (ImageType ``DERIVED``) and localizers/scouts/calibrations: skip;
    2. ``MEGRE``: gradient echo (ScanningSequence ``GR``, no ``IR``) with two or more distinct
       magnitude EchoTimes, or whose headers announce more than one echo (``lContrasts`` /
       EchoTrainLength; then an echo is missing and the import stops with an error);
    3. ``FLAIR``: description or protocol matching ``flair``, ``dark fluid``, ``tirm``,
       ``t2 fl`` with EchoTime >= 50 ms when given; or InversionTime >= 1.2 s with
       EchoTime >= 50 ms;
    4. ``T1w``: description or protocol matching ``t1``, ``mprage``, ``bravo``, ``spgr``,
       ``tfl``, ``tfe``; or 3D with InversionTime 0.3-1.5 s and EchoTime < 10 ms;
    5. anything else: skip.

    Parameters
    ----------
    images : list of dict
        The sidecars of the series' converted images.
    expected_echoes : int, optional
        Echoes the headers announce (``lContrasts``), when known.

    Returns
    -------
    str or None
        The BIDS suffix, or None to skip the series.
    """
    first = images[0]
    text = " ".join(str(first.get(k, "")) for k in ("SeriesDescription", "ProtocolName"))
    kinds = {str(t).upper() for t in first.get("ImageType", []) or []}
    if "DERIVED" in kinds or _IGNORE_RE.search(text):
        return None
    seq = str(first.get("ScanningSequence", "")).upper()
    te = first.get("EchoTime") or 0.0
    ti = first.get("InversionTime") or 0.0
    mags = {round(float(i["EchoTime"]), 7) for i in images
            if image_part(i) == "mag" and i.get("EchoTime")}
    if "GR" in seq and "IR" not in seq and (len(mags) > 1 or (expected_echoes or 1) > 1):
        return "MEGRE"
    if (_FLAIR_RE.search(text) and (not te or te >= 0.05)) or (ti >= 1.2 and te >= 0.05):
        return "FLAIR"
    if _T1_RE.search(text) or (first.get("MRAcquisitionType") == "3D"
                               and 0.3 <= ti <= 1.5 and 0 < te < 0.01):
        return "T1w"
    return None


# --- writing into the BIDS dataset (staging folder, participants.tsv, final move) ---------

PARTICIPANT_COLUMNS = {
    "participant_id": {"Description": "participant label"},
    "age": {"Description": "age at the imported session in whole years (89 means 89 or "
                           "older)", "Units": "year"},
    "sex": {"Description": "sex as recorded by the scanner",
            "Levels": {"M": "male", "F": "female", "O": "other"}},
    "site": {"Description": "acquisition site label"},
    "group": {"Description": "participant group (diagnosis), as given at import (--group)"},
}


def add_participant_row(text: str | None, row: dict[str, str]) -> tuple[str, list[str]]:
    """Add one row to the text of ``participants.tsv`` without touching existing rows.

    Existing cells stay byte for byte; missing columns of ``row`` are appended (``n/a`` in
    existing rows). A participant already listed keeps its values; only its ``n/a`` cells
    take the values of ``row``; conflicting values are reported in the returned notes.

    Parameters
    ----------
    text : str or None
        The current file's text (None: no file yet).
    row : dict of str to str
        ``participant_id`` and the values to record.

    Returns
    -------
    text : str
        The new file's text.
    notes : list of str
        Values that conflict with those already listed.

    Raises
    ------
    DicomImportError
        When the existing table has no ``participant_id`` column.
    """
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        lines = ["\t".join(row)]
    columns = lines[0].split("\t")
    if "participant_id" not in columns:
        raise DicomImportError("participants.tsv: no participant_id column")
    for col in row:
        if col not in columns:
            columns.append(col)
            lines = ["\t".join(columns)] + [ln + "\tn/a" for ln in lines[1:]]
    ids = columns.index("participant_id")
    notes = []
    for k, line in enumerate(lines[1:], start=1):
        cells = line.split("\t")
        if cells[ids] == row["participant_id"]:
            old = dict(zip(columns, cells, strict=False))
            diff = [c for c, v in row.items() if old.get(c, "n/a") not in ("n/a", v)]
            if diff:
                notes.append(f"participants.tsv: {row['participant_id']} already listed with "
                             f"other {', '.join(diff)}; existing values kept")
            filled = [old.get(c, "n/a") if old.get(c, "n/a") != "n/a" else row.get(c, "n/a")
                      for c in columns]
            lines[k] = "\t".join(filled)
            return "\n".join(lines) + "\n", notes
    lines.append("\t".join(row.get(c, "n/a") for c in columns))
    return "\n".join(lines) + "\n", notes


def stage_participant(bids_dir: Path, staging: Path, row: dict[str, str]) -> list[str]:
    """Write the updated ``participants.tsv`` and ``participants.json`` into ``staging``.

    Parameters
    ----------
    bids_dir : pathlib.Path
        The BIDS dataset (its files are only read).
    staging : pathlib.Path
        The import's staging folder.
    row : dict of str to str
        The participant's row (:func:`add_participant_row`).

    Returns
    -------
    list of str
        Notes on values that conflict with those already listed.

    Raises
    ------
    DicomImportError
        When the existing files cannot be read.
    """
    tsv = Path(bids_dir) / "participants.tsv"
    sidecar = Path(bids_dir) / "participants.json"
    try:  # cp1252 files are read with a warning (and written back as UTF-8)
        text, notes = add_participant_row(read_text(tsv) if tsv.exists() else None, row)
        meta = read_json_object(sidecar, "data dictionary") if sidecar.exists() else {}
    except InputError as exc:
        raise DicomImportError(str(exc)) from None
    write_text(Path(staging) / "participants.tsv", text)
    for col, desc in PARTICIPANT_COLUMNS.items():
        meta.setdefault(col, desc)
    write_json(Path(staging) / "participants.json", meta)
    return notes


def check_no_identifiers(root: Path, identifiers: list[str]) -> None:
    """Refuse staged files whose name or content holds an identifying value.

    Text files are searched whole; for ``.nii.gz`` the decompressed NIfTI header (352 bytes,
    where text can live) is searched. The message names the file, never the value.

    Parameters
    ----------
    root : pathlib.Path
        The staging folder.
    identifiers : list of str
        Values that must not appear (names, ids, dates), as matched by
        :func:`ironmap.core.metadata.deid.find_identifiers`.

    Raises
    ------
    DicomImportError
        Naming the first file that holds one.
    """
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.name.endswith(".nii.gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read(352)
        else:
            data = path.read_bytes()
        if find_identifiers(str(rel).encode() + b"\n" + data, identifiers):
            raise DicomImportError(f"de-identification check failed: {rel} still holds an "
                                   "identifying header value; nothing was written")


def move_into_place(staging: Path, bids_dir: Path, anat_rel: Path) -> None:
    """Move the staged ``anat`` folder, then every other staged file, into ``bids_dir``.

    Each move is a rename on the same file system; an existing ``anat`` folder (overwrite)
    is first renamed into the staging folder and removed with it.

    Parameters
    ----------
    staging : pathlib.Path
        The staging folder (inside ``bids_dir``).
    bids_dir : pathlib.Path
        The BIDS dataset.
    anat_rel : pathlib.Path
        ``sub-X[/ses-Y]/anat`` relative to both.
    """
    staging, bids_dir = Path(staging), Path(bids_dir)
    dst = bids_dir / anat_rel
    if dst.exists():
        os.replace(dst, staging / "replaced-anat")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging / anat_rel, dst)
    top = staging / anat_rel.parts[0]
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging)
        if top in path.parents or rel.parts[0] == "replaced-anat":
            continue
        (bids_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, bids_dir / rel)


def ensure_dataset_description(bids_dir: Path, version: str, converter: str) -> None:
    """Write a minimal raw ``dataset_description.json`` when the dataset has none.

    Parameters
    ----------
    bids_dir : pathlib.Path
        The BIDS dataset.
    version : str
        ironmap's version (``GeneratedBy``).
    converter : str
        The converter and its version (dcm2niix).
    """
    path = Path(bids_dir) / "dataset_description.json"
    if path.exists():
        return
    write_json(path, {"Name": "MRI dataset imported from DICOM", "BIDSVersion": "1.10.0",
                      "DatasetType": "raw",
                      "GeneratedBy": [{"Name": "ironmap", "Version": version,
                                       "Description": f"import-dicom with {converter}"}]})


def dcm2niix_version() -> str:
    """Version of the dcm2niix package.

    Returns
    -------
    str
        The installed version, or ``unknown`` when it is not installed.
    """
    try:
        import dcm2niix

        return f"dcm2niix {dcm2niix.__version__}"
    except ImportError:  # pragma: no cover
        return "dcm2niix unknown"
