"""Within-subject lesion and brain volume change on simulated sessions (known truth).

``ironmap simulate --sessions 2`` writes each participant's sessions at one head pose; here
the later session's images are moved by a known rigid motion (their affines changed: the same
voxels at another place in the scanner), then
:func:`ironmap.spatial.withinsubject.within_subject_change` registers the later session onto
the first and measures new/enlarging lesions and brain volume change. Truth: both sessions'
phantoms evaluated at the first FLAIR's voxel centres through its pose (``truth/poses.tsv``,
``truth/geometry.json``; new/enlarged = lesion at the later session, not at the first), the
known map between the sessions (each scan has its own head pose, composed with the extra
motion) and the brain (GM + WM) volumes (``truth/volumes.tsv``).

Usage::

    python benchmarks/longitudinal_change.py [--seed 1] [--rrms 1 --spms 1 --ppms 0]
        [--interval-years 3] [--no-jacobian]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.core.lesions.lesion_change import change_overlap, percent_volume_change
from ironmap.sim.change import new_lesion_truth, pose_matrix
from ironmap.sim.poses import rigid_matrix
from ironmap.spatial.grid import resample_labels, voxel_sizes
from ironmap.spatial.registration import displacement_error
from ironmap.spatial.withinsubject import SessionImages, within_subject_change

#: The known motion of the later session (degrees about x, y, z; mm).
MOTION = rigid_matrix((3.0, -2.0, 4.0), (4.0, -3.0, 2.0))


def moved(img: nib.Nifti1Image, motion: np.ndarray) -> nib.Nifti1Image:
    """The same voxels placed elsewhere in the world: affine ``motion @ affine``."""
    return nib.Nifti1Image(np.asarray(img.dataobj), motion @ img.affine)


def simulate(out: Path, seed: int, counts: dict[str, int], years: float) -> None:
    """A small cohort with two sessions per participant (fast preset, one site)."""
    from ironmap.workflows.simulate import simulate_cohort

    simulate_cohort(out, subjects_per_group=counts, seed=seed, sessions=2,
                    interval_years=years, preset="fast", sites=1)


def evaluate(root: Path, pid: str, jacobian: bool = True) -> dict:
    """One simulated participant: change measured vs the simulator's truth."""
    bids = root / "bids" / pid
    sessions = {}
    for ses in ("ses-01", "ses-02"):
        anat = bids / ses / "anat"
        flair = nib.load(anat / f"{pid}_{ses}_FLAIR.nii.gz")
        t1w = nib.load(anat / f"{pid}_{ses}_T1w.nii.gz")
        if ses == "ses-02":
            flair, t1w = moved(flair, MOTION), moved(t1w, MOTION)
        sessions[ses] = SessionImages(ses, flair, t1w)
    t0 = time.perf_counter()
    res = within_subject_change(sessions["ses-01"], sessions["ses-02"], jacobian=jacobian)
    seconds = time.perf_counter() - t0
    poses = pd.read_csv(root / "truth" / "poses.tsv", sep="\t")
    geometry = json.loads((root / "truth" / "geometry.json").read_text())
    w1, w2 = (pose_matrix(poses, pid, s) for s in ("ses-01", "ses-02"))
    true_matrix = MOTION @ np.linalg.inv(w2) @ w1  # first FLAIR world -> moved later world
    flair1 = sessions["ses-01"].flair
    truth = new_lesion_truth(geometry[f"{pid}_ses-01"], geometry[f"{pid}_ses-02"],
                             flair1.shape, flair1.affine, w1)
    found = resample_labels(nib.Nifti1Image(res.lesions.mask.astype(np.uint8), res.grid.affine),
                            flair1, np.linalg.inv(res.mid_to_first)) > 0
    brain1 = flair1.get_fdata() > 0
    pts = (flair1.affine @ np.c_[np.argwhere(brain1), np.ones(int(brain1.sum()))].T)[:3].T
    err_mean, err_max = displacement_error(res.later_to_first, true_matrix, pts)
    vols = pd.read_csv(root / "truth" / "volumes.tsv", sep="\t")
    v = vols[vols.participant_id == pid].set_index("session_id")
    true_brain = [float(v.loc[s, "gm_cm3"] + v.loc[s, "wm_cm3"]) for s in ("ses-01", "ses-02")]
    overlap = change_overlap(found, truth, voxel_sizes(flair1.affine))
    s = res.summary
    return {"participant_id": pid, "registration_error_mm_mean": round(err_mean, 3),
            "registration_error_mm_max": round(err_max, 3),
            "new_lesion_dice": round(overlap["dice"], 3),
            "new_lesion_cm3": round(overlap["pred_cm3"], 3),
            "true_new_lesion_cm3": round(overlap["truth_cm3"], 3),
            "true_change_lesions": overlap["truth_lesions"],
            "change_lesions_detected": overlap["truth_lesions_detected"],
            "detected_components": overlap["pred_lesions"],
            "detected_components_true": overlap["pred_lesions_true"],
            "brain_change_percent": s.get("brain_change_percent"),
            "jacobian_pbvc_percent": s.get("jacobian_pbvc_percent"),
            "true_brain_change_percent": round(percent_volume_change(*true_brain), 3),
            "segmentation_error": s.get("segmentation_error", ""),
            "seconds": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rrms", type=int, default=1)
    ap.add_argument("--spms", type=int, default=1)
    ap.add_argument("--ppms", type=int, default=0)
    ap.add_argument("--interval-years", type=float, default=3.0)
    ap.add_argument("--no-jacobian", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="keep the simulation here")
    ap.add_argument("--participant", nargs="+", default=None, help="only these sub-* labels")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="ironmap-change-"))
    try:
        if not (root / "truth" / "volumes.tsv").exists():
            simulate(root, args.seed, {"HC": 0, "RRMS": args.rrms, "SPMS": args.spms,
                                       "PPMS": args.ppms}, args.interval_years)
        pids = sorted(p.name for p in (root / "bids").glob("sub-*") if p.is_dir())
        rows = []
        for pid in args.participant or pids:
            rows.append(evaluate(root, pid, not args.no_jacobian))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        print(json.dumps({"seed": args.seed, "interval_years": args.interval_years,
                          "participants": rows}, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
