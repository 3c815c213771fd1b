"""Participant level, ``--longitudinal-template``: change between each participant's sessions.

For every participant with at least two sessions that have a FLAIR, each later session is
registered onto the first (rigid, mid-space; :mod:`ironmap.spatial.withinsubject`) and its
new/enlarging lesions and brain volume change are measured there. Written per participant
(``sub-X/longitudinal/``):

- ``sub-X_ses-B_space-ses-A_desc-lesionchange_mask.nii.gz`` (+ JSON): new or enlarging lesion
  voxels on the mid-space grid between sessions A (first) and B;
- ``sub-X_ses-B_from-ses-A_mode-image_xfm.txt``: the rigid map (ITK text; FLAIR of A world
  -> FLAIR of B world);

and one table ``group/longitudinal_change.tsv`` (+ JSON dictionary) with a row per later
session. A participant whose step fails gets its error in the table; the others go on.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ironmap.io.bids import SubjectInputs
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

#: Column dictionary of ``group/longitudinal_change.tsv``.
CHANGE_DICTIONARY: dict[str, dict[str, str]] = {
    "participant_id": {"Description": "Participant label (sub-...)"},
    "first_session": {"Description": "The participant's first session (the reference)"},
    "session_id": {"Description": "The later session compared with the first"},
    "new_lesions": {"Description": "New or enlarging lesions (connected components of the "
                    "change mask)"},
    "new_lesion_volume_cm3": {"Description": "Volume of new or enlarging lesion voxels",
                              "Units": "cm3"},
    "brain_cm3_first": {"Description": "GM + WM volume at the first session (T1w)",
                        "Units": "cm3"},
    "brain_cm3_later": {"Description": "GM + WM volume at the later session (T1w)",
                        "Units": "cm3"},
    "brain_change_percent": {"Description": "Per cent change of GM + WM volume between the "
                             "two sessions' segmentations", "Units": "%"},
    "jacobian_pbvc_percent": {"Description": "Per cent brain volume change from the Jacobian "
                              "of a deformable within-subject registration (later T1w onto "
                              "the first) over the first session's brain", "Units": "%"},
    "registration_nmi": {"Description": "Normalised mutual information of the FLAIRs after "
                         "the rigid registration (1-2, higher is better)"},
    "rotation_deg": {"Description": "Rotation of the later session against the first",
                     "Units": "degree"},
    "translation_mm": {"Description": "Translation of the later session against the first",
                       "Units": "mm"},
    "error": {"Description": "Why the step failed or what it left out (empty when complete)"},
}


def sessions_by_participant(subjects: list[SubjectInputs]) -> dict[str, list[SubjectInputs]]:
    """Sessions with a FLAIR per participant (participants with at least two of them).

    In natural order of the session labels: the first is the reference, so sessions must be
    named in time order.

    Parameters
    ----------
    subjects : list of SubjectInputs

    Returns
    -------
    dict of str -> list of SubjectInputs
    """
    groups: dict[str, list[SubjectInputs]] = defaultdict(list)
    for s in subjects:
        if s.session_id and s.flair is not None:
            groups[s.participant_id].append(s)
    return {p: sorted(v, key=lambda s: _natural(s.session_id or ""))
            for p, v in sorted(groups.items()) if len(v) >= 2}


def _natural(label: str) -> tuple:
    """Sort key: digit runs as numbers (``ses-2`` before ``ses-10``)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label))


def participant_change(sessions: list[SubjectInputs], out_dir: Path, *,
                       jacobian: bool = True) -> list[dict[str, Any]]:
    """Change of every later session against the first; writes the masks and transforms.

    Parameters
    ----------
    sessions : list of SubjectInputs
        One participant's sessions (FLAIR each), first first.
    out_dir : Path
        The derivative dataset (``OUTPUT_DIR``).
    jacobian : bool
        Also the Jacobian-based brain volume change.

    Returns
    -------
    list of dict
        One table row per later session (keys of :data:`CHANGE_DICTIONARY`).
    """
    from ironmap.io.nifti import load_image, save_image
    from ironmap.spatial.registration import save_transform
    from ironmap.spatial.withinsubject import (
        SessionImages,
        segment_session,
        within_subject_change,
    )

    first = sessions[0]
    pid = first.participant_id
    folder = Path(out_dir) / pid / "longitudinal"

    def images(s: SubjectInputs) -> SessionImages:
        return SessionImages(s.session_id or "", load_image(s.flair),
                             load_image(s.t1w) if s.t1w is not None else None)

    ref = images(first)
    tissues = (segment_session(ref.t1w, f"{first.label} T1w") if ref.t1w is not None
               else None)
    rows = []
    for later in sessions[1:]:
        row: dict[str, Any] = {"participant_id": pid, "first_session": first.session_id,
                               "session_id": later.session_id}
        try:
            res = within_subject_change(ref, images(later), jacobian=jacobian,
                                        first_tissues=tissues)
        except Exception as exc:  # one failing pair never stops the others
            log.error("%s %s vs %s: within-subject change failed: %s", pid,
                      later.session_id, first.session_id, exc)
            rows.append({**row, "error": " ".join(str(exc).split())})
            continue
        s = res.summary
        stem = f"{pid}_{later.session_id}"
        sidecar = {"Description": "new or enlarging FLAIR lesion voxels between the sessions",
                   "Sources": [first.flair.name, later.flair.name],
                   "SpatialReference": "mid-space halfway between the two sessions' FLAIRs "
                                       "(rigid), grid of the first FLAIR",
                   "LesionCount": res.lesions.n_lesions,
                   "LesionVolume": res.lesions.volume_cm3, "LesionVolumeUnits": "cm^3"}
        save_image(res.lesions.mask, res.grid.affine,
                   folder / f"{stem}_space-{first.session_id}_desc-lesionchange_mask.nii.gz",
                   sidecar=sidecar)
        save_transform(res.later_to_first,
                       folder / f"{stem}_from-{first.session_id}_mode-image_xfm.txt")
        rows.append({**row, "new_lesions": s["new_lesions"],
                     "new_lesion_volume_cm3": s["new_lesion_volume_cm3"],
                     "brain_cm3_first": s.get(f"brain_cm3_{first.session_id}"),
                     "brain_cm3_later": s.get(f"brain_cm3_{later.session_id}"),
                     "brain_change_percent": s.get("brain_change_percent"),
                     "jacobian_pbvc_percent": s.get("jacobian_pbvc_percent"),
                     "registration_nmi": s["registration_nmi"],
                     "rotation_deg": s["rotation_deg"], "translation_mm": s["translation_mm"],
                     "error": s.get("segmentation_error", "")})
    return rows


def run_within_subject(cfg: RunConfig, subjects: list[SubjectInputs]) -> Path | None:
    """The ``--longitudinal-template`` step over all selected participants.

    Parameters
    ----------
    cfg : RunConfig
    subjects : list of SubjectInputs
        Every selected participant/session (from :func:`ironmap.io.bids.discover`).

    Returns
    -------
    Path or None
        ``group/longitudinal_change.tsv``, or None when no participant has two sessions with
        a FLAIR.
    """
    from ironmap.io.tables import write_tsv

    groups = sessions_by_participant(subjects)
    if not groups:
        log.warning("--longitudinal-template: no participant has two sessions with a FLAIR")
        return None
    rows = []
    for pid, sessions in groups.items():
        log.info("%s: within-subject change over %d sessions", pid, len(sessions))
        try:
            rows += participant_change(sessions, Path(cfg.output_dir))
        except Exception as exc:  # e.g. an unreadable first session
            log.error("%s: within-subject change failed: %s", pid, exc)
            rows.append({"participant_id": pid, "first_session": sessions[0].session_id,
                         "error": " ".join(str(exc).split())})
    table = pd.DataFrame(rows).reindex(columns=list(CHANGE_DICTIONARY))
    return write_tsv(table, Path(cfg.output_dir) / "group" / "longitudinal_change.tsv",
                     CHANGE_DICTIONARY)
