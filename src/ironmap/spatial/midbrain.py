"""Local refinement of the template registration around the midbrain (SN and red nucleus).

The automatic route registers the whole template onto the anatomical reference (affine + SyN
at 2 mm, :func:`ironmap.spatial.atlas.register_syn`). The substantia nigra and red nucleus are
small and sit in the midbrain, where a whole-brain SyN at 2 mm places them about 1 mm off.
This module adds a second, *local* registration:

1. a box around the SN and RN labels in template space (the atlases' own labels, grown by
   :data:`BOX_MARGIN_MM`) is carried to the reference through the global registration (its
   eight corners), giving a box in the reference's world space;
2. a grid of :data:`LOCAL_VOXEL_MM` voxels over that box; the reference is resampled onto it
   (linear) and so is the template, through the global transforms (linear);
3. an ANTs SyN (no affine stage) of the carried template onto the reference on that grid,
   finest level unshrunk, identity start (the global transforms already hold the start);
4. the local warp is composed in front of the global transforms; only the SN and RN labels
   are carried through the composition (:func:`refine_midbrain_labels`), every other label
   keeps the global placement.

The local warp's field covers only the box; outside it its displacement is zero. No R2* and
no GRE image enters the registration (it uses the same anatomical contrast as the global
one), so it cannot select voxels by their R2*.

``ants`` is imported inside the functions (slow import).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ironmap.core.regions.volume_assign import assign_by_volume, scaled_volumes
from ironmap.spatial.label_fraction import (
    affine_volume_scale,
    atlas_volumes_mm3,
    label_fractions,
)
from ironmap.spatial.registration import ants_random_seed, import_ants, to_ants

#: Margin (mm) around the SN + RN labels' bounding box in template space.
BOX_MARGIN_MM = 12.0
#: Voxel size (mm) of the local registration grid.
LOCAL_VOXEL_MM = 1.0
#: SyN iterations per level of the local registration (shrink 4, 2, 1: the last level unshrunk).
#: The unshrunk level runs no iterations (40, 20, 0): chosen over (40, 20, 10) on four known
#: deformations of FSL's MNI152 (``benchmarks/midbrain_known_deformation.py``, variant
#: ``iter_coarse``), about a quarter of the CPU time; docs/anatomy.md gives the held-out check.
LOCAL_ITERATIONS: tuple[int, ...] = (40, 20, 0)
#: Metric of the local SyN: ``CC`` (neighbourhood cross-correlation, radius 2; chosen over
#: ``mattes``, mutual information with 32 bins, on the simulated tuning seeds 7 and 11).
LOCAL_METRIC = "CC"
#: SyN's Gaussian smoothing (voxels) of the update field and of the total field (ANTs'
#: defaults 3 and 0).
LOCAL_FLOW_SIGMA = 3.0
LOCAL_TOTAL_SIGMA = 0.0
#: How a volume-preserving transport sets each label's volume (``affine``: the atlas volume
#: times the template registration's affine Jacobian; ``carried``: the sum of the carried
#: fractions, i.e. times the local Jacobian). Chosen on the tuning known deformations
#: (docs/anatomy.md).
VOLUME_QUOTA = "affine"


@dataclass
class LocalFit:
    """A local SyN composed with the global template registration.

    ``transforms`` carry template-space images onto the reference (the local warp first,
    then the global transforms); ``box_lo``/``box_hi`` the box in the reference's world
    (RAS mm); ``similarity_before``/``similarity_after`` the correlation of the carried
    template with the reference inside the box before and after the local SyN.
    """

    transforms: list[str]
    box_lo: np.ndarray
    box_hi: np.ndarray
    similarity_before: float
    similarity_after: float


def template_box(label_images: list[nib.Nifti1Image], indices, margin_mm: float = BOX_MARGIN_MM
                 ) -> tuple[np.ndarray, np.ndarray]:
    """World bounding box (RAS mm) of the given labels in template space, grown by a margin.

    Parameters
    ----------
    label_images : list of nibabel.Nifti1Image
        Label images in template world space (e.g. relabelled atlases).
    indices : iterable of int
        The label values that define the box.
    margin_mm : float, optional
        Growth on every side (mm).

    Returns
    -------
    lo, hi : ndarray of shape (3,)
        Lower and upper corners, RAS mm.

    Raises
    ------
    ValueError
        When none of the labels is present.
    """
    pts = []
    keep = np.asarray(sorted(set(int(i) for i in indices)))
    for img in label_images:
        ijk = np.argwhere(np.isin(np.asarray(img.dataobj), keep))
        if ijk.size:
            pts.append(ijk @ img.affine[:3, :3].T + img.affine[:3, 3])
    if not pts:
        raise ValueError(f"no voxel of labels {keep.tolist()} in the label images")
    xyz = np.concatenate(pts)
    return xyz.min(axis=0) - margin_mm, xyz.max(axis=0) + margin_mm


def box_grid(lo, hi, voxel_mm: float = LOCAL_VOXEL_MM) -> nib.Nifti1Image:
    """An empty RAS grid of ``voxel_mm`` voxels covering the world box ``lo``-``hi``.

    Parameters
    ----------
    lo, hi : array-like of 3 float
        Box corners, RAS mm.
    voxel_mm : float, optional
        Voxel size.

    Returns
    -------
    nibabel.Nifti1Image
        float32 zeros on the grid.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    shape = np.maximum(1, np.ceil((hi - lo) / voxel_mm).astype(int) + 1)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = lo
    return nib.Nifti1Image(np.zeros(tuple(shape), np.float32), affine)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def refine_box(reference: nib.Nifti1Image, template: nib.Nifti1Image, fit, box, *,
               workdir: str, voxel_mm: float = LOCAL_VOXEL_MM,
               iterations=LOCAL_ITERATIONS, metric: str = LOCAL_METRIC,
               seed: int = 1, flow_sigma: float = LOCAL_FLOW_SIGMA,
               total_sigma: float = LOCAL_TOTAL_SIGMA) -> LocalFit:
    """Local SyN of the (globally registered) template onto the reference inside a box.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The subject's anatomical reference at full resolution (fixed).
    template : nibabel.Nifti1Image
        The template T1 (moving), ideally at 1 mm.
    fit : ironmap.spatial.atlas.NonlinearFit
        The global registration of the template onto the reference (its files must exist).
    box : tuple of two arrays of shape (3,)
        The box in *template* world mm (:func:`template_box`); its corners are carried to
        the reference through ``fit``.
    workdir : str
        Folder for the local transform files (kept while it exists).
    voxel_mm : float, optional
        Voxel size of the local grid.
    iterations : tuple of int, optional
        SyN iterations per level (shrink 2^(n-1) ... 1).
    metric : str, optional
        ``mattes`` or ``CC``.
    seed : int, optional
        ANTs' sampling seed (reproducible with one ITK thread).
    flow_sigma, total_sigma : float, optional
        SyN's smoothing (voxels) of the update field and of the total field (regularisation).

    Returns
    -------
    LocalFit
        The composed transforms (template -> reference) and the box.
    """
    from ironmap.spatial.atlas import template_points_to_subject

    ants = import_ants()

    lo, hi = (np.asarray(b, float) for b in box)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    moved = template_points_to_subject(fit, corners)
    grid = box_grid(moved.min(axis=0), moved.max(axis=0), voxel_mm)
    grid_ants = to_ants(grid)
    ref = to_ants(reference, np.nan_to_num(reference.get_fdata(dtype=np.float32)))
    fixed = ants.resample_image_to_target(ref, grid_ants, interp_type="linear")
    tpl = to_ants(template, np.nan_to_num(template.get_fdata(dtype=np.float32)))
    moving = ants.apply_transforms(grid_ants, tpl, fit.transforms, interpolator="linear")
    before = _correlation(fixed.numpy(), moving.numpy())
    prefix = str(Path(workdir) / "local_")
    sampling = 2 if metric.lower() == "cc" else 32
    with ants_random_seed(seed):
        reg = ants.registration(fixed=fixed, moving=moving, type_of_transform="SyNOnly",
                                reg_iterations=tuple(int(i) for i in iterations),
                                syn_metric=metric, syn_sampling=sampling,
                                flow_sigma=float(flow_sigma), total_sigma=float(total_sigma),
                                outprefix=prefix, verbose=False)
    after = _correlation(fixed.numpy(), reg["warpedmovout"].numpy())
    local = [t for t in reg["fwdtransforms"] if t.endswith("Warp.nii.gz")]
    return LocalFit(local + list(fit.transforms), moved.min(axis=0), moved.max(axis=0),
                    before, after)


def refine_midbrain_labels(reference: nib.Nifti1Image, labels: np.ndarray, atlases,
                           local: LocalFit, indices, source: dict[int, int], *,
                           volume=False, quota: str = VOLUME_QUOTA) -> np.ndarray:
    """Carry the midbrain labels through the composed transforms, other labels unchanged.

    The labels ``indices`` are removed from ``labels`` and painted again from the atlas that
    provides each (``source``), carried with
    ``genericLabel`` through ``local.transforms``; a carried label only takes background
    voxels, never another region's. With ``volume`` each label (or each of the labels
    ``volume`` lists; the others keep the winner, painted first) instead gets as many voxels
    as its carried volume, in decreasing fraction of the voxel it covers
    (:func:`ironmap.spatial.label_fraction.label_fractions`,
    :func:`ironmap.core.regions.volume_assign.assign_by_volume`), still only background:
    with ``quota`` ``carried`` that volume is the sum of its fractions (the atlas volume
    times the transforms' local Jacobian), with ``affine`` the atlas volume times the
    affine part's Jacobian only (:func:`ironmap.spatial.label_fraction.affine_volume_scale`).

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The grid of ``labels``.
    labels : ndarray of int, shape of ``reference``
        Output labels of the global route (before NAWM is added).
    atlases : list of RelabelledAtlas
        The atlases, relabelled.
    local : LocalFit
        From :func:`refine_box`.
    indices : iterable of int
        The output labels to carry again (SN and RN, both sides).
    source : dict of int to int
        Output label -> position of the atlas that provides it
        (:func:`ironmap.spatial.anatomy.choose_sources`).
    volume : bool or collection of int, optional
        Volume-preserving assignment instead of ``genericLabel``'s winner, for every label
        (True) or for the labels listed.
    quota : str, optional
        ``carried`` or ``affine``: how each label's volume is set.

    Returns
    -------
    ndarray of int16, shape of ``labels``
        The labels with the midbrain labels replaced.
    """
    ants = import_ants()

    ref = to_ants(reference, np.zeros(reference.shape[:3], np.float32))
    # an atlas with its own template was not registered through the global template fit
    keep = sorted(i for i in set(int(i) for i in indices)
                  if i in source and atlases[source[i]].template is None)
    out = np.asarray(labels).astype(np.int16, copy=True)
    out[np.isin(out, keep)] = 0
    by_volume = set(keep) if volume is True else {int(i) for i in (volume or ())}
    fractions: dict[int, np.ndarray] = {}
    for pos in sorted({source[i] for i in keep}):
        mine = [i for i in keep if source[i] == pos]
        atlas = atlases[pos]
        src = np.asarray(atlas.labels.dataobj)
        data = np.where(np.isin(src, mine), src, 0).astype(np.float32)
        moved = np.rint(ants.apply_transforms(ref, to_ants(atlas.labels, data),
                                              local.transforms,
                                              interpolator="genericLabel").numpy())
        for index in mine:  # one carried image: the winners do not overlap
            if index not in by_volume:
                out[(moved == index) & (out == 0)] = index
        carried = [i for i in mine if i in by_volume]
        if carried:
            fractions.update(label_fractions(reference, np.eye(4), atlas.labels, carried,
                                             local.transforms, moved.astype(int)))
    if fractions:
        assigned, _ = assign_by_volume(fractions, out == 0,
                                       label_quota(reference, atlases, local.transforms,
                                                   source, list(fractions), quota))
        out[assigned > 0] = assigned[assigned > 0]
    return out


def label_quota(target: nib.Nifti1Image, atlases, transforms: list[str],
                source: dict[int, int], indices, quota: str,
                target_to_reference: np.ndarray | None = None) -> dict[int, int] | None:
    """Voxels of each label under ``quota`` ``affine`` (None for ``carried``).

    Parameters
    ----------
    target : nibabel.Nifti1Image
        The target grid.
    atlases : list of RelabelledAtlas
        The relabelled atlases.
    transforms : list of str
        ANTs transforms template -> reference.
    source : dict of int to int
        Output label -> atlas position.
    indices : iterable of int
        The labels carried.
    quota : str
        ``carried`` or ``affine``.
    target_to_reference : ndarray of shape (4, 4), optional
        Target world mm -> the reference's world mm when the target is another grid (the
        R2* map); its determinant scales the volume too.

    Returns
    -------
    dict of int to int or None
        Label -> voxels: atlas volume times :func:`affine_volume_scale` over the voxel volume.

    Raises
    ------
    ValueError
        An unknown ``quota``.
    """
    if quota == "carried":
        return None
    if quota != "affine":
        raise ValueError(f"volume quota {quota!r} is not one of carried, affine")
    voxel = abs(float(np.linalg.det(np.asarray(target.affine, float)[:3, :3])))
    scale = affine_volume_scale(transforms)
    if target_to_reference is not None:
        scale /= abs(float(np.linalg.det(np.asarray(target_to_reference, float)[:3, :3])))
    out: dict[int, int] = {}
    indices = [int(i) for i in indices]
    for pos in sorted({source[i] for i in indices}):  # one pass over each atlas
        mine = [i for i in indices if source[i] == pos]
        out.update(scaled_volumes(atlas_volumes_mm3(atlases[pos].labels, mine), scale, voxel))
    return out


def refine_midbrain(reference: nib.Nifti1Image, labels: np.ndarray, atlases, fit,
                    template: nib.Nifti1Image, *, indices, source: dict[int, int], workdir: str,
                    margin_mm: float = BOX_MARGIN_MM, voxel_mm: float = LOCAL_VOXEL_MM,
                    iterations=LOCAL_ITERATIONS, metric: str = LOCAL_METRIC,
                    seed: int = 1, flow_sigma: float = LOCAL_FLOW_SIGMA,
                    total_sigma: float = LOCAL_TOTAL_SIGMA, volume=False,
                    quota: str = VOLUME_QUOTA) -> tuple[np.ndarray, LocalFit | None]:
    """SN and RN carried through a local midbrain SyN composed with the global fit.

    :func:`template_box` around the labels ``indices`` (SN and RN) of the atlases that use the
    registration template, :func:`refine_box` there, :func:`refine_midbrain_labels` on
    ``labels``.

    Parameters
    ----------
    reference : nibabel.Nifti1Image
        The anatomical reference (full resolution; the grid of ``labels``).
    labels : ndarray of int
        The global route's labels on that grid (before NAWM is added).
    atlases : list of RelabelledAtlas
        The relabelled atlases.
    fit : ironmap.spatial.atlas.NonlinearFit
        The global template registration (its files must exist).
    template : nibabel.Nifti1Image
        The registration template at the local resolution (1 mm).
    indices : iterable of int
        The output labels refined (:func:`ironmap.spatial.anatomy.midbrain_indices`).
    source : dict of int to int
        Output label -> atlas position (:func:`ironmap.spatial.anatomy.choose_sources`).
    workdir : str
        Folder for the local transform files.
    margin_mm, voxel_mm, iterations, metric, seed, flow_sigma, total_sigma
        As for :func:`template_box` and :func:`refine_box`.
    volume : bool or collection of int, optional
        Volume-preserving label transport (:func:`refine_midbrain_labels`).
    quota : str, optional
        Its volume rule (:func:`refine_midbrain_labels`).

    Returns
    -------
    labels : ndarray of int16
        ``labels`` with SN and RN replaced (unchanged when no atlas on the template gives
        them).
    local : LocalFit or None
        The local fit, None when nothing was refined.
    """
    indices = list(indices)
    sources = [a.labels for a in atlases if a.template is None]
    try:
        box = template_box(sources, indices, margin_mm)
    except ValueError:
        return np.asarray(labels).astype(np.int16), None
    local = refine_box(reference, template, fit, box, workdir=workdir, voxel_mm=voxel_mm,
                       iterations=iterations, metric=metric, seed=seed,
                       flow_sigma=flow_sigma, total_sigma=total_sigma)
    return refine_midbrain_labels(reference, labels, atlases, local, indices, source,
                                  volume=volume, quota=quota), local
