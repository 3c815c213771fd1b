"""Lesion and volume change on real longitudinal MS data (two sessions, FLAIR + T1w, no GRE).

Data: ``$IRONMAP_SHARED_DATA/open_ms_data/longitudinal/raw/patient01`` (Ljubljana longitudinal
MS database, CC-BY; Lesjak et al. 2016): raw FLAIR and T1w of two studies 203 days apart, the
database's T1w->FLAIR and FLAIR->common-space affine transforms, and its consensus mask of
lesion change (new and enlarging lesions) in the common space.

These data have no multi-echo GRE, so no R2* can be measured: the participant level refuses
each session ("no magnitude MEGRE echoes"). What runs, per session of a BIDS session layout
written to a temporary folder:

1. tissue volumes from the T1w (``ironmap.spatial.segmentation.segment_tissues``, the
   participant level's ``--volumes`` step); its error is reported when it fails;
2. lesions on the FLAIR: by default the automatic segmentation of ``ironmap lesions
   segment`` with the session's T1w (``ironmap.workflows.lesion_segmentation.segment_from_file``);
   with ``--lesions grow`` the older ``ironmap lesions grow --propose``
   (``ironmap.workflows.lesion_growing.grow_from_file``) inside a rough brain mask (largest bright
   FLAIR component after a 4 mm erosion, dilated back; :func:`rough_brain_mask`);
3. lesion change: both sessions' lesion masks taken into the common space with the
   database's FLAIR->common transforms; voxels lesional at session 2 but not at session 1
   are compared with the consensus change mask (voxel overlap, detected change lesions).

Usage::

    python benchmarks/longitudinal_realdata.py [--out DIR] [--lesions segment|grow]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.regions.tissue_volumes import (
    implausible_volumes,
    normalise_volumes,
    scaling_factor,
    tissue_volumes,
)
from ironmap.io.bids import discover
from ironmap.spatial.grid import resample_labels
from ironmap.spatial.registration import parse_itk_text
from ironmap.spatial.segmentation import segment_tissues
from ironmap.workflows.lesion_growing import grow_from_file

PATIENT = "patient01"
DAYS_BETWEEN = 203  # longitudinal/patient_info.csv
AGE = 20


def data_dir() -> Path:
    root = Path(os.environ.get("IRONMAP_SHARED_DATA", Path(__file__).resolve().parents[2]
                               / "shared" / "data"))
    return root / "open_ms_data" / "longitudinal" / "raw" / PATIENT


def write_bids(src: Path, bids: Path) -> None:
    """A raw BIDS session layout of the two studies (symbolic links to the images)."""
    (bids / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "open_ms_data longitudinal", "BIDSVersion": "1.9.0"}))
    (bids / "participants.tsv").write_text("participant_id\tage\tsex\tgroup\n"
                                           f"sub-{PATIENT}\t{AGE}\tF\tMS\n")
    sub = bids / f"sub-{PATIENT}"
    sub.mkdir(exist_ok=True)
    years = DAYS_BETWEEN / 365.25
    (sub / f"sub-{PATIENT}_sessions.tsv").write_text(
        f"session_id\tage\nses-1\t{AGE}\nses-2\t{AGE + years:.3f}\n")
    for k in (1, 2):
        anat = sub / f"ses-{k}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for name, suffix in (("FLAIR", "FLAIR"), ("T1W", "T1w")):
            link = anat / f"sub-{PATIENT}_ses-{k}_{suffix}.nii.gz"
            if not link.exists():
                link.symlink_to(src / f"study{k}_{name}.nii.gz")


def rough_brain_mask(flair: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    """Largest bright component of the FLAIR after a 4 mm erosion (scalp cut off at the dark
    skull), dilated back and hole-filled: a rough brain mask for seeding lesions."""
    from skimage.filters import threshold_otsu

    fg = flair > threshold_otsu(flair[flair > 0])
    r = np.maximum(np.round(4.0 / voxel_mm).astype(int), 1)
    ball = np.ones(2 * r + 1, dtype=bool)
    core = ndimage.binary_erosion(fg, structure=ball)
    lab, n = ndimage.label(core)
    if n == 0:
        return fg
    big = lab == 1 + int(np.argmax(ndimage.sum(core, lab, range(1, n + 1))))
    brain = ndimage.binary_dilation(big, structure=ball) & fg
    return ndimage.binary_fill_holes(brain)


def volumes_step(t1_path: Path, k: int, work: Path) -> dict:
    """Tissue volumes of the T1w (the ``--volumes`` step), or the error it raised."""
    from ironmap.spatial.segmentation import SegmentationError

    t1 = nib.load(t1_path)
    t0 = time.perf_counter()
    try:
        seg = segment_tissues(t1, label=f"ses-{k} T1w", workdir=str(work))
    except SegmentationError as exc:
        return {"error": str(exc), "seconds": round(time.perf_counter() - t0, 1)}
    vox = np.sqrt((t1.affine[:3, :3] ** 2).sum(axis=0))
    vols = normalise_volumes(tissue_volumes(seg.gm, seg.wm, seg.csf, vox, deep_gm=seg.deep),
                             scaling_factor(seg.subject_to_template))
    problems = implausible_volumes(vols, getattr(seg, "template_brain_cm3", None))
    return {"volumes_cm3": {c: round(float(v), 2) for c, v in vols.items()},
            "volumes_valid": not problems, "volumes_qc": problems,
            "registration_similarity": round(float(seg.similarity), 3),
            "seconds": round(time.perf_counter() - t0, 1)}


def session_step(src: Path, bids: Path, work: Path, k: int, volumes: bool,
                 lesions: str = "segment") -> dict:
    anat = bids / f"sub-{PATIENT}" / f"ses-{k}" / "anat"
    flair_path = anat / f"sub-{PATIENT}_ses-{k}_FLAIR.nii.gz"
    out = volumes_step(anat / f"sub-{PATIENT}_ses-{k}_T1w.nii.gz", k, work) if volumes else {}
    flair = nib.load(flair_path)
    fvox_mm = np.sqrt((flair.affine[:3, :3] ** 2).sum(axis=0))
    brain = rough_brain_mask(flair.get_fdata(), fvox_mm)
    brain_path = work / f"ses-{k}_brainmask.nii.gz"
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), flair.affine), brain_path)
    lesion_path = work / f"sub-{PATIENT}_ses-{k}_label-lesion_mask.nii.gz"
    t0 = time.perf_counter()
    extra = {}
    if lesions == "grow":
        table = grow_from_file(flair_path, lesion_path, propose=True,
                               brain_mask_path=brain_path, overwrite=True)
        extra["seeds_grown"] = int((table["status"] == "ok").sum())
    else:
        from ironmap.workflows.lesion_segmentation import LesionSegError, segment_from_file

        try:
            segment_from_file(flair_path, lesion_path, overwrite=True,
                              t1w_path=anat / f"sub-{PATIENT}_ses-{k}_T1w.nii.gz")
        except LesionSegError as exc:  # reported, then the seedless growing is used
            extra["lesion_segment_error"] = str(exc).replace(str(work), "WORK")
            return session_step(src, bids, work, k, False, "grow") | out | extra
    mask = nib.load(lesion_path).get_fdata() > 0
    fvox = float(np.prod(fvox_mm)) / 1000.0
    return {**out, "lesion_method": lesions,
            "brain_mask_cm3": round(float(brain.sum()) * fvox, 1),
            "lesion_volume_cm3": round(float(mask.sum()) * fvox, 3),
            "lesion_count": int(ndimage.label(mask)[1]), **extra,
            "lesion_seconds": round(time.perf_counter() - t0, 1),
            "lesion_mask": str(lesion_path)}


def lesion_change(src: Path, sessions: dict) -> dict:
    gt = nib.load(src / "gt.nii.gz")
    common = []
    for k in (1, 2):
        to_flair = parse_itk_text((src / f"study{k}_FLAIR_to_common_space.txt").read_text())
        common.append(resample_labels(nib.load(sessions[k]["lesion_mask"]), gt,
                                      world_to_source=to_flair) > 0)
    vox = float(np.prod(np.sqrt((gt.affine[:3, :3] ** 2).sum(axis=0)))) / 1000.0
    new = common[1] & ~common[0]
    truth = gt.get_fdata() > 0
    labels, n_gt = ndimage.label(truth)
    hit = np.unique(labels[new & truth])
    dice = 2 * (new & truth).sum() / max(new.sum() + truth.sum(), 1)
    return {"lesion_volume_common_cm3": [round(float(m.sum()) * vox, 3) for m in common],
            "new_or_enlarged_cm3": round(float(new.sum()) * vox, 3),
            "consensus_change_cm3": round(float(truth.sum()) * vox, 3),
            "consensus_change_lesions": int(n_gt),
            "consensus_change_lesions_touched": int((hit > 0).sum()),
            "voxel_dice_with_consensus": round(float(dice), 3)}


def within_subject(src: Path, jacobian: bool = True) -> dict:
    """The ``--longitudinal-template`` route: study 2 registered onto study 1 (rigid,
    mid-space), lesion change by FLAIR subtraction, brain volume change from both T1w
    segmentations and the Jacobian; compared with the database's transforms and consensus."""
    from ironmap.core.lesions.lesion_change import change_overlap
    from ironmap.spatial.registration import displacement_error
    from ironmap.spatial.withinsubject import SessionImages, within_subject_change

    ses = [SessionImages(f"ses-{k}", nib.load(src / f"study{k}_FLAIR.nii.gz"),
                         nib.load(src / f"study{k}_T1W.nii.gz")) for k in (1, 2)]
    t0 = time.perf_counter()
    res = within_subject_change(ses[0], ses[1], jacobian=jacobian)
    seconds = time.perf_counter() - t0
    # the database's FLAIR -> common transforms: common world -> study k FLAIR world
    common_to = [parse_itk_text((src / f"study{k}_FLAIR_to_common_space.txt").read_text())
                 for k in (1, 2)]
    reference = common_to[1] @ np.linalg.inv(common_to[0])  # study 1 -> study 2 world
    ijk = np.argwhere(res.brain)
    pts = (res.mid_to_first @ res.grid.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    err_mean, err_max = displacement_error(res.later_to_first, reference, pts)
    gt = nib.load(src / "gt.nii.gz")
    mask = nib.Nifti1Image(res.lesions.mask.astype(np.uint8), res.grid.affine)
    found = resample_labels(mask, gt, np.linalg.inv(res.mid_to_first) @ common_to[0]) > 0
    overlap = change_overlap(found, gt.get_fdata() > 0,
                             np.sqrt((gt.affine[:3, :3] ** 2).sum(axis=0)))
    return {**res.summary, "seconds": round(seconds, 1),
            "registration_vs_database_mm": {"mean": round(err_mean, 2),
                                            "max": round(err_max, 2)},
            "lesion_change_vs_consensus": {k: round(v, 3) if isinstance(v, float) else v
                                           for k, v in overlap.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="keep the work folder here")
    ap.add_argument("--no-volumes", action="store_true", help="skip the T1w volume step")
    ap.add_argument("--lesions", choices=["segment", "grow"], default="segment",
                    help="automatic segmentation (default) or seedless growing")
    ap.add_argument("--within-subject", action="store_true",
                    help="only the within-subject route (--longitudinal-template)")
    ap.add_argument("--no-jacobian", action="store_true", help="skip the Jacobian (SyN)")
    args = ap.parse_args()
    src = data_dir()
    if not src.is_dir():
        print(json.dumps({"skipped": f"{src} is absent"}))
        return 0
    if args.within_subject:
        print(json.dumps(within_subject(src, not args.no_jacobian), indent=2))
        return 0
    work = args.out or Path(tempfile.mkdtemp(prefix="ironmap-long-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bids = work / "bids"
        write_bids(src, bids)
        found = discover(bids)
        res = {"sessions_found": [s.label for s in found],
               "participant_level_problems": {s.label: list(s.problems) for s in found}}
        sessions = {k: session_step(src, bids, work, k, not args.no_volumes, args.lesions)
                    for k in (1, 2)}
        res["sessions"] = {f"ses-{k}": v for k, v in sessions.items()}
        if not all(sessions[k].get("volumes_valid", True) for k in (1, 2)):
            res["volume_change_percent"] = "not reported: a session's volumes were refused"
        elif all("volumes_cm3" in sessions[k] for k in (1, 2)):
            v1, v2 = (sessions[k]["volumes_cm3"] for k in (1, 2))
            res["volume_change_percent"] = {
                c: round(100 * (v2[c] / v1[c] - 1), 2) for c in v1 if v1[c]}
        res["lesion_volume_change_cm3"] = round(
            sessions[2]["lesion_volume_cm3"] - sessions[1]["lesion_volume_cm3"], 3)
        res["lesion_change"] = lesion_change(src, sessions)
        print(json.dumps(res, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
