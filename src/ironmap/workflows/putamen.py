"""Putamen anterior/posterior split in the participant level (the seed study's definition).

Labels that name a whole putamen (FreeSurfer ``aseg``, an atlas, a rater ``dseg`` without the
parts) are split on the R2* grid at the plane through the anterior commissure (AC)
perpendicular to the AC-PC line (:func:`ironmap.core.regions.putamen_split.split_whole_putamen`).
AC and PC come, in this order, from

1. the landmarks table (``--landmarks``, :func:`ironmap.io.landmarks.read_landmarks_table`);
2. the T1w sidecar (BIDS ``AnatomicalLandmarkCoordinates``);
3. a template registration: the atlas's SyN fit when labels come from ``--atlas`` (template
   in MNI152 space), else nilearn's bundled ICBM152 2009a template registered to the T1w
   with ANTs SyN, their template positions carried into the T1w.

What was used is recorded in the label image's sidecar (``PutamenSplit``).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import nibabel as nib
import numpy as np

from ironmap.core.regions.putamen_split import split_whole_putamen, whole_putamen_labels
from ironmap.io.bids import InputError, SubjectInputs
from ironmap.io.landmarks import Landmarks, read_landmarks_table, sidecar_landmarks
from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)


def explicit_landmarks(subject: SubjectInputs, cfg: RunConfig) -> Landmarks | None:
    """AC/PC from ``--landmarks`` or the T1w sidecar.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    Landmarks or None
        None when neither gives them.
    """
    if cfg.landmarks is not None:
        table = read_landmarks_table(cfg.landmarks)
        found = table.get(subject.label) or table.get(subject.participant_id)
        if found is not None:
            return found
    if subject.t1w is not None:
        return sidecar_landmarks(subject.t1w, cfg.bids_dir)
    return None


def needs_split(names: dict[int, str], cfg: RunConfig) -> bool:
    """True when some label names a whole putamen and the split is switched on.

    Parameters
    ----------
    names : dict of int to str
        Label -> name.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    bool
        Whether to split.
    """
    return bool(cfg.putamen_split and whole_putamen_labels(names))


def template_landmarks(t1w: nib.Nifti1Image, label: str, work_dir=None) -> Landmarks:
    """AC/PC of a T1w through an ANTs SyN of the bundled ICBM152 2009a template.

    Parameters
    ----------
    t1w : nibabel.Nifti1Image
        The T1w.
    label : str
        The participant, named in messages.
    work_dir : path-like, optional
        Scratch folder.

    Returns
    -------
    Landmarks
        AC and PC in T1w world mm.
    """
    from ironmap.spatial.atlas import ICBM2009A_AC_MM, ICBM2009A_PC_MM, fit_template, locate_acpc
    from ironmap.workflows.static_cache import cached_template

    tpl = cached_template(2)
    brain = nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.t1.affine)
    with tempfile.TemporaryDirectory(prefix="ironmap-acpc-", dir=work_dir) as tmp:
        # the template is brain only: registered with its brain mask (register_syn)
        fit = fit_template(t1w, tpl.t1, label=label, workdir=tmp, template_mask=brain)
        ac, pc = locate_acpc(t1w, tpl.t1, ac_mm=ICBM2009A_AC_MM, pc_mm=ICBM2009A_PC_MM,
                             fit=fit)
    return Landmarks(tuple(ac), tuple(pc), "T1w",
                     "ICBM152 2009a template registered to the T1w (ANTs SyN)")


def split_on_grid(labels: np.ndarray, names: dict[int, str], voxel_to_t1w: np.ndarray,
                  xfm: dict[str, np.ndarray], landmarks: Landmarks, label: str
                  ) -> tuple[np.ndarray, dict[int, str], dict[str, Any]]:
    """Split whole-putamen labels of a label image; returns labels, names, provenance.

    ``voxel_to_t1w``: voxel -> T1w world mm of ``labels``; ``xfm[space]`` maps T1w world mm
    to the world mm of the series the landmarks are given in.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The label image.
    names : dict of int to str
        Label -> name.
    voxel_to_t1w : ndarray of shape (4, 4)
        Voxel of ``labels`` -> T1w world mm.
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    landmarks : Landmarks
        AC and PC.
    label : str
        The participant, named in messages.

    Returns
    -------
    labels : ndarray of int, shape (X, Y, Z)
        With anterior and posterior putamen labels.
    names : dict of int to str
        Label -> name.
    provenance : dict
        Landmarks and their source for the sidecar.
    """
    if landmarks.space not in xfm:
        raise InputError(f"{label}: AC/PC ({landmarks.source}) are given in {landmarks.space} "
                         f"space, but the participant has no {landmarks.space} image")
    to_t1w = np.linalg.inv(np.asarray(xfm[landmarks.space], dtype=float))
    ac, pc = (to_t1w[:3, :3] @ np.asarray(p, dtype=float) + to_t1w[:3, 3]
              for p in (landmarks.ac, landmarks.pc))
    out, out_names, hemis = split_whole_putamen(labels, names, voxel_to_t1w, ac, pc)
    log.info("%s: putamen split at the AC plane (%s), AC %s PC %s mm (T1w), %s", label,
             landmarks.source, np.round(ac, 1).tolist(), np.round(pc, 1).tolist(),
             ", ".join(hemis))
    info = {"Source": landmarks.source, "Space": "T1w",
            "AnteriorCommissure": [round(float(v), 3) for v in ac],
            "PosteriorCommissure": [round(float(v), 3) for v in pc],
            "Hemispheres": hemis,
            "Definition": "plane through the AC perpendicular to the AC-PC line"}
    return out, out_names, info
