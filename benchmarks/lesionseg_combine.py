"""The built-in automatic lesion mask combined with SAMSEG's, rules fixed in advance.

Usage::

    python benchmarks/lesionseg_combine.py --samseg-work WORK [--cache DIR] \
        [--cohort COHORT] 26 07 19 [sub-003 ...]          # needs IRONMAP_SHARED_DATA

``WORK`` holds finished SAMSEG lesion runs (``lesion_noshape_CASE``, as written by
``benchmarks/samseg_eval.py lesion CASE --work WORK``); nothing is run in SAMSEG here. Per case:
``I`` = the mask of ``ironmap lesions segment`` (defaults; registered priors cached in
``--cache`` as by ``benchmarks/lesionseg_depth_lopo.py``), ``S`` = the mask of
``--method samseg`` (posterior > 0.5, FLAIR brighter than cortex, minimum size). The variants
(26-connected components, no free parameter; stated before any was scored):

* ``I`` and ``S`` themselves;
* ``I|S`` union; ``I&S`` voxel agreement, then the minimum lesion size;
* ``S@I`` the SAMSEG components that touch an ``I`` component;
* ``I@S`` the ``I`` components that touch an ``S`` component;
* ``I|S@I`` the ``I`` lesions extended by the SAMSEG outlines of the lesions both find.

Leave-one-patient-out over the open_ms patients given: for each held-out patient the variant
with the best mean Dice on the other patients, scored once on it. Simulated cases (``sub-XXX``
with ``--cohort``, reference = rater mask, empty for a control) are only reported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.lesions.auto_segment import (
    LesionSegParams,
    keep_components,
    lesion_detection,
    posterior_lesions,
)

sys.path.insert(0, str(Path(__file__).parent))
from lesionseg import openms  # noqa: E402
from lesionseg_depth_lopo import patient_arrays, segment  # noqa: E402
from samseg_eval import corrected_flair_and_cortex, lesion_posterior, on_grid  # noqa: E402

STRUCT = ndimage.generate_binary_structure(3, 3)
VARIANTS = ("I", "S", "I|S", "I&S", "S@I", "I@S", "I|S@I")


def touching(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Components of ``a`` that share a voxel with ``b``."""
    lab, n = ndimage.label(a, STRUCT)
    hit = np.zeros(n + 1, bool)
    hit[np.unique(lab[b & a])] = True
    hit[0] = False
    return hit[lab]


def variants(i: np.ndarray, s: np.ndarray, vox) -> dict[str, np.ndarray]:
    """Every combination of the built-in mask ``i`` and SAMSEG's ``s``."""
    p = LesionSegParams()
    both = i & s
    smallest = max(p.min_volume_mm3, p.min_voxels * float(np.prod(vox)))
    agree = keep_components(both, both, vox, smallest)
    s_at_i = touching(s, i)
    return {"I": i, "S": s, "I|S": i | s, "I&S": agree, "S@I": s_at_i,
            "I@S": touching(i, s), "I|S@I": i | s_at_i}


def sim_arrays(case: str, cohort: Path, cache):
    """FLAIR grid arrays of a simulated subject (priors cached) and its rater mask."""
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.lesion_priors import flair_priors

    anat = cohort / "bids" / case / "anat"
    flair = nib.load(anat / f"{case}_FLAIR.nii.gz")
    path = None if cache is None else Path(cache) / f"sim_{case}.npz"
    if path is not None and path.exists():
        a = dict(np.load(path))
    else:
        fp = flair_priors(flair, nib.load(anat / f"{case}_T1w.nii.gz"), label=case)
        a = {"flair": flair.get_fdata(dtype=np.float32), "t1w": fp.t1w, "brain": fp.brain,
             **fp.priors}
        if path is not None:
            np.savez_compressed(path, **a)
    rater = (cohort / "bids" / "derivatives" / "raters" / case / "anat"
             / f"{case}_label-lesion_mask.nii.gz")
    a["gold"] = (resample_labels(nib.load(rater), flair) > 0 if rater.exists()
                 else np.zeros(flair.shape[:3], bool))
    a["vox"] = np.linalg.norm(flair.affine[:3, :3], axis=0)
    return a, flair


def samseg_mask(out: Path, flair, vox) -> np.ndarray:
    """The ``--method samseg`` mask of a finished SAMSEG run on ``flair``'s grid."""
    post = lesion_posterior(out, flair)
    corrected, cortex = corrected_flair_and_cortex(out)
    return posterior_lesions(post, on_grid(corrected, flair), on_grid(cortex, flair) > 0.5, vox)


def line(case, name, m, vox):
    load = m.get("n_pred_vox", 0)
    return (f"{case}\t{name}\tdice {m['dice']:.3f}\tload {load * np.prod(vox) / 1000:.2f} cm3 "
            f"({100 * (m['load_ratio'] - 1):+.0f} %)\trecall {m['recall']:.2f}\tprecision "
            f"{m['precision']:.2f}\tF1 {m['f1']:.2f}\tn {m['n_pred']}/{m['n_true']}")


def main(argv):
    root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data"))
    opts = {k: argv[argv.index(k) + 1] for k in ("--cache", "--samseg-work", "--cohort")
            if k in argv}
    cases = [a for a in argv if not a.startswith("--") and a not in opts.values()]
    work = Path(opts["--samseg-work"])
    scores = {}
    for case in cases:
        if case.startswith("sub-"):
            a, flair = sim_arrays(case, Path(opts["--cohort"]), opts.get("--cache"))
        else:
            a, flair = patient_arrays(case, root, opts.get("--cache")), openms(case, root)[0]
        i = segment(a, None)
        s = samseg_mask(work / f"lesion_noshape_{case}", flair, a["vox"])
        for name, mask in variants(i, s, a["vox"]).items():
            m = lesion_detection(mask, a["gold"])
            m["n_pred_vox"], m["vox"] = int(mask.sum()), a["vox"]
            scores[case, name] = m
            if not a["gold"].any():
                cm3 = mask.sum() * np.prod(a["vox"]) / 1000
                print(f"{case}\t{name}\tfalse positives {cm3:.3f} cm3 in "
                      f"{ndimage.label(mask, STRUCT)[1]} components", flush=True)
            else:
                print(line(case, name, m, a["vox"]), flush=True)
    patients = [c for c in cases if not c.startswith("sub-")]
    for test in patients if len(patients) > 1 else ():
        train = [p for p in patients if p != test]
        best = max(VARIANTS, key=lambda v: np.mean([scores[p, v]["dice"] for p in train]))
        print(f"held out patient{test} (chosen on {'+'.join(train)}: {best})\t"
              + line(test, best, scores[test, best], scores[test, best]["vox"]).split("\t", 2)[2],
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
