"""Group statistics with stated conventions (public API).

- :func:`mann_whitney` (U of the first sample; exact or normal approximation, stated),
- :func:`ttest` (Student or Welch), :func:`correlate` (Pearson, Spearman, or chosen by
  Shapiro-Wilk), :func:`fdr_bh`,
- :func:`stepwise` (forward stepwise OLS on partial F-tests) and :func:`ols`,
- :func:`fit_curve` (bounded nonlinear least squares with standard errors),
- multicenter helpers :func:`intersite_cv`, :func:`group_effects_site_adjusted`,
  :func:`group_effects_mixed`.

See ``docs/statistics.md`` for the conventions and the reference values they are tested on.

This module is part of ironmap's documented public Python API: the names in ``__all__`` are
stable (changes warn with ``FutureWarning`` naming the removal version). It only re-exports
functions from :mod:`ironmap.core`; an import-linter contract in ``pyproject.toml`` keeps it
so, and keeps every module inside ironmap from importing it (code inside ironmap imports the
``ironmap.core`` modules directly).
"""

from ironmap.core.group.curve_fit import CurveFit, fit_curve
from ironmap.core.group.inference import (
    CorrelationResult,
    MannWhitneyResult,
    TTestResult,
    correlate,
    fdr_bh,
    mann_whitney,
    shapiro,
    ttest,
)
from ironmap.core.group.multicenter import (
    group_effects_mixed,
    group_effects_site_adjusted,
    intersite_cv,
)
from ironmap.core.group.regression import RegressionResult, StepwiseResult, ols, stepwise

__all__ = [
    "mann_whitney", "ttest", "correlate", "shapiro", "fdr_bh", "stepwise", "ols",
    "fit_curve", "intersite_cv", "group_effects_site_adjusted", "group_effects_mixed",
    "MannWhitneyResult", "TTestResult", "CorrelationResult", "RegressionResult",
    "StepwiseResult", "CurveFit",
]
