"""Atlas folders (io.atlas) and atlas-based deep-GM labels by ANTs SyN (spatial.atlas).

The validation builds a "subject" by warping the FSL MNI152 2 mm T1 with a KNOWN smooth
deformation (rotation, 5 % scaling, translation, sinusoidal displacement of a few mm); the
atlas labels warped with the same deformation are the truth that ``atlas_labels`` must
recover. The atlases (AAL3, SUIT) may not be shipped: they are read from ../shared/data.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, optimize

from conftest import require_shared
from ironmap.io.atlas import AtlasError, read_atlas, read_label_table
from ironmap.spatial.atlas import (
    MNI152_AC_MM,
    MNI152_PC_MM,
    atlas_labels,
    atlas_region,
    deep_gm_relabel,
    locate_acpc,
    register_syn,
)
from ironmap.spatial.segmentation import SegmentationError, to_ants

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

#: Coarse SyN for tests (4x and 2x shrink levels only at 2 mm).
FAST_SYN = (40, 20, 0)


# --------------------------------------------------------------------------- io.atlas
def _write_atlas(folder, labels, names_text, table_name="atlas_dseg.tsv"):
    folder.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    t1 = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(t1, affine), folder / "tpl_T1w.nii.gz")
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), folder / "atlas_dseg.nii.gz")
    (folder / table_name).write_text(names_text)
    return folder


def test_read_atlas_tsv_text_and_lut(tmp_path):
    labels = np.zeros((8, 8, 8), int)
    labels[1:3, 1:3, 1:3] = 11
    labels[5:7, 5:7, 5:7] = 50
    atlas = read_atlas(_write_atlas(tmp_path / "a", labels,
                                    "index\tname\n11\tLeft-Caudate\n50\tRight-Caudate\n"))
    assert atlas.name == "a" and atlas.names == {11: "Left-Caudate", 50: "Right-Caudate"}
    assert atlas.labels.get_fdata().max() == 50
    aal = tmp_path / "aal.nii.txt"
    aal.write_text("11 Caudate_L 11\n50 Caudate_R 50\n")
    assert read_label_table(aal) == {11: "Caudate_L", 50: "Caudate_R"}
    lut = tmp_path / "x.lut"
    lut.write_text("11 0.8000 1.0000 0.0000 Left_Dentate\n50 0.1 0.2 0.3 Right_Dentate\n")
    assert read_label_table(lut) == {11: "Left_Dentate", 50: "Right_Dentate"}
    bids = tmp_path / "res-02_dseg.tsv"
    bids.write_text("index\tlabel\n0\tbackground\n11\tCaudate_L_11\n")
    assert read_label_table(bids) == {11: "Caudate_L_11"}


def test_read_atlas_mismatched_table_names_atlas(tmp_path):
    labels = np.zeros((8, 8, 8), int)
    labels[1:3, 1:3, 1:3] = 11
    labels[5:7, 5:7, 5:7] = 12
    folder = _write_atlas(tmp_path / "myatlas", labels, "index\tname\n11\tA\n13\tC\n")
    with pytest.raises(AtlasError, match=r"myatlas.*image but not in the table: 12.*"
                                         r"table but not in the image: 13"):
        read_atlas(folder)


def test_read_atlas_missing_and_ambiguous_files(tmp_path):
    labels = np.zeros((8, 8, 8), int)
    labels[2, 2, 2] = 1
    folder = _write_atlas(tmp_path / "amb", labels, "index\tname\n1\tA\n")
    (folder / "other_dseg.tsv").write_text("index\tname\n1\tA\n")
    with pytest.raises(AtlasError, match="several table files"):
        read_atlas(folder)
    (folder / "atlas.json").write_text(json.dumps({"table": "other_dseg.tsv"}))
    assert read_atlas(folder).names == {1: "A"}
    (folder / "tpl_T1w.nii.gz").unlink()
    with pytest.raises(AtlasError, match="amb: no template file"):
        read_atlas(folder)


def test_atlas_label_names_map_to_regions():
    assert atlas_region("Caudate_L_75", 75) == ("caudate", "left")
    assert atlas_region("Pallidum_R_80", 80) == ("globus_pallidus", "right")
    assert atlas_region("Red_N_L_165", 165) == ("red_nucleus", "left")
    assert atlas_region("Thal_AV_L_121", 121)[0] is None
    mapping, names = deep_gm_relabel({161: "SN_pc_L_161", 163: "SN_pr_L_163",
                                      77: "Putamen_L_77", 1: "Precentral_L_1"})
    assert mapping == {161: 161, 163: 161, 77: 77}
    assert names == {161: "Left-Substantia-Nigra", 77: "Left-Putamen"}


def test_atlas_without_deep_gm_is_refused(tmp_path):
    labels = np.zeros((8, 8, 8), int)
    labels[1:4, 1:4, 1:4] = 1
    atlas = read_atlas(_write_atlas(tmp_path / "cortex", labels, "index\tname\n1\tPrecentral_L\n"))
    t1 = nib.Nifti1Image(np.random.default_rng(1).random((8, 8, 8)).astype(np.float32),
                         np.eye(4))
    with pytest.raises(SegmentationError, match="cortex has no label naming a deep"):
        atlas_labels(t1, atlas)


# --------------------------------------------------------------------------- validation
def known_map(affine_subject, shape):
    """World mm of the template for every subject voxel: affine + smooth displacement.

    Rotation 4 deg about z and 3 deg about x, 5 % enlargement of the template, translation
    (3, -4, 2) mm, plus a sinusoidal displacement of up to 3 mm per axis.
    """
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    return known_world(affine_subject[:3, :3] @ ijk + affine_subject[:3, 3:4])


def known_world(xyz):
    """Subject world mm (3, N) -> template world mm (3, N) of :func:`known_map`."""
    a, b = np.deg2rad(4.0), np.deg2rad(3.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    x, y, z = xyz
    disp = 3.0 * np.stack([np.sin(2 * np.pi * y / 90.0), np.sin(2 * np.pi * z / 100.0),
                           np.sin(2 * np.pi * x / 110.0)])
    return (rz @ rx @ xyz) / 1.05 + np.array([[3.0], [-4.0], [2.0]]) + disp


def sample(img, world, order, data=None):
    """Values of ``img`` (or ``data`` on its grid) at world points (3, N)."""
    inv = np.linalg.inv(img.affine)
    vox = inv[:3, :3] @ world + inv[:3, 3:4]
    arr = np.asarray(img.dataobj if data is None else data, dtype=np.float32)
    return ndimage.map_coordinates(arr, vox, order=order, mode="constant", cval=0.0)


def dice(a, b):
    return 2.0 * np.sum(a & b) / max(1, a.sum() + b.sum())


def _symlinked_atlas(folder, template, labels, table):
    folder.mkdir()
    (folder / "atlas.json").write_text(json.dumps(
        {"template": str(template), "labels": str(labels), "table": str(table)}))
    return read_atlas(folder)


def _validate(atlas, shared_t1, workdir):
    """Run atlas_labels on the known-deformed template; Dice per output label."""
    shape = (96, 112, 96)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-95.0, -128.0, -76.0]
    world = known_map(affine, shape)
    rng = np.random.default_rng(7)
    t1 = sample(shared_t1, world, order=1).reshape(shape)
    t1 = t1 + rng.normal(0, 0.02 * t1.max(), shape) * (t1 > 0)
    subject = nib.Nifti1Image(t1.astype(np.float32), affine)
    mapping, _ = deep_gm_relabel(atlas.names)
    src = np.asarray(atlas.labels.dataobj)
    relab = np.zeros_like(src)
    for old, new in mapping.items():
        relab[src == old] = new
    truth = sample(atlas.labels, world, order=0, data=relab).reshape(shape).astype(int)
    fit = register_syn(to_ants(subject), to_ants(atlas.template), iterations=FAST_SYN,
                       seed=1, workdir=str(workdir))
    labels, names = atlas_labels(subject, atlas, fit=fit)
    assert labels.shape == shape
    return {names[i]: dice(labels == i, truth == i) for i in names}, fit, subject


@pytest.mark.slow
@pytest.mark.realdata
def test_syn_atlas_labels_recover_known_deformation_aal3(tmp_path):
    aal = require_shared("atlas_aal3")
    mni = require_shared("mni152_fsl", "MNI152_T1_2mm.nii.gz")
    atlas = _symlinked_atlas(tmp_path / "AAL3", mni,
                             aal / "tpl-MNI152NLin6Asym_res-02_atlas-AAL3_dseg.nii.gz",
                             aal / "res-02_atlas-AAL3_dseg.tsv")
    scores, fit, subject = _validate(atlas, nib.load(str(mni)), tmp_path)
    print({k: round(v, 3) for k, v in scores.items()})
    # AC/PC through the same registration vs the known deformation's inverse
    ac, pc = locate_acpc(subject, atlas.template, fit=fit)
    for found, mni_point in ((ac, MNI152_AC_MM), (pc, MNI152_PC_MM)):
        truth = optimize.least_squares(
            lambda x, m=mni_point: known_world(x[:, None])[:, 0] - m, x0=mni_point).x
        print("landmark error mm", np.round(found - truth, 2))
        assert np.linalg.norm(found - truth) < 2.0
    for name, score in scores.items():
        limit = 0.8 if any(s in name for s in ("Caudate", "Putamen", "Pallidum")) else 0.6
        assert score >= limit, (name, score)
    assert len(scores) == 10  # caudate, putamen, pallidum, SN, RN x 2 hemispheres


@pytest.mark.slow
@pytest.mark.realdata
def test_syn_atlas_labels_recover_known_deformation_suit_dentate(tmp_path):
    suit = require_shared("atlas_suit_cerebellum")
    mni = require_shared("mni152_fsl", "MNI152_T1_2mm.nii.gz")
    atlas = _symlinked_atlas(tmp_path / "SUIT", mni, suit / "atl-Anatom_space-MNI_dseg.nii",
                             suit / "atl-Anatom.tsv")
    scores, _, _ = _validate(atlas, nib.load(str(mni)), tmp_path)
    print({k: round(v, 3) for k, v in scores.items()})
    assert set(scores) == {"Left-Dentate", "Right-Dentate"}
    assert min(scores.values()) >= 0.6, scores


def test_t1w_without_head_fails_registration_naming_subject(tmp_path):
    """Pure noise as "T1w": the warped template does not correlate -> error, no labels."""
    shape = (24, 24, 24)
    ijk = np.indices(shape) - 11.5
    blob = np.exp(-(ijk ** 2).sum(0) / (2 * 6.0 ** 2)).astype(np.float32)
    labels = (((ijk - [[[[3]]], [[[0]]], [[[0]]]]) ** 2).sum(0) < 9).astype(np.int16)
    folder = tmp_path / "blob"
    folder.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(blob * 1000, affine), folder / "tpl_T1w.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "atlas_dseg.nii.gz")
    (folder / "atlas_dseg.tsv").write_text("index\tname\n1\tLeft-Caudate\n")
    noise = np.random.default_rng(3).random(shape).astype(np.float32)
    with pytest.raises(SegmentationError, match="sub-noise: nonlinear registration"):
        atlas_labels(nib.Nifti1Image(noise, affine), read_atlas(folder), label="sub-noise",
                     iterations=(10, 0))
