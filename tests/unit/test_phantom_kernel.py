"""The compiled phantom labels equal the numpy reference's bit for bit; the template's
distance maps computed on boxes equal the full-grid ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ironmap.sim import anatomy, phantom_kernel, poses
from ironmap.sim.images import PRESETS, Protocol
from ironmap.sim.subject import make_geometry
from ironmap.sim.template import _inside_distance, _outside_distance
from ironmap.sim.voxelize import voxel_points

pytestmark = pytest.mark.skipif(not phantom_kernel.AVAILABLE, reason="numba not installed")


def _geometries():
    """Controls and patients as the simulator draws them (lesions, atrophy, folding)."""
    rng = np.random.default_rng(2024)
    out = []
    for load, age in ((0.0, 25.0), (6.0, 40.0), (25.0, 55.0)):
        row = {"cortical_gm_norm_target": 600.0 - 3 * age, "wm_norm_target": 730.0 - age,
               "age": age, "head_scale": 0.95 + age / 500, "lesion_load_target": load}
        out.append(make_geometry(row, rng))
    return out


@pytest.mark.parametrize("index", range(3))
def test_kernel_equals_reference_on_a_grid_and_random_points(index):
    geom = _geometries()[index]
    rng = np.random.default_rng(index)
    proto = Protocol(voxel_size=PRESETS["demo"])
    shape, affine = proto.grid("MEGRE")
    vox_to_head = poses.random_pose(rng) @ affine
    # every 5th voxel centre of a posed 1x1x2 mm grid, plus points crowded at shape borders
    grid = voxel_points(shape, vox_to_head)[::5]
    near = (rng.standard_normal((300_000, 3)) * np.array([40.0, 55.0, 35.0])
            + np.array([0.0, -15.0, 5.0])).astype(np.float32)
    for pts in (grid, near):
        fast = anatomy.label_points(pts, geom)
        ref = anatomy.label_points_reference(pts, geom)
        assert fast.dtype == ref.dtype == np.uint8
        assert np.array_equal(fast, ref), int((fast != ref).sum())
    if index:  # the patients' lesions are painted
        assert (anatomy.label_points(near, geom) == anatomy.LESION).any() or \
            (anatomy.label_points(grid, geom) == anatomy.LESION).any()


def test_kernel_follows_numpy_promotion_of_a_numpy_thickness():
    """A numpy-scalar cortex thickness makes numpy fold in float64: so does the kernel."""
    geom = _geometries()[1]
    geom64 = anatomy.Geometry(geom.head_scale, geom.csf_gap_mm, np.float64(geom.cortex_mm),
                              geom.ventricle_scale, geom.lesions, geom.fold_phase)
    tables = anatomy._kernel_tables(geom64)
    assert tables is not None and tables[-1] is True
    pts = (np.random.default_rng(3).standard_normal((200_000, 3)) * 45).astype(np.float32)
    assert np.array_equal(anatomy.label_points(pts, geom64),
                          anatomy.label_points_reference(pts, geom64))


def test_other_arithmetic_falls_back_to_the_reference():
    """float32 folding phases would take numpy's float32 sine: the reference is used."""
    geom = anatomy.Geometry(fold_phase=np.array([0.3, 1.1, 2.0], dtype=np.float32))
    assert anatomy._kernel_tables(geom) is None
    pts = (np.random.default_rng(4).standard_normal((1000, 3)) * 40).astype(np.float32)
    assert np.array_equal(anatomy.label_points(pts, geom),
                          anatomy.label_points_reference(pts, geom))


def test_box_distance_maps_equal_full_grid_ones():
    rng = np.random.default_rng(7)
    for _ in range(3):
        mask = np.zeros((60, 70, 50), dtype=bool)
        centre = rng.uniform(20, 40, 3)
        ijk = np.indices(mask.shape).reshape(3, -1).T
        mask.reshape(-1)[np.sum(((ijk - centre) / rng.uniform(6, 15, 3)) ** 2, axis=1) <= 1] = True
        mask &= rng.random(mask.shape) > 0.05  # holes: inner distances vary
        assert np.array_equal(_inside_distance(mask), ndimage.distance_transform_edt(mask))
        full = ndimage.distance_transform_edt(~mask)
        reach = 9
        got = _outside_distance(mask, reach)
        near = full <= reach
        assert np.array_equal(got[near], full[near])
        assert np.all(got[~near] > reach)
