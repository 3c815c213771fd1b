"""Participant level on a simulated cohort: accuracy against the ground truth, outputs, reruns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _participant_fixtures import SUBJECTS, make_config, pose_matrix, subject_files
from ironmap.io.tables import read_tsv

pytestmark = pytest.mark.slow


def test_reference_run_succeeds(reference_run):
    assert reference_run.exit_code == 0
    failures = read_tsv(reference_run.output_dir / "logs" / "failures.tsv")
    assert failures.empty


def test_regional_r2star_within_2_percent_of_truth(reference_run):
    got = read_tsv(reference_run.output_dir / "group" / "regional_r2star.tsv")
    truth = read_tsv(reference_run.truth_dir / "regions.tsv")
    merged = got.merge(truth, on=["participant_id", "region", "hemisphere"], how="inner")
    assert set(merged["participant_id"]) == set(SUBJECTS)
    merged["rel_error"] = (merged["r2star_mean"] - merged["r2star_true"]).abs() \
        / merged["r2star_true"]
    per_region = merged.groupby("region")["rel_error"].median()
    # every canonical region of the rater masks is measured ...
    from ironmap.core.regions.names import REGIONS

    assert set(REGIONS) <= set(per_region.index), per_region
    # ... and its median absolute error is at most 2 %
    assert (per_region <= 0.02).all(), per_region.to_dict()


def test_lesion_load_is_the_seed_definition(reference_run):
    """Lesion load = lesion voxels x voxel volume of the rater mask on the FLAIR grid."""
    import nibabel as nib

    got = read_tsv(reference_run.output_dir / "group" / "lesions.tsv").set_index(
        "participant_id")
    for sub in SUBJECTS:
        mask = nib.load(reference_run.masks_dir / sub / "anat" / f"{sub}_label-lesion_mask.nii.gz")
        expected = (np.asarray(mask.dataobj) > 0).sum() * np.prod(mask.header.get_zooms()) / 1e3
        assert got.loc[sub, "lesion_load_cm3"] == pytest.approx(expected, rel=1e-5)
        assert got.loc[sub, "lesion_count"] > 0
        assert got.loc[sub, "lesion_r2star_mean"] > 0


def test_lesion_load_within_5_percent_of_truth(reference_run):
    got = read_tsv(reference_run.output_dir / "group" / "lesions.tsv").set_index(
        "participant_id")
    truth = read_tsv(reference_run.truth_dir / "lesions.tsv").set_index("participant_id")
    patients = truth.index[truth["lesion_load_cm3"] > 0]
    assert len(patients) == len(SUBJECTS)
    rel = (got.loc[patients, "lesion_load_cm3"] - truth.loc[patients, "lesion_load_cm3"]).abs() \
        / truth.loc[patients, "lesion_load_cm3"]
    assert (rel <= 0.05).all(), rel.to_dict()
    # and it is exactly the seed's definition on the rater mask (voxel count x voxel volume)
    np.testing.assert_allclose(got.loc[patients, "lesion_load_cm3"],
                               truth.loc[patients, "lesion_mask_cm3"], rtol=1e-3, atol=1e-3)


def test_registration_recovers_known_poses(reference_run):
    """FLAIR->T1w and GRE->T1w transforms vs the simulator's poses: mean error <= 1 mm."""
    from ironmap.spatial.registration import load_transform

    poses = read_tsv(reference_run.truth_dir / "poses.tsv")
    out = reference_run.output_dir
    rng = np.random.default_rng(5)
    points = np.c_[rng.uniform(-60, 60, (2000, 3)), np.ones(2000)]  # head-sized cloud, mm
    for sub in SUBJECTS:
        t1 = pose_matrix(poses, sub, "T1w")
        for series in ("FLAIR", "MEGRE"):
            xfm = sorted((out / sub / "anat").glob(f"{sub}_from-{series}_to-T1w_*xfm*"))[0]
            got = load_transform(xfm).matrix
            true = np.linalg.inv(pose_matrix(poses, sub, series)) @ t1
            err = np.linalg.norm(((got - true) @ points.T)[:3], axis=0)
            assert err.mean() <= 1.0, (sub, series, err.mean())


def test_derivative_dataset_layout(reference_run):
    out = reference_run.output_dir
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "ironmap" and desc["GeneratedBy"][0]["Version"]
    assert (out / "logs" / "config-participant.json").exists()
    for sub in SUBJECTS:
        names = {p.split("/")[-1] for p in subject_files(out, sub)}
        for tail in ("R2starmap.nii.gz", "S0map.nii.gz", "desc-fitflags_mask.nii.gz",
                     "desc-regions_r2star.tsv", "desc-regions_r2star.json",
                     "space-R2starmap_desc-deepgm_dseg.nii.gz"):
            assert f"{sub}_{tail}" in names, (sub, tail)
        side = json.loads((out / sub / "anat" / f"{sub}_R2starmap.json").read_text())
        assert side["Units"] == "1/s"
        assert side["EstimationMethod"] == "two_point"  # auto with two echoes
        assert (out / "logs" / "manifests" / f"{sub}.json").exists()
    regions = read_tsv(out / "group" / "regional_r2star.tsv")
    assert list(regions.columns[:11]) == [
        "participant_id", "session_id", "region", "hemisphere", "r2star_mean",
        "r2star_median", "r2star_sd", "n_voxels", "n_voxels_mask", "n_voxels_eroded",
        "n_voxels_flagged"]
    assert set(regions["hemisphere"]) == {"left", "right", "bilateral"}
    assert (regions["n_voxels_eroded"] < regions["n_voxels_mask"]).all()  # eroded by 1 voxel
    lesions = read_tsv(out / "group" / "lesions.tsv")
    assert list(lesions.columns) == ["participant_id", "session_id", "lesion_load_cm3",
                                     "lesion_count", "lesion_r2star_mean",
                                     "lesion_r2star_median", "n_voxels", "lesion_source"]
    assert set(lesions["lesion_source"]) == {"rater"}  # rater masks given for every one


def test_rerun_skips_up_to_date_participants(reference_run, tmp_path):
    """Unchanged inputs and parameters: every participant is skipped, outputs unchanged."""
    import shutil

    from ironmap.workflows.participant_level import run_participant_level

    out = tmp_path / "out"
    shutil.copytree(reference_run.output_dir, out)
    before = {k: p.stat().st_mtime_ns for s in SUBJECTS for k, p in subject_files(out, s).items()}
    code = run_participant_level(make_config(reference_run.bids_dir, out,
                                             reference_run.masks_dir))
    assert code == 0
    after = {k: p.stat().st_mtime_ns for s in SUBJECTS for k, p in subject_files(out, s).items()}
    assert before == after
    for sub in SUBJECTS:
        assert "skipped" in (out / "logs" / f"{sub}.log").read_text()
    pd.testing.assert_frame_equal(
        read_tsv(out / "group" / "regional_r2star.tsv"),
        read_tsv(reference_run.output_dir / "group" / "regional_r2star.tsv"))


def test_changed_parameter_invalidates_manifest(reference_run):
    from ironmap.io.manifest import is_up_to_date, read_manifest
    from ironmap.workflows.participant_level import subject_parameters

    manifest = read_manifest(reference_run.output_dir / "logs" / "manifests" / "sub-001.json")
    cfg = make_config(reference_run.bids_dir, reference_run.output_dir, reference_run.masks_dir)
    params = subject_parameters(cfg)
    assert is_up_to_date(manifest, manifest["inputs"], params, reference_run.output_dir)
    changed = subject_parameters(make_config(reference_run.bids_dir, reference_run.output_dir,
                                             reference_run.masks_dir, erosion_voxels=2))
    assert not is_up_to_date(manifest, manifest["inputs"], changed, reference_run.output_dir)
    touched = dict(manifest["inputs"])
    touched[next(iter(touched))] = "0" * 64
    assert not is_up_to_date(manifest, touched, params, reference_run.output_dir)


@pytest.mark.parametrize("inside", ["", "sub-001/out", "code/out"])
def test_output_dir_inside_raw_tree_is_refused(tmp_path, inside):
    from ironmap.cli.main import main

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    out = raw / inside if inside else raw
    assert main([str(raw), str(out), "participant"]) == 2
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant_level import check_output_dir, run_participant_level

    cfg = RunConfig(bids_dir=raw, output_dir=out, analysis_level="participant")
    assert check_output_dir(cfg) is not None
    assert run_participant_level(cfg) == 2
    assert check_output_dir(RunConfig(bids_dir=raw, output_dir=raw / "derivatives" / "ironmap",
                                      analysis_level="participant")) is None


def test_label_names_fall_back_to_freesurfer_aseg_numbers(tmp_path):
    from ironmap.io.bids import InputError, MaskFile
    from ironmap.workflows.participant import label_names

    aseg = np.zeros((4, 4, 4), dtype=np.int16)
    aseg[0, 0, :3] = [11, 50, 12]
    aseg[1, 1, 1] = 2  # cerebral white matter: not a region ironmap reports
    names = label_names(MaskFile(tmp_path / "aseg.nii.gz", "dseg"), aseg)
    assert names == {11: "Left-Caudate", 50: "Right-Caudate", 12: "Left-Putamen"}
    table = MaskFile(tmp_path / "x_dseg.nii.gz", "dseg", ((1, "Left-Caudate"),))
    assert label_names(table, aseg) == {1: "Left-Caudate"}
    with pytest.raises(InputError, match="no dseg.tsv"):
        label_names(MaskFile(tmp_path / "y_dseg.nii.gz", "dseg"), np.ones((2, 2, 2)))


def test_world_to_source_composes_through_t1w():
    """Mask world -> R2* grid world in one matrix: X[source] @ inv(X[target])."""
    from ironmap.workflows.participant import world_to_source

    shift = np.eye(4)
    shift[:3, 3] = [2.0, -1.0, 0.5]
    rot = np.eye(4)
    rot[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    xfm = {"T1w": np.eye(4), "FLAIR": shift, "MEGRE": rot}
    m = world_to_source(xfm, "MEGRE", "FLAIR")
    p_megre = np.array([10.0, 20.0, 30.0, 1.0])
    p_t1w = np.linalg.inv(rot) @ p_megre  # MEGRE world -> T1w world
    np.testing.assert_allclose(m @ p_megre, shift @ p_t1w)
    np.testing.assert_allclose(world_to_source(xfm, "FLAIR", "FLAIR"), np.eye(4))


@pytest.mark.parametrize("steps", [1, 2])
def test_bounding_box_erosion_equals_whole_image_erosion(rng, steps):
    from ironmap.core.regions.regional_values import erode
    from ironmap.workflows.participant import erode_labels

    labels = np.zeros((40, 44, 30), dtype=np.int16)
    for index in range(1, 8):
        centre, radius = rng.integers(2, [38, 42, 28]), rng.integers(2, 7, 3)
        box = tuple(slice(max(c - r, 0), c + r) for c, r in zip(centre, radius, strict=True))
        labels[box] = index
    labels[:5, :5, :5] = 9  # touches the image border
    expected = np.zeros_like(labels)
    for index in np.unique(labels[labels > 0]):
        expected[erode(labels == index, steps)] = index
    np.testing.assert_array_equal(erode_labels(labels, steps, erode), expected)
