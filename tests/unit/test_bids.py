"""BIDS discovery: echoes, sidecar inheritance, participants.tsv, derivative masks and spaces."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import require_shared
from ironmap.io.bids import (
    InputError,
    discover,
    find_echoes,
    inherited_metadata,
    parse_entities,
    resolve_mask_space,
)

GRE_AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
T1_AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
FLAIR_AFFINE = np.array([[1.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])


def _img(path: Path, shape=(4, 5, 6), affine=GRE_AFFINE, value=1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.full(shape, value, dtype=np.float32), affine).to_filename(path)
    return path


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def make_tree(root: Path, subjects=("01", "02"), participants=("01", "02"),
              echo_times=(0.005, 0.02)) -> Path:
    """A tiny raw dataset: two magnitude echoes (+ phase), T1w and FLAIR per subject."""
    _json(root / "dataset_description.json", {"Name": "t", "BIDSVersion": "1.10.0"})
    _json(root / "MEGRE.json", {"MagneticFieldStrength": 3})
    (root / "participants.tsv").write_text(
        "participant_id\tage\n" + "".join(f"sub-{p}\t30\n" for p in participants))
    for sub in subjects:
        anat = root / f"sub-{sub}" / "anat"
        for k, te in enumerate(echo_times, start=1):
            _img(anat / f"sub-{sub}_echo-{k}_part-mag_MEGRE.nii.gz")
            _json(anat / f"sub-{sub}_echo-{k}_part-mag_MEGRE.json", {"EchoTime": te})
            _img(anat / f"sub-{sub}_echo-{k}_part-phase_MEGRE.nii.gz")
            _json(anat / f"sub-{sub}_echo-{k}_part-phase_MEGRE.json", {"EchoTime": te})
        _img(anat / f"sub-{sub}_T1w.nii.gz", (8, 8, 8), T1_AFFINE)
        _img(anat / f"sub-{sub}_FLAIR.nii.gz", (6, 6, 3), FLAIR_AFFINE)
    return root


def make_masks(raw: Path, root: Path, sub="01", reference=None, dataset_tsv=False,
               grid=(FLAIR_AFFINE, (6, 6, 3))) -> Path:
    """A derivative dataset with a dseg (+ labels) and a lesion mask for one subject."""
    _json(root / "dataset_description.json",
          {"Name": "raters", "DatasetType": "derivative", "BIDSVersion": "1.10.0",
           "DatasetLinks": {"raw": str(Path("..") / raw.name)}})
    anat = root / f"sub-{sub}" / "anat"
    affine, shape = grid
    dseg = _img(anat / f"sub-{sub}_desc-deepgm_dseg.nii.gz", shape, affine, 1)
    lesion = _img(anat / f"sub-{sub}_label-lesion_mask.nii.gz", shape, affine, 1)
    table = "index\tname\n1\tLeft-Caudate\n2\tRight-Caudate\n"
    if dataset_tsv:
        (root / "desc-deepgm_dseg.tsv").write_text(table)
    else:
        (anat / f"sub-{sub}_desc-deepgm_dseg.tsv").write_text(table)
    if reference is not None:
        for p in (dseg, lesion):
            _json(p.with_name(p.name.replace(".nii.gz", ".json")),
                  {"SpatialReference": reference})
    return root


def test_parse_entities():
    assert parse_entities("sub-1_ses-a_echo-02_part-mag_MEGRE.nii.gz") == (
        {"sub": "1", "ses": "a", "echo": "02", "part": "mag"}, "MEGRE", ".nii.gz")


@pytest.mark.realdata
def test_qmri_megre_example_inherits_sidecars_and_orders_by_echotime():
    root = require_shared("bids_examples_qmri", "qmri_megre")
    anat = root / "sub-01" / "anat"
    echoes, problems = find_echoes(anat, root)
    assert problems == []
    assert len(echoes) == 8
    tes = [e.echo_time for e in echoes]
    np.testing.assert_allclose(tes, 0.02 * np.arange(1, 9))
    meta = inherited_metadata(echoes[0].path, root)
    assert meta["Manufacturer"] == "Siemens"  # from the top-level MEGRE.json
    assert meta["EchoTime"] == echoes[0].echo_time  # from the file's own sidecar


def test_discover_orders_echoes_by_echotime_not_label(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",),
                    echo_times=(0.02, 0.005))  # echo-1 has the LONGER echo time
    (subject,) = discover(raw)
    assert subject.problems == ()
    assert [e.label for e in subject.echoes] == ["2", "1"]
    assert [e.echo_time for e in subject.echoes] == [0.005, 0.02]
    assert all("part-mag" in e.path.name for e in subject.echoes)
    assert subject.t1w.name == "sub-01_T1w.nii.gz" and subject.flair.name == "sub-01_FLAIR.nii.gz"


def test_files_without_part_entity_are_magnitude(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    anat = raw / "sub-01" / "anat"
    for p in anat.glob("*part-*"):
        if "part-phase" in p.name:
            p.unlink()
        else:
            p.rename(p.with_name(p.name.replace("_part-mag", "")))
    (subject,) = discover(raw)
    assert len(subject.echoes) == 2 and subject.problems == ()


def test_missing_echotime_and_participants_entry_are_problems(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01", "02", "03"), participants=("01", "02"))
    _json(raw / "sub-02" / "anat" / "sub-02_echo-2_part-mag_MEGRE.json", {"FlipAngle": 15})
    subs = {s.participant_id: s for s in discover(raw)}
    assert subs["sub-01"].problems == ()
    assert "no valid EchoTime" in subs["sub-02"].problems[0]
    assert "sub-02_echo-2_part-mag_MEGRE.nii.gz" in subs["sub-02"].problems[0]
    assert any("missing from" in p and "participants.tsv" in p for p in subs["sub-03"].problems)


def test_sessions_and_selection(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=(), participants=("01",))
    for ses in ("a", "b"):
        anat = raw / "sub-01" / f"ses-{ses}" / "anat"
        for k, te in enumerate((0.005, 0.02), start=1):
            _img(anat / f"sub-01_ses-{ses}_echo-{k}_MEGRE.nii.gz")
            _json(anat / f"sub-01_ses-{ses}_echo-{k}_MEGRE.json", {"EchoTime": te})
        _img(anat / f"sub-01_ses-{ses}_T1w.nii.gz", (8, 8, 8), T1_AFFINE)
    found = discover(raw)
    assert [s.label for s in found] == ["sub-01_ses-a", "sub-01_ses-b"]
    assert [s.label for s in discover(raw, session_label=("b",))] == ["sub-01_ses-b"]
    with pytest.raises(InputError, match="sub-09"):
        discover(raw, participant_label=("09",))


@pytest.mark.parametrize("reference", [
    "bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz",   # through DatasetLinks
    "bids::sub-01/anat/sub-01_FLAIR.nii.gz",      # current dataset, then the raw dataset
    "sub-01/anat/sub-01_FLAIR.nii.gz",            # relative path
])
def test_mask_space_from_spatial_reference(tmp_path, reference):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    masks = make_masks(raw, tmp_path / "raters", reference=reference,
                       grid=(np.eye(4) * 7, (2, 2, 2)))  # grid matches nothing: ref decides
    (subject,) = discover(raw, masks=(masks,))
    assert subject.problems == ()
    (dseg,) = subject.dsegs
    assert dict(dseg.labels) == {1: "Left-Caudate", 2: "Right-Caudate"}
    assert dseg.reference == (raw / "sub-01/anat/sub-01_FLAIR.nii.gz").resolve()
    assert resolve_mask_space(dseg, subject) == "FLAIR"
    assert resolve_mask_space(subject.lesion_masks[0], subject) == "FLAIR"


def test_mask_space_from_grid_and_dataset_level_labels(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    masks = make_masks(raw, tmp_path / "raters", dataset_tsv=True, grid=(T1_AFFINE, (8, 8, 8)))
    (subject,) = discover(raw, masks=(masks,))
    (dseg,) = subject.dsegs
    assert dict(dseg.labels)[2] == "Right-Caudate"  # inherited from the dataset-level tsv
    assert resolve_mask_space(dseg, subject) == "T1w"


def test_mask_matching_no_grid_is_a_clear_error(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    masks = make_masks(raw, tmp_path / "raters", grid=(np.eye(4) * 7, (2, 2, 2)))
    (subject,) = discover(raw, masks=(masks,))
    with pytest.raises(InputError, match=r"matches the grid of no image of sub-01.*no "
                                         r"SpatialReference"):
        resolve_mask_space(subject.dsegs[0], subject)


def test_dangling_spatial_reference_is_a_problem(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    masks = make_masks(raw, tmp_path / "raters", reference="bids:raw:sub-01/anat/nothere.nii")
    (subject,) = discover(raw, masks=(masks,))
    assert any("does not exist" in p and "nothere.nii" in p for p in subject.problems)


def test_freesurfer_subject_folder_is_t1w_space(tmp_path):
    raw = make_tree(tmp_path / "raw", subjects=("01",), participants=("01",))
    fs = tmp_path / "fastsurfer"
    _img(fs / "sub-01" / "mri" / "aseg.nii.gz", (8, 8, 8), np.eye(4) * 1.5, 11)
    (subject,) = discover(raw, masks=(fs,))
    (dseg,) = subject.dsegs
    assert dseg.labels == () and resolve_mask_space(dseg, subject) == "T1w"
