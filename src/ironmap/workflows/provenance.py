"""What ran, read back from an output folder: the record the methods text is written from.

The group level calls :func:`methods_record_for_run` and stores the result in
``group/stats.json`` (key ``"methods"``); the report reads it from there (and calls this
module itself only for outputs written before the record existed).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ironmap.io.layout import output_path
from ironmap.io.outputs import OUTPUTS
from ironmap.report.methods import methods_record, source_kind
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

#: participant-level settings recorded in ``logs/config-participant.json`` that the group
#: level and the report take from there
PARTICIPANT_KEYS = ("method", "registration", "erosion_voxels", "volumes", "atlas", "masks",
                    "auto_anatomy", "erosion_mm", "erosion_space", "min_region_voxels",
                    "brain_mask", "lesions", "lesions_controls", "longitudinal_template",
                    "lesion_method",
                    "nuclei_refine", "registration_check_mm", "midbrain_refine", "sn_core",
                    "erosion_fallback_mm", "midbrain_transport")


def run_config(cfg: RunConfig) -> dict[str, Any]:
    """The run's configuration, with the participant level's settings where recorded.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    dict
        :meth:`RunConfig.to_json` with :data:`PARTICIPANT_KEYS` from
        ``logs/config-participant.json``.
    """
    out = cfg.to_json()
    part = output_path(cfg.output_dir, "config_participant")
    if part.exists():
        try:
            recorded = json.loads(part.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            recorded = {}
        for key in PARTICIPANT_KEYS:
            if key in recorded:
                out[key] = recorded[key]
    return out


def _files(output_dir: Path, name: str) -> list[Path]:
    """Every participant's file of one registry output (sorted)."""
    suffix = OUTPUTS[name][1]
    exact = re.compile(r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_" + re.escape(suffix))
    return sorted(p for p in Path(output_dir).glob(f"sub-*/**/sub-*_{suffix}")
                  if exact.fullmatch(p.name))


def _sidecar(path: Path) -> dict[str, Any]:
    from ironmap.io.nifti import read_sidecar

    try:
        return read_sidecar(path)
    except Exception:  # noqa: BLE001 - an unreadable sidecar counts as "unknown source"
        return {}


def first_r2star_sidecar(output_dir: Path) -> dict[str, Any]:
    """Sidecar of the first readable R2* map (estimator and echo times).

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.

    Returns
    -------
    dict
        The sidecar, or ``{}``.
    """
    for path in _files(output_dir, "r2starmap"):
        sc = _sidecar(path)
        if sc:
            return sc
    return {}


def _manifest_summaries(output_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(output_path(output_dir, "manifests_dir").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text(encoding="utf-8")).get("summary") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
    return out


def mask_sources(output_dir: Path) -> dict[str, dict[str, int]]:
    """Participants per kind of deep-GM and lesion mask (``rater``, ``atlas``, ...).

    A participant's manifest summary may name the kind (``masks_source``,
    ``lesions_source``); otherwise it is read from the mask's sidecar ``Sources``
    (:func:`ironmap.report.methods.source_kind`). Participants without a mask are not
    counted.

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.

    Returns
    -------
    dict
        ``{"masks": {kind: n}, "lesions": {kind: n}}``.
    """
    summaries = _manifest_summaries(output_dir)
    out: dict[str, dict[str, int]] = {}
    for key, name in (("masks", "dseg_r2star"), ("lesions", "lesion_r2star")):
        counts: Counter[str] = Counter()
        for path in _files(output_dir, name):
            label = path.name.split(f"_{OUTPUTS[name][1]}")[0]
            recorded = summaries.get(label, {}).get(f"{key}_source")
            counts[str(recorded) if recorded else
                   source_kind(_sidecar(path).get("Sources"))] += 1
        out[key] = dict(counts)
    return out


def methods_record_for_run(cfg: RunConfig, *, settings: dict[str, Any] | None = None,
                           agefit=None, reference_age: float | None = None,
                           volume_sources: dict[str, str] | None = None) -> dict[str, Any]:
    """The methods record of the run in ``cfg.output_dir`` (see ``docs/report.md``).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    settings : dict, optional
        The group settings as recorded in ``stats.json``.
    agefit : pandas.DataFrame, optional
        ``agefit.tsv``.
    reference_age : float, optional
        Years.
    volume_sources : dict of str to str, optional
        Where the volumes came from.

    Returns
    -------
    dict
        The record the methods text is written from.
    """
    out = Path(cfg.output_dir)
    return methods_record(run_config(cfg), r2star_sidecar=first_r2star_sidecar(out),
                          agefit=agefit, settings=settings, reference_age=reference_age,
                          sources=mask_sources(out), volume_sources=volume_sources)
