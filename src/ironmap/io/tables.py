"""TSV tables with JSON data dictionaries (BIDS style)."""

from __future__ import annotations

import io as _io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ironmap.io.atomic import write_json, write_text
from ironmap.io.readers import InputError, read_table_text


def tsv_sidecar(path: str | os.PathLike) -> Path:
    """``table.tsv`` -> ``table.json``."""
    return Path(path).with_suffix(".json")


def write_tsv(
    df: pd.DataFrame,
    path: str | os.PathLike,
    dictionary: dict[str, Any] | None = None,
    *,
    float_format: str = "%.6g",
) -> Path:
    """Write ``df`` as a BIDS TSV (``n/a`` for missing) atomically, plus its JSON dictionary.

    ``dictionary`` maps column names to ``{"Description": ..., "Units": ...}``; columns
    without an entry get none (callers are expected to describe every column).
    """
    buf = _io.StringIO()
    df.to_csv(buf, sep="\t", index=False, na_rep="n/a", float_format=float_format,
              lineterminator="\n")
    p = write_text(path, buf.getvalue())
    if dictionary is not None:
        write_json(tsv_sidecar(p), dictionary)
    return p


def read_tsv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """Read a BIDS TSV (``n/a`` -> NaN); ids stay strings.

    Raises
    ------
    InputError
        Naming the file (and line) when it is not a well-formed table.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: table not found")
    text = read_table_text(p)  # encoding, ragged rows, quotes: InputError naming the line
    try:
        return pd.read_csv(_io.StringIO(text), sep="\t", na_values=["n/a"],
                           keep_default_na=False,
                           dtype={"participant_id": str, "session_id": str}, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{p}: not a readable TSV table ({exc})") from exc


def read_dictionary(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON data dictionary of a TSV (empty dict when absent)."""
    sc = tsv_sidecar(path)
    return json.loads(sc.read_text(encoding="utf-8")) if sc.exists() else {}
