"""Automatic lesion segmentation vs reference masks (open_ms_data consensus, simulated raters).

Usage::

    python benchmarks/lesionseg.py openms [PATIENT ...] [--no-t1w] [--outline volume]
        [--param NAME=VALUE ...]
    python benchmarks/lesionseg.py sim COHORT_DIR [sub-...] [--outline volume] [--param ...]

(``--param`` sets any ``LesionSegParams`` field, e.g. ``--param grey_depth_mm=20``;
``--cache DIR`` keeps each case's registered priors in DIR, so that later runs with other
``--param`` values skip the registration: CPU seconds are then the segmentation's only.)

(openms needs IRONMAP_SHARED_DATA; COHORT_DIR comes from `ironmap simulate`.)

Prints one row per case: Dice, load ratio, lesion-wise recall/precision/F1, CPU seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap.core.lesions.auto_segment import LesionSegParams, lesion_detection
from ironmap.spatial.grid import resample_labels
from ironmap.workflows.lesion_segmentation import segment_images, segment_on_priors

MNI = ("cross_sectional/MNI/patient{p}/{kind}_N4_noneck_reduced_winsor_regtoFLAIR{brain}"
       "_regtoMNI.nii.gz")


def openms(patient: str, root: Path, use_t1w: bool = True):
    def path(kind, brain):
        return root / "open_ms_data" / MNI.format(p=patient, kind=kind, brain=brain)

    flair = nib.load(path("FLAIR", "_brain_N4"))
    t1w = nib.load(path("T1", "_brain_N4")) if use_t1w else None
    gold = nib.load(path("GOLD_STANDARD", "")).get_fdata() > 0
    return flair, t1w, gold


def report(name, seg, truth, cpu, vox_mm3):
    m = lesion_detection(seg.mask, truth)
    print(f"{name}\tdice {m['dice']:.3f}\tload {seg.mask.sum() * vox_mm3 / 1000:.2f} / "
          f"{truth.sum() * vox_mm3 / 1000:.2f} cm3 ({m['load_ratio']:.2f})\trecall "
          f"{m['recall']:.2f}\tprecision {m['precision']:.2f}\tF1 {m['f1']:.2f}\t"
          f"n {m['n_pred']}/{m['n_true']}\tcpu {cpu:.0f} s", flush=True)
    return m


def segment(flair, t1w, label, params, cache):
    """``segment_images``, or the segmentation on priors kept in ``cache`` (a folder or None)."""
    if cache is None:
        return segment_images(flair, t1w, label=label, params=params)[0]
    from ironmap.spatial.lesion_priors import flair_priors

    path = Path(cache) / f"{label}.npz"
    if not path.exists():
        fp = flair_priors(flair, t1w, label=label)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, brain=fp.brain, t1w=fp.t1w if fp.t1w is not None else [],
                            **{f"prior_{k}": v for k, v in fp.priors.items()})
        tmp.replace(path)
    z = np.load(path)
    priors = {k[6:]: z[k] for k in z.files if k.startswith("prior_")}
    t1 = z["t1w"] if z["t1w"].size else None
    vox = np.linalg.norm(flair.affine[:3, :3], axis=0)
    return segment_on_priors(np.asarray(flair.get_fdata(dtype=np.float32)), z["brain"], priors,
                             t1, vox, params=params)


def parse_params(argv):
    """``--outline volume`` and ``--param NAME=VALUE`` -> (LesionSegParams or None, rest)."""
    fields, rest, i = {}, [], 0
    while i < len(argv):
        if argv[i] == "--cache":
            os.environ["LESIONSEG_CACHE"] = argv[i + 1]
            i += 2
        elif argv[i] == "--outline":
            fields["outline_volume"] = argv[i + 1] == "volume"
            i += 2
        elif argv[i] == "--param":
            name, value = argv[i + 1].split("=")
            fields[name] = type(getattr(LesionSegParams(), name))(float(value))
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return (LesionSegParams(**fields) if fields else None), rest


def main(argv):
    params, argv = parse_params(argv)
    cache = os.environ.get("LESIONSEG_CACHE")
    if argv[0] == "openms":
        root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data"))
        use_t1w = "--no-t1w" not in argv
        for p in [a for a in argv[1:] if not a.startswith("--")] or ["07", "26", "19"]:
            flair, t1w, gold = openms(p, root, use_t1w)
            t0 = time.process_time()
            seg = segment(flair, t1w, f"patient{p}{'' if use_t1w else '-flair'}", params, cache)
            report(f"patient{p}{'' if use_t1w else ' (FLAIR only)'}", seg, gold,
                   time.process_time() - t0, 1.0)
    else:
        bids = Path(argv[1]) / "bids"
        only = set(argv[2:])
        for sub in sorted(bids.glob("sub-*")):
            if only and sub.name not in only:
                continue
            anat = sub / "anat"
            flair = nib.load(anat / f"{sub.name}_FLAIR.nii.gz")
            t1w = nib.load(anat / f"{sub.name}_T1w.nii.gz")
            rater = bids / "derivatives/raters" / sub.name / "anat" / \
                f"{sub.name}_label-lesion_mask.nii.gz"
            truth = resample_labels(nib.load(rater), flair) > 0 if rater.exists() else \
                np.zeros(flair.shape, bool)
            t0 = time.process_time()
            seg = segment(flair, t1w, f"{Path(argv[1]).name}-{sub.name}", params, cache)
            vox = float(np.prod(np.linalg.norm(flair.affine[:3, :3], axis=0)))
            report(sub.name, seg, truth, time.process_time() - t0, vox)


if __name__ == "__main__":
    main(sys.argv[1:])
