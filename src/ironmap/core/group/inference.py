"""Two-sample tests, correlations and multiple-comparison correction with stated conventions.

Every result carries the name of the method that produced its p-value, so that tables and
``stats.json`` can state it. The numbers come from :mod:`scipy.stats` and :mod:`statsmodels`;
this module only chooses between their options and records the choice.

Conventions (they follow R's ``wilcox.test``, ``t.test`` and ``cor.test``):

- Mann-Whitney U: the statistic is U of the *first* sample,
  ``U_x = R_x - n_x (n_x + 1) / 2`` (R's ``W``). The p-value is exact when there are no ties
  and both samples have fewer than 50 values, otherwise from the normal approximation with tie
  correction and continuity correction.
- t-tests: Student's (pooled variance, ``n_x + n_y - 2`` df) or Welch's (Welch-Satterthwaite df).
- Correlations: Pearson's r with a t-test on ``n - 2`` df; Spearman's rho with an exact
  permutation p-value for ``n <= 9`` without ties and the t-approximation on ``n - 2`` df
  otherwise. ``method="auto"`` picks Pearson when a Shapiro-Wilk test does not reject
  normality (p >= ``normality_alpha``) for *both* variables, Spearman otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

__all__ = [
    "MannWhitneyResult",
    "TTestResult",
    "CorrelationResult",
    "mann_whitney",
    "ttest",
    "correlate",
    "shapiro",
    "fdr_bh",
    "EXACT_MAX_N",
    "SPEARMAN_EXACT_MAX_N",
]

#: Mann-Whitney p is exact without ties when both samples are smaller than this (as in R).
EXACT_MAX_N = 50
#: Spearman p is exact (full permutation distribution) up to this many pairs without ties.
SPEARMAN_EXACT_MAX_N = 9
_ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass(frozen=True)
class MannWhitneyResult:
    """Mann-Whitney U test of ``x`` against ``y``.

    Attributes
    ----------
    statistic : float
        U of the first sample ``x`` (number of pairs with x > y, ties counting 1/2).
    pvalue : float
    method : str
        ``"exact"`` or ``"normal approximation (tie and continuity corrected)"``.
    n_x, n_y : int
        Sample sizes after removing missing values.
    alternative : str
    """

    statistic: float
    pvalue: float
    method: str
    n_x: int
    n_y: int
    alternative: str = "two-sided"

    @property
    def n(self) -> tuple[int, int]:
        """Sample sizes ``(n_x, n_y)``."""
        return (self.n_x, self.n_y)


@dataclass(frozen=True)
class TTestResult:
    """Independent two-sample t-test of ``x`` against ``y`` (``t`` > 0 when mean x > mean y)."""

    statistic: float
    pvalue: float
    df: float
    method: str
    n_x: int
    n_y: int
    mean_x: float
    mean_y: float
    alternative: str = "two-sided"

    @property
    def n(self) -> tuple[int, int]:
        """Sample sizes ``(n_x, n_y)``."""
        return (self.n_x, self.n_y)


@dataclass(frozen=True)
class CorrelationResult:
    """Correlation of ``x`` and ``y`` over their complete pairs.

    Attributes
    ----------
    r : float
        Pearson's r or Spearman's rho.
    pvalue : float
    method : str
        ``"pearson"`` or ``"spearman"`` (the method actually used).
    n : int
        Number of complete pairs.
    pvalue_method : str
        How the p-value was obtained (``"t-test, n-2 df"``, ``"exact permutation"``).
    normality : dict
        With ``method="auto"``: Shapiro-Wilk p-values of x and y and the alpha used.
    """

    r: float
    pvalue: float
    method: str
    n: int
    pvalue_method: str
    alternative: str = "two-sided"
    normality: dict = field(default_factory=dict)

    @property
    def statistic(self) -> float:
        """The correlation coefficient (same as ``r``)."""
        return self.r


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")


def mann_whitney(x, y, *, alternative: str = "two-sided", method: str = "auto",
                 correct: bool = True) -> MannWhitneyResult:
    """Mann-Whitney U (Wilcoxon rank-sum) test; missing values are dropped.

    Parameters
    ----------
    x, y : array_like of shape (n_x,), (n_y,)
        The two samples (any units; NaN ignored).
    alternative : {"two-sided", "less", "greater"}
        "greater": x tends to be larger than y.
    method : {"auto", "exact", "asymptotic"}
        "auto": exact p when there are no ties and both samples have fewer than
        :data:`EXACT_MAX_N` values, else the normal approximation with tie and continuity
        correction (R's ``wilcox.test`` default).
    correct : bool
        Continuity correction of the normal approximation (default True, as R).

    Returns
    -------
    MannWhitneyResult
        ``statistic`` is U of ``x``.
    """
    _check_alternative(alternative)
    xs, ys = _clean(x), _clean(y)
    if xs.size == 0 or ys.size == 0:
        raise ValueError(f"mann_whitney needs values in both samples (n_x={xs.size}, "
                         f"n_y={ys.size})")
    ties = np.unique(np.concatenate([xs, ys])).size < xs.size + ys.size
    if method == "auto":
        method = "exact" if (not ties and max(xs.size, ys.size) < EXACT_MAX_N) else "asymptotic"
    if method not in ("exact", "asymptotic"):
        raise ValueError(f"method must be auto, exact or asymptotic, got {method!r}")
    res = _st.mannwhitneyu(xs, ys, alternative=alternative, method=method,
                           use_continuity=correct)
    label = ("exact" if method == "exact" else
             "normal approximation (tie and continuity corrected)" if correct else
             "normal approximation (tie corrected)")
    return MannWhitneyResult(float(res.statistic), float(res.pvalue), label, xs.size, ys.size,
                             alternative)


def ttest(x, y, equal_var: bool = True, *, alternative: str = "two-sided") -> TTestResult:
    """Independent two-sample t-test; missing values are dropped.

    Parameters
    ----------
    x, y : array_like of shape (n_x,), (n_y,)
    equal_var : bool
        True: Student's t (pooled variance, ``n_x + n_y - 2`` df). False: Welch's t with
        Welch-Satterthwaite df.
    alternative : {"two-sided", "less", "greater"}

    Returns
    -------
    TTestResult
        ``statistic`` (t), ``pvalue``, ``df``, ``method``.
    """
    _check_alternative(alternative)
    xs, ys = _clean(x), _clean(y)
    if xs.size < 2 or ys.size < 2:
        raise ValueError(f"ttest needs at least 2 values per sample (n_x={xs.size}, "
                         f"n_y={ys.size})")
    res = _st.ttest_ind(xs, ys, equal_var=equal_var, alternative=alternative)
    method = "Student (pooled variance)" if equal_var else "Welch (Satterthwaite df)"
    return TTestResult(float(res.statistic), float(res.pvalue), float(res.df), method,
                       xs.size, ys.size, float(xs.mean()), float(ys.mean()), alternative)


def shapiro(values) -> float:
    """Shapiro-Wilk p-value.

    Parameters
    ----------
    values : array-like
        The sample (NaN dropped).

    Returns
    -------
    float
        p; NaN when fewer than 3 values or constant.
    """
    v = _clean(values)
    if v.size < 3 or np.ptp(v) == 0:
        return float("nan")
    return float(_st.shapiro(v).pvalue)


def finite_pairs(x, y, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as float arrays with every pair holding a NaN or Inf dropped.

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Paired values.
    names : tuple of str, optional
        Names used in the error message.

    Returns
    -------
    x, y : ndarray of shape (m,)
        The complete pairs.

    Raises
    ------
    ValueError
        When ``x`` and ``y`` differ in length.
    """
    xa = np.asarray(x, dtype=float).ravel()
    ya = np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length "
                         f"({xa.size} vs {ya.size})")
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def _spearman_exact_p(xs: np.ndarray, ys: np.ndarray, alternative: str) -> float:
    """Exact p of rho from all n! rank permutations (n <= 9, no ties)."""
    from itertools import permutations

    n = xs.size
    rx = _st.rankdata(xs) - 1
    ry = _st.rankdata(ys) - 1
    d_obs = float(np.sum((rx - ry) ** 2))
    perms = np.array(list(permutations(range(n))), dtype=np.int16)
    d_all = np.sum((perms - np.arange(n)) ** 2, axis=1)
    # rho = 1 - 6 D / (n^3 - n): large rho <=> small D; compare integers exactly
    d_obs_i = int(round(d_obs))
    p_greater = np.mean(d_all <= d_obs_i)
    p_less = np.mean(d_all >= d_obs_i)
    if alternative == "greater":
        return float(p_greater)
    if alternative == "less":
        return float(p_less)
    return float(min(1.0, 2.0 * min(p_greater, p_less)))


def _choose_method(xs, ys, normality_alpha: float) -> tuple[str, dict]:
    px, py = shapiro(xs), shapiro(ys)
    normal = bool(px >= normality_alpha and py >= normality_alpha)
    info = {"test": "Shapiro-Wilk", "alpha": normality_alpha, "p_x": px, "p_y": py,
            "both_normal": normal}
    return ("pearson" if normal else "spearman"), info


def correlate(x, y, method: str = "auto", *, alternative: str = "two-sided",
              normality_alpha: float = 0.05) -> CorrelationResult:
    """Pearson or Spearman correlation over the complete pairs of ``x`` and ``y``.

    Parameters
    ----------
    x, y : array_like of shape (n,)
        Paired values (pairs with a NaN are dropped).
    method : {"pearson", "spearman", "auto"}
        "auto": Shapiro-Wilk on both variables; Pearson when neither rejects normality at
        ``normality_alpha``, Spearman otherwise. The test p-values are in ``.normality``.
    alternative : {"two-sided", "less", "greater"}
    normality_alpha : float

    Returns
    -------
    CorrelationResult
        ``r``, ``pvalue``, ``method`` (the method used), ``n``.
    """
    _check_alternative(alternative)
    xs, ys = finite_pairs(x, y)
    n = xs.size
    nan = float("nan")
    normality: dict = {}
    if method == "auto":
        method, normality = _choose_method(xs, ys, normality_alpha)
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be pearson, spearman or auto, got {method!r}")
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return CorrelationResult(nan, nan, method, n, "not computed (n < 3 or constant)",
                                 alternative, normality)
    if method == "pearson":
        res = _st.pearsonr(xs, ys, alternative=alternative)
        return CorrelationResult(float(res.statistic), float(res.pvalue), method, n,
                                 "t-test, n-2 df", alternative, normality)
    res = _st.spearmanr(xs, ys, alternative=alternative)
    ties = np.unique(xs).size < n or np.unique(ys).size < n
    if n <= SPEARMAN_EXACT_MAX_N and not ties:
        p = _spearman_exact_p(xs, ys, alternative)
        return CorrelationResult(float(res.statistic), p, method, n, "exact permutation",
                                 alternative, normality)
    return CorrelationResult(float(res.statistic), float(res.pvalue), method, n,
                             "t-approximation, n-2 df", alternative, normality)


def fdr_bh(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN entries stay NaN and are not counted.

    Parameters
    ----------
    pvalues : array_like of shape (m,)

    Returns
    -------
    ndarray of shape (m,)
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q
