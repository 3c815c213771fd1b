"""Participant-level benchmark: wall time and peak memory per subject, cohort throughput.

Simulates a cohort (``ironmap simulate``; default: the seed study's protocol resolution, MEGRE
1x1x2 mm, T1w 1 mm, FLAIR 1x1x3 mm), then

1. runs every subject alone in a fresh process (``ironmap BIDS OUT participant
   --participant-label X``) and reports its wall time and peak resident memory (``wait4``);
2. runs the whole cohort with ``--nprocs 1`` and ``--nprocs 2`` (Dask LocalCluster) and
   reports the throughput in subjects per hour.

Usage::

    python benchmarks/participant.py --work /tmp/ironmap-bench [--subjects 2] [--preset seed]
        [--no-per-subject] [--no-throughput]

``--nprocs 2`` runs the participants in two spawned worker processes (``ironmap.parallel``);
``IRONMAP_LOCAL_EXECUTOR=dask`` in the environment measures the Dask LocalCluster instead.

Numbers depend on the machine and its load; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _run(cmd: list[str], log: Path) -> tuple[float, float, float, int]:
    """Run a command; returns (wall s, CPU s, peak RSS MiB, exit code).

    CPU time and peak resident memory come from ``wait4`` on the command's process; the CPU
    time includes its finished child processes (the Dask workers it started and reaped).
    """
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0, proc.returncode


def simulate(work: Path, subjects: int, preset: str, seed: int) -> Path:
    from ironmap.workflows.simulate import simulate_cohort

    cohort = work / "cohort"
    if (cohort / "bids" / "participants.tsv").exists():
        return cohort / "bids"
    t0 = time.perf_counter()
    sim = simulate_cohort(cohort, subjects_per_group={"HC": subjects // 2,
                                                      "RRMS": subjects - subjects // 2},
                          sites=2, preset=preset, seed=seed, nprocs=2)
    print(f"simulated {sim.n_subjects} subjects ({preset}) in {time.perf_counter() - t0:.0f} s")
    return sim.bids_dir


def per_subject(bids: Path, work: Path) -> list[dict]:
    masks = bids / "derivatives" / "raters"
    subjects = sorted(p.name for p in bids.glob("sub-*"))
    rows = []
    for sub in subjects:
        out = work / "single"
        wall, cpu, rss, rc = _run([sys.executable, "-m", "ironmap.cli.main", str(bids),
                                   str(out), "participant", "--participant-label", sub,
                                   "--masks", str(masks), "--overwrite"],
                                  work / f"single-{sub}.log")
        rows.append({"subject": sub, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "peak_rss_mib": round(rss), "load_average_1min": os.getloadavg()[0],
                     "exit_code": rc})
        print(f"{sub}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MiB, exit {rc}")
    return rows


def throughput(bids: Path, work: Path, nprocs: int) -> dict:
    masks = bids / "derivatives" / "raters"
    out = work / f"cohort-np{nprocs}"
    shutil.rmtree(out, ignore_errors=True)
    n = len(list(bids.glob("sub-*")))
    wall, cpu, _, rc = _run([sys.executable, "-m", "ironmap.cli.main", str(bids), str(out),
                            "participant", "--masks", str(masks), "--nprocs", str(nprocs)],
                           work / f"cohort-np{nprocs}.log")
    row = {"nprocs": nprocs, "subjects": n, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "cpu_s_per_subject": round(cpu / n, 2),
           "subjects_per_hour": round(3600 * n / wall, 1),
           "load_average_1min": os.getloadavg()[0], "exit_code": rc}
    print(f"--nprocs {nprocs}: {n} subjects in {wall:.1f} s ({cpu:.1f} CPU-s with the worker "
          f"processes, {cpu / n:.2f} per subject) = {row['subjects_per_hour']} subjects/h, "
          f"exit {rc}")
    span = task_span(out)
    if span:
        row["task_span_s"] = round(span, 1)
        print(f"    first participant start -> last participant done: {span:.1f} s (the rest "
              "is start-up: imports, Dask cluster, and shutdown)")
    return row


def task_span(out: Path) -> float | None:
    """Seconds from the first participant's start to the last one's end (their logs).

    Each ``logs/sub-*.log`` ends with ``<label>: done in X s``; the participant started X s
    before that line's time stamp.
    """
    import datetime as dt
    import re

    starts, ends = [], []
    for log in sorted((out / "logs").glob("sub-*.log")):
        lines = log.read_text().splitlines()
        done = [ln for ln in lines if re.search(r": done in [0-9.]+ s$", ln)]
        if not done:
            return None
        stamp = dt.datetime.strptime(done[-1][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        ends.append(stamp)
        starts.append(stamp - float(re.search(r"done in ([0-9.]+) s$", done[-1]).group(1)))
    return max(ends) - min(starts) if ends else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--subjects", type=int, default=2, help="cohort size (half HC, half RRMS)")
    p.add_argument("--preset", default="seed", choices=["seed", "fast"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-per-subject", action="store_true",
                   help="skip step 1 (each subject alone in a fresh process)")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bids = simulate(args.work, args.subjects, args.preset, args.seed)
    result = {"preset": args.preset, "cpu_count": os.cpu_count(),
              "load_average_start": os.getloadavg(),
              "per_subject": [] if args.no_per_subject else per_subject(bids, args.work)}
    if not args.no_throughput:
        result["throughput"] = rows = [throughput(bids, args.work, n) for n in (1, 2)]
        result["speedup_2_vs_1"] = round(rows[1]["subjects_per_hour"]
                                         / rows[0]["subjects_per_hour"], 2)
        print(f"2 workers give {result['speedup_2_vs_1']}x the throughput of 1 "
              "(goal >= 1.7 on an idle 2-core machine)")
        if all(r.get("task_span_s") for r in rows):
            result["speedup_2_vs_1_without_startup"] = round(
                rows[0]["task_span_s"] / rows[1]["task_span_s"], 2)
            print(f"without start-up and shutdown: {result['speedup_2_vs_1_without_startup']}x")
    result["load_average_end"] = os.getloadavg()
    (args.work / "participant-benchmark.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
