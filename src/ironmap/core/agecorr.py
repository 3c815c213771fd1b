"""Age correction of regional R2*: a saturation curve fitted on healthy controls.

Model (the seed study's, after Hallgren and Sourander's iron accumulation curve)::

    R2*(age) = a * (1 - exp(-b * age)) + c

with ``a`` (s^-1) the R2* gained between birth and saturation, ``b`` (1/years) the rate and
``c`` (s^-1) the value at age 0. It is fitted on the controls of each region by bounded least
squares (:func:`ironmap.core.nlfit.fit_curve`; ``a >= 0``, ``1e-4 <= b <= 2`` per year,
``c`` free), started from the best point of a grid over ``b`` on which ``a`` and ``c`` are
solved linearly. Every subject is then moved along the curve to the reference age::

    R2*_adj = R2* - f(age) + f(reference_age)

**Age models** (:func:`fit_age_model`, ``--age-model``): ``auto`` (default; the rate ``b``
made identifiable by a log-normal prior, :mod:`ironmap.core.agemodel`), ``seed`` (the fit
below without fallback, a warning when ill-determined), ``prior`` (``b`` fixed at the prior
median), ``linear``, ``none``, or a fixed curve handed in. :func:`correct_region` applies one
to a region, with a bootstrap of the controls for the corrections' SD, and names
extrapolated participants; fewer than 3 controls or controls of one age exclude the region.

**Fallback** (:func:`fit_saturation`, the earlier default, kept for comparison). When the
controls' age range does not determine the curvature (fewer than
``min_n`` controls, no convergence, ``a`` or ``b`` on a bound, a singular Jacobian, or a
relative standard error of ``b`` above ``max_rel_se_b``, default 0.5: roughly, the 95%
confidence interval of ``b`` must exclude zero, i.e. the curvature must be significant) the
saturation fit is replaced by a straight line ``R2* = c + slope * age`` (ordinary least
squares) and a warning says why. The straight line is only a local approximation of the
curve, so it is never extrapolated: ages (and a reference age) outside the controls' age
range are held at the nearest end of that range when adjusting. With fewer than 3 controls
there is no age model (``model == "none"``) and adjusted values are NaN.
Lesion R2* is never age-corrected (WM lesion R2* does not follow the deep-GM iron curve).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as _st

from ironmap.core import agemodel
from ironmap.core.agemodel import B_PRIOR
from ironmap.core.nlfit import fit_curve
from ironmap.core.stats import finite_pairs

__all__ = ["AgeFit", "AgeModelWarning", "fit_saturation", "fit_linear", "saturation",
           "fit_age_model", "fixed_curve", "AGE_MODELS", "MIN_CONTROLS", "B_BOUNDS",
           "B_PRIOR", "AGE_LIMITS", "age_correct", "correct_region", "RegionCorrection"]

#: Bounds of the rate ``b`` in 1/years.
B_BOUNDS = (1e-4, 2.0)
#: Age models of ``--age-model`` (``auto`` is the default).
AGE_MODELS = ("auto", "seed", "prior", "linear", "none")
#: Fewest controls (with two or more distinct ages) that carry any age curve.
MIN_CONTROLS = 3
#: Plausible ages in years; others are not used and not corrected.
AGE_LIMITS = (0.0, 120.0)


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
                    "b_prior_median", "b_prior_sd_log", "b_sd_ratio"):
            row[key] = self.diagnostics.get(key, np.nan)
        row["warning"] = self.warning or ""
        return row


def _clean_pairs(age, y) -> tuple[np.ndarray, np.ndarray]:
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
    age, y = _clean_pairs(age, y)
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
    age, y = _clean_pairs(age, y)
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


def _control_problem(age: np.ndarray) -> str | None:
    """Why no age curve can be fitted on these controls' ages (None when one can)."""
    if age.size < MIN_CONTROLS:
        return (f"only {age.size} controls with an age and an R2* value (at least "
                f"{MIN_CONTROLS} needed)")
    if np.ptp(age) == 0:
        return f"all {age.size} controls are aged {age[0]:g} years (one age: no age curve)"
    return None


def _saturation_fit(age, y, method: str, params: dict, se: dict, ci: dict, rss: float,
                    dof: int, extra: dict, warning: str | None = None) -> AgeFit:
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


def _fit_seed(age, y, min_n: int, max_rel_se_b: float, confidence: float) -> AgeFit:
    """The seed's bounded least-squares curve, kept even when ill-determined (with a warning)."""
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
    return _saturation_fit(
        age, y, "seed", p, dict(zip(fit.names, (float(v) for v in fit.se), strict=True)),
        {k: (float(lo), float(hi)) for k, lo, hi in zip(fit.names, fit.ci_low, fit.ci_high,
                                                        strict=True)},
        fit.rss, fit.dof, {"jacobian_condition": fit.diagnostics.get("jacobian_condition")},
        warning)


def fit_age_model(age, y, method: str = "auto", *, fixed: dict | None = None,
                  prior: tuple[float, float] = B_PRIOR, min_n: int = 6,
                  max_rel_se_b: float = 0.5, confidence: float = 0.95) -> AgeFit:
    """Fit one region's age model on its controls.

    Parameters
    ----------
    age, y : array_like of shape (n,)
        Controls' ages (years) and R2* (s^-1); NaN pairs dropped.
    method : {"auto", "seed", "prior", "linear", "none", "fallback"}
        ``auto``: saturation curve, MAP under the log-normal prior on ``b``
        (:func:`ironmap.core.agemodel.fit_penalised`); ``seed``: the seed's bounded least
        squares without fallback (an :class:`AgeModelWarning` when ill-determined);
        ``prior``: ``b`` fixed at the prior median, ``a`` and ``c`` fitted; ``linear``:
        straight line; ``none``: no age correction; ``fallback``: :func:`fit_saturation`
        (saturation, else a straight line).
    fixed : dict, optional
        ``{"a": .., "b": .., "c": ..}``: use this curve (``method`` then reads ``fixed``).
    prior : (mu, tau)
        Normal prior on ``log b`` (``b`` in 1/years).
    min_n, max_rel_se_b : int, float
        When the ``seed`` (and ``fallback``) fits count as ill-determined.
    confidence : float

    Returns
    -------
    AgeFit
        ``model == "none"`` with the reason in ``warning`` when the controls cannot carry a
        curve (fewer than 3, or all of one age); ``method`` names the fit used.
    """
    if method not in (*AGE_MODELS, "fallback"):
        raise ValueError(f"unknown age model {method!r}; choose from {', '.join(AGE_MODELS)}")
    age, y = _clean_pairs(age, y)
    if fixed is not None:
        return fixed_curve(fixed["a"], fixed["b"], fixed["c"], age)
    rng = (float(age.min()), float(age.max())) if age.size else (np.nan, np.nan)
    if method == "none":
        return AgeFit("none", {}, {}, {}, int(age.size), rng, None, method="none")
    problem = _control_problem(age)
    if problem is not None:
        return AgeFit("none", {}, {}, {}, int(age.size), rng,
                      f"no age model: {problem}; region excluded from age-corrected analyses",
                      method=method)
    if method == "linear":
        return replace(fit_linear(age, y, confidence=confidence), method="linear")
    if method == "fallback":
        return fit_saturation(age, y, min_n=min_n, max_rel_se_b=max_rel_se_b,
                              confidence=confidence)
    if method == "seed":
        return _fit_seed(age, y, min_n, max_rel_se_b, confidence)
    if method == "prior":
        res = agemodel.fit_fixed_rate(age, y, float(np.exp(prior[0])), confidence)
    else:
        res = agemodel.fit_penalised(age, y, prior, confidence)
    extra = {"b_prior_median": float(np.exp(prior[0])), "b_prior_sd_log": prior[1],
             "b_sd_ratio": res["b_sd_ratio"]}
    warning = ("a = 0: R2* does not rise with age among the controls (flat curve)"
               if res["a_at_bound"] else None)
    return _saturation_fit(age, y, method, res["params"], res["se"], res["ci"], res["rss"],
                           res["dof"], extra, warning)


def _site_adjust(values, ages, sites, controls, pooled: AgeFit, reference_age: float,
                 fit_kwargs: dict, messages: list, label: str) -> tuple[np.ndarray, dict]:
    """Per-site curves; each site's subjects are mapped onto the pooled curve at ``ref``."""
    out = np.full(values.shape, np.nan)
    fits: dict = {}
    target = float(pooled.predict(reference_age))
    for site in sorted(set(sites.tolist())):
        in_site = sites == site
        ctl = in_site & controls
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AgeModelWarning)
            fit = fit_age_model(ages[ctl], values[ctl], **fit_kwargs)
        messages += [f"{label}, {site}: {w.message}" for w in caught]
        fits[site] = fit
        if fit.model != "none":
            out[in_site] = values[in_site] - fit.predict(ages[in_site]) + target
            continue
        resid = values[ctl] - pooled.predict(ages[ctl])
        resid = resid[np.isfinite(resid)]
        if resid.size == 0:
            messages.append(f"{label}, {site}: no controls with values at this site; "
                            "its subjects get no age-corrected value")
            continue
        messages.append(f"{label}, {site}: {resid.size} control(s); site offset on the "
                        "pooled curve used instead of a site curve")
        out[in_site] = (values[in_site] - pooled.predict(ages[in_site]) - resid.mean()
                        + target)
    return out, fits


@dataclass(frozen=True)
class RegionCorrection:
    """Age correction of one region (:func:`correct_region`).

    Attributes
    ----------
    adjusted, sd : ndarray of shape (n,)
        Age-corrected R2* and the bootstrap SD of its correction ``f(ref) - f(age)`` (s^-1);
        NaN where not corrected (invalid age, region excluded) or not bootstrapped.
    fit : AgeFit
        The pooled curve.
    site_fits : dict of site -> AgeFit
    messages : list of str
    band : dict or None
        ``age`` (years), ``low``, ``high`` (s^-1): pointwise 95 % bootstrap band of the curve.
    extrapolation : dict
        ``n`` participants outside the controls' age range, ``age_min``/``age_max`` of them,
        ``how`` they were corrected, ``max_shift`` (s^-1) beyond the nearest control age.
    """

    adjusted: np.ndarray
    sd: np.ndarray
    fit: AgeFit
    site_fits: dict
    messages: list
    band: dict | None = None
    extrapolation: dict = field(default_factory=dict)


def _extrapolation(fit: AgeFit, ages: np.ndarray, reference_age: float, label: str,
                   messages: list) -> dict:
    lo, hi = fit.age_range
    outside = np.isfinite(ages) & ((ages < lo) | (ages > hi))
    info = {"n": int(outside.sum()), "how": "", "max_shift": 0.0, "age_min": np.nan,
            "age_max": np.nan}
    if fit.model == "none" or not (outside.any() or not lo <= reference_age <= hi):
        return info
    held = fit.model == "linear"
    near = np.clip(ages[outside], lo, hi)
    shift = 0.0 if held else float(np.max(np.abs(fit.predict(ages[outside])
                                                 - fit.predict(near)), initial=0.0))
    how = ("held at the nearest end of the controls' age range (a straight line is not "
           "extrapolated)" if held else "along the saturation curve, bounded by its plateau "
           f"c + a = {fit.c + fit.a:.1f} s^-1")
    info.update(n=int(outside.sum()), how=how, max_shift=shift)
    if outside.any():
        info.update(age_min=float(ages[outside].min()), age_max=float(ages[outside].max()))
        messages.append(
            f"{label}: {info['n']} participant(s) aged {info['age_min']:g}-"
            f"{info['age_max']:g} y outside the controls' {lo:g}-{hi:g} y: corrected "
            f"{how}" + ("" if held else f"; the curve moves by at most {shift:.2f} s^-1 "
                        "beyond the nearest control age"))
    if not lo <= reference_age <= hi:
        messages.append(f"{label}: reference age {reference_age:g} y outside the controls' "
                        f"{lo:g}-{hi:g} y: {how}")
    return info


def _bootstrap(fit: AgeFit, age_c, y_c, ages, reference_age, n_boot, seed, prior,
               band_ages) -> tuple[np.ndarray, dict | None]:
    """Bootstrap SD of each subject's correction and the curve's 95 % band."""
    sd = np.full(ages.shape, np.nan)
    if n_boot < 2 or fit.model == "none" or fit.method not in AGE_MODELS:
        if fit.method == "fixed":
            sd[np.isfinite(ages)] = 0.0
        return sd, None
    age_c, y_c = _clean_pairs(age_c, y_c)
    ok = np.isfinite(ages)
    grid = np.asarray(band_ages, dtype=float)
    evals = np.concatenate([ages[ok], [reference_age], grid])
    curves = agemodel.bootstrap_curves(age_c, y_c, evals, fit.method, n_boot, seed, prior,
                                       fit.age_range)
    k = int(ok.sum())
    sd[ok] = np.std(curves[:, :k] - curves[:, [k]], axis=0, ddof=1)
    low, high = np.percentile(curves[:, k + 1:], [2.5, 97.5], axis=0)
    return sd, {"age": grid.tolist(), "low": low.tolist(), "high": high.tolist()}


def correct_region(values, ages, controls, reference_age: float, *, method: str = "auto",
                   fixed: dict | None = None, sites=None, per_site: bool = False,
                   label: str = "region", n_boot: int = 200, seed: int = 0,
                   prior: tuple[float, float] = B_PRIOR, band_ages=None,
                   **fit_kwargs) -> RegionCorrection:
    """Fit the age model on the controls of one region and adjust every subject.

    Parameters
    ----------
    values : array_like of shape (n,)
        R2* (s^-1) of all subjects in one region (NaN allowed).
    ages : array_like of shape (n,)
        Years; ages outside :data:`AGE_LIMITS` are not used and not corrected (named in
        ``messages``).
    controls : array_like of bool, shape (n,)
        True for healthy controls (the only subjects the curve is fitted on).
    reference_age : float
        Years.
    method, fixed, prior, **fit_kwargs
        See :func:`fit_age_model`.
    sites, per_site
        Per-site curves mapped onto the pooled curve (see :func:`age_correct`); no bootstrap.
    label : str
        Region name used in messages.
    n_boot, seed : int
        Bootstrap resamples of the controls (0: none) and their seed.
    band_ages : array_like, optional
        Ages (years) of the bootstrap band; default 60 points over all subjects' ages.

    Returns
    -------
    RegionCorrection
    """
    values = np.asarray(values, dtype=float)
    ages = np.array(ages, dtype=float)
    controls = np.asarray(controls, dtype=bool)
    messages: list[str] = []
    bad = np.isfinite(ages) & ((ages < AGE_LIMITS[0]) | (ages > AGE_LIMITS[1]))
    if bad.any():
        messages.append(f"{label}: {int(bad.sum())} age(s) outside {AGE_LIMITS[0]:.0f}-"
                        f"{AGE_LIMITS[1]:.0f} years ({', '.join(f'{a:g}' for a in ages[bad])})"
                        " not used and not corrected")
        ages[bad] = np.nan
    kwargs = {"method": method, "fixed": fixed, "prior": prior, **fit_kwargs}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgeModelWarning)
        pooled = fit_age_model(ages[controls], values[controls], **kwargs)
    messages += [f"{label}: {w.message}" for w in caught]
    nan = np.full(values.shape, np.nan)
    if pooled.model == "none":
        if pooled.method == "none" and pooled.warning is None:
            adjusted = np.where(np.isfinite(ages), values, np.nan)
            return RegionCorrection(adjusted, np.where(np.isfinite(adjusted), 0.0, np.nan),
                                    pooled, {}, messages)
        messages.append(f"{label}: {pooled.warning}")
        return RegionCorrection(nan, nan.copy(), pooled, {}, messages)
    extra = _extrapolation(pooled, ages, reference_age, label, messages)
    if per_site:
        if sites is None:
            raise ValueError("per_site age correction needs site labels")
        adjusted, site_fits = _site_adjust(values, ages, np.asarray(sites, dtype=object),
                                           controls, pooled, reference_age, kwargs,
                                           messages, label)
        return RegionCorrection(adjusted, nan.copy(), pooled, site_fits, messages,
                                extrapolation=extra)
    if band_ages is None:
        finite = ages[np.isfinite(ages)]
        band_ages = np.linspace(finite.min(), finite.max(), 60)
    sd, band = _bootstrap(pooled, ages[controls], values[controls], ages, reference_age,
                          n_boot, seed, prior, band_ages)
    return RegionCorrection(pooled.adjust(values, ages, reference_age), sd, pooled, {},
                            messages, band, extra)


def age_correct(values, ages, controls, reference_age: float, *, sites=None,
                per_site: bool = False, label: str = "region", method: str = "auto",
                **fit_kwargs) -> tuple[np.ndarray, AgeFit, dict, list[str]]:
    """Fit the age model on the controls of one region and adjust every subject.

    :func:`correct_region` without the bootstrap, returning a tuple.

    Parameters
    ----------
    values : array_like of shape (n,)
        R2* (s^-1) of all subjects in one region (NaN allowed).
    ages : array_like of shape (n,)
        Years.
    controls : array_like of bool, shape (n,)
        True for healthy controls (the only subjects the curve is fitted on).
    reference_age : float
        Years.
    sites : array_like of shape (n,), optional
        Site labels, needed with ``per_site``.
    per_site : bool
        Fit one curve per site on that site's controls and map every subject onto the pooled
        curve at ``reference_age`` (removes additive site offsets). A site with fewer than 3
        controls is corrected with the pooled curve plus the mean residual of its controls.
    label : str
        Region name used in messages.
    method : str
        Age model (:func:`fit_age_model`).
    **fit_kwargs
        Passed to :func:`fit_age_model`.

    Returns
    -------
    adjusted : ndarray of shape (n,)
    pooled : AgeFit
    site_fits : dict of site -> AgeFit (empty unless ``per_site``)
    messages : list of str
        Warnings (ill-determined fits, exclusions, extrapolation, sites without controls)
        naming the region.
    """
    res = correct_region(values, ages, controls, reference_age, method=method, sites=sites,
                         per_site=per_site, label=label, n_boot=0, **fit_kwargs)
    return res.adjusted, res.fit, res.site_fits, res.messages
