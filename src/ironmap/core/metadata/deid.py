"""De-identification of converted MRI metadata (pure: dicts, strings and bytes in, out).

The field list follows the DICOM PS3.15 Annex E *Basic Application Level Confidentiality
Profile* (Table E.1-1). Each entry names the BIDS sidecar key that dcm2niix writes, the DICOM
attribute it comes from, the action of the Basic Profile (``X`` remove, ``Z`` replace by an
empty value, ``U`` replace the UID, ``C`` clean) and what ironmap does with it. ironmap always
*removes* the key from sidecars (``X``), except for two descriptors kept under the profile's
*Clean Descriptors Option* (``SeriesDescription``, ``ProtocolName``, needed to recognise series),
from which every identifying value found in the headers and every date is cut out. Under the
*Retain Patient Characteristics Option* only the age in whole years (capped at
:data:`MAX_AGE_YEARS`) and the sex reach ``participants.tsv``; never a sidecar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, NamedTuple


class Field(NamedTuple):
    """One attribute of the PS3.15 Basic Profile as it appears in a dcm2niix sidecar."""

    key: str  # BIDS sidecar key (dcm2niix) and DICOM keyword
    tag: str  # DICOM tag (group,element)
    action: str  # Basic Profile action in PS3.15 Table E.1-1
    identifying: bool  # its value is collected for the leak scan and text cleaning


#: Attributes removed from every sidecar (PS3.15 Table E.1-1, Basic Profile actions).
REMOVED_FIELDS: tuple[Field, ...] = (
    Field("PatientName", "(0010,0010)", "Z", True),
    Field("PatientID", "(0010,0020)", "Z", True),
    Field("OtherPatientIDs", "(0010,1000)", "X", True),
    Field("OtherPatientNames", "(0010,1001)", "X", True),
    Field("PatientBirthDate", "(0010,0030)", "Z", True),
    Field("PatientBirthTime", "(0010,0032)", "X", False),
    Field("PatientAddress", "(0010,1040)", "X", True),
    Field("PatientComments", "(0010,4000)", "X", False),
    Field("PatientSex", "(0010,0040)", "Z", False),
    Field("PatientAge", "(0010,1010)", "X", False),
    Field("PatientSize", "(0010,1020)", "X", False),
    Field("PatientWeight", "(0010,1030)", "X", False),
    Field("EthnicGroup", "(0010,2160)", "X", False),
    Field("AccessionNumber", "(0008,0050)", "Z", True),
    Field("StudyID", "(0020,0010)", "Z", True),
    Field("StudyInstanceUID", "(0020,000D)", "U", False),
    Field("SeriesInstanceUID", "(0020,000E)", "U", False),
    Field("SOPInstanceUID", "(0008,0018)", "U", False),
    Field("FrameOfReferenceUID", "(0020,0052)", "U", False),
    Field("StudyDate", "(0008,0020)", "Z", True),
    Field("SeriesDate", "(0008,0021)", "X", True),
    Field("AcquisitionDate", "(0008,0022)", "X", True),
    Field("ContentDate", "(0008,0023)", "Z", True),
    Field("AcquisitionDateTime", "(0008,002A)", "X", False),
    Field("StudyTime", "(0008,0030)", "Z", False),
    Field("SeriesTime", "(0008,0031)", "X", False),
    Field("AcquisitionTime", "(0008,0032)", "X", False),
    Field("ContentTime", "(0008,0033)", "Z", False),
    Field("InstitutionName", "(0008,0080)", "X", True),
    Field("InstitutionAddress", "(0008,0081)", "X", True),
    Field("InstitutionalDepartmentName", "(0008,1040)", "X", True),
    Field("ReferringPhysicianName", "(0008,0090)", "Z", True),
    Field("PerformingPhysicianName", "(0008,1050)", "X", True),
    Field("NameOfPhysiciansReadingStudy", "(0008,1060)", "X", True),
    Field("OperatorsName", "(0008,1070)", "X", True),
    Field("RequestingPhysician", "(0032,1032)", "X", True),
    Field("StationName", "(0008,1010)", "X", True),
    Field("DeviceSerialNumber", "(0018,1000)", "X", True),
    Field("SoftwareVersions", "(0018,1020)", "X", False),
    Field("StudyDescription", "(0008,1030)", "X", False),
    Field("ImageComments", "(0020,4000)", "X", False),
    Field("RequestedProcedureDescription", "(0032,1060)", "X", False),
    Field("PerformedProcedureStepDescription", "(0040,0254)", "X", False),
    Field("ProcedureStepDescription", "(0040,0254)", "X", False),  # dcm2niix's name for it
)

#: Descriptors kept under the Clean Descriptors Option (identifying values and dates cut out).
CLEANED_FIELDS: tuple[Field, ...] = (
    Field("SeriesDescription", "(0008,103E)", "X (C with Clean Descriptors)", False),
    Field("ProtocolName", "(0018,1030)", "X (C with Clean Descriptors)", False),
)

#: Keys dcm2niix may add that are not attributes but can echo header text.
EXTRA_REMOVED_KEYS = ("BidsGuess", "DateTime", "FrameAcquisitionDateTime")

#: Ages at or above this value are written as this value (89 means "89 or older").
MAX_AGE_YEARS = 89

_MIN_IDENTIFIER_LENGTH = 4
_MIN_NAME_PART = 3
_PERSON_NAME_KEYS = ("PatientName", "OtherPatientNames", "PhysicianName", "PhysiciansReadingStudy",
                     "OperatorsName", "RequestingPhysician")
_STOPWORDS = frozenset({"none", "anonymous", "anonymized", "unknown", "n/a", "null", "test"})
_DATE_RE = re.compile(r"(?<!\d)(19|20)\d{2}[-./]?(0[1-9]|1[0-2])[-./]?(0[1-9]|[12]\d|3[01])(?!\d)")
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)


def removed_keys() -> frozenset[str]:
    """All sidecar keys dropped by :func:`scrub_sidecar` (besides ``*UID`` and ``*Date*``).

    Returns
    -------
    frozenset of str
        The keys.
    """
    return frozenset(f.key for f in REMOVED_FIELDS) | frozenset(EXTRA_REMOVED_KEYS)


def identifying_values(header: Mapping[str, Any]) -> list[str]:
    """Identifying strings of one DICOM header, for text cleaning and the leak scan.

    Parameters
    ----------
    header : mapping
        DICOM keyword -> value (strings, person names or ``YYYYMMDD`` dates).

    Returns
    -------
    list of str
        The values of the identifying fields of :data:`REMOVED_FIELDS`, person names also split
        into their components (3 letters or more; those shorter than 4 letters only match
        as whole words), dates in the spellings ``YYYYMMDD``, ``YYYY-MM-DD``, ``YYYY/MM/DD``,
        ``YYYY.MM.DD`` and ``DD.MM.YYYY``. Other values shorter than 4 characters and
        placeholders such as ``none`` are left out (they cannot be told apart from ordinary
        text). Longest first.
    """
    values: set[str] = set()
    for field in REMOVED_FIELDS:
        raw = header.get(field.key)
        if not field.identifying or raw is None:
            continue
        items = raw if isinstance(raw, list | tuple) else [raw]
        for item in items:
            text = str(item).strip()
            if field.key.endswith("Date"):
                values.update(_date_spellings(text))
                continue
            values.add(text)
            if field.key.endswith(_PERSON_NAME_KEYS):  # name components, 3 letters or more
                values.update(p for p in re.split(r"[\^ ]+", text)
                              if len(p) >= _MIN_NAME_PART and p.isalpha())
    good = {v for v in values if v.lower() not in _STOPWORDS and (
        len(v) >= _MIN_IDENTIFIER_LENGTH or (len(v) >= _MIN_NAME_PART and v.isalpha()))}
    return sorted(good, key=lambda v: (-len(v), v))


def _date_spellings(text: str) -> set[str]:
    digits = re.sub(r"\D", "", text)
    if len(digits) != 8:
        return {text} if text else set()
    y, m, d = digits[:4], digits[4:6], digits[6:]
    return {digits, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{d}.{m}.{y}"}


def clean_text(text: str, identifiers: Iterable[str] = (), *, dates: bool = True) -> str:
    """Cut identifying values (case-insensitive) out of free text.

    With ``dates``, date-like numbers (``YYYYMMDD``, ``YYYY-MM-DD``, ...) are cut as well.

    Parameters
    ----------
    text : str
        Free text (e.g. a series description).
    identifiers : iterable of str, optional
        Values to cut.
    dates : bool, optional
        Also cut date-like numbers.

    Returns
    -------
    str
        The text without them.
    """
    out = text
    for value in identifiers:
        out = re.sub(_pattern(value), "", out, flags=re.IGNORECASE)
    if dates:
        out = _DATE_RE.sub("", out)
    if out == text:
        return text
    return re.sub(r"[_\- ]{2,}", "_", out).strip(" _-^")


def _is_removed_key(key: str, removed: frozenset[str]) -> bool:
    return (key in removed or key.endswith("UID") or "Date" in key
            or key.startswith("Patient") and key != "PatientPosition")


def scrub_sidecar(sidecar: Mapping[str, Any], identifiers: Iterable[str] = ()) -> dict[str, Any]:
    """Return a de-identified copy of a dcm2niix JSON sidecar.

    Keys of :data:`REMOVED_FIELDS` and :data:`EXTRA_REMOVED_KEYS`, every key ending in ``UID``,
    every key containing ``Date`` and every ``Patient*`` key except ``PatientPosition`` are
    dropped; every identifying value is cut out of the remaining strings (also inside lists),
    and date-like numbers out of the descriptors of :data:`CLEANED_FIELDS`.

    Parameters
    ----------
    sidecar : mapping
        The sidecar.
    identifiers : iterable of str, optional
        Identifying values to cut.

    Returns
    -------
    dict
        The copy.
    """
    removed = removed_keys()
    descriptors = {f.key for f in CLEANED_FIELDS}
    idents = list(identifiers)
    out: dict[str, Any] = {}
    for key, value in sidecar.items():
        if _is_removed_key(key, removed):
            continue
        out[key] = _clean_value(value, idents, key in descriptors)
    return out


def _clean_value(value: Any, identifiers: list[str], dates: bool) -> Any:
    if isinstance(value, str):
        return clean_text(value, identifiers, dates=dates)
    if isinstance(value, list):
        return [_clean_value(v, identifiers, dates) for v in value]
    if isinstance(value, dict):
        return {k: _clean_value(v, identifiers, dates) for k, v in value.items()}
    return value


def age_in_years(patient_age: str | None = None, birth_date: str | None = None,
                 study_date: str | None = None) -> int | None:
    """Age in whole years from DICOM ``PatientAge`` (``nnnY/M/W/D``) or the two dates.

    ``PatientAge`` wins when both are given. Ages are floored to whole years and capped at
    :data:`MAX_AGE_YEARS`.

    Parameters
    ----------
    patient_age : str, optional
        DICOM ``PatientAge``.
    birth_date, study_date : str, optional
        DICOM dates ``YYYYMMDD``.

    Returns
    -------
    int or None
        Years; None when neither source is usable.
    """
    years: float | None = None
    match = _AGE_RE.match(patient_age or "")
    if match:
        n, unit = int(match.group(1)), match.group(2).upper()
        years = n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[unit]
    else:
        born, seen = _parse_date(birth_date), _parse_date(study_date)
        if born and seen and seen >= born:
            years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    if years is None:
        return None
    return min(int(years), MAX_AGE_YEARS)


def _parse_date(text: str | None) -> date | None:
    digits = re.sub(r"\D", "", text or "")
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def sex_code(patient_sex: str | None) -> str | None:
    """DICOM ``PatientSex`` -> BIDS ``M``/``F``/``O``.

    Parameters
    ----------
    patient_sex : str or None
        ``M``, ``F`` or ``O``.

    Returns
    -------
    str or None
        The code; None when unknown.
    """
    code = (patient_sex or "").strip().upper()[:1]
    return code if code in ("M", "F", "O") else None


def _pattern(value: str) -> str:
    """Regex for one identifying value; numbers only match as whole numbers."""
    if re.fullmatch(r"[\d\-./]+", value):
        return r"(?<![\d.])" + re.escape(value) + r"(?!\d)"
    if len(value) < _MIN_IDENTIFIER_LENGTH:  # short name part: whole words only
        return r"(?<![A-Za-z])" + re.escape(value) + r"(?![A-Za-z])"
    return re.escape(value)


def find_identifiers(data: bytes, identifiers: Iterable[str]) -> list[str]:
    """Identifying values found in ``data`` (case-insensitive; numbers as whole numbers).

    Parameters
    ----------
    data : bytes
        File content or header bytes.
    identifiers : iterable of str
        Values to look for.

    Returns
    -------
    list of str
        The values found.
    """
    found = []
    for value in identifiers:
        pattern = _pattern(value).encode("utf-8", "replace")
        if re.search(pattern, data, flags=re.IGNORECASE):
            found.append(value)
    return found
