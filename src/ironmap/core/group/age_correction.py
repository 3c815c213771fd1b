"""Age correction of regional R2*: a saturation curve fitted on healthy controls.

Model (the seed study's, after Hallgren and Sourander's iron accumulation curve)::

    R2*(age) = a * (1 - exp(-b * age)) + c

with ``a`` (s^-1) the R2* gained between birth and saturation, ``b`` (1/years) the rate and
``c`` (s^-1) the value at age 0. Every subject is moved along the curve fitted on the controls
to the reference age::

    R2*_adj = R2* - f(age) + f(reference_age)

**Age models** (:func:`fit_age_model`, ``--age-model``): ``auto`` (default; the rate ``b``
made identifiable by a log-normal prior, :mod:`ironmap.core.group.age_fits`), ``pooled`` (rate and
amplitude partially pooled across regions, :mod:`ironmap.core.group.age_pooling`), ``seed``
(bounded least squares without fallback, a warning when ill-determined), ``prior`` (``b`` fixed at
the prior median), ``linear``, ``none``, or a fixed curve handed in. :func:`correct_region`
applies one to a region, with a bootstrap of the controls for the corrections' SD, and names
extrapolated participants; fewer than 3 controls or controls of one age exclude the region.
The :class:`AgeFit` record, the least-squares fits and the earlier default with its linear
fallback (:func:`fit_saturation`) live in :mod:`ironmap.core.group.age_least_squares` and are
re-exported here. Lesion R2* is never age-corrected (WM lesion R2* does not follow the deep-GM iron
curve).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ironmap.core.group import age_fits, age_pooling
from ironmap.core.group.age_fits import B_PRIOR
from ironmap.core.group.age_least_squares import (
    B_BOUNDS,
    AgeFit,
    AgeModelWarning,
    clean_pairs,
    fit_linear,
    fit_saturation,
    fit_seed,
    fixed_curve,
    saturation,
    saturation_fit,
)

__all__ = ["AgeFit", "AgeModelWarning", "fit_saturation", "fit_linear", "saturation",
           "fit_age_model", "fixed_curve", "AGE_MODELS", "MIN_CONTROLS", "B_BOUNDS",
           "B_PRIOR", "AGE_LIMITS", "age_correct", "correct_region", "RegionCorrection"]

#: Age models of ``--age-model`` (``auto`` is the default).
AGE_MODELS = ("auto", "seed", "prior", "linear", "none", "pooled")
#: Fewest controls (with two or more distinct ages) that carry any age curve.
MIN_CONTROLS = 3
#: Plausible ages in years; others are not used and not corrected.
AGE_LIMITS = (0.0, 120.0)


def _control_problem(age: np.ndarray) -> str | None:
    """Why no age curve can be fitted on these controls' ages (None when one can)."""
    if age.size < MIN_CONTROLS:
        return (f"only {age.size} controls with an age and an R2* value (at least "
                f"{MIN_CONTROLS} needed)")
    if np.ptp(age) == 0:
        return f"all {age.size} controls are aged {age[0]:g} years (one age: no age curve)"
    return None


def fit_age_model(age, y, method: str = "auto", *, fixed: dict | None = None,
                  prior: tuple[float, float] = B_PRIOR, min_n: int = 6,
                  max_rel_se_b: float = 0.5, confidence: float = 0.95,
                  pool: age_pooling.PoolPrior | None = None) -> AgeFit:
    """Fit one region's age model on its controls.

    Parameters
    ----------
    age, y : array_like of shape (n,)
        Controls' ages (years) and R2* (s^-1); NaN pairs dropped.
    method : {"auto", "seed", "prior", "linear", "none", "fallback"}
        ``auto``: saturation curve, MAP under the log-normal prior on ``b``
        (:func:`ironmap.core.group.age_fits.fit_penalised`); ``seed``: the seed's bounded least
        squares without fallback (an :class:`AgeModelWarning` when ill-determined);
        ``prior``: ``b`` fixed at the prior median, ``a`` and ``c`` fitted; ``linear``:
        straight line; ``none``: no age correction; ``fallback``: :func:`fit_saturation`
        (saturation, else a straight line); ``pooled``: rate and amplitude partially pooled
        across regions (:mod:`ironmap.core.group.age_pooling`; needs ``pool``).
    fixed : dict, optional
        ``{"a": .., "b": .., "c": ..}``: use this curve (``method`` then reads ``fixed``).
    prior : (mu, tau)
        Normal prior on ``log b`` (``b`` in 1/years).
    min_n, max_rel_se_b : int, float
        When the ``seed`` (and ``fallback``) fits count as ill-determined.
    confidence : float
    pool : PoolPrior, optional
        The regions' common distributions of ``log b`` and ``a``
        (:func:`ironmap.core.group.age_pooling.pool_prior`), for ``method == "pooled"``.

    Returns
    -------
    AgeFit
        ``model == "none"`` with the reason in ``warning`` when the controls cannot carry a
        curve (fewer than 3, or all of one age); ``method`` names the fit used.
    """
    if method not in (*AGE_MODELS, "fallback"):
        raise ValueError(f"unknown age model {method!r}; choose from {', '.join(AGE_MODELS)}")
    age, y = clean_pairs(age, y)
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
        return fit_seed(age, y, min_n, max_rel_se_b, confidence)
    if method == "pooled":
        if pool is None:
            return AgeFit("none", {}, {}, {}, int(age.size), rng,
                          "no pooled prior (fewer than 2 regions with 4 or more controls to "
                          "pool); region excluded from age-corrected analyses", method=method)
        prior = pool.b_prior
        res = age_pooling.fit_pooled(age, y, pool, confidence)
        res["extra"] = {"a_prior_mean": pool.a_prior[0], "a_prior_sd": pool.a_prior[1]}
    elif method == "prior":
        res = age_fits.fit_fixed_rate(age, y, float(np.exp(prior[0])), confidence)
    else:
        res = age_fits.fit_penalised(age, y, prior, confidence)
    extra = {"b_prior_median": float(np.exp(prior[0])), "b_prior_sd_log": prior[1],
             "b_sd_ratio": res["b_sd_ratio"], **res.get("extra", {})}
    warning = ("a = 0: R2* does not rise with age among the controls (flat curve)"
               if res["a_at_bound"] else None)
    return saturation_fit(age, y, method, res["params"], res["se"], res["ci"], res["rss"],
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
    """Bootstrap SD of each subject's correction and the curve's 95 % band.

    For ``pooled`` the spread is the unpooled ``auto`` fit's, moved onto the pooled curve: a
    bootstrap with the pooled prior held fixed misses the shrinkage bias and covered the true
    error far less often than 95 % (``docs/statistics.md``).
    """
    sd = np.full(ages.shape, np.nan)
    if n_boot < 2 or fit.model == "none" or fit.method not in AGE_MODELS:
        if fit.method == "fixed":
            sd[np.isfinite(ages)] = 0.0
        return sd, None
    age_c, y_c = clean_pairs(age_c, y_c)
    ok = np.isfinite(ages)
    grid = np.asarray(band_ages, dtype=float)
    evals = np.concatenate([ages[ok], [reference_age], grid])
    method = "auto" if fit.method == "pooled" else fit.method
    curves = age_fits.bootstrap_curves(age_c, y_c, evals, method, n_boot, seed, prior,
                                       fit.age_range)
    if fit.method == "pooled":
        p = age_fits.fit_penalised(age_c, y_c, prior)["params"]
        curves += fit.predict(evals) - saturation(evals, p["a"], p["b"], p["c"])
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
