"""Identifiable fits of the seed's age curve ``R2* = a (1 - exp(-b age)) + c`` and their bootstrap.

With controls aged 18-57 years the rate ``b`` is barely determined by the data: the curve is
close to a straight line over that range for small ``b`` and close to flat for large ``b``.
Two fits make ``b`` identifiable:

``fit_penalised`` (age model ``auto``)
    maximum a posteriori estimate under a log-normal prior on ``b``: it minimises the profile
    negative log-likelihood (``a`` and ``c`` solved by least squares for each ``b``, the residual
    variance profiled out) plus the prior's penalty,

        n/2 * log(RSS(b)) + (log b - mu)^2 / (2 tau^2),

    with ``a >= 0``. When the controls determine ``b`` the penalty is negligible and the
    estimate is the seed's least-squares curve. Uncertainty: Laplace approximation in
    ``(a, log b, c)``; ``b_sd_ratio`` = posterior SD / prior SD of ``log b`` says how much came
    from the prior (1: the prior alone; near 0: the data).

``fit_fixed_rate`` (age model ``prior``)
    ``b`` fixed at the prior's median, ``a`` and ``c`` by linear least squares.

:func:`profile_fit` is the vectorised engine (many samples at once, a grid over ``log b``
refined by parabolic interpolation), used for the point estimate's start and for the bootstrap
over controls (:func:`bootstrap_curves`).

The prior (:data:`B_PRIOR`) was set from the literature before any benchmark was run and was
not tuned on simulated data; see ``docs/statistics.md`` for its sources.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import stats as _st

__all__ = ["B_PRIOR", "B_GRID", "profile_fit", "fit_penalised", "fit_fixed_rate",
           "bootstrap_curves", "resample_weights", "saturation_design"]

#: Log-normal prior on the rate ``b`` (1/years): median and SD of ``log b``. Median 0.0665/y
#: puts 90 % of the rise at ln(10)/b = 35 years (a plateau "in the fourth decade", as the seed
#: study states after Hallgren & Sourander 1958); SD 0.43 makes the central 95 % of the prior
#: cover 90 %-rise ages of 15-80 years (b = 0.029-0.154/y), i.e. plateaus from the late teens
#: (pallidum) to the seventh decade (caudate, MRI lifespan studies).
B_PRIOR: tuple[float, float] = (float(np.log(np.log(10.0) / 34.64)), 0.43)

#: Grid over ``b`` (1/years) for the profile; refined by parabolic interpolation in ``log b``.
B_GRID: np.ndarray = np.geomspace(1e-3, 2.0, 161)


def saturation_design(age, b: float) -> np.ndarray:
    """``1 - exp(-b * age)`` (the column multiplying ``a``).

    Parameters
    ----------
    age : array_like
        Years, any shape.
    b : float
        Rate in 1/years.

    Returns
    -------
    ndarray
        Shape of ``age``.
    """
    return -np.expm1(-b * np.asarray(age, dtype=float))


def _linear_ls(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted ``y = a x + c`` with ``a >= 0`` along the last axis; returns (a, c, rss)."""
    sw = w.sum(-1)
    mx = (w * x).sum(-1) / sw
    my = (w * y).sum(-1) / sw
    dx, dy = x - mx[..., None], y - my[..., None]
    sxx = (w * dx * dx).sum(-1)
    sxy = (w * dx * dy).sum(-1)
    syy = (w * dy * dy).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(sxx > 0, sxy / sxx, 0.0)
    a = np.maximum(a, 0.0)
    rss = np.maximum(syy - 2 * a * sxy + a * a * sxx, 0.0)
    return a, my - a * mx, rss


def _penalty(log_b, prior: tuple[float, float] | None):
    if prior is None:
        return np.zeros_like(log_b)
    mu, tau = prior
    return (log_b - mu) ** 2 / (2 * tau**2)


def profile_fit(age: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                prior: tuple[float, float] | None = B_PRIOR,
                grid: np.ndarray = B_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised (penalised) profile fit of ``a (1 - exp(-b age)) + c``.

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        Controls' ages (years) and R2* (s^-1), finite.
    weights : ndarray of shape (m, n), optional
        Case weights of ``m`` samples (bootstrap counts); default one sample of unit weights.
    prior : (mu, tau) or None
        Normal prior on ``log b``; None = unpenalised least squares (the seed's fit).
    grid : ndarray
        Values of ``b`` (1/years) searched; the optimum is refined between grid neighbours.

    Returns
    -------
    a, b, c : ndarray of shape (m,)
        ``a`` in s^-1, ``b`` in 1/years, ``c`` in s^-1.
    """
    w = np.ones((1, age.size)) if weights is None else np.asarray(weights, dtype=float)
    n_eff = w.sum(-1)
    log_grid = np.log(grid)
    obj = np.empty((grid.size, w.shape[0]))
    for k, b in enumerate(grid):
        _, _, rss = _linear_ls(saturation_design(age, b)[None, :], y[None, :], w)
        obj[k] = 0.5 * n_eff * np.log(np.maximum(rss, 1e-300)) + _penalty(log_grid[k], prior)
    k = np.clip(np.argmin(obj, axis=0), 1, grid.size - 2)
    cols = np.arange(w.shape[0])
    f0, f1, f2 = obj[k - 1, cols], obj[k, cols], obj[k + 1, cols]
    h = log_grid[1] - log_grid[0]
    curv = f0 - 2 * f1 + f2
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(curv > 0, 0.5 * h * (f0 - f2) / curv, 0.0)
    log_b = log_grid[k] + np.clip(step, -h, h)
    edge = np.argmin(obj, axis=0)
    log_b = np.where(edge == 0, log_grid[0], np.where(edge == grid.size - 1, log_grid[-1],
                                                      log_b))
    b = np.exp(log_b)
    x = saturation_design(age[None, :], b[:, None])
    a, c, _ = _linear_ls(x, np.broadcast_to(y, x.shape), w)
    return a, b, c


def _objective(log_b: float, age, y, prior) -> float:
    _, _, rss = _linear_ls(saturation_design(age, np.exp(log_b))[None], y[None],
                           np.ones((1, age.size)))
    return float(0.5 * age.size * np.log(max(rss[0], 1e-300)) + _penalty(log_b, prior))


def _laplace(age, y, a, b, c, prior, dof: int,
             a_sd: float | None = None) -> tuple[np.ndarray, float]:
    """Covariance of (a, log b, c) at the optimum and the residual variance.

    ``a_sd`` is the SD of a normal prior on ``a`` (s^-1), or None for no prior on ``a``.
    """
    e = np.exp(-b * age)
    resid = y - (a * (1 - e) + c)
    s2 = float(resid @ resid) / max(dof, 1)
    jac = np.column_stack([1 - e, a * b * age * e, np.ones_like(age)])
    h = jac.T @ jac / max(s2, 1e-300)
    if prior is not None:
        h[1, 1] += 1.0 / prior[1] ** 2
    if a_sd is not None:
        h[0, 0] += 1.0 / a_sd**2
    return np.linalg.pinv(h), s2


def fit_penalised(age: np.ndarray, y: np.ndarray, prior: tuple[float, float] = B_PRIOR,
                  confidence: float = 0.95) -> dict:
    """MAP fit under the log-normal prior on ``b`` (see the module docstring).

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        Controls' ages (years) and R2* (s^-1), finite, n >= 3 with two or more distinct ages.
    prior : (mu, tau)
        Normal prior on ``log b`` (``b`` in 1/years).
    confidence : float

    Returns
    -------
    dict
        ``params``, ``se``, ``ci`` (dicts over ``a``, ``b``, ``c``), ``rss``, ``dof``,
        ``b_sd_ratio`` (posterior / prior SD of ``log b``), ``a_at_bound``.
    """
    _, b0, _ = profile_fit(age, y, prior=prior)
    lo, hi = np.log(B_GRID[0]), np.log(B_GRID[-1])
    step = np.log(B_GRID[1] / B_GRID[0])
    start = float(np.log(b0[0]))
    res = optimize.minimize_scalar(_objective, args=(age, y, prior), method="bounded",
                                   bounds=(max(lo, start - 2 * step), min(hi, start + 2 * step)),
                                   options={"xatol": 1e-9})
    log_b = float(res.x) if res.fun <= _objective(start, age, y, prior) else start
    b = float(np.exp(log_b))
    a, c, rss = (float(v[0]) for v in _linear_ls(saturation_design(age, b)[None], y[None],
                                                  np.ones((1, age.size))))
    dof = age.size - 3
    cov, _ = _laplace(age, y, a, b, c, prior, dof)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    z = _st.norm.ppf(0.5 + confidence / 2)
    se_b = b * sd[1]
    return {"params": {"a": a, "b": b, "c": c},
            "se": {"a": float(sd[0]), "b": float(se_b), "c": float(sd[2])},
            "ci": {"a": (a - z * sd[0], a + z * sd[0]),
                   "b": (b * float(np.exp(-z * sd[1])), b * float(np.exp(z * sd[1]))),
                   "c": (c - z * sd[2], c + z * sd[2])},
            "rss": rss, "dof": dof, "b_sd_ratio": float(sd[1] / prior[1]),
            "a_at_bound": a <= 0.0}


def fit_fixed_rate(age: np.ndarray, y: np.ndarray, b: float, confidence: float = 0.95) -> dict:
    """``a`` and ``c`` by least squares with ``b`` fixed (1/years).

    Parameters
    ----------
    age : ndarray of shape (n,)
        Years.
    y : ndarray of shape (n,)
        R2* in s^-1.
    b : float
        The fixed rate (1/years).
    confidence : float, optional
        Level of the confidence intervals.

    Returns
    -------
    dict
        Same keys as :func:`fit_penalised` (``b_sd_ratio`` = 1: the rate is the prior's alone).
    """
    x = saturation_design(age, b)
    a, c, rss = (float(v[0]) for v in _linear_ls(x[None], y[None], np.ones((1, age.size))))
    dof = age.size - 2
    s2 = rss / max(dof, 1)
    sxx = float(np.sum((x - x.mean()) ** 2))
    se_a = float(np.sqrt(s2 / sxx)) if sxx > 0 else np.nan
    se_c = float(np.sqrt(s2 * (1 / age.size + x.mean() ** 2 / sxx))) if sxx > 0 else np.nan
    tq = _st.t.ppf(0.5 + confidence / 2, max(dof, 1))
    return {"params": {"a": a, "b": float(b), "c": c},
            "se": {"a": se_a, "b": 0.0, "c": se_c},
            "ci": {"a": (a - tq * se_a, a + tq * se_a), "b": (float(b), float(b)),
                   "c": (c - tq * se_c, c + tq * se_c)},
            "rss": rss, "dof": dof, "b_sd_ratio": 1.0, "a_at_bound": a <= 0.0}


def resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Case weights of ``n_boot`` resamples with replacement of ``n`` controls.

    Parameters
    ----------
    n, n_boot, seed : int

    Returns
    -------
    ndarray of shape (n_boot, n)
        How often each control is drawn (each row sums to ``n``).
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return w


def bootstrap_curves(age: np.ndarray, y: np.ndarray, eval_ages: np.ndarray, method: str,
                     n_boot: int, seed: int, prior: tuple[float, float] = B_PRIOR,
                     age_range: tuple[float, float] | None = None) -> np.ndarray:
    """Model R2* at ``eval_ages`` refitted on ``n_boot`` resamples (with replacement) of controls.

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        Controls' ages (years) and R2* (s^-1), finite.
    eval_ages : ndarray of shape (k,)
        Years.
    method : {"auto", "seed", "prior", "linear"}
        The fit that is repeated (``auto``: penalised; ``seed``: unpenalised profile within
        the bounds of ``b``; ``prior``: ``b`` fixed at the prior median; ``linear``: OLS, ages
        held inside ``age_range``).
    n_boot, seed : int
    prior : (mu, tau)
    age_range : (float, float), optional
        For ``linear``: the controls' age range the line is held to.

    Returns
    -------
    ndarray of shape (n_boot, k)
        s^-1.
    """
    w = resample_weights(age.size, n_boot, seed)
    if method == "linear":
        # a line may fall (no a >= 0 bound as in _linear_ls)
        mx = (w * age).sum(-1) / w.sum(-1)
        my = (w * y).sum(-1) / w.sum(-1)
        sxx = (w * (age - mx[:, None]) ** 2).sum(-1)
        slope = np.where(sxx > 0, (w * (age - mx[:, None]) * (y - my[:, None])).sum(-1)
                         / np.where(sxx > 0, sxx, 1.0), 0.0)
        c = my - slope * mx
        lo, hi = age_range if age_range is not None else (age.min(), age.max())
        x = np.clip(eval_ages, lo, hi)
        return c[:, None] + slope[:, None] * x[None, :]
    if method == "prior":
        b = np.full(n_boot, float(np.exp(prior[0])))
        a, c, _ = _linear_ls(saturation_design(age, b[0])[None], y[None], w)
    else:
        a, b, c = profile_fit(age, y, w, prior=prior if method == "auto" else None)
    return a[:, None] * saturation_design(eval_ages[None, :], b[:, None]) + c[:, None]
