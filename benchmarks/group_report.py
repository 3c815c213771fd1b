"""Group level + report of a seed-size study (178 participants) at the seed protocol.

Makes the study cheaply: a few participants are simulated at the seed protocol (``ironmap
simulate --preset seed``: GRE 1x1x2 mm, T1w 1 mm, FLAIR 1x1x3 mm) and run through the
participant level with the rater masks once (kept in ``WORK/base`` and reused by later
calls); their raw files and derivatives are then linked under the 178 participant ids of the
seed study's plan (81 HC, 83 RRMS, 7 SPMS, 7 PPMS at 7 sites; ``participants.tsv`` and the
cohort tables come from the simulator's plan, so the statistics are those of a seed-size
study, see ``tests/_sim_tables.py``). Every participant page is therefore made from real
seed-protocol images and derivatives.

First the participant pages are made as the participant level makes them, at the end of
each participant's run (``workflows.report.participant_page``, ``--nprocs`` processes; timed:
the cost the pages add to the participant level). Then it times ``run_group_level`` with the
report (``qc.tsv``, the study page, the participant pages reused): a first run and a second
run with nothing changed. With ``--pages-in-report`` the pages are left to the first report
run (a participant level run with ``--no-report``). CPU seconds are user + system of this
process and of its finished child processes (the ``--nprocs`` page workers).

Usage::

    python benchmarks/group_report.py --work /tmp/ironmap-groupreport [--nprocs 2]
        [--subjects 178] [--base 4] [--profile FILE]

The base participants cost about 90 CPU-s once; later calls with the same ``--work``
reuse them (``--fresh`` makes them again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_base(work: Path, n: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Simulate ``n`` seed-protocol participants (half HC, half RRMS) and run the participant
    level with the rater masks; returns (bids, output, labels)."""
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant_level import run_participant_level
    from ironmap.workflows.simulate import simulate_cohort

    base = work / "base"
    done = base / "done.json"
    if done.exists():
        doc = json.loads(done.read_text())
        return base / "sim" / "bids", base / "out", doc["labels"]
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()
    sim = simulate_cohort(base / "sim", subjects_per_group={"HC": n // 2, "RRMS": n - n // 2},
                          sites=2, preset="seed", seed=seed, nprocs=2)
    cfg = RunConfig(bids_dir=Path(sim.bids_dir), output_dir=base / "out",
                    analysis_level="participant", masks=(Path(sim.masks_dir),), nprocs=2)
    if run_participant_level(cfg) != 0:
        raise SystemExit("participant level of the base participants failed")
    labels = sorted(p.name for p in (base / "out").glob("sub-*") if p.is_dir())
    done.write_text(json.dumps({"labels": labels}))
    print(f"base: {len(labels)} participants simulated and processed in "
          f"{time.perf_counter() - t0:.0f} s wall")
    return Path(sim.bids_dir), base / "out", labels


def _link_tree(src: Path, dst: Path, old: str, new: str, skip: set[str]) -> None:
    """Hard-link (copy text files, label renamed) everything under ``src`` to ``dst``."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or (rel.parts and rel.parts[0] in skip):
            continue
        target = dst / str(rel).replace(old, new)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".json", ".tsv"):
            target.write_text(path.read_text().replace(old, new))
        else:
            os.link(path, target)


def make_study(work: Path, base_bids: Path, base_out: Path, labels: list[str],
               n: int, seed: int):
    """The seed-size study: plan tables + base participants linked under every plan id."""
    from _sim_tables import write_sim_study
    from ironmap.sim import cohort
    from ironmap.workflows.config import RunConfig

    root = work / "study"
    shutil.rmtree(root, ignore_errors=True)
    counts = dict(cohort.SEED_COUNTS)
    if n != sum(counts.values()):  # scale the seed's group sizes to n
        total = sum(counts.values())
        counts = {g: max(1, round(c * n / total)) for g, c in counts.items()}
    bids, out, plan, _ = write_sim_study(root, counts, cohort.SEED_SITES, seed)
    for i, pid in enumerate(plan.participants["participant_id"]):
        src = labels[i % len(labels)]
        _link_tree(base_bids / src, bids / pid, src, pid, set())
        _link_tree(base_out / src, out / pid, src, pid, {"figures"})
        manifest = base_out / "logs" / "manifests" / f"{src}.json"
        if manifest.exists():
            (out / "logs" / "manifests").mkdir(parents=True, exist_ok=True)
            (out / "logs" / "manifests" / f"{pid}.json").write_text(
                manifest.read_text().replace(src, pid))
    ref_age = plan.reference_age
    return RunConfig(bids_dir=bids, output_dir=out, analysis_level="group",
                     reference_age=ref_age), len(plan.participants)


def _page(cfg, subject) -> float:
    """One participant's page as the participant level makes it; returns its CPU seconds."""
    from ironmap.workflows.report import participant_page

    c0 = time.process_time()
    participant_page(cfg, subject)
    return time.process_time() - c0


def participant_pages(cfg, n: int) -> dict:
    """The pages the participant level makes at the end of each participant's run.

    The participants were linked, not run, so their pages are made here, one call of
    ``participant_page`` per participant in ``cfg.nprocs`` processes: the cost the page adds
    to the participant level.
    """
    import dataclasses
    import functools
    from concurrent.futures import ProcessPoolExecutor

    from ironmap.io.bids import discover

    pcfg = dataclasses.replace(cfg, analysis_level="participant")
    subjects = discover(cfg.bids_dir)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(max_workers=max(1, cfg.nprocs)) as pool:
        per_page = list(pool.map(functools.partial(_page, pcfg), subjects))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    mean = sum(per_page) / len(per_page)
    print(f"participant pages at the participant level, {n} participants: {wall:.1f} s wall, "
          f"{cpu:.1f} CPU-s, {mean:.2f} CPU-s per page (min {min(per_page):.2f}, max "
          f"{max(per_page):.2f}), load average {os.getloadavg()[0]:.1f}")
    return {"run": "participant pages (participant level)", "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "cpu_s_per_page": round(mean, 3), "pages": len(per_page),
            "exit_code": 0, "load_average": os.getloadavg()[0]}


def main(argv=None) -> int:
    import dataclasses

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder")
    ap.add_argument("--subjects", type=int, default=178)
    ap.add_argument("--base", type=int, default=4, help="participants actually simulated")
    ap.add_argument("--nprocs", type=int, default=1, help="report page processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="simulate the base participants again")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the first run here")
    ap.add_argument("--pages-in-report", action="store_true",
                    help="leave the participant pages to the report (as with a participant "
                         "level run with --no-report) instead of making them first, as the "
                         "participant level does")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(args.work / "base", ignore_errors=True)
    base_bids, base_out, labels = make_base(args.work, args.base, args.seed)
    cfg, n = make_study(args.work, base_bids, base_out, labels, args.subjects, args.seed)
    cfg = dataclasses.replace(cfg, nprocs=args.nprocs)
    from ironmap.workflows.group_level import run_group_level

    print(f"load average at start {os.getloadavg()}; {n} participants, --nprocs {args.nprocs}")
    rows = []
    if not args.pages_in_report:
        rows.append(participant_pages(cfg, n))
    first = ("first run (every page made)" if args.pages_in_report
             else "first run (pages made by the participant level)")
    for label in (first, "second run (nothing changed)"):
        prof = None
        if args.profile and label.startswith("first"):
            import cProfile

            prof = cProfile.Profile(time.process_time)
            prof.enable()
        t0, c0 = time.perf_counter(), cpu_seconds()
        rc = run_group_level(cfg)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile)
        pages = len(list(Path(cfg.output_dir).glob("sub-*.html")))
        rows.append({"run": label, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "pages": pages, "exit_code": rc, "load_average": os.getloadavg()[0]})
        print(f"group level + report, {n} participants, {label}: {wall:.1f} s wall, "
              f"{cpu:.1f} CPU-s ({cpu / n:.3f} per participant), {pages} pages, exit {rc}, "
              f"load average {os.getloadavg()[0]:.1f}")
    (args.work / "group-report-benchmark.json").write_text(json.dumps(rows, indent=2))
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
