"""Per-subject brain volumes from the T1w, written as ``sub-X_desc-volumes.tsv``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.regions.tissue_volumes import (
    implausible_volumes,
    normalise_volumes,
    tissue_volumes,
)
from ironmap.io.layout import column_dictionary
from ironmap.io.nifti import load_image
from ironmap.io.outputs import derivative_path, subject_prefix
from ironmap.io.tables import write_tsv
from ironmap.spatial.segmentation import PRIOR_WEIGHT, SegmentationError

log = logging.getLogger(__name__)


class ImplausibleVolumes(SegmentationError):
    """The segmentation ran but its volumes lie outside plausible adult ranges."""

#: Columns of ``sub-X_desc-volumes.tsv`` (and of ``group/volumes.tsv``), in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "participant_id", "session_id", "gm_cm3", "cortical_gm_cm3", "deep_gm_cm3", "wm_cm3",
    "csf_cm3", "brain_cm3", "scaling_factor", "gm_norm_cm3", "cortical_gm_norm_cm3",
    "deep_gm_norm_cm3", "wm_norm_cm3", "csf_norm_cm3", "brain_norm_cm3", "volumes_valid",
    "volumes_qc",
)

#: Data dictionary of the table (the volume columns and the plausibility verdict).
TABLE_DICTIONARY: dict[str, dict[str, str]] = column_dictionary("volumes_table")

METHODS = ("Tissue volumes were measured on the T1w image: the ICBM 2009a template (nilearn) was "
           "registered to the T1w (ANTs, affine then SyN); inside its brain mask widened by 6 mm, "
           "with bright non-brain tissue removed by connectivity, a three-class Atropos "
           "segmentation (CSF, GM, WM; Gaussian mixture initialised by the template's tissue "
           f"priors, prior weight {PRIOR_WEIGHT:g}; k-means where the prior classes were not "
           "ordered as in a T1w) was refined by linear two-class partial-volume unmixing at "
           "class borders; deep GM was GM within a template-defined basal-ganglia/thalamus "
           "region; volumes were normalised for head size by the determinant of the affine "
           "T1w-to-template transform (SIENAX V-scaling).")


def segment_t1w(t1w_path, label: str, *, work_dir=None, template_mm: int = 2):
    """:func:`ironmap.spatial.segmentation.segment_tissues` of a T1w file.

    Its ANTs scratch files go to a temporary folder (under ``work_dir``) that is removed
    afterwards.

    Parameters
    ----------
    t1w_path : path-like
        The T1w.
    label : str
        The participant, named in messages.
    work_dir : path-like, optional
        Parent of the scratch folder.
    template_mm : int, optional
        Template resolution (mm).

    Returns
    -------
    TissueSegmentation
        The segmentation.
    """
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    from ironmap.spatial.segmentation import segment_tissues

    img = load_image(t1w_path)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"ironmap-{label}-", dir=work_dir))
    try:
        return segment_tissues(img, label=f"{label} ({Path(t1w_path).name})",
                               template_mm=template_mm, workdir=str(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def subject_volumes(t1w_path, participant_id: str, session_id: str | None, output_dir, *,
                    work_dir=None, template_mm: int = 2, segmentation=None) -> dict:
    """Measure raw and head-size-normalised tissue volumes of one subject.

    Parameters
    ----------
    t1w_path : path
        The subject's T1w NIfTI.
    participant_id, session_id : str
        BIDS labels (with or without ``sub-``/``ses-``); ``session_id`` may be None.
    output_dir : path
        Derivative root; the table goes to ``sub-X[/ses-Y]/anat/sub-X[_ses-Y]_desc-volumes.tsv``.
    work_dir : path, optional
        Scratch folder (ANTs transforms); a temporary folder, removed afterwards, by default.
    template_mm : int
        Template resolution for registration and priors (2 mm is accurate and fast).
    segmentation : TissueSegmentation, optional
        The T1w's segmentation when already made (e.g. for the brain mask); else made here.

    Returns
    -------
    dict
        One table row: ids, ``*_cm3`` volumes, ``scaling_factor`` and ``*_norm_cm3``.

    Raises
    ------
    ironmap.spatial.segmentation.SegmentationError
        Naming the participant, when the T1w holds no usable brain or registration fails.
    ImplausibleVolumes
        When a volume lies outside its plausible range (the table is written first, with
        ``volumes_valid`` false).
    """
    sub = subject_prefix(participant_id, session_id)
    seg = segmentation or segment_t1w(t1w_path, sub, work_dir=work_dir,
                                      template_mm=template_mm)
    vols = tissue_volumes(seg.gm, seg.wm, seg.csf, seg.voxel_sizes, deep_gm=seg.deep)
    factor = abs(float(np.linalg.det(np.asarray(seg.subject_to_template)[:3, :3])))
    row = normalise_volumes(vols, factor)
    problems = implausible_volumes(row, seg.template_brain_cm3)
    row["volumes_valid"] = not problems
    row["volumes_qc"] = "; ".join(problems) or "ok"
    pid = participant_id if participant_id.startswith("sub-") else f"sub-{participant_id}"
    ses = None if not session_id else (
        session_id if session_id.startswith("ses-") else f"ses-{session_id}")
    row = {"participant_id": pid, "session_id": ses, **row}
    out = derivative_path(output_dir, "volumes_table", participant_id, session_id)
    df = pd.DataFrame([row])[list(TABLE_COLUMNS)]
    write_tsv(df, out, TABLE_DICTIONARY)
    log.info("%s: GM %.0f (cortical %.0f) WM %.0f CSF %.0f cm3, scaling %.3f (registration "
             "correlation %.3f)", sub, row["gm_cm3"], row["cortical_gm_cm3"], row["wm_cm3"],
             row["csf_cm3"], row["scaling_factor"], seg.similarity)
    if problems:
        raise ImplausibleVolumes(f"{sub}: implausible tissue volumes ({'; '.join(problems)}); "
                                 f"not reported as valid (values kept in {out.name})")
    row["registration_similarity"] = seg.similarity
    return row
