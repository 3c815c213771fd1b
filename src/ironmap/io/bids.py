"""Find a participant's inputs in a BIDS dataset and in derivative mask datasets.

A light, glob-based indexer rather than pybids: it only needs the ``anat`` folder of each
subject/session, it costs milliseconds for hundreds of subjects (pybids spends ~8 s per 200
subjects indexing metadata), and it reads derivative mask datasets whose layout pybids does not
always index (``_dseg`` with a dataset-level ``dseg.tsv``, FreeSurfer ``mri/aseg`` folders).

Discovery never raises for one participant's problem: problems are collected in
:attr:`SubjectInputs.problems` so that the participant fails alone, with a clear message.
Image headers are read only later, per participant (:func:`resolve_mask_space`).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ironmap.core.metadata.plausibility import sequence_problems
from ironmap.io.nifti import ImageError, load_image
from ironmap.io.readers import InputError, read_json_object
from ironmap.io.tables import read_tsv

log = logging.getLogger(__name__)

IMAGE_EXTS = (".nii.gz", ".nii")
#: mask spaces tried, in order, when a mask has no ``SpatialReference`` (the seed study outlined
#: lesions and deep grey matter on FLAIR)
SPACE_ORDER = ("FLAIR", "T1w", "MEGRE")


@dataclass(frozen=True)
class EchoFile:
    """One magnitude echo of a multi-echo GRE series."""

    path: Path
    echo_time: float  # s
    label: str  # value of the ``echo-`` entity ("" when absent)


@dataclass(frozen=True)
class MaskFile:
    """A label map or binary mask from a derivative dataset."""

    path: Path
    kind: str  # "dseg" | "lesion"
    labels: tuple[tuple[int, str], ...] = ()  # (index, name) for label maps
    reference: Path | None = None  # resolved SpatialReference target, if any
    space: str | None = None  # "T1w" | "FLAIR" | "MEGRE" when known from the name/origin
    dataset: Path | None = None  # derivative dataset root


@dataclass(frozen=True)
class SubjectInputs:
    """Everything one participant (and session) needs, found by :func:`discover`."""

    participant_id: str  # "sub-001"
    session_id: str | None  # "ses-1" or None
    echoes: tuple[EchoFile, ...] = ()
    t1w: Path | None = None
    flair: Path | None = None
    dsegs: tuple[MaskFile, ...] = ()
    lesion_masks: tuple[MaskFile, ...] = ()
    problems: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        """``sub-001`` or ``sub-001_ses-1``."""
        return f"{self.participant_id}_{self.session_id}" if self.session_id else \
            self.participant_id

    def input_files(self) -> list[Path]:
        """Every file whose content defines this participant's results (for hashing).

        Returns
        -------
        list of pathlib.Path
            Echoes, T1w, FLAIR, deep-GM and lesion masks (those present), in that order.
        """
        files: list[Path] = []
        for p in [*(e.path for e in self.echoes), self.t1w, self.flair,
                  *(m.path for m in (*self.dsegs, *self.lesion_masks))]:
            if p is not None:
                files.append(p)
        return files


# ------------------------------------------------------------------------------------------
# file names and sidecars
# ------------------------------------------------------------------------------------------

def parse_entities(name: str) -> tuple[dict[str, str], str, str]:
    """Split a BIDS file name into entities, suffix and extension.

    Parameters
    ----------
    name : str
        A file name (no folder).

    Returns
    -------
    entities : dict of str to str
        Entity -> label, in order.
    suffix : str
        The BIDS suffix (``MEGRE``, ``T1w``, ...).
    extension : str
        ``.nii.gz``, ``.nii``, ``.json``, ``.tsv``, ``.mgz`` or ``""``.

    Examples
    --------
    >>> parse_entities("sub-01_echo-2_part-mag_MEGRE.nii.gz")
    ({'sub': '01', 'echo': '2', 'part': 'mag'}, 'MEGRE', '.nii.gz')
    """
    ext = ""
    for e in (".nii.gz", ".nii", ".json", ".tsv", ".mgz"):
        if name.endswith(e):
            ext, name = e, name[: -len(e)]
            break
    parts = name.split("_")
    entities: dict[str, str] = {}
    suffix = ""
    for part in parts:
        if "-" in part:
            key, _, value = part.partition("-")
            entities[key] = value
        else:
            suffix = part
    return entities, suffix, ext


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path)


def inherited_metadata(image: Path, root: Path) -> dict[str, Any]:
    """Sidecar metadata of ``image`` with BIDS inheritance.

    JSON files with the same suffix whose entities are a subset of the image's entities are
    merged from the dataset root down to the image's folder; deeper and more specific files
    override (e.g. ``MEGRE.json`` at the top level, ``EchoTime`` in the file's own sidecar).

    Parameters
    ----------
    image : pathlib.Path
        The image.
    root : pathlib.Path
        The dataset root.

    Returns
    -------
    dict
        The merged metadata (``{}`` when there is none).
    """
    ents, suffix, _ = parse_entities(image.name)
    folders = [image.parent]
    while folders[-1] != root and root in folders[-1].parents:
        folders.append(folders[-1].parent)
    meta: dict[str, Any] = {}
    for folder in reversed(folders):
        candidates = []
        for js in folder.glob(f"*{suffix}.json"):
            jents, jsuffix, _ = parse_entities(js.name)
            if jsuffix == suffix and all(ents.get(k) == v for k, v in jents.items()):
                candidates.append((len(jents), js.name, js))
        for _, _, js in sorted(candidates):
            meta.update(_read_json(js))
    return meta


def _images(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for ext in IMAGE_EXTS for p in folder.glob(pattern + ext))


# ------------------------------------------------------------------------------------------
# raw dataset
# ------------------------------------------------------------------------------------------

def read_participants(bids_dir: Path) -> set[str] | None:
    """Participant ids listed in ``participants.tsv``.

    Parameters
    ----------
    bids_dir : pathlib.Path
        BIDS_DIR.

    Returns
    -------
    set of str or None
        The ``participant_id`` values; None when the file is absent.

    Raises
    ------
    InputError
        Naming the file, when it has no ``participant_id`` column.
    """
    path = Path(bids_dir) / "participants.tsv"
    if not path.exists():
        return None
    table = read_tsv(path)
    if "participant_id" not in table.columns:
        raise InputError(f"{path}: no participant_id column")
    return {str(p) for p in table["participant_id"]}


def _subject_sessions(bids_dir: Path, participants: tuple[str, ...],
                      sessions: tuple[str, ...]) -> list[tuple[str, str | None, Path]]:
    subs = sorted(p.name for p in bids_dir.glob("sub-*") if p.is_dir())
    if participants:
        wanted = {f"sub-{p.removeprefix('sub-')}" for p in participants}
        missing = wanted - set(subs)
        if missing:
            raise InputError(f"{bids_dir}: participant(s) not found: {', '.join(sorted(missing))}")
        subs = [s for s in subs if s in wanted]
    wanted_ses = {f"ses-{s.removeprefix('ses-')}" for s in sessions}
    out: list[tuple[str, str | None, Path]] = []
    for sub in subs:
        ses_dirs = sorted(p for p in (bids_dir / sub).glob("ses-*") if p.is_dir())
        if not ses_dirs:
            out.append((sub, None, bids_dir / sub / "anat"))
        for ses in ses_dirs:
            if not wanted_ses or ses.name in wanted_ses:
                out.append((sub, ses.name, ses / "anat"))
    return out


def find_echoes(anat: Path, root: Path) -> tuple[tuple[EchoFile, ...], list[str]]:
    """Magnitude MEGRE echoes of one ``anat`` folder, ordered by ``EchoTime``.

    Files with ``part-mag`` or without a ``part`` entity are used; phase/real/imag parts are
    ignored.

    Parameters
    ----------
    anat : pathlib.Path
        The participant's (or session's) ``anat`` folder.
    root : pathlib.Path
        The dataset root (for inherited sidecars).

    Returns
    -------
    echoes : tuple of EchoFile
        The echoes with their ``EchoTime`` in s, ascending.
    problems : list of str
        Missing or duplicate ``EchoTime`` values, each naming the file.
    """
    problems: list[str] = []
    echoes: list[EchoFile] = []
    for path in _images(anat, "*_MEGRE"):
        ents, _, _ = parse_entities(path.name)
        if ents.get("part", "mag") != "mag":
            continue
        try:
            meta = inherited_metadata(path, root)
        except InputError as exc:
            problems.append(str(exc))
            continue
        te = meta.get("EchoTime")
        if isinstance(te, bool) or not isinstance(te, int | float) or not np.isfinite(te) \
                or te <= 0:
            problems.append(f"{path}: no valid EchoTime in its JSON sidecar (got {te!r})")
            continue
        if te > 1.0:
            problems.append(f"{path}: EchoTime {te} looks like milliseconds; BIDS uses seconds")
            continue
        errors, warnings = sequence_problems(meta)
        for text in warnings:
            log.warning("%s: %s", path, text)
        if errors:
            problems.append(f"{path}: {'; '.join(errors)}")
            continue
        echoes.append(EchoFile(path, float(te), ents.get("echo", "")))
    echoes.sort(key=lambda e: e.echo_time)
    tes = [e.echo_time for e in echoes]
    if len(set(tes)) != len(tes):
        problems.append(f"{anat}: several MEGRE echoes share one EchoTime {tes}")
    labels = [e.label for e in echoes]
    if all(lbl.isdigit() for lbl in labels) and labels != sorted(labels, key=int):
        log.warning("%s: echo labels %s are not in EchoTime order; using EchoTime order",
                    anat, labels)
    return tuple(echoes), problems


def _single(anat: Path, suffix: str, problems: list[str]) -> Path | None:
    found = [p for p in _images(anat, f"*_{suffix}")
             if parse_entities(p.name)[0].get("part", "mag") == "mag"]
    if len(found) > 1:
        plain = [p for p in found if set(parse_entities(p.name)[0]) <= {"sub", "ses"}]
        if len(plain) == 1:
            return plain[0]
        problems.append(f"{anat}: several {suffix} images ({', '.join(p.name for p in found)}); "
                        "keep one or use --participant-label/--session-label")
        return None
    return found[0] if found else None


def discover(bids_dir: str | os.PathLike, *, participant_label: tuple[str, ...] = (),
             session_label: tuple[str, ...] = (),
             masks: tuple[str | os.PathLike, ...] = ()) -> list[SubjectInputs]:
    """Find every selected participant/session and its inputs.

    Parameters
    ----------
    bids_dir : path
        Raw BIDS dataset.
    participant_label, session_label : tuple of str
        Selection (with or without ``sub-``/``ses-``); empty = all.
    masks : tuple of path
        Derivative datasets holding ``_dseg`` and ``_label-lesion_mask`` images.

    Returns
    -------
    list of SubjectInputs
        Sorted by participant and session; per-participant problems are in ``.problems``.
    """
    root = Path(bids_dir).resolve()
    listed = read_participants(root)
    mask_roots = [Path(m).resolve() for m in masks]
    for m in mask_roots:
        if not m.is_dir():
            raise InputError(f"{m}: mask dataset folder not found")
    out = []
    for sub, ses, anat in _subject_sessions(root, participant_label, session_label):
        problems: list[str] = []
        if listed is not None and sub not in listed:
            problems.append(f"{sub} is missing from {root / 'participants.tsv'}")
        echoes, echo_problems = find_echoes(anat, root) if anat.is_dir() else ((), [])
        problems += echo_problems
        if not echoes and not echo_problems:
            problems.append(f"{anat}: no magnitude MEGRE echoes (*_MEGRE.nii[.gz]) found")
        t1w = _single(anat, "T1w", problems) if anat.is_dir() else None
        flair = _single(anat, "FLAIR", problems) if anat.is_dir() else None
        dsegs: list[MaskFile] = []
        lesions: list[MaskFile] = []
        for mroot in mask_roots:
            try:
                d, les = find_masks(mroot, sub, ses, raw_root=root)
            except InputError as exc:
                problems.append(str(exc))
                continue
            dsegs += d
            lesions += les
        if flair is None and (lesions or any("FLAIR" in p for p in problems)):
            problems.insert(0, f"{anat}: no FLAIR image (*_FLAIR.nii[.gz]), but lesion masks "
                               "exist: lesions and T2 lesion load are measured on the FLAIR")
        out.append(SubjectInputs(sub, ses, echoes, t1w, flair, tuple(dsegs), tuple(lesions),
                                 tuple(problems)))
    return out


# ------------------------------------------------------------------------------------------
# derivative masks
# ------------------------------------------------------------------------------------------

def _dataset_links(mroot: Path) -> dict[str, str]:
    desc = mroot / "dataset_description.json"
    if not desc.exists():
        return {}
    return dict(_read_json(desc).get("DatasetLinks", {}) or {})


def resolve_reference(ref: Any, mroot: Path, raw_root: Path, image: Path) -> Path:
    """Resolve a ``SpatialReference`` value to an existing file.

    ``bids:NAME:path`` goes through the derivative's ``DatasetLinks[NAME]`` (``raw`` defaults
    to the raw dataset); ``bids::path`` is tried in the derivative and then the raw dataset;
    a plain relative path against the derivative root, the raw root and the mask's folder.

    Parameters
    ----------
    ref : str or dict
        The sidecar's ``SpatialReference`` (a dict: its ``VolumeReference`` or first value).
    mroot : pathlib.Path
        The derivative dataset holding the mask.
    raw_root : pathlib.Path
        The raw BIDS dataset.
    image : pathlib.Path
        The mask (named in errors; its folder is searched).

    Returns
    -------
    pathlib.Path
        The referenced image.

    Raises
    ------
    InputError
        Naming the mask, when the reference is unusable or names no existing file.
    """
    if isinstance(ref, dict):
        ref = ref.get("VolumeReference") or next(iter(ref.values()), None)
    if not isinstance(ref, str) or not ref:
        raise InputError(f"{image}: unusable SpatialReference {ref!r}")
    bases: list[Path]
    m = re.match(r"^bids:([^:]*):(.*)$", ref)
    if m:
        name, rel = m.group(1), m.group(2).lstrip("/")
        if name:
            links = _dataset_links(mroot)
            if name in links:
                link = links[name].removeprefix("file://")
                bases = [(mroot / link).resolve()]
            elif name == "raw":
                bases = [raw_root]
            else:
                raise InputError(f"{image}: SpatialReference {ref!r} names dataset {name!r}, "
                                 f"which is not in {mroot}/dataset_description.json DatasetLinks")
        else:
            bases = [mroot, raw_root]
    else:
        rel = ref
        bases = [mroot, raw_root, image.parent]
    for base in bases:
        cand = (base / rel).resolve()
        if cand.exists():
            return cand
    raise InputError(f"{image}: SpatialReference {ref!r} points to a file that does not exist "
                     f"(looked in {', '.join(str(b) for b in bases)})")


def _read_labels(tsv: Path) -> tuple[tuple[int, str], ...]:
    table = read_tsv(tsv)
    if not {"index", "name"} <= set(table.columns):
        raise InputError(f"{tsv}: a dseg.tsv needs 'index' and 'name' columns")
    return tuple((int(i), str(n)) for i, n in zip(table["index"], table["name"], strict=True))


def _dseg_labels(path: Path, mroot: Path) -> tuple[tuple[int, str], ...]:
    """Labels of a ``_dseg`` image: its own ``.tsv``, else an inherited ``dseg.tsv``."""
    own = path.with_name(parse_base(path) + ".tsv")
    if own.exists():
        return _read_labels(own)
    ents, _, _ = parse_entities(path.name)
    folder = path.parent
    while True:
        cands = []
        for tsv in folder.glob("*dseg.tsv"):
            tents, tsuffix, _ = parse_entities(tsv.name)
            if tsuffix == "dseg" and all(ents.get(k) == v for k, v in tents.items()):
                cands.append((-len(tents), tsv.name, tsv))
        if cands:
            return _read_labels(sorted(cands)[0][2])
        if folder == mroot or mroot not in folder.parents:
            break
        folder = folder.parent
    return ()


def find_masks(mroot: Path, sub: str, ses: str | None, *,
               raw_root: Path) -> tuple[list[MaskFile], list[MaskFile]]:
    """Deep-GM label maps and lesion masks of one participant in a derivative dataset.

    Recognised: ``*_dseg.nii[.gz]`` with a per-file or dataset-level ``dseg.tsv`` (a label
    map without one is read with FreeSurfer ``aseg`` numbers), ``*_label-lesion_mask.nii[.gz]``,
    and FreeSurfer/FastSurfer subject folders (``sub-X/mri/aseg*.nii.gz``, T1w world).

    Parameters
    ----------
    mroot : pathlib.Path
        The derivative dataset (``--masks``).
    sub : str
        ``sub-X``.
    ses : str or None
        ``ses-Y``, or None without sessions.
    raw_root : pathlib.Path
        The raw BIDS dataset (for spatial references).

    Returns
    -------
    dsegs : list of MaskFile
        Label maps with their label tables.
    lesions : list of MaskFile
        Lesion masks.
    """
    anat = mroot / sub / ses / "anat" if ses else mroot / sub / "anat"
    dsegs: list[MaskFile] = []
    lesions: list[MaskFile] = []
    for path in _images(anat, "*_dseg") if anat.is_dir() else []:
        dsegs.append(_mask_file(path, "dseg", mroot, raw_root))
    for path in _images(anat, "*_label-lesion_mask") if anat.is_dir() else []:
        lesions.append(_mask_file(path, "lesion", mroot, raw_root))
    fs_dir = mroot / sub / "mri"
    if not dsegs and fs_dir.is_dir():
        for path in sorted(p for p in fs_dir.glob("*aseg*") if p.name.endswith(IMAGE_EXTS)):
            dsegs.append(MaskFile(path, "dseg", (), None, "T1w", mroot))
            break
    return dsegs, lesions


def _mask_file(path: Path, kind: str, mroot: Path, raw_root: Path) -> MaskFile:
    sidecar = path.with_name(parse_base(path) + ".json")
    meta = _read_json(sidecar) if sidecar.exists() else {}
    ref = None
    if meta.get("SpatialReference"):
        ref = resolve_reference(meta["SpatialReference"], mroot, raw_root, path)
    labels = _dseg_labels(path, mroot) if kind == "dseg" else ()
    return MaskFile(path, kind, labels, ref, None, mroot)


def parse_base(path: Path) -> str:
    """File name without its image extension.

    Parameters
    ----------
    path : pathlib.Path
        An image file.

    Returns
    -------
    str
        The name without ``.nii.gz``, ``.nii`` or ``.mgz``.
    """
    name = path.name
    for ext in (*IMAGE_EXTS, ".mgz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def resolve_mask_space(mask: MaskFile, subject: SubjectInputs,
                       atol: float = 1e-3) -> str:
    """The series (``FLAIR``, ``T1w`` or ``MEGRE``) whose world frame a mask is drawn in.

    From the resolved ``SpatialReference`` when there is one, else from the first image (in
    :data:`SPACE_ORDER`) whose grid -- shape and affine -- equals the mask's.

    Parameters
    ----------
    mask : MaskFile
        The mask or label map.
    subject : SubjectInputs
        The participant's images.
    atol : float, optional
        Tolerance on the affines' entries (mm).

    Returns
    -------
    str
        ``FLAIR``, ``T1w`` or ``MEGRE``.

    Raises
    ------
    InputError
        When the reference is none of the participant's images, or no grid matches.
    """
    series = {"FLAIR": subject.flair, "T1w": subject.t1w,
              "MEGRE": subject.echoes[0].path if subject.echoes else None}
    series = {k: v for k, v in series.items() if v is not None}
    if mask.space:
        return mask.space
    if mask.reference is not None:
        for name, path in series.items():
            if Path(path).resolve() == mask.reference:
                return name
        if any(e.path.resolve() == mask.reference for e in subject.echoes):
            return "MEGRE"
        shape, affine = _header(mask.reference)  # e.g. a copy of the T1w in the derivative
        what = f"SpatialReference {mask.reference}"
    else:
        img = load_image(mask.path)
        shape, affine = tuple(int(s) for s in img.shape[:3]), img.affine
        what = f"mask grid {shape}"
    for name in SPACE_ORDER:
        if name in series:
            hdr = _header(series[name])
            if hdr[0] == shape and np.allclose(hdr[1], affine, atol=atol):
                return name
    shapes = ", ".join(f"{k} {_header(v)[0]}" for k, v in series.items())
    raise InputError(f"{mask.path}: {what} matches the grid of no image of {subject.label} "
                     f"({shapes}){'' if mask.reference else ' and it has no SpatialReference'}")


def _header(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    try:
        import nibabel as nib

        img = nib.load(str(path))
    except Exception as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    return tuple(int(s) for s in img.shape[:3]), img.affine
