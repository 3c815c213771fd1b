"""A T1w without a brain: the tissue volumes fail with a QC flag; R2* and lesions are kept."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from _participant_fixtures import make_config
from ironmap.io.tables import read_tsv

pytestmark = pytest.mark.slow


def test_failed_segmentation_is_a_qc_flag_not_a_lost_participant(reference_run, tmp_path, rng):
    from ironmap.workflows.participant_level import run_participant_level
    from ironmap.workflows.report import write_reports

    bids, masks = tmp_path / "bids", tmp_path / "masks"
    shutil.copytree(reference_run.bids_dir, bids, ignore=shutil.ignore_patterns("derivatives"))
    shutil.copytree(reference_run.masks_dir, masks)
    desc = json.loads((masks / "dataset_description.json").read_text())
    desc["DatasetLinks"]["raw"] = bids.resolve().as_uri()
    (masks / "dataset_description.json").write_text(json.dumps(desc))
    t1w = bids / "sub-002" / "anat" / "sub-002_T1w.nii.gz"
    img = nib.load(t1w)
    noise = ndimage.gaussian_filter(rng.normal(500.0, 100.0, img.shape), 1.0)
    nib.Nifti1Image(noise.astype(np.float32), img.affine).to_filename(t1w)
    out = tmp_path / "out"
    cfg = make_config(bids, out, masks, participant_label=("002",), volumes=True)
    assert run_participant_level(cfg) == 0  # the participant is not lost
    anat = out / "sub-002" / "anat"
    assert (anat / "sub-002_R2starmap.nii.gz").exists()
    assert (anat / "sub-002_desc-lesions_r2star.tsv").exists()
    assert not (anat / "sub-002_desc-volumes.tsv").exists()
    manifest = json.loads((out / "logs" / "manifests" / "sub-002.json").read_text())
    error = manifest["summary"]["segmentation_errors"]["volumes"]
    assert "sub-002" in error and "registration to the template failed" in error
    write_reports(cfg)
    qc = read_tsv(out / "group" / "qc.tsv").set_index("participant_id")
    assert "segmentation:volumes" in qc.loc["sub-002", "flags"]
    page = (out / "sub-002.html").read_text()
    assert "volumes failed" in page
