"""mask_box: the one bounding-box helper of label fractions, the viewer and the simulator."""

import numpy as np

from ironmap.core.regions.bounding_box import mask_box


def test_box_with_margin_clipped_to_the_array():
    mask = np.zeros((10, 12, 8), bool)
    mask[2, 5:7, 7] = True
    mask[4, 6, 6] = True
    assert mask_box(mask) == (slice(2, 5), slice(5, 7), slice(6, 8))
    assert mask_box(mask, 3) == (slice(0, 8), slice(2, 10), slice(3, 8))
    box = mask_box(mask, 1)
    assert mask[box].sum() == mask.sum()  # every voxel inside


def test_empty_mask_gives_none_and_any_dimension_works():
    assert mask_box(np.zeros((4, 4, 4), bool), 2) is None
    line = np.zeros(9, bool)
    line[[3, 5]] = True
    assert mask_box(line, 1) == (slice(2, 7),)


def test_viewer_crop_keeps_whole_grid_for_an_empty_mask():
    from ironmap.report.viewer import crop_box

    assert crop_box(np.zeros((3, 4, 5), bool)) == (slice(0, 3), slice(0, 4), slice(0, 5))
