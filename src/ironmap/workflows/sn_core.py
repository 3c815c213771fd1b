"""The automatic substantia nigra valued over its partial-volume core (``--sn-core LEVEL``).

The automatic SN is a band about two voxels thick at the seed protocol's 1 x 1 x 2 mm: the
seed's one-voxel erosion leaves it 0-2 voxels, and any wider region (a 1 mm erosion, the
millimetre fallback) holds border voxels that are partly the darker tissue around it and reads
low. With ``--sn-core LEVEL`` (default 0.9 for automatic labels) each SN label (per hemisphere)
is carried from the atlas straight onto the R2* grid as the fraction of every voxel it covers
(:func:`ironmap.spatial.label_fraction.label_fractions`, through the same transforms as the
labels, including the local midbrain SyN when it ran); the SN label is then the voxels it
covers at least half of, and its regional value is taken over its core, the voxels it covers at
least ``LEVEL`` of (no further erosion; completed to ``--min-region-voxels`` voxels by the
highest fractions when smaller, :mod:`ironmap.core.regions.fraction_core`). Decided on the
carried atlas shape, never on R2*. Rater masks are never changed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ironmap.workflows.config import RunConfig

log = logging.getLogger(__name__)

#: Regions valued over their fraction core.
CORE_REGIONS = ("substantia_nigra",)


def core_level(cfg: RunConfig) -> float | None:
    """The run's SN core level (``sn_core``), None when off.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    float or None
        The least fraction of a core voxel, or None.
    """
    value = getattr(cfg, "sn_core", None)
    return None if value is None else float(value)


def option_problem(cfg: RunConfig) -> str | None:
    """Why ``sn_core`` cannot be used, or None.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The message naming the option, or None.
    """
    from ironmap.core.regions.fraction_core import LABEL_LEVEL

    try:
        level = core_level(cfg)
    except (TypeError, ValueError):
        return f"--sn-core must be a number, got {getattr(cfg, 'sn_core', None)!r}"
    if level is None:
        return None
    if not LABEL_LEVEL <= level <= 1.0:
        return f"--sn-core must lie between {LABEL_LEVEL:g} and 1, got {level:g}"
    return None


def core_indices() -> list[int]:
    """Output label indices of :data:`CORE_REGIONS`, both sides.

    Returns
    -------
    list of int
        Indices of :data:`ironmap.spatial.anatomy.OUTPUT_LABELS`.
    """
    from ironmap.spatial.anatomy import output_index

    return [output_index(r, h) for r in CORE_REGIONS for h in ("left", "right")]


def _carried_sn(atlases, fit) -> tuple[dict[int, int], list[int]] | None:
    """Output label -> atlas position, and the SN labels carried through ``fit`` (or None).

    None without a template registration or when no atlas on its template gives the SN.
    """
    from ironmap.spatial.anatomy import choose_sources

    if fit is None:
        return None
    source = choose_sources(atlases)
    indices = [i for i in core_indices() if i in source and atlases[source[i]].template is None]
    return (source, indices) if indices else None


def fractions(r2img, to_reference: np.ndarray, on_reference: np.ndarray, reference, atlases,
              fit) -> dict[int, np.ndarray] | None:
    """Fractions of every R2* voxel covered by each SN label (None when not available).

    Parameters
    ----------
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    to_reference : ndarray of shape (4, 4)
        R2* world mm -> reference world mm.
    on_reference : ndarray of int
        The automatic labels on the reference grid.
    reference : nibabel.Nifti1Image
        The anatomical reference (the grid of ``on_reference``).
    atlases : list of RelabelledAtlas
        The run's atlases.
    fit : NonlinearFit or None
        The template registration (with ``local`` when the midbrain SyN ran); its files must
        still exist.

    Returns
    -------
    dict of int to ndarray or None
        Label -> fraction map on the R2* grid; None when no atlas on the registration
        template gives the SN or there is no template registration.
    """
    import nibabel as nib

    from ironmap.spatial.grid import resample_labels
    from ironmap.spatial.label_fraction import label_fractions

    carried = _carried_sn(atlases, fit)
    if carried is None:
        return None
    source, indices = carried
    local = getattr(fit, "local", None)
    transforms = local.transforms if local is not None else fit.transforms
    near = resample_labels(nib.Nifti1Image(on_reference, reference.affine), r2img, to_reference)
    out: dict[int, np.ndarray] = {}
    for pos in sorted({source[i] for i in indices}):
        mine = [i for i in indices if source[i] == pos]
        out.update(label_fractions(r2img, to_reference, atlases[pos].labels, mine, transforms,
                                   near))
    return out


def volumes(r2img, to_reference: np.ndarray, atlases, fit) -> dict[int, int] | None:
    """Voxels of each SN label on the R2* grid under the volume-preserving transport.

    The quota of :data:`ironmap.spatial.midbrain.VOLUME_QUOTA` (``affine``: the atlas
    volume times the template registration's affine Jacobian and the R2* -> reference
    affine's), as for the labels on the reference grid.

    Parameters
    ----------
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    to_reference : ndarray of shape (4, 4)
        R2* world mm -> reference world mm.
    atlases : list of RelabelledAtlas
        The run's atlases.
    fit : NonlinearFit or None
        The template registration; its files must still exist.

    Returns
    -------
    dict of int to int or None
        Label -> voxels; None without a registration or under the ``carried`` quota.
    """
    from ironmap.spatial.midbrain import VOLUME_QUOTA, label_quota

    carried = _carried_sn(atlases, fit)
    if carried is None:
        return None
    source, indices = carried
    return label_quota(r2img, atlases, fit.transforms, source, indices, VOLUME_QUOTA,
                       target_to_reference=to_reference)


def apply(labels: np.ndarray, names: dict[int, str], frac: dict[int, np.ndarray] | None,
          cfg: RunConfig, label: str, moved: bool = False, volume: bool = False,
          volumes: dict[int, int] | None = None
          ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any] | None]:
    """SN relabelled from its fractions, and its core (``labels`` unchanged when off).

    Parameters
    ----------
    labels : ndarray of int
        Automatic labels on the R2* grid (after the nuclei refinement).
    names : dict of int to str
        Label -> name (updated in place when a relabelled SN appears).
    frac : dict of int to ndarray or None
        :func:`fractions`.
    cfg : RunConfig
        The run's configuration.
    label : str
        The participant, named in the log.
    moved : bool, optional
        The SN was moved on the R2* map (``--nuclei-refine iron-all``): the fractions no
        longer describe it, so no core is made.
    volume : bool, optional
        Label each SN on as many voxels as its carried volume (``--midbrain-transport
        volume``) instead of its voxels of fraction >= ``LabelLevel``; the core is unchanged.
    volumes : dict of int to int, optional
        With ``volume``: voxels per SN label (:func:`volumes`; default its summed fraction).

    Returns
    -------
    labels : ndarray of int
        The labels (SN from its fractions).
    core : ndarray of int or None
        The SN core (label indices, 0 elsewhere) for
        :func:`ironmap.core.regions.regional_values.regional_stats`'s ``core_labels``.
    provenance : dict or None
        ``SubstantiaNigraCore`` entry of the label sidecar; None when off.
    """
    from ironmap.core.regions.fraction_core import LABEL_LEVEL, fraction_core_labels
    from ironmap.spatial.anatomy import NAWM_INDEX, output_name
    from ironmap.workflows.erosion import erosion_settings
    from ironmap.workflows.nuclei import _clear_rim

    level = core_level(cfg)
    if level is None:
        return labels, None, None
    entry: dict[str, Any] = {"Level": level,
                             "LabelLevel": "volume" if volume else LABEL_LEVEL}
    if frac is None or moved:
        why = "moved on the R2* map (--nuclei-refine iron-all)" if moved else \
            "no atlas on the registration template gives it"
        has_sn = bool(np.isin(labels, core_indices()).any())
        (log.warning if has_sn else log.info)(
            "%s: SN core not made: %s; the SN is eroded like every region", label, why)
        return labels, None, {**entry, "Applied": False, "Reason": why}
    minimum = erosion_settings(cfg)["min_region_voxels"]
    out, core, result = fraction_core_labels(labels, frac, level=level, min_voxels=minimum,
                                             free=(0, NAWM_INDEX), volume=volume,
                                             volumes=volumes)
    _clear_rim(out, list(frac), NAWM_INDEX)
    for index in frac:
        if result.labelled[index]:
            names.setdefault(index, output_name(index))
        if result.level[index] < level:
            log.info("%s: %s core completed to %d voxels (fractions >= %.2f; >= %.2f kept "
                     "fewer than %d)", label, output_name(index), result.core[index],
                     result.level[index], level, minimum)
    entry.update({"Applied": True,
                  "Method": "each SN label carried from the atlas onto the R2* grid as the "
                            "fraction of every voxel it covers (indicator carried linearly "
                            "through the label transforms onto sub-samples, averaged per "
                            "voxel); label: fraction >= LabelLevel (volume: as many voxels "
                            "as its atlas volume times the template registration's affine "
                            "Jacobian, highest fractions first); value over the core, "
                            "fraction >= Level, no further erosion; a core under "
                            "MinRegionVoxels voxels completed by the highest fractions",
                  "MinRegionVoxels": minimum,
                  "Labels": {output_name(i): {"Voxels": result.labelled[i],
                                              "CoreVoxels": result.core[i],
                                              "CoreLevel": round(result.level[i], 4)}
                             for i in sorted(frac)}})
    return out, np.where(core, out, 0).astype(out.dtype), entry


def with_core(eroded: np.ndarray, core: np.ndarray | None) -> np.ndarray:
    """The written eroded label image with each cored label replaced by its core.

    Parameters
    ----------
    eroded : ndarray of int
        The eroded labels on the R2* grid.
    core : ndarray of int or None
        :func:`apply`'s core (None: ``eroded`` returned as it is).

    Returns
    -------
    ndarray of int
        The labels whose regional value the table holds.
    """
    if core is None:
        return eroded
    cored = [int(i) for i in np.unique(core) if i]
    out = np.where(np.isin(eroded, cored), 0, eroded)
    return np.where(core > 0, core, out).astype(eroded.dtype)


def uncored(used: list[str], core: np.ndarray | None, names: dict[int, str]) -> list[str]:
    """The fallback's ``"<region> <hemisphere>"`` list without the cored labels.

    A cored label is valued over its core whatever the erosion would have done, so it is not
    named among the labels eroded by the millimetre fallback.

    Parameters
    ----------
    used : list of str
        :func:`ironmap.workflows.erosion.fallback_eroded`'s list.
    core : ndarray of int or None
        :func:`apply`'s core.
    names : dict of int to str
        Label -> name.

    Returns
    -------
    list of str
        ``used`` without the cored labels' entries.
    """
    from ironmap.core.regions.regional_values import region_key

    if core is None:
        return used
    cored = {" ".join(region_key(str(names[int(i)]))) for i in np.unique(core)
             if i and int(i) in names}
    return [u for u in used if u not in cored]
