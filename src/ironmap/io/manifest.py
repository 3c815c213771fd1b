"""Per-participant manifests: input hashes, parameters and output hashes of a finished run.

A participant is up to date (and skipped on a rerun) when its manifest exists, the SHA-256 of
every input file and the parameters are unchanged, and every recorded output still exists with
its recorded hash. The manifest is written last and atomically, so a run killed midway leaves
no manifest and the participant is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ironmap.io.atomic import write_json

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_files(paths, root: str | os.PathLike | None = None) -> dict[str, str]:
    """SHA-256 of every existing file, by path.

    Parameters
    ----------
    paths : iterable of path-like
        Files; missing ones are left out.
    root : path-like, optional
        Paths inside it are given relative to it.

    Returns
    -------
    dict of str to str
        Path -> hex digest, sorted by path.
    """
    out = {}
    for p in sorted({Path(p) for p in paths}):
        if not p.exists():
            continue
        key = str(p)
        if root is not None:
            try:
                key = str(p.resolve().relative_to(Path(root).resolve()))
            except ValueError:
                pass
        out[key] = file_sha256(p)
    return out


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """A participant's manifest.

    Parameters
    ----------
    path : path-like
        ``logs/manifests/<label>.json``.

    Returns
    -------
    dict or None
        The manifest, or None when absent or unreadable.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write a manifest atomically.

    Parameters
    ----------
    path : path-like
        ``logs/manifests/<label>.json``.
    manifest : dict
        Inputs, parameters and outputs (with their SHA-256), status and summary.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_json(path, manifest)


def is_up_to_date(manifest: dict[str, Any] | None, inputs: dict[str, str],
                  parameters: dict[str, Any], output_root: str | os.PathLike) -> bool:
    """Whether a participant's recorded results still hold.

    Parameters
    ----------
    manifest : dict or None
        The recorded manifest.
    inputs : dict of str to str
        SHA-256 of the participant's inputs now.
    parameters : dict
        The result parameters now.
    output_root : path-like
        OUTPUT_DIR, against which the recorded outputs are checked.

    Returns
    -------
    bool
        True when the manifest is ``ok``, records these inputs and parameters, and every
        recorded output exists with its recorded SHA-256.
    """
    if not manifest or manifest.get("status") != "ok":
        return False
    if manifest.get("inputs") != inputs or manifest.get("parameters") != parameters:
        return False
    outputs = manifest.get("outputs") or {}
    if not outputs:
        return False
    root = Path(output_root)
    for rel, digest in outputs.items():
        p = root / rel
        if not p.exists() or file_sha256(p) != digest:
            return False
    return True
