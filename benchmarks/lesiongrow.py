"""Seeded lesion growing with seeds at random points inside each consensus lesion.

Usage::

    python benchmarks/lesiongrow.py [PATIENT ...] [--draws N] [--first D] [--merge-core]
        [--free-level F]   # 2.0 gives the rule before free_level (default 0.8)
        [--rim-level R] [--level L]   # rim rule (``none`` turns it off) and lowest level
        [--compete]   # seeds compete (a click never grows into another click's lesion)
        [--stable-growth S] [--join-max J]   # stability stop rule (docs/lesions.md)
        [--bright-leak B]   # bright-leak guard for regions under 10 voxels (0.5: BRIGHT_LEAK)
        [--rim-at-seed]   # with --compete and the rim rule: a region stopped by another
                          # click's seed still gets its partial-volume rim
        [--pv-border F] [--border-min N]   # after growing, trim lesions of >= N voxels (100)
                          # below F of their profile (PV_BORDER: 0.4 / 100, draws 10-29)
    # e.g. --rim-level 0.4 --level 0.3 --compete: the rim floor 0.3 chosen on draws 10-19;
    # add --stable-growth 0.4 --join-max 20 for ``--stop-rule stable`` (chosen on draws 10-19),
    # --bright-leak 0.5 for ``--bright-leak`` (set on draws 20-29; draws 30-39 held out)
    # needs IRONMAP_SHARED_DATA; draws D .. D+N-1 (default 0-2: the reported draws; 10-13 were
    # the tuning draws of ``core_rise``)

For each draw, one seed per 26-connected consensus lesion at a uniformly random voxel of it
(numpy default_rng(draw)), never at its centre on purpose. Prints Dice and load ratio per draw,
then per patient the mean / min Dice, the load ratio range, its mean and median and on how many
draws the load is within 15 % of the consensus. ``benchmarks/lesiongrow_perlesion.py`` breaks
a draw's load down by lesion.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.lesions.auto_segment import lesion_detection
from ironmap.core.lesions.seeded_growing import grow_lesions

MNI = ("cross_sectional/MNI/patient{p}/{kind}_N4_noneck_reduced_winsor_regtoFLAIR{brain}"
       "_regtoMNI.nii.gz")


def random_seeds(gold: np.ndarray, rng) -> np.ndarray:
    """One uniformly random voxel of each 26-connected lesion of ``gold``; (n, 3) int."""
    lab, n = ndimage.label(gold, np.ones((3, 3, 3)))
    idx = np.argwhere(lab > 0)
    order = lab[tuple(idx.T)]
    return np.array([idx[order == k][rng.integers((order == k).sum())] for k in range(1, n + 1)])


def grow_options(argv) -> dict:
    """``grow_lesions`` keyword arguments from the benchmark's options (see the usage)."""
    opts = {"merge_core": "--merge-core" in argv,
            "free_level": float(argv[argv.index("--free-level") + 1])
            if "--free-level" in argv else 0.8}
    if "--rim-level" in argv:
        rim = argv[argv.index("--rim-level") + 1]
        opts["rim_level"] = None if rim == "none" else float(rim)
    if "--compete" in argv:
        opts["compete"] = True
    if "--rim-at-seed" in argv:
        opts["rim_at_seed"] = True
    for flag, key in (("--level", "level"), ("--stable-growth", "stable_growth"),
                      ("--join-max", "join_max"), ("--bright-leak", "bright_leak"),
                      ("--pv-border", "border_fraction")):
        if flag in argv:
            opts[key] = float(argv[argv.index(flag) + 1])
    if "--border-min" in argv:
        opts["border_min_voxels"] = int(argv[argv.index("--border-min") + 1])
    return opts


def main(argv):
    root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data")) / "open_ms_data"
    draws = int(argv[argv.index("--draws") + 1]) if "--draws" in argv else 3
    first = int(argv[argv.index("--first") + 1]) if "--first" in argv else 0
    opts = grow_options(argv)
    merge, free = opts["merge_core"], opts["free_level"]
    values = {argv.index(o) + 1 for o in ("--draws", "--first", "--free-level", "--rim-level",
                                          "--level", "--stable-growth", "--join-max",
                                          "--bright-leak", "--pv-border", "--border-min")
              if o in argv}
    patients = [a for i, a in enumerate(argv) if i not in values and not a.startswith("--")] \
        or ["07", "26", "19"]
    for p in patients:
        flair = nib.load(root / MNI.format(p=p, kind="FLAIR", brain="_brain_N4"))
        gold = nib.load(root / MNI.format(p=p, kind="GOLD_STANDARD", brain="")).get_fdata() > 0
        data = flair.get_fdata(dtype=np.float32)
        dice, load = [], []
        for d in range(first, first + draws):
            seeds = random_seeds(gold, np.random.default_rng(d))
            res = grow_lesions(data, seeds, (1, 1, 1), **opts)
            m = lesion_detection(res.mask, gold)
            dice.append(m["dice"])
            load.append(m["load_ratio"])
            shown = {k: v for k, v in opts.items() if k not in ("merge_core", "free_level")}
            print(f"patient{p}\tdraw {d}\tseeds {len(seeds)}\tdice {m['dice']:.3f}\t"
                  f"load ratio {m['load_ratio']:.2f}\tlesion-wise recall {m['recall']:.2f} "
                  f"precision {m['precision']:.2f} F1 {m['f1']:.2f}\t"
                  f"merge_core {merge}\tfree_level {free}"
                  f"\t{shown}",
                  flush=True)
        within = sum(abs(x - 1) <= 0.15 for x in load)
        print(f"patient{p}\tdraws {first}-{first + draws - 1}\tdice mean {np.mean(dice):.3f} "
              f"min {min(dice):.3f}\tload ratio x{min(load):.2f}-{max(load):.2f} "
              f"(mean x{np.mean(load):.2f}, median x{np.median(load):.3f}; within 15 % on "
              f"{within} of {draws} draws)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
