"""Where a simulated participant's automatic lesion load comes from, lesion by lesion.

Usage::

    python benchmarks/lesionseg_components.py COHORT_DIR sub-005 [sub-...] [--param NAME=VALUE]
        [--cache DIR]

For each participant of a cohort from ``ironmap simulate`` (cross-sectional, phantom
anatomy), segments the FLAIR with the built-in method and prints:

* one row per automatic component: volume, the part inside the simulated rater mask, and the
  phantom tissue at its voxel centres (lesion / white matter / cortex / other, from
  ``truth/geometry.json`` and ``truth/poses.tsv``) with its median FLAIR z-score;
* one row per rater-mask lesion: rater volume, automatic volume inside it and automatic volume
  in its one-voxel ring (border voxels the rater left out);
* the totals: load in true lesions, in their rings, and in components that touch no lesion.

Volumes in mm^3 on the FLAIR grid.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from lesionseg import parse_params, segment
from scipy import ndimage

from ironmap.sim import anatomy
from ironmap.sim.change import pose_matrix
from ironmap.spatial.grid import resample_labels

_S26 = ndimage.generate_binary_structure(3, 3)
_TISSUE = {"lesion": (anatomy.LESION,), "wm": (anatomy.WM,), "cortex": (anatomy.CORTEX,)}


def phantom_labels(cohort: Path, sub: str, img: nib.Nifti1Image) -> np.ndarray:
    """Phantom tissue label at each FLAIR voxel centre."""
    poses = pd.read_csv(cohort / "truth" / "poses.tsv", sep="\t")
    poses["session_id"] = poses.get("session_id", "")
    world_to_head = pose_matrix(poses.fillna(""), sub, "", "FLAIR")
    geom = json.loads((cohort / "truth" / "geometry.json").read_text())[sub]
    ijk = np.indices(img.shape).reshape(3, -1)
    world = img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]
    head = (world_to_head[:3, :3] @ world + world_to_head[:3, 3:4]).T
    return anatomy.label_points(head, anatomy.geometry_from_dict(geom)).reshape(img.shape)


def tissue_shares(labels: np.ndarray) -> str:
    """Share of each phantom tissue among the given voxel labels."""
    n = max(labels.size, 1)
    parts = [f"{k} {np.isin(labels, v).sum() / n:.2f}" for k, v in _TISSUE.items()]
    other = 1 - sum(np.isin(labels, v).sum() for v in _TISSUE.values()) / n
    return " / ".join(parts + [f"other {other:.2f}"])


def diagnose(cohort: Path, sub: str, params) -> None:
    """Print the component and lesion tables of one participant."""
    anat = cohort / "bids" / sub / "anat"
    flair = nib.load(anat / f"{sub}_FLAIR.nii.gz")
    t1w = nib.load(anat / f"{sub}_T1w.nii.gz")
    rater = cohort / "bids/derivatives/raters" / sub / "anat" / f"{sub}_label-lesion_mask.nii.gz"
    truth = resample_labels(nib.load(rater), flair) > 0 if rater.exists() else \
        np.zeros(flair.shape, bool)
    seg = segment(flair, t1w, f"{cohort.name}-{sub}", params,
                  os.environ.get("LESIONSEG_CACHE"))
    vox = float(np.prod(np.linalg.norm(flair.affine[:3, :3], axis=0)))
    tissue = phantom_labels(cohort, sub, flair)
    comp, n = ndimage.label(seg.mask, _S26)
    les, m = ndimage.label(truth, _S26)
    ring = ndimage.binary_dilation(truth, _S26) & ~truth
    print(f"== {sub}: auto {seg.mask.sum() * vox / 1000:.2f} cm3, rater "
          f"{truth.sum() * vox / 1000:.2f} cm3, {n} components / {m} rater lesions; "
          f"NAWM median {seg.nawm_median:.1f} sigma {seg.nawm_sigma:.2f}; cortex median z "
          f"{np.nanmedian(seg.zscore[tissue == anatomy.CORTEX]):.2f}")
    for c in range(1, n + 1):
        sel = comp == c
        print(f"component {c}\t{sel.sum() * vox:.0f} mm3\tin rater {(sel & truth).sum() * vox:.0f}"
              f"\tring {(sel & ring).sum() * vox:.0f}\tmedian z {np.median(seg.zscore[sel]):.1f}"
              f"\t{tissue_shares(tissue[sel])}")
    for j in range(1, m + 1):
        sel = les == j
        grown = ndimage.binary_dilation(sel, _S26) & ~sel & ~truth
        print(f"rater lesion {j}\t{sel.sum() * vox:.0f} mm3\tauto inside "
              f"{(sel & seg.mask).sum() * vox:.0f}\t"
              f"auto ring {(grown & seg.mask).sum() * vox:.0f}")
    touching = np.isin(comp, np.unique(comp[truth & seg.mask]))
    free = seg.mask & ~touching
    print(f"totals (mm3)\tin rater {(seg.mask & truth).sum() * vox:.0f}\tin rings "
          f"{(seg.mask & ring).sum() * vox:.0f}\tother in touching components "
          f"{(seg.mask & touching & ~truth & ~ring).sum() * vox:.0f}\tcomponents touching no "
          f"lesion {free.sum() * vox:.0f} ({tissue_shares(tissue[free])})", flush=True)


def main(argv):
    params, argv = parse_params(argv)
    cohort = Path(argv[0])
    for sub in argv[1:]:
        diagnose(cohort, sub, params)


if __name__ == "__main__":
    main(sys.argv[1:])
