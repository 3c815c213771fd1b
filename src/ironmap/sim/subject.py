"""One subject's phantom geometry: atrophy from target volumes, and white-matter lesions."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ironmap.sim import anatomy
from ironmap.sim.anatomy import Geometry

#: Offsets (cm^3, template) between the cerebral ellipsoid shells and the counted volumes:
#: cerebellar cortex and fissure add cortex; nuclei, ventricles and the thalamus replace
#: white matter while the cerebellar and brainstem white matter add to it.
_CORTEX_OFFSET_CM3 = 20.0
_WM_OFFSET_CM3 = -14.0
_GAP_RANGE_MM = (1.0, 14.0)
_CORTEX_RANGE_MM = (5.0, 20.0)
#: Share of lesions placed next to the lateral ventricles (the others in deep white matter).
PERIVENTRICULAR_SHARE = 0.6
_MEAN_LESION_CM3 = 0.45
_MAX_LESIONS = 100
_LESION_GAP_MM = 3.0


def _shell_volumes(gap: float, cortex: float) -> tuple[float, float]:
    return anatomy.cerebral_wm_volume_template(Geometry(csf_gap_mm=gap, cortex_mm=cortex))


def solve_atrophy(cortical_gm_cm3: float, wm_cm3: float) -> tuple[float, float]:
    """Outer CSF gap and cortical thickness (template mm) giving the target volumes.

    Parameters
    ----------
    cortical_gm_cm3, wm_cm3 : float
        Head-size normalised target volumes (cm^3).

    Returns
    -------
    (csf_gap_mm, cortex_mm) : tuple of float
        Clipped to plausible ranges, so extreme targets are approximated.
    """
    inner_target = wm_cm3 - _WM_OFFSET_CM3
    outer_target = inner_target + cortical_gm_cm3 - _CORTEX_OFFSET_CM3

    def outer_err(gap):
        shell, inner = _shell_volumes(gap, 0.0)
        return shell + inner - outer_target

    lo, hi = _GAP_RANGE_MM
    gap = lo if outer_err(lo) < 0 else hi if outer_err(hi) > 0 else brentq(outer_err, lo, hi)

    def inner_err(cortex):
        return _shell_volumes(gap, cortex)[1] - inner_target

    lo, hi = _CORTEX_RANGE_MM
    if inner_err(lo) < 0:
        return gap, lo
    if inner_err(hi) > 0:
        return gap, hi
    return gap, brentq(inner_err, lo, hi)


def make_geometry(row, rng: np.random.Generator) -> Geometry:
    """Geometry of one participant.

    Parameters
    ----------
    row : mapping
        A row with the generator columns of :func:`ironmap.sim.cohort.draw_participants`.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    Geometry
        The phantom (template frame).
    """
    gap, cortex = solve_atrophy(float(row["cortical_gm_norm_target"]),
                                float(row["wm_norm_target"]))
    vent = float(np.clip(1.0 + 0.006 * (731.8 - float(row["wm_norm_target"]))
                         + 0.008 * (float(row["age"]) - 30.0) + rng.normal(0, 0.05), 0.8, 1.6))
    base = Geometry(head_scale=float(row["head_scale"]), csf_gap_mm=gap, cortex_mm=cortex,
                    ventricle_scale=vent, fold_phase=rng.uniform(0, 2 * np.pi, 3))
    load = float(row["lesion_load_target"]) / float(row["head_scale"]) ** 3
    lesions = place_lesions(base, load, rng) if load > 0 else np.zeros((0, 6))
    return Geometry(base.head_scale, gap, cortex, vent, lesions, base.fold_phase)


def _lesion_volumes(load_cm3: float, rng: np.random.Generator) -> np.ndarray:
    """Split a lesion load (template cm^3) into lesion volumes (mm^3), largest first."""
    n = int(np.clip(round(load_cm3 / _MEAN_LESION_CM3), 1, _MAX_LESIONS))
    w = rng.lognormal(0.0, 0.8, n)
    return np.sort(load_cm3 * 1000.0 * w / w.sum())[::-1]


def _semi_axes(volume_mm3: float, rng: np.random.Generator) -> np.ndarray:
    """Axis-aligned ellipsoid semi-axes (mm) of a lesion, elongated along a random axis."""
    aspect = rng.permutation([1.0, 1.2, 1.6])
    r = (3.0 * volume_mm3 / (4.0 * np.pi * np.prod(aspect))) ** (1 / 3)
    return np.maximum(r * aspect, 1.8)


def _candidate_centre(geom: Geometry, semi: np.ndarray, rng) -> np.ndarray:
    """A random lesion centre: beside a lateral ventricle, or in deep white matter."""
    if rng.random() < PERIVENTRICULAR_SHARE:
        centre, vsemi = anatomy._VENTRICLE
        d = rng.normal(0, 1, 3)
        d[1] *= 0.6
        d /= np.linalg.norm(d)
        side = rng.choice([-1.0, 1.0])
        surf = np.asarray(centre) + np.asarray(vsemi) * geom.ventricle_scale * d
        c = surf + d * (semi.max() + 1.5)
        c[0] *= side
        return c
    lo = np.array([-50.0, -80.0, -5.0])
    hi = np.array([50.0, 55.0, 55.0])
    return rng.uniform(lo, hi)


def _fits(geom: Geometry, centre: np.ndarray, semi: np.ndarray) -> bool:
    """True when the lesion's centre and surface samples lie in cerebral white matter."""
    dirs = np.vstack([np.eye(3), -np.eye(3), np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1]))
                      .reshape(3, -1).T / np.sqrt(3)])
    pts = np.vstack([centre, centre + dirs * semi])
    inside = anatomy.in_cerebral_wm(pts, geom)
    return bool(inside[0] and inside.mean() >= 0.75)


def place_lesions(geom: Geometry, load_cm3: float, rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping lesion ellipsoids (n, 6) in white matter with total volume ~ load.

    Parameters
    ----------
    geom : Geometry
        The subject's phantom without lesions.
    load_cm3 : float
        Target lesion volume in template cm^3.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of shape (n_lesions, 6)
        Centres and semi-axes (template mm). Lesions are at least 3 mm apart.
    """
    placed: list[np.ndarray] = []
    for vol in _lesion_volumes(load_cm3, rng):
        semi = _semi_axes(vol, rng)
        for _ in range(300):
            c = _candidate_centre(geom, semi, rng)
            if any(np.linalg.norm(c - q[:3]) < semi.max() + q[3:].max() + _LESION_GAP_MM
                   for q in placed):
                continue
            if _fits(geom, c, semi):
                placed.append(np.concatenate([c, semi]))
                break
    return np.array(placed).reshape(-1, 6)
