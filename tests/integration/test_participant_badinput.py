"""Bad input: each broken participant fails alone with a specific error; the others finish."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _participant_fixtures import clone_subject, make_config, subject_files
from ironmap.io.tables import read_tsv

pytestmark = pytest.mark.slow

#: participant -> (how it is broken, expected words in its error)
CASES = {
    "sub-101": ("truncated echo", r"sub-101_echo-2_part-mag_MEGRE\.nii\.gz: not a readable NIfTI"),
    "sub-102": ("no EchoTime", r"sub-102_echo-1_part-mag_MEGRE\.nii\.gz: no valid EchoTime"),
    "sub-103": ("echo grids differ", r"sub-103_echo-2_part-mag_MEGRE\.nii\.gz: echo grid .* "
                                     r"differs"),
    "sub-104": ("swapped echoes", r"magnitude must fall with TE: echoes swapped"),
    "sub-105": ("NaN echo", r"sub-105_echo-1_part-mag_MEGRE\.nii\.gz: every voxel is NaN"),
    "sub-106": ("all-zero T1w", r"sub-106_T1w\.nii\.gz: image is all zeros"),
    "sub-107": ("no FLAIR", r"no FLAIR image"),
    "sub-108": ("mask on no image's grid", r"sub-108_label-lesion_mask\.nii\.gz: mask grid .* "
                                           r"matches the grid of no image of sub-108"),
    "sub-109": ("not in participants.tsv", r"sub-109 is missing from .*participants\.tsv"),
}


def _rewrite(path: Path, func) -> None:
    img = nib.load(path)
    data, affine = func(img.get_fdata(dtype=np.float32), img.affine.copy())
    nib.Nifti1Image(data, affine).to_filename(path)


def _break(bids: Path, masks: Path) -> None:
    anat = {s: bids / s / "anat" for s in CASES}
    echo = "{s}_echo-{k}_part-mag_MEGRE"
    p = anat["sub-101"] / (echo.format(s="sub-101", k=2) + ".nii.gz")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    (anat["sub-102"] / (echo.format(s="sub-102", k=1) + ".json")).write_text(
        json.dumps({"FlipAngle": 15}))

    def shift(d, a):
        a[0, 3] += 4.0
        return d, a
    _rewrite(anat["sub-103"] / (echo.format(s="sub-103", k=2) + ".nii.gz"), shift)
    e1, e2 = (anat["sub-104"] / (echo.format(s="sub-104", k=k) + ".nii.gz") for k in (1, 2))
    tmp = e1.with_name("swap.nii.gz")
    e1.rename(tmp)
    e2.rename(e1)
    tmp.rename(e2)
    _rewrite(anat["sub-105"] / (echo.format(s="sub-105", k=1) + ".nii.gz"),
             lambda d, a: (np.full_like(d, np.nan), a))
    _rewrite(anat["sub-106"] / "sub-106_T1w.nii.gz", lambda d, a: (np.zeros_like(d), a))
    for f in anat["sub-107"].glob("*FLAIR*"):
        f.unlink()
    lesion = masks / "sub-108" / "anat" / "sub-108_label-lesion_mask.nii.gz"
    _rewrite(lesion, lambda d, a: (d[:-3], a))
    lesion.with_name("sub-108_label-lesion_mask.json").unlink()
    participants = bids / "participants.tsv"
    lines = participants.read_text().splitlines()
    extra = [lines[1].replace("sub-001", s) for s in CASES if s != "sub-109"]
    participants.write_text("\n".join([*lines, *extra]) + "\n")


@pytest.fixture
def broken_dataset(reference_run, tmp_path):
    """sub-001 (healthy) and sub-002 (with earlier outputs) plus one broken clone per case."""
    bids = tmp_path / "bids"
    bids.mkdir()
    for name in ("dataset_description.json", "participants.tsv", "participants.json"):
        if (reference_run.bids_dir / name).exists():
            shutil.copyfile(reference_run.bids_dir / name, bids / name)
    masks = bids / "derivatives" / "raters"
    shutil.copytree(reference_run.masks_dir, masks,
                    ignore=shutil.ignore_patterns("sub-003"))
    for sub in ("sub-001", "sub-002"):
        shutil.copytree(reference_run.bids_dir / sub, bids / sub)
    for sub in CASES:
        clone_subject((bids, masks), "sub-001", sub)
    _break(bids, masks)
    out = tmp_path / "out"
    # earlier, complete results of sub-002, whose echo is now truncated
    for rel, path in subject_files(reference_run.output_dir, "sub-002").items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / rel)
    (out / "logs" / "manifests").mkdir(parents=True)
    shutil.copyfile(reference_run.output_dir / "logs" / "manifests" / "sub-002.json",
                    out / "logs" / "manifests" / "sub-002.json")
    e1 = bids / "sub-002" / "anat" / "sub-002_echo-1_part-mag_MEGRE.nii.gz"
    e1.write_bytes(e1.read_bytes()[:1000])
    return bids, masks, out


def test_bad_input_fails_alone_with_specific_errors(broken_dataset, reference_run, caplog):
    from ironmap.workflows.participant_level import run_participant_level

    bids, masks, out = broken_dataset
    earlier = {rel: p.read_bytes() for rel, p in subject_files(out, "sub-002").items()}
    with caplog.at_level(logging.INFO, logger="ironmap"):
        code = run_participant_level(make_config(bids, out, masks))
    assert code == 3
    failures = read_tsv(out / "logs" / "failures.tsv").set_index("participant_id")
    assert set(failures.index) == {*CASES, "sub-002"}
    for sub, (what, pattern) in CASES.items():
        assert re.search(pattern, failures.loc[sub, "error"]), (what, failures.loc[sub, "error"])
    assert "sub-002_echo-1_part-mag_MEGRE.nii.gz" in failures.loc["sub-002", "error"]
    # the summary names every failed participant and why
    summary = [r.getMessage() for r in caplog.records if "participant(s) failed" in
               r.getMessage()]
    assert summary and all(f"{s}:" in summary[0] for s in failures.index)
    # the healthy participant finished, with the same results as in the reference run
    regions = read_tsv(out / "group" / "regional_r2star.tsv")
    assert set(regions["participant_id"]) == {"sub-001"}
    ref = read_tsv(reference_run.output_dir / "group" / "regional_r2star.tsv")
    np.testing.assert_array_equal(regions["r2star_mean"],
                                  ref.loc[ref.participant_id == "sub-001", "r2star_mean"])
    # nothing earlier was overwritten or lost
    assert {rel: p.read_bytes() for rel, p in subject_files(out, "sub-002").items()} == earlier
    assert (out / "logs" / "manifests" / "sub-002.json").exists()
    assert not (out / "sub-101").exists()
    assert "FAILED" in (out / "logs" / "sub-104.log").read_text()
