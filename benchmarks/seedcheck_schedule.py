"""Cheaper coarse steps of the two-seed registration check, against today's and the truth.

The participant level keeps seed 1's registration unchanged whenever the check's coarse
seed-2 run (``spatial.seedcheck.coarse_schedule``) agrees with it within 2 mm, so a cheaper
coarse step changes no output of a participant whose check passes; it only has to agree as
often on correct pairs (false alarms cost a full seed-2 run) and still disagree where seed 1
failed. For every pair the participant level registers (T1w fixed, block-averaged once;
GRE echo 1 and FLAIR moving; affine; the participant level's schedule) this runs seed 1's
full registration once and then each candidate coarse step (:data:`CHECKS`) with seed 2, and
writes per pair and candidate:

* ``seed1_err_mm``: seed 1's mean distance from the simulator's true pose over the head voxels
  of the 2 mm T1w grid (as ``registration_schedule.py``);
* ``check_mm``: the candidate's mean disagreement with seed 1 over the check's 125 points
  (the number the check compares with its 2 mm tolerance), and ``check_err_mm`` its own
  distance from the true pose;
* ``check_cpu_s``: CPU seconds of the candidate run (``time.process_time``, one ITK thread,
  the image preparation included).

The summary counts, per candidate, false alarms (``check_mm`` > 2 where seed 1 is within 1 mm
of the true pose) and catches (``check_mm`` > 2 where seed 1 is more than 3 mm off).

Usage::

    python benchmarks/seedcheck_schedule.py --sim COHORT [COHORT ...] --out T.tsv \\
        [--checks today grid-4mm ...]

where COHORT is an ``ironmap simulate`` output folder (``bids/`` + ``truth/``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))
from registration_schedule import head_points, true_transforms  # noqa: E402

#: the check's tolerance (mm) and the truth bounds of a correct / a failed seed-1 result
TOLERANCE_MM, CORRECT_MM, FAILED_MM = 2.0, 1.0, 3.0


def _smoothed(sigma_vox: float):
    """Image preparation: a Gaussian of ``sigma_vox`` voxels, once, outside ANTs."""
    from scipy.ndimage import gaussian_filter

    def prepare(img):
        data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
        return nib.Nifti1Image(gaussian_filter(data, sigma_vox, mode="nearest", truncate=3.0),
                               img.affine)

    return prepare


def _coarse(options: dict, *, grid: int = 1, sigma_scale: float | None = None,
            presmooth_vox: float | None = None, **overrides) -> tuple[dict, object]:
    """Today's coarse step, optionally on a ``grid``-times coarser working grid (same level
    sizes in mm: shrink factors divided by ``grid``, sigmas scaled by ``sigma_scale``, default
    ``1 / grid``), or with ANTs' smoothing replaced by one Gaussian of ``presmooth_vox``."""
    from ironmap.spatial.registration import WORKING_VOXEL_MM
    from ironmap.spatial.seedcheck import coarse_schedule

    check = coarse_schedule(options)
    if grid > 1:
        scale = 1.0 / grid if sigma_scale is None else sigma_scale
        check["working_voxel_mm"] = WORKING_VOXEL_MM * grid
        check["shrink_factors"] = tuple(f // grid for f in check["shrink_factors"])
        check["smoothing_sigmas"] = tuple(s * scale for s in check["smoothing_sigmas"])
    prepare = None
    if presmooth_vox is not None:
        check["smoothing_sigmas"] = tuple(0.0 for _ in check["smoothing_sigmas"])
        prepare = _smoothed(presmooth_vox) if presmooth_vox > 0 else None
    check.update(overrides)
    return check, prepare


#: candidate coarse steps: name -> options of the full schedule -> (check options, image
#: preparation or None)
CHECKS = {
    "today": lambda o: _coarse(o),
    # the rigid stage on the first (coarsest) level only, the affine stage on both
    "rigid-first-level": lambda o: _coarse(o, rigid_levels=1),
    # both images block-averaged to 4 mm first (ANTs smooths 8x fewer voxels)
    "grid-4mm": lambda o: _coarse(o, grid=2),
    "grid-4mm-rigid-first-level": lambda o: _coarse(o, grid=2, rigid_levels=1),
    "grid-4mm-sigma-vox-kept": lambda o: _coarse(o, grid=2, sigma_scale=1.0),
    "grid-4mm-sampling-1": lambda o: _coarse(o, grid=2, sampling_rate=1.0),
    "grid-4mm-sigma-vox-kept-sampling-1": lambda o: _coarse(o, grid=2, sigma_scale=1.0,
                                                            sampling_rate=1.0),
    # ANTs' per-level smoothing (about 0.1 CPU-s per level and stage) replaced by one
    # Gaussian of 1 or 2 voxels before ANTs, or left out
    "presmooth-1vox": lambda o: _coarse(o, presmooth_vox=1.0),
    "presmooth-2vox": lambda o: _coarse(o, presmooth_vox=2.0),
    "unsmoothed": lambda o: _coarse(o, presmooth_vox=0.0),
}


def pair_rows(cohort: Path, sub: str, checks: list[str]) -> list[dict]:
    """Seed 1 once, then every candidate coarse step, on both pairs of one participant."""
    from ironmap.spatial.registration import displacement_error, downsample, register
    from ironmap.spatial.seedcheck import check_points
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant import registration_options

    anat = cohort / "bids" / sub / "anat"
    t1w = nib.load(anat / f"{sub}_T1w.nii.gz")
    series = {"MEGRE": sorted(anat.glob(f"{sub}_echo-*_part-mag_MEGRE.nii.gz"))[0],
              "FLAIR": anat / f"{sub}_FLAIR.nii.gz"}
    true = true_transforms(cohort / "truth", sub)
    cfg = RunConfig(bids_dir=Path("."), output_dir=Path("."), analysis_level="participant")
    options = registration_options(t1w, cfg)
    fixed = downsample(t1w, options.get("working_voxel_mm", 2.0))
    head, points = head_points(fixed), check_points(fixed)
    rows = []
    for name, path in series.items():
        moving = downsample(nib.load(path), options.get("working_voxel_mm", 2.0))
        t0 = time.process_time()
        first = register(fixed, moving, model="affine", seed=1, measure_similarity=False,
                         **options).matrix
        cpu1 = time.process_time() - t0
        err1 = displacement_error(first, true[name], head)[0]
        for check in checks:
            check_options, prepare = CHECKS[check](dict(options))
            t0 = time.process_time()
            f, m = (fixed, moving) if prepare is None else (prepare(fixed), prepare(moving))
            second = register(f, m, model="affine", seed=2, measure_similarity=False,
                              **check_options).matrix
            cpu = time.process_time() - t0
            rows.append({"cohort": cohort.name, "subject": sub, "pair": f"T1w<-{name}",
                         "check": check, "seed1_cpu_s": round(cpu1, 3),
                         "seed1_err_mm": displacement_error(first, true[name], head)[0],
                         "check_mm": displacement_error(first, second, points)[0],
                         "check_err_mm": displacement_error(second, true[name], head)[0],
                         "check_cpu_s": round(cpu, 3)})
        print(f"{cohort.name} {sub} {name}: seed 1 {err1:.2f} mm from the true pose", flush=True)
    return rows


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per candidate: mean CPU-s, disagreement (median, max on correct pairs), alarms."""
    correct = table.seed1_err_mm <= CORRECT_MM
    failed = table.seed1_err_mm > FAILED_MM
    alarm = table.check_mm > TOLERANCE_MM
    out = pd.DataFrame({
        "pairs": table.groupby("check").size(),
        "check_cpu_s_mean": table.groupby("check").check_cpu_s.mean(),
        "check_mm_median_correct": table[correct].groupby("check").check_mm.median(),
        "check_mm_max_correct": table[correct].groupby("check").check_mm.max(),
        "false_alarms": (alarm & correct).groupby(table.check).sum(),
        "failed_pairs": failed.groupby(table.check).sum(),
        "caught": (alarm & failed).groupby(table.check).sum(),
    })
    return out.round(3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim", nargs="+", required=True, type=Path, help="simulated cohorts")
    p.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    p.add_argument("--out", type=Path, required=True, help="result table (TSV)")
    args = p.parse_args(argv)
    checks = list(dict.fromkeys(["today", *args.checks]))
    rows = []
    for cohort in args.sim:
        for sub in sorted(s.name for s in (cohort / "bids").glob("sub-*")):
            rows += pair_rows(cohort, sub, checks)
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarise(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
