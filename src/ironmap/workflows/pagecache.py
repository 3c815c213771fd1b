"""Reuse of participant QC pages between report runs.

A participant page (``sub-X.html`` with its figures) is made again only when something it is
made from has changed. Its key is a SHA-256 over the ironmap version, the source files of the
report code (size and modification time), the page's participants.tsv fields, the QC
thresholds, and the size and modification time of the participant's raw images (echoes, T1w,
FLAIR) and of every file in its derivative folder, its figures excepted. Rater masks are not
hashed themselves: they reach the page only through the labels and lesion masks the
participant level derives from them (hashed with its folder), and the group level may run
without ``--masks``; hashing them made the two levels' keys differ whenever masks were given.
The key, the page's qc.tsv row and its flags are kept in ``sub-X/figures/page-key.json``; a
page is reused when that key matches and the page and every figure it lists still exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from ironmap.core.qc.run_flags import QCFlag, QCThresholds
from ironmap.io.atomic import write_text
from ironmap.io.layout import file_name
from ironmap.io.outputs import derivative_path, subject_dir

log = logging.getLogger(__name__)

KEY_FILE = file_name("page_key")


def _code_files() -> list[Path]:
    """The files of the code that makes a page (found, not imported: the report imports us)."""
    import ironmap.report

    pkg = Path(ironmap.report.__file__).parent
    here = Path(__file__).parent
    return sorted([here / "report.py", here / "report_figures.py", *pkg.rglob("*.py"),
                   *(p for p in (pkg / "templates").rglob("*") if p.is_file())])


def _stat_line(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def page_key(output_dir: Path, subject, info: dict[str, str],
             thresholds: QCThresholds) -> str:
    """Key of everything the page of ``subject`` is made from.

    ``subject`` is a :class:`~ironmap.io.bids.SubjectInputs`; see the module docstring.

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.
    subject : SubjectInputs
        The participant.
    info : dict of str to str
        The page's ``participants.tsv`` fields.
    thresholds : QCThresholds
        The QC limits.

    Returns
    -------
    str
        SHA-256 hex digest.
    """
    from ironmap import __version__

    sub = subject_dir(output_dir, subject.participant_id, subject.session_id)
    figures = derivative_path(output_dir, "figure_dir", subject.participant_id,
                              subject.session_id)
    derived = [p for p in sub.rglob("*") if p.is_file() and figures not in p.parents]
    h = hashlib.sha256(json.dumps([__version__, str(output_dir), info,
                                   dataclasses.asdict(thresholds)], sort_keys=True,
                                  default=str).encode())
    raw = [p for p in (*(e.path for e in subject.echoes), subject.t1w, subject.flair) if p]
    for path in [*_code_files(), *raw, *sorted(derived)]:
        h.update(_stat_line(Path(path)).encode())
        h.update(b"\n")
    return h.hexdigest()


def load(fig_dir: Path, page: Path, key: str) -> dict[str, Any] | None:
    """The stored QC row and flags of a page whose key matches and whose files exist.

    Parameters
    ----------
    fig_dir : pathlib.Path
        The participant's figure folder.
    page : pathlib.Path
        The participant's page.
    key : str
        The key now (:func:`page_key`).

    Returns
    -------
    dict or None
        ``{"row", "flags"}``; None when the page must be made again.
    """
    try:
        doc = json.loads((fig_dir / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("key") != key or not page.exists():
        return None
    if not all((page.parent / f).exists() for f in doc.get("files", [])):
        return None
    try:
        flags = [QCFlag(**f) for f in doc.get("flags", [])]
    except TypeError:  # stored by an incompatible version
        return None
    return {"row": doc.get("row", {}), "flags": flags}


def store(fig_dir: Path, page: Path, key: str, result: dict[str, Any]) -> None:
    """Record the key, qc.tsv row and flags of a page just written.

    The figures it lists are the files under ``fig_dir``, relative to the page's folder.

    Parameters
    ----------
    fig_dir : pathlib.Path
        The participant's figure folder.
    page : pathlib.Path
        The page just written.
    key : str
        Its key.
    result : dict
        ``{"row", "flags"}``.
    """
    files = sorted(str(p.relative_to(page.parent)) for p in fig_dir.rglob("*")
                   if p.is_file() and p.name != KEY_FILE)
    doc = {"key": key, "page": page.name, "files": files, "row": result["row"],
           "flags": [f.as_dict() for f in result["flags"]]}
    try:  # NaN kept as the JSON token NaN: metrics that could not be measured
        write_text(fig_dir / KEY_FILE, json.dumps(doc, indent=1, default=_plain) + "\n")
    except (OSError, TypeError, ValueError) as exc:  # no reuse next time; never fatal
        log.warning("%s: page key not stored: %s", page.name, exc)


def _plain(obj: Any) -> Any:
    """Numpy scalars as Python numbers; anything else as its text."""
    return obj.item() if hasattr(obj, "item") else str(obj)
