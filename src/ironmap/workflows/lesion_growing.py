"""Semi-automatic lesion outlining on a FLAIR image: seeds (world mm) -> BIDS lesion mask."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ironmap.core.lesions.pv_border import PV_BORDER
from ironmap.core.lesions.seeded_growing import (
    BRIGHT_LEAK,
    RIM_RULE,
    SEED_OK,
    STABLE_RULE,
    grow_lesions,
    propose_seeds,
)
from ironmap.io.atomic import check_writable
from ironmap.io.nifti import load_image, save_image
from ironmap.io.outputs import command_line
from ironmap.io.tables import read_tsv

log = logging.getLogger(__name__)


class SeedError(ValueError):
    """Unusable seed table or seeds (message names the file)."""


def read_seeds(path) -> np.ndarray:
    """Seed table (TSV with columns ``x``, ``y``, ``z`` in world mm, RAS+).

    Parameters
    ----------
    path : path-like
        The TSV.

    Returns
    -------
    ndarray of shape (n, 3)
        World mm.

    Raises
    ------
    SeedError
        Naming the file, for missing columns, no rows or non-numeric coordinates.
    """
    df = read_tsv(path)
    missing = {"x", "y", "z"} - set(df.columns)
    if missing:
        raise SeedError(f"{path}: seed table lacks column(s) {sorted(missing)} (need x, y, z "
                        "in world mm)")
    xyz = df[["x", "y", "z"]].to_numpy(dtype=float)
    if xyz.size == 0 or not np.isfinite(xyz).all():
        raise SeedError(f"{path}: seed table is empty or has non-numeric coordinates")
    return xyz


def world_to_voxel(xyz_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World mm -> voxel indices.

    Parameters
    ----------
    xyz_mm : ndarray of shape (n, 3)
        World mm.
    affine : ndarray of shape (4, 4)
        Voxel -> world matrix.

    Returns
    -------
    ndarray of shape (n, 3)
        Voxel indices (float).
    """
    xyz = np.c_[np.asarray(xyz_mm, float), np.ones(len(xyz_mm))]
    return (np.linalg.inv(affine) @ xyz.T).T[:, :3]


def grow_from_file(flair_path, out_path, *, seeds_path=None, propose: bool = False,
                   brain_mask_path=None, overwrite: bool = False,
                   rim_rule: bool = False, compete: bool = False,
                   rim_floor: float | None = None, stop_rule: str = "leak",
                   rim_at_seed: bool = False, bright_leak: bool = False,
                   pv_border: bool = False) -> pd.DataFrame:
    """Outline lesions on a FLAIR and write a BIDS lesion mask (+ JSON sidecar).

    Parameters
    ----------
    flair_path : path-like
        The FLAIR.
    out_path : path-like
        The lesion mask to write.
    seeds_path : path-like, optional
        Seed table (:func:`read_seeds`).
    propose : bool, optional
        Propose seeds automatically.
    brain_mask_path : path-like, optional
        Brain mask on the FLAIR grid.
    overwrite : bool, optional
        Replace an existing mask.
    rim_rule : bool, optional
        Grow with the partial-volume rim rule (:data:`RIM_RULE`; docs/lesions.md).
    compete : bool, optional
        Seeds compete (``grow_lesions(..., compete=True)``; docs/lesions.md).
    rim_floor : float, optional
        With ``rim_rule``: the lowest level of the lesion profile a partial-volume rim voxel
        may have (``grow_lesions``' ``level``; :data:`RIM_RULE` has 0.35). 0.3 was chosen
        with ``compete`` on seed draws 10-19 of the open_ms patients (docs/lesions.md).
    stop_rule : {"leak", "stable"}, optional
        ``"stable"``: a leak ends growing only from a stable region (``grow_lesions(...,
        **STABLE_RULE)``; docs/lesions.md). Default ``"leak"``.
    rim_at_seed : bool, optional
        With ``rim_rule`` and ``compete``: a lesion whose growing stops where it meets another
        click's seed still gets its partial-volume rim (``grow_lesions(..., rim_at_seed=True)``;
        docs/lesions.md).
    bright_leak : bool, optional
        A jump out of a click's first few voxels into a structure far brighter than the
        click's peak is a leak (``grow_lesions(..., **BRIGHT_LEAK)``; docs/lesions.md).
    pv_border : bool, optional
        After growing, each lesion of at least 100 voxels loses its voxels below 0.4 of the
        way from local white matter to its 90th FLAIR percentile (``grow_lesions(...,
        **PV_BORDER)``; docs/lesions.md).

    Returns
    -------
    pandas.DataFrame
        One row per seed: ``x``, ``y``, ``z`` (mm), ``status``, ``threshold``, ``n_voxels``.

    Raises
    ------
    SeedError
        No seeds, or no seed produced a lesion (an empty mask is never written).
    ValueError
        ``rim_floor`` without ``rim_rule``, or not below the rim rule's ``rim_level``; an
        unknown ``stop_rule``; ``rim_at_seed`` without ``rim_rule`` and ``compete``.
    """
    if stop_rule not in ("leak", "stable"):
        raise ValueError(f"stop rule {stop_rule!r} is not 'leak' or 'stable'")
    if rim_floor is not None and (not rim_rule or not 0 <= rim_floor < RIM_RULE["rim_level"]):
        raise ValueError(f"rim floor {rim_floor} needs the rim rule and must lie in "
                         f"[0, {RIM_RULE['rim_level']})")
    if rim_at_seed and not (rim_rule and compete):
        raise ValueError("rim_at_seed needs the rim rule and compete")
    out_path = check_writable(out_path, overwrite)
    img = load_image(flair_path)
    flair = img.get_fdata(dtype=np.float32)
    vox = np.linalg.norm(img.affine[:3, :3], axis=0)
    brain = (load_image(brain_mask_path).get_fdata() > 0) if brain_mask_path else flair > 0
    xyz = read_seeds(seeds_path) if seeds_path else np.zeros((0, 3))
    ijk = world_to_voxel(xyz, img.affine)
    if propose:
        core = ndimage.binary_erosion(brain, iterations=max(1, int(round(6.0 / vox.min()))))
        extra = propose_seeds(flair, core, vox)
        log.info("%s: %d seeds proposed from FLAIR hyperintensity", flair_path, len(extra))
        ijk = np.vstack([ijk, extra])
    if len(ijk) == 0:
        raise SeedError(f"{flair_path}: no seeds given or proposed")
    params = dict(RIM_RULE) if rim_rule else {}
    if rim_floor is not None:
        params["level"] = float(rim_floor)
    if compete:
        params["compete"] = True
    if stop_rule == "stable":
        params.update(STABLE_RULE)
    if rim_at_seed:
        params["rim_at_seed"] = True
    if bright_leak:
        params.update(BRIGHT_LEAK)
    if pv_border:
        params.update(PV_BORDER)
    res = grow_lesions(flair, ijk, vox, brain_mask=brain, **params)
    world = (img.affine @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    table = pd.DataFrame({"x": world[:, 0], "y": world[:, 1], "z": world[:, 2],
                          "status": res.status, "threshold": res.thresholds,
                          "n_voxels": res.n_voxels})
    for row in table[table.status != SEED_OK].itertuples():
        log.warning("%s: seed (%.1f, %.1f, %.1f) mm not grown: %s", flair_path, row.x, row.y,
                    row.z, row.status)
    if not res.mask.any():
        raise SeedError(f"{flair_path}: no seed produced a lesion "
                        f"({dict(table.status.value_counts())}); mask not written")
    sidecar = {
        "Type": "Lesion", "Description": "white-matter lesions outlined by region growing "
        "with a local intensity threshold from seed points on FLAIR",
        "Sources": [Path(flair_path).name], "SpatialReference": Path(flair_path).name,
        "Seeds": table[["x", "y", "z", "status"]].to_dict(orient="records"),
        "RimRule": bool(rim_rule), "StopRule": stop_rule, "GrowingParameters": params,
        "LesionVolume": float(res.mask.sum() * np.prod(vox) / 1000.0), "LesionVolumeUnits": "cm^3",
        "GeneratedBy": [{"Name": "ironmap lesions grow", "Description": command_line()}],
    }
    save_image(res.mask.astype(np.uint8), img.affine, out_path, sidecar=sidecar)
    return table
