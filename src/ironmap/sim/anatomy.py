"""Analytic head phantom: tissue labels at arbitrary points (head millimetres).

The phantom lives in a *template* frame: RAS+ millimetres with the anterior commissure (AC) at
the origin, the posterior commissure (PC) on the negative y axis and the AC-PC line along y.
A subject's head is the template scaled by ``head_scale`` about the AC, with subject-specific
atrophy (outer CSF gap, cortical thickness, ventricle size) and white-matter lesions. Shapes are
ellipsoids combined in a fixed painting order, so a label can be evaluated at any point; images
of any grid and pose are made by evaluating labels at (sub-)voxel positions.

Label codes (``LABELS``): 0 background, 1 scalp and skull, 2 extra-cerebral CSF, 3 ventricles,
4 cortical grey matter (cerebral and cerebellar cortex), 5 white matter (incl. brainstem),
6 lesion, 7 thalamus, and ``10 + i`` for the rater label ``i`` of ``DSEG_LABELS`` (1..14).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ironmap.sim import phantom_kernel

BACKGROUND, SCALP, CSF, VENTRICLE, CORTEX, WM, LESION, THALAMUS = 0, 1, 2, 3, 4, 5, 6, 7
DSEG_OFFSET = 10
N_LABELS = 25

#: Rater label index -> FreeSurfer-style name (docs/file-formats.md).
DSEG_LABELS: dict[int, str] = {
    1: "Left-Caudate", 2: "Right-Caudate",
    3: "Left-Putamen-Anterior", 4: "Right-Putamen-Anterior",
    5: "Left-Putamen-Posterior", 6: "Right-Putamen-Posterior",
    7: "Left-Pallidum", 8: "Right-Pallidum",
    9: "Left-Substantia-Nigra", 10: "Right-Substantia-Nigra",
    11: "Left-Red-Nucleus", 12: "Right-Red-Nucleus",
    13: "Left-Dentate", 14: "Right-Dentate",
}

#: Canonical region of each rater label pair (left index, right index).
DSEG_REGIONS: dict[str, tuple[int, int]] = {
    "caudate": (1, 2),
    "putamen_anterior": (3, 4),
    "putamen_posterior": (5, 6),
    "globus_pallidus": (7, 8),
    "substantia_nigra": (9, 10),
    "red_nucleus": (11, 12),
    "dentate_nucleus": (13, 14),
}

def dseg_r2star(region_r2: dict[str, float]) -> dict[int, float]:
    """Region -> R2* to rater label index -> R2* (both hemispheres equal).

    Parameters
    ----------
    region_r2 : dict of str to float
        R2* (s^-1) of every region of :data:`DSEG_REGIONS`.

    Returns
    -------
    dict of int to float
        Rater label index -> R2* (s^-1).
    """
    return {idx: float(region_r2[region])
            for region, pair in DSEG_REGIONS.items() for idx in pair}


LABELS: dict[int, str] = {
    BACKGROUND: "background", SCALP: "scalp", CSF: "csf", VENTRICLE: "ventricle",
    CORTEX: "cortical_gm", WM: "wm", LESION: "lesion", THALAMUS: "thalamus",
    **{DSEG_OFFSET + i: name for i, name in DSEG_LABELS.items()},
}

# Template shapes (centre xyz, semi-axes xyz), mm, head_scale 1. Right hemisphere (x > 0) given;
# the left is mirrored.
_IC_MAIN = ((0.0, -17.0, 15.0), (67.0, 85.0, 65.0))  # intracranial cavity, cerebrum part
_IC_FOSSA = ((0.0, -55.0, -28.0), (54.0, 38.0, 30.0))  # posterior fossa
_SCALP_MM = 7.0
_CEREBELLUM = ((0.0, -58.0, -30.0), (50.0, 33.0, 24.0))
_CEREBELLAR_CORTEX_MM = 6.0
_BRAINSTEM = ((0.0, -24.0, -30.0), (13.0, 14.0, 34.0))
_VENTRICLE = ((7.0, -6.0, 18.0), (5.5, 30.0, 9.0))
_THIRD_VENTRICLE = ((0.0, -12.0, 2.0), (1.5, 10.0, 8.0))
_THALAMUS = ((10.0, -18.0, 5.0), (8.0, 14.0, 9.0))
_DEEP_GM: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("caudate", (16.0, 6.0, 12.0), (5.0, 14.0, 8.0)),
    ("putamen", (25.0, 1.07, 0.0), (6.0, 16.0, 9.0)),
    ("globus_pallidus", (17.0, -2.0, -1.0), (4.0, 10.0, 6.0)),
    ("substantia_nigra", (10.0, -17.0, -10.0), (7.0, 3.0, 4.5)),
    ("red_nucleus", (4.5, -21.0, -7.0), (3.5, 3.5, 4.0)),
    ("dentate_nucleus", (14.0, -56.0, -30.0), (7.0, 10.0, 5.5)),
)
#: Box (centre, half-size) holding all ventricles and nuclei at any ventricle scale <= 1.6.
_DEEP_BOX = ((0.0, -20.0, -2.0), (40.0, 60.0, 38.0))
#: Posterior commissure in the template (mm).
PC_TEMPLATE = (0.0, -26.0, 0.0)
#: Folding of the cortical grey/white boundary: wavelength (mm) and relative amplitude.
_FOLD_WAVELENGTH_MM = 24.0
_FOLD_AMPLITUDE = 0.45
#: Height (template mm) above which the interhemispheric fissure cuts the cerebrum.
_FISSURE_Z_MM = 28.0


@dataclass(frozen=True)
class Geometry:
    """One subject's phantom in the template frame (before ``head_scale``).

    Attributes
    ----------
    head_scale : float
        Isotropic scale of the whole head about the AC (1 = template).
    csf_gap_mm : float
        Extra-cerebral CSF between the intracranial cavity and the cerebral surface (template mm).
    cortex_mm : float
        Mean thickness of the cerebral cortex shell (template mm).
    ventricle_scale : float
        Scale of the lateral and third ventricles (1 = template).
    lesions : ndarray of shape (n_lesions, 6)
        Axis-aligned lesion ellipsoids: centre x, y, z and semi-axes (template mm).
    fold_phase : ndarray of shape (3,)
        Phases (rad) of the cortical folding pattern.
    """

    head_scale: float = 1.0
    csf_gap_mm: float = 2.5
    cortex_mm: float = 11.0
    ventricle_scale: float = 1.0
    lesions: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    fold_phase: np.ndarray = field(default_factory=lambda: np.zeros(3))


def geometry_to_dict(geom: Geometry) -> dict:
    """JSON-ready description of a geometry (template mm).

    Parameters
    ----------
    geom : Geometry
        One subject's phantom.

    Returns
    -------
    dict
        Plain lists and numbers (:func:`geometry_from_dict` reads it back).
    """
    return {"head_scale": geom.head_scale, "csf_gap_mm": geom.csf_gap_mm,
            "cortex_mm": geom.cortex_mm, "ventricle_scale": geom.ventricle_scale,
            "fold_phase": [float(v) for v in geom.fold_phase],
            "lesions": np.asarray(geom.lesions, dtype=float).reshape(-1, 6).tolist()}


def geometry_from_dict(d: dict) -> Geometry:
    """Inverse of :func:`geometry_to_dict`.

    Parameters
    ----------
    d : dict
        As written by :func:`geometry_to_dict`.

    Returns
    -------
    Geometry
        The phantom.
    """
    return Geometry(float(d["head_scale"]), float(d["csf_gap_mm"]), float(d["cortex_mm"]),
                    float(d["ventricle_scale"]),
                    np.asarray(d["lesions"], dtype=float).reshape(-1, 6),
                    np.asarray(d["fold_phase"], dtype=float))


def _ellipsoid_r2(p: np.ndarray, centre, semi) -> np.ndarray:
    """Squared normalised radius of points ``p`` (N, 3) in an axis-aligned ellipsoid."""
    c = np.asarray(centre, dtype=np.float32)
    a = np.asarray(semi, dtype=np.float32)
    q = (p - c) / a
    return np.einsum("ij,ij->i", q, q)


def _mirror_x(p: np.ndarray) -> np.ndarray:
    """Points with x replaced by |x| (so right-hemisphere shapes cover both sides)."""
    q = p.copy()
    q[:, 0] = np.abs(q[:, 0])
    return q


def _bounds(p: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper corner of a point set (None when empty)."""
    return (p.min(axis=0), p.max(axis=0)) if p.size else None


def _bbox(p: np.ndarray, centre, semi, bounds=None) -> np.ndarray:
    """Indices of points inside the bounding box of an ellipsoid (axis by axis, narrowing).

    ``bounds`` (from :func:`_bounds`) lets shapes that miss the whole point set return early.
    """
    c = np.asarray(centre, dtype=np.float32)
    a = np.asarray(semi, dtype=np.float32)
    if p.shape[0] == 0 or (bounds is not None and (np.any(c + a < bounds[0])
                                                   or np.any(c - a > bounds[1]))):
        return np.zeros(0, dtype=np.intp)
    idx = np.flatnonzero(np.abs(p[:, 0] - c[0]) <= a[0])
    for ax in (1, 2):
        keep = np.abs(p[idx, ax] - c[ax]) <= a[ax]
        idx = idx[keep]
    return idx


def _paint(labels, p, centre, semi, value, where=None, bounds=None) -> None:
    """Set ``labels`` to ``value`` inside an ellipsoid (only where the label is in ``where``)."""
    idx = _bbox(p, centre, semi, bounds)
    if idx.size == 0:
        return
    hit = _ellipsoid_r2(p[idx], centre, semi) <= 1.0
    if where is not None:
        hit &= np.isin(labels[idx], where)
    labels[idx[hit]] = value


def _cerebrum(labels, p, geom: Geometry) -> None:
    """Cerebral cortex shell with folded inner boundary, white matter inside."""
    c, a = _IC_MAIN
    outer = np.asarray(a) - geom.csf_gap_mm
    idx = _bbox(p, c, outer)
    q = p[idx]
    inside = _ellipsoid_r2(q, c, outer) <= 1.0
    idx, q = idx[inside], q[inside]
    labels[idx] = CORTEX
    k = 2 * np.pi / _FOLD_WAVELENGTH_MM
    ph = geom.fold_phase
    fold = (np.sin(k * q[:, 0] + ph[0]) * np.sin(k * q[:, 1] + ph[1])
            * np.sin(k * q[:, 2] + ph[2])).astype(np.float32)
    inner = outer - geom.cortex_mm
    rho = np.sqrt(_ellipsoid_r2(q, c, inner))
    limit = 1.0 + _FOLD_AMPLITUDE * geom.cortex_mm * fold / float(np.mean(inner))
    labels[idx[rho <= limit]] = WM
    # interhemispheric fissure above the corpus callosum, lined by cortex
    upper = q[:, 2] > _FISSURE_Z_MM
    ax = np.abs(q[:, 0])
    labels[idx[upper & (ax < 3.5) & (labels[idx] == WM)]] = CORTEX
    labels[idx[upper & (ax < 1.0)]] = CSF


def _cerebellum_brainstem(labels, p, geom: Geometry) -> None:
    c, a = _CEREBELLUM
    outer = np.asarray(a) - 0.5 * geom.csf_gap_mm
    _paint(labels, p, c, outer, CORTEX)
    _paint(labels, p, c, outer - _CEREBELLAR_CORTEX_MM, WM)
    _paint(labels, p, *_BRAINSTEM, WM)


def label_points(points: np.ndarray, geom: Geometry) -> np.ndarray:
    """Tissue label at each point.

    Evaluated by the compiled kernel (:mod:`ironmap.sim.phantom_kernel`), whose labels equal
    :func:`label_points_reference`'s bit for bit; the reference runs when numba is missing
    or the geometry's numbers would take numpy another arithmetic path.

    Parameters
    ----------
    points : ndarray of shape (N, 3)
        Head coordinates in mm (template frame scaled by ``geom.head_scale``).
    geom : Geometry
        The subject's phantom.

    Returns
    -------
    ndarray of shape (N,), uint8
        Label codes (see module docstring).
    """
    tables = _kernel_tables(geom)
    if tables is None:
        return label_points_reference(points, geom)
    p = np.ascontiguousarray(np.asarray(points, dtype=np.float32) / np.float32(geom.head_scale))
    return phantom_kernel.phantom_labels(p.reshape(-1, 3), *tables)


def load_label_kernel() -> None:
    """Load the compiled label kernel now (from numba's cache, else compile it).

    Called before worker processes are forked, so that they share it instead of each
    loading it again.
    """
    label_points(np.zeros((1, 3), dtype=np.float32), Geometry())


def _kernel_tables(geom: Geometry) -> tuple | None:
    """The kernel's shape table and constants for ``geom`` (None: use the reference).

    Every value is computed as the reference computes it (float64 sums, then float32), and
    the reference's numpy promotions are checked: float64 folding phases, a float32 or
    float64 folding limit.
    """
    if not phantom_kernel.AVAILABLE:
        return None
    phase = np.asarray(geom.fold_phase)
    if phase.dtype != np.float64 or phase.shape != (3,):
        return None
    one = np.ones(1, dtype=np.float32)
    coef = _FOLD_AMPLITUDE * geom.cortex_mm
    limit_dtype = (coef * one).dtype
    if limit_dtype not in (np.float32, np.float64):
        return None
    rows: list[tuple] = []

    def add(centre, semi) -> None:
        rows.append((np.asarray(centre, dtype=np.float32), np.asarray(semi, dtype=np.float32)))

    for centre, semi in (_IC_MAIN, _IC_FOSSA):
        add(centre, np.asarray(semi) + _SCALP_MM)
    for centre, semi in (_IC_MAIN, _IC_FOSSA):
        add(centre, semi)
    c, a = _IC_MAIN
    outer = np.asarray(a) - geom.csf_gap_mm
    inner = outer - geom.cortex_mm
    add(c, outer)
    add(c, inner)
    c, a = _CEREBELLUM
    outer_cb = np.asarray(a) - 0.5 * geom.csf_gap_mm
    add(c, outer_cb)
    add(c, outer_cb - _CEREBELLAR_CORTEX_MM)
    add(*_BRAINSTEM)
    add(*_DEEP_BOX)
    vs = geom.ventricle_scale
    add(*_THALAMUS)
    add(_VENTRICLE[0], np.asarray(_VENTRICLE[1]) * vs)
    add(_THIRD_VENTRICLE[0], np.asarray(_THIRD_VENTRICLE[1]) * vs)
    n_fixed = len(rows)
    values, putamen = [0] * n_fixed, [(0, 0)] * n_fixed
    for region, centre, semi in _DEEP_GM:
        for hemi, sign in ((0, -1.0), (1, 1.0)):
            add((sign * centre[0], centre[1], centre[2]), semi)
            if region == "putamen":
                values.append(0)
                putamen.append((DSEG_OFFSET + DSEG_REGIONS["putamen_anterior"][hemi],
                                DSEG_OFFSET + DSEG_REGIONS["putamen_posterior"][hemi]))
            else:
                values.append(DSEG_OFFSET + DSEG_REGIONS[region][hemi])
                putamen.append((0, 0))
    shapes = np.array([np.concatenate(r) for r in rows], dtype=np.float32)
    lesions = np.ascontiguousarray(np.asarray(geom.lesions, dtype=np.float32).reshape(-1, 6))
    codes = np.array([SCALP, CSF, VENTRICLE, CORTEX, WM, LESION, THALAMUS], dtype=np.uint8)
    k = np.float32(2 * np.pi / _FOLD_WAVELENGTH_MM)
    fold = np.array([k, *phase, coef, float(np.mean(inner)), _FISSURE_Z_MM], dtype=np.float64)
    return (shapes, np.array(values, dtype=np.uint8), np.array(putamen, dtype=np.uint8),
            lesions, codes, fold, bool(limit_dtype == np.float64))


def label_points_reference(points: np.ndarray, geom: Geometry) -> np.ndarray:
    """:func:`label_points` in numpy: the phantom's definition, shape by shape.

    Parameters
    ----------
    points : ndarray of shape (N, 3)
        Head coordinates in mm (template frame scaled by ``geom.head_scale``).
    geom : Geometry
        The subject's phantom.

    Returns
    -------
    ndarray of shape (N,), uint8
        Label codes (see module docstring).
    """
    p = np.asarray(points, dtype=np.float32) / np.float32(geom.head_scale)
    out = np.zeros(p.shape[0], dtype=np.uint8)
    in_head = np.zeros(p.shape[0], dtype=bool)
    for centre, semi in (_IC_MAIN, _IC_FOSSA):
        idx = _bbox(p, centre, np.asarray(semi) + _SCALP_MM)
        idx = idx[~in_head[idx]]
        in_head[idx[_ellipsoid_r2(p[idx], centre, np.asarray(semi) + _SCALP_MM) <= 1.0]] = True
    head = np.flatnonzero(in_head)
    p = p[head]
    labels = np.full(p.shape[0], SCALP, dtype=np.uint8)
    for centre, semi in (_IC_MAIN, _IC_FOSSA):
        _paint(labels, p, centre, semi, CSF)
    _cerebrum(labels, p, geom)
    _cerebellum_brainstem(labels, p, geom)
    deep = _bbox(p, *_DEEP_BOX)
    if deep.size:
        sub, q = labels[deep], p[deep]
        m = _mirror_x(q)
        _paint(sub, m, *_THALAMUS, THALAMUS)
        vs = geom.ventricle_scale
        _paint(sub, m, _VENTRICLE[0], np.asarray(_VENTRICLE[1]) * vs, VENTRICLE)
        _paint(sub, q, _THIRD_VENTRICLE[0], np.asarray(_THIRD_VENTRICLE[1]) * vs, VENTRICLE)
        _paint_deep_gm(sub, q)
        labels[deep] = sub
    lesions = np.asarray(geom.lesions, dtype=np.float32).reshape(-1, 6)
    if lesions.size:
        wm = np.flatnonzero(labels == WM)
        sub, q = labels[wm], p[wm]
        bounds = _bounds(q)
        for les in lesions:
            _paint(sub, q, les[:3], les[3:], LESION, bounds=bounds)
        labels[wm] = sub
    out[head] = labels
    return out


def _paint_deep_gm(labels: np.ndarray, p: np.ndarray) -> None:
    """Deep grey-matter nuclei, both hemispheres; the putamen is split at the AC plane y = 0."""
    bounds = _bounds(p)
    for region, centre, semi in _DEEP_GM:
        for hemi, sign in ((0, -1.0), (1, 1.0)):
            c = (sign * centre[0], centre[1], centre[2])
            if region == "putamen":
                ant = DSEG_OFFSET + DSEG_REGIONS["putamen_anterior"][hemi]
                post = DSEG_OFFSET + DSEG_REGIONS["putamen_posterior"][hemi]
                idx = _bbox(p, c, semi, bounds)
                hit = idx[_ellipsoid_r2(p[idx], c, semi) <= 1.0]
                labels[hit] = np.where(p[hit, 1] >= 0.0, ant, post)
            else:
                _paint(labels, p, c, semi, DSEG_OFFSET + DSEG_REGIONS[region][hemi], bounds=bounds)


def putamen_anterior_fraction() -> float:
    """Volume fraction of the putamen anterior to the AC plane (analytic, all subjects).

    Returns
    -------
    float
        Between 0 and 1.
    """
    _, centre, semi = next(s for s in _DEEP_GM if s[0] == "putamen")
    u = centre[1] / semi[1]  # plane at y = 0 lies u semi-axes behind the centre
    return float(0.5 + 0.75 * u - 0.25 * u**3)


def deep_gm_centres(head_scale: float = 1.0) -> dict[int, np.ndarray]:
    """Centre of each rater label, for placement checks.

    Parameters
    ----------
    head_scale : float, optional
        Isotropic scale of the head.

    Returns
    -------
    dict of int to ndarray of shape (3,)
        Rater label -> centre in head mm.
    """
    out = {}
    for region, centre, _ in _DEEP_GM:
        if region == "putamen":
            parts = {"putamen_anterior": 6.0, "putamen_posterior": -6.0}
        else:
            parts = {region: 0.0}
        for name, dy in parts.items():
            for hemi, sign in ((0, -1.0), (1, 1.0)):
                idx = DSEG_REGIONS[name][hemi]
                out[idx] = head_scale * np.array([sign * centre[0], centre[1] + dy, centre[2]])
    return out


def head_bounds(head_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corner of the box that holds the head.

    Parameters
    ----------
    head_scale : float, optional
        Isotropic scale of the head.

    Returns
    -------
    low, high : ndarray of shape (3,)
        Corners in head mm.
    """
    lo, hi = [], []
    for centre, semi in (_IC_MAIN, _IC_FOSSA):
        c, a = np.asarray(centre), np.asarray(semi) + _SCALP_MM
        lo.append(c - a)
        hi.append(c + a)
    return head_scale * np.min(lo, axis=0), head_scale * np.max(hi, axis=0)


def cerebral_wm_volume_template(geom: Geometry) -> tuple[float, float]:
    """Approximate cerebral (cortex, inner) ellipsoid volumes for a geometry.

    Parameters
    ----------
    geom : Geometry
        One subject's phantom.

    Returns
    -------
    outer, inner : float
        Volumes in cm^3.
    """
    a = np.asarray(_IC_MAIN[1]) - geom.csf_gap_mm
    outer = 4.0 / 3.0 * np.pi * float(np.prod(a)) / 1000.0
    inner = 4.0 / 3.0 * np.pi * float(np.prod(a - geom.cortex_mm)) / 1000.0
    return outer - inner, inner


def in_cerebral_wm(points: np.ndarray, geom: Geometry, margin_mm: float = 0.0) -> np.ndarray:
    """True where points are white matter with ``margin_mm`` clearance (approximate).

    Parameters
    ----------
    points : ndarray of shape (n, 3)
        Template mm.
    geom : Geometry
        One subject's phantom.
    margin_mm : float, optional
        Least distance from other tissue (mm).

    Returns
    -------
    ndarray of bool, shape (n,)
        Whether each point lies in white matter.
    """
    p = np.asarray(points, dtype=np.float32)
    c, a = _IC_MAIN
    inner = np.asarray(a) - geom.csf_gap_mm - geom.cortex_mm * (1 + _FOLD_AMPLITUDE) - margin_mm
    ok = _ellipsoid_r2(p, c, inner) <= 1.0
    labels = label_points(p * np.float32(geom.head_scale),
                          Geometry(geom.head_scale, geom.csf_gap_mm, geom.cortex_mm,
                                   geom.ventricle_scale, fold_phase=geom.fold_phase))
    return ok & (labels == WM) & (np.abs(p[:, 0]) > 4.0) & (p[:, 2] > -5.0)
