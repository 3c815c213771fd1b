"""Leave-one-patient-out test of a voxel-wise classifier for automatic lesion segmentation.

Usage::

    python benchmarks/lesionseg_lopo.py [--cache DIR]     # needs IRONMAP_SHARED_DATA

The three open_ms_data patients (MNI-grid FLAIR + T1w) get the template priors and brain mask
of ``ironmap lesions segment`` (:func:`ironmap.spatial.lesion_priors.flair_priors`); every brain
voxel with FLAIR z > 1 (against NAWM) is described by 11 features (FLAIR z, its 1 mm
smoothing, its contrast to the 5 mm neighbourhood, FLAIR z relative to grey matter, T1w scaled
so that NAWM = 0 and GM = -1 and its 1 mm smoothing, GM/WM/CSF priors, distance to the outside
of the brain and to the ventricles in mm). A gradient-boosted tree classifier
(scikit-learn ``HistGradientBoostingClassifier``, fixed settings, negatives subsampled 15 %
with weights, each patient weighted equally) is trained on two patients and scored on the
third, for each of the three folds; lesions are 26-connected components of
``probability >= t`` with at least 10 voxels. Prints Dice / load ratio / lesion-wise F1 for
t = 0.4 ... 0.7 per fold. Nothing is chosen on the held-out patient.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from ironmap.core.lesions.auto_segment import (
    keep_components,
    kmeans_1d,
    lesion_detection,
    nawm_reference,
)

sys.path.insert(0, str(Path(__file__).parent))
from lesionseg import openms  # noqa: E402

PATIENTS = ("26", "07", "19")
NAMES = ("flair_z", "flair_z_s1", "flair_z_local", "flair_z_vs_gm", "t1w_scaled", "t1w_s1",
         "gm", "wm", "csf", "dist_outside_mm", "dist_ventricle_mm")


def features(flair, t1, brain, gm, wm, csf):
    """Voxel features (X, Y, Z, 11) on a 1 mm grid and the FLAIR z-score."""
    flair, t1 = flair.astype(float), t1.astype(float)
    _, gm_c, wm_c = kmeans_1d(t1[brain], 3)
    nawm = brain & (wm >= 0.5) & (t1 > 0.5 * (gm_c + wm_c))
    med, sigma = nawm_reference(flair, nawm)
    zf = np.where(brain, (flair - med) / sigma, 0.0)
    gref = brain & (gm >= 0.8) & (t1 < 0.5 * (gm_c + wm_c))
    t1_wm, t1_gm = np.median(t1[nawm]), np.median(t1[gref])
    t1n = np.where(brain, (t1 - t1_wm) / max(t1_wm - t1_gm, 1e-6), 0.0)
    zc = np.clip(zf, -5, 15)
    norm = ndimage.gaussian_filter(brain.astype(float), 5) + 1e-6
    local = zc - ndimage.gaussian_filter(zc * brain, 5) / norm
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=3))
    dout = ndimage.distance_transform_edt(filled)
    vent = (filled & ~brain & (dout > 8)) | ((csf >= 0.5) & (dout > 15))
    dvent = ndimage.distance_transform_edt(~vent) if vent.any() else np.full(brain.shape, 40.0)
    stack = [zf, ndimage.gaussian_filter(zc, 1.0), local, zf - np.median(zf[gref]), t1n,
             ndimage.gaussian_filter(np.clip(t1n, -3, 2) * brain, 1.0), gm, wm, csf,
             np.minimum(dout, 40), np.minimum(dvent, 40)]
    return np.stack(stack, -1).astype(np.float32), zf


def patient_arrays(patient, root, cache):
    """(features, candidates, consensus) of one patient, cached as .npz in ``cache``."""
    from ironmap.spatial.lesion_priors import flair_priors

    path = None if cache is None else Path(cache) / f"lopo_patient{patient}.npz"
    if path is not None and path.exists():
        z = np.load(path)
        return z["F"], z["cand"], z["gold"]
    flair, t1w, gold = openms(patient, root)
    fp = flair_priors(flair, t1w, label=f"patient{patient}")
    F, zf = features(flair.get_fdata(dtype=np.float32), fp.t1w, fp.brain, fp.priors["gm"],
                     fp.priors["wm"], fp.priors["csf"])
    cand = fp.brain & (zf > 1.0)
    if path is not None:
        np.savez_compressed(path, F=F, cand=cand, gold=gold)
    return F, cand, gold


def main(argv):
    from sklearn.ensemble import HistGradientBoostingClassifier

    root = Path(os.environ.get("IRONMAP_SHARED_DATA", "../shared/data"))
    cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
    rng = np.random.default_rng(0)
    data = {}
    for p in PATIENTS:
        F, cand, gold = patient_arrays(p, root, cache)
        y = gold[cand]
        keep = y | (rng.random(y.size) < 0.15)
        weight = np.where(y, 1.0, 1 / 0.15) / cand.sum()
        data[p] = (F[cand], y, keep, weight, cand, gold)
    for test in PATIENTS:
        train = [p for p in PATIENTS if p != test]
        X = np.concatenate([data[p][0][data[p][2]] for p in train])
        y = np.concatenate([data[p][1][data[p][2]] for p in train])
        w = np.concatenate([data[p][3][data[p][2]] for p in train])
        model = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=200,
            l2_regularization=1.0, random_state=0).fit(X, y, sample_weight=w * len(w) / w.sum())
        F, _, _, _, cand, gold = data[test]
        prob = np.zeros(gold.shape, np.float32)
        prob[cand] = model.predict_proba(F)[:, 1]
        for t in (0.4, 0.5, 0.6, 0.7):
            seg = keep_components(prob >= t, prob >= t, (1, 1, 1), 10)
            m = lesion_detection(seg, gold)
            print(f"test patient{test} (trained on {'+'.join(train)})\tt {t:.1f}\tdice "
                  f"{m['dice']:.3f}\tload ratio {m['load_ratio']:.2f}\tF1 {m['f1']:.2f}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
