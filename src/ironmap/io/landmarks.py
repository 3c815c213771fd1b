"""Anterior and posterior commissure (AC, PC) landmarks of participants.

Two sources, both explicit:

- a landmarks table (``--landmarks FILE.tsv``): columns ``participant_id``, optional
  ``session_id``, ``landmark`` (``AC`` or ``PC``), ``x``, ``y``, ``z`` in world millimetres
  (RAS+) of the participant's T1w, or of the series named in an optional ``space`` column
  (``T1w``, ``FLAIR`` or ``MEGRE``). ``ironmap simulate`` writes its truth in this form
  (``truth/landmarks.tsv``).
- the T1w sidecar: BIDS ``AnatomicalLandmarkCoordinates`` with ``AC`` and ``PC`` in voxel
  indices of the T1w image (first voxel 0, 0, 0), e.g. ``{"AC": [127, 119, 149], ...}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import pandas as pd

from ironmap.io.bids import InputError, inherited_metadata

SPACES = ("T1w", "FLAIR", "MEGRE")


@dataclass(frozen=True)
class Landmarks:
    """AC and PC in world mm (RAS+) of the series ``space``; ``source`` says where from."""

    ac: tuple[float, float, float]
    pc: tuple[float, float, float]
    space: str
    source: str


def _point(values, what: str) -> tuple[float, float, float]:
    try:
        p = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        p = ()
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise InputError(f"{what}: expected three finite coordinates, got {values!r}")
    return p  # type: ignore[return-value]


def read_landmarks_table(path: str | Path) -> dict[str, Landmarks]:
    """Landmarks per participant (key ``sub-X`` or ``sub-X_ses-Y``) from a TSV.

    Parameters
    ----------
    path : path-like
        TSV with ``participant_id``, optional ``session_id``, ``landmark`` (AC or PC), ``x``,
        ``y``, ``z`` (mm) and optional ``space``.

    Returns
    -------
    dict of str to Landmarks
        Participant label -> AC and PC in the named space, world mm.

    Raises
    ------
    InputError
        Naming the file: unreadable, a missing column, an unknown landmark or space, a
        participant with AC or PC missing or given twice.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str})
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the landmarks table ({exc})") from exc
    missing = {"participant_id", "landmark", "x", "y", "z"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: landmarks table lacks column(s) {', '.join(sorted(missing))}"
                         " (expected participant_id, landmark, x, y, z)")
    out: dict[str, Landmarks] = {}
    points: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {}
    for i, row in df.iterrows():
        where = f"{path}, row {int(i) + 2}"
        sub = str(row["participant_id"]).strip()
        sub = sub if sub.startswith("sub-") else f"sub-{sub}"
        ses = row.get("session_id")
        key = sub if ses is None or pd.isna(ses) or str(ses) in ("", "n/a") else \
            f"{sub}_{ses if str(ses).startswith('ses-') else 'ses-' + str(ses)}"
        space = str(row.get("space", "T1w")) if pd.notna(row.get("space", "T1w")) else "T1w"
        if space not in SPACES:
            raise InputError(f"{where}: space {space!r} is not one of {', '.join(SPACES)}")
        name = str(row["landmark"]).strip().upper()
        if name not in ("AC", "PC"):
            raise InputError(f"{where}: landmark {row['landmark']!r} is neither AC nor PC")
        entry = points.setdefault((key, space), {})
        if name in entry:
            raise InputError(f"{where}: {name} of {key} is given twice")
        entry[name] = _point((row["x"], row["y"], row["z"]), where)
    for (key, space), entry in points.items():
        if set(entry) != {"AC", "PC"}:
            raise InputError(f"{path}: {key} has {', '.join(sorted(entry))} but needs AC and PC")
        out[key] = Landmarks(entry["AC"], entry["PC"], space, f"landmarks table {path.name}")
    return out


def sidecar_landmarks(t1w: Path, bids_root: Path) -> Landmarks | None:
    """AC/PC from the T1w sidecar's ``AnatomicalLandmarkCoordinates``, in T1w world mm.

    Parameters
    ----------
    t1w : pathlib.Path
        The T1w image (its sidecar and inherited metadata are read).
    bids_root : pathlib.Path
        The BIDS dataset root (for inherited sidecars).

    Returns
    -------
    Landmarks or None
        AC and PC in T1w world mm (the sidecar gives voxel indices); None when the sidecar
        names neither point.

    Raises
    ------
    InputError
        When only one of AC and PC is given, or a point is not three numbers.
    """
    coords = inherited_metadata(Path(t1w), Path(bids_root)).get("AnatomicalLandmarkCoordinates")
    if not isinstance(coords, dict) or not ({"AC", "PC"} & set(coords)):
        return None
    where = f"{t1w} sidecar AnatomicalLandmarkCoordinates"
    if not {"AC", "PC"} <= set(coords):
        raise InputError(f"{where}: has {'AC' if 'AC' in coords else 'PC'} only; needs AC and "
                         "PC (voxel indices)")
    affine = nib.load(str(t1w)).affine
    world = [tuple(float(v) for v in nib.affines.apply_affine(affine, _point(coords[k], where)))
             for k in ("AC", "PC")]
    return Landmarks(world[0], world[1], "T1w", "T1w sidecar AnatomicalLandmarkCoordinates")

