"""Study-level inputs: ``participants.tsv`` (+ ``.json``) and the optional ``study.toml``.

``study.toml`` (every key optional; command-line options win over it)::

    [columns]                 # participants.tsv column names
    group = "group"
    age = "age"
    sex = "sex"
    site = "site"
    disease_duration = "disease_duration"
    edss = "edss"
    cortical_gm = "cortical_gm_cm3"   # used when OUTPUT_DIR/group/volumes.tsv is absent
    wm = "wm_cm3"

    [groups]
    control = "HC"
    patients_label = "MS"      # row of all patients in Table 1/2
    phenotypes = ["CIS", "RRMS", "SPMS", "PPMS", "MS"]

    [agecorr]
    model = "auto"             # auto | pooled | seed | prior | linear | none (--age-model wins)
    reference_age = 32.0       # default: the controls' mean age
    bootstrap = 200            # resamples of the controls for the correction's SD (0: none)
    bootstrap_seed = 0
    min_controls = 6           # below it the seed fit is flagged as ill-determined
    max_rel_se_b = 0.5         # seed fit flagged as ill-determined above this se(b)/b
    per_site = false

    [agecorr.fixed.caudate]    # optional: a fixed curve for a region (any hemisphere),
    a = 9.0                    # used instead of a fit; a, c in s^-1, b in 1/years
    b = 0.045
    c = 12.6

    [stats]
    value = "r2star_mean"      # regional_r2star.tsv column that is analysed
    alpha = 0.05
    normality_alpha = 0.05
    correlation = "auto"       # auto | pearson | spearman
    p_enter = 0.05
    p_remove = 0.10
    fdr = false
    site_covariate = false
    mixed_model = true
"""

from __future__ import annotations

import io
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from ironmap.core.group.age_correction import AGE_MODELS
from ironmap.core.group.paper_tables import GroupSettings
from ironmap.io.layout import output_path
from ironmap.io.readers import read_json_object, read_table_text
from ironmap.io.tables import read_tsv

__all__ = ["DEFAULT_COLUMNS", "read_participants", "read_study_config", "group_settings",
           "read_group_table"]

#: Canonical name -> participants.tsv column.
DEFAULT_COLUMNS: dict[str, str] = {
    "group": "group", "age": "age", "sex": "sex", "site": "site",
    "disease_duration": "disease_duration", "edss": "edss",
    "cortical_gm": "cortical_gm_cm3", "wm": "wm_cm3",
}

_KNOWN = {"columns", "groups", "agecorr", "stats"}


def read_participants(bids_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``participants.tsv`` (all columns as read) and its JSON dictionary.

    Parameters
    ----------
    bids_dir : path-like
        BIDS_DIR.

    Returns
    -------
    table : pandas.DataFrame
        One row per line, every column as strings (``n/a`` as missing).
    dictionary : dict
        ``participants.json`` (``{}`` when absent).

    Raises
    ------
    FileNotFoundError
        When ``participants.tsv`` is absent (the group level needs group, age, sex, site).
    InputError
        Naming the file, for a ragged row or an unreadable dictionary.
    """
    path = Path(bids_dir) / "participants.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: participants.tsv not found (needed for the group "
                                "level: group, age, sex, site)")
    df = pd.read_csv(io.StringIO(read_table_text(path)), sep="\t", dtype=str,
                     na_values=["n/a"], keep_default_na=False)
    sidecar = path.with_suffix(".json")
    meta = read_json_object(sidecar, "data dictionary") if sidecar.exists() else {}
    return df, meta


def read_study_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Parse ``study.toml``; unknown tables are refused by name.

    Parameters
    ----------
    path : path-like or None
        The file, or None for no study configuration.

    Returns
    -------
    dict
        The parsed tables (``{}`` for None).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        Naming the file, when it is not valid TOML or has an unknown table.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: study configuration not found")
    with p.open("rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: not valid TOML ({exc})") from exc
    unknown = set(data) - _KNOWN
    if unknown:
        raise ValueError(f"{p}: unknown section(s) {sorted(unknown)}; known: {sorted(_KNOWN)}")
    return data


_TRUE = {"true", "yes", "on", "1", "bh", "fdr_bh", "benjamini-hochberg", "fdr"}
_FALSE = {"false", "no", "off", "0", "none", "", "n/a", "null"}


def parse_flag(value: Any, what: str = "setting") -> bool:
    """A yes/no setting from JSON/TOML/CLI: ``"none"``, ``"false"``, ``"off"`` are False.

    Parameters
    ----------
    value : object
        bool, number (NaN is off), string or None (off).
    what : str, optional
        The setting's name, for the error message.

    Returns
    -------
    bool
        The setting.

    Raises
    ------
    ValueError
        For a string that is neither (e.g. a typo), so that it is never read as "on".
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value) and value == value  # NaN is off
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what}: cannot read {value!r} as on/off (use true or false)")


def _fixed_curves(agec: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``[agecorr.fixed.<region>]`` tables checked: numbers ``a >= 0``, ``b > 0``, ``c``."""
    out = {}
    for region, table in agec.get("fixed", {}).items():
        where = f"study.toml [agecorr.fixed.{region}]"
        if not isinstance(table, dict) or set(table) != {"a", "b", "c"}:
            raise ValueError(f"{where}: needs exactly the keys a, b, c (got "
                             f"{sorted(table) if isinstance(table, dict) else table!r})")
        try:
            vals = {k: float(table[k]) for k in ("a", "b", "c")}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: a, b and c must be numbers ({exc})") from exc
        if not all(map(math.isfinite, vals.values())) or vals["a"] < 0 or vals["b"] <= 0:
            raise ValueError(f"{where}: need finite a >= 0 (1/s), b > 0 (1/years), c (1/s); "
                             f"got {vals}")
        out[str(region)] = vals
    return out


def _age_model(agec: dict[str, Any], age_model: str | None) -> str:
    model = age_model if age_model is not None else str(agec.get("model", "auto"))
    if model not in AGE_MODELS:
        raise ValueError(f"study.toml [agecorr] model = {model!r}: choose from "
                         f"{', '.join(AGE_MODELS)}")
    return model


def group_settings(study: dict[str, Any], *, control_label: str = "HC",
                   group_column: str = "group", reference_age: float | None = None,
                   fdr: bool = False, per_site: bool = False, age_model: str | None = None
                   ) -> tuple[GroupSettings, dict[str, str]]:
    """Merge defaults, ``study.toml`` and command-line values into settings and columns.

    Command-line values that differ from their defaults (``age_model``: that are given)
    override the file.

    Parameters
    ----------
    study : dict
        Parsed ``study.toml`` (:func:`read_study_config`).
    control_label : str, optional
        ``--control-label``.
    group_column : str, optional
        ``--group-column``.
    reference_age : float, optional
        ``--reference-age`` in years.
    fdr : bool, optional
        ``--fdr``.
    per_site : bool, optional
        ``--per-site-agecorr``.
    age_model : str, optional
        ``--age-model`` (one of :data:`ironmap.core.group.age_correction.AGE_MODELS`).

    Returns
    -------
    settings : GroupSettings
        The group level's settings.
    columns : dict of str to str
        Canonical name -> ``participants.tsv`` column.

    Raises
    ------
    ValueError
        Naming the ``study.toml`` table, for an unknown age model or a bad fixed curve.
    """
    columns = {**DEFAULT_COLUMNS, **study.get("columns", {})}
    if group_column != "group":
        columns["group"] = group_column
    groups, agec, stats = (study.get(k, {}) for k in ("groups", "agecorr", "stats"))
    defaults = GroupSettings()
    settings = GroupSettings(
        control=control_label if control_label != "HC" else groups.get("control", "HC"),
        patients_label=groups.get("patients_label", defaults.patients_label),
        phenotypes=tuple(groups.get("phenotypes", defaults.phenotypes)),
        alpha=float(stats.get("alpha", defaults.alpha)),
        normality_alpha=float(stats.get("normality_alpha", defaults.normality_alpha)),
        correlation_method=stats.get("correlation", defaults.correlation_method),
        p_enter=float(stats.get("p_enter", defaults.p_enter)),
        p_remove=float(stats.get("p_remove", defaults.p_remove)),
        fdr=fdr or parse_flag(stats.get("fdr", False), "study.toml [stats] fdr"),
        site_covariate=bool(stats.get("site_covariate", False)),
        mixed_model=bool(stats.get("mixed_model", True)),
        min_controls=int(agec.get("min_controls", defaults.min_controls)),
        max_rel_se_b=float(agec.get("max_rel_se_b", defaults.max_rel_se_b)),
        per_site=per_site or bool(agec.get("per_site", False)),
        reference_age=reference_age if reference_age is not None
        else agec.get("reference_age"),
        value_column=stats.get("value", defaults.value_column),
        age_model=_age_model(agec, age_model),
        bootstrap=int(agec.get("bootstrap", defaults.bootstrap)),
        bootstrap_seed=int(agec.get("bootstrap_seed", defaults.bootstrap_seed)),
        fixed_curves=_fixed_curves(agec),
    )
    return settings, columns


def read_group_table(output_dir: str | os.PathLike, key: str,
                     required: bool = False) -> pd.DataFrame | None:
    """A cohort table of OUTPUT_DIR, or None when it is absent and not ``required``.

    Parameters
    ----------
    output_dir : path-like
        OUTPUT_DIR.
    key : str
        Layout key of the table (``group_regional``, ``group_lesions``, ``group_volumes``,
        ...; :data:`ironmap.io.layout.LAYOUT`).
    required : bool, optional
        Raise when the table is absent.

    Returns
    -------
    pandas.DataFrame or None
        The table as read (``n/a`` as missing).

    Raises
    ------
    FileNotFoundError
        When the table is absent and ``required``.
    """
    path = output_path(output_dir, key)
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{path}: not found; run the participant level first")
        return None
    return read_tsv(path)


def read_sessions(bids_dir: str | os.PathLike) -> pd.DataFrame | None:
    """All ``sub-X/sub-X_sessions.tsv`` tables stacked, with ``participant_id`` added.

    Parameters
    ----------
    bids_dir : path-like
        BIDS_DIR.

    Returns
    -------
    pandas.DataFrame or None
        Columns as read (``session_id`` required; ``age`` in years, ``site`` and ``acq_time``
        are used when present), as strings; None when no participant has a sessions file.

    Raises
    ------
    ValueError
        Naming the file, when it has no ``session_id`` column.
    """
    root = Path(bids_dir)
    parts = []
    for path in sorted(root.glob("sub-*/sub-*_sessions.tsv")):
        df = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
        if "session_id" not in df.columns:
            raise ValueError(f"{path}: no session_id column")
        df.insert(0, "participant_id", path.parent.name)
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else None
