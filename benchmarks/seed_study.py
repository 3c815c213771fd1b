"""The seed-size study end to end: simulate, participant level, group level and report.

Runs the four commands a user runs, each in a fresh process, with the defaults they get:

1. ``ironmap simulate WORK/cohort --seed-study --preset seed --nprocs N`` (178 participants:
   81 HC, 83 RRMS, 7 SPMS, 7 PPMS at 7 sites, the seed's protocol resolution);
2. ``ironmap WORK/cohort/bids WORK/ironmap participant --masks RATERS --nprocs N`` (rater
   masks as in the seed; the participant pages are made here, in the workers);
3. ``ironmap WORK/cohort/bids WORK/ironmap group --masks RATERS`` (statistics, tables, figures
   and the report).

It prints and writes ``WORK/seed_study.tsv``: wall time, CPU time (the command's process and
its finished child processes, from ``wait4``) and peak resident memory per step.

Usage::

    python benchmarks/seed_study.py --work /tmp/ironmap-seed-study [--nprocs 2]

Numbers depend on the machine and its load; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from participant import _run  # noqa: E402  (the benchmark scripts share their runner)


def main(argv: list[str] | None = None) -> int:
    """Run the study and print the per-step table; returns the worst exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (replaced)")
    ap.add_argument("--nprocs", type=int, default=2, help="parallel processes (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    args = ap.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    cli = [sys.executable, "-m", "ironmap.cli.main"]
    cohort, deriv = args.work / "cohort", args.work / "ironmap"
    bids, raters = cohort / "bids", cohort / "bids" / "derivatives" / "raters"
    steps = [
        ("simulate", cli + ["simulate", str(cohort), "--seed-study", "--preset", "seed",
                            "--seed", str(args.seed), "--nprocs", str(args.nprocs)]),
        ("participant level", cli + [str(bids), str(deriv), "participant", "--masks",
                                     str(raters), "--nprocs", str(args.nprocs)]),
        ("group level + report", cli + [str(bids), str(deriv), "group", "--masks",
                                        str(raters)]),
    ]
    rows, worst = [], 0
    for name, cmd in steps:
        wall, cpu, rss, code = _run(cmd, args.work / f"{name.split()[0]}.log")
        rows.append((name, wall, cpu, rss, code))
        print(f"{name:22s} {wall:8.1f} s wall {cpu:8.1f} CPU-s {rss:7.0f} MiB exit {code}",
              flush=True)
        worst = max(worst, code)
        if code not in (0, 3):
            break
    total_wall, total_cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':22s} {total_wall:8.1f} s wall {total_cpu:8.1f} CPU-s")
    with open(args.work / "seed_study.tsv", "w") as fh:
        fh.write("step\tseconds\tcpu_seconds\tpeak_rss_mib\texit_code\n")
        for name, wall, cpu, rss, code in rows:
            fh.write(f"{name}\t{wall:.1f}\t{cpu:.1f}\t{rss:.0f}\t{code}\n")
        fh.write(f"total\t{total_wall:.1f}\t{total_cpu:.1f}\t\t\n")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
