"""Within-subject change between sessions: lesion subtraction, mid-space, volume change."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import require_shared
from ironmap.core.lesions.lesion_change import (
    ChangeParams,
    change_overlap,
    jacobian_pbvc,
    lesion_change,
    percent_volume_change,
)
from ironmap.sim.poses import rigid_matrix
from ironmap.spatial.grid import resample_labels, voxel_sizes
from ironmap.spatial.withinsubject import common_grid, midspace

MOTION = rigid_matrix((3.0, -2.0, 4.0), (4.0, -3.0, 2.0))


def _ball(shape, centre, radius):
    ii = np.indices(shape).astype(float)
    return sum((ii[k] - centre[k]) ** 2 for k in range(3)) <= radius ** 2


def _pair(rng, new_blobs):
    """Two smooth 'FLAIRs' of one brain (second rescaled, both noisy) and the new blobs."""
    shape = (60, 60, 40)
    brain = _ball(shape, (30, 30, 20), 24)
    base = np.where(brain, 100.0, 0.0) + 8 * ndimage.gaussian_filter(rng.normal(size=shape), 3)
    old_lesion = _ball(shape, (20, 30, 20), 3)
    first = base + 60 * old_lesion
    truth = np.zeros(shape, bool)
    for c in new_blobs:
        truth |= _ball(shape, c, 2.5)
    second = (base + 60 * (old_lesion | truth)) * 1.3 + 15  # another scanner gain/offset
    first = first + rng.normal(0, 3, shape)
    second = second + rng.normal(0, 3 * 1.3, shape)
    return first, second, brain, truth


def test_lesion_change_finds_new_lesions_despite_an_intensity_change(rng):
    first, second, brain, truth = _pair(rng, [(38, 30, 20), (30, 40, 14), (30, 22, 26)])
    res = lesion_change(first, second, brain, (1.0, 1.0, 1.0))
    assert res.scale == pytest.approx(1 / 1.3, rel=0.05)
    assert res.n_lesions == 3
    ov = change_overlap(res.mask, truth, (1, 1, 1))
    assert ov["dice"] > 0.8
    assert ov["truth_lesions_detected"] == 3 and ov["pred_lesions_true"] == 3
    assert not res.mask[_ball(first.shape, (20, 30, 20), 4)].any()  # the old lesion is no change


def test_lesion_change_without_change_finds_nothing(rng):
    first, second, brain, _ = _pair(rng, [])
    res = lesion_change(first, second, brain, (1.0, 1.0, 1.0), params=ChangeParams())
    assert res.n_lesions == 0 and res.volume_cm3 == 0.0


def test_midspace_halves_a_rigid_motion():
    to_first, to_later = midspace(MOTION)
    np.testing.assert_allclose(to_later @ to_later, MOTION, atol=1e-10)
    np.testing.assert_allclose(to_later @ np.linalg.inv(to_first), MOTION, atol=1e-10)
    rot = to_later[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-10)  # still rigid
    angle = np.degrees(np.arccos((np.trace(rot) - 1) / 2))
    full = np.degrees(np.arccos((np.trace(MOTION[:3, :3]) - 1) / 2))
    assert angle == pytest.approx(full / 2, rel=1e-6)


def test_common_grid_keeps_the_field_of_view():
    a = nib.Nifti1Image(np.zeros((100, 100, 30)), np.diag([0.7, 0.7, 4.0, 1.0]))
    b = nib.Nifti1Image(np.zeros((80, 80, 40)), np.diag([0.9, 0.9, 3.0, 1.0]))
    g = common_grid(a, b)
    np.testing.assert_allclose(voxel_sizes(g.affine), [0.7, 0.7, 3.0])
    assert g.shape == (100, 100, 40)
    corner = lambda img: img.affine @ np.array([-0.5, -0.5, -0.5, 1.0])  # noqa: E731
    np.testing.assert_allclose(corner(g), corner(a))


def test_jacobian_and_percent_volume_change():
    brain = np.zeros((10, 10, 10), bool)
    brain[2:8, 2:8, 2:8] = True
    jac = np.where(brain, 0.99, 1.5)  # outside the brain does not count
    assert jacobian_pbvc(jac, brain) == pytest.approx(-1.0)
    assert percent_volume_change(1000.0, 990.0) == pytest.approx(-1.0)
    assert np.isnan(percent_volume_change(0.0, 990.0))


def _move_session(folder: Path, motion: np.ndarray) -> None:
    """Every image of a session placed elsewhere in the scanner (affine changed, voxels not)."""
    for path in folder.rglob("*.nii.gz"):
        img = nib.load(path)
        data = np.asarray(img.dataobj)
        moved = nib.Nifti1Image(data, motion @ img.affine, img.header)
        moved.set_sform(motion @ img.affine, code=1)
        moved.set_qform(motion @ img.affine, code=1)
        path.unlink()
        nib.save(moved, path)


@pytest.mark.slow
def test_longitudinal_template_on_simulated_sessions(tmp_path):
    """The --longitudinal-template step (as the participant level calls it after the sessions)
    on a simulated RRMS participant whose second session (3 years later) lies at another place
    in the scanner: the rigid map is recovered, the new/enlarged lesions of the phantom
    are found, and the Jacobian brain volume change is within 2 points of the truth."""
    from ironmap.cli.bidsapp import build_parser, config_from_args
    from ironmap.io.bids import discover
    from ironmap.io.tables import read_tsv
    from ironmap.sim.change import new_lesion_truth, pose_matrix
    from ironmap.spatial.registration import displacement_error, load_transform
    from ironmap.workflows.simulate import simulate_cohort
    from ironmap.workflows.withinsubject import run_within_subject

    cohort = simulate_cohort(tmp_path / "sim", subjects_per_group={"RRMS": 1}, sites=1,
                             preset="fast", seed=3, sessions=2, interval_years=3.0)
    pid = "sub-001"
    _move_session(cohort.bids_dir / pid / "ses-02", MOTION)
    out = tmp_path / "out"
    args = build_parser().parse_args([str(cohort.bids_dir), str(out), "participant",
                                      "--longitudinal-template"])
    cfg = config_from_args(args)
    assert cfg.longitudinal_template
    run_within_subject(cfg, discover(cfg.bids_dir))
    table = read_tsv(out / "group" / "longitudinal_change.tsv")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["first_session"] == "ses-01" and row["session_id"] == "ses-02"
    folder = out / pid / "longitudinal"
    matrix = load_transform(folder / f"{pid}_ses-02_from-ses-01_mode-image_xfm.txt").matrix
    # truth: each scan has its own head pose (poses.tsv), the second also the extra motion
    poses = read_tsv(cohort.truth_dir / "poses.tsv")
    w1, w2 = (pose_matrix(poses, pid, s) for s in ("ses-01", "ses-02"))
    true_matrix = MOTION @ np.linalg.inv(w2) @ w1
    flair1 = nib.load(cohort.bids_dir / pid / "ses-01" / "anat" / f"{pid}_ses-01_FLAIR.nii.gz")
    inside = np.argwhere(flair1.get_fdata() > 0)
    pts = (flair1.affine @ np.c_[inside, np.ones(len(inside))].T)[:3].T
    assert displacement_error(matrix, true_matrix, pts)[0] < 1.0  # FLAIR voxels 2 x 2 x 4 mm
    geometry = json.loads((cohort.truth_dir / "geometry.json").read_text())
    truth = new_lesion_truth(geometry[f"{pid}_ses-01"], geometry[f"{pid}_ses-02"],
                             flair1.shape, flair1.affine, w1)
    change = nib.load(folder / f"{pid}_ses-02_space-ses-01_desc-lesionchange_mask.nii.gz")
    to_first, _ = midspace(matrix)
    found = resample_labels(change, flair1, np.linalg.inv(to_first)) > 0
    ov = change_overlap(found, truth, voxel_sizes(flair1.affine))
    assert ov["truth_lesions"] >= 2
    # measured: 5 of 7 here (seed 3); 8 of 8 and 10 of 10 in the benchmark's seeds 0 and 1
    assert ov["truth_lesions_detected"] >= ov["truth_lesions"] / 2
    # voxel overlap is limited by the 4 mm FLAIR slices (partial volume around each lesion
    # against a truth sampled at voxel centres) and by false detections; seeds 0/1: 0.29/0.23
    assert ov["dice"] >= 0.1
    vols = read_tsv(cohort.truth_dir / "volumes.tsv").set_index("session_id")
    true_change = percent_volume_change(*(vols.loc[s, "gm_cm3"] + vols.loc[s, "wm_cm3"]
                                          for s in ("ses-01", "ses-02")))
    assert true_change < 0
    # the 2 mm SyN Jacobian underestimates the atrophy (seeds 0/1: -0.17/-0.19 % against
    # -1.54/-1.55 %; here +0.02 %; docs/longitudinal.md): only the absence of gross errors
    assert abs(row["jacobian_pbvc_percent"] - true_change) < 2.0


@pytest.mark.realdata
@pytest.mark.slow
def test_within_subject_change_on_real_longitudinal_pair():
    """open_ms longitudinal patient 1 (two raw 2D FLAIR/T1w studies 203 days apart): the rigid
    registration agrees with the database's own transforms and the subtraction finds most of
    the consensus lesion change (see docs/longitudinal.md for the measured figures)."""
    from ironmap.spatial.registration import displacement_error, parse_itk_text
    from ironmap.spatial.withinsubject import SessionImages, within_subject_change

    src = require_shared("open_ms_data", "longitudinal", "raw", "patient01")
    ses = [SessionImages(f"ses-{k}", nib.load(src / f"study{k}_FLAIR.nii.gz"),
                         nib.load(src / f"study{k}_T1W.nii.gz")) for k in (1, 2)]
    res = within_subject_change(ses[0], ses[1], jacobian=False)
    common_to = [parse_itk_text((src / f"study{k}_FLAIR_to_common_space.txt").read_text())
                 for k in (1, 2)]
    reference = common_to[1] @ np.linalg.inv(common_to[0])
    ijk = np.argwhere(res.brain)
    pts = (res.mid_to_first @ res.grid.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    assert displacement_error(res.later_to_first, reference, pts)[0] < 1.5
    gt = nib.load(src / "gt.nii.gz")
    mask = nib.Nifti1Image(res.lesions.mask.astype(np.uint8), res.grid.affine)
    found = resample_labels(mask, gt, np.linalg.inv(res.mid_to_first) @ common_to[0]) > 0
    ov = change_overlap(found, gt.get_fdata() > 0, voxel_sizes(gt.affine))
    assert ov["truth_lesions_detected"] >= REAL_MIN_DETECTED
    assert ov["dice"] >= REAL_MIN_DICE


#: Floors for the real pair, set below the measured values (docs/longitudinal.md).
REAL_MIN_DETECTED = 3
REAL_MIN_DICE = 0.5
