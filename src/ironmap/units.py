"""The only unit conversions in ironmap. SI inside: seconds, s^-1, mm, cm^3."""

from __future__ import annotations

import numpy as np

#: Echo times above this many seconds are implausible for a GRE and almost surely milliseconds.
MAX_PLAUSIBLE_TE_S = 0.5


def ms_to_s(value_ms):
    """Convert milliseconds to seconds.

    Parameters
    ----------
    value_ms : float or array_like
        Milliseconds.

    Returns
    -------
    ndarray
        Seconds (float64), shape of the input.
    """
    return np.asarray(value_ms, dtype=float) / 1000.0


def s_to_ms(value_s):
    """Convert seconds to milliseconds.

    Parameters
    ----------
    value_s : float or array_like
        Seconds.

    Returns
    -------
    ndarray
        Milliseconds (float64), shape of the input.
    """
    return np.asarray(value_s, dtype=float) * 1000.0


def mm3_to_cm3(value_mm3):
    """Convert cubic millimetres to cubic centimetres (= mL).

    Parameters
    ----------
    value_mm3 : float or array_like
        mm^3.

    Returns
    -------
    ndarray
        cm^3 (float64), shape of the input.
    """
    return np.asarray(value_mm3, dtype=float) / 1000.0


def r2star_to_t2star(r2star_per_s):
    """R2* to T2*; non-positive or non-finite R2* gives NaN.

    Parameters
    ----------
    r2star_per_s : float or array_like
        R2* in s^-1.

    Returns
    -------
    ndarray
        T2* in s (float64), shape of the input.
    """
    r2 = np.asarray(r2star_per_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 / r2
    out[~np.isfinite(r2) | (r2 <= 0)] = np.nan
    return out


def looks_like_milliseconds(echo_times) -> bool:
    """True when echo times are implausibly long for seconds (any value > 0.5).

    Parameters
    ----------
    echo_times : array_like
        Echo times as given.

    Returns
    -------
    bool
        Whether they look like milliseconds.
    """
    te = np.asarray(echo_times, dtype=float)
    return bool(np.any(te > MAX_PLAUSIBLE_TE_S))
