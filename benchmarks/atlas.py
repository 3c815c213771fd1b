"""Validation of atlas-based deep-GM labels on a simulated cohort (run by hand, not in CI).

    python benchmarks/atlas.py DIR     # simulate 4 subjects into DIR, leave-one-out atlas

Subject 1's T1w is the atlas template; its labels are (a) the exact phantom labels sampled on a
1 mm grid and (b) the simulated rater masks (FLAIR grid); the atlas is registered by SyN to
subjects 2-4 and compared (Dice per region and hemisphere) with their exact phantom labels at
the T1w voxel centres (a) or their rater masks moved to the T1w grid by nearest neighbour (b).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

from ironmap.core.regions.names import canonical_region  # noqa: E402
from ironmap.io.atlas import read_atlas  # noqa: E402
from ironmap.sim import anatomy  # noqa: E402
from ironmap.spatial.atlas import atlas_labels  # noqa: E402
from ironmap.workflows.simulate import simulate_cohort  # noqa: E402


def _pose(poses, sub, series):
    r = poses[(poses.participant_id == sub) & (poses.series == series)].iloc[0]
    return np.array([[r[f"m{i}{j}"] for j in range(4)] for i in range(4)])


def _exact(points_head, geom):
    lab = anatomy.label_points(points_head, geom).astype(np.int16) - anatomy.DSEG_OFFSET
    return np.where((lab >= 1) & (lab <= 14), lab, 0)


def _masks(labels, names):
    out = {}
    for i, n in names.items():
        reg, hemi = canonical_region(n)
        reg = "putamen" if reg and reg.startswith("putamen") else reg
        out.setdefault(f"{reg}_{hemi}", np.zeros(labels.shape, bool))
        out[f"{reg}_{hemi}"] |= labels == i
    return out


def _dice(pred, names, truth, truth_names):
    p, t = _masks(pred, names), _masks(truth, truth_names)
    return {k: round(2 * (p[k] & t[k]).sum() / max(1, p[k].sum() + t[k].sum()), 3)
            for k in t if k in p}


def main(out: Path) -> None:
    c = simulate_cohort(out / "sim", subjects_per_group={"HC": 2, "RRMS": 2}, sites=2,
                        preset="fast", seed=11, overwrite=True)
    bids, truth = Path(c.bids_dir), Path(c.truth_dir)
    poses = pd.read_csv(truth / "poses.tsv", sep="\t")
    geoms = {k: anatomy.geometry_from_dict(v)
             for k, v in json.loads((truth / "geometry.json").read_text()).items()}
    subs = sorted(geoms)

    def t1(sub):
        return nib.load(str(bids / sub / "anat" / f"{sub}_T1w.nii.gz"))

    def rater(sub):
        img = nib.load(str(bids / "derivatives/raters" / sub / "anat"
                           / f"{sub}_desc-deepgm_dseg.nii.gz"))
        aff = np.linalg.inv(_pose(poses, sub, "T1w")) @ _pose(poses, sub, "FLAIR") @ img.affine
        return nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), aff)

    a = subs[0]
    lo, hi = np.array([-40.0, -80.0, -60.0]), np.array([40.0, 40.0, 30.0])
    shape = tuple((hi - lo).astype(int) + 1)
    grid = np.indices(shape).reshape(3, -1).T + lo
    exact_aff = np.linalg.inv(_pose(poses, a, "T1w")) @ np.vstack(
        [np.hstack([np.eye(3), lo[:, None]]), [0, 0, 0, 1]])
    atlases = {"exact": nib.Nifti1Image(_exact(grid, geoms[a]).reshape(shape), exact_aff),
               "rater": rater(a)}
    for kind, lab_img in atlases.items():
        folder = out / f"atlas-{kind}"
        folder.mkdir(exist_ok=True)
        nib.save(t1(a), folder / "tpl_T1w.nii.gz")
        nib.save(lab_img, folder / "atlas_dseg.nii.gz")
        present = sorted(int(i) for i in np.unique(np.asarray(lab_img.dataobj)) if i)
        (folder / "atlas_dseg.tsv").write_text("index\tname\n" + "".join(
            f"{i}\t{anatomy.DSEG_LABELS[i]}\n" for i in present))
        atlas = read_atlas(folder)
        for b in subs[1:]:
            t0 = time.time()
            img = t1(b)
            pred, names = atlas_labels(img, atlas, label=b)
            if kind == "exact":
                ijk = np.indices(img.shape).reshape(3, -1)
                ijk1 = np.vstack([ijk, np.ones(ijk.shape[1])])
                head = _pose(poses, b, "T1w") @ img.affine @ ijk1
                ref = _exact(head[:3].T, geoms[b]).reshape(img.shape)
            else:
                r = rater(b)
                m = np.linalg.inv(r.affine) @ img.affine
                ref = ndimage.affine_transform(np.asarray(r.dataobj), m[:3, :3], m[:3, 3],
                                               output_shape=img.shape, order=0)
            print(kind, b, f"{time.time() - t0:.0f}s",
                  _dice(pred, names, ref, anatomy.DSEG_LABELS), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
