"""Participant-page colour scale: brain-voxel percentiles, not the scalp."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.report import subject as S


def _head(rng):
    shape = (60, 60, 10)
    x, y = np.meshgrid(np.arange(60) - 29.5, np.arange(60) - 29.5, indexing="ij")
    radius = np.hypot(x, y)[:, :, None] * np.ones(shape)
    head = radius < 26
    brain = radius < 20  # scalp + skull: 6 voxels of 1 mm
    echo1 = np.where(head, 1000.0, 0.0) + rng.normal(0, 5, shape).clip(0)
    r2 = np.where(brain, rng.uniform(15, 45, shape), np.where(head, 400.0, np.nan))
    img = S.SubjectImages(label="sub-01", participant_id="sub-01", echo1=echo1, r2star=r2,
                          voxel_sizes=(1.0, 1.0, 2.0))
    return img, brain


def test_range_from_brain_mask(rng):
    img, brain = _head(rng)
    img.brain = brain
    lo, hi, text = S.r2star_display_range(img)
    expected = np.percentile(img.r2star[brain], [1, 99])
    assert (lo, hi) == pytest.approx(tuple(expected))
    assert "brain mask (desc-brain_mask)" in text and f"{lo:.1f}-{hi:.1f}" in text
    assert "1st-99th percentiles" in text


def test_range_without_brain_mask_drops_the_scalp(rng):
    img, _ = _head(rng)
    lo, hi, text = S.r2star_display_range(img)
    assert 15 <= lo < hi <= 45  # the 400 s^-1 scalp does not set the scale
    assert "GRE signal mask eroded by 8 mm (8 voxels)" in text


def test_flagged_voxels_are_left_out(rng):
    img, brain = _head(rng)
    img.brain = brain
    img.flags = np.zeros(brain.shape, np.uint16)
    img.r2star = np.where(brain & (np.arange(60)[:, None, None] < 12), 300.0, img.r2star)
    from ironmap.core.r2star.fit_flags import FLAGS_INVALID

    img.flags[img.r2star == 300.0] = FLAGS_INVALID
    _, hi, _ = S.r2star_display_range(img)
    assert hi <= 45


def test_fill_holes_in_plane_equals_binary_fill_holes_slice_by_slice():
    """The one-pass in-plane fill equals ``binary_fill_holes`` on every axial slice (random
    masks with holes, rings, holes touching the edge, thin and one-voxel grids)."""
    from scipy import ndimage

    from ironmap.report.subject import fill_holes_in_plane

    rng = np.random.default_rng(3)
    for shape in [(40, 36, 9), (1, 12, 3), (17, 1, 4), (25, 31, 1), (2, 2, 2)]:
        for density in (0.2, 0.5, 0.8):
            mask = ndimage.binary_opening(rng.random(shape) < density) | (
                rng.random(shape) < density / 3)
            if shape[0] > 20:  # a ring with a hole, and a hole open to the edge
                mask[5:15, 5:15, 0] = True
                mask[8:12, 8:12, 0] = False
                mask[0:6, 20:30, -1] = True
                mask[0:3, 23:27, -1] = False
            ref = np.stack([ndimage.binary_fill_holes(mask[:, :, k])
                            for k in range(shape[2])], axis=2)
            got = fill_holes_in_plane(mask)
            assert got.dtype == bool and np.array_equal(got, ref), (shape, density)
    assert fill_holes_in_plane(np.zeros((4, 4, 2), bool)).sum() == 0
    assert fill_holes_in_plane(np.ones((4, 4, 2), bool)).all()
