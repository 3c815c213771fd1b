"""A thin nucleus's label and its partial-volume core from the fraction of each voxel it covers.

The automatic route can carry a nucleus's atlas label onto the R2* grid as a *fraction* of
each voxel's volume (:func:`ironmap.spatial.label_fraction.label_fractions`). For a thin
nucleus (the substantia nigra, a band about two voxels thick at 1 x 1 x 2 mm) the seed's
one-voxel erosion empties the label, while a wider erosion keeps border voxels that hold the
darker neighbouring tissue too, and reads low. :func:`fraction_core_labels` instead labels
the voxels the nucleus covers at least half of, and takes the region's value over its
**core**: the voxels it covers at least ``level`` of. Both are decided on the carried
atlas shape alone, never on R2*.

A core that keeps fewer than ``min_voxels`` voxels is completed with the label's voxels of
highest fraction (ties kept) up to ``min_voxels``, so the core never empties a label that has
voxels; a label with fewer voxels keeps them all (and the regional table's small-region
check flags it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ironmap.core.regions.volume_assign import assign_by_volume

#: Fraction of a voxel a label must cover for the voxel to carry the label.
LABEL_LEVEL = 0.5


@dataclass
class CoreResult:
    """Per label index: voxels labelled, voxels in the core and the level the core used."""

    labelled: dict[int, int]
    core: dict[int, int]
    level: dict[int, float]


def fraction_core_labels(labels: np.ndarray, fractions: dict[int, np.ndarray], *,
                         level: float, min_voxels: int, free=(0,),
                         label_level: float = LABEL_LEVEL, volume: bool = False,
                         volumes: dict[int, int] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, CoreResult]:
    """Relabel nuclei from their fractions and mark their cores.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Labels on the target grid (nearest-neighbour transport); the indices in
        ``fractions`` are replaced.
    fractions : dict of int to ndarray of float, shape of ``labels``
        Label index -> fraction (0-1) of each voxel covered by the carried label.
    level : float
        Least fraction of a core voxel (``label_level`` to 1).
    min_voxels : int
        Least voxels of a core (completed by the highest fractions, ties kept).
    free : tuple of int, optional
        Labels a relabelled nucleus may take voxels from (background 0, e.g. NAWM); other
        regions keep their voxels.
    label_level : float, optional
        Least fraction of a labelled voxel.
    volume : bool, optional
        Label each index on as many voxels as its summed fraction instead, in decreasing
        fraction (:func:`ironmap.core.regions.volume_assign.assign_by_volume`; a voxel two
        labels want goes to the larger fraction); ``label_level`` then only bounds ``level``.
    volumes : dict of int to int, optional
        With ``volume``: voxels per label (default: its summed fraction).

    Returns
    -------
    labels : ndarray of int
        A copy of ``labels``, each index of ``fractions`` on its voxels of fraction
        >= ``label_level`` that were free or its own.
    core : ndarray of bool
        The cores of all relabelled indices.
    result : CoreResult
        Voxel counts and the level each core used.

    Raises
    ------
    ValueError
        When ``level`` is below ``label_level`` or above 1.
    """
    if not label_level <= level <= 1.0:
        raise ValueError(f"core level must lie in [{label_level}, 1], got {level}")
    out = np.array(labels, copy=True)
    own = np.isin(out, list(fractions))
    out[own] = 0
    available = own | np.isin(out, list(free))
    core = np.zeros(out.shape, bool)
    result = CoreResult({}, {}, {})
    assigned = assign_by_volume(fractions, available, volumes)[0] if volume else None
    for index in sorted(fractions):
        frac = np.asarray(fractions[index], float)
        if assigned is not None:
            mine = assigned == index
        else:
            mine = available & (frac >= label_level) & ~np.isin(out, list(fractions))
        out[mine] = index
        part = mine & (frac >= level)
        used = float(level)
        if part.sum() < min_voxels and mine.any():
            values = np.sort(frac[mine])[::-1]
            used = float(values[min(min_voxels, values.size) - 1])
            part = mine & (frac >= used)
        core |= part
        result.labelled[index] = int(mine.sum())
        result.core[index] = int(part.sum())
        result.level[index] = used
    return out, core, result
