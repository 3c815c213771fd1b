"""``--nuclei-refine``: the automatic SN, RN and dentate labels moved onto the R2* contrast.

Called by :func:`ironmap.workflows.anatomy.labels_on_grid` once the atlas labels are on the
R2* grid (automatic anatomy only; rater masks are never moved). ``iron`` (the default) moves
each dentate label by a bounded whole-voxel translation estimated on the participant's own
R2* map with slice-fold cross-fitting (:mod:`ironmap.core.regions.nuclei_refine`);
``iron-all`` also moves the substantia nigra and red nucleus (both sides together, one shift),
which made them worse on the development cohorts (docs/anatomy.md); ``none`` keeps the
template registration's placement.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ironmap.workflows.config import RunConfig, setting_choice

log = logging.getLogger(__name__)

#: Choices of ``--nuclei-refine``.
REFINE_CHOICES = ("iron", "iron-all", "none")
#: What each choice moves: groups of regions moved by one shift each (``region`` or
#: ``region:hemisphere``).
REFINE_GROUPS = {"iron": (("dentate_nucleus:left",), ("dentate_nucleus:right",)),
                 "iron-all": (("substantia_nigra", "red_nucleus"), ("dentate_nucleus:left",),
                              ("dentate_nucleus:right",)),
                 "none": ()}


def refine_mode(cfg: RunConfig) -> str:
    """The run's ``nuclei_refine`` setting (``iron``, ``iron-all`` or ``none``).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str
        The mode.
    """
    return setting_choice(cfg, "nuclei_refine", REFINE_CHOICES, "iron", empty="none")


def refine_groups(names: dict[int, str], mode: str = "iron") -> list[list[int]]:
    """Label indices of the refined nuclei among ``names``, grouped as they are moved.

    Parameters
    ----------
    names : dict of int to str
        Label index -> name.
    mode : str
        One of :data:`REFINE_CHOICES`.

    Returns
    -------
    list of list of int
        One group per entry of ``REFINE_GROUPS[mode]`` that has labels.
    """
    from ironmap.core.regions.regional_values import region_key

    out = []
    for group in REFINE_GROUPS[mode]:
        keys = {tuple(k.split(":")) if ":" in k else (k, None) for k in group}
        idx = []
        for i, n in names.items():
            region, hemi = region_key(str(n))
            if (region, hemi) in keys or (region, None) in keys:
                idx.append(int(i))
        if idx:
            out.append(sorted(idx))
    return out


def refine(labels: np.ndarray, eroded: np.ndarray | None, r2img, names: dict[int, str],
           cfg: RunConfig, label: str):
    """Move the automatic nuclei onto the R2* contrast (``nuclei_refine = "iron"``).

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Automatic labels on the R2* grid.
    eroded : ndarray of int or None
        The same labels eroded on their native grid and carried to the R2* grid.
    r2img : nibabel.Nifti1Image
        The R2* map (s^-1; NaN = failed fit).
    names : dict of int to str
        Label index -> name.
    cfg : RunConfig
        The run's configuration.
    label : str
        The participant, named in the log.

    Returns
    -------
    labels : ndarray of int
        The labels, nuclei moved.
    eroded : ndarray of int or None
        ``eroded`` with the same moves.
    provenance : dict
        ``NucleiRefinement`` entry of the label sidecar.
    """
    from ironmap.core.regions.nuclei_refine import MAX_SHIFT_MM, SHELL_MM, SPLIT, refine_nuclei
    from ironmap.spatial.anatomy import NAWM_INDEX
    from ironmap.spatial.grid import voxel_sizes

    mode = refine_mode(cfg)
    if mode == "none":
        return labels, eroded, {"Method": "none"}
    r2 = np.asarray(r2img.dataobj, dtype=np.float64)
    others = () if eroded is None else (eroded,)
    moved, others, shifts = refine_nuclei(labels, r2, refine_groups(names, mode),
                                          voxel_sizes(r2img.affine), free=labels == NAWM_INDEX,
                                          others=others)
    _clear_rim(moved, [s.index for s in shifts if any(s.fold0) or any(s.fold1)], NAWM_INDEX)
    per_label = {names.get(s.index, str(s.index)): {
        "ShiftFold0Voxels": list(s.fold0), "ShiftFold1Voxels": list(s.fold1),
        "ShiftFold0MM": round(s.fold0_mm, 2), "ShiftFold1MM": round(s.fold1_mm, 2)}
        for s in shifts}
    for name, s in per_label.items():
        log.info("%s: %s moved %.1f / %.1f mm (cross-fitted on the R2* map)", label, name,
                 s["ShiftFold0MM"], s["ShiftFold1MM"])
    provenance: dict[str, Any] = {
        "Method": mode,
        "Description": ("each dentate label" if mode == "iron" else
                        "each dentate label, and SN + RN together,")
        + " translated by whole voxels to maximise the contrast of the R2* map between the "
          "label and a shell around it; slices split at the label's middle slice into two "
          "folds, the shift estimated on one fold applied to the other (no threshold on R2*)",
        "MaxShiftMM": MAX_SHIFT_MM, "ShellMM": SHELL_MM, "CrossFitting": SPLIT,
        "Labels": per_label}
    return moved, (others[0] if eroded is not None else None), provenance


def _clear_rim(labels: np.ndarray, moved: list[int], reference: int) -> None:
    """Remove the reference (NAWM) label from the one-voxel rim of the moved nuclei."""
    from scipy import ndimage

    if not moved:
        return
    rim = ndimage.binary_dilation(np.isin(labels, moved), ndimage.generate_binary_structure(3, 1))
    labels[rim & (labels == reference)] = 0
