"""Group level with each age model: outputs, fixed curves from study.toml, bad ages."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from _group_fixtures import REF_AGE, write_study
from _sim_tables import write_sim_study
from ironmap.cli.main import main
from ironmap.core.group import age_correction as agecorr
from ironmap.io.tables import read_dictionary, read_tsv
from ironmap.report.methods import build_methods
from ironmap.workflows.config import RunConfig
from ironmap.workflows.group_level import run_group_level

COUNTS = {"HC": 30, "RRMS": 20, "SPMS": 6, "PPMS": 6}


def _cfg(bids, out, **kw) -> RunConfig:
    return RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False,
                     reference_age=REF_AGE, **kw)


@pytest.fixture
def study(tmp_path, rng):
    return write_study(tmp_path, rng, COUNTS)


@pytest.mark.parametrize("model", ["auto", "seed", "prior", "linear", "none", "pooled"])
def test_each_age_model_runs_and_is_recorded(study, model):
    bids, out, _ = study
    assert run_group_level(_cfg(bids, out, age_model=model)) == 0
    g = out / "group"
    fits = read_tsv(g / "agefit.tsv")
    assert set(fits["method"]) == {model}
    assert set(read_dictionary(g / "agefit.tsv")) == set(fits.columns)
    doc = json.loads((g / "stats.json").read_text())
    assert doc["age_model"]["requested"] == model
    assert set(doc["age_model"]["per_region"].values()) == {model}
    reg = read_tsv(g / "regional_r2star.tsv")
    assert "r2star_agecorr_sd" in read_dictionary(g / "regional_r2star.tsv")
    if model == "none":
        np.testing.assert_allclose(reg["r2star_agecorr"], reg["r2star_mean"], rtol=1e-6)
        assert (reg["r2star_agecorr_sd"] == 0).all() and not doc["age_model"]["bands"]
    else:
        assert (reg["r2star_agecorr_sd"] > 0).mean() > 0.95
        assert (fits["n_boot"] == 200).all()
        band = doc["age_model"]["bands"]["caudate"]
        assert len(band["age"]) == len(band["low"]) == len(band["high"]) == 60
    text = " ".join(build_methods({"control_label": "HC"}, agefit=fits, stats=doc).paragraphs)
    assert doc["age_model"]["descriptions"][model].split(",")[0] in text


def test_cli_age_model_option_wins_over_study_toml(study, tmp_path):
    bids, out, _ = study
    cfg = tmp_path / "study.toml"
    cfg.write_text('[agecorr]\nmodel = "linear"\nbootstrap = 0\n')
    assert main([str(bids), str(out), "group", "--no-report", "--config", str(cfg)]) == 0
    fits = read_tsv(out / "group" / "agefit.tsv")
    assert set(fits["method"]) == {"linear"} and (fits["n_boot"] == 0).all()
    assert read_tsv(out / "group" / "regional_r2star.tsv")["r2star_agecorr_sd"].isna().all()
    assert main([str(bids), str(out), "group", "--no-report", "--config", str(cfg),
                 "--age-model", "seed"]) == 0
    assert set(read_tsv(out / "group" / "agefit.tsv")["method"]) == {"seed"}


def test_fixed_true_curves_give_the_true_corrected_values(tmp_path):
    """Simulated cohort without site bias: with the simulator's curves handed in through
    study.toml, every corrected value equals the truth to the TSV's rounding."""
    bids, out, plan, regions = write_sim_study(
        tmp_path, {"HC": 12, "RRMS": 8, "SPMS": 3, "PPMS": 3}, 2, 4)
    path = out / "group" / "regional_r2star.tsv"
    reg = read_tsv(path)
    bias = plan.participants.set_index("participant_id")["site"].map(
        plan.sites.set_index("site")["r2star_bias"])
    reg["r2star_mean"] = reg["r2star_mean"] / reg["participant_id"].map(bias)  # no site bias
    reg.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.10g")
    toml = ["[agecorr]", "model = \"auto\""]
    for _, row in plan.agecurves.iterrows():
        toml += [f"[agecorr.fixed.{row['region']}]", f"a = {row['a']!r}", f"b = {row['b']!r}",
                 f"c = {row['c']!r}"]
    (tmp_path / "study.toml").write_text("\n".join(toml) + "\n")
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False,
                    reference_age=plan.reference_age, study_config=tmp_path / "study.toml")
    assert run_group_level(cfg) == 0
    got = read_tsv(path).merge(regions, on=["participant_id", "region", "hemisphere"])
    assert len(got) == len(regions)
    np.testing.assert_allclose(got["r2star_agecorr"], got["r2star_agecorr_true"], rtol=1e-5)
    fits = read_tsv(out / "group" / "agefit.tsv")
    assert set(fits["method"]) == {"fixed"}


@pytest.mark.parametrize(("table", "fragment"), [
    ("[agecorr.fixed.caudate]\na = 9.0\nb = 0.05\n", "needs exactly the keys a, b, c"),
    ("[agecorr.fixed.caudate]\na = 9.0\nb = -0.05\nc = 1.0\n", "b > 0"),
    ("[agecorr.fixed.caudate]\na = 'x'\nb = 0.05\nc = 1.0\n", "must be numbers"),
    ("[agecorr]\nmodel = 'cubic'\n", "model = 'cubic'"),
])
def test_bad_age_settings_stop_with_a_message(study, tmp_path, caplog, table, fragment):
    bids, out, _ = study
    (tmp_path / "study.toml").write_text(table)
    with caplog.at_level(logging.ERROR):
        assert run_group_level(_cfg(bids, out, study_config=tmp_path / "study.toml")) == 2
    assert fragment in caplog.text


def test_implausible_and_non_numeric_ages_exclude_the_participant(study, caplog):
    bids, out, _ = study
    p = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    p.loc[0, "age"] = "150"
    p.loc[1, "age"] = "-3"
    p.loc[2, "age"] = "35 y"
    p.to_csv(bids / "participants.tsv", sep="\t", index=False)
    with caplog.at_level(logging.WARNING):
        assert run_group_level(_cfg(bids, out)) == 0
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert {"sub-001", "sub-002", "sub-003"} <= set(doc["exclusions"]["participants_excluded"])
    for fragment in ("sub-001: age is above 120 years", "sub-002: age is negative",
                     "sub-003: age is not a number"):
        assert fragment in caplog.text, fragment
    reg = read_tsv(out / "group" / "regional_r2star.tsv")
    gone = reg["participant_id"].isin(["sub-001", "sub-002", "sub-003"])
    assert reg.loc[gone, "r2star_agecorr"].isna().all()
    assert reg.loc[~gone, "r2star_agecorr"].notna().all()


def test_controls_of_one_age_exclude_the_region_by_name(study):
    bids, out, _ = study
    p = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    p.loc[p["group"] == "HC", "age"] = "40"
    p.to_csv(bids / "participants.tsv", sep="\t", index=False)
    assert run_group_level(_cfg(bids, out)) == 0
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert any("caudate (bilateral): no age model: all 30 controls are aged 40 years" in n
               for n in doc["exclusions"]["notes"])
    assert set(doc["age_model"]["per_region"].values()) == {"excluded"}
    assert read_tsv(out / "group" / "regional_r2star.tsv")["r2star_agecorr"].isna().all()
    assert not (out / "group" / "table2.tsv").read_text().strip()  # nothing to compare
    text = " ".join(build_methods({}, agefit=read_tsv(out / "group" / "agefit.tsv"),
                                  stats=doc).paragraphs)
    assert "no age model could be fitted in any region (caudate" in text
    assert "controls all of one age" in text


def test_patients_older_than_every_control_are_reported(study):
    bids, out, _ = study
    p = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    hc = p["group"] == "HC"
    p.loc[hc, "age"] = np.minimum(p.loc[hc, "age"].astype(float), 55.0).astype(str)
    p.to_csv(bids / "participants.tsv", sep="\t", index=False)
    assert run_group_level(_cfg(bids, out)) == 0
    fits = read_tsv(out / "group" / "agefit.tsv")
    row = fits[(fits["region"] == "caudate") & (fits["hemisphere"] == "bilateral")].iloc[0]
    older = int((p.loc[~hc, "age"].astype(float) > 55.0).sum())
    assert older > 0 and row["n_extrapolated"] >= older
    assert "saturation curve" in row["extrapolation"]
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert any("outside the controls'" in n for n in doc["exclusions"]["notes"])


def test_demo_cohort_spans_the_seed_control_ages_with_two_controls_per_site():
    """The demo's cohort design: controls over 18-57 y, at least two per site, and every
    region gets the auto saturation curve on them."""
    import inspect

    from ironmap.sim import truth
    from ironmap.workflows import demo

    assert 'control_ages="span"' in inspect.getsource(demo._steps)
    for seed in (0, 1):
        plan = truth.plan_cohort(demo.DEMO_COUNTS, 2, seed, control_ages="span")
        p = plan.participants
        hc = p[p["group"] == "HC"]
        assert hc["age"].min() == 18.0 and hc["age"].max() == 57.0
        assert hc.groupby("site").size().min() >= 2
        for site, d in hc.groupby("site"):
            assert np.ptp(d["age"]) >= 20, site  # young and old controls at every site
        regions = truth.regions_table(plan)
        bil = regions[regions["hemisphere"] == "bilateral"].merge(
            p[["participant_id", "group", "age"]], on="participant_id")
        for region, d in bil.groupby("region"):
            res = agecorr.correct_region(d["r2star_true"], d["age"], d["group"] == "HC", 32.0,
                                         n_boot=50, label=region)
            assert res.fit.method == "auto" and res.fit.model == "saturation", region
            assert np.isfinite(res.adjusted).all() and np.isfinite(res.sd).all()
