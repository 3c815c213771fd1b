"""Explicit readers of the text files users hand in: JSON sidecars and TSV tables.

Each either returns what the file says or raises :class:`InputError` naming the file, the
line and the problem -- never a parser traceback:

- encoding: UTF-8 (with or without BOM); otherwise Windows-1252, then Latin-1, with a warning
  naming the file and the line of the first non-UTF-8 byte (spreadsheet programs on Windows
  save ``participants.tsv`` and sidecars in cp1252);
- JSON: valid syntax (line and column of the first error) and an object at the top level;
- TSV: balanced quotes and as many fields on every row as in the header.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["InputError", "read_text", "read_json_object", "read_table_text"]

_FALLBACK_ENCODINGS = ("cp1252", "latin-1")


class InputError(ValueError):
    """A participant's input that cannot be processed (message names file and problem)."""


def read_text(path: str | os.PathLike) -> str:
    """Text of a file: UTF-8, else cp1252/Latin-1 with a warning naming file and line.

    Parameters
    ----------
    path : path-like
        A text file (a UTF-8 byte-order mark is dropped).

    Returns
    -------
    str
        The decoded text.

    Raises
    ------
    InputError
        Naming the file, when it cannot be read.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        for encoding in _FALLBACK_ENCODINGS:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                continue
            log.warning("%s: not UTF-8 (byte 0x%02x on line %d); read as %s -- please save it "
                        "as UTF-8", p, raw[exc.start], line, encoding)
            return text
        raise InputError(f"{p}: line {line}: not a text file") from exc  # pragma: no cover


def read_json_object(path: str | os.PathLike, what: str = "JSON sidecar") -> dict[str, Any]:
    """A JSON file whose top level is an object.

    Parameters
    ----------
    path : path-like
        The JSON file.
    what : str, optional
        What the file is, for the error message.

    Returns
    -------
    dict
        The parsed object.

    Raises
    ------
    InputError
        Naming the file (and line and column), when it is not valid JSON or not an object.
    """
    p = Path(path)
    text = read_text(p)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: line {exc.lineno}, column {exc.colno}: invalid JSON "
                         f"({exc.msg})") from exc
    except RecursionError as exc:
        raise InputError(f"{p}: JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise InputError(f"{p}: a {what} must be a JSON object {{...}} at the top level, got "
                         f"{type(value).__name__}")
    return value


def read_table_text(path: str | os.PathLike) -> str:
    """Text of a TSV whose rows all have the header's number of fields and balanced quotes.

    Blank lines are ignored.

    Parameters
    ----------
    path : path-like
        The TSV file.

    Returns
    -------
    str
        The text, ready for :func:`pandas.read_csv`.

    Raises
    ------
    InputError
        ``"<file>: line N: ..."`` for a ragged row or an unbalanced quote.
    """
    p = Path(path)
    text = read_text(p)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True)
    n_fields = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"{p}: line {start}: {exc} (an unbalanced double quote?)") from exc
        if row:
            if n_fields is None:
                n_fields = len(row)
            elif len(row) != n_fields:
                raise InputError(f"{p}: line {start}: {len(row)} fields, but the header has "
                                 f"{n_fields}")
        start = reader.line_num + 1
    return text
