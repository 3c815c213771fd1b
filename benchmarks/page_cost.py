"""CPU seconds of one participant QC page, for two versions of the code in one run.

Writes the page of every participant of a processed output folder (``write_subject_page``:
loading, figures, viewer, HTML) ``--repeat`` times in a fresh process per code version and
prints the CPU seconds of each page (``time.process_time``: this process only) and where they
went. The versions alternate page by page-set (baseline, current, baseline, ...) so that a
changing machine load affects both alike.

Usage::

    python benchmarks/page_cost.py OUTPUT_DIR BIDS_DIR [--baseline-src DIR] [--repeat 2]

``OUTPUT_DIR`` is hard-linked into a scratch folder per version (figures left out), so the
pages are written there and the folder itself is not changed. ``--baseline-src`` is the
``src`` folder of the code to compare with (e.g. ``git archive`` of an earlier commit).
``--preload`` adds the current code with the raw images (echoes, T1w, FLAIR) already loaded
(untimed), as the participant level holds them when it makes the page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import json, sys, time
from pathlib import Path
out, bids, repeat = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
preload = sys.argv[4] == "1"
t0 = time.process_time()
from ironmap.core.qc import run_flags
from ironmap.io.bids import discover
from ironmap.workflows import report as W
from ironmap.workflows.config import RunConfig
cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group")
inputs = W.load_study(cfg)
thr = run_flags.QCThresholds()
rows = [{"what": "imports and study tables", "cpu_s": time.process_time() - t0}]
for s in discover(bids):
    if not (out / s.label).is_dir():
        continue
    info = W._participant_info(inputs, s.participant_id)
    for r in range(repeat):
        held = None
        if preload:  # the raw images as the participant level holds them (not timed)
            import numpy as np
            from ironmap.io.nifti import load_image
            held = {"echoes": [load_image(e.path) for e in s.echoes],
                    "t1w": load_image(s.t1w) if s.t1w else None,
                    "flair": load_image(s.flair) if s.flair else None}
            for im in [*held["echoes"], held["t1w"], held["flair"]]:
                if im is not None:
                    im.get_fdata(dtype=np.float32)
        c0 = time.process_time()
        img = W.load_subject(cfg, s)
        c1 = time.process_time()
        mem = W.in_memory_inputs(s, held) if held else None
        W.write_subject_page(cfg, s, info, thr, mem) if held else W.write_subject_page(
            cfg, s, info, thr)
        c2 = time.process_time()
        rows.append({"what": s.label, "repeat": r, "load_s": c1 - c0,
                     "page_cpu_s": c2 - c1})
print("RESULT " + json.dumps(rows))
"""


def run_version(src: Path, out: Path, bids: Path, repeat: int, scratch: Path,
                preload: bool = False) -> list[dict]:
    """Hard-link ``out`` into ``scratch`` and time the pages with the code under ``src``."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(out, scratch, copy_function=os.link,
                    ignore=shutil.ignore_patterns("figures", "sub-*.html"))
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1",
           "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", WORKER, str(scratch), str(bids), str(repeat),
                          "1" if preload else "0"],
                         env=env, capture_output=True, text=True, check=False)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{src}: worker failed\n{res.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("bids_dir", type=Path)
    ap.add_argument("--baseline-src", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="alternations of the versions")
    ap.add_argument("--preload", action="store_true",
                    help="also time the current code with the raw images already in memory, "
                         "as the participant level makes the page")
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parents[1] / "src"
    versions = ([("baseline", args.baseline_src, False)] if args.baseline_src else []) + [
        ("current", here, False)] + ([("current, raw images in memory", here, True)]
                                     if args.preload else [])
    print(f"load average at start {os.getloadavg()}")
    summary: dict[str, list[float]] = {name: [] for name, _, _ in versions}
    with tempfile.TemporaryDirectory(prefix="ironmap-pagecost-") as tmp:
        for rnd in range(args.rounds):
            for name, src, preload in versions:
                rows = run_version(src, args.output_dir, args.bids_dir, args.repeat,
                                   Path(tmp) / name.split(",")[0] / str(preload), preload)
                pages = [r for r in rows if "page_cpu_s" in r]
                summary[name] += [r["page_cpu_s"] for r in pages]
                print(f"round {rnd + 1}, {name}: " + ", ".join(
                    f"{r['what']}#{r['repeat']} {r['page_cpu_s']:.2f} (load "
                    f"{r['load_s']:.2f})" for r in pages)
                    + f"; imports {rows[0]['cpu_s']:.2f} CPU-s")
    for name, vals in summary.items():
        print(f"{name}: mean {sum(vals) / len(vals):.2f} CPU-s per page over {len(vals)} "
              f"pages (min {min(vals):.2f}, max {max(vals):.2f})")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
