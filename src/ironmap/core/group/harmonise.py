"""Site harmonisation of regional R2* with ComBat (neuroCombat).

``combat``: ComBat with covariates (Johnson et al. 2007; Fortin et al. 2018): per feature,
``y = a + X beta + gamma_site + delta_site * e``; the site location ``gamma`` and scale ``delta``
are shrunk by parametric empirical Bayes (priors pooled over the features of each site) and
removed, while the covariates (group, age) are protected. Computed by :func:`neuroCombat.
neuroCombat` (0.2.12, the ComBat engine of neuroHarmonize).
``combat-gam``: the same with age entered as a cubic B-spline basis (:data:`SPLINE_DF` degrees
of freedom, knots at age quantiles) instead of a line, so a nonlinear age curve is kept - the
idea of ComBat-GAM (Pomponio et al. 2020), with an unpenalised regression spline in place of
its penalised GAM.

Missing values: a feature's missing entries are filled with its site mean for the fit and set
back to NaN afterwards; scans without age or group, and sites with fewer than two scans, are
not harmonised (NaN).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

__all__ = ["HARMONISERS", "harmonise", "SPLINE_DF"]

#: Method name -> description (methods text).
HARMONISERS = {"combat": "ComBat with linear age and group as protected covariates",
               "combat-gam": "ComBat with a cubic B-spline of age and group as protected "
                             "covariates"}
#: B-spline degrees of freedom of the age term in ``combat-gam`` (chosen a priori).
SPLINE_DF = 5


def harmonise(features: pd.DataFrame, sites, *, groups=None, ages=None,
              method: str = "combat") -> tuple[pd.DataFrame, list[str]]:
    """Remove site location and scale effects from a scans x features table.

    Parameters
    ----------
    features : pandas.DataFrame of shape (n_scans, n_features)
        E.g. regional R2* (s^-1), one column per region/hemisphere.
    sites : array_like of shape (n_scans,)
        Site (batch) of each scan.
    groups : array_like of shape (n_scans,), optional
        Diagnostic group, protected as a categorical covariate.
    ages : array_like of shape (n_scans,), optional
        Age (years) at the scan, protected (linear for ``combat``, spline for ``combat-gam``).
    method : {"combat", "combat-gam"}

    Returns
    -------
    (harmonised, notes)
        Same shape and index as ``features``; notes on scans left out.
    """
    if method not in HARMONISERS:
        raise ValueError(f"unknown harmonisation {method!r}; expected one of "
                         f"{', '.join(HARMONISERS)}")
    if method == "combat-gam" and ages is None:
        raise ValueError("combat-gam needs the age at each scan")
    try:
        from neuroCombat import neuroCombat
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("harmonisation needs the neuroCombat package "
                          "(pip install neuroCombat==0.2.12)") from exc
    x = features.astype(float)
    raw_site = pd.Series(np.asarray(sites, dtype=object), index=x.index)
    site = raw_site.astype(str)
    keep = raw_site.notna()
    cov: dict[str, pd.Series] = {}
    if groups is not None:
        cov["group"] = pd.Series(np.asarray(groups, dtype=object), index=x.index)
        keep &= cov["group"].notna()
    if ages is not None:
        cov["age"] = pd.Series(np.asarray(ages, dtype=float), index=x.index)
        keep &= cov["age"].notna()
    keep &= x.notna().any(axis=1)
    notes = []
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} scan(s) without site, age, group or values not "
                     "harmonised")
    small = site[keep].value_counts()
    small = small[small < 2].index
    if len(small):
        keep &= ~site.isin(small)
        notes.append(f"site(s) with fewer than 2 scans not harmonised: {', '.join(small)}")
    out = pd.DataFrame(np.nan, index=x.index, columns=x.columns)
    if site[keep].nunique() < 2:
        notes.append("fewer than 2 sites: nothing to harmonise")
        return out.where(~keep, x), notes
    xk = x[keep]
    filled = xk.fillna(xk.groupby(site[keep]).transform("mean")).fillna(xk.mean())
    covars = pd.DataFrame({"site": site[keep].to_numpy()})
    cat, num = [], []
    if "group" in cov and cov["group"][keep].nunique() > 1:
        covars["group"] = cov["group"][keep].astype(str).to_numpy()
        cat.append("group")
    if "age" in cov:
        age = cov["age"][keep].to_numpy()
        spline = method == "combat-gam" and np.unique(age).size >= SPLINE_DF + 2
        if method == "combat-gam" and not spline:
            notes.append(f"combat-gam: fewer than {SPLINE_DF + 2} distinct ages; age entered "
                         "linearly")
        basis = spline_basis(age, SPLINE_DF) if spline else age[:, None]
        for j in range(basis.shape[1]):
            covars[f"age{j}"] = basis[:, j]
            num.append(f"age{j}")
    with contextlib.redirect_stdout(io.StringIO()):
        fitted = neuroCombat(dat=filled.to_numpy().T, covars=covars, batch_col="site",
                             categorical_cols=cat or None, continuous_cols=num or None)["data"].T
    fitted = pd.DataFrame(np.asarray(fitted, dtype=float), index=xk.index, columns=x.columns)
    out.loc[keep] = fitted.where(xk.notna())
    return out, notes


def spline_basis(x, df: int) -> np.ndarray:
    """Cubic B-spline basis of ``x`` without its constant part.

    Parameters
    ----------
    x : ndarray of shape (n,)
    df : int
        Columns returned (>= 3); interior knots at the quantiles of ``x``.

    Returns
    -------
    ndarray of shape (n, df)
        The B-spline basis (``df + 1`` functions summing to one) minus its first column, so
        that it can enter a model with an intercept.
    """
    from scipy.interpolate import BSpline

    x = np.asarray(x, dtype=float)
    k = 3
    n_inner = df + 1 - (k + 1)
    if n_inner < 0:
        raise ValueError(f"a cubic spline needs df >= 3, got {df}")
    lo, hi = float(x.min()), float(x.max())
    inner = np.quantile(x, np.linspace(0, 1, n_inner + 2)[1:-1]) if n_inner else np.array([])
    knots = np.r_[[lo] * (k + 1), inner, [hi] * (k + 1)]
    basis = BSpline.design_matrix(np.clip(x, lo, hi), knots, k).toarray()
    return basis[:, 1:]
