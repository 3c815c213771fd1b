"""Import brain volumes from other tools into ironmap's volume table.

Every importer returns one row (a dict) with the columns of ``sub-X_desc-volumes.tsv``
(:data:`ironmap.core.regions.tissue_volumes.VOLUME_COLUMNS`: ``gm_cm3``, ``cortical_gm_cm3``,
``deep_gm_cm3``, ``wm_cm3``, ``csf_cm3``, ``brain_cm3``, ``scaling_factor`` and ``*_norm_cm3`` =
raw x ``scaling_factor``), NaN where the source has no value. Definitions follow ironmap's own
segmentation: ``cortical_gm`` is grey matter outside the deep nuclei (cerebellar cortex
included), ``brain`` is GM + WM, ``scaling_factor`` is the determinant of a subject -> template
affine (SIENAX V-scaling). The mapping of each source is in :data:`SOURCE_MAPPINGS` and
``docs/volumes.md``.

* :func:`read_aseg_stats` - FreeSurfer / FastSurfer ``stats/aseg.stats``;
* :func:`read_synthseg_csv` - SynthSeg ``--vol`` CSV (one row per image);
* :func:`read_sienax_report` - FSL SIENAX ``report.sienax``;
* :func:`read_first_labels` - FSL FIRST ``*_all_fast_firstseg.nii.gz`` (deep GM only);
* :func:`volumes_from_participants` - volume columns already in ``participants.tsv``;
* :func:`combine_volume_rows` - fill a row's gaps from other sources (e.g. SIENAX + FIRST).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.regions.tissue_volumes import (
    NORMALISED,
    VOLUME_COLUMNS,
    normalise_volumes,
    voxel_volume_cm3,
)
from ironmap.io.nifti import load_image
from ironmap.units import mm3_to_cm3

#: FreeSurfer's eTIV is ``ETIV_SCALE_CM3 / det(talairach.xfm)`` (``eTIV_scale_factor`` of
#: mri_segstats, Buckner et al. 2004), so ``ETIV_SCALE_CM3 / eTIV`` recovers the determinant
#: of the subject -> MNI305 affine, a SIENAX-style scaling factor.
ETIV_SCALE_CM3 = 1948.106

#: FreeSurfer/FIRST (CMA) label numbers of the deep grey-matter structures counted as deep GM:
#: thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens (left, right).
FIRST_DEEP_GM_LABELS: tuple[int, ...] = (10, 11, 12, 13, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58)

#: Documented mapping of every source (ironmap column -> source quantity).
SOURCE_MAPPINGS: dict[str, dict[str, str]] = {
    "aseg.stats": {
        "gm_cm3": "TotalGrayVol",
        "deep_gm_cm3": "SubCortGrayVol",
        "cortical_gm_cm3": "TotalGrayVol - SubCortGrayVol (cerebral + cerebellar cortex)",
        "wm_cm3": "CerebralWhiteMatterVol + Left/Right-Cerebellum-White-Matter (table rows)",
        "csf_cm3": "n/a (aseg has no sulcal CSF)",
        "brain_cm3": "gm_cm3 + wm_cm3",
        "scaling_factor": f"{ETIV_SCALE_CM3} / eTIV (= det of talairach.xfm)",
    },
    "synthseg": {
        "cortical_gm_cm3": "left/right cerebral cortex + left/right cerebellum cortex",
        "deep_gm_cm3": "thalamus + caudate + putamen + pallidum + hippocampus + amygdala + "
                       "accumbens area + ventral DC (left and right)",
        "gm_cm3": "cortical_gm_cm3 + deep_gm_cm3",
        "wm_cm3": "left/right cerebral white matter + left/right cerebellum white matter",
        "csf_cm3": "csf + ventricles when a 'csf' column exists, else n/a",
        "brain_cm3": "gm_cm3 + wm_cm3",
        "scaling_factor": f"{ETIV_SCALE_CM3} / total intracranial (approximate)",
    },
    "sienax": {
        "gm_cm3": "GREY (unnormalised)", "cortical_gm_cm3": "pgrey (unnormalised)",
        "deep_gm_cm3": "GREY - pgrey", "wm_cm3": "WHITE (unnormalised)",
        "csf_cm3": "n/a (report has ventricular CSF only)", "brain_cm3": "BRAIN (unnormalised)",
        "scaling_factor": "VSCALING",
    },
    "first": {"deep_gm_cm3": "voxels of labels " + ", ".join(map(str, FIRST_DEEP_GM_LABELS))},
}


class VolumeImportError(ValueError):
    """A volume file cannot be read or lacks a required value (message names the file)."""


def _row(volumes: dict[str, float], factor: float) -> dict[str, float]:
    """Complete row: every VOLUME_COLUMNS key, NaN where unknown, ``*_norm`` = raw x factor."""
    row = {k: float(v) if v is not None else math.nan for k, v in volumes.items()}
    row = normalise_volumes(row, factor if factor is not None else math.nan)
    return {c: float(row.get(c, math.nan)) for c in VOLUME_COLUMNS}


# --------------------------------------------------------------------------- FreeSurfer
_MEASURE = re.compile(r"^#\s*Measure\s+([^,]+),\s*([^,]+),\s*([^,]+),\s*([-+0-9.eE]+),\s*(\S+)")


def read_aseg_measures(path: str | os.PathLike) -> tuple[dict[str, float], pd.DataFrame]:
    """Measures and structure table of a FreeSurfer ``aseg.stats`` file.

    Parameters
    ----------
    path : path-like
        ``aseg.stats``.

    Returns
    -------
    measures : dict of str to float
        Keyed by their second field (``BrainSegVol``, ``eTIV``, ...), values in the file's
        units (mm^3 for volumes).
    table : pandas.DataFrame
        The ``# ColHeaders`` columns (``Index SegId NVoxels Volume_mm3 StructName ...``).

    Raises
    ------
    VolumeImportError
        Naming the file, when it is missing or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeImportError(f"{p}: file not found")
    measures: dict[str, float] = {}
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in p.read_text().splitlines():
        m = _MEASURE.match(line)
        if m:
            measures[m.group(2).strip()] = float(m.group(4))
        elif line.startswith("# ColHeaders"):
            header = line.split()[2:]
        elif line.strip() and not line.startswith("#"):
            rows.append(line.split())
    if not measures:
        raise VolumeImportError(f"{p}: no '# Measure' lines; not a FreeSurfer aseg.stats file")
    table = pd.DataFrame([r[:len(header)] for r in rows], columns=header) if header else \
        pd.DataFrame(columns=["StructName", "Volume_mm3"])
    return measures, table


def read_aseg_stats(path: str | os.PathLike) -> dict[str, float]:
    """FreeSurfer / FastSurfer ``aseg.stats`` -> one volume row (cm³).

    The mapping is in :data:`SOURCE_MAPPINGS` ``["aseg.stats"]``.

    Parameters
    ----------
    path : path-like
        ``aseg.stats``.

    Returns
    -------
    dict of str to float
        The columns of :data:`ironmap.core.regions.tissue_volumes.VOLUME_COLUMNS` in cm³ (NaN where
        absent).

    Raises
    ------
    VolumeImportError
        Missing file, or none of ``TotalGrayVol``, ``CerebralWhiteMatterVol``, ``eTIV``.
    """
    measures, table = read_aseg_measures(path)
    if not {"TotalGrayVol", "CerebralWhiteMatterVol", "eTIV"} & set(measures):
        raise VolumeImportError(f"{path}: none of TotalGrayVol, CerebralWhiteMatterVol, eTIV "
                                "found in the '# Measure' lines")

    def cm3(key):
        return mm3_to_cm3(measures[key]) if key in measures else math.nan

    struct = dict(zip(table.get("StructName", []), pd.to_numeric(
        table.get("Volume_mm3", pd.Series(dtype=float)), errors="coerce"), strict=False))
    cereb_wm = sum(struct.get(f"{h}-Cerebellum-White-Matter", 0.0) for h in ("Left", "Right"))
    gm, deep = cm3("TotalGrayVol"), cm3("SubCortGrayVol")
    wm = cm3("CerebralWhiteMatterVol") + mm3_to_cm3(cereb_wm)
    etiv = cm3("eTIV")
    factor = ETIV_SCALE_CM3 / etiv if etiv > 0 else math.nan
    return _row({"gm_cm3": gm, "cortical_gm_cm3": gm - deep, "deep_gm_cm3": deep,
                 "wm_cm3": wm, "csf_cm3": math.nan, "brain_cm3": gm + wm}, factor)


# --------------------------------------------------------------------------- SynthSeg
_SYNTH_DEEP = ("thalamus", "caudate", "putamen", "pallidum", "hippocampus", "amygdala",
               "accumbens area", "ventral DC")
_SYNTH_VENTRICLES = ("left lateral ventricle", "right lateral ventricle",
                     "left inferior lateral ventricle", "right inferior lateral ventricle",
                     "3rd ventricle", "4th ventricle")


def read_synthseg_csv(path: str | os.PathLike) -> pd.DataFrame:
    """SynthSeg ``--vol`` CSV -> one volume row per image (column ``subject`` kept).

    Volumes in the CSV are mm³ (1 mm segmentation); mapping in
    :data:`SOURCE_MAPPINGS` ``["synthseg"]``.

    Parameters
    ----------
    path : path-like
        The CSV written by ``mri_synthseg --vol``.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``subject`` and the volume columns in cm³.

    Raises
    ------
    VolumeImportError
        Naming the file, when it is missing or has none of the expected columns.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeImportError(f"{p}: file not found")
    df = pd.read_csv(p)
    df.columns = [str(c).strip() for c in df.columns]
    cols = {c.lower(): c for c in df.columns}
    needed = [f"{h} {s}" for h in ("left", "right") for s in
              ("cerebral cortex", "cerebral white matter", "cerebellum cortex",
               "cerebellum white matter")]
    missing = [c for c in needed if c not in cols]
    if missing:
        raise VolumeImportError(f"{p}: not a SynthSeg volume CSV (missing columns: "
                                f"{', '.join(missing)})")

    def total(names) -> np.ndarray:
        present = [cols[n.lower()] for n in names if n.lower() in cols]
        return mm3_to_cm3(df[present].apply(pd.to_numeric, errors="coerce").sum(axis=1))

    cortical = total([f"{h} {s}" for h in ("left", "right")
                      for s in ("cerebral cortex", "cerebellum cortex")])
    deep = total([f"{h} {s}" for h in ("left", "right") for s in _SYNTH_DEEP])
    wm = total([f"{h} {s}" for h in ("left", "right")
                for s in ("cerebral white matter", "cerebellum white matter")])
    nan = np.full(len(df), np.nan)
    csf = total(("csf", *_SYNTH_VENTRICLES)) if "csf" in cols else nan
    tiv = (mm3_to_cm3(pd.to_numeric(df[cols["total intracranial"]], errors="coerce"))
           if "total intracranial" in cols else nan)
    names = df[cols.get("subject", df.columns[0])].to_numpy()
    out = []
    for i in range(len(df)):
        factor = ETIV_SCALE_CM3 / tiv[i] if tiv[i] > 0 else math.nan
        row = _row({"gm_cm3": cortical[i] + deep[i], "cortical_gm_cm3": cortical[i],
                    "deep_gm_cm3": deep[i], "wm_cm3": wm[i], "csf_cm3": csf[i],
                    "brain_cm3": cortical[i] + deep[i] + wm[i]}, factor)
        out.append({"subject": names[i], **row})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- SIENAX
_SIENAX_LINE = re.compile(r"^\s*(pgrey|vcsf|GREY|WHITE|BRAIN)\s+([-+0-9.eE]+)\s+([-+0-9.eE]+)")


def read_sienax_report(path: str | os.PathLike) -> dict[str, float]:
    """FSL SIENAX ``report.sienax`` -> one volume row.

    The mapping is in :data:`SOURCE_MAPPINGS` ``["sienax"]``. The report's lines
    ``NAME normalised unnormalised`` (mm³) for ``pgrey``, ``vcsf``, ``GREY``, ``WHITE``,
    ``BRAIN`` and ``VSCALING factor`` are read; raw volumes are the unnormalised column,
    ``*_norm_cm3`` = raw x VSCALING (SIENAX's normalised column).

    Parameters
    ----------
    path : path-like
        ``report.sienax``.

    Returns
    -------
    dict of str to float
        The volume columns in cm³ and ``scaling_factor``.

    Raises
    ------
    VolumeImportError
        Naming the file, when it is missing or a needed line is absent.
    """
    p = Path(path)
    if not p.exists():
        raise VolumeImportError(f"{p}: file not found")
    values: dict[str, tuple[float, float]] = {}
    vscaling = math.nan
    for line in p.read_text().splitlines():
        if line.strip().upper().startswith("VSCALING"):
            vscaling = float(line.split()[1])
        m = _SIENAX_LINE.match(line)
        if m:
            values[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    if not {"GREY", "WHITE"} <= set(values) or not np.isfinite(vscaling):
        raise VolumeImportError(f"{p}: not a SIENAX report (needs VSCALING, GREY and WHITE "
                                "lines)")

    def raw(key):
        return mm3_to_cm3(values[key][1]) if key in values else math.nan

    gm, wm = raw("GREY"), raw("WHITE")
    brain = raw("BRAIN") if "BRAIN" in values else gm + wm
    return _row({"gm_cm3": gm, "cortical_gm_cm3": raw("pgrey"),
                 "deep_gm_cm3": gm - raw("pgrey"), "wm_cm3": wm, "csf_cm3": math.nan,
                 "brain_cm3": brain}, vscaling)


# --------------------------------------------------------------------------- FIRST
def read_first_labels(path: str | os.PathLike) -> dict[str, float]:
    """FSL FIRST label image -> a row with ``deep_gm_cm3`` (other volumes NaN).

    Deep GM is the sum of :data:`FIRST_DEEP_GM_LABELS` (brainstem, label 16, excluded);
    per-structure volumes: :func:`first_structure_volumes`.

    Parameters
    ----------
    path : path-like
        The FIRST label image (``*_all_fast_firstseg.nii.gz``).

    Returns
    -------
    dict of str to float
        The volume columns; only ``deep_gm_cm3`` (cm³) is set.
    """
    vols = first_structure_volumes(path)
    deep = float(sum(v for k, v in vols.items() if k in FIRST_DEEP_GM_LABELS))
    return _row({"deep_gm_cm3": deep}, None)


def first_structure_volumes(path: str | os.PathLike) -> dict[int, float]:
    """Volume of every nonzero label of a FIRST (or any) label image.

    Parameters
    ----------
    path : path-like
        A 3-D integer label image.

    Returns
    -------
    dict of int to float
        Label -> volume in cm³ (voxel count x voxel volume).

    Raises
    ------
    VolumeImportError
        Naming the file, when it is not a 3-D integer label image.
    """
    img = load_image(path)
    data = np.asarray(img.dataobj)
    if data.ndim != 3 or not np.array_equal(data, np.round(data)):
        raise VolumeImportError(f"{path}: not a 3D integer label image")
    labels, counts = np.unique(data.astype(np.int64), return_counts=True)
    vox = voxel_volume_cm3(img.header.get_zooms()[:3])
    vols = {int(label): float(n) * vox for label, n in zip(labels, counts, strict=True)
            if label != 0}
    if not vols:
        raise VolumeImportError(f"{path}: the label image is empty")
    return vols


# --------------------------------------------------------------------------- participants.tsv
#: Unit suffixes of participants.tsv volume columns -> factor to cm³.
UNIT_FACTORS: dict[str, float] = {"cm3": 1.0, "ml": 1.0, "mm3": 1e-3, "l": 1e3}

#: Column names (lower case) recognised without a mapping, besides ``<volume>_<unit>`` with
#: ``<volume>`` one of gm, cortical_gm, deep_gm, wm, csf, brain (optionally ``_norm``) and
#: ``<unit>`` one of :data:`UNIT_FACTORS`.
PARTICIPANTS_ALIASES: dict[str, tuple[str, str]] = {
    "scaling_factor": ("scaling_factor", ""),
    "vscaling": ("scaling_factor", ""),
    "etiv": ("etiv", "mm3"),
    "etiv_cm3": ("etiv", "cm3"),
    "etiv_mm3": ("etiv", "mm3"),
}


def _participants_column(name: str) -> tuple[str, str] | None:
    key = name.strip().lower()
    if key in PARTICIPANTS_ALIASES:
        return PARTICIPANTS_ALIASES[key]
    m = re.fullmatch(r"(.+?)(_norm)?_(cm3|ml|mm3|l)", key)
    if m and m.group(1) in NORMALISED:
        return f"{m.group(1)}{m.group(2) or ''}_cm3", m.group(3)
    return None


def volumes_from_participants(participants: pd.DataFrame,
                              mapping: dict[str, tuple[str, str]] | None = None,
                              *, source: str = "participants.tsv") -> pd.DataFrame:
    """Volume columns a study already has in ``participants.tsv`` -> volume table.

    Parameters
    ----------
    participants : DataFrame
        With ``participant_id`` (and optionally ``session_id``) and volume columns.
    mapping : dict, optional
        ``{source column: (ironmap column, unit)}``, e.g. ``{"GMV": ("gm_cm3", "ml"),
        "SIENAX_VSCALING": ("scaling_factor", "")}``; units from :data:`UNIT_FACTORS`
        (``""`` for the dimensionless ``scaling_factor``; ironmap column ``etiv`` with a
        volume unit gives ``scaling_factor`` = :data:`ETIV_SCALE_CM3` / eTIV). Without it,
        columns named ``<volume>[_norm]_<unit>`` and :data:`PARTICIPANTS_ALIASES` are used.

    Returns
    -------
    DataFrame
        ``participant_id``, ``session_id`` and
        :data:`~ironmap.core.regions.tissue_volumes.VOLUME_COLUMNS` (NaN where unknown;
        ``*_norm_cm3`` given in the table are kept, missing ones are raw x ``scaling_factor``).
    """
    if "participant_id" not in participants.columns:
        raise VolumeImportError(f"{source}: no participant_id column")
    chosen = {}
    for col in participants.columns:
        target = (mapping or {}).get(col) if mapping is not None else _participants_column(col)
        if target is not None:
            chosen[col] = target
    if mapping is not None and set(mapping) - set(participants.columns):
        raise VolumeImportError(f"{source}: mapped columns not found: "
                                f"{sorted(set(mapping) - set(participants.columns))}")
    if not chosen:
        raise VolumeImportError(f"{source}: no volume columns recognised (name them "
                                "<volume>_<unit>, e.g. gm_cm3, or pass a mapping)")
    rows = [_participant_row(rec, chosen, source) for rec in participants.to_dict("records")]
    out = pd.DataFrame(rows)
    out.insert(0, "session_id", participants.get("session_id", pd.Series(np.nan,
                                                                        participants.index)).values)
    out.insert(0, "participant_id", participants["participant_id"].values)
    return out


def _participant_row(rec: dict, chosen: dict[str, tuple[str, str]], source: str) -> dict:
    values: dict[str, float] = {}
    for col, (target, unit) in chosen.items():
        value = pd.to_numeric(pd.Series([rec[col]]), errors="coerce").iloc[0]
        if target == "scaling_factor":
            values[target] = float(value)
            continue
        if unit.lower() not in UNIT_FACTORS:
            raise VolumeImportError(f"{source}: column {col}: unknown unit {unit!r} "
                                    f"(use one of {', '.join(UNIT_FACTORS)})")
        values[target] = float(value) * UNIT_FACTORS[unit.lower()]
    if "etiv" in values:
        etiv = values.pop("etiv")
        values.setdefault("scaling_factor", ETIV_SCALE_CM3 / etiv if etiv > 0 else math.nan)
    given_norm = {k: v for k, v in values.items() if k.endswith("_norm_cm3")}
    raw = {k: v for k, v in values.items() if k.endswith("_cm3") and k not in given_norm}
    row = _row(raw, values.get("scaling_factor", math.nan))
    row.update(given_norm)
    return row


def combine_volume_rows(*rows: dict[str, float]) -> dict[str, float]:
    """First non-NaN value of every column over ``rows`` (e.g. SIENAX row, then FIRST row).

    ``*_norm_cm3`` are recomputed from the combined raw volumes and ``scaling_factor``.

    Parameters
    ----------
    *rows : dict of str to float
        Volume rows in order of preference.

    Returns
    -------
    dict of str to float
        One row with every column of :data:`ironmap.core.regions.tissue_volumes.VOLUME_COLUMNS`
        (cm³).
    """
    merged: dict[str, float] = {}
    for col in VOLUME_COLUMNS:
        vals = [r.get(col, math.nan) for r in rows]
        merged[col] = next((float(v) for v in vals if v is not None and np.isfinite(v)),
                           math.nan)
    raw = {f"{n}_cm3": merged[f"{n}_cm3"] for n in NORMALISED}
    return _row(raw, merged["scaling_factor"])
