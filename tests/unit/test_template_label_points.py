"""Template-built heads: the labels at head points equal the matrix-product lookup's."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.sim.template import TemplateAnatomy, TemplateGeometry


def _matrix_lookup(geom: TemplateGeometry, points: np.ndarray) -> np.ndarray:
    """Nearest template voxel by the full float32 matrix product (no lesions)."""
    x = geom.to_template(points)
    inv = np.linalg.inv(geom.template.affine).astype(np.float32)
    ijk = np.rint(x @ inv[:3, :3].T + inv[:3, 3]).astype(np.intp)
    shape = np.asarray(geom.template.labels.shape)
    inside = np.all((ijk >= 0) & (ijk < shape), axis=1)
    out = np.zeros(len(x), dtype=np.uint8)
    out[inside] = geom.template.labels[tuple(ijk[inside].T)]
    return out


def _affines():
    axis = np.diag([1.0, 1.0, 1.0, 1.0])
    axis[:3, 3] = [-110.0, -146.0, -84.0]  # the ICBM 2009a 1 mm grid's
    scaled = np.diag([-1.5, 2.0, 0.7, 1.0])
    scaled[:3, 3] = [40.0, -60.0, -20.0]
    c, s = np.cos(0.2), np.sin(0.2)
    rotated = axis.copy()
    rotated[:2, :2] = [[c, -s], [s, c]]
    return [axis, scaled, rotated]


@pytest.mark.parametrize("affine", _affines())
def test_labels_equal_the_matrix_lookup(affine):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 30, size=(61, 73, 59), dtype=np.uint8)
    tpl = TemplateAnatomy(labels, affine, np.array([0.3, -17.0, -11.0]),
                          np.array([0.3, -42.0, -9.0]), 0.55)
    geom = TemplateGeometry(tpl, 1.04, np.array([0.97, 1.02, 1.01]),
                            np.array([2.0, -1.5, 1.0]), rng.uniform(0, 6, (3, 2)))
    points = rng.uniform(-120, 120, size=(200_000, 3)).astype(np.float32)
    got = geom.label_points(points)
    assert np.array_equal(got, _matrix_lookup(geom, points))
    assert 0 < np.count_nonzero(got) < len(got)  # points inside and outside the grid
