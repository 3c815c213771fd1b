"""Per-lesion breakdown of seeded lesion growing: which lesions make a draw's load high or low.

Usage::

    python benchmarks/lesiongrow_perlesion.py PATIENT [--first D] [--draws N] [--top K]
        [the growing options of benchmarks/lesiongrow.py: --rim-level R --level L --compete
         --stable-growth S --join-max J --free-level F --merge-core]

Seeds as in ``benchmarks/lesiongrow.py`` (one uniformly random voxel of each 26-connected
consensus lesion, numpy ``default_rng(draw)``). For each draw prints the load ratio and then
the K clicks whose regions add or lose the most voxels: per click the consensus lesion it was
placed in (its voxels), the voxels grown, how many of them lie in that lesion, in other
consensus lesions and outside the consensus, and the lesion's voxels that no click took.
The load excess of a draw is ``sum(outside) - sum(missed)`` over the clicks (voxels of other
lesions count for the lesion they lie in).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from lesiongrow import MNI, grow_options, random_seeds
from scipy import ndimage

from ironmap.core.lesions.seeded_growing import grow_lesions


def per_lesion(labels: np.ndarray, gold_lab: np.ndarray, n: int) -> list[dict]:
    """One row per click ``k`` (1..n), placed in consensus lesion ``k`` of ``gold_lab``."""
    taken = labels > 0
    grown = np.bincount(labels.ravel(), minlength=n + 1)
    size = np.bincount(gold_lab.ravel(), minlength=n + 1)
    own = np.bincount(labels[(labels > 0) & (labels == gold_lab)], minlength=n + 1)
    outside = np.bincount(labels[(labels > 0) & (gold_lab == 0)], minlength=n + 1)
    covered = np.bincount(gold_lab[taken & (gold_lab > 0)], minlength=n + 1)
    return [{"lesion": k, "voxels": int(size[k]), "grown": int(grown[k]), "own": int(own[k]),
             "other": int(grown[k] - own[k] - outside[k]), "outside": int(outside[k]),
             "missed": int(size[k] - covered[k])} for k in range(1, n + 1)]


def main(argv):
    root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data")) / "open_ms_data"
    p = argv[0]
    first = int(argv[argv.index("--first") + 1]) if "--first" in argv else 20
    draws = int(argv[argv.index("--draws") + 1]) if "--draws" in argv else 10
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 4
    opts = grow_options(argv)
    flair = nib.load(root / MNI.format(p=p, kind="FLAIR", brain="_brain_N4"))
    gold = nib.load(root / MNI.format(p=p, kind="GOLD_STANDARD", brain="")).get_fdata() > 0
    gold_lab, n = ndimage.label(gold, np.ones((3, 3, 3)))
    data = flair.get_fdata(dtype=np.float32)
    for d in range(first, first + draws):
        seeds = random_seeds(gold, np.random.default_rng(d))
        res = grow_lesions(data, seeds, (1, 1, 1), **opts)
        rows = per_lesion(res.labels, gold_lab, n)
        print(f"patient{p}\tdraw {d}\tload ratio {res.mask.sum() / gold.sum():.3f}\t"
              f"outside {sum(r['outside'] for r in rows)}\tmissed "
              f"{sum(r['missed'] for r in rows)}\tconsensus {int(gold.sum())}\t{opts}")
        worst = sorted(rows, key=lambda r: -abs(r["outside"] - r["missed"]))[:top]
        for r in worst:
            print("\t" + "  ".join(f"{k} {v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
