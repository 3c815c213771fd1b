"""Brain extraction, head pose, plausibility of tissue volumes, R2* colour range on the brain."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ironmap.core.qc.run_flags import segmentation_flags
from ironmap.core.regions.tissue_volumes import implausible_volumes
from ironmap.spatial.brain import brain_mask, mask_on_grid
from ironmap.spatial.headpose import head_mask, initial_pose, is_skull_stripped
from ironmap.workflows.brain import gre_coverage


def _ball(shape, centre, radius):
    idx = np.indices(shape)
    return sum((i - c) ** 2 for i, c in zip(idx, centre, strict=True)) <= radius ** 2


def test_brain_mask_fills_holes_and_keeps_the_largest_body():
    shape = (40, 40, 40)
    wm = _ball(shape, (20, 20, 20), 10).astype(float)
    gm = (_ball(shape, (20, 20, 20), 13) & ~_ball(shape, (20, 20, 20), 10)).astype(float)
    wm[20, 20, 20] = 0.0  # a hole (e.g. a dark lesion unmixed as nothing)
    csf = np.zeros(shape)
    csf[2:4, 2:4, 2:4] = 1.0  # a stray blob away from the brain
    mask = brain_mask(gm, wm, csf, (2.0, 2.0, 2.0))
    assert mask[20, 20, 20] and not mask[3, 3, 3]
    assert mask.sum() == _ball(shape, (20, 20, 20), 13).sum()


def test_mask_on_grid_and_gre_coverage():
    mask = _ball((40, 40, 40), (20, 20, 20), 12)
    coarse = nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.diag([2.0, 2, 2, 1]))
    on = mask_on_grid(mask, np.eye(4), coarse)
    assert on.sum() == pytest.approx(mask.sum() / 8, rel=0.1)
    echo = np.where(on, 100.0, 1.0)
    assert gre_coverage(echo, on) == 1.0
    assert gre_coverage(np.where(np.indices(on.shape)[0] < 10, echo, 0.0), on) == \
        pytest.approx(0.5, abs=0.1)


def test_head_pose_finds_the_brain_below_the_top_of_a_head_with_neck():
    """A synthetic head: brain ball, bright 8 mm scalp shell, and a neck column below."""
    from ironmap.spatial.segmentation import load_template

    tpl = load_template(3)
    shape = (64, 64, 80)
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    aff[:3, 3] = [-96.0, -96.0, -150.0]
    centre_vox = np.array([32, 32, 50])
    brain = _ball(shape, centre_vox, 22)
    head = _ball(shape, centre_vox, 26)
    neck = np.zeros(shape, bool)
    neck[24:40, 24:40, :35] = True
    data = np.where(brain, 400.0, 0.0) + np.where((head | neck) & ~brain, 900.0, 0.0)
    data += 5.0  # noise floor: no exact zeros, a head with scalp
    pose = initial_pose(nib.Nifti1Image(data.astype(np.float32), aff), tpl.mask, tpl.t1.affine)
    assert not pose.skull_stripped
    t_xyz = np.argwhere(tpl.mask) @ tpl.t1.affine[:3, :3].T + tpl.t1.affine[:3, 3]
    brain_world = (aff[:3, :3] @ centre_vox + aff[:3, 3])
    # the template brain's centre lands within 12 mm of the synthetic brain's centre (z: the
    # template brain is not a ball, its centre-to-top distance differs from the radius)
    landed = t_xyz.mean(axis=0) - pose.translation
    assert abs(landed[0] - brain_world[0]) < 6 and abs(landed[1] - brain_world[1]) < 6
    assert abs(landed[2] - brain_world[2]) < 12
    assert pose.mask[tuple(centre_vox)] and not pose.mask[32, 32, 2]


def test_skull_stripped_image_is_recognised():
    shape = (60, 60, 60)
    brain = _ball(shape, (30, 30, 30), 25)
    wm = _ball(shape, (30, 30, 30), 18)
    data = np.where(wm, 400.0, np.where(brain, 250.0, 0.0))
    head = head_mask(data)
    assert is_skull_stripped(data, head, 8e-3)
    scalp = data + np.where(_ball(shape, (30, 30, 30), 28) & ~brain, 900.0, 0.0)
    assert not is_skull_stripped(scalp, head_mask(scalp), 8e-3)


def test_absurd_volumes_are_refused_with_a_flag():
    # the open_ms T1w result of the issue: WM 0.87 cm3, head-size factor 1.68
    absurd = {"gm_cm3": 966.4, "wm_cm3": 0.87, "scaling_factor": 1.68,
              "brain_norm_cm3": (966.4 + 0.87) * 1.68}
    problems = implausible_volumes(absurd, template_brain_cm3=1678.0)
    assert any(p.startswith("wm_cm3") for p in problems)
    assert any(p.startswith("gm_cm3") for p in problems)
    assert any(p.startswith("gm_wm_ratio") for p in problems)
    normal = {"gm_cm3": 640.0, "wm_cm3": 480.0, "scaling_factor": 1.4,
              "brain_norm_cm3": 1120.0 * 1.4}
    assert implausible_volumes(normal, template_brain_cm3=1678.0) == []
    flags = segmentation_flags("sub-01", {"volumes": "sub-01: implausible tissue volumes "
                                                     "(wm_cm3 0.87 outside 350-800)"})
    assert [(f.rule, f.item) for f in flags] == [("volumes", "implausible")]


def test_r2star_colour_range_comes_from_brain_voxels():
    from ironmap.report.subject import SubjectImages, r2star_display_range

    r2 = np.full((20, 20, 20), 400.0)  # scalp
    brain = _ball((20, 20, 20), (10, 10, 10), 7)
    r2[brain] = np.linspace(15.0, 45.0, brain.sum())
    img = SubjectImages(label="sub-01", participant_id="sub-01", r2star=r2,
                        brain=brain.astype(np.uint8))
    lo, hi, text = r2star_display_range(img)
    assert 15.0 <= lo < 16.0 and 44.0 < hi <= 45.0  # 1st-99th percentile of brain voxels
    assert "brain mask" in text
    no_mask = SubjectImages(label="s", participant_id="s", r2star=r2)
    assert r2star_display_range(no_mask)[1] >= 400.0  # only the scalp-free mask drops it


@pytest.mark.slow
@pytest.mark.realdata
def test_brain_extraction_of_a_raw_head_matches_the_fsl_brain_mask():
    """FSL MNI152 2 mm head (scalp, skull, neck) vs the brain mask FSL ships beside it."""
    from conftest import require_shared
    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.segmentation import segment_tissues

    head = nib.load(require_shared("mni152_fsl", "MNI152_T1_2mm.nii.gz"))
    ref = nib.load(require_shared("mni152_fsl", "MNI152_T1_2mm_Brain_Mask.nii.gz"))
    img = nib.Nifti1Image(head.get_fdata(dtype=np.float32), head.affine)
    seg = segment_tissues(img, label="MNI152_T1_2mm")
    mask = brain_mask(seg.gm, seg.wm, seg.csf, seg.voxel_sizes)
    truth = resample_labels(ref, img) > 0
    dice = 2 * np.sum(mask & truth) / (mask.sum() + truth.sum())
    volume = mask.sum() * 8e-3
    print(f"MNI152 2 mm head: Dice {dice:.3f}, {volume:.0f} cm3 vs {truth.sum() * 8e-3:.0f}")
    assert dice >= 0.90
    assert volume == pytest.approx(truth.sum() * 8e-3, rel=0.10)


@pytest.mark.slow
@pytest.mark.realdata
def test_xa30_mprage_volumes_are_plausible_or_refused(tmp_path):
    """The XA30 MPRAGE (2 mm head with neck): registration no longer fails; the volumes are
    either inside the plausible ranges or refused (table written with volumes_valid false)."""
    from conftest import require_shared
    from ironmap.core.regions.tissue_volumes import PLAUSIBLE_RANGES
    from ironmap.io.tables import read_tsv
    from ironmap.workflows.volumes import ImplausibleVolumes, subject_volumes

    t1w = require_shared("dcm_qa_xa30", "nifti_ref", "5_anat-T1w_acq-tfl.nii")
    try:
        row = subject_volumes(t1w, "xa30", None, tmp_path)
    except ImplausibleVolumes as exc:
        table = read_tsv(tmp_path / "sub-xa30" / "anat" / "sub-xa30_desc-volumes.tsv")
        assert not bool(table.loc[0, "volumes_valid"]) and "outside" in table.loc[0, "volumes_qc"]
        assert "implausible" in str(exc) and "sub-xa30" in str(exc)
        print("XA30 refused:", exc)
        return
    for key in ("gm_cm3", "wm_cm3", "scaling_factor"):
        low, high = PLAUSIBLE_RANGES[key]
        assert low <= row[key] <= high, (key, row[key])
    assert row["volumes_valid"] is True
    print("XA30 plausible:", {k: round(v, 1) for k, v in row.items() if k.endswith("cm3")})


def test_gre_without_brain_is_an_error_naming_the_file(tmp_path):
    """The brain mask step refuses a GRE with no signal in the T1w brain; nothing written."""
    from types import SimpleNamespace

    from ironmap.io.bids import InputError
    from ironmap.workflows.brain import write_brain_mask

    shape = (30, 30, 30)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    ball = _ball(shape, (15, 15, 15), 10)
    seg = SimpleNamespace(gm=ball.astype(float), wm=np.zeros(shape), csf=np.zeros(shape),
                          voxel_sizes=np.array([2.0, 2.0, 2.0]), affine=aff)
    gre_path = tmp_path / "bids" / "sub-01" / "anat" / "sub-01_echo-1_MEGRE.nii.gz"
    subject = SimpleNamespace(participant_id="sub-01", session_id=None, label="sub-01",
                              echoes=[SimpleNamespace(path=gre_path)],
                              t1w=tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    cfg = SimpleNamespace(bids_dir=tmp_path / "bids", masks=())
    xfm = {"T1w": np.eye(4), "MEGRE": np.eye(4)}
    r2img = nib.Nifti1Image(np.full(shape, 30.0, np.float32), aff)
    no_brain = np.zeros(shape, np.float32)
    no_brain[:3] = 500.0  # signal only at the edge of the field of view
    images = SimpleNamespace(echoes=[nib.Nifti1Image(no_brain, aff)])
    stage = tmp_path / "stage"
    with pytest.raises(InputError, match="sub-01_echo-1_MEGRE.nii.gz: GRE signal in only 0%"):
        write_brain_mask(subject, cfg, images, r2img, xfm, stage, seg)
    assert not stage.exists()
    images = SimpleNamespace(echoes=[nib.Nifti1Image(np.where(ball, 400.0, 5.0)
                                                     .astype(np.float32), aff)])
    summary = write_brain_mask(subject, cfg, images, r2img, xfm, stage, seg)
    assert summary["gre_coverage"] == 1.0
    assert summary["brain_cm3"] == pytest.approx(ball.sum() * 8e-3)
    assert (stage / "sub-01" / "anat" / "sub-01_space-R2starmap_desc-brain_mask.nii.gz").exists()
