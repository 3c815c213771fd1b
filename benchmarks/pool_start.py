"""What spawned pool workers cost against forked ones, for the simulation and the report.

``ironmap.parallel.process_pool`` starts its workers with ``spawn``: a fork of a process with
threads can inherit a held lock and hang. A spawned worker imports its task's modules itself,
which a forked one inherits. Each case runs in a fresh interpreter (so that nothing is
imported twice by accident), with 2 workers, for ``fork`` and ``spawn`` alternately:

- ``startup-simulate`` / ``startup-report``: the pool runs one trivial task per worker that
  needs the module of the simulation's / the report's task function (the parent has imported
  it, as it has when it calls the step): the start-up and import cost alone;
- ``simulate``: ``simulate_cohort`` of 4 participants at 2 sites (fast preset) in 2 processes;
- ``report``: ``write_reports`` of a small synthetic study (8 participant pages, 24 x 28 x 12
  voxels, ``tests/_report_study.py``) in 2 processes;
- ``report-reused``: the same report written again (untimed first run), every page reused.

With ``PYTHONPATH`` on the ``src`` of a version before ``process_pool`` existed, the cases run
that version's pools (forked) whatever ``--start`` says; the runs record it.

CPU seconds are this interpreter's plus its waited-for children's (the workers), from
``getrusage``; they are the comparable figure on a loaded machine.

Usage::

    python benchmarks/pool_start.py [--repeats 3] [--cases report report-reused] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CASES = ("startup-simulate", "startup-report", "simulate", "report", "report-reused")
MODULES = {"startup-simulate": "ironmap.workflows.simulate",
           "startup-report": "ironmap.workflows.report"}


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _touch(module: str) -> int:
    """A trivial task that needs ``module`` in the worker."""
    import importlib

    importlib.import_module(module)
    time.sleep(0.2)  # long enough for the pool to start its second worker
    return os.getpid()


def run_case(case: str, start: str, workdir: Path) -> dict:
    """One case in this interpreter; returns wall and CPU seconds of the timed part."""
    import importlib

    import ironmap.parallel as par

    if hasattr(par, "process_pool"):
        par.process_pool = functools.partial(par.process_pool, start=start)  # the steps import it
    else:  # a version before the factory: its own (forked) pools
        start = "fork (before process_pool)"
    if case in MODULES:
        importlib.import_module(MODULES[case])
        t0, c0 = time.perf_counter(), _cpu()
        with par.process_pool(2) as pool:
            pids = set(pool.map(_touch, [MODULES[case]] * 2))
        extra = {"workers": len(pids)}
    elif case == "simulate":
        from ironmap.workflows.simulate import simulate_cohort

        t0, c0 = time.perf_counter(), _cpu()
        simulate_cohort(workdir / "sim", subjects_per_group={"HC": 2, "RRMS": 2}, sites=2,
                        preset="fast", seed=1, nprocs=2)
        extra = {}
    else:
        import dataclasses

        import numpy as np

        from _report_study import make_study
        from ironmap.workflows.report import write_reports

        cfg = dataclasses.replace(make_study(workdir / "study", np.random.default_rng(5),
                                             groups={"HC": 4, "RRMS": 4}), nprocs=2)
        if case == "report-reused":
            write_reports(cfg)
        t0, c0 = time.perf_counter(), _cpu()
        pages = write_reports(cfg)
        extra = {"pages": len(pages)}
    return {"case": case, "start": start, "wall_s": time.perf_counter() - t0,
            "cpu_s": _cpu() - c0, **extra}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--json", type=Path, help="write the runs here")
    ap.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    ap.add_argument("--start", choices=("fork", "spawn"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:  # one run, in this fresh interpreter
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_case(args.case, args.start, Path(tmp))))
        return 0
    runs = []
    for case in args.cases:
        for _ in range(args.repeats):
            for start in ("fork", "spawn"):
                out = subprocess.run([sys.executable, __file__, "--case", case, "--start", start],
                                     check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                run["load_average"] = os.getloadavg()[0]
                runs.append(run)
                print(json.dumps(run), flush=True)
    print(f"\n{'case':18s} {'start':6s} {'wall s (median)':>16s} {'CPU-s (median)':>15s}")
    for case in args.cases:
        for start in sorted({r["start"] for r in runs if r["case"] == case}):
            sel = [r for r in runs if r["case"] == case and r["start"] == start]
            wall = sorted(r["wall_s"] for r in sel)[len(sel) // 2]
            cpu = sorted(r["cpu_s"] for r in sel)[len(sel) // 2]
            print(f"{case:18s} {start:6s} {wall:16.2f} {cpu:15.2f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
