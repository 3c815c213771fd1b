"""Registration (real ANTs): conventions, known-pose recovery, reproducibility, transform files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import require_shared
from ironmap.spatial.grid import resample_image
from ironmap.spatial.registration import (
    Registration,
    displacement_error,
    downsample,
    head_box,
    load_transform,
    parse_itk_text,
    register,
    save_transform,
    to_ants,
)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """4x4 rotation about world axis ``axis`` (0=x, 1=y, 2=z)."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    m = np.eye(4)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


def rigid(rx, ry, rz, t) -> np.ndarray:
    m = rotation(0, rx) @ rotation(1, ry) @ rotation(2, rz)
    m[:3, 3] = t
    return m


def head_phantom(rng, shape=(40, 48, 38), vox=3.5) -> nib.Nifti1Image:
    """Smooth asymmetric head: skin, brain and four inner ellipsoids of other intensities."""
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = -np.array(shape) * vox / 2
    xyz = np.indices(shape).reshape(3, -1).T * vox + aff[:3, 3]
    data = np.zeros(len(xyz))
    data[((xyz / [65, 80, 60]) ** 2).sum(1) < 1] = 0.5
    data[((xyz / [58, 72, 52]) ** 2).sum(1) < 1] = 1.0
    blobs = [((20, 10, 5), (10, 14, 9), 2.0), ((-22, 12, 0), (8, 10, 12), 0.3),
             ((0, -35, -10), (15, 10, 8), 1.6), ((5, 40, 20), (12, 8, 8), 0.6)]
    for centre, radii, value in blobs:
        data[(((xyz - centre) / np.array(radii)) ** 2).sum(1) < 1] = value
    data = ndimage.gaussian_filter(data.reshape(shape), 1.0) + rng.normal(0, 0.02, shape)
    return nib.Nifti1Image(data.astype(np.float32), aff)


def moved_copy(fixed, true_matrix, contrast=np.sqrt):
    """The phantom seen on another, oblique grid whose world is ``true_matrix`` x fixed world."""
    grid_aff = rotation(2, 10) @ np.diag([3.0, 3.0, 4.0, 1.0])
    grid_aff[:3, 3] = [-60, -75, -65]
    grid = nib.Nifti1Image(np.zeros((46, 54, 34), np.float32), grid_aff)
    data = np.nan_to_num(resample_image(fixed, grid, np.linalg.inv(true_matrix)))
    return nib.Nifti1Image((100 * contrast(np.abs(data))).astype(np.float32), grid_aff)


def brain_points(img, threshold=0.7):
    idx = np.argwhere(np.asanyarray(img.dataobj) > threshold)
    return idx @ img.affine[:3, :3].T + img.affine[:3, 3]


TRUE_POSE = rigid(8, -5, 6, [6.0, -4.0, 3.0])


@pytest.fixture(scope="module")
def pair():
    fixed = head_phantom(np.random.default_rng(7))
    return fixed, moved_copy(fixed, TRUE_POSE)


@pytest.fixture(scope="module")
def rigid_result(pair):
    return register(*pair, model="rigid", seed=1)


def test_itk_text_matches_ants_resampling(pair, tmp_path):
    """A RAS fixed->moving matrix written as ITK text pulls the moving image like ANTs does."""
    import ants

    fixed, moving = pair
    path = save_transform(TRUE_POSE, tmp_path / "from-moving_to-fixed_mode-image_xfm.txt")
    warped = ants.apply_transforms(to_ants(fixed), to_ants(moving), [str(path)],
                                   interpolator="linear").numpy()
    ours = resample_image(moving, fixed, TRUE_POSE)
    inside = np.isfinite(ours) & (ours > 10)
    assert inside.sum() > 5000
    assert np.median(np.abs(warped[inside] - ours[inside]) / ours[inside]) < 0.01
    fx = np.asanyarray(fixed.dataobj)
    corr = np.corrcoef(fx[inside], warped[inside])[0, 1]
    assert corr > 0.95  # the warped moving image lies on the fixed anatomy


def test_rigid_recovers_known_pose(pair, rigid_result):
    mean_err, max_err = displacement_error(rigid_result.matrix, TRUE_POSE, brain_points(pair[0]))
    assert mean_err <= 1.0 and max_err <= 2.0
    base_err, _ = displacement_error(np.eye(4), TRUE_POSE, brain_points(pair[0]))
    assert base_err > 8.0  # the pose was not trivially close
    assert rigid_result.model == "rigid"
    assert 1.1 < rigid_result.similarity <= 2.0


@pytest.mark.slow
def test_affine_recovers_known_pose(pair):
    scaled = TRUE_POSE @ np.diag([1.04, 0.97, 1.02, 1.0])
    moving = moved_copy(pair[0], scaled, contrast=lambda d: d * (2.2 - d))
    reg = register(pair[0], moving, model="affine", seed=3)
    mean_err, _ = displacement_error(reg.matrix, scaled, brain_points(pair[0]))
    assert mean_err <= 1.0
    assert reg.model == "affine"


def test_schedule_options_are_applied_and_recorded(pair, rigid_result):
    """A rigid stage on the coarse levels only and a looser convergence test still recover
    the pose; the settings are in ``details`` only when they differ from the defaults."""
    scaled = TRUE_POSE @ np.diag([1.03, 0.98, 1.01, 1.0])
    moving = moved_copy(pair[0], scaled, contrast=lambda d: d * (2.2 - d))
    reg = register(pair[0], moving, model="affine", seed=1, shrink_factors=(4, 2, 1),
                   rigid_levels=2, convergence=(1e-5, 8))
    mean_err, max_err = displacement_error(reg.matrix, scaled, brain_points(pair[0]))
    assert mean_err <= 1.0 and max_err <= 2.0
    assert reg.details["rigid_levels"] == 2 and reg.details["convergence"] == [1e-5, 8]
    assert "rigid_levels" not in rigid_result.details
    assert "convergence" not in rigid_result.details


@pytest.mark.slow
def test_same_inputs_give_identical_matrix(pair, rigid_result):
    again = register(*pair, model="rigid", seed=1)
    np.testing.assert_array_equal(again.matrix, rigid_result.matrix)
    assert again.similarity == rigid_result.similarity


def test_bad_model_and_sheared_affine_are_refused(pair):
    with pytest.raises(ValueError, match="model"):
        register(*pair, model="syn")
    sheared = pair[0].affine.copy()
    sheared[0, 1] = 1.0
    with pytest.raises(ValueError, match="shear"):
        to_ants(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), sheared))


@pytest.mark.parametrize("suffix", [".txt", ".mat"])
def test_transform_file_roundtrip(tmp_path, suffix):
    m = rigid(3, -7, 12, [1.5, -20.25, 7.0]) @ np.diag([1.1, 0.9, 1.05, 1.0])
    path = save_transform(Registration(matrix=m, similarity=1.3), tmp_path / f"x_xfm{suffix}")
    back = load_transform(path)
    np.testing.assert_allclose(back.matrix, m, atol=1e-12)
    np.testing.assert_allclose(np.asarray(back), back.matrix)
    again = save_transform(m, tmp_path / f"y_xfm{suffix}")
    assert again.read_bytes() == path.read_bytes()  # identical inputs, identical files
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_itk_text_is_deterministic_and_readable_by_ants(tmp_path):
    import ants

    m = rigid(0, 0, 90, [10.0, 0.0, 0.0])
    a = save_transform(m, tmp_path / "a.txt").read_bytes()
    b = save_transform(m, tmp_path / "b.txt").read_bytes()
    assert a == b
    tx = ants.read_transform(str(tmp_path / "a.txt"))
    # ITK works in LPS: the RAS point (1, 0, 0) is LPS (-1, 0, 0); RAS 90 deg about z maps
    # RAS (1,0,0) -> (10, 1, 0) i.e. LPS (-10, -1, 0).
    np.testing.assert_allclose(tx.apply_to_point((-1.0, 0.0, 0.0)), (-10.0, -1.0, 0.0),
                               atol=1e-9)


def test_centred_itk_transform_is_parsed():
    """MatrixOffsetTransformBase with a centre (as written by many tools)."""
    text = ("#Insight Transform File V1.0\n#Transform 0\n"
            "Transform: MatrixOffsetTransformBase_double_3_3\n"
            "Parameters: 0 -1 0 1 0 0 0 0 1 1 2 3\nFixedParameters: 10 20 30\n")
    ras = parse_itk_text(text)
    lps = np.diag([-1, -1, 1, 1]) @ ras @ np.diag([-1, -1, 1, 1])
    # y = A (x - c) + c + t; at x = c, y = c + t.
    np.testing.assert_allclose(lps @ [10, 20, 30, 1], [11, 22, 33, 1])
    with pytest.raises(ValueError, match="affine"):
        parse_itk_text("Transform: Euler3DTransform_double_3_3\nParameters: 0 0 0\n")


def test_downsample_keeps_world_positions():
    """Block averages of a linear field equal the field at the new voxel centres."""
    aff = rotation(2, 15) @ np.diag([0.7, 0.7, 3.0, 1.0])
    aff[:3, 3] = [-40.0, -30.0, -20.0]
    ijk = np.indices((31, 30, 8)).reshape(3, -1).T
    coef = np.array([1.0, -2.0, 0.5])
    field = ((ijk @ aff[:3, :3].T + aff[:3, 3]) @ coef).reshape(31, 30, 8)
    small = downsample(nib.Nifti1Image(field.astype(np.float32), aff), 2.0)
    assert small.shape == (10, 10, 8)
    np.testing.assert_allclose(np.sqrt((small.affine[:3, :3] ** 2).sum(0)), [2.1, 2.1, 3.0])
    ijk = np.indices(small.shape).reshape(3, -1).T
    expected = (ijk @ small.affine[:3, :3].T + small.affine[:3, 3]) @ coef
    np.testing.assert_allclose(small.get_fdata().ravel(), expected, atol=1e-3)
    assert downsample(small, None) is small


def test_head_box_crops_to_the_head_plus_margin_in_place():
    """A bright block on a dark grid: the box is the block widened by the margin (mm)."""
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = [-50.0, -40.0, -30.0]
    data = np.zeros((40, 30, 20), np.float32)
    data[10:20, 8:15, 5:9] = 100.0
    img = nib.Nifti1Image(data, aff)
    box = head_box(img, 4.0)  # 2 voxels along x and y, 2 (ceil 4/3) along z
    assert box.shape == (14, 11, 8)
    np.testing.assert_allclose(box.affine[:3, 3], aff[:3, :3] @ [8, 6, 3] + aff[:3, 3])
    np.testing.assert_array_equal(np.asarray(box.dataobj), data[8:22, 6:17, 3:11])
    assert head_box(img, None) is img
    assert head_box(nib.Nifti1Image(np.ones((5, 5, 5), np.float32), aff), 2.0).shape == (5, 5, 5)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_t1w_to_flair_matches_dataset_transform():
    """Longitudinal patient 01, study 2: T1w -> FLAIR vs the database's own transform.

    The T1w header is moved by a known rigid pose first, so that the identity is far from the
    answer; the expected FLAIR-world -> T1w-world matrix is ``pose @ dataset transform``.
    """
    root = require_shared("open_ms_data", "longitudinal", "raw", "patient01")
    flair = nib.load(root / "study2_FLAIR.nii.gz")
    t1w = nib.load(root / "study2_T1W.nii.gz")
    reference = load_transform(root / "study2_T1W_intrastudy_to_FLAIR.txt").matrix
    pose = rigid(4, -3, 5, [4.0, -3.0, 5.0])
    t1w_moved = nib.Nifti1Image(t1w.get_fdata(dtype=np.float32), pose @ t1w.affine)
    reg = register(flair, t1w_moved, model="rigid")  # works on ~2 mm voxels (2.16 x 2.16 x 3)
    fd = flair.get_fdata(dtype=np.float32)
    idx = np.argwhere(fd > np.percentile(fd, 75))[::20]
    pts = idx @ flair.affine[:3, :3].T + flair.affine[:3, 3]
    expected = pose @ reference
    mean_err, _ = displacement_error(reg.matrix, expected, pts)
    assert displacement_error(np.eye(4), expected, pts)[0] > 5.0
    assert mean_err <= 1.0


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from ironmap.workflows.simulate import simulate_cohort

    return simulate_cohort(tmp_path_factory.mktemp("sim") / "cohort",
                           subjects_per_group={"RRMS": 1}, sites=1, preset="fast", seed=4)


def _pose(poses, pid, series):
    row = poses[(poses.participant_id == pid) & (poses.series == series)].iloc[0]
    return np.array([[row[f"m{i}{j}"] for j in range(4)] for i in range(4)], dtype=float)


@pytest.mark.slow
@pytest.mark.parametrize(("series", "model"), [("FLAIR", "affine"), ("MEGRE", "rigid")])
def test_simulated_poses_are_recovered(simulated, series, model):
    """``ironmap simulate`` poses: the true fixed(T1w)->moving matrix is P_moving^-1 @ P_T1w."""
    import pandas as pd

    poses = pd.read_csv(simulated.truth_dir / "poses.tsv", sep="\t")
    pid = str(poses.participant_id.iloc[0])
    anat = simulated.bids_dir / pid / "anat"
    t1w = nib.load(anat / f"{pid}_T1w.nii.gz")
    name = f"{pid}_FLAIR.nii.gz" if series == "FLAIR" else f"{pid}_echo-1_part-mag_MEGRE.nii.gz"
    truth = np.linalg.inv(_pose(poses, pid, series)) @ _pose(poses, pid, "T1w")
    reg = register(t1w, nib.load(anat / name), model=model)
    data = t1w.get_fdata(dtype=np.float32)
    head = np.argwhere(data > 0.2 * np.percentile(data[data > 0], 95))
    pts = head @ t1w.affine[:3, :3].T + t1w.affine[:3, 3]
    assert displacement_error(np.eye(4), truth, pts)[0] > 3.0
    mean_err, max_err = displacement_error(reg.matrix, truth, pts)
    assert mean_err <= 1.0 and max_err <= 2.0
