"""Self-contained HTML pages from Jinja2 templates (autoescaped, inline CSS, base64 images).

Tables are rendered from the TSV contents with one formatting rule (:func:`format_value`);
every cell keeps the TSV column(s) it shows in ``data-columns`` so that a page can be checked
against its table. Pages open offline: no external CSS, fonts, scripts or images.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

TEMPLATE_DIR = Path(__file__).with_name("templates")

_P_COLUMN = re.compile(r"(^p$|^p_|_p$|_p_|pvalue|p_value|^q$|_q$|qvalue)")
_INT_COLUMN = re.compile(r"(^n$|^n_|_n$|count|^u$|_u$)")


@dataclass
class Cell:
    """One table cell: shown text and the TSV columns it comes from.

    ``parts`` splits the text into pieces, each with the TSV column it shows (None for
    punctuation), so that every number on the page can be traced to its TSV cell; ``sub``
    is a second, smaller line (e.g. the p-value under a mean); ``css`` extra classes
    (``sig``: significant, ``ns``: not significant).
    """

    text: str
    columns: tuple[str, ...] = ()
    numeric: bool = False
    parts: list[tuple[str, str | None]] = field(default_factory=list)
    sub: list[tuple[str, str | None]] = field(default_factory=list)
    css: str = ""
    tip: str = ""

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = [(self.text, self.columns[0] if len(self.columns) == 1 else None)]

    @property
    def wrap(self) -> bool:
        """Whether long text wraps instead of widening the table.

        Returns
        -------
        bool
            True for cells whose text is longer than 48 characters.
        """
        return len(self.text) > 48


@dataclass
class TableView:
    """A table ready for the template."""

    id: str
    caption: str
    header: list[tuple[str, str]]  # (label, description tooltip)
    rows: list[list[Cell]]
    note: str = ""
    source: str = ""  # the TSV file it was rendered from


@dataclass
class FigureView:
    """A figure for the template: an embedded image, or the reason it is missing."""

    id: str
    title: str
    caption: str = ""
    data_uri: str | None = None
    error: str | None = None
    files: list[str] = field(default_factory=list)
    width: int | None = None  # CSS px at which the text has its drawn point size
    #: array-drawn figures (:mod:`ironmap.report.raster`): the page writes their text
    heading: str = ""  # the figure's title line
    panels: list[dict[str, Any]] = field(default_factory=list)  # title, left/top/width in %
    legend: list[tuple[str, str]] = field(default_factory=list)  # (name, hex colour)
    colorbar: dict[str, Any] | None = None  # uri, low, high, label


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``.

    Parameters
    ----------
    png : bytes
        PNG file content.

    Returns
    -------
    str
        The data URI.
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in ("", "n/a", "nan", "NaN")
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def format_number(value: float, column: str = "") -> str:
    """The report's number format.

    p-values: 3 decimals (``<0.001`` below); counts: integers; |x| >= 100: 1 decimal; else 3
    significant digits (``21.1``, ``2.42``, ``-0.431``).

    Parameters
    ----------
    value : float
        The number.
    column : str, optional
        Its column name (tells p-values and counts apart).

    Returns
    -------
    str
        The shown text.
    """
    col = column.lower()
    v = float(value)
    if _P_COLUMN.search(col):
        return "<0.001" if v < 0.001 else f"{v:.3f}"
    if _INT_COLUMN.search(col) and float(v).is_integer():
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.3g}"


def format_value(value: Any, column: str = "") -> tuple[str, bool]:
    """Shown text of one TSV value and whether it is a number.

    Parameters
    ----------
    value : object
        A cell (number, string, None or NaN).
    column : str, optional
        Its column name (see :func:`format_number`).

    Returns
    -------
    text : str
        The shown text (``n/a`` for missing).
    is_number : bool
        Whether the value is numeric (right-aligned).
    """
    if _is_missing(value):
        return "n/a", False
    if isinstance(value, bool):
        return str(value), False
    try:
        return format_number(float(value), column), True
    except (TypeError, ValueError):
        return str(value), False


def _pairs(columns: Sequence[str]) -> dict[str, str]:
    """``X_mean`` -> ``X_sd`` for columns that come as mean/SD pairs."""
    cols = set(columns)
    return {c: c[:-5] + "_sd" for c in columns if c.endswith("_mean") and c[:-5] + "_sd" in cols}


def _label(column: str, dictionary: Mapping[str, Any]) -> tuple[str, str]:
    entry = dictionary.get(column) or {}
    desc = entry.get("Description", "") if isinstance(entry, Mapping) else ""
    units = entry.get("Units", "") if isinstance(entry, Mapping) else ""
    tip = f"{desc} ({units})" if desc and units else desc or units
    return column.replace("_", " "), tip


def table_view(df: pd.DataFrame, *, id: str, caption: str,
               dictionary: Mapping[str, Any] | None = None, combine_mean_sd: bool = True,
               columns: Sequence[str] | None = None, note: str = "",
               source: str = "", labels: Mapping[str, str] | None = None) -> TableView:
    """Render a TSV table: every listed column (default: all), mean/SD pairs as ``m (sd)``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    id : str
        HTML id of the table.
    caption : str
        Caption above it.
    dictionary : mapping, optional
        Column dictionary (descriptions as header tooltips, units in the header).
    combine_mean_sd : bool, optional
        Show ``<x>_mean`` and ``<x>_sd`` as one ``m (sd)`` column.
    columns : sequence of str, optional
        Columns shown, in order (default: all).
    note : str, optional
        Text under the table.
    source : str, optional
        The file the table comes from (shown under it).
    labels : mapping, optional
        Header labels by column (for a pair, by its ``_mean`` column).

    Returns
    -------
    TableView
        Header and rows ready for the template.
    """
    dictionary = dictionary or {}
    labels = labels or {}
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    pairs = _pairs(cols) if combine_mean_sd else {}
    shown = [c for c in cols if c not in set(pairs.values())]
    header = []
    for c in shown:
        label, tip = _label(c, dictionary)
        if c in pairs:
            label = label[:-5] + " mean (SD)"
        header.append((labels.get(c, label), tip))
    rows = []
    for _, rec in df.iterrows():
        row = []
        for c in shown:
            text, num = format_value(rec[c], c)
            if c in pairs:
                sd_text, _ = format_value(rec[pairs[c]], pairs[c])
                row.append(Cell(f"{text} ({sd_text})", (c, pairs[c]), num,
                                parts=[(text, c), (" (", None), (sd_text, pairs[c]),
                                       (")", None)]))
            else:
                row.append(Cell(text, (c,), num))
        rows.append(row)
    return TableView(id, caption, header, rows, note, source)


def environment() -> jinja2.Environment:
    """The template environment (autoescape on for every template).

    Returns
    -------
    jinja2.Environment
        Loads ``report/templates``; undefined variables are errors.
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cite"] = _cite
    return env


def _cite(text: str) -> jinja2.utils.markupsafe.Markup:
    """Escape ``text`` and turn ``[key]`` citations into links to the reference list."""
    from markupsafe import Markup, escape

    escaped = str(escape(text))
    linked = re.sub(r"\[([a-z0-9_]+)\]", r'<a class="cite" href="#ref-\1">[\1]</a>', escaped)
    return Markup(linked)


def render(template: str, **context: Any) -> str:
    """Render one template of ``report/templates``.

    Parameters
    ----------
    template : str
        Template file name (``study.html``).
    **context
        Template variables.

    Returns
    -------
    str
        The HTML page.
    """
    return _environment().get_template(template).render(**context)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment per process: its templates are compiled once, not once per page."""
    return environment()
