"""Volume-preserving labels of small regions from the fraction of each voxel they cover.

Carrying a label with ``genericLabel`` (or any rule "a voxel carries the label whose
linearly interpolated weight wins", e.g. a fraction of at least one half) keeps a voxel only
where the label covers most of it. A band about one voxel thick (the substantia nigra on a
2 mm grid) then loses more border voxels than it gains and thins: it comes out smaller than
the carried label's volume.

:func:`assign_by_volume` instead gives each label as many voxels as its carried volume
(the sum of its fractions over the grid, i.e. its atlas volume times the transform's
Jacobian), taking voxels in decreasing fraction; a voxel wanted by several labels goes to
the one that covers more of it, and the other takes its next voxels. The choice rests on the
carried atlas shape alone (never on image intensities).
"""

from __future__ import annotations

import numpy as np


def label_volumes(fractions: dict[int, np.ndarray]) -> dict[int, int]:
    """Voxels each label should get: its summed fraction, rounded (at least 1 when > 0).

    Parameters
    ----------
    fractions : dict of int to ndarray of float
        Label index -> fraction (0-1) of each voxel covered by the carried label.

    Returns
    -------
    dict of int to int
        Label index -> voxel count (0 only when the label covers nothing).
    """
    return {int(index): _voxel_count(float(np.asarray(frac, float).sum()))
            for index, frac in fractions.items()}


def scaled_volumes(volumes_mm3: dict[int, float], scale: float, voxel_mm3: float
                   ) -> dict[int, int]:
    """Voxels each label should get from its atlas volume and a volume scale.

    Parameters
    ----------
    volumes_mm3 : dict of int to float
        Label index -> volume in the atlas (mm^3).
    scale : float
        Target volume per atlas volume (e.g. the inverse determinant of the template
        registration's affine).
    voxel_mm3 : float
        Volume of one target voxel (mm^3).

    Returns
    -------
    dict of int to int
        Label index -> voxel count (rounded; at least 1 for a label with a volume).
    """
    return {int(index): _voxel_count(float(vol) * float(scale) / float(voxel_mm3))
            for index, vol in volumes_mm3.items()}


def _voxel_count(volume_voxels: float) -> int:
    """A volume in voxels, rounded; at least 1 when positive, 0 otherwise."""
    return int(max(1, round(volume_voxels))) if volume_voxels > 0 else 0


def assign_by_volume(fractions: dict[int, np.ndarray], available: np.ndarray,
                     volumes: dict[int, int] | None = None
                     ) -> tuple[np.ndarray, dict[int, int]]:
    """Give each label its carried volume in voxels, in decreasing fraction.

    Candidates (voxel, label) with a fraction above 0 on ``available`` voxels are taken in
    decreasing fraction (ties: lower label index, then lower flat voxel index); a candidate
    is assigned when its voxel is still free and its label has fewer voxels than
    :func:`label_volumes` gives it.

    Parameters
    ----------
    fractions : dict of int to ndarray of float, shape (X, Y, Z)
        Label index -> fraction (0-1) of each voxel covered by the carried label.
    available : ndarray of bool, shape (X, Y, Z)
        Voxels the labels may take (e.g. background and the labels' own old voxels).
    volumes : dict of int to int, optional
        Voxels each label should get (default :func:`label_volumes`, the carried volume),
        e.g. :func:`scaled_volumes`.

    Returns
    -------
    labels : ndarray of int16, shape of ``available``
        The assigned label indices (0 elsewhere).
    target : dict of int to int
        Label index -> the voxel count it was given as its volume (it may get fewer when
        too few available voxels touch it).
    """
    available = np.asarray(available, bool)
    out = np.zeros(available.shape, np.int16)
    target = label_volumes(fractions) if volumes is None else \
        {int(i): int(volumes[i]) for i in fractions}
    index_list = sorted(fractions)
    cand_vox, cand_lab, cand_frac = [], [], []
    for index in index_list:
        frac = np.asarray(fractions[index], float).ravel()
        vox = np.flatnonzero((frac > 0) & available.ravel())
        cand_vox.append(vox)
        cand_lab.append(np.full(vox.size, index))
        cand_frac.append(frac[vox])
    if not index_list:
        return out, target
    vox = np.concatenate(cand_vox)
    lab = np.concatenate(cand_lab)
    frac = np.concatenate(cand_frac)
    order = np.lexsort((vox, lab, -frac))
    flat = out.ravel()
    left = dict(target)
    for v, i in zip(vox[order].tolist(), lab[order].tolist(), strict=True):
        if left[i] > 0 and flat[v] == 0:
            flat[v] = i
            left[i] -= 1
    return flat.reshape(available.shape), target
