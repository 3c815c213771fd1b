"""The ``auto`` erosion space: the seed's R2* grid on seed-protocol voxels only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ironmap.core.regions.erosion_space import NATIVE_EROSION_MM, SEED_MAX_EDGE_MM, seed_like_grid
from ironmap.workflows.config import RunConfig
from ironmap.workflows.erosion import erosion_sidecar, option_problem, resolve

BASE = RunConfig(bids_dir=Path("b"), output_dir=Path("o"), analysis_level="participant",
                 erosion_space="auto")


def _affine(sizes, oblique=False):
    rot = np.eye(3)
    if oblique:  # a rotated grid keeps its voxel edges
        c, s = np.cos(0.3), np.sin(0.3)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rot @ np.diag(sizes)
    return out


@pytest.mark.parametrize("sizes, seed_like", [
    ((1.0, 1.0, 2.0), True),           # the seed protocol's GRE
    ((1.0, 1.0, 2.0000001), True),     # header rounding
    ((2.0, 2.0, 2.0), True),
    ((0.9, 0.9, 1.5), True),
    ((1.0, 1.0, 2.5), False),          # thicker slices than the seed's
    ((3.0, 3.0, 3.0), False),          # the Philips FFE
    ((3.4375, 3.4375, 3.4), False),    # the XA30 field map
])
def test_seed_like_grid_is_decided_by_the_largest_edge(sizes, seed_like):
    assert SEED_MAX_EDGE_MM == 2.0
    assert seed_like_grid(sizes) is seed_like


def test_auto_resolves_per_grid_and_says_so():
    seed_cfg, seed_entry = resolve(BASE, _affine((1.0, 1.0, 2.0), oblique=True))
    assert seed_cfg.erosion_space == "r2star" and seed_cfg.erosion_voxels == 1
    assert seed_cfg.erosion_mm is None and seed_cfg.erosion_fallback_mm is None
    # the seed-protocol path is the explicit seed erosion (same settings, same sidecar entries)
    explicit = dataclasses.replace(BASE, erosion_space="r2star")
    assert dataclasses.replace(seed_cfg, erosion_space="r2star") == explicit
    assert erosion_sidecar(seed_cfg) == erosion_sidecar(explicit)
    assert seed_entry["ErosionSpaceSetting"] == "auto"
    assert seed_entry["ErosionSpaceVoxelSize"] == [1.0, 1.0, 2.0]
    coarse_cfg, coarse_entry = resolve(BASE, _affine((3.4375, 3.4375, 3.4)))
    assert coarse_cfg.erosion_space == "native" and coarse_cfg.erosion_mm == NATIVE_EROSION_MM
    assert NATIVE_EROSION_MM == 1.5
    sidecar = erosion_sidecar(coarse_cfg)
    assert sidecar["ErosionSpace"].startswith("native") and sidecar["ErosionDistance"] == 1.5
    assert coarse_entry["ErosionSpaceVoxelSize"] == [3.4375, 3.4375, 3.4]


@pytest.mark.parametrize("change", [{"erosion_mm": 1.5}, {"erosion_voxels": 0},
                                    {"erosion_voxels": 2}, {"erosion_fallback_mm": 1.0}])
def test_other_erosion_options_keep_the_r2star_grid(change):
    cfg = dataclasses.replace(BASE, **change)
    assert option_problem(cfg) is None
    resolved, _ = resolve(cfg, _affine((3.4, 3.4, 3.4)))
    assert resolved.erosion_space == "r2star"
    assert {k: getattr(resolved, k) for k in change} == change


def test_explicit_spaces_are_left_alone():
    for space in ("r2star", "native"):
        cfg = dataclasses.replace(BASE, erosion_space=space)
        for sizes in ((1.0, 1.0, 2.0), (3.4, 3.4, 3.4)):
            assert resolve(cfg, _affine(sizes)) == (cfg, {})
