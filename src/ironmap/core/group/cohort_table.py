"""Checking the participants table of a study before the group statistics.

:func:`validate_participants` turns a raw ``participants.tsv`` frame into a clean table with
canonical column names and returns, beside it, one record per problem it found. A problem
either excludes the participant from every analysis (no usable group or age, duplicated id) or
blanks one value (EDSS out of 0-10, a negative disease duration, an unknown sex), so that the
analyses that do not need that value keep the participant. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Issue", "validate_participants", "DEFAULT_PHENOTYPES", "normalise_id", "MAX_AGE"]

#: Oldest plausible age in years; older values exclude the participant (as do negative ones).
MAX_AGE = 120.0

#: Group labels accepted besides the control label when the study names none.
DEFAULT_PHENOTYPES: tuple[str, ...] = ("CIS", "RRMS", "SPMS", "PPMS", "MS")


@dataclass(frozen=True)
class Issue:
    """One input problem: who, which column, what, and what was done."""

    participant_id: str
    column: str
    problem: str
    action: str  # "excluded" | "value ignored"

    def message(self) -> str:
        """The issue as one sentence: ``"<id>: <column> <problem> (<action>)"``.

        Returns
        -------
        str
            The sentence.
        """
        return f"{self.participant_id}: {self.column} {self.problem} ({self.action})"


def normalise_id(value) -> str:
    """A participant id with its ``sub-`` prefix.

    Parameters
    ----------
    value : object
        ``"001"`` or ``"sub-001"``.

    Returns
    -------
    str
        ``"sub-001"``.
    """
    s = str(value).strip()
    return s if s.startswith("sub-") else f"sub-{s}"


def _numeric(df: pd.DataFrame, source: str | None) -> tuple[pd.Series, pd.Series]:
    """Numeric values of a column and a mask of entries that were present but not numbers."""
    if source is None or source not in df.columns:
        return pd.Series(np.nan, index=df.index), pd.Series(False, index=df.index)
    raw = df[source]
    num = pd.to_numeric(raw, errors="coerce")
    present = raw.notna() & (raw.astype(str).str.strip() != "")
    return num.astype(float), present & num.isna()


def _flag(issues, ids, mask, column, problem, action) -> None:
    for pid in ids[mask]:
        issues.append(Issue(str(pid), column, problem, action))


def _check_ranges(out: pd.DataFrame, df: pd.DataFrame, columns: dict, issues: list) -> None:
    ids = out["participant_id"]
    for key, lo, hi in (("edss", 0.0, 10.0), ("disease_duration", 0.0, np.inf)):
        values, bad_text = _numeric(df, columns.get(key))
        _flag(issues, ids, bad_text.to_numpy(), key, "is not a number", "value ignored")
        bad = (values < lo) | (values > hi)
        for pid, v in zip(ids[bad.to_numpy()], values[bad], strict=True):
            issues.append(Issue(str(pid), key, f"= {v:g} is outside {lo:g}-{hi:g}",
                                "value ignored"))
        out[key] = values.where(~bad)


def validate_participants(df: pd.DataFrame, columns: dict, control: str,
                          phenotypes: tuple[str, ...] | None = None
                          ) -> tuple[pd.DataFrame, list[Issue]]:
    """Clean a participants table.

    Parameters
    ----------
    df : DataFrame
        ``participants.tsv`` as read (one row per participant).
    columns : dict
        Canonical name -> column in ``df`` for ``group``, ``age``, ``sex``, ``site``,
        ``disease_duration``, ``edss`` (absent keys or columns give missing values).
    control : str
        Label of the healthy controls.
    phenotypes : tuple of str, optional
        Accepted patient labels (default :data:`DEFAULT_PHENOTYPES`).

    Returns
    -------
    clean : DataFrame
        Participants kept, with columns ``participant_id``, ``group``, ``age`` (years),
        ``sex`` (``F``/``M``/NaN), ``site``, ``disease_duration`` (years), ``edss``,
        ``is_control``.
    issues : list of Issue
    """
    if "participant_id" not in df.columns:
        raise KeyError("participants table has no participant_id column")
    phenotypes = tuple(phenotypes or DEFAULT_PHENOTYPES)
    issues: list[Issue] = []
    out = pd.DataFrame({"participant_id": df["participant_id"].map(normalise_id)},
                       index=df.index)
    ids = out["participant_id"]
    dup = ids.duplicated(keep=False).to_numpy()
    _flag(issues, ids.drop_duplicates(), ids.drop_duplicates().isin(ids[dup]).to_numpy(),
          "participant_id", "appears more than once", "excluded")
    gcol = columns.get("group", "group")
    if gcol not in df.columns:
        raise KeyError(f"participants table has no group column {gcol!r}")
    out["group"] = df[gcol].astype("string").str.strip()
    known = out["group"].isin([control, *phenotypes]).fillna(False).to_numpy(bool)
    for pid, g in zip(ids[~known], out["group"][~known], strict=True):
        problem = "is missing" if pd.isna(g) else f"{g!r} is not a known group label"
        issues.append(Issue(str(pid), "group", problem + f" (known: {control}, "
                            f"{', '.join(phenotypes)})", "excluded"))
    age, bad_age = _numeric(df, columns.get("age", "age"))
    _flag(issues, ids, (age.isna() & ~bad_age).to_numpy(), "age", "is missing", "excluded")
    _flag(issues, ids, bad_age.to_numpy(), "age", "is not a number", "excluded")
    neg = (age < 0).to_numpy()
    _flag(issues, ids, neg, "age", "is negative", "excluded")
    old = (age > MAX_AGE).to_numpy()
    _flag(issues, ids, old, "age", f"is above {MAX_AGE:.0f} years (not a plausible age; "
          "months or a typo?)", "excluded")
    neg = neg | old
    out["age"] = age
    sex = df[columns["sex"]].astype("string").str.strip().str.upper() \
        if columns.get("sex") in df.columns else pd.Series(pd.NA, index=df.index)
    sex = sex.replace({"FEMALE": "F", "MALE": "M"})
    bad_sex = sex.notna() & ~sex.isin(["F", "M"])
    _flag(issues, ids, bad_sex.fillna(False).to_numpy(bool), "sex",
          "is not F or M", "value ignored")
    out["sex"] = sex.where(~bad_sex.fillna(False))
    scol = columns.get("site", "site")
    out["site"] = df[scol].astype("string") if scol in df.columns else "site-01"
    _check_ranges(out, df, columns, issues)
    excluded = dup | ~known | age.isna().to_numpy() | neg
    out["is_control"] = out["group"] == control
    return out[~excluded].reset_index(drop=True), issues
