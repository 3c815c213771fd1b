"""Which grid the ``auto`` erosion uses: the seed's R2* grid or the labels' own.

The seed study erodes every region by one voxel on the R2* grid of its 1 x 1 x 2 mm GRE. On a
grid no coarser than that along any axis the one-voxel erosion removes at most the border the
seed removed, so the seed's definition is kept there. On coarser (clinical, 3-4 mm) grids it
removes most of a small nucleus, and the labels are eroded by :data:`NATIVE_EROSION_MM` on
their own grid before transport instead. The 2 mm limit comes from the seed protocol, not
from any measurement, and only the voxel sizes decide (never R2*).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Largest GRE voxel edge (mm) at which the seed's erosion on the R2* grid is kept: the seed
#: protocol's GRE is 1 x 1 x 2 mm.
SEED_MAX_EDGE_MM = 2.0
#: Erosion distance (mm) on the labels' own grid for coarser GRE grids: chosen on simulated
#: tuning cohorts (seeds 201/202, GRE 3.4 and 3 mm, rater masks; 1, 1.5 and 2 mm compared,
#: ``benchmarks/erosion_resolution_sim.py``). Not the default: on held-out cohorts the
#: substantia nigra kept 0-4 voxels at a median of -26 % (docs/volumes.md).
NATIVE_EROSION_MM = 1.5
#: Tolerance (mm) for voxel sizes read from headers (2.0000001 mm counts as 2 mm).
EDGE_TOLERANCE_MM = 1e-3


def seed_like_grid(voxel_sizes: Sequence[float]) -> bool:
    """Whether a GRE grid is no coarser than the seed protocol's along any axis.

    Parameters
    ----------
    voxel_sizes : sequence of float
        The R2* grid's voxel edges in mm.

    Returns
    -------
    bool
        True when every edge is at most :data:`SEED_MAX_EDGE_MM` (within
        :data:`EDGE_TOLERANCE_MM`).
    """
    sizes = np.asarray(voxel_sizes, dtype=float)
    return bool(sizes.size) and float(np.max(sizes)) <= SEED_MAX_EDGE_MM + EDGE_TOLERANCE_MM
