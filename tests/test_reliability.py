"""Hardening: nothing lost, nothing silently wrong (docs/reliability.md lists each case)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ironmap.cli.main import main

TINY_SIM = ["--preset", "fast", "--subjects-per-group", "0", "--hc", "1", "--sites", "1",
            "--voxel-size", "4", "--t1w-voxel-size", "4", "--flair-voxel-size", "4", "-q"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- simulate --overwrite replaces only a simulated cohort ----------------------------------

def test_simulate_overwrite_never_removes_a_real_dataset(tmp_path, capsys):
    out = tmp_path / "study"
    (out / "bids" / "sub-01" / "anat").mkdir(parents=True)
    (out / "bids" / "dataset_description.json").write_text('{"Name": "real study"}')
    (out / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"real data")
    (out / "truth").mkdir()
    (out / "truth" / "notes.txt").write_text("mine")
    before = _tree(out)
    assert main(["simulate", str(out), "--overwrite", *TINY_SIM]) == 1
    assert _tree(out) == before  # nothing removed, nothing added
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "not written by `ironmap simulate`" in err[0]


def test_simulate_overwrite_replaces_its_own_cohort(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), *TINY_SIM]) == 0
    marker = json.loads((out / ".ironmap-simulate.json").read_text())
    assert marker["GeneratedBy"][0]["Name"] == "ironmap simulate"
    (out / "bids" / "stale.txt").write_text("left by the first run")
    assert main(["simulate", str(out), "--overwrite", *TINY_SIM]) == 0
    assert not (out / "bids" / "stale.txt").exists()
    assert (out / "bids" / "participants.tsv").exists()


# --- OUTPUT_DIR never on, inside or around a dataset ironmap reads ------------------------

def _bids(root: Path) -> tuple[Path, Path]:
    bids = root / "bids"
    masks = bids / "derivatives" / "raters"
    (masks / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (masks / "dataset_description.json").write_text('{"Name": "raters", "DatasetType": '
                                                    '"derivative"}')
    return bids, masks


@pytest.mark.parametrize("where", ["masks", "inside masks", "around masks", "around bids"])
def test_output_dir_on_an_input_dataset_is_refused(tmp_path, capsys, where):
    bids, masks = _bids(tmp_path)
    out = {"masks": masks, "inside masks": masks / "ironmap", "around masks": bids / "derivatives",
           "around bids": tmp_path}[where]
    before = _tree(tmp_path)
    assert main([str(bids), str(out), "participant", "--masks", str(masks)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err
    assert "--masks" in err[0] or "contains the BIDS dataset" in err[0]
    assert _tree(tmp_path) == before  # the raters' dataset_description.json is untouched


# --- one run at a time per OUTPUT_DIR; a killed run's lock is recovered ---------------------

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ironmap.cli.main", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_second_run_refused_and_killed_runs_lock_recovered(tmp_path):
    from ironmap.workflows.simulate import simulate_cohort

    sim = simulate_cohort(tmp_path / "sim", subjects_per_group={"HC": 1}, sites=1,
                          preset="fast", voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})
    out = tmp_path / "out"
    args = (str(sim.bids_dir), str(out), "participant", "--masks", str(sim.masks_dir))
    first = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".ironmap.lock.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "first run never locked"
            time.sleep(0.05)
        second = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first run ended before the second one was refused"
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "already running" in lines[0], second.stderr
        assert f"(pid {first.pid}, host {socket.gethostname()}, since 20" in lines[0]
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert (out / ".ironmap.lock.json").exists()  # left behind by the killed run
    third = subprocess.run(_cli(str(sim.bids_dir), str(out), "group", "--no-report"),
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert "already running" not in third.stderr
    assert f"recovered the lock of a run that ended without releasing it (pid {first.pid}" \
        in third.stderr
    assert not (out / ".ironmap-staging").exists()  # the killed run's scratch files are gone
    assert not (out / ".ironmap.lock.json").exists()  # released by the third run


def _failing_bids(root: Path, subjects=("01", "02")) -> Path:
    """Participants whose anat folder has a GRE echo but no T1w (each fails at once)."""
    import nibabel as nib
    import numpy as np

    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    for sub in subjects:
        anat = bids / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)).to_filename(
            anat / f"sub-{sub}_echo-1_part-mag_MEGRE.nii.gz")
        (anat / f"sub-{sub}_echo-1_part-mag_MEGRE.json").write_text('{"EchoTime": 0.005}')
    return bids


def test_a_run_never_deletes_another_runs_staging_files(tmp_path):
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant import STAGING, run_participant_level

    bids, out = _failing_bids(tmp_path, ("01",)), tmp_path / "out"
    other = out / STAGING / "sub-01" / "sub-01" / "anat" / "being-written.nii.gz"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another run's file")
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="participant")
    assert run_participant_level(cfg) == 3
    assert other.read_bytes() == b"another run's file"


def test_failures_of_earlier_runs_are_kept(tmp_path):
    from ironmap.io.tables import read_tsv

    bids, out = _failing_bids(tmp_path), tmp_path / "out"
    for label in ("01", "02"):
        assert main([str(bids), str(out), "participant", "--participant-label", label,
                     "-q"]) == 3
    failures = read_tsv(out / "logs" / "failures.tsv")
    assert sorted(failures["participant_id"]) == ["sub-01", "sub-02"]
    assert all("no T1w image" in e for e in failures["error"])
    assert main([str(bids), str(out), "participant", "--participant-label", "01", "-q"]) == 3
    assert sorted(read_tsv(out / "logs" / "failures.tsv")["participant_id"]) == [
        "sub-01", "sub-02"]  # rerunning sub-01 replaces its row only
