"""Time the group level on the seed-size simulated cohort (178 subjects, 7 sites).

The participant level is replaced by its ideal tables (regional R2*, lesions, volumes from
the simulator's truth), so only the group stage is timed: reading, age correction (8 regions
x 3 hemispheres), Table 1/2, rank tests, correlations, stepwise models, mixed models,
stats.json and the rewritten regional table.

Usage::

    python benchmarks/group.py [--repeats 5] [--subjects-scale 1]
    python benchmarks/group.py --report 40   # report of a 40-participant synthetic study

``--report N`` times ``write_reports`` (participant pages, qc.tsv, the study page) on the
synthetic study of the report tests with N participants (small images): a first run that
makes every page, then a second run with nothing changed, which reuses every page.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _sim_tables import write_sim_study  # noqa: E402
from ironmap.sim import cohort  # noqa: E402
from ironmap.workflows.config import RunConfig  # noqa: E402
from ironmap.workflows.group_level import run_group_level  # noqa: E402


def report_benchmark(n: int) -> int:
    """Wall and CPU time of a cold and a warm (pages reused) report of n participants."""
    from _report_study import make_study
    from ironmap.workflows.report import write_reports

    groups = {"HC": n - 2 * (n // 3), "RRMS": n // 3, "SPMS": n // 3}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_study(Path(tmp), np.random.default_rng(0), groups=groups)
        for label in ("first run (every page made)", "second run (nothing changed)"):
            t0, c0 = time.perf_counter(), time.process_time()
            pages = write_reports(cfg)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"report, {n} participants, {label}: {wall:.1f} s wall, {cpu:.1f} s CPU "
                  f"({cpu / n:.2f} CPU-s per participant), {len(pages) - 1} pages")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--subjects-scale", type=int, default=1,
                    help="multiply the seed's group sizes (1 = 178 subjects)")
    ap.add_argument("--fdr", action="store_true")
    ap.add_argument("--per-site", action="store_true")
    ap.add_argument("--report", type=int, metavar="N",
                    help="time the report of an N-participant synthetic study instead")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"load average at start {os.getloadavg()}")
    if args.report:
        return report_benchmark(args.report)
    counts = {g: n * args.subjects_scale for g, n in cohort.SEED_COUNTS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        bids, out, plan, _ = write_sim_study(Path(tmp), counts, cohort.SEED_SITES, 0)
        cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False,
                        reference_age=plan.reference_age, fdr=args.fdr,
                        per_site_agecorr=args.per_site)
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rc = run_group_level(cfg)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if rc != 0:
                print(f"group level failed (exit {rc})")
                return rc
    t = np.array(times)
    print(f"group level, {sum(counts.values())} subjects, {cohort.SEED_SITES} sites, "
          f"{args.repeats} runs: median {np.median(t):.2f} s, min {t.min():.2f} s, "
          f"max {t.max():.2f} s (wall); CPU median {np.median(cpu):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
