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
    """The JSON data dictionary's path of a TSV.

    Parameters
    ----------
    path : path-like
        ``table.tsv``.

    Returns
    -------
    pathlib.Path
        ``table.json``.
    """
    return Path(path).with_suffix(".json")


def write_tsv(
    df: pd.DataFrame,
    path: str | os.PathLike,
    dictionary: dict[str, Any] | None = None,
    *,
    float_format: str = "%.6g",
) -> Path:
    """Write ``df`` as a BIDS TSV (``n/a`` for missing) atomically, plus its JSON dictionary.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (index not written).
    path : path-like
        The ``.tsv`` file.
    dictionary : dict, optional
        Column name -> ``{"Description": ..., "Units": ...}``, written as ``<name>.json``;
        columns without an entry get none (callers are expected to describe every column).
    float_format : str, optional
        printf format of floats (default six significant digits).

    Returns
    -------
    pathlib.Path
        ``path``.
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

    Parameters
    ----------
    path : path-like
        The ``.tsv`` file.
    **kwargs
        Passed to :func:`pandas.read_csv`.

    Returns
    -------
    pandas.DataFrame
        The table; ``participant_id`` and ``session_id`` as strings.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
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
    """The JSON data dictionary of a TSV.

    Parameters
    ----------
    path : path-like
        The ``.tsv`` file.

    Returns
    -------
    dict
        Column name -> entry; ``{}`` when there is no sidecar.
    """
    sc = tsv_sidecar(path)
    return json.loads(sc.read_text(encoding="utf-8")) if sc.exists() else {}
