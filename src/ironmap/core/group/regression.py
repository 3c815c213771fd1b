"""Linear regression summaries and forward stepwise selection on partial F-tests.

Stepwise convention (Efroymson's procedure, as in STATISTICA's "forward stepwise" and
MATLAB's ``stepwisefit``): start from the intercept-only model; at each step enter the
candidate with the smallest partial-F p-value if it is below ``p_enter``; after every entry,
remove the variable in the model with the largest partial-F p-value if it is above
``p_remove`` (``p_remove >= p_enter`` prevents cycling). The partial F of one variable equals
the square of its t statistic in the larger model. Each model is an ordinary least-squares
fit from :mod:`statsmodels` on the complete cases of the response and *all* candidates, so
that every step compares nested models on the same rows.

Standardized betas are ``b_j * sd(x_j) / sd(y)`` (sample SDs over the rows used); ``r`` is
the multiple correlation ``sqrt(R^2)``; ``f_pvalue`` is the p-value of the model's overall
F-test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["RegressionResult", "StepwiseResult", "ols", "stepwise"]


@dataclass(frozen=True)
class RegressionResult:
    """An ordinary least-squares fit ``response ~ predictors``.

    Attributes
    ----------
    params, bse, tvalues, pvalues : dict of str -> float
        Keyed by ``"Intercept"`` and the predictor names.
    std_betas : dict of str -> float
        Standardized coefficients of the predictors.
    rsquared, r, fvalue, f_pvalue : float
    df_model, df_resid : float
    n : int
    """

    params: dict
    bse: dict
    tvalues: dict
    pvalues: dict
    std_betas: dict
    rsquared: float
    r: float
    fvalue: float
    f_pvalue: float
    df_model: float
    df_resid: float
    n: int


@dataclass(frozen=True)
class StepwiseResult(RegressionResult):
    """Final model of :func:`stepwise` plus the path.

    Attributes
    ----------
    selected : list of str
        Variables in the final model, in order of entry.
    steps : list of dict
        One per action: ``step``, ``action`` (``"enter"``/``"remove"``), ``variable``,
        ``F`` (partial F), ``pvalue``, ``rsquared`` after the action.
    p_enter, p_remove : float
    """

    selected: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    p_enter: float = 0.05
    p_remove: float = 0.10


def _fit(y: np.ndarray, X: pd.DataFrame):
    import statsmodels.api as sm

    design = sm.add_constant(X.astype(float), has_constant="add").rename(
        columns={"const": "Intercept"})
    return sm.OLS(y, design).fit()


def _summary(res, y: np.ndarray, X: pd.DataFrame) -> dict:
    names = list(res.params.index)
    sd_y = float(np.std(y, ddof=1))
    std = {k: float(res.params[k] * X[k].std(ddof=1) / sd_y) if sd_y > 0 else np.nan
           for k in X.columns}
    k = X.shape[1]
    return dict(
        params={n: float(res.params[n]) for n in names},
        bse={n: float(res.bse[n]) for n in names},
        tvalues={n: float(res.tvalues[n]) for n in names},
        pvalues={n: float(res.pvalues[n]) for n in names},
        std_betas=std,
        rsquared=float(res.rsquared) if k else 0.0,
        r=float(np.sqrt(max(res.rsquared, 0.0))) if k else 0.0,
        fvalue=float(res.fvalue) if k else np.nan,
        f_pvalue=float(res.f_pvalue) if k else np.nan,
        df_model=float(res.df_model), df_resid=float(res.df_resid), n=int(res.nobs),
    )


def _complete(data: pd.DataFrame, response: str, columns: list[str]
              ) -> tuple[np.ndarray, pd.DataFrame]:
    missing = [c for c in [response, *columns] if c not in data.columns]
    if missing:
        raise KeyError(f"columns not in the data: {missing}")
    sub = data[[response, *columns]].apply(pd.to_numeric, errors="coerce").dropna()
    return sub[response].to_numpy(float), sub[columns]


def ols(data: pd.DataFrame, response: str, predictors: list[str]) -> RegressionResult:
    """OLS of ``response`` on ``predictors`` (plus intercept) over complete cases.

    Parameters
    ----------
    data : DataFrame
        One row per observation.
    response : str
    predictors : list of str

    Returns
    -------
    RegressionResult
    """
    y, X = _complete(data, response, list(predictors))
    if y.size <= len(predictors) + 1:
        raise ValueError(f"{y.size} complete rows for {len(predictors)} predictors")
    return RegressionResult(**_summary(_fit(y, X), y, X))


def _partial(y: np.ndarray, X: pd.DataFrame, model: list[str], var: str) -> tuple[float, float]:
    """Partial F and its p-value of ``var`` in the model ``model`` (which contains it)."""
    res = _fit(y, X[model])
    t = float(res.tvalues[var])
    return t * t, float(res.pvalues[var])


def _try_enter(y, X, model, candidates, p_enter):
    best = None
    for var in candidates:
        if var in model:
            continue
        f, p = _partial(y, X, [*model, var], var)
        if np.isfinite(p) and (best is None or p < best[2]):
            best = (var, f, p)
    return best if best is not None and best[2] < p_enter else None


def _try_remove(y, X, model, p_remove):
    worst = None
    for var in model:
        f, p = _partial(y, X, model, var)
        if worst is None or p > worst[2]:
            worst = (var, f, p)
    return worst if worst is not None and worst[2] > p_remove else None


def stepwise(data: pd.DataFrame, response: str, candidates: list[str], p_enter: float = 0.05,
             p_remove: float = 0.10, *, max_steps: int = 100) -> StepwiseResult:
    """Forward stepwise linear regression with partial-F entry and removal.

    Parameters
    ----------
    data : DataFrame
        One row per observation; rows with a missing response or candidate are dropped.
    response : str
    candidates : list of str
        Candidate predictors.
    p_enter : float
        A variable enters when its partial-F p-value is below this.
    p_remove : float
        A variable leaves when its partial-F p-value is above this (must be >= p_enter).
    max_steps : int
        Safety limit on the number of actions.

    Returns
    -------
    StepwiseResult
        ``selected`` (in order of entry), ``steps``, ``params`` (with ``"Intercept"``),
        ``std_betas``, ``r``, ``rsquared``, ``f_pvalue``.
    """
    if p_remove < p_enter:
        raise ValueError(f"p_remove ({p_remove}) must be >= p_enter ({p_enter})")
    candidates = list(dict.fromkeys(candidates))
    y, X = _complete(data, response, candidates)
    if y.size < 3:
        raise ValueError(f"stepwise: {y.size} complete rows; at least 3 needed")
    model: list[str] = []
    steps: list[dict] = []
    while len(steps) < max_steps:
        entry = _try_enter(y, X, model, candidates, p_enter) if y.size > len(model) + 2 else None
        if entry is None:
            break
        model.append(entry[0])
        steps.append(_step(len(steps) + 1, "enter", entry, y, X, model))
        removal = _try_remove(y, X, model, p_remove)
        if removal is not None:
            model.remove(removal[0])
            steps.append(_step(len(steps) + 1, "remove", removal, y, X, model))
    summary = _summary(_fit(y, X[model]), y, X[model])
    return StepwiseResult(**summary, selected=list(model), steps=steps, p_enter=p_enter,
                          p_remove=p_remove)


def _step(number, action, found, y, X, model) -> dict:
    rsq = float(_fit(y, X[model]).rsquared) if model else 0.0
    return {"step": number, "action": action, "variable": found[0], "F": found[1],
            "pvalue": found[2], "rsquared": rsq}
