"""MR signal models of the phantom: spoiled GRE, T1-weighted and FLAIR contrast, noise.

Tissue properties at 3 T are typical literature values (T1 in s, R2* in s^-1, proton density
relative to CSF). Image intensities are arbitrary units before the vendor scaling.
"""

from __future__ import annotations

import numpy as np

from ironmap.sim.anatomy import (
    BACKGROUND,
    CORTEX,
    CSF,
    DSEG_OFFSET,
    DSEG_REGIONS,
    LESION,
    N_LABELS,
    SCALP,
    THALAMUS,
    VENTRICLE,
    WM,
)

#: label -> (proton density, T1 in s, R2* in s^-1) for tissues whose R2* is not subject truth.
TISSUE: dict[int, tuple[float, float, float]] = {
    BACKGROUND: (0.0, 1.0, 0.0),
    SCALP: (0.85, 0.40, 45.0),
    CSF: (1.0, 4.0, 2.0),
    VENTRICLE: (1.0, 4.0, 2.0),
    CORTEX: (0.80, 1.35, 15.0),
    WM: (0.69, 0.85, 21.0),
    LESION: (0.80, 1.30, 17.0),
    THALAMUS: (0.75, 1.05, 22.0),
}
#: Proton density and T1 of the deep grey-matter nuclei (by canonical region).
NUCLEI: dict[str, tuple[float, float]] = {
    "caudate": (0.78, 1.25), "putamen_anterior": (0.77, 1.15),
    "putamen_posterior": (0.77, 1.15), "globus_pallidus": (0.72, 0.95),
    "substantia_nigra": (0.72, 1.00), "red_nucleus": (0.72, 1.00),
    "dentate_nucleus": (0.74, 1.05),
}
#: Relative T1-weighted (MPRAGE-like) and FLAIR intensities of each tissue.
_T1W = {SCALP: 0.85, CSF: 0.12, VENTRICLE: 0.12, CORTEX: 0.58, WM: 1.0, LESION: 0.70,
        THALAMUS: 0.80}
_FLAIR = {SCALP: 0.60, CSF: 0.05, VENTRICLE: 0.04, CORTEX: 0.72, WM: 0.55, LESION: 1.35,
          THALAMUS: 0.62}
_NUCLEUS_T1W = 0.76
_NUCLEUS_FLAIR = 0.58


def spgr_signal(pd, t1_s, r2star, echo_times_s, tr_s: float, flip_deg: float) -> np.ndarray:
    """Spoiled gradient-echo magnitude.

    ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE R2*)``, ``E1 = exp(-TR/T1)``.

    Parameters
    ----------
    pd, t1_s, r2star : array_like of shape (n,)
        Proton density (a.u.), T1 (s), R2* (s^-1).
    echo_times_s : array_like of shape (n_echoes,)
        Echo times (s).
    tr_s : float
        Repetition time (s).
    flip_deg : float
        Flip angle (degrees).

    Returns
    -------
    ndarray of shape (n, n_echoes)
    """
    pd, t1, r2 = (np.asarray(v, dtype=float)[:, None] for v in (pd, t1_s, r2star))
    te = np.asarray(echo_times_s, dtype=float)[None, :]
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr_s / t1)
    return pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-te * r2)


def gre_lut(region_r2star: dict[int, float], lesion_r2star: float, r2star_bias: float,
            echo_times_s, tr_s: float = 0.030, flip_deg: float = 15.0) -> np.ndarray:
    """Per-label GRE signal.

    Parameters
    ----------
    region_r2star : dict of int to float
        Rater label index (1..14) -> R2* (s^-1, before site bias).
    lesion_r2star : float
        Lesion R2* (s^-1).
    r2star_bias : float
        Multiplies every tissue's R2* (site effect).
    echo_times_s : array-like of shape (n_echoes,)
        Echo times in s.
    tr_s : float, optional
        Repetition time in s.
    flip_deg : float, optional
        Flip angle in degrees.

    Returns
    -------
    ndarray of shape (N_LABELS, n_echoes)
        Magnitude signal (arbitrary units).
    """
    pd = np.zeros(N_LABELS)
    t1 = np.ones(N_LABELS)
    r2 = np.zeros(N_LABELS)
    for lab, (p, t, r) in TISSUE.items():
        pd[lab], t1[lab], r2[lab] = p, t, r
    r2[LESION] = lesion_r2star
    for region, pair in DSEG_REGIONS.items():
        for idx in pair:
            pd[DSEG_OFFSET + idx], t1[DSEG_OFFSET + idx] = NUCLEI[region]
            r2[DSEG_OFFSET + idx] = region_r2star[idx]
    return spgr_signal(pd, t1, r2 * r2star_bias, echo_times_s, tr_s, flip_deg)


def contrast_lut(kind: str, nuclei_from_t1: bool = False) -> np.ndarray:
    """Per-label relative intensity of a structural image.

    Parameters
    ----------
    kind : str
        ``"T1w"`` or ``"FLAIR"``.
    nuclei_from_t1 : bool, optional
        On the T1w, give each deep nucleus and the thalamus the intensity of its T1
        (:data:`NUCLEI`, :data:`TISSUE`) interpolated between white matter and cortex
        (:func:`t1w_from_t1`), so the pallidum (short T1, iron and myelin) is brighter than the
        putamen and the caudate darker, as on MPRAGE; otherwise one intensity for every nucleus.

    Returns
    -------
    ndarray of shape (N_LABELS,)
        Relative intensity.
    """
    table, nucleus = (_T1W, _NUCLEUS_T1W) if kind == "T1w" else (_FLAIR, _NUCLEUS_FLAIR)
    lut = np.zeros(N_LABELS)
    for lab, v in table.items():
        lut[lab] = v
    lut[DSEG_OFFSET + 1:] = nucleus
    if kind == "T1w" and nuclei_from_t1:
        lut[THALAMUS] = t1w_from_t1(TISSUE[THALAMUS][1])
        for region, pair in DSEG_REGIONS.items():
            for idx in pair:
                lut[DSEG_OFFSET + idx] = t1w_from_t1(NUCLEI[region][1])
    if kind == "FLAIR":  # iron-rich nuclei are darker on T2-weighted FLAIR
        for region in ("globus_pallidus", "substantia_nigra", "red_nucleus", "dentate_nucleus"):
            for idx in DSEG_REGIONS[region]:
                lut[DSEG_OFFSET + idx] = 0.42
    return lut


def t1w_from_t1(t1_s: float) -> float:
    """Relative T1w intensity of a grey-matter tissue with T1 ``t1_s`` (s).

    Linear in T1 between white matter (T1 0.85 s, intensity 1.0) and cortex (1.35 s, 0.58).

    Parameters
    ----------
    t1_s : float
        Longitudinal relaxation time (s).

    Returns
    -------
    float
        Relative T1w intensity (white matter 1.0).
    """
    _, t1_wm, _ = TISSUE[WM]
    _, t1_gm, _ = TISSUE[CORTEX]
    frac = (t1_s - t1_wm) / (t1_gm - t1_wm)
    return float(_T1W[WM] + frac * (_T1W[CORTEX] - _T1W[WM]))


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``image`` plus complex Gaussian noise of SD ``sigma`` per channel.

    Parameters
    ----------
    image : ndarray
        Noise-free magnitude.
    sigma : float
        Noise SD per channel (units of ``image``).
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    ndarray
        Rician-distributed magnitude, shape of ``image``.
    """
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64)
    re = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    im = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(re, im)


def rician_noise_float32(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """:func:`add_rician_noise` cast to float32, in one compiled pass where it can be.

    The same draws in the same order and the same arithmetic
    (:mod:`ironmap.sim.noise_kernel`), so the values equal
    ``add_rician_noise(image, sigma, rng).astype(np.float32)`` bit for bit; other inputs
    than a 3-D float64 image take the numpy reference.

    Parameters
    ----------
    image : ndarray
        Noise-free magnitude.
    sigma : float
        Noise SD per channel (units of ``image``).
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    ndarray of float32
        Rician-distributed magnitude, shape of ``image``.
    """
    from ironmap.sim import noise_kernel

    image = np.asarray(image)
    # the precision numpy scales the float32 draws in for this type of sigma
    scale = (sigma * np.zeros(1, dtype=np.float32)).dtype if np.isscalar(sigma) else None
    if (not noise_kernel.AVAILABLE or image.dtype != np.float64 or image.ndim != 3
            or scale not in (np.float32, np.float64) or not sigma > 0):
        return add_rician_noise(image, sigma, rng).astype(np.float32)
    draw_re = rng.standard_normal(image.shape, dtype=np.float32)
    draw_im = rng.standard_normal(image.shape, dtype=np.float32)
    return noise_kernel.rician_float32(image, float(sigma), scale == np.float32, draw_re,
                                       draw_im)
