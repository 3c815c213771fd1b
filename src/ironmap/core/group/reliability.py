"""Multi-site reliability and site effects: ICC, within-subject SD, CoV, site-classification AUC.

- :func:`icc`: intraclass correlations of a complete subjects x sites table from the two-way
  ANOVA mean squares (Shrout & Fleiss 1979): ICC(2,1) (two-way random effects, absolute
  agreement, single measurement; McGraw & Wong's ICC(A,1)) and ICC(3,1) (two-way mixed,
  consistency; ICC(C,1)). ICC(2,1) counts systematic site differences as error, so it is the
  one that shows site bias; ICC(3,1) ignores them.
- :func:`within_subject_sd`: ``sqrt(mean_i var_i)`` of each subject's repeated values
  (sample variance), and the coefficient of variation ``wSD / grand mean``.
- :func:`site_auc`: how well the site can be told from regional R2*: linear discriminant
  analysis (pooled covariance), cross-validated with whole participants left out, scored by
  the macro one-vs-rest ROC AUC (0.5 = no site information).
- :func:`cohens_d`: standardised mean difference with the pooled SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = ["icc", "within_subject_sd", "site_auc", "roc_auc", "cohens_d", "reliability_table"]


def icc(values) -> dict:
    """ICC(2,1) and ICC(3,1) of a subjects x raters (sites) table.

    Parameters
    ----------
    values : array_like of shape (n_subjects, n_raters)
        Complete table (no NaN), e.g. one region's R2* (s^-1) of each travelling head at each
        site.

    Returns
    -------
    dict
        ``icc2_1``, ``icc3_1``, the mean squares ``ms_subjects``, ``ms_raters``, ``ms_error``
        and ``n_subjects``, ``n_raters``.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise ValueError(f"ICC needs a complete table of >= 2 subjects x >= 2 raters, "
                         f"got shape {x.shape}")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_err = np.sum((x - grand) ** 2) - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    return {"icc2_1": float(icc2), "icc3_1": float(icc3), "ms_subjects": float(msr),
            "ms_raters": float(msc), "ms_error": float(mse), "n_subjects": n, "n_raters": k}


def within_subject_sd(values, subjects) -> dict:
    """Within-subject SD and coefficient of variation of repeated measurements.

    Parameters
    ----------
    values : array_like of shape (n,)
        Measurements (s^-1); NaN dropped.
    subjects : array_like of shape (n,)
        Subject of each measurement; subjects with one value are left out.

    Returns
    -------
    dict
        ``wsd`` (same unit as ``values``), ``cov`` (fraction: wSD / grand mean of the
        subjects used), ``n_subjects``.
    """
    df = pd.DataFrame({"y": np.asarray(values, dtype=float), "s": np.asarray(subjects)})
    df = df.dropna()
    df = df[df.groupby("s")["y"].transform("size") >= 2]
    if df.empty:
        return {"wsd": float("nan"), "cov": float("nan"), "n_subjects": 0}
    wsd = float(np.sqrt(df.groupby("s")["y"].var(ddof=1).mean()))
    return {"wsd": wsd, "cov": wsd / float(df["y"].mean()),
            "n_subjects": int(df["s"].nunique())}


def cohens_d(x, y) -> float:
    """``(mean x - mean y) / pooled SD`` (sample variances); NaN dropped.

    Parameters
    ----------
    x, y : array-like
        The two samples.

    Returns
    -------
    float
        Cohen's d (NaN with fewer than two values in a sample).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return float("nan")
    pooled = ((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2)
    return float((x.mean() - y.mean()) / np.sqrt(pooled))


def roc_auc(scores, positive) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties counting 1/2).

    Parameters
    ----------
    scores : array-like of shape (n,)
        Scores.
    positive : array-like of bool, shape (n,)
        Which are positives.

    Returns
    -------
    float
        AUC in [0, 1]; NaN without both classes.
    """
    s = np.asarray(scores, dtype=float)
    pos = np.asarray(positive, dtype=bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _lda_fit(x: np.ndarray, labels: np.ndarray, classes: np.ndarray, ridge: float):
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    resid = x - means[np.searchsorted(classes, labels)]
    cov = resid.T @ resid / len(x)  # prior-weighted class covariances (as scikit-learn)
    cov += ridge * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    prec = np.linalg.inv(cov)
    prior = np.log(np.array([(labels == c).mean() for c in classes]))
    return means, prec, prior


def _lda_proba(x, means, prec, prior) -> np.ndarray:
    lin = x @ prec @ means.T - 0.5 * np.einsum("ij,jk,ik->i", means, prec, means) + prior
    lin -= lin.max(axis=1, keepdims=True)
    p = np.exp(lin)
    return p / p.sum(axis=1, keepdims=True)


def site_auc(features, sites, subjects, *, n_folds: int = 5, seed: int = 0,
             ridge: float = 1e-3, centre_subjects: bool = False) -> float:
    """Cross-validated macro one-vs-rest AUC of telling the site from regional values.

    Parameters
    ----------
    features : array_like of shape (n_scans, n_features)
        E.g. regional R2* (s^-1) per scan; rows with NaN are dropped.
    sites : array_like of shape (n_scans,)
    subjects : array_like of shape (n_scans,)
        Folds hold out whole subjects, so a travelling head is never in training and test.
    n_folds : int
    seed : int
        Assignment of subjects to folds.
    ridge : float
        Covariance regularisation, as a fraction of its mean diagonal.
    centre_subjects : bool
        Subtract each subject's mean over its scans first (travelling heads: removes the
        between-subject variation, so that only site differences remain to be told).

    Returns
    -------
    float
        Mean over sites of the AUC of the predicted probability of that site against the
        others (0.5: the site cannot be told; 1: perfectly).
    """
    x = np.asarray(features, dtype=float)
    ok = np.isfinite(x).all(axis=1)
    x, site, subj = x[ok], np.asarray(sites).astype(str)[ok], np.asarray(subjects)[ok]
    if centre_subjects:
        x = x - pd.DataFrame(x).groupby(subj).transform("mean").to_numpy()
    classes = np.unique(site)
    if classes.size < 2:
        return float("nan")
    uniq = np.unique(subj)
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(uniq.size) % n_folds,
                       strict=True))
    fold = np.array([fold_of[s] for s in subj])
    proba = np.full((len(x), classes.size), np.nan)
    for f in range(n_folds):
        test = fold == f
        if not test.any() or np.unique(site[~test]).size < classes.size:
            continue
        mu, sd = x[~test].mean(axis=0), x[~test].std(axis=0) + 1e-12
        model = _lda_fit((x[~test] - mu) / sd, site[~test], classes, ridge)
        proba[test] = _lda_proba((x[test] - mu) / sd, *model)
    done = np.isfinite(proba).all(axis=1)
    aucs = [roc_auc(proba[done, j], site[done] == c) for j, c in enumerate(classes)]
    return float(np.nanmean(aucs))


def reliability_table(scans: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """ICC, within-subject SD and CoV per region and hemisphere of travelling heads.

    Parameters
    ----------
    scans : pandas.DataFrame
        One row per scan and region: ``participant_id, site, region, hemisphere`` and
        ``value_column`` (s^-1). Only participants measured at every site enter the ICC
        (a complete table); the within-subject SD uses every participant with >= 2 sites.

    Returns
    -------
    pandas.DataFrame
        ``region, hemisphere, n_participants, n_sites, icc2_1, icc3_1, wsd, cov``.
    """
    rows = []
    for (region, hemi), part in scans.groupby(["region", "hemisphere"], sort=False):
        wide = part.pivot_table(index="participant_id", columns="site", values=value_column,
                                aggfunc="mean").dropna()
        res = icc(wide.to_numpy()) if wide.shape[0] >= 2 and wide.shape[1] >= 2 else {}
        w = within_subject_sd(part[value_column], part["participant_id"])
        rows.append({"region": region, "hemisphere": hemi, "n_participants": wide.shape[0],
                     "n_sites": wide.shape[1], "icc2_1": res.get("icc2_1", np.nan),
                     "icc3_1": res.get("icc3_1", np.nan), "wsd": w["wsd"], "cov": w["cov"]})
    return pd.DataFrame(rows)
