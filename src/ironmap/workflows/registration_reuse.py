"""Reuse of an earlier run's within-subject registrations (FLAIR -> T1w, GRE -> T1w).

A second participant-level run of the same images into another OUTPUT_DIR - the demo's
automatic anatomy check runs its participant once with rater masks and once with automatic
anatomy - would register the same images again with the same options and get the same
transforms (the registrations are deterministic: single-threaded ANTs, fixed seeds). With
``RunConfig.extra["reuse_registrations"] = EARLIER_OUTPUT_DIR`` the participant takes the
transforms, their similarity and their two-seed check from that run instead, when its
manifest shows the same image files (SHA-256), the same registration options and ironmap
version, and its transform files are the ones it recorded. Otherwise it registers as usual
and says why in its log.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ironmap.io.layout import output_path
from ironmap.io.manifest import file_sha256, hash_files, read_manifest
from ironmap.io.outputs import derivative_path
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

#: Key of ``RunConfig.extra`` naming the earlier OUTPUT_DIR.
REUSE_KEY = "reuse_registrations"
#: series -> registered output of the participant level (``register_series``).
_OUTPUTS = {"MEGRE": "xfm_megre_to_t1w", "FLAIR": "xfm_flair_to_t1w"}


def _series(images, subject) -> dict[str, Path]:
    """Registered series -> its moving image file (as ``register_series`` pairs them)."""
    series = {} if images.t1w_from_gre else {"MEGRE": subject.echoes[0].path}
    if images.flair is not None:
        series["FLAIR"] = subject.flair
    return series


def reuse_problem(manifest: dict | None, subject, cfg: RunConfig, earlier: Path,
                  series: dict[str, Path]) -> str | None:
    """Why the earlier run's registrations cannot stand for this run's, or None.

    Parameters
    ----------
    manifest : dict or None
        The participant's manifest in the earlier OUTPUT_DIR.
    subject : ironmap.io.bids.SubjectInputs
        The participant.
    cfg : RunConfig
        This run's configuration.
    earlier : pathlib.Path
        The earlier OUTPUT_DIR.
    series : dict of str to pathlib.Path
        Series to register -> moving image file.

    Returns
    -------
    str or None
        The reason, or None when every transform can be reused.
    """
    from ironmap import __version__

    if not manifest or manifest.get("status") != "ok":
        return "no successful run of this participant there"
    params, summary = manifest.get("parameters") or {}, manifest.get("summary") or {}
    options = {k: list(v) if isinstance(v, tuple) else v
               for k, v in cfg.extra.get("registration_options", {}).items()}
    if (params.get("registration") != cfg.registration
            or (params.get("registration_options") or {}) != options
            or params.get("ironmap_version") != __version__):
        return "other registration options or ironmap version"
    files = [p for p in (*series.values(), subject.t1w) if p is not None]
    now = hash_files(files, root=cfg.bids_dir)
    if any(manifest.get("inputs", {}).get(k) != v for k, v in now.items()):
        return "other image files"
    for name in series:
        path = derivative_path(earlier, _OUTPUTS[name], subject.participant_id,
                               subject.session_id)
        key = path.relative_to(earlier).as_posix()
        if not path.exists() or manifest.get("outputs", {}).get(key) != file_sha256(path):
            return f"its {name} transform is missing or changed"
        if name not in (summary.get("registration_nmi") or {}):
            return f"no {name} similarity recorded"
        check = (summary.get("registration_seed_check") or {}).get(name)
        if check is not None and check.get("tolerance_mm") != cfg.registration_check_mm:
            return "another two-seed check tolerance"
    return None


def reuse(images, subject, cfg: RunConfig, stage: Path, checks: dict | None = None
          ) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
    """The earlier run's registrations, copied into ``stage``; None: register (log says why).

    The participant workflow calls it before
    :func:`ironmap.workflows.participant.register_series` and registers when it returns None
    (always without ``RunConfig.extra["reuse_registrations"]``).

    Parameters
    ----------
    images : ironmap.workflows.participant.Images
        The loaded images.
    subject : ironmap.io.bids.SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration (``extra["reuse_registrations"]``: earlier OUTPUT_DIR).
    stage : pathlib.Path
        The participant's staging folder.
    checks : dict, optional
        Filled with series -> the two-seed check recorded by the earlier run.

    Returns
    -------
    tuple or None
        ``(xfm, similarity)`` as ``register_series`` returns them (series -> 4x4 matrix from
        T1w world mm to that series' world mm; series -> normalised mutual information), or
        None when they are not reused.
    """
    from ironmap.spatial.registration import load_transform

    if not cfg.extra.get(REUSE_KEY):
        return None
    earlier = Path(cfg.extra[REUSE_KEY])
    series = _series(images, subject)
    manifest = read_manifest(output_path(earlier, "manifest", subject.participant_id,
                                         subject.session_id))
    problem = reuse_problem(manifest, subject, cfg, earlier, series)
    if problem is not None:
        log.info("%s: registrations of %s not reused (%s); registering", subject.label,
                 earlier, problem)
        return None
    summary: dict[str, Any] = manifest["summary"]
    xfm = {"T1w": np.eye(4)}
    if images.t1w_from_gre:
        xfm["MEGRE"] = np.eye(4)
    similarity = {}
    pid, sid = subject.participant_id, subject.session_id
    for name in series:
        source = derivative_path(earlier, _OUTPUTS[name], pid, sid)
        target = derivative_path(stage, _OUTPUTS[name], pid, sid)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        xfm[name] = np.asarray(load_transform(target).matrix, dtype=float)
        similarity[name] = float(summary["registration_nmi"][name])
        check = (summary.get("registration_seed_check") or {}).get(name)
        if checks is not None and check is not None:
            checks[name] = check
        log.info("%s: %s -> T1w %s registration reused from %s (NMI %.3f)", subject.label,
                 name, cfg.registration, earlier, similarity[name])
    return xfm, similarity
