"""Fit-quality flags of R2* fits and per-map quality summaries.

Every voxel of a fit gets a ``uint16`` bit field; 0 means good. Bits in :data:`FLAGS_INVALID`
mean that no R2* value was produced (the maps hold NaN there, never 0). The other bits are
warnings: the value is kept but may be biased.
"""

from __future__ import annotations

import numpy as np

FLAG_NONFINITE = np.uint16(1 << 0)
FLAG_NONPOSITIVE = np.uint16(1 << 1)
FLAG_RISING = np.uint16(1 << 2)
FLAG_NOISE_FLOOR = np.uint16(1 << 3)
FLAG_OUT_OF_RANGE = np.uint16(1 << 4)
FLAG_FIT_FAILED = np.uint16(1 << 5)
FLAG_OUTSIDE_MASK = np.uint16(1 << 6)
FLAG_LATE_ECHO_FLOOR = np.uint16(1 << 7)

_DESCRIPTIONS: dict[int, tuple[str, str]] = {
    int(FLAG_NONFINITE): ("nonfinite", "a signal value is NaN or infinite"),
    int(FLAG_NONPOSITIVE): ("nonpositive", "a signal value is zero or negative"),
    int(FLAG_RISING): ("rising", "the last echo is not below the first (no decay)"),
    int(FLAG_NOISE_FLOOR): ("noise_floor", "the first echo is within the noise floor"),
    int(FLAG_OUT_OF_RANGE): ("out_of_range", "R2* outside the configured physical range"),
    int(FLAG_FIT_FAILED): ("fit_failed", "the fit did not converge or produced no value"),
    int(FLAG_OUTSIDE_MASK): ("outside_mask", "voxel outside the fitting mask"),
    int(FLAG_LATE_ECHO_FLOOR): ("late_echo_floor",
                                "warning: the last echo is near the noise floor (value kept)"),
}

#: Bits that mean "no value": the R2*, S0 and RMSE maps are NaN wherever one of these is set.
FLAGS_INVALID = np.uint16(
    FLAG_NONFINITE | FLAG_NONPOSITIVE | FLAG_RISING | FLAG_NOISE_FLOOR | FLAG_OUT_OF_RANGE
    | FLAG_FIT_FAILED | FLAG_OUTSIDE_MASK
)

#: Bits that are warnings only (the value is kept).
FLAGS_WARNING = np.uint16(FLAG_LATE_ECHO_FLOOR)


def describe_flags(flags=None) -> dict:
    """Describe the quality bits.

    Parameters
    ----------
    flags : ndarray of uint16, optional
        A flag map. Without it, the table of bits is returned.

    Returns
    -------
    dict
        Without ``flags``: ``{bit_value: (name, description)}``. With ``flags``:
        ``{name: number_of_voxels_with_that_bit}`` plus ``"good"`` (flags == 0) and ``"invalid"``.
    """
    if flags is None:
        return dict(_DESCRIPTIONS)
    f = np.asarray(flags, dtype=np.uint16)
    out = {name: int(np.count_nonzero(f & bit)) for bit, (name, _) in _DESCRIPTIONS.items()}
    out["good"] = int(np.count_nonzero(f == 0))
    out["invalid"] = int(np.count_nonzero(f & FLAGS_INVALID))
    return out


def flag_names(value: int) -> list[str]:
    """Names of the bits set in one flag value.

    Parameters
    ----------
    value : int
        A voxel's flag bits.

    Returns
    -------
    list of str
        E.g. ``["rising", "out_of_range"]``.
    """
    return [name for bit, (name, _) in _DESCRIPTIONS.items() if int(value) & bit]


def classify_invalid(signal, r2star, s0, r2star_range) -> np.ndarray:
    """Reason bits for voxels whose fit produced no usable value.

    Parameters
    ----------
    signal : ndarray of shape (n_voxels, n_echoes)
        The echoes used by the fit (ascending TE).
    r2star, s0 : ndarray of shape (n_voxels,)
        Raw fit output (s^-1, signal units).
    r2star_range : tuple of float
        Open interval (low, high) of accepted R2* in s^-1.

    Returns
    -------
    ndarray of shape (n_voxels,), uint16
        At least one bit per voxel.
    """
    s = np.asarray(signal)
    flags = np.zeros(s.shape[0], dtype=np.uint16)
    flags[~np.isfinite(s).all(axis=1)] |= FLAG_NONFINITE
    with np.errstate(invalid="ignore"):
        flags[(s <= 0).any(axis=1)] |= FLAG_NONPOSITIVE
        flags[s[:, -1] >= s[:, 0]] |= FLAG_RISING
    finite = np.isfinite(r2star) & np.isfinite(s0) & (s0 > 0)
    lo, hi = r2star_range
    with np.errstate(invalid="ignore"):
        out = finite & ~((r2star > lo) & (r2star < hi))
    flags[out & (flags == 0)] |= FLAG_OUT_OF_RANGE
    flags[flags == 0] |= FLAG_FIT_FAILED
    return flags


def failure_fraction(flags, mask=None) -> float:
    """Fraction of (masked) voxels without a value, from a flag map.

    Parameters
    ----------
    flags : ndarray of uint16
        Flag map.
    mask : ndarray of bool, optional
        Voxels counted (all when None).

    Returns
    -------
    float
        Fraction (0-1) with a bit of :data:`FLAGS_INVALID` set.
    """
    f = np.asarray(flags, dtype=np.uint16)
    inside = (f & FLAG_OUTSIDE_MASK) == 0
    if mask is not None:
        inside &= np.asarray(mask, dtype=bool)
    n = int(np.count_nonzero(inside))
    if n == 0:
        return float("nan")
    return float(np.count_nonzero(f[inside] & FLAGS_INVALID)) / n


def gre_coverage(echo1: np.ndarray, brain: np.ndarray) -> float:
    """Fraction of ``brain`` voxels where the first echo exceeds 10 % of its 99th percentile.

    Parameters
    ----------
    echo1 : ndarray of shape (nx, ny, nz)
        First-echo magnitude (arbitrary units); NaN counts as 0.
    brain : ndarray of bool, shape (nx, ny, nz)
        Brain mask on the same grid.

    Returns
    -------
    float
        Fraction in [0, 1]; 0 when the echo has no positive voxel, NaN when the brain mask
        has no voxel on the grid.
    """
    if not brain.any():
        return float("nan")
    e = np.nan_to_num(echo1)
    positive = e[e > 0]
    if positive.size == 0:
        return 0.0
    return float(np.mean(e[brain] > 0.1 * np.percentile(positive, 99)))
