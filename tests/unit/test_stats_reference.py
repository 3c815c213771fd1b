"""Group statistics against published reference values (not against scipy itself).

Sources of the literals:

- R 4.x help pages, package stats: ``?wilcox.test`` (Hollander & Wolfe 1973, p. 69f,
  permeability constants), ``?cor.test`` (Hollander & Wolfe 1973, p. 187f, canned tuna),
  ``?t.test`` (Student's sleep data, ``datasets::sleep``); printed outputs of those examples.
- NIST Statistical Reference Datasets (StRD), https://www.itl.nist.gov/div898/strd/:
  linear regression Longley (higher difficulty) and Norris (lower difficulty); nonlinear
  regression Misra1a (lower difficulty) and BoxBOD (higher difficulty). Data and certified
  values typed from the NIST pages.
- Hald cement data (Hald 1952; Draper & Smith, Applied Regression Analysis, 3rd ed., 1998,
  chapter 15): stepwise regression enters x4 then x1; final fit
  Y = 103.10 + 1.440 X1 - 0.614 X4, R^2 = 0.972.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap import stats
from ironmap.core.group.curve_fit import fit_curve
from ironmap.core.group.regression import ols

# --- R: wilcox.test -------------------------------------------------------------------------
HW_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
HW_Y = [1.15, 0.88, 0.90, 0.74, 1.21]


def test_wilcox_exact_matches_r():
    # wilcox.test(x, y, alternative = "g")  ->  W = 35, p-value = 0.1272
    res = stats.mann_whitney(HW_X, HW_Y, alternative="greater")
    assert res.statistic == 35
    assert res.method == "exact"
    assert round(res.pvalue, 4) == 0.1272


def test_wilcox_normal_approximation_matches_r():
    # wilcox.test(x, y, alternative = "greater", exact = FALSE, correct = FALSE)
    #   ->  W = 35, p-value = 0.1103
    res = stats.mann_whitney(HW_X, HW_Y, alternative="greater", method="asymptotic",
                             correct=False)
    assert res.statistic == 35
    assert round(res.pvalue, 4) == 0.1103
    assert "normal approximation" in res.method


def test_mann_whitney_u_is_of_first_sample_and_ties_use_normal_approximation():
    # U_x + U_y = n_x * n_y; with ties the method switches to the normal approximation
    a = stats.mann_whitney(HW_X, HW_Y)
    b = stats.mann_whitney(HW_Y, HW_X)
    assert a.statistic + b.statistic == len(HW_X) * len(HW_Y)
    assert a.pvalue == pytest.approx(b.pvalue)
    tied = stats.mann_whitney([1, 2, 2, 3, 4], [2, 3, 3, 5])
    assert tied.method.startswith("normal approximation")
    # U by hand (x > y counts 1, a tie 1/2): x=1: 0; x=2, 2: 0.5 + 0.5; x=3: 1 + 0.5 + 0.5;
    # x=4: 3  ->  6
    assert tied.statistic == 6.0


# --- R: cor.test ----------------------------------------------------------------------------
TUNA_X = [44.4, 45.9, 41.9, 53.3, 44.7, 44.1, 50.7, 45.2, 60.1]
TUNA_Y = [2.6, 3.1, 2.5, 5.0, 3.6, 4.0, 5.2, 2.8, 3.8]


def test_cor_test_pearson_matches_r():
    # cor.test(x, y, alternative = "g"): t = 1.8411, df = 7, p-value = 0.05409,
    # cor 0.5711816
    res = stats.correlate(TUNA_X, TUNA_Y, "pearson", alternative="greater")
    assert res.r == pytest.approx(0.5711816, abs=5e-8)
    assert round(res.pvalue, 5) == 0.05409
    assert res.n == 9


def test_cor_test_spearman_matches_r():
    # cor.test(x, y, method = "spearm", alternative = "g"): S = 48, p-value = 0.0484, rho 0.6
    res = stats.correlate(TUNA_X, TUNA_Y, "spearman", alternative="greater")
    assert res.r == pytest.approx(0.6, abs=1e-12)
    assert round(res.pvalue, 4) == 0.0484
    assert res.pvalue_method == "exact permutation"


def test_correlate_auto_chooses_by_shapiro_wilk(rng):
    x = rng.normal(size=60)
    y = x + rng.normal(size=60)
    assert stats.correlate(x, y, "auto").method == "pearson"
    skewed = np.exp(3 * rng.normal(size=60))
    res = stats.correlate(skewed, y, "auto")
    assert res.method == "spearman"
    assert res.normality["test"] == "Shapiro-Wilk" and res.normality["p_x"] < 0.05


# --- R: t.test on the sleep data ------------------------------------------------------------
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_t_test_welch_matches_r():
    # t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939
    res = stats.ttest(SLEEP_1, SLEEP_2, equal_var=False)
    assert round(res.statistic, 4) == -1.8608
    assert round(res.df, 3) == 17.776
    assert round(res.pvalue, 5) == 0.07939


def test_t_test_student_matches_r():
    # t.test(extra ~ group, data = sleep, var.equal = TRUE): t = -1.8608, df = 18,
    # p-value = 0.07919
    res = stats.ttest(SLEEP_1, SLEEP_2, equal_var=True)
    assert round(res.statistic, 4) == -1.8608
    assert res.df == 18
    assert round(res.pvalue, 5) == 0.07919


# --- NIST StRD linear regression ------------------------------------------------------------
LONGLEY = np.array([
    [60323, 83.0, 234289, 2356, 1590, 107608, 1947],
    [61122, 88.5, 259426, 2325, 1456, 108632, 1948],
    [60171, 88.2, 258054, 3682, 1616, 109773, 1949],
    [61187, 89.5, 284599, 3351, 1650, 110929, 1950],
    [63221, 96.2, 328975, 2099, 3099, 112075, 1951],
    [63639, 98.1, 346999, 1932, 3594, 113270, 1952],
    [64989, 99.0, 365385, 1870, 3547, 115094, 1953],
    [63761, 100.0, 363112, 3578, 3350, 116219, 1954],
    [66019, 101.2, 397469, 2904, 3048, 117388, 1955],
    [67857, 104.6, 419180, 2822, 2857, 118734, 1956],
    [68169, 108.4, 442769, 2936, 2798, 120445, 1957],
    [66513, 110.8, 444546, 4681, 2637, 121950, 1958],
    [68655, 112.6, 482704, 3813, 2552, 123366, 1959],
    [69564, 114.2, 502601, 3931, 2514, 125368, 1960],
    [69331, 115.7, 518173, 4806, 2572, 127852, 1961],
    [70551, 116.9, 554894, 4007, 2827, 130081, 1962],
])
LONGLEY_CERT = {  # parameter: (estimate, standard deviation)
    "Intercept": (-3482258.63459582, 890420.383607373),
    "x1": (15.0618722713733, 84.9149257747669),
    "x2": (-0.358191792925910e-01, 0.334910077722432e-01),
    "x3": (-2.02022980381683, 0.488399681651699),
    "x4": (-1.03322686717359, 0.214274163161675),
    "x5": (-0.511041056535807e-01, 0.226073200069370),
    "x6": (1829.15146461355, 455.478499142212),
}


def test_nist_longley_certified_values():
    df = pd.DataFrame(LONGLEY, columns=["y", "x1", "x2", "x3", "x4", "x5", "x6"])
    res = ols(df, "y", ["x1", "x2", "x3", "x4", "x5", "x6"])
    for name, (est, sd) in LONGLEY_CERT.items():
        assert res.params[name] == pytest.approx(est, rel=1e-7), name
        assert res.bse[name] == pytest.approx(sd, rel=1e-7), name
    assert res.rsquared == pytest.approx(0.995479004577296, rel=1e-10)
    assert res.fvalue == pytest.approx(330.285339234588, rel=1e-7)
    assert res.df_model == 6 and res.df_resid == 9


NORRIS = np.array([
    [0.1, 0.2], [338.8, 337.4], [118.1, 118.2], [888.0, 884.6], [9.2, 10.1], [228.1, 226.5],
    [668.5, 666.3], [998.5, 996.3], [449.1, 448.6], [778.9, 777.0], [559.2, 558.2],
    [0.3, 0.4], [0.1, 0.6], [778.1, 775.5], [668.8, 666.9], [339.3, 338.0], [448.9, 447.5],
    [10.8, 11.6], [557.7, 556.0], [228.3, 228.1], [998.0, 995.8], [888.8, 887.6],
    [119.6, 120.2], [0.3, 0.3], [0.6, 0.3], [557.6, 556.8], [339.3, 339.1], [888.0, 887.2],
    [998.5, 999.0], [778.9, 779.0], [10.2, 11.1], [117.6, 118.3], [228.9, 229.2],
    [668.4, 669.1], [449.2, 448.9], [0.2, 0.5],
])


def test_nist_norris_certified_values():
    df = pd.DataFrame(NORRIS, columns=["y", "x"])
    res = ols(df, "y", ["x"])
    assert res.params["Intercept"] == pytest.approx(-0.262323073774029, rel=1e-9)
    assert res.bse["Intercept"] == pytest.approx(0.232818234301152, rel=1e-9)
    assert res.params["x"] == pytest.approx(1.00211681802045, rel=1e-12)
    assert res.bse["x"] == pytest.approx(0.429796848199937e-03, rel=1e-9)
    assert res.rsquared == pytest.approx(0.999993745883712, rel=1e-12)


# --- Hald cement: stepwise path -------------------------------------------------------------
HALD = pd.DataFrame(
    [[7, 26, 6, 60, 78.5], [1, 29, 15, 52, 74.3], [11, 56, 8, 20, 104.3],
     [11, 31, 8, 47, 87.6], [7, 52, 6, 33, 95.9], [11, 55, 9, 22, 109.2],
     [3, 71, 17, 6, 102.7], [1, 31, 22, 44, 72.5], [2, 54, 18, 22, 93.1],
     [21, 47, 4, 26, 115.9], [1, 40, 23, 34, 83.8], [11, 66, 9, 12, 113.3],
     [10, 68, 8, 12, 109.4]], columns=["x1", "x2", "x3", "x4", "y"])


def test_hald_stepwise_path_and_final_model():
    res = stats.stepwise(HALD, "y", ["x1", "x2", "x3", "x4"], p_enter=0.05, p_remove=0.10)
    assert [s["variable"] for s in res.steps] == ["x4", "x1"]
    assert res.selected == ["x4", "x1"]
    assert round(res.params["Intercept"], 2) == 103.10
    assert round(res.params["x1"], 3) == 1.440
    assert round(res.params["x4"], 3) == -0.614
    assert round(res.rsquared, 3) == 0.972
    assert res.r == pytest.approx(np.sqrt(res.rsquared))
    # standardized betas: b * sd(x) / sd(y)
    sd = HALD.std(ddof=1)
    assert res.std_betas["x1"] == pytest.approx(res.params["x1"] * sd["x1"] / sd["y"])
    assert res.f_pvalue < 1e-6


def test_hald_stepwise_with_looser_entry_removes_x4():
    # Draper & Smith: with a looser entry criterion x2 enters (p = 0.052) and x4 then leaves
    res = stats.stepwise(HALD, "y", ["x1", "x2", "x3", "x4"], p_enter=0.10, p_remove=0.10)
    assert [(s["action"], s["variable"]) for s in res.steps] == [
        ("enter", "x4"), ("enter", "x1"), ("enter", "x2"), ("remove", "x4")]
    assert res.selected == ["x1", "x2"]
    assert round(res.steps[2]["pvalue"], 3) == 0.052


def test_stepwise_with_nothing_significant_is_intercept_only(rng):
    df = pd.DataFrame({"y": rng.normal(size=30), "a": rng.normal(size=30)})
    res = stats.stepwise(df, "y", ["a"], p_enter=1e-6)
    assert res.selected == [] and res.rsquared == 0.0 and np.isnan(res.f_pvalue)
    assert res.params["Intercept"] == pytest.approx(df["y"].mean())


# --- NIST StRD nonlinear: the saturation model's engine -------------------------------------
def _exp_sat(x, b1, b2):
    return b1 * -np.expm1(-b2 * x)


def _exp_sat_jac(x, b1, b2):
    return np.column_stack([-np.expm1(-b2 * x), b1 * x * np.exp(-b2 * x)])


MISRA1A_Y = [10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05, 61.01,
             66.40, 75.47, 81.78]
MISRA1A_X = [77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3, 536.8,
             593.1, 689.1, 760.0]
BOXBOD_Y = [109, 149, 149, 191, 213, 224]
BOXBOD_X = [1, 2, 3, 5, 7, 10]


@pytest.mark.parametrize("start", [(500, 1e-4), (250, 5e-4)])
def test_nist_misra1a_certified_values(start):
    fit = fit_curve(_exp_sat, MISRA1A_X, MISRA1A_Y, start, jac=_exp_sat_jac,
                    bounds=([0, 0], [np.inf, np.inf]))
    np.testing.assert_allclose(fit.params, [2.3894212918e02, 5.5015643181e-04], rtol=1e-8)
    np.testing.assert_allclose(fit.se, [2.7070075241e00, 7.2668688436e-06], rtol=1e-6)
    assert fit.rss == pytest.approx(1.2455138894e-01, rel=1e-8)
    assert fit.residual_sd == pytest.approx(1.0187876330e-01, rel=1e-8)
    assert fit.dof == 12


@pytest.mark.parametrize("start", [(1, 1), (100, 0.75)])
def test_nist_boxbod_certified_values(start):
    fit = fit_curve(_exp_sat, BOXBOD_X, BOXBOD_Y, start, jac=_exp_sat_jac,
                    bounds=([0, 0], [np.inf, np.inf]))
    np.testing.assert_allclose(fit.params, [2.1380940889e02, 5.4723748542e-01], rtol=1e-7)
    np.testing.assert_allclose(fit.se, [1.2354515176e01, 1.0455993237e-01], rtol=1e-6)
    assert fit.rss == pytest.approx(1.1680088766e03, rel=1e-8)
    assert fit.residual_sd == pytest.approx(1.7088072423e01, rel=1e-8)


def test_fdr_bh_matches_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.20])
    q = stats.fdr_bh(p)
    # sorted 0.01, 0.03, 0.04, 0.20 (m = 4): q = min over k>=i of p_k * m / k
    np.testing.assert_allclose(q[[0, 2, 1, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20],
                               rtol=1e-12)
    assert np.isnan(q[3])
