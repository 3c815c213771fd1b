"""Recovery of annual R2* change and travelling-head harmonisation on simulated cohorts.

Regional tables, no images: every scan's regional R2* is the simulator's truth (site bias in,
R2* changed linearly at the participant's annual rate) plus Gaussian measurement noise with
the site's SD (0.3-0.8 s^-1; ``ironmap.sim.sessions.measured_regions``).

1. Longitudinal: per seed a cohort (default 30 HC, 30 RRMS, 10 SPMS, 10 PPMS at 3 sites, 3
   sessions one year apart); the mixed model's annual change per region and group
   (``ironmap.core.group.longitudinal``) against the group's expected change
   (``change_rates_group``): share of region x group cells whose 95 % CI holds the truth,
   bias (mean error per cell over seeds) and mean absolute error.
2. Travelling heads: per seed 24 participants (12 HC, 6 RRMS, 6 PPMS) at 7 sites with biases
   spread over +-4 %: ICC(2,1), ICC(3,1), within-subject SD and CoV (median over regions),
   site AUC (raw and participant-centred) before and after ComBat / ComBat with an age spline,
   and the MS-vs-HC Cohen's d against the site-free truth.

Usage::

    python benchmarks/longitudinal.py [--seeds 4] [--th-seeds 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from ironmap.core.group import reliability as rl
from ironmap.core.group.harmonise import harmonise
from ironmap.core.group.longitudinal import change_rate_table
from ironmap.sim import sessions, truth

LONG_COUNTS = {"HC": 30, "RRMS": 30, "SPMS": 10, "PPMS": 10}
TH_COUNTS = {"HC": 12, "RRMS": 6, "PPMS": 6}


def longitudinal(seeds: list[int], n_sessions: int, interval: float) -> dict:
    cells = []
    for seed in seeds:
        plan = truth.plan_cohort(LONG_COUNTS, 3, seed)
        splan = sessions.plan_longitudinal(plan, n_sessions, interval, seed)
        table = change_rate_table(sessions.measured_scans(plan, splan, seed), "r2star_mean")
        m = table.merge(sessions.group_rates_table(plan, splan), on=["region", "group"])
        cells.append(m.assign(seed=seed))
    m = pd.concat(cells, ignore_index=True)
    m["error"] = m["r2star_change_per_year"] - m["r2star_change_per_year_true"]
    inside = (m["ci_low"] <= m["r2star_change_per_year_true"]) & (
        m["r2star_change_per_year_true"] <= m["ci_high"])
    bias = m.groupby(["region", "group"])["error"].mean()
    return {"cells": int(len(m)), "coverage": float(inside.mean()),
            "coverage_per_seed": [float(v) for v in inside.groupby(m["seed"]).mean()],
            "bias_mean": float(m["error"].mean()),
            "bias_max_abs_cell": float(bias.abs().max()),
            "bias_per_group": {g: float(v) for g, v in m.groupby("group")["error"].mean().items()},
            "mae": float(m["error"].abs().mean()),
            "ci_halfwidth_median": float(((m["ci_high"] - m["ci_low"]) / 2).median()),
            "converged": float(m["converged"].mean()),
            "models": m["model"].value_counts().to_dict()}


def _stage(x: pd.DataFrame, scans: pd.DataFrame, ms: np.ndarray, d_true: pd.Series) -> dict:
    long = scans[["participant_id", "site"]].join(x).melt(
        id_vars=["participant_id", "site"], var_name="region", value_name="v")
    rel = rl.reliability_table(long.assign(hemisphere="bilateral"), "v")
    d = pd.Series({r: rl.cohens_d(x[r][ms], x[r][~ms]) for r in x.columns})
    big = d_true.abs() >= 0.5
    return {"icc2_1": float(rel["icc2_1"].median()), "icc3_1": float(rel["icc3_1"].median()),
            "wsd": float(rel["wsd"].median()), "cov": float(rel["cov"].median()),
            "site_auc": rl.site_auc(x.to_numpy(), scans["site"], scans["participant_id"]),
            "site_auc_centred": rl.site_auc(x.to_numpy(), scans["site"],
                                            scans["participant_id"], centre_subjects=True),
            "d_rel_error_max": float(((d[big] - d_true[big]) / d_true[big]).abs().max()),
            "d_rel_error_mean_d": float(d[big].mean() / d_true[big].mean() - 1)}


def travelling(seeds: list[int], bias: float) -> dict:
    out: dict = {}
    for seed in seeds:
        plan = truth.plan_cohort(TH_COUNTS, 7, seed)
        splan = sessions.plan_travelling(plan, bias, seed)
        reg = sessions.measured_scans(plan, splan, seed)
        key = ["participant_id", "session_id", "site", "age", "group"]
        wide = reg.pivot_table(index=key, columns="region", values="r2star_mean").reset_index()
        regions = [c for c in wide.columns if c not in key]
        tr = sessions.scan_truth(plan, splan).pivot_table(
            index=["participant_id", "session_id"], columns="region",
            values="r2star_nosite_true").loc[list(zip(wide["participant_id"],
                                                       wide["session_id"], strict=True))]
        ms = (wide["group"] != "HC").to_numpy()
        d_true = pd.Series({r: rl.cohens_d(tr[r].to_numpy()[ms], tr[r].to_numpy()[~ms])
                            for r in regions})
        stages = {"before": wide[regions]}
        for method in ("combat", "combat-gam"):
            stages[method] = harmonise(wide[regions], wide["site"], groups=wide["group"],
                                       ages=wide["age"], method=method)[0]
        for name, x in stages.items():
            out.setdefault(name, []).append(_stage(x, wide, ms, d_true))
    return {name: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            | {"d_rel_error_max_over_seeds": float(max(r["d_rel_error_max"] for r in rows)),
               "site_auc_max_over_seeds": float(max(r["site_auc"] for r in rows))}
            for name, rows in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="longitudinal cohorts (seeds 0..)")
    ap.add_argument("--th-seeds", type=int, default=5, help="travelling-head cohorts")
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--interval-years", type=float, default=1.0)
    ap.add_argument("--site-bias", type=float, default=0.04)
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = {"travelling_heads": travelling(list(range(100, 100 + args.th_seeds)),
                                          args.site_bias)}
    t1 = time.perf_counter()
    res["longitudinal"] = longitudinal(list(range(args.seeds)), args.sessions,
                                       args.interval_years)
    res["seconds"] = {"travelling_heads": t1 - t0, "longitudinal": time.perf_counter() - t1}
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
