"""Group level on a fake study with known truth: outputs, recovered effects, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from _group_fixtures import CURVES, REF_AGE, write_study
from ironmap.cli.main import main
from ironmap.io.tables import read_dictionary, read_tsv
from ironmap.workflows.config import RunConfig
from ironmap.workflows.group_level import run_group_level

COUNTS = {"HC": 40, "RRMS": 30, "SPMS": 8, "PPMS": 8}


def _cfg(bids, out, **kw) -> RunConfig:
    return RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False,
                     **kw)


@pytest.fixture
def study(tmp_path, rng):
    return write_study(tmp_path, rng, COUNTS)


def test_group_level_writes_every_output_with_dictionaries(study):
    bids, out, _ = study
    assert run_group_level(_cfg(bids, out, reference_age=REF_AGE)) == 0
    g = out / "group"
    for name in ("table1", "table2", "agefit", "regional_r2star"):
        table = read_tsv(g / f"{name}.tsv")
        dictionary = read_dictionary(g / f"{name}.tsv")
        missing = [c for c in table.columns if c not in dictionary]
        if name != "regional_r2star":  # participant-level columns are described there
            assert not missing, (name, missing)
    regional = read_tsv(g / "regional_r2star.tsv")
    assert len(regional) == sum(COUNTS.values()) * len(CURVES) * 2
    assert regional["r2star_agecorr"].notna().all()
    assert read_dictionary(g / "regional_r2star.tsv")["r2star_agecorr"]["Units"] == "1/s"
    doc = json.loads((g / "stats.json").read_text())
    assert doc["reference_age_years"] == REF_AGE
    for rec in doc["tests"]:
        assert {"statistic", "p", "n", "convention"} <= set(rec), rec
    kinds = {r["test"] for r in doc["tests"]}
    assert {"mann_whitney", "correlation", "stepwise_regression", "ttest_sex",
            "mixed_group_effect", "multiple_regression"} <= kinds
    t1 = read_tsv(g / "table1.tsv").set_index("group")
    assert list(t1.index) == ["MS", "RRMS", "SPMS", "PPMS", "HC"]
    assert t1.loc["HC", "n"] == 40 and t1.loc["MS", "n"] == 46
    assert t1.loc["HC", "n_female"] + t1.loc["HC", "n_male"] == 40


def test_group_level_recovers_truth(study):
    bids, out, truth = study
    assert run_group_level(_cfg(bids, out, reference_age=REF_AGE)) == 0
    g = out / "group"
    regional = read_tsv(g / "regional_r2star.tsv")
    bil = regional[regional["hemisphere"] == "bilateral"].merge(
        truth, on=["participant_id", "region"])
    # age-corrected values match the truth up to the measurement noise (0.5 s^-1)
    err = bil["r2star_agecorr"] - bil["r2star_agecorr_true"]
    assert abs(err.mean()) < 0.2 and err.std() < 0.7
    t2 = read_tsv(g / "table2.tsv").set_index("region")
    for region in CURVES:
        sub = bil[bil["region"] == region]
        for group, n in COUNTS.items():
            true_mean = sub.loc[sub["group"] == group, "r2star_agecorr_true"].mean()
            se = np.hypot(sub.loc[sub["group"] == group, "r2star_agecorr_true"].std(), 0.5)
            assert abs(t2.loc[region, f"{group}_mean"] - true_mean) < 3 * se / np.sqrt(n) + 0.3
        # the built-in effects: SPMS/PPMS shifted by 4 s^-1, EDSS effect in patients
        assert t2.loc[region, "mw_SPMS_vs_HC_p"] < 0.001
        assert t2.loc[region, "mw_MS_vs_HC_p"] < 0.05
        assert "edss" in t2.loc[region, "model_selected"].split(";")
        assert t2.loc[region, "beta_edss"] > 0.5
    fits = read_tsv(g / "agefit.tsv")
    bilateral = fits[(fits["hemisphere"] == "bilateral") & (fits["model"] == "saturation")]
    assert len(bilateral) >= 2
    ages = np.linspace(12.0, 73.0, 50)
    for _, row in bilateral.iterrows():
        a, b, c = CURVES[row["region"]]
        assert row["b_ci_low"] < b < row["b_ci_high"], row["region"]
        # a and c trade off when the youngest control is already near saturation; the
        # curve over the controls' age range is what the adjustment uses
        fitted = row["a"] * (1 - np.exp(-row["b"] * ages)) + row["c"]
        diff = fitted - (a * (1 - np.exp(-b * ages)) + c)
        assert np.sqrt(np.mean(diff**2)) < 0.6 and np.max(np.abs(diff)) < 1.5


def test_rerun_replaces_agecorr_column_and_options(study):
    bids, out, _ = study
    assert run_group_level(_cfg(bids, out)) == 0
    assert run_group_level(_cfg(bids, out, fdr=True, per_site_agecorr=True)) == 0
    regional = read_tsv(out / "group" / "regional_r2star.tsv")
    assert list(regional.columns).count("r2star_agecorr") == 1
    t2 = read_tsv(out / "group" / "table2.tsv")
    assert "mw_SPMS_vs_HC_q" in t2 and "q_edss_patients" in t2
    assert (t2["mw_SPMS_vs_HC_q"] >= t2["mw_SPMS_vs_HC_p"] - 1e-12).all()
    fits = read_tsv(out / "group" / "agefit.tsv")
    assert {"all", "site-01", "site-02", "site-03"} <= set(fits["site"])
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert doc["settings"]["per_site"] is True and doc["conventions"]["fdr"] != "none"


def _corrupt(bids, out):
    p = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    p.loc[0, "age"] = "n/a"          # missing age
    p.loc[1, "age"] = "forty"        # non-numeric age
    p.loc[2, "group"] = "NMOSD"      # unknown group label
    idx = p.index[p["group"] == "RRMS"]
    p.loc[idx[0], "edss"] = "12"     # EDSS out of range
    p.loc[idx[1], "edss"] = "high"   # non-numeric EDSS
    p = pd.concat([p, p.iloc[[5]]], ignore_index=True)  # duplicated id
    p.to_csv(bids / "participants.tsv", sep="\t", index=False)
    reg = pd.read_csv(out / "group" / "regional_r2star.tsv", sep="\t",
                      dtype={"participant_id": str})
    reg.loc[reg["region"] == "red_nucleus", "r2star_mean"] = np.nan
    reg.to_csv(out / "group" / "regional_r2star.tsv", sep="\t", index=False, na_rep="n/a")
    return p


def test_bad_input_is_named_counted_and_the_rest_analysed(study, caplog):
    bids, out, _ = study
    p = _corrupt(bids, out)
    with caplog.at_level(logging.WARNING):
        assert run_group_level(_cfg(bids, out)) == 0
    doc = json.loads((out / "group" / "stats.json").read_text())
    ex = doc["exclusions"]
    assert set(ex["participants_excluded"]) == {"sub-001", "sub-002", "sub-003", "sub-006"}
    assert ex["counts"]["edss: value ignored"] == 2
    text = caplog.text
    for fragment in ("sub-001: age is missing", "sub-002: age is not a number",
                     "'NMOSD' is not a known group label", "sub-006: participant_id appears",
                     "edss = 12 is outside 0-10", "edss is not a number",
                     "red_nucleus (bilateral): no R2* values"):
        assert fragment in text, fragment
    t2 = read_tsv(out / "group" / "table2.tsv")
    assert "red_nucleus" not in set(t2["region"]) and len(t2) == 2
    n_kept = len(p) - 1 - 4  # duplicate row and four excluded ids
    assert doc["n_participants"] == n_kept - 0
    t1 = read_tsv(out / "group" / "table1.tsv").set_index("group")
    assert t1.loc["MS", "n"] + t1.loc["HC", "n"] == doc["n_participants"]


def test_too_few_controls_is_reported(tmp_path, rng):
    bids, out, _ = write_study(tmp_path, rng, {"HC": 2, "RRMS": 12})
    assert run_group_level(_cfg(bids, out)) == 0
    fits = read_tsv(out / "group" / "agefit.tsv")
    assert (fits["model"] == "none").all()
    assert fits["warning"].str.contains("no age model").all()
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert any("controls" in n for n in doc["exclusions"]["notes"])


def test_cli_group_level_and_unusable_input(study, tmp_path):
    bids, out, _ = study
    assert main([str(bids), str(out), "group", "--no-report", "--fdr"]) == 0
    assert (out / "group" / "table2.tsv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(bids), str(empty), "group", "--no-report"]) == 2
    bad = tmp_path / "study.toml"
    bad.write_text("[colums]\ngroup = 'x'\n")
    assert main([str(bids), str(out), "group", "--no-report", "--config", str(bad)]) == 2


def test_study_toml_sets_columns_and_thresholds(study, tmp_path):
    bids, out, _ = study
    p = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    p = p.rename(columns={"group": "diagnosis", "edss": "EDSS_score"})
    p.to_csv(bids / "participants.tsv", sep="\t", index=False)
    cfg = tmp_path / "study.toml"
    cfg.write_text('[columns]\ngroup = "diagnosis"\nedss = "EDSS_score"\n'
                   '[stats]\np_enter = 0.01\np_remove = 0.02\nmixed_model = false\n'
                   '[agecorr]\nreference_age = 40.0\n')
    assert run_group_level(_cfg(bids, out, study_config=cfg)) == 0
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert doc["reference_age_years"] == 40.0 and doc["settings"]["p_enter"] == 0.01
    t2 = read_tsv(out / "group" / "table2.tsv")
    assert not any(c.startswith("mixed_") for c in t2.columns)
    assert t2["r_edss_patients"].notna().all()


def test_one_session_per_participant(study):
    bids, out, _ = study
    path = out / "group" / "regional_r2star.tsv"
    reg = read_tsv(path)
    reg["session_id"] = "ses-1"
    later = reg.assign(session_id="ses-2", r2star_mean=reg["r2star_mean"] + 100.0)
    pd.concat([reg, later]).to_csv(path, sep="\t", index=False, na_rep="n/a")
    assert run_group_level(_cfg(bids, out)) == 0
    result = read_tsv(path)
    assert result.loc[result["session_id"] == "ses-2", "r2star_agecorr"].isna().all()
    assert result.loc[result["session_id"] == "ses-1", "r2star_agecorr"].notna().all()
    t2 = read_tsv(out / "group" / "table2.tsv").set_index("region")
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert any("several sessions" in n for n in doc["exclusions"]["notes"])
    assert run_group_level(_cfg(bids, out, session_label=("2",))) == 0
    t2_later = read_tsv(out / "group" / "table2.tsv").set_index("region")
    np.testing.assert_allclose(t2_later["HC_mean"] - t2["HC_mean"], 100.0, atol=1e-3)
