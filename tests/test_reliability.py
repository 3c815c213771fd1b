"""Hardening: nothing lost, nothing silently wrong (docs/reliability.md lists each case)."""

from __future__ import annotations

import json
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
