"""Putamen split at the anterior-commissure plane."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from ironmap.core.regions.putamen_split import acpc_axis, anterior_of_ac, split_putamen


def test_plane_is_perpendicular_to_acpc_line():
    ac, pc = (0.0, 2.0, -4.0), (0.0, -24.0, -2.0)
    u = acpc_axis(ac, pc)
    assert np.linalg.norm(u) == pytest.approx(1.0)
    pts = np.array([ac, pc, np.add(ac, 5 * u), np.add(ac, -0.5 * u)])
    # points on the plane (perpendicular offsets) count as anterior, as the plane itself
    side = np.cross(u, [1.0, 0, 0])
    pts = np.vstack([pts, np.add(ac, 10 * side)])
    assert anterior_of_ac(pts, ac, pc).tolist() == [True, False, True, False, True]
    with pytest.raises(ValueError, match="AC-PC distance"):
        acpc_axis(ac, ac)


def test_split_on_tilted_grid():
    lab = np.zeros((20, 20, 20), np.int16)
    lab[2:8, :, 5:10] = 15  # left whole putamen
    lab[12:18, :, 5:10] = 4  # right, already labelled anterior everywhere
    aff = np.eye(4)
    aff[:3, 3] = [-10, -10, -10]
    out = split_putamen(lab, aff, ac_mm=(0, 0.0, 0), pc_mm=(0, -25.0, 0))
    y_world = np.arange(20) - 10.0
    for hemi, (ant, post) in {"left": (3, 5), "right": (4, 6)}.items():
        xs = slice(2, 8) if hemi == "left" else slice(12, 18)
        col = out[xs, :, 7][0]
        assert np.all(col[y_world >= 0] == ant) and np.all(col[y_world < 0] == post)
    assert np.all(out[lab == 0] == 0)


@pytest.mark.slow
def test_split_reproduces_simulator_rater_masks(tmp_path):
    """Merge the rater's putamen parts, re-split with the truth AC/PC: R2* within 2 %
    after the one-voxel erosion the participant level applies."""
    nib = pytest.importorskip("nibabel")
    sim = pytest.importorskip("ironmap.workflows.simulate")
    cohort = sim.simulate_cohort(tmp_path / "sim", subjects_per_group={"HC": 1}, sites=1,
                                 preset="fast", seed=5)
    sub = "sub-001"
    poses = pd.read_csv(cohort.truth_dir / "poses.tsv", sep="\t").set_index("series")
    mats = {s: poses.loc[s, [f"m{i}{j}" for i in range(4) for j in range(4)]].to_numpy(
        dtype=float).reshape(4, 4) for s in ("T1w", "FLAIR")}
    marks = pd.read_csv(cohort.truth_dir / "landmarks.tsv", sep="\t").set_index("landmark")
    t1w_to_flair = np.linalg.inv(mats["FLAIR"]) @ mats["T1w"]
    ac, pc = ((t1w_to_flair @ np.r_[marks.loc[m, ["x", "y", "z"]].to_numpy(float), 1])[:3]
              for m in ("AC", "PC"))
    img = nib.load(cohort.masks_dir / sub / "anat" / f"{sub}_desc-deepgm_dseg.nii.gz")
    rater = np.asarray(img.dataobj).astype(np.int16)
    merged = np.where(np.isin(rater, (5, 6)), rater - 2, rater)  # posterior -> anterior index
    out = split_putamen(merged, img.affine, ac, pc)
    put = np.isin(rater, (3, 4, 5, 6))
    assert np.mean(out[put] == rater[put]) >= 0.9  # differences: partial-volume border voxels
    # regional R2* when every voxel carries the truth R2* of the part it really belongs to
    truth = pd.read_csv(cohort.truth_dir / "regions.tsv", sep="\t")
    truth = truth.set_index(["region", "hemisphere"]).r2star_true
    names = {3: ("putamen_anterior", "left"), 4: ("putamen_anterior", "right"),
             5: ("putamen_posterior", "left"), 6: ("putamen_posterior", "right")}
    r2 = np.zeros(rater.shape)
    for idx, key in names.items():
        r2[rater == idx] = truth[key]
    for idx, key in names.items():
        core = ndimage.binary_erosion(out == idx)  # the pipeline erodes by one voxel
        assert r2[core].mean() == pytest.approx(truth[key], rel=0.02)
