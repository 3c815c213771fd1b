"""Putamen anterior/posterior split: label logic, landmark sources, the participant level."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from _participant_fixtures import make_config
from ironmap.core.regions.putamen_split import split_whole_putamen, whole_putamen_labels
from ironmap.io.bids import InputError
from ironmap.io.landmarks import read_landmarks_table, sidecar_landmarks
from ironmap.io.tables import read_tsv


def test_whole_putamen_labels_by_name():
    names = {12: "Left-Putamen", 51: "Right-Putamen", 11: "Left-Caudate"}
    assert whole_putamen_labels(names) == {12: "left", 51: "right"}
    split = {3: "Left-Putamen-Anterior", 5: "Left-Putamen-Posterior", 51: "Right-Putamen"}
    assert whole_putamen_labels(split) == {51: "right"}
    assert whole_putamen_labels({1: "Putamen_L", 2: "Putamen_R"}) == {1: "left", 2: "right"}


def test_split_whole_putamen_new_labels_and_names():
    lab = np.zeros((20, 20, 6), np.int16)
    lab[2:8, :, :] = 12
    lab[12:18, :, :] = 51
    lab[9, 9, 3] = 11
    aff = np.eye(4)
    aff[:3, 3] = [-10, -10, 0]
    names = {11: "Left-Caudate", 12: "Left-Putamen", 51: "Right-Putamen"}
    out, new, hemis = split_whole_putamen(lab, names, aff, (0, 0.0, 3), (0, -25.0, 3))
    assert hemis == ["left", "right"]
    assert new[12] == "Left-Putamen-Anterior" and new[52] == "Left-Putamen-Posterior"
    assert new[51] == "Right-Putamen-Anterior" and new[53] == "Right-Putamen-Posterior"
    y = np.arange(20) - 10.0
    assert np.all(out[4, y >= 0, 2] == 12) and np.all(out[4, y < 0, 2] == 52)
    assert np.all(out[14, y >= 0, 2] == 51) and np.all(out[14, y < 0, 2] == 53)
    assert out[9, 9, 3] == 11 and np.all(out[lab == 0] == 0)
    with pytest.raises(ValueError, match="AC-PC distance"):
        split_whole_putamen(lab, names, aff, (0, 0, 0), (0, -2.0, 0))


def test_landmarks_table_and_errors(tmp_path):
    good = tmp_path / "lm.tsv"
    good.write_text("participant_id\tsession_id\tlandmark\tx\ty\tz\tspace\n"
                    "sub-01\tn/a\tAC\t1\t2\t3\tT1w\nsub-01\tn/a\tPC\t1\t-24\t4\tT1w\n"
                    "02\t1\tAC\t0\t0\t0\tFLAIR\n02\t1\tPC\t0\t-25\t0\tFLAIR\n")
    table = read_landmarks_table(good)
    assert table["sub-01"].ac == (1.0, 2.0, 3.0) and table["sub-01"].pc == (1.0, -24.0, 4.0)
    assert table["sub-02_ses-1"].space == "FLAIR"
    for body, message in (
            ("participant_id\tlandmark\tx\ty\n", "lacks column"),
            ("participant_id\tlandmark\tx\ty\tz\nsub-01\tAC\t1\t2\t3\n", "needs AC and PC"),
            ("participant_id\tlandmark\tx\ty\tz\nsub-01\tIH\t1\t2\t3\n", "neither AC nor PC"),
            ("participant_id\tlandmark\tx\ty\tz\nsub-01\tAC\t1\tx\t3\n", "three finite")):
        bad = tmp_path / "bad.tsv"
        bad.write_text(body)
        with pytest.raises(InputError, match=message) as err:
            read_landmarks_table(bad)
        assert "bad.tsv" in str(err.value)


def test_sidecar_landmarks_are_voxel_indices(tmp_path):
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    aff = np.diag([-2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [90, -120, -70]
    t1w = anat / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), aff), t1w)
    assert sidecar_landmarks(t1w, tmp_path) is None
    (anat / "sub-01_T1w.json").write_text(json.dumps(
        {"AnatomicalLandmarkCoordinates": {"AC": [45, 62, 33], "PC": [45, 50, 34]}}))
    lm = sidecar_landmarks(t1w, tmp_path)
    assert lm.ac == (0.0, 4.0, -4.0) and lm.pc == (0.0, -20.0, -2.0) and lm.space == "T1w"
    (anat / "sub-01_T1w.json").write_text(json.dumps(
        {"AnatomicalLandmarkCoordinates": {"AC": [45, 62, 33]}}))
    with pytest.raises(InputError, match="AC only"):
        sidecar_landmarks(t1w, tmp_path)


def _whole_putamen_masks(masks_dir, dest, sub):
    """A copy of the rater masks of ``sub`` with each putamen's two parts merged into one
    ``Left-Putamen``/``Right-Putamen`` label (as FreeSurfer or an atlas would give it)."""
    shutil.copytree(masks_dir, dest)
    desc = json.loads((dest / "dataset_description.json").read_text())
    desc["DatasetLinks"]["raw"] = (masks_dir / desc["DatasetLinks"]["raw"]).resolve().as_uri()
    (dest / "dataset_description.json").write_text(json.dumps(desc))
    dseg = next((dest / sub / "anat").glob("*_dseg.nii.gz"))
    img = nib.load(dseg)
    data = np.asarray(img.dataobj).astype(np.int16)
    tsv = next(p for p in (dseg.with_name(dseg.name.replace(".nii.gz", ".tsv")),
                           dest / "dseg.tsv") if p.exists())
    table = pd.read_csv(tsv, sep="\t")
    index = dict(zip(table["name"], table["index"], strict=True))
    for hemi in ("Left", "Right"):
        ant, post = index[f"{hemi}-Putamen-Anterior"], index[f"{hemi}-Putamen-Posterior"]
        data[data == post] = ant
        table = table[table["index"] != post]
        table.loc[table["index"] == ant, "name"] = f"{hemi}-Putamen"
    nib.save(nib.Nifti1Image(data, img.affine, img.header), dseg)
    table.to_csv(tsv, sep="\t", index=False)
    for other in (dest).iterdir():
        if other.name.startswith("sub-") and other.name != sub:
            shutil.rmtree(other)


@pytest.mark.slow
def test_participant_level_splits_whole_putamen_with_landmarks(reference_run, tmp_path):
    """Whole-putamen labels + the truth AC/PC table: anterior and posterior R2* within 2 % of
    the truth and of the run with the rater's own split."""
    from ironmap.workflows.participant_level import run_participant_level

    sub = "sub-001"
    masks = tmp_path / "masks"
    _whole_putamen_masks(reference_run.masks_dir, masks, sub)
    out = tmp_path / "out"
    cfg = make_config(reference_run.bids_dir, out, masks, participant_label=("001",),
                      landmarks=reference_run.truth_dir / "landmarks.tsv")
    assert run_participant_level(cfg) == 0
    got = read_tsv(out / sub / "anat" / f"{sub}_desc-regions_r2star.tsv")
    ref = read_tsv(reference_run.output_dir / sub / "anat" / f"{sub}_desc-regions_r2star.tsv")
    truth = read_tsv(reference_run.truth_dir / "regions.tsv")
    truth = truth[truth.participant_id == sub].set_index(["region", "hemisphere"]).r2star_true
    got = got.set_index(["region", "hemisphere"])
    ref = ref.set_index(["region", "hemisphere"])
    for region in ("putamen_anterior", "putamen_posterior"):
        for hemi in ("left", "right"):
            assert got.loc[(region, hemi), "r2star_mean"] == pytest.approx(
                truth[(region, hemi)], rel=0.02)
            assert got.loc[(region, hemi), "r2star_mean"] == pytest.approx(
                ref.loc[(region, hemi), "r2star_mean"], rel=0.02)
    side = json.loads((out / sub / "anat" /
                       f"{sub}_space-R2starmap_desc-deepgm_dseg.json").read_text())
    assert side["PutamenSplit"]["Source"] == "landmarks table landmarks.tsv"
    marks = read_tsv(reference_run.truth_dir / "landmarks.tsv")
    ac = marks[(marks.participant_id == sub) & (marks.landmark == "AC")][["x", "y", "z"]]
    np.testing.assert_allclose(side["PutamenSplit"]["AnteriorCommissure"],
                               ac.to_numpy(float)[0], atol=1e-3)
    names = read_tsv(out / sub / "anat" / f"{sub}_space-R2starmap_desc-deepgm_dseg.tsv")
    assert {"Left-Putamen-Anterior", "Left-Putamen-Posterior"} <= set(names["name"])


@pytest.mark.slow
def test_participant_level_atlas_labels_are_split(reference_run, tmp_path):
    """``--atlas`` (sub-001's T1w and whole-putamen labels as the atlas) on sub-002 with the
    truth AC/PC: labels come through the SyN, the putamen is split; putamen parts and caudate
    within 2 % of the truth (0.5 % when measured)."""
    from _participant_fixtures import pose_matrix
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant_level import run_participant_level

    poses = read_tsv(reference_run.truth_dir / "poses.tsv")
    masks = tmp_path / "masks"
    _whole_putamen_masks(reference_run.masks_dir, masks, "sub-001")
    dseg = nib.load(masks / "sub-001" / "anat" / "sub-001_desc-deepgm_dseg.nii.gz")
    flair_to_t1w = np.linalg.inv(pose_matrix(poses, "sub-001", "T1w")) @ pose_matrix(
        poses, "sub-001", "FLAIR")
    atlas = tmp_path / "atlas"
    atlas.mkdir()
    nib.save(nib.Nifti1Image(np.asarray(dseg.dataobj).astype(np.int16),
                             flair_to_t1w @ dseg.affine), atlas / "atlas_dseg.nii.gz")
    shutil.copyfile(next((masks / "sub-001" / "anat").glob("*_dseg.tsv")),
                    atlas / "atlas_dseg.tsv")
    shutil.copyfile(reference_run.bids_dir / "sub-001" / "anat" / "sub-001_T1w.nii.gz",
                    atlas / "tpl_T1w.nii.gz")
    out = tmp_path / "out"
    cfg = RunConfig(bids_dir=reference_run.bids_dir, output_dir=out.resolve(),
                    analysis_level="participant", participant_label=("002",), atlas=atlas,
                    landmarks=reference_run.truth_dir / "landmarks.tsv",
                    lesions="none")  # labels are the subject here, not lesions
    assert run_participant_level(cfg) == 0
    anat = out / "sub-002" / "anat"
    side = json.loads((anat / "sub-002_space-R2starmap_desc-deepgm_dseg.json").read_text())
    assert side["Sources"] == ["atlas:atlas"]
    assert side["PutamenSplit"]["Source"] == "landmarks table landmarks.tsv"
    got = read_tsv(anat / "sub-002_desc-regions_r2star.tsv").set_index(["region", "hemisphere"])
    truth = read_tsv(reference_run.truth_dir / "regions.tsv")
    truth = truth[truth.participant_id == "sub-002"].set_index(["region", "hemisphere"])
    for region in ("putamen_anterior", "putamen_posterior", "caudate"):
        for hemi in ("left", "right"):
            row = got.loc[(region, hemi)]
            assert row["n_voxels"] > 0
            assert row["r2star_mean"] == pytest.approx(
                truth.loc[(region, hemi), "r2star_true"], rel=0.02)
