"""Age curves of several regions fitted together: rate and amplitude partially pooled.

Age model ``pooled``. Every region ``r`` keeps its own curve ``a_r (1 - exp(-b_r age)) + c_r``,
but the regions' rates and amplitudes are drawn from common distributions,

    log b_r ~ N(mu_b, tau_b^2),        a_r ~ N(mu_a, tau_a^2),        c_r flat,

whose parameters are estimated from all regions' controls (empirical Bayes): for each ``b`` on
a grid the amplitude is integrated out in closed form (the curve is linear in ``a`` and ``c``),
the rate is integrated over the grid, and ``(mu_b, tau_b, mu_a, tau_a)`` maximise the product
of the regions' marginal likelihoods, with the literature prior of ``auto``
(:data:`ironmap.core.group.age_fits.B_PRIOR`) on ``mu_b``. Each region's residual variance is
plugged in from its own ``auto`` fit. A region's curve is then its posterior mode of ``b`` and the
posterior mean of ``a`` given that ``b`` (shrunk toward ``mu_a``); ``c`` by least squares.

With 8 regions the between-region spreads are poorly determined and their estimates often
collapse to 0 (complete pooling); :data:`TAU_FLOOR` keeps them at least 0.3 in ``log b`` and
4 s^-1 in ``a``. These two floors are the model's only tuned numbers: they were chosen among
four candidates on simulated cohorts with seeds 100-119 (``benchmarks/agemodel.py``), not on
the seeds reported in ``docs/statistics.md``. The pooling assumes that the regions' amplitudes
are alike to within a few s^-1; where they are not, ``tau_a`` is estimated larger and the
pooling weakens.

The bootstrap SD of the corrections (:func:`ironmap.core.group.age_correction.correct_region`) is
that of the unpooled ``auto`` fit: refitting with the pooled prior held fixed gave SDs that covered
the true error in only about half of the cases.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import stats as _st
from scipy.special import logsumexp

from ironmap.core.group import age_fits
from ironmap.core.group.age_fits import B_GRID, B_PRIOR

__all__ = ["TAU_FLOOR", "PoolPrior", "pool_prior", "fit_pooled"]

#: Smallest between-region SDs of ``log b`` and of ``a`` (s^-1); chosen on seeds 100-119.
TAU_FLOOR: tuple[float, float] = (0.3, 4.0)
_LOG_GRID = np.log(B_GRID)


class PoolPrior(tuple):
    """The regions' common distributions of ``log b`` and of ``a`` (a tuple of 4 floats).

    Parameters
    ----------
    mu_b, tau_b : float
        Mean and SD of ``log b`` (``b`` in 1/years).
    mu_a, tau_a : float
        Mean and SD of ``a`` (s^-1).
    """

    __slots__ = ()

    def __new__(cls, mu_b: float, tau_b: float, mu_a: float, tau_a: float):
        """Make the tuple of floats."""
        return super().__new__(cls, (float(mu_b), float(tau_b), float(mu_a), float(tau_a)))

    @property
    def b_prior(self) -> tuple[float, float]:
        """Normal prior ``(mu, tau)`` on ``log b``."""
        return self[0], self[1]

    @property
    def a_prior(self) -> tuple[float, float]:
        """Normal prior ``(mean, sd)`` on ``a`` (s^-1)."""
        return self[2], self[3]


def _profile(age: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict:
    """Per sample (rows of ``w``) and grid ``b``: weighted LS of ``a`` (free sign) and ``c``."""
    x = age_fits.saturation_design(age[None, :], B_GRID[:, None])  # (K, n)
    sw = w.sum(-1)[:, None]                                        # (m, 1)
    xm = (w @ x.T) / sw                                            # (m, K)
    ym = (w @ y)[:, None] / sw[:, :1]                              # (m, 1)
    sxx = np.maximum(w @ (x * x).T - sw * xm**2, 1e-12)
    sxy = w @ (x * y).T - sw * xm * ym
    syy = (w @ (y * y))[:, None] - sw * ym**2
    ahat = sxy / sxx
    return {"xm": xm, "ym": ym, "sxx": sxx, "ahat": ahat,
            "rss": np.maximum(syy - sxy * ahat, 0.0)}


def _log_lik(prof: dict, s2, mu_a: float, tau_a: float) -> np.ndarray:
    """Log-likelihood ``p(y | b, s2)``, ``a ~ N(mu_a, tau_a^2)`` integrated out, ``c`` flat."""
    v = s2 / prof["sxx"]
    t2 = tau_a**2 + v
    return (-prof["rss"] / (2 * s2) + 0.5 * np.log(v) - 0.5 * np.log(t2)
            - (prof["ahat"] - mu_a) ** 2 / (2 * t2))


def _log_prior_b(mu_b: float, tau_b: float) -> np.ndarray:
    return -0.5 * ((_LOG_GRID - mu_b) / tau_b) ** 2 - np.log(tau_b)


def _residual_variance(age: np.ndarray, y: np.ndarray) -> float:
    res = age_fits.fit_penalised(age, y)
    return max(res["rss"] / max(res["dof"], 1), 1e-6)


def pool_prior(regions: list[tuple[np.ndarray, np.ndarray]],
               floor: tuple[float, float] = TAU_FLOOR,
               hyperprior: tuple[float, float] = B_PRIOR) -> PoolPrior:
    """Estimate the regions' common distributions of ``log b`` and ``a`` (empirical Bayes).

    Parameters
    ----------
    regions : list of (age, y)
        Per region the controls' ages (years) and R2* (s^-1), finite, each with at least 4
        controls of two or more ages (other regions should be left out).
    floor : (float, float)
        Smallest ``tau_b`` (SD of ``log b``) and ``tau_a`` (s^-1).
    hyperprior : (mu, tau)
        Normal prior on ``mu_b`` (the literature prior of age model ``auto``).

    Returns
    -------
    PoolPrior
        ``(mu_b, tau_b, mu_a, tau_a)``.
    """
    if len(regions) < 2:
        raise ValueError(f"pooling needs at least 2 regions with controls, got {len(regions)}")
    profs = [_profile(a, y, np.ones((1, a.size))) for a, y in regions]
    prof = {k: np.concatenate([p[k] for p in profs]) for k in profs[0]}
    s2 = np.array([_residual_variance(a, y) for a, y in regions])[:, None]
    k0 = int(np.argmin(np.abs(_LOG_GRID - hyperprior[0])))
    a0 = float(np.median(prof["ahat"][:, k0]))

    def objective(theta: np.ndarray) -> float:
        mu_b, tau_b = theta[0], np.exp(theta[1]) + floor[0]
        mu_a, tau_a = theta[2], np.exp(theta[3]) + floor[1]
        total = logsumexp(_log_lik(prof, s2, mu_a, tau_a) + _log_prior_b(mu_b, tau_b), axis=1)
        return float(-total.sum() + 0.5 * ((mu_b - hyperprior[0]) / hyperprior[1]) ** 2)

    start = np.array([hyperprior[0], np.log(0.3), a0, np.log(0.3 * abs(a0) + 1e-3)])
    res = optimize.minimize(objective, start, method="Nelder-Mead",
                            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-9})
    mu_b, lt_b, mu_a, lt_a = res.x
    return PoolPrior(mu_b, np.exp(lt_b) + floor[0], mu_a, np.exp(lt_a) + floor[1])


def _posterior(age: np.ndarray, y: np.ndarray, w: np.ndarray, s2: float, prior: PoolPrior):
    """Mode of ``b`` on the grid and ``a``, ``c`` there, per row of case weights ``w`` (m, n).

    The mode is refined parabolically in ``log b`` between grid neighbours.
    """
    prof = _profile(age, y, w)
    mu_a, tau_a = prior.a_prior
    post = _log_lik(prof, s2, mu_a, tau_a) + _log_prior_b(*prior.b_prior)[None]  # (m, K)
    k = np.clip(np.argmax(post, axis=1), 1, _LOG_GRID.size - 2)
    rows = np.arange(post.shape[0])
    f0, f1, f2 = post[rows, k - 1], post[rows, k], post[rows, k + 1]
    h = _LOG_GRID[1] - _LOG_GRID[0]
    curv = f0 - 2 * f1 + f2
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(curv < 0, 0.5 * h * (f0 - f2) / curv, 0.0)
    b = np.exp(_LOG_GRID[k] + np.clip(step, -h, h))
    x = age_fits.saturation_design(age[None, :], b[:, None])      # (m, n)
    sw = w.sum(-1)
    xm = (w * x).sum(-1) / sw
    ym = (w * y).sum(-1) / sw
    dx = x - xm[:, None]
    sxx = np.maximum((w * dx * dx).sum(-1), 1e-12)
    ahat = (w * dx * (y - ym[:, None])).sum(-1) / sxx
    v = s2 / sxx
    a = np.maximum((ahat / v + mu_a / tau_a**2) / (1 / v + 1 / tau_a**2), 0.0)
    return a, b, ym - a * xm


def fit_pooled(age: np.ndarray, y: np.ndarray, prior: PoolPrior,
               confidence: float = 0.95) -> dict:
    """One region's curve under the pooled prior (:func:`pool_prior`).

    Parameters
    ----------
    age, y : ndarray of shape (n,)
        The region's controls: ages (years) and R2* (s^-1), finite, n >= 3, two or more ages.
    prior : PoolPrior
    confidence : float

    Returns
    -------
    dict
        As :func:`ironmap.core.group.age_fits.fit_penalised`: ``params``, ``se``, ``ci`` (over
        ``a``, ``b``, ``c``), ``rss``, ``dof``, ``b_sd_ratio`` (posterior / pooled prior SD of
        ``log b``), ``a_at_bound``.
    """
    s2 = _residual_variance(age, y)
    a, b, c = (float(v[0]) for v in _posterior(age, y, np.ones((1, age.size)), s2, prior))
    resid = y - (a * age_fits.saturation_design(age, b) + c)
    rss = float(resid @ resid)
    cov, _ = age_fits._laplace(age, y, a, b, c, prior.b_prior, age.size - 3,
                               a_sd=prior.a_prior[1])
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    z = _st.norm.ppf(0.5 + confidence / 2)
    return {"params": {"a": a, "b": b, "c": c},
            "se": {"a": float(sd[0]), "b": float(b * sd[1]), "c": float(sd[2])},
            "ci": {"a": (a - z * sd[0], a + z * sd[0]),
                   "b": (b * float(np.exp(-z * sd[1])), b * float(np.exp(z * sd[1]))),
                   "c": (c - z * sd[2], c + z * sd[2])},
            "rss": rss, "dof": age.size - 3, "b_sd_ratio": float(sd[1] / prior[1]),
            "a_at_bound": a <= 0.0}
