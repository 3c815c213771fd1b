"""Registration schedules: CPU time and accuracy of cheaper schedules against today's.

For every pair the participant level registers (T1w fixed; GRE echo 1 and FLAIR moving;
affine; the participant level's schedule from ``workflows.participant.registration_options``)
each candidate schedule is run through ``spatial.registration.register`` exactly as the
participant level calls it (T1w block-averaged once), and compared with today's schedule:

* CPU seconds of the ``register`` call (``time.process_time``; ANTs runs in this process,
  one ITK thread);
* displacement (mm) between the candidate's transform and today's, and, for simulated
  participants, between each and the simulator's true pose (``truth/poses.tsv``): mean and
  maximum over the head voxels of the 2 mm working T1w grid (T1w above 20 % of its 99th
  percentile);
* simulated participants: the regional R2* (mean of a two-point R2* map over each rater
  deep-GM label, labels moved from FLAIR space onto the R2* grid through both transforms, as
  the participant level composes them) with the candidate's transforms, today's, and the true
  ones: the largest change from today's in % and the largest error against the truth-label
  value in %.

Real pairs (``--real``, needs ``IRONMAP_SHARED_DATA``): open_ms_data longitudinal patient01
T1w <- FLAIR, studies 1 and 2 (against today's, and against the database's own intra-study
transform), dcm_qa_xa30 MPRAGE <- GRE echo 1 (against today's only).

Candidates ``seed-checked`` and ``seed-checked-full`` run the participant level's two-seed
check (``spatial.seedcheck.register_seed_checked``: with and without its coarse first step)
and add its columns: ``check_second_run`` (coarse: the coarse seed-2 run agreed; full: the
full seed 2 ran), ``check_coarse_mm`` / ``check_full_mm`` (mean disagreement with seed 1 over
the check's points), both NMIs, ``check_passed`` and ``check_chosen_seed``; their error
columns are those of the result the check keeps.

Usage::

    python benchmarks/registration_schedule.py --sim COHORT [COHORT ...] --real \\
        --candidates today iter-half rigid-coarse --out results.tsv [--nprocs 2]

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

#: candidate schedules: overrides of the participant level's registration options
CANDIDATES: dict[str, dict] = {
    "today": {},
    "today-seed-2": {"seed": 2},  # sampling noise: today's schedule, other metric samples
    "iter-half": {"iterations": (100, 50, 25)},
    "rigid-coarse": {"rigid_levels": 2},
    "rigid-coarse-iter-half": {"rigid_levels": 2, "iterations": (100, 50, 25)},
    "conv-1e-5": {"convergence": (1e-5, 10)},
    "rigid-coarse-conv-1e-5": {"rigid_levels": 2, "convergence": (1e-5, 10)},
    # today's schedule without its coarsest level (shrink 8: about 200 metric samples)
    "no-shrink-8": {"shrink_factors": (4, 2), "smoothing_sigmas": (2.0, 1.0),
                    "iterations": (100, 50)},
    # the participant level's two-seed check (spatial.seedcheck): seed 1 checked by seed 2 on
    # the coarse levels, the full seed 2 only when they disagree; the result it keeps
    "seed-checked": {"seed_check": True},
    # the same check with the full seed 2 always (the check before the coarse step)
    "seed-checked-full": {"seed_check": True, "coarse_first": False},
    # the fixed (T1w) working grid cropped to its head's box widened by 4, 8 or 12 mm
    # (spatial.registration.head_box), the metric sampling the same fraction of its voxels
    "head-box-4": {"head_box_mm": 4.0},
    "head-box-8": {"head_box_mm": 8.0},
    "head-box-12": {"head_box_mm": 12.0},
    "head-box-8-checked": {"head_box_mm": 8.0, "seed_check": True},
    # a larger gradient step (both stages) with half the finest level's iterations
    "step-0.2-fine-25": {"gradient_step": 0.2, "iterations": (200, 100, 25)},
}


def _options(t1w, candidate: str) -> dict:
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant import registration_options

    cfg = RunConfig(bids_dir=Path("."), output_dir=Path("."), analysis_level="participant")
    options = registration_options(t1w, cfg)
    options.update(CANDIDATES[candidate])
    if "iterations" in CANDIDATES[candidate]:
        options["iterations"] = tuple(options["iterations"])[: len(options["shrink_factors"])]
    return options


def head_points(fixed) -> np.ndarray:
    """World mm of the working T1w grid's head voxels (above 20 % of the 99th percentile)."""
    data = np.asarray(fixed.dataobj, dtype=np.float32)
    ijk = np.argwhere(data > 0.2 * np.percentile(data[data > 0], 99))
    return ijk @ fixed.affine[:3, :3].T + fixed.affine[:3, 3]


def _register(fixed, moving, candidate: str, t1w) -> tuple[np.ndarray, float, dict]:
    """(matrix, CPU s, the two-seed check's columns) of one candidate on one pair."""
    from ironmap.spatial.registration import register
    from ironmap.spatial.seedcheck import register_seed_checked

    options = _options(t1w, candidate)
    options.pop("working_voxel_mm", None)
    checked = options.pop("seed_check", False)
    seed = options.pop("seed", 1)
    t0 = time.process_time()
    if checked:
        reg = register_seed_checked(fixed, moving, model="affine", **options)
    else:
        reg = register(fixed, moving, model="affine", seed=seed, **options)
    cpu = time.process_time() - t0
    return np.asarray(reg.matrix, dtype=float), cpu, _check_columns(reg.details)


def _check_columns(details: dict) -> dict:
    """The two-seed check's steps as table columns (empty without a check).

    Every checked row has the same columns (the partial table is appended row by row);
    a step that did not run is NaN.
    """
    check = details.get("seed_check")
    if not check:
        return {}
    full = check.get("second_run", "full") == "full"
    coarse = check.get("coarse") if full else check
    nan = float("nan")
    return {"check_second_run": check.get("second_run", "full"),
            "check_passed": check["passed"], "check_chosen_seed": check["chosen_seed"],
            "check_nmi_seed1": check["nmi"][0],
            "check_nmi_seed2": nan if check["nmi"][1] is None else check["nmi"][1],
            "check_coarse_mm": coarse["disagreement_mean_mm"] if coarse else nan,
            "check_full_mm": check["disagreement_mean_mm"] if full else nan}


def _distance(a, b, points) -> tuple[float, float]:
    from ironmap.spatial.registration import displacement_error

    return displacement_error(a, b, points)


def true_transforms(truth: Path, sub: str) -> dict[str, np.ndarray]:
    """The simulator's true T1w world -> series world matrices (``truth/poses.tsv``)."""
    poses = pd.read_csv(truth / "poses.tsv", sep="\t")

    def pose(series):
        row = poses[(poses.participant_id == sub) & (poses.series == series)].iloc[0]
        return np.array([[row[f"m{i}{j}"] for j in range(4)] for i in range(4)], dtype=float)

    true = {s: np.linalg.inv(pose(s)) @ pose("T1w") for s in ("MEGRE", "FLAIR")}
    true["T1w"] = np.eye(4)
    return true


def _regional(r2, r2img, dseg, xfm) -> pd.Series:
    from ironmap.spatial.grid import resample_labels
    from ironmap.workflows.participant import world_to_source

    labels = resample_labels(dseg, r2img, world_to_source(xfm, "MEGRE", "FLAIR"))
    ok = np.isfinite(r2) & (labels > 0)
    ids = np.unique(labels[ok])
    return pd.Series({int(i): float(r2[ok & (labels == i)].mean()) for i in ids})


def sim_pair_rows(task) -> list[dict]:
    """All candidates on one simulated participant (both pairs + regional R2*)."""
    cohort, sub, candidates = task
    from ironmap import fit_r2star
    from ironmap.spatial.registration import downsample

    bids, truth = Path(cohort) / "bids", Path(cohort) / "truth"
    anat = bids / sub / "anat"
    t1w = nib.load(anat / f"{sub}_T1w.nii.gz")
    flair = nib.load(anat / f"{sub}_FLAIR.nii.gz")
    echoes = [nib.load(p) for p in sorted(anat.glob(f"{sub}_echo-*_part-mag_MEGRE.nii.gz"))]
    import json

    te = [json.loads(p.read_text())["EchoTime"]
          for p in sorted(anat.glob(f"{sub}_echo-*_part-mag_MEGRE.json"))]
    true = true_transforms(truth, sub)
    fixed = downsample(t1w, 2.0)
    points = head_points(fixed)
    data = np.stack([np.asarray(e.dataobj, dtype=np.float64) for e in echoes], axis=-1)
    r2 = np.asarray(fit_r2star(data, np.asarray(te), "two_point").r2star, dtype=float)
    r2img = echoes[0]
    dseg = nib.load(bids / "derivatives" / "raters" / sub / "anat"
                    / f"{sub}_desc-deepgm_dseg.nii.gz")
    truth_regions = _regional(r2, r2img, dseg, true)
    results = {}
    rows = []
    for cand in candidates:
        xfm = {"T1w": np.eye(4)}
        for series, moving in (("MEGRE", echoes[0]), ("FLAIR", flair)):
            xfm[series], cpu, check = _register(fixed, moving, cand, t1w)
            mean_t, max_t = _distance(xfm[series], true[series], points)
            rows.append({"cohort": Path(cohort).name, "subject": sub, "pair": f"T1w<-{series}",
                         "candidate": cand, "cpu_s": round(cpu, 3),
                         "err_truth_mean_mm": mean_t, "err_truth_max_mm": max_t, **check})
        results[cand] = xfm
        reg = _regional(r2, r2img, dseg, xfm)
        err = (100 * (reg - truth_regions) / truth_regions).abs().max()
        for r in rows[-2:]:
            r["regional_err_vs_truth_pct"] = float(err)
    base = results.get("today")
    if base is not None:
        base_regions = _regional(r2, r2img, dseg, base)
        for r in rows:
            series = r["pair"].split("<-")[1]
            mean_d, max_d = _distance(results[r["candidate"]][series], base[series], points)
            r["moved_mean_mm"], r["moved_max_mm"] = mean_d, max_d
            reg = _regional(r2, r2img, dseg, results[r["candidate"]])
            r["regional_change_pct"] = float((100 * (reg - base_regions)
                                              / base_regions).abs().max())
    print(f"{Path(cohort).name} {sub} done", flush=True)
    return rows


def real_pairs(root: Path) -> list[tuple[str, Path, Path, Path | None]]:
    """(name, fixed T1w, moving, reference ITK transform or None) of the real pairs."""
    pairs = []
    ms = root / "open_ms_data" / "longitudinal" / "raw" / "patient01"
    for study in ("study1", "study2"):
        if (ms / f"{study}_T1W.nii.gz").exists():
            pairs.append((f"open_ms patient01 {study} T1w<-FLAIR", ms / f"{study}_T1W.nii.gz",
                          ms / f"{study}_FLAIR.nii.gz",
                          ms / f"{study}_T1W_intrastudy_to_FLAIR.txt"))
    xa = root / "dcm_qa_xa30" / "nifti_ref"
    if (xa / "5_anat-T1w_acq-tfl.nii").exists():
        pairs.append(("dcm_qa_xa30 MPRAGE<-GRE echo 1", xa / "5_anat-T1w_acq-tfl.nii",
                      xa / "8_gre_field_mapping_e1.nii", None))
    return pairs


def real_pair_rows(task) -> list[dict]:
    """All candidates on one real pair."""
    (name, fixed_path, moving_path, ref_path), candidates = task
    from ironmap.spatial.registration import downsample, parse_itk_text

    t1w = nib.squeeze_image(nib.load(fixed_path))
    moving = nib.squeeze_image(nib.load(moving_path))
    if moving.ndim == 4:
        moving = moving.slicer[..., 0]
    fixed = downsample(t1w, 2.0)
    points = head_points(fixed)
    ref = None
    if ref_path is not None:  # FLAIR fixed -> T1w moving in the database: invert it
        ref = np.linalg.inv(parse_itk_text(ref_path.read_text(), str(ref_path)))
    out, rows = {}, []
    for cand in candidates:
        out[cand], cpu, check = _register(fixed, moving, cand, t1w)
        row = {"cohort": "real", "subject": name, "pair": name.split()[-1], "candidate": cand,
               "cpu_s": round(cpu, 3), **check}
        if ref is not None:
            row["err_reference_mean_mm"], row["err_reference_max_mm"] = _distance(
                out[cand], ref, points)
        rows.append(row)
    if "today" in out:
        for r in rows:
            r["moved_mean_mm"], r["moved_max_mm"] = _distance(out[r["candidate"]],
                                                              out["today"], points)
    print(f"{name} done", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim", nargs="*", default=[], type=Path, help="simulated cohorts")
    p.add_argument("--real", action="store_true", help="the real pairs of the shared data")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES),
                   choices=list(CANDIDATES))
    p.add_argument("--out", type=Path, required=True, help="result table (TSV)")
    p.add_argument("--nprocs", type=int, default=1)
    args = p.parse_args(argv)
    cands = list(dict.fromkeys(["today", *args.candidates]))
    tasks = [(str(c), s.name, cands) for c in args.sim
             for s in sorted((c / "bids").glob("sub-*"))]
    real = []
    if args.real:
        root = os.environ.get("IRONMAP_SHARED_DATA")
        if not root:
            p.error("--real needs IRONMAP_SHARED_DATA")
        real = [(pair, cands) for pair in real_pairs(Path(root))]
    jobs = [(sim_pair_rows, t) for t in tasks] + [(real_pair_rows, t) for t in real]
    partial = args.out.with_suffix(".partial.tsv")
    partial.unlink(missing_ok=True)
    parts = []
    if args.nprocs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.nprocs) as pool:
            for rows in pool.imap_unordered(_apply, jobs, chunksize=1):
                parts.append(rows)
                _append(partial, rows)
    else:
        for job in jobs:
            parts.append(_apply(job))
            _append(partial, parts[-1])
    table = pd.DataFrame([r for part in parts for r in part])
    table.to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    summarise(table)
    return 0


def _append(path: Path, rows: list[dict]) -> None:
    """Rows of one participant or pair appended as they finish (a long run can be read)."""
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, float_format="%.4g", mode="a",
                              header=not path.exists())


def _apply(job):
    func, task = job
    return func(task)


def summarise(table: pd.DataFrame) -> None:
    """Print per candidate: CPU-s, errors, moves."""
    cols = [c for c in ("cpu_s", "err_truth_mean_mm", "err_truth_max_mm", "moved_mean_mm",
                        "moved_max_mm", "regional_change_pct", "regional_err_vs_truth_pct",
                        "err_reference_mean_mm", "check_coarse_mm", "check_full_mm")
            if c in table]
    agg = table.groupby(["cohort" if "cohort" in table else "candidate", "candidate"])[cols]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(agg.agg(["mean", "max"]).round(3))


if __name__ == "__main__":
    sys.exit(main())
