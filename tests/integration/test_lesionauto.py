"""Participant level with automatic lesion masks (``--lesions auto|none|masks``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ironmap.io.bids import SubjectInputs
from ironmap.workflows.config import RunConfig
from ironmap.workflows.participant_lesions import choose_lesion_mask, is_control


def test_is_control_reads_participants(tmp_path):
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tgroup\nsub-01\tHC\nsub-02\tRRMS\n")
    cfg = RunConfig(bids_dir=tmp_path, output_dir=tmp_path / "out", analysis_level="participant")
    assert is_control(SubjectInputs("sub-01", None), cfg)
    assert not is_control(SubjectInputs("sub-02", None), cfg)
    assert not is_control(SubjectInputs("sub-03", None), cfg)  # unknown: a patient
    empty = RunConfig(bids_dir=tmp_path / "none", output_dir=tmp_path / "o",
                      analysis_level="participant")
    assert not is_control(SubjectInputs("sub-01", None), empty)


def test_modes_without_running_anything(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tHC\n")
    subject = SubjectInputs("sub-01", None, flair=tmp_path / "sub-01_FLAIR.nii.gz")

    class Images:
        flair = object()  # present; never segmented in these cases

    rater = (object(), "FLAIR")
    for mode, chosen, expected in [("none", rater, (None, None)),
                                   ("masks", None, (None, None)),
                                   ("auto", rater, (rater, "rater")),
                                   ("masks", rater, (rater, "rater")),
                                   ("auto", None, (None, None))]:  # a control: skipped
        cfg = RunConfig(bids_dir=tmp_path, output_dir=tmp_path / "out",
                        analysis_level="participant", lesions=mode)
        assert choose_lesion_mask(subject, cfg, Images, tmp_path, chosen) == expected


@pytest.mark.slow
def test_participant_auto_lesions(sim_cohort, tmp_path):
    """An RRMS patient without rater masks gets automatic lesions: provenance, values."""
    from ironmap.workflows.participant_level import run_participant_level

    out = tmp_path / "out"
    cfg = RunConfig(bids_dir=Path(sim_cohort.bids_dir).resolve(), output_dir=out.resolve(),
                    analysis_level="participant", participant_label=("001",))
    assert run_participant_level(cfg) == 0
    table = pd.read_csv(out / "group" / "lesions.tsv", sep="\t")
    row = table.set_index("participant_id").loc["sub-001"]
    assert row["lesion_source"] == "automatic"
    truth = pd.read_csv(Path(sim_cohort.truth_dir) / "lesions.tsv", sep="\t")
    true_load = float(truth.set_index("participant_id").loc["sub-001", "lesion_mask_cm3"])
    # measured 28.1 cm3 against 1.8 cm3 (phantom cortex at 1 x 1 x 3 mm counts as lesion; see
    # docs/lesions.md): only "the true lesions are not lost" is asserted here
    assert row["lesion_load_cm3"] >= 0.5 * true_load
    assert row["lesion_count"] >= 1 and row["lesion_r2star_mean"] > 0
    anat = out / "sub-001" / "anat"
    side = json.loads((anat / "sub-001_space-FLAIR_desc-auto_label-lesion_mask.json")
                      .read_text())
    assert side["LesionSource"] == "automatic" and side["UsedT1w"] is True
    assert (anat / "sub-001_space-FLAIR_desc-auto_label-lesion_probseg.nii.gz").exists()
    import nibabel as nib

    full = np.asarray(nib.load(anat / "sub-001_space-FLAIR_desc-auto_label-lesion_mask.nii.gz")
                      .dataobj) > 0
    core = np.asarray(nib.load(anat / "sub-001_space-FLAIR_desc-autocore_label-lesion_mask"
                               ".nii.gz").dataobj) > 0
    assert core.any() and not np.any(core & ~full) and core.sum() < full.sum()
    dictionary = json.loads((out / "group" / "lesions.json").read_text())
    assert "lesion_source" in dictionary
