"""A run killed midway (SIGKILL) resumes: completed participants are skipped, outputs identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _participant_fixtures import assert_same_subject_outputs, group_rows, subject_files

pytestmark = pytest.mark.slow

LABELS = ("sub-001", "sub-002")


def _command(ref, out: Path) -> list[str]:
    return [sys.executable, "-m", "ironmap.cli.main", str(ref.bids_dir), str(out),
            "participant", "--participant-label", *LABELS, "--masks", str(ref.masks_dir)]


def test_sigkill_midway_then_rerun(reference_run, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    first = out / "logs" / "manifests" / "sub-001.json"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_command(reference_run, out), stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            end = time.monotonic() + 500
            while not first.exists() and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            assert first.exists(), (tmp_path / "killed.log").read_text()[-2000:]
            time.sleep(1.0)  # now inside sub-002 (R2* fit or registration)
            assert proc.poll() is None, "the run finished before it could be killed"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the interrupted participant has no manifest, and nothing half-written in its tree
    assert not (out / "logs" / "manifests" / "sub-002.json").exists()
    assert not (out / "group" / "regional_r2star.tsv").exists()
    done_before = {k: p.stat().st_mtime_ns for k, p in subject_files(out, "sub-001").items()}

    rerun = subprocess.run(_command(reference_run, out), capture_output=True, text=True,
                           env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "sub-001: outputs up to date" in rerun.stderr
    assert "sub-002: done" in rerun.stderr
    done_after = {k: p.stat().st_mtime_ns for k, p in subject_files(out, "sub-001").items()}
    assert done_before == done_after  # the completed participant was not recomputed
    assert not (out / ".ironmap-staging").exists()
    for label in LABELS:
        assert_same_subject_outputs(reference_run.output_dir, out, label)
    for table in ("regional_r2star.tsv", "lesions.tsv"):
        assert group_rows(out, table, LABELS) == group_rows(reference_run.output_dir, table,
                                                            LABELS)
