"""Physical plausibility of gradient-echo sequence parameters (pure).

BIDS sidecars give ``EchoTime`` and ``RepetitionTime`` in seconds and ``FlipAngle`` in degrees.
A value in the wrong unit, or a swapped pair, still fits an R2* -- a wrong one, without a
warning: ``EchoTime`` 0.5 s with ``RepetitionTime`` 0.03 s turns a caudate R2* of ~30 s^-1 into
~0.8 s^-1. These checks turn such sidecars into errors (impossible) or warnings (unusual).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["TE_ERROR_S", "TE_WARN_S", "sequence_problems"]

#: echo times (s) beyond which a gradient echo of brain tissue holds no signal (T2* < 0.1 s)
TE_ERROR_S = 0.2
#: usual range (s) of R2* gradient echoes; outside it a warning
TE_WARN_S = (0.0005, 0.1)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sequence_problems(meta: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Errors and warnings about ``EchoTime``, ``RepetitionTime`` and ``FlipAngle``.

    Parameters
    ----------
    meta : mapping
        Sidecar of one echo (``EchoTime`` in s, optional ``RepetitionTime`` in s and
        ``FlipAngle`` in degrees).

    Returns
    -------
    (errors, warnings) : tuple of list of str
        Each message names the field and its value; empty lists when all is plausible.
    """
    errors: list[str] = []
    warnings: list[str] = []
    te = _number(meta.get("EchoTime"))
    tr = _number(meta.get("RepetitionTime"))
    flip = _number(meta.get("FlipAngle"))
    if te is not None and math.isfinite(te):
        if te > TE_ERROR_S:
            errors.append(f"EchoTime {te:g} s is beyond any gradient-echo R2* protocol (brain "
                          f"signal has decayed into noise after {TE_ERROR_S:g} s); BIDS "
                          "EchoTime is in seconds")
        elif not TE_WARN_S[0] <= te <= TE_WARN_S[1]:
            warnings.append(f"EchoTime {te:g} s is outside the usual {TE_WARN_S[0]:g}-"
                            f"{TE_WARN_S[1]:g} s of R2* gradient echoes")
    if "RepetitionTime" in meta:
        if tr is None or not math.isfinite(tr) or tr <= 0:
            errors.append(f"RepetitionTime {meta.get('RepetitionTime')!r} is not a positive "
                          "number of seconds")
        elif tr > 100:
            errors.append(f"RepetitionTime {tr:g} looks like milliseconds; BIDS uses seconds")
        elif te is not None and te >= tr:
            errors.append(f"EchoTime {te:g} s is not shorter than RepetitionTime {tr:g} s: "
                          "impossible for one excitation; a unit or field is wrong")
    if "FlipAngle" in meta:
        if flip is None or not math.isfinite(flip) or not 0 < flip <= 180:
            errors.append(f"FlipAngle {meta.get('FlipAngle')!r} is outside 0-180 degrees")
        elif flip > 90:
            warnings.append(f"FlipAngle {flip:g} degrees is unusual for a spoiled gradient echo")
    return errors, warnings
