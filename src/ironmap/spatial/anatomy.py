"""Automatic anatomy: deep-GM, thalamus and white-matter labels from several atlases at once.

Every atlas is first relabelled in its own space to ironmap's output labels
(:data:`OUTPUT_LABELS`: one index per region and hemisphere) through the bundled label table
(``ironmap/data/atlas_labels.tsv``, read by :func:`ironmap.io.atlas.read_label_map`) or, for
a user's own atlas folder, through the label names (:func:`ironmap.spatial.atlas.atlas_region`).
For each region the atlas with the lowest ``priority`` in that table wins (ties: the order the
atlases were given in); the others' labels of that region are dropped. One ANTs SyN of the
template onto the subject's anatomical reference (T1w, or the first GRE echo when there is
no T1w) carries every atlas with ``genericLabel`` interpolation; regions are painted in
priority order and never overwrite each other.

Normal-appearing white matter (:func:`white_matter_reference`) comes from the template's WM
probability map carried through the same registration (probability >= 0.9, deep-GM labels
and their one-voxel rim removed); lesions are removed on the R2* grid by the workflow.

``ants`` is imported inside the functions (slow import).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ironmap.core.regions.names import region_label_name
from ironmap.spatial.registration import import_ants, to_ants

log = logging.getLogger(__name__)

#: Regions the automatic route labels, in output-index order (left = 2k+1, right = 2k+2).
AUTO_REGIONS: tuple[str, ...] = ("caudate", "putamen", "globus_pallidus", "substantia_nigra",
                                 "red_nucleus", "dentate_nucleus", "thalamus")
#: Regions the optional local midbrain registration carries (:mod:`ironmap.spatial.midbrain`).
MIDBRAIN_REGIONS: tuple[str, ...] = ("substantia_nigra", "red_nucleus")
#: Seed regions every automatic run must yield (thalamus and NAWM are reference regions).
SEED_REGIONS: tuple[str, ...] = AUTO_REGIONS[:6]
#: Output index of normal-appearing white matter (one bilateral label).
NAWM_INDEX = 40
NAWM_NAME = "NAWM"
#: Template WM probability that counts as white matter for the NAWM reference.
WM_PROBABILITY = 0.9


class AtlasSpecError(ValueError):
    """An atlas maps no label to an ironmap region or lies off its template (names the atlas)."""


def output_index(region: str, hemisphere: str) -> int:
    """Output label index of ``(region, hemisphere)``.

    Parameters
    ----------
    region : str
        Canonical region.
    hemisphere : str
        ``left`` or ``right``.

    Returns
    -------
    int
        The label value in the written deep-GM label image.
    """
    return 2 * AUTO_REGIONS.index(region) + (1 if hemisphere == "left" else 2)


def output_name(index: int) -> str:
    """FreeSurfer-style name of an output index.

    Parameters
    ----------
    index : int
        A label value of the written image.

    Returns
    -------
    str
        E.g. ``Left-Caudate``, ``Right-Thalamus``.
    """
    if index == NAWM_INDEX:
        return NAWM_NAME
    region = AUTO_REGIONS[(index - 1) // 2]
    hemi = "left" if index % 2 == 1 else "right"
    if region == "thalamus":
        return f"{hemi.capitalize()}-Thalamus"
    return region_label_name(region, hemi)


def midbrain_indices(regions=MIDBRAIN_REGIONS) -> list[int]:
    """Output label indices of the regions in :data:`MIDBRAIN_REGIONS`, both sides.

    Parameters
    ----------
    regions : iterable of str, optional
        The regions (default all of :data:`MIDBRAIN_REGIONS`).

    Returns
    -------
    list of int
        Indices of :data:`OUTPUT_LABELS`.
    """
    return [output_index(r, h) for r in regions for h in ("left", "right")]


#: Every output label, index -> name.
OUTPUT_LABELS: dict[int, str] = {i: output_name(i) for i in range(1, 2 * len(AUTO_REGIONS) + 1)}


@dataclass
class RelabelledAtlas:
    """An atlas in its own space with output indices; ``priority[index]`` of each label."""

    name: str
    labels: nib.Nifti1Image
    priority: dict[int, int]
    template: nib.Nifti1Image | None


def _rows_for(atlas, label_map) -> list[tuple[int, str, str, int]]:
    """``(atlas index, region, hemisphere, priority)`` of the atlas labels ironmap uses."""
    import re

    from ironmap.spatial.atlas import atlas_region

    rows = []
    if atlas.key:
        table = label_map[label_map["atlas"] == atlas.key]
        lookup = {str(r.label): (str(r.region), str(r.hemisphere), int(r.priority))
                  for r in table.itertuples()}
        for index, name in atlas.names.items():
            stem = re.sub(rf"[-_ ]{int(index)}$", "", name.strip())
            if stem in lookup:
                rows.append((index, *lookup[stem]))
        return rows
    for index, name in atlas.names.items():
        region, hemi = atlas_region(name, index)
        if region is None and re.search(r"thal", name, re.I):
            region = "thalamus"
        elif region in ("putamen_anterior", "putamen_posterior"):
            region = "putamen"  # split again at the AC plane on the subject
        if region in AUTO_REGIONS and hemi in ("left", "right"):
            rows.append((index, region, hemi, 1))
        elif region in AUTO_REGIONS:
            rows.append((index, region, "split", 1))
    return rows


def relabel_atlas(atlas, label_map) -> RelabelledAtlas:
    """Atlas labels -> output indices in the atlas's own space (bilateral labels split at x=0).

    Parameters
    ----------
    atlas : Atlas
        An atlas (:func:`ironmap.io.atlas.read_atlas`).
    label_map : pandas.DataFrame
        Label-name -> region table (:func:`ironmap.io.atlas.read_label_map`).

    Returns
    -------
    RelabelledAtlas
        The relabelled image and each output label's priority.

    Raises
    ------
    AtlasSpecError
        When no label of the atlas names an ironmap region (unknown names).
    """
    rows = _rows_for(atlas, label_map)
    if not rows:
        known = "the bundled table atlas_labels.tsv" if atlas.key else (
            "the region names ironmap knows (caudate, putamen, pallidum, substantia nigra, "
            "red nucleus, dentate, thalamus)")
        raise AtlasSpecError(f"atlas {atlas.name}: none of its {len(atlas.names)} label names "
                             f"maps to an ironmap region through {known}")
    src = np.asarray(atlas.labels.dataobj).astype(np.int64)
    out = np.zeros(src.shape, dtype=np.int16)
    x = None
    priority: dict[int, int] = {}
    for index, region, hemi, prio in rows:
        sel = src == index
        if hemi == "split":
            if x is None:
                ijk = np.indices(src.shape, dtype=np.float32).reshape(3, -1)
                x = (atlas.labels.affine[0, :3] @ ijk + atlas.labels.affine[0, 3]).reshape(
                    src.shape)
            for side, part in (("left", sel & (x < 0)), ("right", sel & (x >= 0))):
                out[part] = output_index(region, side)
                priority[output_index(region, side)] = prio
        else:
            out[sel] = output_index(region, hemi)
            priority[output_index(region, hemi)] = prio
    return RelabelledAtlas(atlas.name, nib.Nifti1Image(out, atlas.labels.affine), priority,
                           atlas.template)


def choose_sources(atlases: list[RelabelledAtlas]) -> dict[int, int]:
    """Output index -> position of the atlas that provides it (lowest priority, then order).

    Parameters
    ----------
    atlases : list of RelabelledAtlas
        The atlases, in the order given.

    Returns
    -------
    dict of int to int
        Output index -> position in ``atlases``.
    """
    best: dict[int, tuple[int, int]] = {}
    for pos, atlas in enumerate(atlases):
        for index, prio in atlas.priority.items():
            if index not in best or prio < best[index][0]:
                best[index] = (prio, pos)
    return {index: pos for index, (_, pos) in best.items()}


def check_on_template(atlas: RelabelledAtlas, brain: nib.Nifti1Image,
                      min_fraction: float = 0.9, margin_mm: float = 4.0) -> float:
    """Fraction of the atlas's labelled voxels inside the template brain (+ ``margin_mm``).

    Parameters
    ----------
    atlas : RelabelledAtlas
        The atlas in its space.
    brain : nibabel.Nifti1Image
        The template's brain mask.
    min_fraction : float, optional
        Least fraction accepted.
    margin_mm : float, optional
        Widening of the brain mask (mm).

    Returns
    -------
    float
        The fraction (0-1).

    Raises
    ------
    AtlasSpecError
        Below ``min_fraction``: the label image is not in the template's space.
    """
    lab = np.asarray(atlas.labels.dataobj)
    ijk = np.argwhere(lab > 0)
    if ijk.size == 0:
        raise AtlasSpecError(f"atlas {atlas.name}: no ironmap region left in the label image")
    world = ijk @ atlas.labels.affine[:3, :3].T + atlas.labels.affine[:3, 3]
    mask = np.asarray(brain.dataobj) > 0
    vox = np.linalg.norm(brain.affine[:3, :3], axis=0)
    grown = ndimage.distance_transform_edt(~mask, sampling=vox) <= margin_mm
    inv = np.linalg.inv(brain.affine)
    idx = np.rint(world @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(mask.shape)), axis=1)
    hit = np.zeros(len(idx), bool)
    hit[inside] = grown[tuple(idx[inside].T)]
    fraction = float(hit.mean())
    if fraction < min_fraction:
        raise AtlasSpecError(
            f"atlas {atlas.name}: only {100 * fraction:.0f} % of its region voxels lie inside "
            f"the template brain; its label image is not in the template's space (world mm)")
    return fraction


def warp_atlases(reference, atlases: list[RelabelledAtlas], transforms: dict[int, list[str]]
                 ) -> np.ndarray:
    """Carry every atlas onto the reference grid and paint the winning regions.

    Parameters
    ----------
    reference : ANTsImage
        The subject's anatomical reference (fixed image of the registrations).
    atlases : list of RelabelledAtlas
    transforms : dict
        Atlas position -> ANTs forward transforms (template -> reference).

    Returns
    -------
    ndarray of int16, shape of ``reference``
        Output indices (0 = background); each voxel holds at most one region.
    """
    ants = import_ants()

    source = choose_sources(atlases)
    moved = {}
    for pos, atlas in enumerate(atlases):
        keep = [i for i, p in source.items() if p == pos]
        if not keep:
            continue
        src = np.asarray(atlas.labels.dataobj)
        data = np.where(np.isin(src, keep), src, 0).astype(np.float32)
        moved[pos] = np.rint(ants.apply_transforms(
            reference, to_ants(atlas.labels, data), transforms[pos],
            interpolator="genericLabel").numpy()).astype(np.int16)
    return paint_regions(moved, atlases)


def paint_regions(moved: dict[int, np.ndarray], atlases: list[RelabelledAtlas]) -> np.ndarray:
    """One label image from every atlas's carried labels: each output region from its source.

    Regions are painted in :func:`atlas_order_key` order, each taking only voxels no region
    painted before it holds.

    Parameters
    ----------
    moved : dict of int to ndarray of int
        Atlas position -> its output labels on one grid (every array the same shape).
    atlases : list of RelabelledAtlas
        The atlases (for :func:`choose_sources` and the painting order).

    Returns
    -------
    ndarray of int16
        Output indices (0 = background); each voxel holds at most one region.
    """
    source = choose_sources(atlases)
    order = sorted(set(source), key=lambda i: atlas_order_key(i, source, atlases))
    out = np.zeros(next(iter(moved.values())).shape, dtype=np.int16)
    for index in order:
        out[(moved[source[index]] == index) & (out == 0)] = index
    return out


def atlas_order_key(index: int, source: dict[int, int], atlases) -> tuple[int, int, int]:
    """Painting order of an output label: priority of the providing atlas, its position, the index.

    Parameters
    ----------
    index : int
        Output label.
    source : dict of int to int
        Output index -> atlas position (:func:`choose_sources`).
    atlases : list of RelabelledAtlas
        The atlases.

    Returns
    -------
    tuple of int
        The sort key.
    """
    pos = source[index]
    return atlases[pos].priority[index], pos, index


def white_matter_reference(reference, wm_probability: nib.Nifti1Image, transforms: list[str],
                           deep: np.ndarray, threshold: float = WM_PROBABILITY) -> np.ndarray:
    """NAWM candidate mask on the reference grid (lesions are removed later).

    The template WM probability is carried linearly; voxels >= ``threshold`` that are not a
    deep-GM/thalamus label or its 26-neighbour rim are kept.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The grid of the result.
    wm_probability : nibabel.Nifti1Image
        Template WM probability (0-1).
    transforms : list of str
        ANTs transforms template -> reference.
    deep : ndarray of int, shape of ``reference``
        Deep-GM labels on the reference grid.
    threshold : float, optional
        Least WM probability.

    Returns
    -------
    ndarray of bool, shape of ``reference``
        The candidate normal-appearing white matter.
    """
    ants = import_ants()

    prob = ants.apply_transforms(reference, to_ants(wm_probability,
                                                    wm_probability.get_fdata(dtype=np.float32)),
                                 transforms, interpolator="linear").numpy()
    rim = ndimage.binary_dilation(deep > 0, ndimage.generate_binary_structure(3, 3))
    return (prob >= threshold) & ~rim


#: Head extent (mm, along world z) above which the image is taken to include the neck.
NECK_EXTENT_MM = 200.0
#: Vertex of the scalp to the top of the brain (scalp + skull + CSF), mm.
SCALP_MM = 12.0


def head_top_translation(reference: nib.Nifti1Image, brain: nib.Nifti1Image
                         ) -> np.ndarray | None:
    """Initial translation (RAS mm, reference -> template) from the top of the head.

    ANTs starts from the images' centres of mass; a head with neck and shoulders puts the
    reference's far below the brain. When the head spans more than :data:`NECK_EXTENT_MM`
    along world z, the brain centre is placed below the vertex by the template's own
    top-of-brain-to-centre distance plus :data:`SCALP_MM`, and in x/y at the centroid of the
    top 100 mm of the head. Returns None (keep the centre of mass) otherwise.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The subject's head image (fixed).
    brain : nibabel.Nifti1Image
        The template's brain mask (moving).

    Returns
    -------
    ndarray of shape (3,) or None
        Reference point -> template point, RAS mm; None to keep ANTs' centre-of-mass start.
    """
    data = np.nan_to_num(np.asarray(reference.get_fdata(dtype=np.float32)))
    positive = data[data > 0]
    if positive.size == 0:
        return None
    head = data > 0.15 * np.percentile(positive, 99)
    lab, n = ndimage.label(ndimage.binary_opening(head, iterations=1))
    if n == 0:
        return None
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    ijk = np.argwhere(lab == 1 + int(np.argmax(sizes)))
    xyz = ijk @ reference.affine[:3, :3].T + reference.affine[:3, 3]
    top, bottom = np.percentile(xyz[:, 2], [99.9, 0.1])
    if top - bottom <= NECK_EXTENT_MM:
        return None
    tb = np.argwhere(np.asarray(brain.dataobj) > 0) @ brain.affine[:3, :3].T \
        + brain.affine[:3, 3]
    centre_tpl = tb.mean(axis=0)
    slab = xyz[xyz[:, 2] > top - 100.0]
    centre_sub = np.array([slab[:, 0].mean(), slab[:, 1].mean(),
                           top - SCALP_MM - (tb[:, 2].max() - centre_tpl[2])])
    return centre_tpl - centre_sub


def automatic_labels(reference: nib.Nifti1Image, atlases: list[RelabelledAtlas],
                     template: nib.Nifti1Image, wm_probability: nib.Nifti1Image, *,
                     workdir: str, registration_mm: float | None = 2.0, label: str = "T1w",
                     iterations=None, template_brain: nib.Nifti1Image | None = None,
                     midbrain_template: nib.Nifti1Image | None = None, affine=None,
                     midbrain_volume=False):
    """Deep-GM, thalamus and NAWM labels on the grid of a subject's anatomical reference.

    Parameters
    ----------
    reference : nibabel image of shape (X, Y, Z)
        T1w (or first GRE echo) of the subject, any grid.
    atlases : list of RelabelledAtlas
        From :func:`relabel_atlas`; those without their own template use ``template``.
    template, wm_probability : nibabel images
        Registration template (T1) and its WM probability (0-1), one world space.
    template_brain : nibabel image, optional
        The brain mask of a brain-only template (nilearn's ICBM152 2009a): the registration
        then takes it into account (:func:`ironmap.spatial.atlas.register_syn`), and a
        reference that includes the neck starts from
        :func:`head_top_translation` instead of the centres of mass.
    workdir : str
        Folder for the registration's transform files (kept while it exists).
    registration_mm : float or None
        The reference is block-averaged to about this voxel size for the SyN (the labels are
        still carried onto the full-resolution grid).
    midbrain_template : nibabel image, optional
        The registration template at 1 mm: SN and RN are then carried through a local SyN
        around the midbrain composed with the template registration
        (:func:`ironmap.spatial.midbrain.refine_midbrain`); None keeps the global placement.
    iterations : tuple of int, optional
        SyN iterations per level (default :data:`ironmap.spatial.atlas.SYN_ITERATIONS`).
    affine : tuple of three tuples of int, optional
        The affine stage's schedule with ``template_brain`` (default
        :data:`ironmap.spatial.atlas.AFFINE_SCHEDULE`).
    midbrain_volume : bool or collection of int, optional
        SN and RN (True) or the output labels given carried volume-preserving
        (:func:`ironmap.spatial.midbrain.refine_midbrain_labels`), through the local SyN
        when it runs, else through the template registration.

    Returns
    -------
    labels : ndarray of int16, shape (X, Y, Z)
        Output indices (:data:`OUTPUT_LABELS`, :data:`NAWM_INDEX`), 0 = background.
    names : dict[int, str]
        Index -> name of every label present.
    fit : ironmap.spatial.atlas.NonlinearFit or None
        The template registration (reuse for AC/PC while ``workdir`` exists); None when every
        atlas brought its own template (then no NAWM label either).
    """
    from pathlib import Path

    from ironmap.spatial.atlas import AFFINE_SCHEDULE, SYN_ITERATIONS, fit_template
    from ironmap.spatial.registration import downsample

    iterations = SYN_ITERATIONS if iterations is None else iterations
    affine = AFFINE_SCHEDULE if affine is None else affine
    small = downsample(reference, registration_mm)
    fit = None
    if any(a.template is None for a in atlases) or not atlases:
        shift = None if template_brain is None else head_top_translation(small, template_brain)
        fit = fit_template(small, template, label=label, iterations=iterations,
                           workdir=workdir, template_mask=template_brain,
                           initial_translation=shift, affine=affine)
    transforms = {}
    for pos, atlas in enumerate(atlases):
        if atlas.template is None:
            transforms[pos] = fit.transforms
        else:  # a user's atlas with its own template: its own registration
            own = Path(workdir) / f"atlas{pos}"
            own.mkdir(exist_ok=True)
            transforms[pos] = fit_template(small, atlas.template, label=label,
                                           iterations=iterations, workdir=str(own)).transforms
    ref = to_ants(reference, np.nan_to_num(reference.get_fdata(dtype=np.float32)))
    out = warp_atlases(ref, atlases, transforms)
    if fit is not None and midbrain_template is not None:
        from ironmap.spatial.midbrain import refine_midbrain

        local_dir = Path(workdir) / "midbrain"
        local_dir.mkdir(exist_ok=True)
        out, fit.local = refine_midbrain(reference, out, atlases, fit, midbrain_template,
                                         indices=midbrain_indices(),
                                         source=choose_sources(atlases),
                                         workdir=str(local_dir), volume=midbrain_volume)
    elif fit is not None and midbrain_volume:
        from ironmap.spatial.midbrain import refine_midbrain_labels

        out = refine_midbrain_labels(reference, out, atlases, fit, midbrain_indices(),
                                     choose_sources(atlases), volume=midbrain_volume)
    if fit is not None:  # NAWM needs the template registration (no own-template atlas)
        nawm = white_matter_reference(ref, wm_probability, fit.transforms, out)
        out[nawm & (out == 0)] = NAWM_INDEX
    present = sorted(int(i) for i in np.unique(out) if i)
    return out, {i: output_name(i) for i in present}, fit
