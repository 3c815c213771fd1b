"""How region masks are eroded, and the check that erosion never silently empties a region.

Three erosions (``RunConfig``):

- ``erosion_voxels`` steps of the 6-connected cross on the R2* grid (the seed's definition,
  the default: one voxel);
- ``erosion_mm``: a distance in mm (a voxel is kept when no voxel centre outside its region
  lies within that distance), on the grid named by ``erosion_space``;
- ``erosion_space = "native"``: the labels are eroded on their own grid (a rater mask's
  FLAIR/T1w grid, an atlas carried to the T1w) before they are carried to the R2* grid, so a
  small nucleus keeps the R2* voxels whose centre lies in its eroded high-resolution mask
  instead of losing every voxel that touches its border at 3-4 mm.

``erosion_space = "auto"`` (an option, not the default: see docs/volumes.md) chooses between
the two from the R2* grid, per participant (:func:`resolve`): the seed's erosion on the R2*
grid when every GRE voxel edge is at most 2 mm (the seed protocol's 1 x 1 x 2 mm GRE, on
which the one-voxel erosion was defined), else 1.5 mm on the labels' native grid (clinical
3-4 mm GRE voxels); only the voxel sizes decide, never R2*
(:mod:`ironmap.core.regions.erosion_space`). Any other erosion option (``erosion_mm``,
``erosion_voxels`` other than one, ``erosion_fallback_mm``) keeps the R2* grid.

``erosion_fallback_mm`` (off by default): with the voxel erosion on the R2* grid, a label
(region and hemisphere) that the voxel erosion would leave with fewer than
``min_region_voxels`` voxels is eroded by this distance in mm instead
(:mod:`ironmap.core.regions.erosion_fallback`); the labels that used it are logged and named
in the eroded label image's sidecar (``ErosionFallbackRegions``).

After the regional table is computed, :func:`check_region_sizes` logs a warning for every row
left with fewer than ``min_region_voxels`` voxels; the QC page and ``group/qc.tsv`` carry the
flag ``small_region:<region> <hemisphere>`` (:func:`ironmap.core.qc.run_flags.small_region_flags`).
"""

from __future__ import annotations

import logging
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.workflows.config import RunConfig, setting_choice

log = logging.getLogger(__name__)

#: Grids an erosion can be applied on ("auto": chosen from the R2* grid's voxel sizes).
EROSION_SPACES = ("r2star", "native", "auto")

#: Default minimum of voxels a region keeps after erosion and quality exclusion.
MIN_REGION_VOXELS = 10


def erosion_settings(cfg: RunConfig) -> dict[str, Any]:
    """The erosion settings of a run.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    dict
        ``erosion_voxels``, ``erosion_mm`` (None = voxel steps), ``erosion_space``,
        ``min_region_voxels`` and ``erosion_fallback_mm`` (None = off) (defaults where the
        config predates them).

    Raises
    ------
    ValueError
        For an unknown erosion space or a fallback that does not apply (:func:`option_problem`).
    """
    space = _space(cfg)
    if (problem := _fallback_problem(cfg, space)) is not None:
        raise ValueError(problem)
    mm = getattr(cfg, "erosion_mm", None)
    fallback = getattr(cfg, "erosion_fallback_mm", None)
    return {"erosion_voxels": int(cfg.erosion_voxels),
            "erosion_mm": None if mm is None else float(mm),
            "erosion_space": space,
            "min_region_voxels": int(getattr(cfg, "min_region_voxels", MIN_REGION_VOXELS)),
            "erosion_fallback_mm": None if fallback is None else float(fallback)}


def option_problem(cfg: RunConfig) -> str | None:
    """Why the erosion options cannot be used or combined, or None.

    The erosion space must be known. The millimetre fallback (``erosion_fallback_mm``)
    completes the voxel erosion on the R2* grid; it cannot go with ``erosion_mm`` or the
    native erosion space, and it must not be negative. The participant level asks this at
    start-up, before any participant is processed.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The message naming the options, or None when they go together.
    """
    try:
        space = _space(cfg)
    except ValueError as exc:
        return str(exc)
    return _fallback_problem(cfg, space)


def _space(cfg: RunConfig) -> str:
    return setting_choice(cfg, "erosion_space", EROSION_SPACES, "r2star", label="erosion space")


def auto_space(cfg: RunConfig, sizes) -> str:
    """The grid an ``auto`` erosion uses for GRE voxels of ``sizes`` mm.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration (its other erosion options).
    sizes : sequence of float
        The R2* grid's voxel edges in mm.

    Returns
    -------
    str
        ``"r2star"`` when the grid is seed-like
        (:func:`ironmap.core.regions.erosion_space.seed_like_grid`) or another erosion option
        is set (``erosion_mm``, ``erosion_voxels`` other than 1,
        ``erosion_fallback_mm``); else ``"native"``.
    """
    from ironmap.core.regions.erosion_space import seed_like_grid

    others = (getattr(cfg, "erosion_mm", None) is not None or int(cfg.erosion_voxels) != 1
              or getattr(cfg, "erosion_fallback_mm", None) is not None)
    return "r2star" if others or seed_like_grid(sizes) else "native"


def resolve(cfg: RunConfig, affine: np.ndarray) -> tuple[RunConfig, dict[str, Any]]:
    """The configuration with an ``auto`` erosion space resolved for one R2* grid.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    affine : ndarray of shape (4, 4)
        The R2* grid's voxel -> world matrix.

    Returns
    -------
    cfg : RunConfig
        ``cfg`` itself unless its erosion space is ``auto``; then a copy whose erosion space
        is ``"r2star"`` or ``"native"`` (:func:`auto_space`); native with an erosion distance
        of :data:`ironmap.core.regions.erosion_space.NATIVE_EROSION_MM`.
    sidecar : dict
        With ``auto``: ``ErosionSpaceSetting`` ("auto"), ``ErosionSpaceRule`` and
        ``ErosionSpaceVoxelSize`` (the R2* grid's edges, mm) for the eroded label image's
        sidecar; else empty.
    """
    import dataclasses

    from ironmap.core.regions.erosion_space import NATIVE_EROSION_MM, SEED_MAX_EDGE_MM
    from ironmap.spatial.grid import voxel_sizes

    if _space(cfg) != "auto":
        return cfg, {}
    sizes = [round(float(v), 4) for v in voxel_sizes(affine)]
    chosen = auto_space(cfg, sizes)
    resolved = {"erosion_space": chosen}
    if chosen == "native":
        resolved["erosion_mm"] = NATIVE_EROSION_MM
    rule = (f"R2* grid when every GRE voxel edge is at most {SEED_MAX_EDGE_MM:g} mm (the seed "
            f"protocol's 1 x 1 x 2 mm) or another erosion option is set; else "
            f"{NATIVE_EROSION_MM:g} mm on the labels' native grid before transport")
    return dataclasses.replace(cfg, **resolved), {
        "ErosionSpaceSetting": "auto", "ErosionSpaceRule": rule,
        "ErosionSpaceVoxelSize": sizes, "ErosionSpaceVoxelSizeUnits": "mm"}


def _fallback_problem(cfg: RunConfig, space: str) -> str | None:
    """Why the explicit fallback cannot complete this erosion (``space`` already checked)."""
    fallback = getattr(cfg, "erosion_fallback_mm", None)
    if fallback is None:
        return None
    if not float(fallback) >= 0:
        return f"--erosion-fallback-mm must be >= 0 mm, got {fallback}"
    if int(cfg.erosion_voxels) < 1:
        return "--erosion-fallback-mm completes a voxel erosion; not with --erosion 0"
    if getattr(cfg, "erosion_mm", None) is not None:
        return "--erosion-fallback-mm applies to the voxel erosion; not with --erosion-mm"
    if space == "native":
        return ("--erosion-fallback-mm applies to the erosion on the R2* grid; not with "
                "--erosion-space native")
    return None


def native_eroded(src: nib.Nifti1Image, names: dict[int, str], cfg: RunConfig
                  ) -> nib.Nifti1Image | None:
    """Labels eroded on their own grid (``erosion_space = "native"``).

    Parameters
    ----------
    src : nibabel.Nifti1Image
        The label image on its native grid.
    names : dict of int to str
        Label -> name.
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    nibabel.Nifti1Image or None
        The eroded labels on the native grid; None unless the erosion space is native.
    """
    from ironmap.core.regions.regional_values import erode_label_image
    from ironmap.spatial.grid import voxel_sizes

    s = erosion_settings(cfg)
    if s["erosion_space"] != "native":
        return None
    data = np.asarray(src.dataobj)
    data = data[..., 0] if data.ndim == 4 else data
    data = np.rint(np.nan_to_num(data)).astype(np.int32)
    eroded = erode_label_image(data, names, erosion_voxels=s["erosion_voxels"],
                               erosion_mm=s["erosion_mm"], voxel_sizes=voxel_sizes(src.affine))
    return nib.Nifti1Image(eroded, src.affine)


def restrict(eroded_on_grid: np.ndarray | None, labels: np.ndarray) -> np.ndarray | None:
    """Natively eroded labels on the R2* grid with the final label indices of ``labels``.

    After the putamen split, which relabels voxels but never moves them.

    Parameters
    ----------
    eroded_on_grid : ndarray of shape (X, Y, Z) or None
        Natively eroded labels carried to the R2* grid.
    labels : ndarray of int, shape (X, Y, Z)
        The final labels.

    Returns
    -------
    ndarray or None
        :func:`ironmap.core.regions.regional_values.restrict_labels`.
    """
    from ironmap.core.regions.regional_values import restrict_labels

    return restrict_labels(eroded_on_grid, labels)


def stats_options(cfg: RunConfig, eroded: np.ndarray | None) -> dict[str, Any]:
    """Keyword arguments of :func:`ironmap.core.regions.regional_values.regional_stats`.

    For this run's erosion settings.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    eroded : ndarray or None
        Natively eroded labels on the R2* grid.

    Returns
    -------
    dict
        ``eroded_labels``, or ``erosion_voxels`` and ``erosion_mm`` (with ``fallback_mm`` and
        ``min_voxels`` when the fallback is on).
    """
    s = erosion_settings(cfg)
    if eroded is not None:
        return {"eroded_labels": eroded}
    out: dict[str, Any] = {"erosion_voxels": s["erosion_voxels"], "erosion_mm": s["erosion_mm"]}
    if s["erosion_fallback_mm"] is not None:
        out.update(fallback_mm=s["erosion_fallback_mm"], min_voxels=s["min_region_voxels"])
    return out


def fallback_eroded(labels: np.ndarray, names: dict[int, str], eroded: np.ndarray | None,
                    affine: np.ndarray, cfg: RunConfig, label: str = ""
                    ) -> tuple[np.ndarray | None, list[str]]:
    """The eroded labels with the millimetre fallback, and the regions that used it.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Labels on the R2* grid.
    names : dict of int to str
        Label -> name.
    eroded : ndarray or None
        Natively eroded labels (returned unchanged: the fallback is then off).
    affine : ndarray of shape (4, 4)
        The R2* grid's voxel -> world matrix.
    cfg : RunConfig
        The run's configuration.
    label : str
        The participant, named in the log.

    Returns
    -------
    eroded : ndarray or None
        ``eroded`` unchanged when the fallback is off; else the labels eroded with it.
    used : list of str
        ``"<region> <hemisphere>"`` eroded by the fallback distance (empty when off).
    """
    from ironmap.core.regions.erosion_fallback import erode_labels_with_fallback
    from ironmap.spatial.grid import voxel_sizes

    s = erosion_settings(cfg)
    if s["erosion_fallback_mm"] is None or eroded is not None:
        return eroded, []
    out, used = erode_labels_with_fallback(
        labels, names, fallback_mm=s["erosion_fallback_mm"], min_voxels=s["min_region_voxels"],
        voxel_sizes=voxel_sizes(affine), erosion_voxels=s["erosion_voxels"])
    for name in used:
        log.info("%s: region %s eroded by %g mm (the %d-voxel erosion keeps fewer than %d "
                 "voxels)", label, name, s["erosion_fallback_mm"], s["erosion_voxels"],
                 s["min_region_voxels"])
    return out, used


def eroded_label_image(labels: np.ndarray, eroded: np.ndarray | None, affine: np.ndarray,
                       cfg: RunConfig, erode_labels) -> np.ndarray:
    """The eroded label image that is written (R2* grid).

    Natively eroded labels, or each label of ``labels`` eroded on the R2* grid.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Labels on the R2* grid.
    eroded : ndarray or None
        Natively eroded labels (returned as they are when given).
    affine : ndarray of shape (4, 4)
        The R2* grid's voxel -> world matrix.
    cfg : RunConfig
        The run's configuration.
    erode_labels : callable
        ``erode_labels(labels, steps, erode)``
        (:func:`ironmap.core.regions.regional_values.erode_labels`).

    Returns
    -------
    ndarray of int, shape (X, Y, Z)
        The eroded labels.
    """
    from ironmap.core.regions.regional_values import erode, erode_mm, erosion_steps
    from ironmap.spatial.grid import voxel_sizes

    if eroded is not None:
        return eroded
    s = erosion_settings(cfg)
    if s["erosion_mm"] is None:
        return erode_labels(labels, s["erosion_voxels"], erode)
    sizes = voxel_sizes(affine)
    steps = erosion_steps(s["erosion_mm"], sizes)
    return erode_labels(labels, steps, lambda mask, _steps: erode_mm(mask, s["erosion_mm"],
                                                                      sizes))


def erosion_sidecar(cfg: RunConfig, fallback: list[str] | None = None) -> dict[str, Any]:
    """Sidecar entries that say how the written eroded labels were made.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    fallback : list of str, optional
        Regions eroded by the fallback distance (:func:`fallback_eroded`).

    Returns
    -------
    dict
        ``ErosionSpace``, ``MinRegionVoxels`` and the erosion size and structure; with the
        fallback on, ``ErosionFallbackDistance`` (mm) and ``ErosionFallbackRegions``.
    """
    s = erosion_settings(cfg)
    out: dict[str, Any] = {"ErosionSpace": "native label grid, before transport to the R2* grid"
                           if s["erosion_space"] == "native" else "R2* grid",
                           "MinRegionVoxels": s["min_region_voxels"]}
    if s["erosion_mm"] is None:
        out.update({"ErosionVoxels": s["erosion_voxels"],
                    "ErosionStructure": "6-connected 3D cross, per region"})
    else:
        out.update({"ErosionDistance": s["erosion_mm"], "ErosionDistanceUnits": "mm",
                    "ErosionStructure": "voxels within the distance of the region's outside "
                                        "removed (Euclidean, voxel centres)"})
    if s["erosion_fallback_mm"] is not None:
        out.update({"ErosionFallbackDistance": s["erosion_fallback_mm"],
                    "ErosionFallbackDistanceUnits": "mm",
                    "ErosionFallbackRule": "a region (per hemisphere) that the voxel erosion "
                                           "leaves with fewer than MinRegionVoxels voxels is "
                                           "eroded by the fallback distance instead",
                    "ErosionFallbackRegions": list(fallback or [])})
    return out


def check_region_sizes(table: pd.DataFrame, cfg: RunConfig, label: str) -> dict[str, int]:
    """Warn about regions left with fewer than ``min_region_voxels`` voxels.

    Parameters
    ----------
    table : pandas.DataFrame
        The regional table.
    cfg : RunConfig
        The run's configuration.
    label : str
        The participant, named in the warnings.

    Returns
    -------
    dict of str to int
        ``"<region> <hemisphere>"`` -> voxels used.
    """
    from ironmap.core.regions.regional_values import small_regions

    minimum = erosion_settings(cfg)["min_region_voxels"]
    small = small_regions(table, minimum)
    for name, n in small.items():
        log.warning("%s: region %s keeps %d voxel(s) after erosion and quality exclusion "
                    "(minimum %d): its R2* is %s; consider --erosion-space native, "
                    "--erosion-fallback-mm or --erosion-mm", label, name, n, minimum,
                    "n/a" if n == 0 else "based on very few voxels")
    return small
