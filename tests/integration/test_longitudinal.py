"""Repeated scans: simulated sessions and travelling heads, mixed models, reliability, ComBat."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _sim_sessions import write_repeated_study
from ironmap.cli.main import main
from ironmap.core.group import reliability as rl
from ironmap.core.group.harmonise import harmonise, spline_basis
from ironmap.core.group.longitudinal import change_rate_table, years_since_first
from ironmap.io.bids import discover
from ironmap.io.tables import read_tsv
from ironmap.sim import sessions, truth
from ironmap.workflows.simulate import simulate_cohort

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges, and their published ICCs.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6],
                          [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)


def test_icc_reproduces_shrout_fleiss_table():
    res = rl.icc(SHROUT_FLEISS)
    assert res["icc2_1"] == pytest.approx(0.29, abs=0.005)
    assert res["icc3_1"] == pytest.approx(0.71, abs=0.005)


def test_within_subject_sd_and_cov_equal_a_direct_computation(rng):
    subj = np.repeat(np.arange(15), 4)
    y = rng.normal(30, 3, 15)[subj] + rng.normal(0, 1.2, subj.size)
    res = rl.within_subject_sd(y, subj)
    direct = np.sqrt(np.mean([np.var(y[subj == s], ddof=1) for s in range(15)]))
    assert res["wsd"] == pytest.approx(direct, rel=1e-12)
    assert res["cov"] == pytest.approx(direct / y.mean(), rel=1e-12)
    assert res["wsd"] == pytest.approx(1.2, rel=0.2)


def test_roc_auc_and_site_auc_match_scikit_learn(rng):
    skl = pytest.importorskip("sklearn")
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import roc_auc_score

    assert skl is not None
    s = rng.normal(size=200)
    lab = rng.random(200) < 0.4
    assert rl.roc_auc(s + lab, lab) == pytest.approx(roc_auc_score(lab, s + lab), rel=1e-12)
    n_subj, sites = 30, np.array(["a", "b", "c"])
    subj = np.repeat(np.arange(n_subj), 3)
    site = np.tile(sites, n_subj)
    x = rng.normal(size=(subj.size, 4)) + 0.5 * (site == "b")[:, None]
    ours = rl.site_auc(x, site, subj, n_folds=5, seed=0, ridge=0.0)
    folds = np.random.default_rng(0).permutation(n_subj) % 5
    proba = np.zeros((subj.size, 3))
    for f in range(5):
        test = folds[subj] == f
        mu, sd = x[~test].mean(0), x[~test].std(0)
        lda = LinearDiscriminantAnalysis(solver="lsqr").fit((x[~test] - mu) / sd, site[~test])
        proba[test] = lda.predict_proba((x[test] - mu) / sd)
    ref = roc_auc_score(site, proba, multi_class="ovr", average="macro")
    assert ours == pytest.approx(ref, abs=1e-6)


def test_combat_removes_site_offsets_and_protects_an_unbalanced_group_effect(rng):
    # 4 sites with additive offsets; patients mostly at sites 2-3: the group effect (+3 s^-1)
    # is confounded with site and must survive harmonisation.
    n = 400
    site = rng.integers(0, 4, n)
    patient = rng.random(n) < np.array([0.1, 0.3, 0.7, 0.9])[site]
    age = rng.uniform(20, 60, n)
    offset = np.array([-1.5, -0.5, 0.5, 1.5])
    base = 25 + 3.0 * patient + 0.1 * (age - 40) + rng.normal(0, 1, n)
    true = base[:, None] + rng.normal(0, 1, (n, 6))
    feats = pd.DataFrame(true + offset[site][:, None] + rng.normal(0, 0.5, (n, 6)))
    group = np.where(patient, "MS", "HC")
    out, notes = harmonise(feats, site, groups=group, ages=age, method="combat")
    assert not notes
    before = pd.DataFrame(feats.to_numpy() - true).groupby(site).mean().to_numpy()
    after = pd.DataFrame(out.to_numpy() - true).groupby(site).mean().to_numpy()
    assert np.ptp(before, axis=0).min() > 2.5
    assert np.ptp(after, axis=0).max() < 0.25 * np.ptp(before, axis=0).min()
    effect = out[patient].mean().mean() - out[~patient].mean().mean()
    truth_effect = true[patient].mean() - true[~patient].mean()
    assert effect == pytest.approx(truth_effect, abs=0.3)
    naive, _ = harmonise(feats, site, ages=age, method="combat")  # group not protected
    lost = naive[patient].mean().mean() - naive[~patient].mean().mean()
    assert lost < truth_effect - 0.5


def test_combat_gam_keeps_a_nonlinear_age_curve(rng):
    # sites cover different age ranges; R2* saturates with age: a straight age line in the
    # ComBat model mistakes part of the curve for site effects.
    n = 300
    site = rng.integers(0, 3, n)
    age = np.clip(rng.normal(np.array([25.0, 45.0, 65.0])[site], 8), 15, 85)
    curve = 20 + 14 * (1 - np.exp(-0.05 * age))
    bias = np.array([0.97, 1.0, 1.03])[site]
    feats = pd.DataFrame((curve + rng.normal(0, 1.0, (4, n))).T * bias[:, None])
    lin, _ = harmonise(feats, site, ages=age, method="combat")
    gam, _ = harmonise(feats, site, ages=age, method="combat-gam")
    err = {k: np.sqrt(np.mean((v.to_numpy() - curve[:, None]) ** 2))
           for k, v in (("lin", lin), ("gam", gam))}
    assert err["gam"] < err["lin"]
    assert spline_basis(age, 5).shape == (n, 5)


def test_change_rates_recovered_by_the_mixed_model():
    """Small version of benchmarks/longitudinal.py (one seed; thresholds for 24 cells)."""
    plan = truth.plan_cohort({"HC": 12, "RRMS": 12, "PPMS": 10}, 2, 11)
    splan = sessions.plan_longitudinal(plan, 3, 1.0, 11)
    reg = sessions.measured_regions(plan, splan, 11)
    reg = reg[reg["region"].isin(["caudate", "putamen", "globus_pallidus"])]
    reg = reg.merge(splan.sessions, on=["participant_id", "session_id"])
    reg["group"] = reg["participant_id"].map(plan.participants.set_index("participant_id")
                                             ["group"])
    reg["years"] = years_since_first(reg["participant_id"], reg["age"])
    table = change_rate_table(reg, "r2star_mean")
    m = table.merge(sessions.group_rates_table(plan, splan), on=["region", "group"])
    assert len(m) == 9
    inside = (m["ci_low"] <= m["r2star_change_per_year_true"]) & (
        m["r2star_change_per_year_true"] <= m["ci_high"])
    assert inside.mean() >= 7 / 9
    assert abs((m["r2star_change_per_year"] - m["r2star_change_per_year_true"]).mean()) <= 0.1
    ppms = m[m["group"] == "PPMS"]["r2star_change_per_year"].mean()
    hc = m[m["group"] == "HC"]["r2star_change_per_year"].mean()
    assert ppms > hc  # faster change in progressive MS


def _d_table(values: pd.DataFrame, ms: np.ndarray) -> pd.Series:
    return pd.Series({r: rl.cohens_d(values[r][ms], values[r][~ms]) for r in values.columns})


def test_travelling_heads_group_level_with_harmonisation(tmp_path):
    bids, out, plan, splan = write_repeated_study(
        tmp_path, {"HC": 10, "RRMS": 5, "PPMS": 5}, 7, 5, site_bias=0.04)
    assert main([str(bids), str(out), "group", "--no-report", "--harmonise", "combat"]) == 0
    h = read_tsv(out / "group" / "harmonisation.tsv")
    regional = read_tsv(out / "group" / "regional_r2star.tsv")
    scans = regional.merge(splan.sessions, on=["participant_id", "session_id"])
    # ICC and within-subject SD equal a direct computation (statsmodels two-way ANOVA)
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    for stage, col in (("before", "r2star_mean"), ("after combat", "r2star_harmonised")):
        sub = scans[scans["region"] == "caudate"]
        aov = anova_lm(smf.ols(f"{col} ~ C(participant_id) + C(site)", sub).fit())
        msr, msc, mse = (aov["mean_sq"].iloc[i] for i in range(3))
        n, k = sub["participant_id"].nunique(), sub["site"].nunique()
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        row = h[(h["stage"] == stage) & (h["region"] == "caudate")].iloc[0]
        assert row["icc2_1"] == pytest.approx(icc2, rel=1e-4)
        wsd = np.sqrt(sub.groupby("participant_id")[col].var(ddof=1).mean())
        assert row["within_subject_sd"] == pytest.approx(wsd, rel=1e-4)
    before = h[(h["stage"] == "before") & (h["region"] != "all regions")]
    after = h[(h["stage"] == "after combat") & (h["region"] != "all regions")]
    assert (after["icc2_1"].to_numpy() > before["icc2_1"].to_numpy()).all()
    auc = h[h["region"] == "all regions"].set_index("stage")
    assert auc.loc["after combat", "site_auc"] <= 0.6
    assert auc.loc["before", "site_auc_centred"] > 0.85
    assert auc.loc["after combat", "site_auc_centred"] < auc.loc["before", "site_auc_centred"]
    # MS vs HC effect size after harmonisation within 10 % of the site-free truth
    ms = (scans.drop_duplicates(["participant_id", "session_id"])["participant_id"]
          .map(plan.participants.set_index("participant_id")["group"]) != "HC").to_numpy()
    wide = scans.pivot_table(index=["participant_id", "session_id"], columns="region",
                             values="r2star_harmonised", sort=True)
    tr = sessions.scan_truth(plan, splan).pivot_table(
        index=["participant_id", "session_id"], columns="region", values="r2star_nosite_true",
        sort=True)
    d_after, d_true = _d_table(wide, ms), _d_table(tr[wide.columns], ms)
    big = d_true.abs() >= 0.5
    assert big.sum() >= 3
    assert ((d_after[big] - d_true[big]).abs() <= 0.1 * d_true[big].abs()).all()
    # a later run without harmonisation drops the harmonised column
    assert main([str(bids), str(out), "group", "--no-report"]) == 0
    assert "r2star_harmonised" not in read_tsv(out / "group" / "regional_r2star.tsv")


def test_longitudinal_group_level_writes_change_table(tmp_path):
    bids, out, plan, splan = write_repeated_study(
        tmp_path, {"HC": 8, "RRMS": 8}, 2, 3, n_sessions=3, interval_years=1.5)
    assert main([str(bids), str(out), "group"]) == 0
    table = read_tsv(out / "group" / "longitudinal.tsv")
    assert set(table["group"]) == {"HC", "RRMS"}
    assert (table["ci_low"] < table["r2star_change_per_year"]).all()
    assert (table["r2star_change_per_year"] < table["ci_high"]).all()
    ses = read_tsv(out / "group" / "sessions.tsv")
    first = ses.groupby("participant_id")["years"].min()
    assert (first == 0).all() and ses["years"].max() > 2.5
    assert (out / "group" / "longitudinal.json").exists()
    report = (out / "report.html").read_text()
    assert 'id="repeated"' in report and 'id="longitudinal"' in report
    assert "random intercept and slope per participant" in report
    assert (out / "group" / "figures" / "region-caudate_desc-longitudinal_r2star.png").exists()


@pytest.mark.slow
def test_simulated_sessions_and_travelling_heads_layout(tmp_path):
    kwargs = dict(subjects_per_group={"RRMS": 1}, preset="fast", seed=4,
                  voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})
    long = simulate_cohort(tmp_path / "long", sites=1, sessions=3, interval_years=2.0, **kwargs)
    found = discover(long.bids_dir, masks=(long.masks_dir,))
    assert [s.label for s in found] == [f"sub-001_ses-0{k}" for k in (1, 2, 3)]
    assert all(not s.problems and s.dsegs and s.lesion_masks for s in found)
    ses = read_tsv(long.bids_dir / "sub-001" / "sub-001_sessions.tsv")
    age0 = float(read_tsv(long.bids_dir / "participants.tsv")["age"][0])
    truth_ses = read_tsv(long.truth_dir / "sessions.tsv")
    np.testing.assert_allclose(ses["age"], age0 + truth_ses["years"], atol=0.01)
    change = read_tsv(long.truth_dir / "lesion_change.tsv")
    assert (np.diff(change["lesion_count"]) >= 0).all()
    assert change["lesion_load_cm3"].iloc[-1] >= change["lesion_load_cm3"].iloc[0]
    rates = read_tsv(long.truth_dir / "change_rates.tsv")
    regions = read_tsv(long.truth_dir / "regions.tsv")
    cau = regions[regions["region"] == "caudate"]["r2star_nosite_true"].to_numpy()
    rate = rates.loc[rates["region"] == "caudate", "r2star_change_per_year_true"].iloc[0]
    np.testing.assert_allclose(np.diff(cau), rate * np.diff(truth_ses["years"]), rtol=1e-3)
    th = simulate_cohort(tmp_path / "th", sites=3, travelling_heads=True, site_bias=0.04,
                         **kwargs)
    found = discover(th.bids_dir)
    assert [s.session_id for s in found] == ["ses-site01", "ses-site02", "ses-site03"]
    sites = read_tsv(th.truth_dir / "sites.tsv")
    np.testing.assert_allclose(sorted(sites["r2star_bias"]), [0.96, 1.0, 1.04])
    reg = read_tsv(th.truth_dir / "regions.tsv")
    cau = reg[reg["region"] == "caudate"].merge(sites, on="site")
    np.testing.assert_allclose(cau["r2star_true"], cau["r2star_nosite_true"]
                               * cau["r2star_bias"], rtol=1e-5)
    with pytest.raises(ValueError, match="either sessions"):
        simulate_cohort(tmp_path / "bad", sessions=2, travelling_heads=True, **kwargs)
    with pytest.raises(ValueError, match="sessions must be"):
        simulate_cohort(tmp_path / "bad", sessions=1, **kwargs)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_participant_level_processes_every_session(tmp_path):
    """Simulated sessions through the real participant level (R2*, ANTs registration)."""
    cohort = simulate_cohort(tmp_path / "sim", subjects_per_group={"RRMS": 1}, sites=1,
                             preset="fast", seed=2, sessions=2, interval_years=3.0)
    out = tmp_path / "out"
    assert main([str(cohort.bids_dir), str(out), "participant", "--masks",
                 str(cohort.masks_dir)]) == 0
    reg = read_tsv(out / "group" / "regional_r2star.tsv")
    assert sorted(reg["session_id"].unique()) == ["ses-01", "ses-02"]
    truth_reg = read_tsv(cohort.truth_dir / "regions.tsv")
    m = reg[reg["hemisphere"] == "bilateral"].merge(
        truth_reg, on=["participant_id", "session_id", "region"])
    m = m[m["region"].isin(["caudate", "putamen", "globus_pallidus"])]
    assert len(m) == 6
    np.testing.assert_allclose(m["r2star_mean"], m["r2star_true"], rtol=0.04)
    les = read_tsv(out / "group" / "lesions.tsv").sort_values("session_id")
    change = read_tsv(cohort.truth_dir / "lesion_change.tsv").sort_values("session_id")
    np.testing.assert_allclose(les["lesion_load_cm3"], change["lesion_mask_cm3"], rtol=0.02)


def test_harmonise_leaves_scans_without_site_or_age_out(rng):
    feats = pd.DataFrame(rng.normal(30, 2, (40, 3)))
    site = np.array(["a", "b"] * 20, dtype=object)
    site[0] = None
    age = rng.uniform(20, 60, 40)
    age[1] = np.nan
    out, notes = harmonise(feats, site, ages=age, method="combat")
    assert out.iloc[:2].isna().all().all() and out.iloc[2:].notna().all().all()
    assert "2 scan(s) without site, age" in notes[0]
    with pytest.raises(ValueError, match="unknown harmonisation"):
        harmonise(feats, site, method="combat-xyz")
