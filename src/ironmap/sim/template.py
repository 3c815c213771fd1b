"""Template-built head: the simulator's tissue labels taken from a real brain template.

The analytic phantom (:mod:`ironmap.sim.anatomy`) is not shaped like an MNI brain, so an
automatic (template + atlas) labelling cannot be tested on it. This module builds the same
label codes (``anatomy.LABELS``) from a brain template in MNI space: tissue classes from its
grey/white/CSF probability maps, deep grey matter from atlas labels carried onto its grid,
a CSF rim and a scalp shell around its brain mask. A subject is that label field seen through
a known per-subject map from head millimetres to template millimetres:

``x_template = AC + q + u(q)``, ``q = h / (head_scale * axis_scale)``,

where ``h`` is a point in the head frame (AC at the origin, as for the phantom),
``axis_scale`` a small per-axis size change and ``u`` a smooth sinusoidal displacement
(a few mm, wavelength :data:`WARP_WAVELENGTH_MM`). White-matter lesions are ellipsoids in
template millimetres. Everything else (poses, partial volume, signal models, rater masks on
the FLAIR grid) is the simulator's usual machinery: :class:`TemplateGeometry` offers
``label_points`` like the phantom.

The arrays (template, atlas labels) are given by the caller; nothing here opens a file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy import ndimage

from ironmap.core.regions.bounding_box import mask_box
from ironmap.core.regions.putamen_split import anterior_of_ac
from ironmap.sim import anatomy
from ironmap.sim.anatomy import (
    CORTEX,
    CSF,
    DSEG_OFFSET,
    DSEG_REGIONS,
    LESION,
    SCALP,
    VENTRICLE,
    WM,
)

#: Extra-cerebral CSF rim and scalp shell around the template's brain mask (mm).
CSF_RIM_MM = 3.0
SCALP_MM = 7.0
#: Voxels of padding added around the template grid so the scalp shell fits.
_PAD = 12
#: CSF inside the brain mask deeper than this (mm from the mask's outside) counts as ventricle.
VENTRICLE_DEPTH_MM = 20.0
#: Per-subject smooth deformation: largest displacement per axis (mm) and wavelength (mm).
WARP_AMPLITUDE_MM = 3.0
WARP_WAVELENGTH_MM = 90.0
#: SD and clip of the per-axis size change (on top of the isotropic head scale).
AXIS_SCALE_SD = 0.03
AXIS_SCALE_CLIP = 0.08
_PERIVENTRICULAR_MM = 6.0
_LESION_GAP_MM = 3.0


@dataclass(frozen=True)
class TemplateAnatomy:
    """A template's tissue and deep-GM labels with what lesion placement needs.

    Attributes
    ----------
    labels : ndarray of shape (X, Y, Z), uint8
        Phantom label codes (``anatomy.LABELS``) on the padded template grid.
    affine : ndarray of shape (4, 4)
        Voxel -> template world mm (RAS+).
    ac_mm, pc_mm : ndarray of shape (3,)
        Anterior and posterior commissure in template world mm.
    putamen_anterior_fraction : float
        Volume fraction of the putamen anterior to the AC plane.
    source : str
        Description of the template and atlases (provenance).
    wm_depth_mm : ndarray of shape (X, Y, Z), uint8
        Distance (whole mm, capped at 255) of white-matter voxels to the nearest other label.
    ventricle_mm : ndarray of shape (X, Y, Z), uint8
        Distance (whole mm, capped at 255) to the nearest ventricle voxel.

    The two distance maps are computed on first use: only lesion placement
    (:func:`place_lesions`) needs them, so a cohort of controls never pays for them.
    """

    labels: np.ndarray
    affine: np.ndarray
    ac_mm: np.ndarray
    pc_mm: np.ndarray
    putamen_anterior_fraction: float
    source: str = ""

    def _voxel_mm(self) -> float:
        return float(np.mean(np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0)))

    @functools.cached_property
    def wm_depth_mm(self) -> np.ndarray:
        """Whole-mm distance of white-matter voxels to the nearest other label.

        Returns
        -------
        ndarray of uint8
            Distance in whole mm (0 outside white matter), computed on first use.
        """
        return _whole_mm(_inside_distance(self.labels == WM) * self._voxel_mm())

    @functools.cached_property
    def ventricle_mm(self) -> np.ndarray:
        """Whole-mm distance to the nearest ventricle voxel.

        Returns
        -------
        ndarray of uint8
            Distance in whole mm, capped at 255, computed on first use.
        """
        return _whole_mm(ndimage.distance_transform_edt(self.labels != VENTRICLE)
                         * self._voxel_mm())


def _inside_distance(mask: np.ndarray) -> np.ndarray:
    """``distance_transform_edt(mask)`` (voxels) computed on the mask's box only.

    Exact: every voxel of the box grown by one voxel has its nearest outside voxel inside
    that box (a point outside it, clamped onto the box's outer shell, is outside the mask
    and no farther); voxels outside the box are outside the mask (distance 0).
    """
    out = np.zeros(mask.shape, dtype=np.float64)
    box = mask_box(mask, 1)
    if box is None:
        return out
    out[box] = ndimage.distance_transform_edt(mask[box])
    return out


def _outside_distance(mask: np.ndarray, reach_voxels: int) -> np.ndarray:
    """``distance_transform_edt(~mask)`` (voxels), exact up to ``reach_voxels``.

    Computed on the mask's box grown by ``reach_voxels + 1``: every mask voxel lies inside it,
    so distances there are exact; outside it they are more than ``reach_voxels`` and are
    returned as infinity.
    """
    out = np.full(mask.shape, np.inf)
    out[mask] = 0.0
    box = mask_box(mask, int(reach_voxels) + 1)
    if box is None:
        return out
    out[box] = ndimage.distance_transform_edt(~mask[box])
    return out


def build_anatomy(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, brain: np.ndarray,
                  affine: np.ndarray, deep: np.ndarray, ac_mm, pc_mm,
                  source: str = "") -> TemplateAnatomy:
    """Label field of a template: tissue classes, deep grey matter, CSF rim and scalp.

    Parameters
    ----------
    gm, wm, csf : ndarray of shape (X, Y, Z)
        Tissue probabilities (0-1) of the template.
    brain : ndarray of shape (X, Y, Z), bool
        The template's brain mask.
    affine : ndarray of shape (4, 4)
        Voxel -> template world mm (an isotropic grid, about 1 mm).
    deep : ndarray of shape (X, Y, Z), int
        Deep-GM labels as phantom codes (``DSEG_OFFSET + i`` of ``anatomy.DSEG_LABELS``,
        ``THALAMUS``), 0 elsewhere. Putamen voxels may carry either part's code: they are
        split again at the plane through the AC perpendicular to the AC-PC line.
    ac_mm, pc_mm : sequence of 3 float
        AC and PC in template world mm.
    source : str
        Provenance text.

    Returns
    -------
    TemplateAnatomy
    """
    pad = [(_PAD, _PAD)] * 3
    gm, wm, csf = (np.pad(np.asarray(a, dtype=np.float32), pad) for a in (gm, wm, csf))
    brain = np.pad(np.asarray(brain, dtype=bool), pad)
    deep = np.pad(np.asarray(deep, dtype=np.int16), pad)
    aff = np.asarray(affine, dtype=float).copy()
    aff[:3, 3] -= aff[:3, :3] @ np.full(3, _PAD)
    vox = float(np.mean(np.linalg.norm(aff[:3, :3], axis=0)))

    tissue = np.argmax(np.stack([csf, gm, wm]), axis=0)
    labels = np.zeros(brain.shape, dtype=np.uint8)
    labels[brain] = np.array([CSF, CORTEX, WM], dtype=np.uint8)[tissue[brain]]
    # both distance maps on the brain's box only (exact where they are used)
    depth_out = _outside_distance(brain, int(np.ceil((CSF_RIM_MM + SCALP_MM) / vox))) * vox
    labels[(depth_out > 0) & (depth_out <= CSF_RIM_MM)] = CSF
    labels[(depth_out > CSF_RIM_MM) & (depth_out <= CSF_RIM_MM + SCALP_MM)] = SCALP
    depth_in = _inside_distance(brain) * vox
    labels[(labels == CSF) & (depth_in > VENTRICLE_DEPTH_MM)] = VENTRICLE
    sel = (deep > 0) & brain
    labels[sel] = deep[sel].astype(np.uint8)
    fraction = _split_putamen(labels, aff, ac_mm, pc_mm)
    return TemplateAnatomy(labels, aff, np.asarray(ac_mm, float), np.asarray(pc_mm, float),
                           fraction, source)


def _whole_mm(distance: np.ndarray) -> np.ndarray:
    """Distances in whole mm as uint8 (capped at 255)."""
    return np.clip(np.floor(distance), 0, 255).astype(np.uint8)


def _split_putamen(labels: np.ndarray, affine: np.ndarray, ac_mm, pc_mm) -> float:
    """Re-split the putamen codes in place at the AC plane; returns the anterior fraction."""
    n_ant = n_all = 0
    for hemi in (0, 1):
        ant = DSEG_OFFSET + DSEG_REGIONS["putamen_anterior"][hemi]
        post = DSEG_OFFSET + DSEG_REGIONS["putamen_posterior"][hemi]
        ijk = np.argwhere((labels == ant) | (labels == post))
        if not ijk.size:
            continue
        xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
        front = anterior_of_ac(xyz, ac_mm, pc_mm)
        labels[tuple(ijk.T)] = np.where(front, ant, post).astype(np.uint8)
        n_ant += int(front.sum())
        n_all += len(front)
    return n_ant / n_all if n_all else 0.5


@dataclass(frozen=True)
class TemplateGeometry:
    """One subject built from a :class:`TemplateAnatomy` (see the module docstring).

    Attributes
    ----------
    template : TemplateAnatomy
    head_scale : float
        Isotropic head size relative to the template.
    axis_scale : ndarray of shape (3,)
        Extra per-axis size change (x, y, z).
    warp_amplitude_mm : ndarray of shape (3,)
        Amplitude (mm, signed) of the displacement along x, y, z.
    warp_phase : ndarray of shape (3, 2)
        Phases (rad) of the two sine factors of each displacement component.
    lesions : ndarray of shape (n_lesions, 6)
        Lesion ellipsoids: centre x, y, z and semi-axes in template world mm.
    """

    template: TemplateAnatomy
    head_scale: float = 1.0
    axis_scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    warp_amplitude_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    warp_phase: np.ndarray = field(default_factory=lambda: np.zeros((3, 2)))
    lesions: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    #: T1w intensity of each nucleus from its T1 (:func:`ironmap.sim.signal.contrast_lut`)
    nuclei_t1w_from_t1: ClassVar[bool] = True

    def _scale(self) -> np.ndarray:
        return self.head_scale * np.asarray(self.axis_scale, dtype=float)

    def displacement(self, q: np.ndarray) -> np.ndarray:
        """Smooth displacement ``u(q)`` at points ``q``.

        Parameters
        ----------
        q : ndarray of shape (N, 3)
            Points in AC-centred mm.

        Returns
        -------
        ndarray of shape (N, 3)
            Displacement (mm), float32.
        """
        k = np.float32(2 * np.pi / WARP_WAVELENGTH_MM)
        q = np.asarray(q, dtype=np.float32)
        out = np.empty_like(q)
        for c in range(3):
            a, b = (c + 1) % 3, (c + 2) % 3
            ph = self.warp_phase[c]
            out[:, c] = (np.float32(self.warp_amplitude_mm[c]) * np.sin(k * q[:, a] + ph[0])
                         * np.sin(k * q[:, b] + ph[1]))
        return out

    def to_template(self, points: np.ndarray) -> np.ndarray:
        """Map head points to template world coordinates.

        Parameters
        ----------
        points : ndarray of shape (N, 3)
            Head coordinates (mm).

        Returns
        -------
        ndarray of shape (N, 3)
            Template world coordinates (mm), float32.
        """
        q = np.asarray(points, dtype=np.float32) / self._scale().astype(np.float32)
        return q + self.displacement(q) + self.template.ac_mm.astype(np.float32)

    def to_head(self, template_points: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Map template world points to head coordinates (inverse of :meth:`to_template`).

        Parameters
        ----------
        template_points : ndarray of shape (N, 3)
            Template world coordinates (mm).
        iterations : int, optional
            Fixed-point iterations of the inverse displacement.

        Returns
        -------
        ndarray of shape (N, 3)
            Head coordinates (mm).
        """
        target = np.atleast_2d(np.asarray(template_points, dtype=float)) - self.template.ac_mm
        q = target.copy()
        # a contraction: |grad u| <= 2 * amplitude * 2 pi / wavelength < 0.5
        for _ in range(iterations):
            q = target - self.displacement(q).astype(float)
        return q * self._scale()

    def label_points(self, points: np.ndarray) -> np.ndarray:
        """Tissue labels at head points, like :func:`anatomy.label_points`.

        Parameters
        ----------
        points : ndarray of shape (N, 3)
            Head coordinates (mm).

        Returns
        -------
        ndarray of shape (N,)
            Tissue label (uint8), lesions painted into white matter.
        """
        tpl = self.template
        x = self.to_template(points)
        inv = np.linalg.inv(tpl.affine).astype(np.float32)
        rot = inv[:3, :3]
        if np.count_nonzero(rot - np.diag(np.diag(rot))) == 0:
            # an axis-aligned template grid: each product row is x_c * a_cc plus exact zeros,
            # so the scaling alone gives the matrix product's float32 values
            ijk = np.rint(x * np.diag(rot) + inv[:3, 3]).astype(np.intp)
        else:
            ijk = np.rint(x @ rot.T + inv[:3, 3]).astype(np.intp)
        shape = tpl.labels.shape
        inside = np.ones(len(x), dtype=bool)
        for c in range(3):
            inside &= (ijk[:, c] >= 0) & (ijk[:, c] < shape[c])
        out = np.zeros(len(x), dtype=np.uint8)
        kept = ijk[inside]
        flat = (kept[:, 0] * shape[1] + kept[:, 1]) * shape[2] + kept[:, 2]
        out[inside] = np.ravel(tpl.labels).take(flat)
        lesions = np.asarray(self.lesions, dtype=np.float32).reshape(-1, 6)
        if lesions.size:
            wm = np.flatnonzero(out == WM)
            sub, q = out[wm], x[wm]
            bounds = anatomy._bounds(q)
            for les in lesions:
                anatomy._paint(sub, q, les[:3], les[3:], LESION, bounds=bounds)
            out[wm] = sub
        return out

    def landmarks_head(self) -> dict[str, np.ndarray]:
        """AC and PC in head coordinates.

        Returns
        -------
        dict of str to ndarray
            ``"AC"`` and ``"PC"`` in head mm (AC is the origin up to the displacement there).
        """
        ac, pc = self.to_head(np.vstack([self.template.ac_mm, self.template.pc_mm]))
        return {"AC": ac, "PC": pc}


def make_template_geometry(template: TemplateAnatomy, head_scale: float, lesion_load_cm3: float,
                           rng: np.random.Generator) -> TemplateGeometry:
    """A random subject: per-axis size, smooth deformation and white-matter lesions.

    Parameters
    ----------
    template : TemplateAnatomy
    head_scale : float
        Isotropic head size relative to the template.
    lesion_load_cm3 : float
        Lesion volume in the head (cm^3); 0 gives no lesion.
    rng : numpy.random.Generator

    Returns
    -------
    TemplateGeometry
    """
    axis = 1.0 + np.clip(rng.normal(0.0, AXIS_SCALE_SD, 3), -AXIS_SCALE_CLIP, AXIS_SCALE_CLIP)
    amp = WARP_AMPLITUDE_MM * rng.uniform(0.5, 1.0, 3) * rng.choice([-1.0, 1.0], 3)
    phase = rng.uniform(0.0, 2 * np.pi, (3, 2))
    base = TemplateGeometry(template, float(head_scale), axis, amp, phase)
    load = float(lesion_load_cm3) / float(np.prod(base._scale()))
    if load <= 0:
        return base
    return TemplateGeometry(template, float(head_scale), axis, amp, phase,
                            place_lesions(template, load, rng))


def place_lesions(template: TemplateAnatomy, load_cm3: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping lesion ellipsoids (n, 6) inside template white matter, ~``load_cm3``.

    A share :data:`ironmap.sim.subject.PERIVENTRICULAR_SHARE` of lesions lies within a few mm
    of the ventricles, the others anywhere in the cerebral white matter; a lesion's centre
    lies deeper in white matter than its longest semi-axis (so it stays inside it).

    Parameters
    ----------
    template : TemplateAnatomy
        The template-built anatomy.
    load_cm3 : float
        Target lesion volume (cm^3) in template space.
    rng : numpy.random.Generator
        Random source.

    Returns
    -------
    ndarray of shape (n_lesions, 6)
        Centres and semi-axes in template world mm; lesions are at least 3 mm apart.
    """
    from ironmap.sim.subject import PERIVENTRICULAR_SHARE, _lesion_volumes, _semi_axes

    depth = template.wm_depth_mm.reshape(-1)
    cand = np.flatnonzero(depth >= 2)
    ijk = np.stack(np.unravel_index(cand, template.labels.shape), axis=1)
    xyz = ijk @ template.affine[:3, :3].T + template.affine[:3, 3]
    cerebral = xyz[:, 2] > template.ac_mm[2] - 5.0
    cand, xyz = cand[cerebral], xyz[cerebral]
    d_wm = depth[cand].astype(float)
    d_vent = template.ventricle_mm.reshape(-1)[cand].astype(float)
    placed: list[np.ndarray] = []
    for vol in _lesion_volumes(load_cm3, rng):
        semi = _semi_axes(vol, rng)
        ok = d_wm >= semi.max() + 1.0
        if rng.random() < PERIVENTRICULAR_SHARE:
            near = ok & (d_vent <= semi.max() + _PERIVENTRICULAR_MM)
            ok = near if near.any() else ok
        pool = np.flatnonzero(ok)
        for _ in range(100 if pool.size else 0):
            c = xyz[pool[rng.integers(pool.size)]] + rng.uniform(-0.5, 0.5, 3)
            if any(np.linalg.norm(c - q[:3]) < semi.max() + q[3:].max() + _LESION_GAP_MM
                   for q in placed):
                continue
            placed.append(np.concatenate([c, semi]))
            break
    return np.array(placed).reshape(-1, 6)


def geometry_to_dict(geom: TemplateGeometry) -> dict:
    """JSON-ready description of a template subject.

    Parameters
    ----------
    geom : TemplateGeometry
        The subject's geometry.

    Returns
    -------
    dict
        Pose, size, deformation and lesions (the template itself is not included).
    """
    return {"anatomy": "template", "template": geom.template.source,
            "head_scale": geom.head_scale,
            "axis_scale": [float(v) for v in geom.axis_scale],
            "warp_amplitude_mm": [float(v) for v in geom.warp_amplitude_mm],
            "warp_phase": np.asarray(geom.warp_phase, dtype=float).tolist(),
            "warp_wavelength_mm": WARP_WAVELENGTH_MM,
            "lesions": np.asarray(geom.lesions, dtype=float).reshape(-1, 6).tolist()}
