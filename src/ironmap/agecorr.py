"""Age correction of regional R2* (public API).

``fit_age_model(age, y, method)`` fits one region's age curve on healthy controls:
``auto`` (default; the seed's saturation ``a * (1 - exp(-b * age)) + c`` with a log-normal
prior on ``b``), ``seed`` (least squares, no fallback), ``prior`` (``b`` fixed), ``linear`` or
``none``, or ``pooled`` (rate and amplitude partially pooled across regions: ``pool_prior``
on all regions' controls, then ``fit_age_model(..., "pooled", pool=...)``);
``correct_region(values, ages, controls, reference_age)`` adjusts every subject and
bootstraps the controls for the corrections' SD. ``fit_saturation`` is the earlier fit with a
linear fallback. Results are :class:`AgeFit` objects with ``a``, ``b``, ``c``, their standard
errors and confidence intervals, ``predict(age)`` and ``adjust(y, age, reference_age)``.
See ``docs/statistics.md``.

This module is part of ironmap's documented public Python API: the names in ``__all__`` are
stable (changes warn with ``FutureWarning`` naming the removal version). It only re-exports
functions from :mod:`ironmap.core`; an import-linter contract in ``pyproject.toml`` keeps it
so, and keeps every module inside ironmap from importing it (code inside ironmap imports the
``ironmap.core`` modules directly).
"""

from ironmap.core.group.age_correction import (
    AGE_MODELS,
    B_BOUNDS,
    B_PRIOR,
    AgeFit,
    AgeModelWarning,
    RegionCorrection,
    age_correct,
    correct_region,
    fit_age_model,
    fit_linear,
    fit_saturation,
    fixed_curve,
    saturation,
)
from ironmap.core.group.age_pooling import PoolPrior, pool_prior

__all__ = ["fit_age_model", "correct_region", "fit_saturation", "fit_linear", "age_correct",
           "fixed_curve", "saturation", "AgeFit", "AgeModelWarning", "RegionCorrection",
           "AGE_MODELS", "B_BOUNDS", "B_PRIOR", "pool_prior", "PoolPrior"]
