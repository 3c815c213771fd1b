"""T1w anatomy of one participant: segmentation once, then brain mask and tissue volumes.

Called from :func:`ironmap.workflows.participant.analyse` when ``--brain-mask`` or ``--volumes``
is given. The T1w is segmented once (:func:`ironmap.workflows.volumes.segment_t1w`); from it

- the brain mask (:func:`ironmap.spatial.brain.brain_mask`) is written on the T1w grid
  (``space-T1w_desc-brain_mask``) and on the R2* grid (``space-R2starmap_desc-brain_mask``,
  carried through the saved GRE -> T1w transform, nearest voxel); the GRE must show signal in
  most of the brain it covers, else the participant fails with an error naming the GRE file;
- with ``--volumes`` the volume table (:func:`ironmap.workflows.volumes.subject_volumes`),
  refused with the QC flag ``volumes:implausible`` when a value lies outside its plausible
  range.

A failed segmentation costs the participant these outputs only (QC flag
``segmentation:brain_mask`` / ``segmentation:volumes``), never its R2* and regional outputs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ironmap.core.r2star.fit_flags import gre_coverage
from ironmap.io.bids import InputError
from ironmap.io.nifti import save_image
from ironmap.io.outputs import derivative_path

log = logging.getLogger(__name__)

#: Smallest fraction of the brain voxels on the GRE grid that must carry GRE signal.
MIN_GRE_BRAIN_COVERAGE = 0.5

METHODS = ("The brain was extracted from the T1w image: the brain-only ICBM 2009a template "
           "(nilearn) was started at the brain's place found from the top of the head, "
           "registered with ANTs (affine then SyN, the metric restricted to the template brain "
           "and its surroundings) and the tissue segmentation inside it gave the brain mask "
           "(GM + WM + CSF fractions >= 0.5, holes filled), carried to the R2* grid.")


def t1w_anatomy(subject, cfg, images, r2img, xfm, stage, summary: dict[str, Any],
                failed: dict[str, str]) -> None:
    """Segment the T1w once; write the brain mask and (``cfg.volumes``) the volume table.

    Results go into ``summary`` (``brain``, ``volumes``), failures into ``failed``.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    images : Images
        The participant's loaded images.
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    stage : pathlib.Path
        The participant's staging folder.
    summary : dict
        The participant's summary (changed in place).
    failed : dict of str to str
        Failed steps -> message (changed in place).
    """
    from ironmap.workflows.participant import _tolerate_segmentation
    from ironmap.workflows.volumes import segment_t1w, subject_volumes

    pid, sid = subject.participant_id, subject.session_id
    steps = [s for s, on in (("brain_mask", getattr(cfg, "brain_mask", False)),
                             ("volumes", cfg.volumes)) if on]
    seg = _tolerate_segmentation(
        steps[0], failed, subject,
        lambda: segment_t1w(subject.t1w, subject.label, work_dir=cfg.work_dir))
    if seg is None:
        failed.update({s: failed[steps[0]] for s in steps})
        return
    if getattr(cfg, "brain_mask", False) or cfg.volumes:
        summary["brain"] = write_brain_mask(subject, cfg, images, r2img, xfm, stage, seg)
    if cfg.volumes:
        row = _tolerate_segmentation("volumes", failed, subject, lambda: subject_volumes(
            subject.t1w, pid, sid, stage, work_dir=cfg.work_dir, segmentation=seg))
        if row is not None:
            summary["volumes"] = {k: (float(v) if isinstance(v, int | float | np.floating)
                                      and not isinstance(v, bool) else v)
                                  for k, v in row.items()
                                  if k not in ("participant_id", "session_id")}


def write_brain_mask(subject, cfg, images, r2img, xfm, stage, seg) -> dict[str, Any]:
    """Write the brain mask on the T1w and R2* grids; returns its summary.

    Parameters
    ----------
    subject, cfg, images, r2img, xfm, stage
        As for :func:`t1w_anatomy`.
    seg : TissueSegmentation
        The T1w segmentation.

    Returns
    -------
    dict
        ``brain_cm3``, ``n_voxels_r2star``, ``gre_coverage`` (0-1) and
        ``r2star_percentiles_1_50_99`` (s^-1).

    Raises
    ------
    InputError
        When the GRE has signal in less than :data:`MIN_GRE_BRAIN_COVERAGE` of the brain it
        covers (no brain in the GRE, or a GRE of another head than the T1w).
    """
    from ironmap.spatial.brain import brain_mask, mask_on_grid
    from ironmap.workflows.participant import _r2star_reference, source_uri, world_to_source

    pid, sid = subject.participant_id, subject.session_id
    mask = brain_mask(seg.gm, seg.wm, seg.csf, seg.voxel_sizes)
    on_r2 = mask_on_grid(mask, seg.affine, r2img, world_to_source(xfm, "MEGRE", "T1w"))
    coverage = gre_coverage(np.asarray(images.echoes[0].dataobj, dtype=np.float32), on_r2)
    if not np.isfinite(coverage) or coverage < MIN_GRE_BRAIN_COVERAGE:
        raise InputError(f"{subject.echoes[0].path}: GRE signal in only "
                         f"{100 * np.nan_to_num(coverage):.0f}% of the T1w brain it covers "
                         f"(minimum {100 * MIN_GRE_BRAIN_COVERAGE:.0f}%): no brain in the GRE, "
                         "or not the same head as the T1w")
    t1_cm3 = float(mask.sum() * np.prod(seg.voxel_sizes)) / 1000.0
    sidecar = {"Type": "Brain", "Sources": [source_uri(subject.t1w, cfg)],
               "Description": METHODS, "BrainVolume": t1_cm3, "BrainVolumeUnits": "cm3"}
    save_image(mask.astype(np.uint8), seg.affine,
               derivative_path(stage, "brain_mask_t1w", pid, sid), sidecar=sidecar)
    save_image(on_r2.astype(np.uint8), r2img.affine,
               derivative_path(stage, "brain_mask_r2star", pid, sid),
               sidecar={**sidecar, "SpatialReference": _r2star_reference(subject)})
    r2 = np.asarray(r2img.dataobj, dtype=np.float32)[on_r2]
    r2 = r2[np.isfinite(r2)]
    pct = np.percentile(r2, [1, 50, 99]).tolist() if r2.size else [None] * 3
    log.info("%s: brain mask %.0f cm3 (T1w), %d R2* voxels, GRE coverage %.2f",
             subject.label, t1_cm3, int(on_r2.sum()), coverage)
    return {"brain_cm3": t1_cm3, "n_voxels_r2star": int(on_r2.sum()),
            "gre_coverage": float(coverage), "r2star_percentiles_1_50_99": pct}

