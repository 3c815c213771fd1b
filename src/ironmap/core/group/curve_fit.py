"""Bounded nonlinear least squares with standard errors and confidence intervals.

One engine for every curve ironmap fits at the group level (the age saturation model in
:mod:`ironmap.core.group.age_correction`); it is checked against NIST StRD nonlinear certified
values. Underneath is :func:`scipy.optimize.least_squares` (trust-region reflective with bounds,
Levenberg-Marquardt without). Standard errors come from the Jacobian at the solution:
``cov = s^2 (J^T J)^-1`` with ``s^2 = RSS / (n - p)``, inverted through the SVD with small
singular values discarded (as :func:`scipy.optimize.curve_fit` does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy import stats as _st

__all__ = ["CurveFit", "fit_curve"]


@dataclass(frozen=True)
class CurveFit:
    """Result of :func:`fit_curve`.

    Attributes
    ----------
    params, se, ci_low, ci_high : ndarray of shape (p,)
        Estimates, standard errors and confidence limits (t quantile on ``n - p`` df).
    cov : ndarray of shape (p, p)
    names : tuple of str
    rss : float
        Residual sum of squares (units of y squared).
    residual_sd : float
        ``sqrt(rss / dof)``.
    n, dof : int
        Observations and residual degrees of freedom ``n - p``.
    converged : bool
    at_bound : tuple of bool
        Per parameter, True where the estimate sits on a bound (its SE is then not meaningful).
    diagnostics : dict
        ``nfev``, ``message``, ``jacobian_condition``, ``confidence``.
    """

    params: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    cov: np.ndarray
    names: tuple[str, ...]
    rss: float
    residual_sd: float
    n: int
    dof: int
    converged: bool
    at_bound: tuple[bool, ...]
    diagnostics: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """``{name: estimate}``.

        Returns
        -------
        dict of str to float
            Parameter name -> estimate.
        """
        return {k: float(v) for k, v in zip(self.names, self.params, strict=True)}


def _covariance(jac: np.ndarray, rss: float, dof: int) -> tuple[np.ndarray, float]:
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
    threshold = np.finfo(float).eps * max(jac.shape) * s[0]
    keep = s > threshold
    if dof <= 0 or not keep.all():
        return np.full((jac.shape[1],) * 2, np.nan), cond
    inv = (vt[keep].T / s[keep] ** 2) @ vt[keep]
    return inv * (rss / dof), cond


def fit_curve(model: Callable[..., np.ndarray], x, y, p0: Sequence[float], *,
              jac: Callable[..., np.ndarray] | None = None,
              bounds: tuple = (-np.inf, np.inf), names: Sequence[str] | None = None,
              confidence: float = 0.95, tol: float = 1e-14, max_nfev: int = 20000
              ) -> CurveFit:
    """Fit ``y = model(x, *params)`` by (bounded) least squares.

    Parameters
    ----------
    model : callable ``model(x, *params) -> ndarray of shape (n,)``
    x : ndarray of shape (n,) or (n, k)
        Predictor(s), in the units ``model`` expects.
    y : array_like of shape (n,)
        Response.
    p0 : sequence of float, length p
        Starting values (clipped into the bounds).
    jac : callable ``jac(x, *params) -> ndarray of shape (n, p)``, optional
        Analytic Jacobian of ``model``; finite differences when None.
    bounds : (lower, upper)
        Scalars or sequences of length p; ``(-inf, inf)`` uses Levenberg-Marquardt.
    names : sequence of str, optional
    confidence : float
        Level of the confidence intervals.
    tol : float
        ``ftol``, ``xtol`` and ``gtol`` of the solver.
    max_nfev : int

    Returns
    -------
    CurveFit
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    p0 = np.asarray(p0, dtype=float)
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=float), p0.shape) for b in bounds)
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    start = np.clip(p0, lo, hi)
    if bounded:  # strictly inside for the interior-point solver
        span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
        start = np.clip(start, lo + 1e-10 * span, hi - 1e-10 * span)

    def resid(p):
        return model(x, *p) - y

    jac_fn = (lambda p: np.asarray(jac(x, *p), dtype=float)) if jac is not None else "2-point"
    sol = optimize.least_squares(resid, start, jac=jac_fn, bounds=(lo, hi) if bounded else
                                 (-np.inf, np.inf), method="trf" if bounded else "lm",
                                 ftol=tol, xtol=tol, gtol=tol, max_nfev=max_nfev,
                                 x_scale="jac")
    n, p = y.size, p0.size
    dof = n - p
    rss = float(np.sum(sol.fun ** 2))
    cov, cond = _covariance(np.asarray(sol.jac, dtype=float), rss, dof)
    se = np.sqrt(np.diag(cov))
    tq = _st.t.ppf(0.5 + confidence / 2, dof) if dof > 0 else np.nan
    span = np.maximum(np.abs(sol.x), 1.0)
    at_bound = tuple(bool(v) for v in (np.isclose(sol.x, lo, rtol=0, atol=1e-8 * span)
                                       | np.isclose(sol.x, hi, rtol=0, atol=1e-8 * span)))
    return CurveFit(
        params=sol.x.copy(), se=se, ci_low=sol.x - tq * se, ci_high=sol.x + tq * se, cov=cov,
        names=tuple(names) if names is not None else tuple(f"p{i}" for i in range(p)),
        rss=rss, residual_sd=float(np.sqrt(rss / dof)) if dof > 0 else float("nan"),
        n=n, dof=dof, converged=bool(sol.success), at_bound=at_bound,
        diagnostics={"nfev": int(sol.nfev), "message": str(sol.message),
                     "jacobian_condition": cond, "confidence": confidence},
    )
