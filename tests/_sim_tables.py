"""A simulated cohort as participant-level tables only (a perfect participant level).

Built from :func:`ironmap.sim.truth.plan_cohort`: regional R2* equals the truth the images
would carry (site bias included), lesion load and volumes equal their generator targets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.io.tables import write_tsv


def write_sim_study(root: Path, counts: dict[str, int], n_sites: int, seed: int):
    """Write ``root/bids`` (participants) and ``root/out/group`` tables; returns
    ``(bids, out, plan, regions_truth)``."""
    from ironmap.sim import truth

    plan = truth.plan_cohort(counts, n_sites, seed)
    bids, out = root / "bids", root / "out"
    (out / "group").mkdir(parents=True)
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "sim", "BIDSVersion": "1.9.0"}))
    p = plan.participants
    write_tsv(p[list(truth.PARTICIPANT_COLUMNS)], bids / "participants.tsv",
              truth.PARTICIPANTS_JSON)
    regions = truth.regions_table(plan)
    reg = regions.rename(columns={"r2star_true": "r2star_mean"}).drop(
        columns="r2star_agecorr_true")
    reg.insert(1, "session_id", np.nan)
    reg["n_voxels"] = 100
    write_tsv(reg, out / "group" / "regional_r2star.tsv")
    bias = p["site"].map(plan.sites.set_index("site")["r2star_bias"]).to_numpy()
    write_tsv(pd.DataFrame({
        "participant_id": p["participant_id"], "session_id": np.nan,
        "lesion_load_cm3": np.where(p["group"] == "HC", np.nan, p["lesion_load_target"]),
        "lesion_r2star_mean": plan.lesion_r2star * bias}), out / "group" / "lesions.tsv")
    write_tsv(pd.DataFrame({
        "participant_id": p["participant_id"], "session_id": np.nan,
        "cortical_gm_norm_cm3": p["cortical_gm_norm_target"],
        "wm_norm_cm3": p["wm_norm_target"]}), out / "group" / "volumes.tsv")
    return bids, out, plan, regions


def progressive_errors(counts: dict[str, int], n_sites: int, seeds, methods,
                       reference_age: float) -> dict[str, np.ndarray]:
    """Per age model, the error of the SPMS + PPMS mean of age-corrected R2* (s^-1) against
    the same values corrected with the true curve, per seed and bilateral region (regional R2*
    = the truth the images carry). ``pooled`` gets its prior from each cohort's regions."""
    import warnings

    from ironmap.core.group import age_correction, age_pooling
    from ironmap.sim import cohort, truth

    errors: dict[str, list] = {m: [] for m in methods}
    for seed in seeds:
        plan = truth.plan_cohort(counts, n_sites, seed)
        reg = truth.regions_table(plan)
        bil = reg[reg["hemisphere"] == "bilateral"].merge(
            plan.participants[["participant_id", "group", "age"]], on="participant_id")
        curves = plan.agecurves.set_index("region")
        data = [(region, d["age"].to_numpy(float), d["r2star_true"].to_numpy(float),
                 (d["group"] == "HC").to_numpy(), d["group"].isin(["SPMS", "PPMS"]).to_numpy())
                for region, d in bil.groupby("region")]
        pool = (age_pooling.pool_prior([(age[hc], y[hc]) for _, age, y, hc, _ in data])
                if "pooled" in methods else None)
        for region, age, y, hc, prog in data:
            a, b, c = curves.loc[region, ["a", "b", "c"]]
            true = (y - cohort.age_curve(age, a, b, c)
                    + cohort.age_curve(reference_age, a, b, c))
            for method in methods:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", age_correction.AgeModelWarning)
                    res = age_correction.correct_region(y, age, hc, reference_age, method=method,
                                                 pool=pool, n_boot=0)
                errors[method].append(np.mean(res.adjusted[prog] - true[prog]))
    return {m: np.asarray(e) for m, e in errors.items()}
