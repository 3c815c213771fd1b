"""Participant level: automatic lesion masks where no rater mask exists (``--lesions``).

``--lesions auto`` (default): a participant with a FLAIR and no rater lesion mask gets an
automatic mask (:func:`ironmap.workflows.lesion_segmentation.segment_images`) on the FLAIR grid,
written as ``sub-X_space-FLAIR_desc-auto_label-lesion_mask.nii.gz`` (+ probability map), and then
measured like a rater mask. Controls (``group`` equal to the control label in
``participants.tsv``) are skipped unless ``--lesions-controls``; participants without a known
group count as patients. ``--lesions masks`` uses rater masks only; ``--lesions none`` measures
no lesions. The participant's lesion row records ``lesion_source`` (``rater``, ``automatic``
or n/a).

``--lesion-method samseg`` makes the automatic masks SAMSEG's lesion mode (run in its own
environment, :func:`ironmap.workflows.lesion_segmentation.segment_samseg_images`) instead of the
built-in method; :func:`lesion_method_problem` refuses the run at start-up when SAMSEG is not
available.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ironmap.io.bids import MaskFile, SubjectInputs
from ironmap.io.nifti import save_image
from ironmap.io.outputs import derivative_path

log = logging.getLogger(__name__)

LESION_MODES = ("auto", "none", "masks")
#: automatic lesion methods of the participant level (``--lesion-method``)
LESION_METHODS = ("ironmap", "samseg")
LESION_SOURCE = {"Description": "Where the lesion mask came from: rater (derivative mask) or "
                                "automatic (ironmap lesions segment)"}


def is_control(subject: SubjectInputs, cfg) -> bool:
    """True when ``participants.tsv`` puts the participant in the control group.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    bool
        Whether the participant is a control (False when unknown).
    """
    from ironmap.io.study import read_participants

    try:
        table, _ = read_participants(cfg.bids_dir)
    except (FileNotFoundError, ValueError):
        return False
    if cfg.group_column not in table or "participant_id" not in table:
        return False
    rows = table[table["participant_id"].astype(str) == subject.participant_id]
    return bool(len(rows)) and str(rows[cfg.group_column].iloc[0]) == cfg.control_label


def lesion_method_problem(cfg) -> str | None:
    """Start-up check of ``--lesion-method``: a message when the run cannot use it, else None.

    ``samseg`` needs ``--lesions auto`` and SAMSEG's ``run_samseg`` (``--samseg``,
    ``$SAMSEG_CMD`` or ``PATH``) with the ``samseg`` package in its environment.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The refusal (how to install SAMSEG included), or None.
    """
    method = getattr(cfg, "lesion_method", "ironmap")
    if method not in LESION_METHODS:
        return f"--lesion-method {method!r}: choose one of {', '.join(LESION_METHODS)}"
    if method == "ironmap":
        return None
    if getattr(cfg, "lesions", "auto") != "auto":
        return (f"--lesion-method samseg segments lesions automatically; it needs --lesions auto "
                f"(got --lesions {cfg.lesions})")
    from ironmap.io.samseg import SamsegError, find_samseg, samseg_python, samseg_version

    try:
        samseg_version(samseg_python(find_samseg(getattr(cfg, "samseg_cmd", None))))
    except SamsegError as exc:
        return f"--lesion-method samseg: {exc}"
    return None


def choose_lesion_mask(subject: SubjectInputs, cfg, images, stage: Path, chosen):
    """The lesion mask to measure and its source.

    Parameters
    ----------
    chosen : (MaskFile, space) or None
        The rater mask found for the participant.

    Returns
    -------
    (chosen, source) : ((MaskFile, str) or None, str or None)
        ``source`` is ``"rater"``, ``"automatic"`` or None (no lesions measured).
    """
    mode = getattr(cfg, "lesions", "auto")
    if mode == "none":
        return None, None
    if chosen is not None:
        return chosen, "rater"
    if mode != "auto" or images.flair is None:
        return None, None
    if is_control(subject, cfg) and not getattr(cfg, "lesions_controls", False):
        log.info("%s: control without a lesion mask; no automatic lesions "
                 "(--lesions-controls)", subject.label)
        return None, None
    path = auto_mask(subject, images, stage, method=getattr(cfg, "lesion_method", "ironmap"),
                     samseg_cmd=getattr(cfg, "samseg_cmd", None))
    if path is None:
        return None, None
    return (MaskFile(path=path, kind="lesion", space="FLAIR"), "FLAIR"), "automatic"


def auto_mask(subject: SubjectInputs, images, stage: Path, *, method: str = "ironmap",
              samseg_cmd=None) -> Path | None:
    """Segment the participant's FLAIR (with its T1w) and write mask + probability into ``stage``.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    images : Images
        The loaded images.
    stage : pathlib.Path
        The participant's staging folder.
    method : {"ironmap", "samseg"}, optional
        The built-in method, or SAMSEG's lesion mode (needs the T1w; scratch in ``stage``).
    samseg_cmd : path-like, optional
        SAMSEG's ``run_samseg`` for ``method="samseg"``.

    Returns
    -------
    pathlib.Path or None
        The mask; None (logged) when the segmentation refuses the images.
    """
    from ironmap.workflows.lesion_segmentation import LesionSegError

    pid, sid = subject.participant_id, subject.session_id
    try:
        t1w = None if getattr(images, "t1w_from_gre", False) else images.t1w
        seg, info = _segment(images.flair, t1w, stage, f"{subject.label} FLAIR", method,
                             samseg_cmd)
    except LesionSegError as exc:
        log.error("%s: automatic lesion segmentation failed, no lesion values: %s",
                  subject.label, exc)
        return None
    sources = [Path(subject.flair).name] + ([Path(subject.t1w).name] if subject.t1w else [])
    side = {"Type": "Lesion", "LesionSource": "automatic", "Sources": sources,
            "SpatialReference": Path(subject.flair).name, **info,
            "LesionCount": seg.n_lesions, "LesionVolume": seg.load_cm3,
            "LesionVolumeUnits": "cm^3"}
    save_image(seg.probability, images.flair.affine,
               derivative_path(stage, "lesion_auto_prob", pid, sid),
               sidecar={"Description": "automatic lesion probability (0-1)", **info})
    core = seg.mask if seg.core is None else seg.core
    save_image(core.astype(np.uint8), images.flair.affine,
               derivative_path(stage, "lesion_auto_core", pid, sid),
               sidecar={**side, "Description": "cores of the automatic lesions (at least halfway "
                        "in FLAIR from NAWM to the lesion's 90th percentile): lesion R2* mask"})
    out = derivative_path(stage, "lesion_auto", pid, sid)
    save_image(seg.mask.astype(np.uint8), images.flair.affine, out, sidecar=side)
    return out


def _segment(flair, t1w, stage: Path, label: str, method: str, samseg_cmd):
    """The built-in segmentation or SAMSEG's (in a scratch folder of ``stage``)."""
    from ironmap.workflows.lesion_segmentation import (
        LesionSegError,
        segment_images,
        segment_samseg_images,
    )

    if method != "samseg":
        return segment_images(flair, t1w, label=label)
    if t1w is None:
        raise LesionSegError(f"{label}: --lesion-method samseg needs the participant's T1w")
    from ironmap.io.scratch import scratch_dir

    with scratch_dir(stage) as work:
        return segment_samseg_images(flair, t1w, work, label=label, samseg_cmd=samseg_cmd)


def r2star_mask_path(mask_path: Path) -> Path:
    """The mask to measure lesion R2* with.

    The cores beside an automatic mask (rim voxels left out, see
    :func:`ironmap.core.lesions.auto_segment.lesion_cores`), else ``mask_path`` itself.

    Parameters
    ----------
    mask_path : Path
        The lesion mask measured (rater or automatic).

    Returns
    -------
    Path
        The file whose voxels give lesion R2*.
    """
    name = Path(mask_path).name
    if "_desc-auto_label-lesion_mask" not in name:
        return Path(mask_path)
    core = Path(mask_path).with_name(name.replace("_desc-auto_", "_desc-autocore_"))
    return core if core.exists() else Path(mask_path)


def lesion_qc_job(output_dir: Path, inputs: SubjectInputs):
    """Participant-page figure job: the automatic lesion mask over the FLAIR.

    Parameters
    ----------
    output_dir : pathlib.Path
        OUTPUT_DIR.
    inputs : SubjectInputs
        The participant.

    Returns
    -------
    FigureJob or None
        With lesion count and load in the caption; None when the participant has no automatic
        mask.
    """
    pid, sid = inputs.participant_id, inputs.session_id
    path = derivative_path(output_dir, "lesion_auto", pid, sid)
    if inputs.flair is None or not path.exists():
        return None  # before the imports: the figure's (matplotlib) are costly
    from functools import partial

    import nibabel as nib

    from ironmap.core.lesions.lesion_values import label_lesions, lesion_load_cm3
    from ironmap.io.nifti import load_image
    from ironmap.report.figures import FigureJob
    from ironmap.report.lesionqc import lesion_qc_caption, lesion_qc_figure

    img = load_image(path)
    mask = np.asarray(img.dataobj) > 0
    flair = np.asarray(load_image(inputs.flair).get_fdata(dtype=np.float32))
    ornt = nib.orientations.io_orientation(img.affine)
    flair_ras = nib.orientations.apply_orientation(flair, ornt)
    mask_ras = nib.orientations.apply_orientation(mask, ornt)
    count = label_lesions(mask)[1]
    load = lesion_load_cm3(mask, np.linalg.norm(img.affine[:3, :3], axis=0))
    return FigureJob("lesions-auto", "Automatic lesions on FLAIR",
                     lesion_qc_caption(count, load, "automatic"),
                     f"{inputs.label}_desc-autolesions_FLAIR",
                     partial(lesion_qc_figure, flair_ras, mask_ras, title=inputs.label))
