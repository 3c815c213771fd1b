"""Voxel grids: same-grid checks and resampling through world coordinates."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ironmap.spatial.grid import (
    planes_holding,
    resample_image,
    resample_labels,
    resample_planes,
    same_grid,
    voxel_sizes,
)


def image(data, affine):
    return nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))


def rot_z(degrees):
    t = np.deg2rad(degrees)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return m


@pytest.fixture
def labels_img(rng):
    """Blobby labels 1..5 on a 2 mm grid, with some structure."""
    lab = np.zeros((30, 32, 28), np.int16)
    for k in range(1, 6):
        centre = rng.integers(6, 22, size=3)
        ball = np.linalg.norm(np.indices(lab.shape).T - centre, axis=-1).T < 4
        lab[ball] = k
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-30, -32, -28]
    return image(lab, aff)


def test_same_grid(labels_img):
    other = image(np.zeros(labels_img.shape, np.float32), labels_img.affine + 1e-5)
    assert same_grid(labels_img, other)
    shifted = labels_img.affine.copy()
    shifted[0, 3] += 0.5
    assert not same_grid(labels_img, image(np.zeros(labels_img.shape), shifted))
    assert not same_grid(labels_img, image(np.zeros((30, 32, 27)), labels_img.affine))
    np.testing.assert_allclose(voxel_sizes(rot_z(30) @ np.diag([1, 2, 3, 1])), [1, 2, 3])


def test_identity_resampling_keeps_labels(labels_img):
    out = resample_labels(labels_img, labels_img)
    np.testing.assert_array_equal(out, np.asanyarray(labels_img.dataobj))
    assert out.dtype == np.int16


def test_integer_shift_is_exact(labels_img):
    """A world translation of whole voxels moves labels by exactly those voxels."""
    lab = np.asanyarray(labels_img.dataobj)
    w2s = np.eye(4)
    w2s[:3, 3] = [4.0, -2.0, 6.0]  # target world -> source world: +2, -1, +3 voxels
    out = resample_labels(labels_img, labels_img, w2s)
    expected = np.zeros_like(lab)
    expected[:-2, 1:, :-3] = lab[2:, :-1, 3:]
    np.testing.assert_array_equal(out, expected)


def test_oblique_grid_keeps_label_set_and_centroids(labels_img):
    """Labels carried onto a rotated, finer grid through a known transform land where expected."""
    lab = np.asanyarray(labels_img.dataobj)
    target_aff = rot_z(20) @ np.diag([1.0, 1.0, 1.5, 1.0])
    target_aff[:3, 3] = [-40, -40, -30]
    target = image(np.zeros((80, 80, 40), np.float32), target_aff)
    pose = rot_z(-12)
    pose[:3, 3] = [3.0, -2.0, 1.0]  # target world -> source world
    out = resample_labels(labels_img, target, pose)
    assert set(np.unique(out)) <= set(np.unique(lab))
    for k in range(1, 6):
        src = np.array(ndimage.center_of_mass(lab == k)) @ labels_img.affine[:3, :3].T
        src += labels_img.affine[:3, 3]
        tgt = np.array(ndimage.center_of_mass(out == k)) @ target_aff[:3, :3].T + target_aff[:3, 3]
        mapped = (pose @ np.r_[tgt, 1])[:3]
        assert np.linalg.norm(mapped - src) < 0.5  # mm, well under a source voxel (2 mm)
        ratio = (out == k).sum() * 1.5 / ((lab == k).sum() * 8.0)
        assert 0.85 < ratio < 1.15  # volume preserved


def test_float_labels_must_be_integers(labels_img):
    lab = np.asanyarray(labels_img.dataobj).astype(np.float32)
    out = resample_labels(image(lab, labels_img.affine), labels_img)
    np.testing.assert_array_equal(out, lab.astype(np.int32))
    with pytest.raises(ValueError, match="non-integer"):
        resample_labels(image(lab + 0.3, labels_img.affine), labels_img)


def test_linear_resampling_is_exact_for_linear_field():
    """Trilinear interpolation reproduces a linear function of world position exactly."""
    src_aff = np.diag([2.0, 2.5, 3.0, 1.0])
    src_aff[:3, 3] = [-20, -25, -30]
    world = np.indices((21, 21, 21)).reshape(3, -1).T @ src_aff[:3, :3].T + src_aff[:3, 3]
    coef = np.array([0.5, -1.0, 2.0])
    src = image((world @ coef + 7.0).reshape(21, 21, 21), src_aff)
    target_aff = rot_z(25) @ np.diag([1.7, 1.7, 1.7, 1.0])
    target_aff[:3, 3] = [-30, -30, -30]
    target = image(np.zeros((36, 36, 36)), target_aff)
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 2.0, -1.5]
    out = resample_image(src, target, shift)
    tw = np.indices(out.shape).reshape(3, -1).T @ target_aff[:3, :3].T + target_aff[:3, 3]
    expected = ((tw + shift[:3, 3]) @ coef + 7.0).reshape(out.shape)
    inside = np.isfinite(out)
    assert 0.2 < inside.mean() < 1.0  # part of the target lies outside the source: NaN there
    src_vox = (tw + shift[:3, 3] - src_aff[:3, 3]) / np.diag(src_aff)[:3]
    interior = np.all((src_vox >= 0) & (src_vox <= 20), axis=1).reshape(out.shape)
    assert not np.any(np.isnan(out[interior]))
    np.testing.assert_allclose(out[interior], expected[interior], atol=1e-6)
    # within half a voxel outside the outermost centres the edge value is held, beyond is NaN
    assert np.all(np.isnan(out[~inside]))
    edge = inside & ~interior
    assert np.all(np.abs(out[edge] - expected[edge]) <= 3.0 * 0.5 * 3.0 + 1e-6)


def test_planes_equal_the_full_resampling_and_cover_the_source():
    """A few planes resampled alone equal those planes of the full resampling; the planes
    that hold the source's non-zero voxels are the ones where the full resampling is > 0."""
    src_aff = np.diag([1.0, 1.0, 3.0, 1.0])
    data = np.zeros((30, 30, 10))
    data[5:25, 6:24, 2:8] = np.arange(1, 7)[None, None, :] * 10.0
    src = image(data, src_aff)
    target_aff = rot_z(10) @ np.diag([1.0, 1.0, 1.0, 1.0])
    target = image(np.zeros((32, 32, 32)), target_aff)
    shift = np.eye(4)
    shift[:3, 3] = [0.5, -1.0, 1.0]
    full = resample_image(src, target, shift)
    planes = [3, 10, 17]
    np.testing.assert_array_equal(resample_planes(src, target, planes, shift),
                                  full[:, :, planes])
    holding = planes_holding(src, target, shift, stride=1)
    filled = np.flatnonzero((np.nan_to_num(full) > 0).any(axis=(0, 1)))
    assert set(holding) <= set(range(32))
    # source voxel centres (3 mm apart) vs interpolated values: within one source voxel
    assert filled.min() <= holding.min() <= filled.min() + 3
    assert filled.max() - 3 <= holding.max() <= filled.max()


def test_source_coords_bit_identical_to_the_einsum_form():
    """The broadcast coordinates equal ``einsum`` over index grids bit for bit (random affines,
    scalings and offsets), so nearest-neighbour lookups round every voxel as before."""
    from ironmap.spatial.grid import _source_coords

    rng = np.random.default_rng(5)
    shape, zs = (37, 41, 23), slice(4, 19)
    for trial in range(40):
        m = np.eye(4)
        m[:3, :3] = (np.diag(rng.choice([0.5, 1.0, 2.0, 3.0], 3)) if trial % 4 == 0
                     else rng.normal(size=(3, 3)) * rng.choice([0.3, 1.0, 2.5]))
        m[:3, 3] = rng.normal(size=3) * 60
        ii, jj, kk = np.meshgrid(np.arange(shape[0], dtype=float),
                                 np.arange(shape[1], dtype=float),
                                 np.arange(zs.start, zs.stop, dtype=float), indexing="ij")
        ref = (np.einsum("ij,j...->i...", m[:3, :3], np.stack([ii, jj, kk]))
               + m[:3, 3, None, None, None])
        got = _source_coords(m, shape, zs)
        assert got.shape == ref.shape
        assert got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, ">i2", np.int32, np.uint16])
def test_compiled_label_lookup_equals_the_numpy_path(dtype):
    """The compiled nearest-neighbour lookup returns the numpy path's labels exactly (random
    rotations, scalings, shears, offsets that put half the target outside the source, and
    axis-aligned maps whose coordinates fall on voxel half-way points), in the label dtype."""
    from ironmap.spatial import nearest_lookup
    from ironmap.spatial.grid import _lookup_numpy, _voxel_map

    if not nearest_lookup.AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 15, size=(23, 29, 17)).astype(dtype)
    shape = (31, 26, 19)
    inside = outside = 0
    for trial in range(40):
        m = np.eye(4)
        if trial % 4 == 0:  # axis-aligned, half-voxel steps: exact .5 coordinates round up
            m[:3, :3] = np.diag(rng.choice([0.5, 1.0, 1.5, 2.0], 3))
            m[:3, 3] = rng.integers(-6, 6, 3) + rng.choice([0.0, 0.5], 3)
        else:
            m[:3, :3] = rng.normal(size=(3, 3)) * rng.choice([0.3, 1.0, 2.5])
            m[:3, 3] = rng.normal(size=3) * 4
        target_aff = np.diag([*rng.uniform(0.7, 2.2, 3), 1.0])
        target_aff[:3, 3] = rng.normal(size=3) * 3
        vox_map = _voxel_map(shape, target_aff, np.diag([1.0, 1.5, 2.0, 1.0]), m)
        ref = _lookup_numpy(labels, vox_map, shape)
        got = nearest_lookup.lookup_labels(labels, vox_map, shape)
        assert got.dtype == ref.dtype == labels.dtype
        assert np.array_equal(got, ref), trial
        inside, outside = inside + int(ref.any()), outside + int((ref == 0).any())
    assert inside >= 20 and outside >= 20  # most maps put the target partly inside the source
