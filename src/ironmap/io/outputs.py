"""Output paths from the derivative layout, and the dataset metadata.

The names of every output live in :mod:`ironmap.io.layout`; workflows never concatenate file
names: they ask :func:`derivative_path` (a participant's files) or
:func:`ironmap.io.layout.output_path` (any output).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ironmap.io.atomic import write_json
from ironmap.io.layout import LAYOUT, output_path, participant_suffix, subject_prefix

__all__ = ["OUTPUTS", "subject_prefix", "subject_dir", "derivative_path", "command_line",
           "write_dataset_description"]

#: logical name -> (sub-folder under sub-X[/ses-Y], entity suffix and extension) of every
#: per-participant file and folder of the layout (kept for callers of the older registry).
OUTPUTS: dict[str, tuple[str, str]] = {
    key: (o.pattern.split("/")[1], participant_suffix(key) if "{prefix}_" in o.pattern else "")
    for key, o in LAYOUT.items() if o.pattern.startswith("{subject}/")
    and o.pattern.count("/") == 1 + ("{prefix}_" in o.pattern)
}


def subject_dir(root: str | os.PathLike, participant_id: str,
                session_id: str | None = None) -> Path:
    """A participant's folder under a derivative root.

    Parameters
    ----------
    root : path-like
        OUTPUT_DIR or a staging folder.
    participant_id : str
        Participant label, with or without ``sub-``.
    session_id : str, optional
        Session label, with or without ``ses-``.

    Returns
    -------
    pathlib.Path
        ``root/sub-X[/ses-Y]``.
    """
    prefix = subject_prefix(participant_id, session_id).split("_")
    return Path(root, *prefix)


def derivative_path(root: str | os.PathLike, name: str, participant_id: str,
                    session_id: str | None = None) -> Path:
    """Path of a registered per-participant output.

    Parameters
    ----------
    root : path-like
        OUTPUT_DIR or a staging folder laid out like it.
    name : str
        Key of the output in :data:`ironmap.io.layout.LAYOUT` (e.g. ``"r2starmap"``).
    participant_id : str
        Participant label, with or without ``sub-``.
    session_id : str, optional
        Session label, with or without ``ses-``.

    Returns
    -------
    pathlib.Path
        E.g. ``root/sub-01/ses-1/anat/sub-01_ses-1_R2starmap.nii.gz``.
    """
    return output_path(root, name, participant_id, session_id)


def command_line() -> str:
    """The command that is running, for provenance.

    Returns
    -------
    str
        The program name and its arguments, separated by spaces.
    """
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def write_dataset_description(root: str | os.PathLike, name: str = "ironmap",
                              source_datasets: list[str] | None = None,
                              extra: dict[str, Any] | None = None) -> Path:
    """Write ``dataset_description.json`` of an ironmap derivative dataset.

    Parameters
    ----------
    root : path-like
        The derivative dataset (OUTPUT_DIR).
    name : str, optional
        Its ``Name``.
    source_datasets : list of str, optional
        URLs of the datasets it was made from (``SourceDatasets``).
    extra : dict, optional
        Further keys.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from ironmap import __version__

    desc: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "ironmap",
            "Version": __version__,
            "Description": command_line(),
        }],
    }
    if source_datasets:
        desc["SourceDatasets"] = [{"URL": s} for s in source_datasets]
    if extra:
        desc.update(extra)
    return write_json(output_path(root, "dataset_description"), desc)
