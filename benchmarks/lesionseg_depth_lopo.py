"""Leave-one-patient-out choice of the deep-border rule (``grey_depth_mm``, ``grey_depth_gm``).

Usage::

    python benchmarks/lesionseg_depth_lopo.py [--cache DIR]     # needs IRONMAP_SHARED_DATA

The three open_ms_data patients (MNI-grid FLAIR + T1w) are segmented as by
``ironmap lesions segment`` (registered priors of
:func:`ironmap.spatial.lesion_priors.flair_priors`, cached as .npz in ``--cache``) for every
setting of a fixed grid (rule off; depth 10-30 mm with any GM prior; depth 10 or 20 mm only
where the GM prior is at most 0.1-0.3). For each held-out patient the setting with the best
mean Dice on the other two is chosen and scored on it. Prints the whole grid, then the
held-out rows. Nothing is chosen on the held-out patient.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ironmap.core.lesions.auto_segment import LesionSegParams, lesion_detection
from ironmap.workflows.lesion_segmentation import segment_on_priors

sys.path.insert(0, str(Path(__file__).parent))
from lesionseg import openms  # noqa: E402

PATIENTS = ("26", "07", "19")
GRID = [(0.0, 1.0)] + [(d, 1.0) for d in (10.0, 15.0, 20.0, 25.0, 30.0)] + \
    [(d, g) for d in (10.0, 20.0) for g in (0.1, 0.2, 0.3)]


def patient_arrays(patient, root, cache):
    """FLAIR, T1w, brain, priors and consensus of one patient on the FLAIR grid (cached)."""
    from ironmap.spatial.lesion_priors import flair_priors

    path = None if cache is None else Path(cache) / f"priors_patient{patient}.npz"
    if path is not None and path.exists():
        return dict(np.load(path))
    flair, t1w, gold = openms(patient, root)
    fp = flair_priors(flair, t1w, label=f"patient{patient}")
    arrays = {"flair": flair.get_fdata(dtype=np.float32), "t1w": fp.t1w, "brain": fp.brain,
              "gold": gold, "vox": np.linalg.norm(flair.affine[:3, :3], axis=0), **fp.priors}
    if path is not None:
        np.savez_compressed(path, **arrays)
    return arrays


def segment(a, params):
    """The mask of ``ironmap lesions segment`` on cached arrays."""
    priors = {k: a[k] for k in ("gm", "wm", "csf")}
    return segment_on_priors(a["flair"], a["brain"], priors, a["t1w"], a["vox"],
                             params=params).mask


def main(argv):
    root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data"))
    cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
    scores = {}
    for p in PATIENTS:
        a = patient_arrays(p, root, cache)
        for depth, gm in GRID:
            m = lesion_detection(segment(a, LesionSegParams(grey_depth_mm=depth,
                                                            grey_depth_gm=gm)), a["gold"])
            scores[p, depth, gm] = m
            print(f"patient{p}\tgrey_depth_mm {depth:g}\tgrey_depth_gm {gm:g}\tdice "
                  f"{m['dice']:.3f}\tload {100 * (m['load_ratio'] - 1):+.0f} %\tF1 "
                  f"{m['f1']:.2f}", flush=True)
    for test in PATIENTS:
        train = [p for p in PATIENTS if p != test]
        depth, gm = max(GRID, key=lambda s: np.mean([scores[p, *s]["dice"] for p in train]))
        m = scores[test, depth, gm]
        print(f"held out patient{test} (chosen on {'+'.join(train)}: grey_depth_mm {depth:g}, "
              f"grey_depth_gm {gm:g})\tdice {m['dice']:.3f}\tload "
              f"{100 * (m['load_ratio'] - 1):+.0f} %\tF1 {m['f1']:.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
