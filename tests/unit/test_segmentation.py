"""Segmentation and subject volumes: affine conventions, bad input, simulator truth."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.spatial.segmentation import SegmentationError, ants_affine, segment_tissues, to_ants


def test_nibabel_ants_round_trip_keeps_world():
    aff = np.array([[-2.0, 0, 0, 90], [0, 0, 3, -120], [0, 2.5, 0, -60], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), aff)
    np.testing.assert_allclose(ants_affine(to_ants(img)), aff, atol=1e-6)


def test_empty_image_is_refused_with_its_name():
    img = nib.Nifti1Image(np.zeros((20, 24, 20), np.float32), np.diag([4.0, 4, 4, 1]))
    with pytest.raises(SegmentationError, match="sub-empty.*empty"):
        segment_tissues(img, label="sub-empty")


@pytest.mark.slow
def test_image_without_brain_fails_registration(rng):
    noise = rng.normal(100.0, 10.0, (40, 48, 40)).astype(np.float32)
    img = nib.Nifti1Image(noise, np.diag([4.0, 4, 4, 1]))
    with pytest.raises(SegmentationError, match="sub-noise: registration to the template failed"):
        segment_tissues(img, label="sub-noise", template_mm=3)


@pytest.mark.slow
def test_simulated_subject_volumes(tmp_path):
    """One fast-preset simulated subject: cortical GM and WM within 5 % of truth."""
    sim = pytest.importorskip("ironmap.workflows.simulate")
    from ironmap.workflows.volumes import TABLE_COLUMNS, subject_volumes

    cohort = sim.simulate_cohort(tmp_path / "sim", subjects_per_group={"HC": 1}, sites=1,
                                 preset="fast", seed=3)
    truth = pd.read_csv(cohort.truth_dir / "volumes.tsv", sep="\t").iloc[0]
    sub = truth.participant_id
    row = subject_volumes(cohort.bids_dir / sub / "anat" / f"{sub}_T1w.nii.gz", sub, None,
                          tmp_path / "out")
    assert row["wm_cm3"] == pytest.approx(truth.wm_cm3, rel=0.05)
    assert row["cortical_gm_cm3"] == pytest.approx(truth.cortical_gm_cm3, rel=0.05)
    table = pd.read_csv(tmp_path / "out" / sub / "anat" / f"{sub}_desc-volumes.tsv", sep="\t")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table.wm_norm_cm3[0] == pytest.approx(row["wm_cm3"] * row["scaling_factor"])
