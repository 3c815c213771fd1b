"""Participant level ``--lesion-method {ironmap,samseg}``: options, start-up refusal when SAMSEG
is absent, per-participant refusal without a T1w, provenance; and a real SAMSEG participant
run when SAMSEG is installed (``SAMSEG_CMD``; it needs numpy<2, so never in ironmap's own
environment)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.io.bids import SubjectInputs
from ironmap.workflows.config import RunConfig
from ironmap.workflows.participant_lesions import auto_mask, lesion_method_problem


def _cfg(tmp_path: Path, **kwargs) -> RunConfig:
    return RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out",
                     analysis_level="participant", **kwargs)


def _bids(tmp_path: Path) -> Path:
    bids = tmp_path / "bids"
    (bids / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    return bids


def test_cli_options_reach_the_config(tmp_path):
    from ironmap.cli.bidsapp import build_parser, config_from_args

    script = tmp_path / "run_samseg"
    script.write_text("#!/usr/bin/python3\n")
    args = build_parser().parse_args([str(tmp_path / "bids"), str(tmp_path / "out"),
                                      "participant", "--lesion-method", "samseg",
                                      "--samseg", str(script)])
    cfg = config_from_args(args)
    assert cfg.lesion_method == "samseg" and cfg.samseg_cmd == str(script.resolve())
    default = config_from_args(build_parser().parse_args(
        [str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]))
    assert default.lesion_method == "ironmap" and default.samseg_cmd is None


def test_lesion_method_is_a_result_parameter_and_recorded():
    from ironmap.workflows.participant_level import RESULT_PARAMETERS, subject_parameters
    from ironmap.workflows.provenance import PARTICIPANT_KEYS

    assert "lesion_method" in RESULT_PARAMETERS and "lesion_method" in PARTICIPANT_KEYS
    base = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant")
    other = dataclasses.replace(base, lesion_method="samseg")
    assert subject_parameters(other)["lesion_method"] == "samseg"
    assert subject_parameters(other) != subject_parameters(base)


def test_startup_refusals_name_the_problem(tmp_path, monkeypatch):
    assert lesion_method_problem(_cfg(tmp_path)) is None
    missing = tmp_path / "nowhere" / "run_samseg"
    monkeypatch.setenv("SAMSEG_CMD", str(missing))
    problem = lesion_method_problem(_cfg(tmp_path, lesion_method="samseg"))
    assert "SAMSEG is not available" in problem and str(missing) in problem
    assert "pip install samseg" in problem and "docs/samseg.md" in problem
    problem = lesion_method_problem(_cfg(tmp_path, lesion_method="samseg", lesions="masks"))
    assert "needs --lesions auto" in problem
    # a run_samseg whose interpreter has no samseg package (ironmap's own environment)
    script = tmp_path / "run_samseg"
    script.write_text(f"#!{sys.executable}\n")
    problem = lesion_method_problem(_cfg(tmp_path, lesion_method="samseg",
                                         samseg_cmd=str(script)))
    assert "samseg package is not installed" in problem and "pip install samseg" in problem


def test_participant_level_refuses_before_any_participant(tmp_path, monkeypatch, capfd):
    """SAMSEG absent: exit code 2 at start-up through the CLI, nothing of a participant made."""
    from ironmap.cli.main import main

    bids = _bids(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv("SAMSEG_CMD", str(tmp_path / "no_run_samseg"))
    rc = main([str(bids), str(out), "participant", "--lesion-method", "samseg"])
    assert rc == 2
    text = capfd.readouterr().err
    assert "--lesion-method samseg" in text and "no_run_samseg" in text
    assert "pip install samseg" in text
    assert not list(out.glob("sub-*")) and not (out / "group").exists()


def test_participant_without_t1w_is_refused_alone(tmp_path, caplog):
    """SAMSEG needs the T1w: the participant's lesion columns stay n/a (logged), nothing
    written, and the error does not escape (the other participants go on)."""
    flair = nib.Nifti1Image(np.random.default_rng(1).random((8, 8, 8)).astype(np.float32),
                            np.eye(4))

    class Images:
        t1w = None

    Images.flair = flair
    subject = SubjectInputs("sub-01", None, flair=tmp_path / "sub-01_FLAIR.nii.gz")
    stage = tmp_path / "stage"
    stage.mkdir()
    with caplog.at_level(logging.ERROR):
        assert auto_mask(subject, Images, stage, method="samseg") is None
    assert "needs the participant's T1w" in caplog.text
    assert not list(stage.rglob("*.nii.gz"))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # SAMSEG: 5-10 CPU-min, much more wall time on a loaded machine
def test_participant_level_with_samseg_lesions(request, tmp_path):
    """A real SAMSEG run (several CPU-minutes) on the simulated patient sub-001 through the
    participant level; skipped (before the cohort is simulated) when SAMSEG is not
    installed."""
    from ironmap.io.samseg import SamsegError, find_samseg
    from ironmap.workflows.participant_level import run_participant_level

    try:
        find_samseg(os.environ.get("SAMSEG_CMD"))
    except SamsegError as exc:
        pytest.skip(f"SAMSEG is not installed (set SAMSEG_CMD to its run_samseg): {exc}")
    sim_cohort = request.getfixturevalue("sim_cohort")
    out = tmp_path / "out"
    cfg = RunConfig(bids_dir=Path(sim_cohort.bids_dir).resolve(), output_dir=out.resolve(),
                    analysis_level="participant", participant_label=("001",),
                    lesion_method="samseg")
    assert run_participant_level(cfg) == 0
    row = pd.read_csv(out / "group" / "lesions.tsv", sep="\t").set_index(
        "participant_id").loc["sub-001"]
    assert row["lesion_source"] == "automatic"
    truth = pd.read_csv(Path(sim_cohort.truth_dir) / "lesions.tsv", sep="\t")
    true_load = float(truth.set_index("participant_id").loc["sub-001", "lesion_mask_cm3"])
    assert row["lesion_load_cm3"] >= 0.5 * true_load  # the true lesions are not lost
    assert row["lesion_count"] >= 1 and row["lesion_r2star_mean"] > 0
    anat = out / "sub-001" / "anat"
    side = json.loads((anat / "sub-001_space-FLAIR_desc-auto_label-lesion_mask.json")
                      .read_text())
    assert side["Method"].startswith("SAMSEG lesion mode") and side["SamsegVersion"]
    full = np.asarray(nib.load(anat / "sub-001_space-FLAIR_desc-auto_label-lesion_mask.nii.gz")
                      .dataobj) > 0
    core = np.asarray(nib.load(anat / "sub-001_space-FLAIR_desc-autocore_label-lesion_mask"
                               ".nii.gz").dataobj) > 0
    assert core.any() and not np.any(core & ~full)
    config = json.loads((out / "logs" / "config-participant.json").read_text())
    assert config["lesion_method"] == "samseg"
    assert not list(out.rglob(".ironmap-work/*"))  # SAMSEG's scratch removed
