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
