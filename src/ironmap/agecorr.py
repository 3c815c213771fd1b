"""Age correction of regional R2* (public API).

``fit_saturation(age, y)`` fits ``y = a * (1 - exp(-b * age)) + c`` on healthy controls and
returns an :class:`AgeFit` with ``a``, ``b``, ``c``, their standard errors and confidence
intervals, ``predict(age)`` and ``adjust(y, age, reference_age)``; a linear fallback (with an
:class:`AgeModelWarning`) replaces it when the controls' ages do not determine the curve.
See ``docs/statistics.md``.
"""

from ironmap.core.agecorr import (
    B_BOUNDS,
    AgeFit,
    AgeModelWarning,
    age_correct,
    fit_linear,
    fit_saturation,
    saturation,
)

__all__ = ["fit_saturation", "fit_linear", "age_correct", "saturation", "AgeFit",
           "AgeModelWarning", "B_BOUNDS"]
