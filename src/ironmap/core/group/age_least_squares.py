"""The age-curve record and the least-squares age fits (the seed's curve and a straight line).

Model (the seed study's, after Hallgren and Sourander's iron accumulation curve)::

    R2*(age) = a * (1 - exp(-b * age)) + c

with ``a`` (s^-1) the R2* gained between birth and saturation, ``b`` (1/years) the rate and
``c`` (s^-1) the value at age 0. :func:`fit_saturation` fits it on the controls of a region by
bounded least squares (:func:`ironmap.core.group.curve_fit.fit_curve`; ``a >= 0``, ``1e-4 <= b <=
2`` per year, ``c`` free), started from the best point of a grid over ``b`` on which ``a`` and
``c`` are solved linearly, and falls back to a straight line (:func:`fit_linear`) when the
controls' ages do not determine the curvature (fewer than ``min_n`` controls, no convergence,
``a`` or ``b`` on a bound, a singular Jacobian, or a relative standard error of ``b`` above
``max_rel_se_b``). This was ironmap's earlier default; the age models of ``--age-model`` are
chosen in :mod:`ironmap.core.group.age_correction`, which re-exports everything here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from ironmap.core.group.curve_fit import fit_curve
from ironmap.core.group.inference import finite_pairs

__all__ = ["AgeFit", "AgeModelWarning", "B_BOUNDS", "fit_linear", "fit_saturation",
           "fit_seed", "fixed_curve", "saturation", "saturation_fit"]

#: Bounds of the rate ``b`` in 1/years.
B_BOUNDS = (1e-4, 2.0)
#: Age models of ``--age-model`` (``auto`` is the default).

class AgeModelWarning(UserWarning):
    """The saturation model could not be identified and a fallback was used."""


def saturation(age, a, b, c):
    """``a * (1 - exp(-b * age)) + c``.

    Parameters
    ----------
    age : array_like
        Years, any shape.
    a, b, c : float or array_like
        Amplitude (s^-1), rate (1/years), offset (s^-1).

    Returns
    -------
    ndarray
        R2* in s^-1, broadcast shape.
    """
    age = np.asarray(age, dtype=float)
    return a * -np.expm1(-b * age) + c


def _saturation_jac(age, a, b, c):
    e = np.exp(-b * age)
    return np.column_stack([1.0 - e, a * age * e, np.ones_like(age)])


@dataclass(frozen=True)
class AgeFit:
    """An age model of one region.

    Attributes
    ----------
    model : str
        ``"saturation"``, ``"linear"`` (fallback) or ``"none"`` (too few controls).
    params, se : dict of str -> float
        ``a``, ``b``, ``c`` (saturation) or ``c``, ``slope`` (linear; s^-1 per year).
    ci : dict of str -> (float, float)
        Confidence intervals (``confidence`` level, t quantile on ``n - p`` df).
    n : int
        Controls used.
    age_range : (float, float)
        Youngest and oldest control (years).
    warning : str or None
        Why the fallback was used.
    diagnostics : dict
        ``rss``, ``residual_sd``, ``r2``, ``converged``, ``jacobian_condition``,
        ``saturation_reached`` (``1 - exp(-b * (age_max - age_min))``), for the ``auto``
        and ``prior`` fits ``b_prior_median``, ``b_prior_sd_log`` and ``b_sd_ratio``
        (posterior / prior SD of ``log b``) ...
    method : str
        How the curve was obtained: ``auto``, ``seed``, ``prior``, ``linear``, ``none``,
        ``fixed`` (parameters handed in) or ``fallback`` (:func:`fit_saturation`).
    """

    model: str
    params: dict
    se: dict
    ci: dict
    n: int
    age_range: tuple[float, float]
    warning: str | None = None
    diagnostics: dict = field(default_factory=dict)
    method: str = "fallback"

    def _get(self, table: dict, name: str) -> float:
        return float(table.get(name, np.nan))

    @property
    def a(self) -> float:
        """Parameter ``a`` of the curve (s^-1); NaN when the model has none."""
        return self._get(self.params, "a")

    @property
    def b(self) -> float:
        """Parameter ``b`` of the curve (1/years); NaN when the model has none."""
        return self._get(self.params, "b")

    @property
    def c(self) -> float:
        """Parameter ``c`` of the curve (s^-1); NaN when the model has none."""
        return self._get(self.params, "c")

    @property
    def slope(self) -> float:
        """Slope of the linear model (s^-1 per year); NaN when the model has none."""
        return self._get(self.params, "slope")

    @property
    def a_se(self) -> float:
        """Standard error of ``a`` (s^-1); NaN when the model has none."""
        return self._get(self.se, "a")

    @property
    def b_se(self) -> float:
        """Standard error of ``b`` (1/years); NaN when the model has none."""
        return self._get(self.se, "b")

    @property
    def c_se(self) -> float:
        """Standard error of ``c`` (s^-1); NaN when the model has none."""
        return self._get(self.se, "c")

    def predict(self, age) -> np.ndarray:
        """Model R2* at ``age``.

        Parameters
        ----------
        age : array_like
            Years, any shape.

        Returns
        -------
        ndarray
            R2* in s^-1, shape of ``age``; NaN for ``model == "none"``.
        """
        age = np.asarray(age, dtype=float)
        if self.model == "saturation":
            return saturation(age, self.a, self.b, self.c)
        if self.model == "linear":
            return self.c + self.slope * age
        return np.full(age.shape, np.nan)

    def adjust(self, y, age, reference_age: float) -> np.ndarray:
        """``y - f(age) + f(reference_age)``: R2* moved along the curve to ``reference_age``.

        For the linear fallback, ages outside the controls' age range are held at its nearest
        end (no extrapolation of a straight line beyond the data it was fitted on).

        Parameters
        ----------
        y : array_like of shape (n,)
            R2* in s^-1.
        age : array_like of shape (n,)
            Ages in years.
        reference_age : float
            Years.

        Returns
        -------
        ndarray of shape (n,)
            Adjusted R2* in s^-1.
        """
        y = np.asarray(y, dtype=float)
        age = np.asarray(age, dtype=float)
        if self.model == "linear":  # a local approximation: never extrapolated
            lo, hi = self.age_range
            age, reference_age = np.clip(age, lo, hi), float(np.clip(reference_age, lo, hi))
        return y - self.predict(age) + self.predict(reference_age)

    def to_row(self) -> dict:
        """Flat dict for ``agefit.tsv``.

        Returns
        -------
        dict
            Model, method, parameters with standard errors and confidence limits, and diagnostics.
        """
        row = {"method": self.method, "model": self.model, "n": self.n,
               "age_min": self.age_range[0],
               "age_max": self.age_range[1]}
        for name in ("a", "b", "c", "slope"):
            row[name] = self._get(self.params, name)
            row[f"{name}_se"] = self._get(self.se, name)
            lo, hi = self.ci.get(name, (np.nan, np.nan))
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
        for key in ("rss", "residual_sd", "r2", "converged", "saturation_reached",
                    "b_prior_median", "b_prior_sd_log", "a_prior_mean", "a_prior_sd",
                    "b_sd_ratio"):
            row[key] = self.diagnostics.get(key, np.nan)
        row["warning"] = self.warning or ""
        return row


def clean_pairs(age, y) -> tuple[np.ndarray, np.ndarray]:
    """Ages and R2* as float arrays, pairs with a NaN dropped.

    Parameters
    ----------
    age, y : array_like of shape (n,)
        Years and s^-1.

    Returns
    -------
    age, y : ndarray of shape (m,)
        The ``m <= n`` pairs where both are finite.
    """
    return finite_pairs(age, y, names=("age", "y"))


def _grid_start(age: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Best (a, b, c) over a log grid of b, with a and c solved by linear least squares."""
    best = (np.inf, 0.0, B_BOUNDS[0], float(np.mean(y)))
    for b in np.geomspace(B_BOUNDS[0] * 10, B_BOUNDS[1] / 2, 80):
        design = np.column_stack([-np.expm1(-b * age), np.ones_like(age)])
        (a, c), *_ = np.linalg.lstsq(design, y, rcond=None)
        if a < 0:
            a, c = 0.0, float(np.mean(y))
        rss = float(np.sum((design @ [a, c] - y) ** 2))
        if rss < best[0]:
            best = (rss, float(a), float(b), float(c))
    return best[1], best[2], best[3]


def _r2(y: np.ndarray, rss: float) -> float:
    tss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - rss / tss if tss > 0 else float("nan")


def _identification_problem(fit, age, max_rel_se_b: float) -> str | None:
    if not fit.converged:
        return f"the solver did not converge ({fit.diagnostics['message']})"
    if fit.at_bound[0]:
        return "a = 0: no increase of R2* with age among the controls"
    if fit.at_bound[1]:
        return f"b on its bound {fit.params[1]:.4g}/year: curvature not determined"
    if not np.all(np.isfinite(fit.se)):
        return "singular Jacobian: parameters not separable"
    rel = fit.se[1] / fit.params[1]
    if rel > max_rel_se_b:
        return (f"relative SE of b is {rel:.2f} (> {max_rel_se_b}): the controls' ages "
                f"({age.min():.0f}-{age.max():.0f} y) do not determine the saturation")
    return None


def fit_linear(age, y, *, confidence: float = 0.95, warning: str | None = None) -> AgeFit:
    """Straight-line age model ``y = c + slope * age`` (OLS).

    Parameters
    ----------
    age : array_like of shape (n,)
        Years.
    y : array_like of shape (n,)
        R2* in s^-1.
    confidence : float, optional
        Level of the confidence intervals.
    warning : str, optional
        Why the linear model is used (kept on the fit).

    Returns
    -------
    AgeFit
        ``"linear"``; ``"none"`` with fewer than 3 points.
    """
    age, y = clean_pairs(age, y)
    rng = (float(age.min()), float(age.max())) if age.size else (np.nan, np.nan)
    if age.size < 3 or np.ptp(age) == 0:
        msg = f"only {age.size} usable controls (or one age): no age model"
        return AgeFit("none", {}, {}, {}, int(age.size), rng, msg if warning is None
                      else f"{warning}; {msg}")
    res = _st.linregress(age, y)
    dof = age.size - 2
    tq = _st.t.ppf(0.5 + confidence / 2, dof) if dof > 0 else np.nan
    params = {"c": float(res.intercept), "slope": float(res.slope)}
    se = {"c": float(res.intercept_stderr), "slope": float(res.stderr)}
    rss = float(np.sum((res.intercept + res.slope * age - y) ** 2))
    diag = {"rss": rss, "residual_sd": float(np.sqrt(rss / dof)) if dof > 0 else np.nan,
            "r2": _r2(y, rss), "converged": True, "slope_pvalue": float(res.pvalue)}
    return AgeFit("linear", params, se,
                  {k: (params[k] - tq * se[k], params[k] + tq * se[k]) for k in params},
                  int(age.size), rng, warning, diag)


def fit_saturation(age, y, *, min_n: int = 6, max_rel_se_b: float = 0.5,
                   confidence: float = 0.95, fallback: str = "linear",
                   warn: bool = True) -> AgeFit:
    """Fit ``y = a * (1 - exp(-b * age)) + c`` on controls, falling back when unidentifiable.

    Parameters
    ----------
    age : array_like of shape (n,)
        Controls' ages in years.
    y : array_like of shape (n,)
        Controls' R2* in s^-1 (NaN pairs dropped).
    min_n : int
        Fewest controls for the 3-parameter fit.
    max_rel_se_b : float
        Largest accepted ``se(b) / b``.
    confidence : float
    fallback : {"linear", "none"}
        What replaces an unidentifiable saturation fit.
    warn : bool
        Emit an :class:`AgeModelWarning` when falling back.

    Returns
    -------
    AgeFit
    """
    age, y = clean_pairs(age, y)
    problem = None
    if age.size < min_n:
        problem = f"{age.size} controls (< {min_n}) for the 3-parameter saturation fit"
    else:
        a0, b0, c0 = _grid_start(age, y)
        fit = fit_curve(saturation, age, y, [max(a0, 1e-6), b0, c0], jac=_saturation_jac,
                        bounds=([0.0, B_BOUNDS[0], -np.inf], [np.inf, B_BOUNDS[1], np.inf]),
                        names=("a", "b", "c"), confidence=confidence, tol=1e-12)
        problem = _identification_problem(fit, age, max_rel_se_b)
    if problem is not None:
        msg = f"saturation age model not identifiable: {problem}; using the {fallback} model"
        if warn:
            warnings.warn(msg, AgeModelWarning, stacklevel=2)
        if fallback == "linear":
            return fit_linear(age, y, confidence=confidence, warning=msg)
        return AgeFit("none", {}, {}, {}, int(age.size),
                      (float(age.min()), float(age.max())) if age.size else (np.nan, np.nan),
                      msg)
    names = fit.names
    b = float(fit.params[1])
    diag = {"rss": fit.rss, "residual_sd": fit.residual_sd, "r2": _r2(y, fit.rss),
            "converged": fit.converged, "dof": fit.dof, **fit.diagnostics,
            "saturation_reached": float(-np.expm1(-b * np.ptp(age)))}
    return AgeFit(
        "saturation",
        {k: float(v) for k, v in zip(names, fit.params, strict=True)},
        {k: float(v) for k, v in zip(names, fit.se, strict=True)},
        {k: (float(lo), float(hi)) for k, lo, hi in zip(names, fit.ci_low, fit.ci_high,
                                                        strict=True)},
        int(age.size), (float(age.min()), float(age.max())), None, diag)


def saturation_fit(age, y, method: str, params: dict, se: dict, ci: dict, rss: float,
                   dof: int, extra: dict, warning: str | None = None) -> AgeFit:
    """An :class:`AgeFit` of the saturation model from fitted parameters and their errors.

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        The controls' ages (years) and R2* (s^-1) the curve was fitted on (finite).
    method : str
        The fit's name (``AgeFit.method``).
    params, se : dict
        ``a``, ``b``, ``c`` (s^-1, 1/years, s^-1) and their standard errors.
    ci : dict of str -> (float, float)
        Confidence intervals.
    rss : float
        Residual sum of squares (s^-2).
    dof : int
        Residual degrees of freedom.
    extra : dict
        Further diagnostics (prior, weights, ...).
    warning : str, optional

    Returns
    -------
    AgeFit
    """
    b = params["b"]
    diag = {"rss": rss, "residual_sd": float(np.sqrt(rss / dof)) if dof > 0 else np.nan,
            "r2": _r2(y, rss), "converged": True, "dof": dof,
            "saturation_reached": float(-np.expm1(-b * np.ptp(age))), **extra}
    return AgeFit("saturation", params, se, ci, int(age.size),
                  (float(age.min()), float(age.max())), warning, diag, method)


def fixed_curve(a: float, b: float, c: float, age=(), method: str = "fixed") -> AgeFit:
    """A saturation curve with parameters handed in (no fit; zero standard errors).

    Parameters
    ----------
    a, b, c : float
        Amplitude (s^-1), rate (1/years), offset (s^-1).
    age : array_like, optional
        The controls' ages (years) the curve is used with (only for ``age_range``).
    method : str, optional
        Recorded method name.

    Returns
    -------
    AgeFit
        The curve as a ``"saturation"`` fit.
    """
    age = np.asarray(age, dtype=float)
    age = age[np.isfinite(age)]
    rng = (float(age.min()), float(age.max())) if age.size else (np.nan, np.nan)
    params = {"a": float(a), "b": float(b), "c": float(c)}
    return AgeFit("saturation", params, {k: 0.0 for k in params},
                  {k: (v, v) for k, v in params.items()}, int(age.size), rng, None,
                  {"converged": True}, method)


def fit_seed(age, y, min_n: int, max_rel_se_b: float, confidence: float) -> AgeFit:
    """The seed's bounded least-squares curve, kept even when ill-determined (with a warning).

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        Controls' ages (years) and R2* (s^-1), finite, n >= 3 with two or more ages.
    min_n : int
        Fewer controls flag the fit as ill-determined.
    max_rel_se_b : float
        A larger ``se(b) / b`` flags the fit as ill-determined.
    confidence : float

    Returns
    -------
    AgeFit
        ``method == "seed"``; ``warning`` says why it is ill-determined (an
        :class:`AgeModelWarning` is emitted too); ``model == "none"`` when the solver gave no
        finite parameters.
    """
    a0, b0, c0 = _grid_start(age, y)
    fit = fit_curve(saturation, age, y, [max(a0, 1e-6), b0, c0], jac=_saturation_jac,
                    bounds=([0.0, B_BOUNDS[0], -np.inf], [np.inf, B_BOUNDS[1], np.inf]),
                    names=("a", "b", "c"), confidence=confidence, tol=1e-12)
    if not np.all(np.isfinite(fit.params)):
        return AgeFit("none", {}, {}, {}, int(age.size), (float(age.min()), float(age.max())),
                      "the seed's saturation fit gave no finite parameters; region excluded",
                      method="seed")
    problem = _identification_problem(fit, age, max_rel_se_b)
    if age.size < min_n:
        problem = f"{age.size} controls (< {min_n}) for 3 parameters"
    warning = None
    if problem is not None:
        warning = (f"seed saturation fit ill-determined ({problem}); used as fitted "
                   "(age model 'seed' has no fallback)")
        warnings.warn(warning, AgeModelWarning, stacklevel=3)
    p = dict(zip(fit.names, (float(v) for v in fit.params), strict=True))
    return saturation_fit(
        age, y, "seed", p, dict(zip(fit.names, (float(v) for v in fit.se), strict=True)),
        {k: (float(lo), float(hi)) for k, lo, hi in zip(fit.names, fit.ci_low, fit.ci_high,
                                                        strict=True)},
        fit.rss, fit.dof, {"jacobian_condition": fit.diagnostics.get("jacobian_condition")},
        warning)
