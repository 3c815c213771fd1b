"""A fake study for group-level tests: participants.tsv + participant-level group tables.

Known truth: per region an age curve ``a (1 - exp(-b age)) + c``, a group shift of the
age-corrected value, an EDSS effect in patients, and lesion R2* that falls with lesion load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.io.tables import write_tsv

CURVES = {"caudate": (9.0, 0.06, 14.0), "globus_pallidus": (16.0, 0.10, 24.0),
          "red_nucleus": (13.0, 0.07, 21.0)}
SHIFT = {"HC": 0.0, "RRMS": 1.0, "SPMS": 4.0, "PPMS": 4.0}
EDSS_SLOPE = 0.8  # s^-1 per EDSS point (patients, age-corrected R2*)
NOISE_SD = 0.5
REF_AGE = 35.0


def write_study(root: Path, rng: np.random.Generator, counts: dict[str, int],
                n_sites: int = 3) -> tuple[Path, Path, pd.DataFrame]:
    """Write ``root/bids`` and ``root/out/group`` tables; returns (bids, out, truth)."""
    bids, out = root / "bids", root / "out"
    (out / "group").mkdir(parents=True)
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "fake", "BIDSVersion": "1.9.0"}))
    rows = []
    for group, n in counts.items():
        for _ in range(n):
            patient = group != "HC"
            rows.append({"group": group, "age": round(float(rng.uniform(10, 75)), 1),
                         "sex": "F" if rng.random() < 0.6 else "M",
                         "edss": float(rng.integers(0, 15) / 2) if patient else np.nan,
                         "disease_duration": round(float(rng.uniform(1, 25)), 1)
                         if patient else np.nan})
    p = pd.DataFrame(rows)
    p.insert(0, "participant_id", [f"sub-{i + 1:03d}" for i in range(len(p))])
    p["site"] = [f"site-{i % n_sites + 1:02d}" for i in range(len(p))]
    write_tsv(p, bids / "participants.tsv",
              {"age": {"Description": "age", "Units": "years"}})
    truth, regional = [], []
    edss = p["edss"].fillna(0).to_numpy()
    for region, (a, b, c) in CURVES.items():
        corr = (a * (1 - np.exp(-b * REF_AGE)) + c + p["group"].map(SHIFT).to_numpy()
                + EDSS_SLOPE * (edss - 3.0) * (p["group"] != "HC").to_numpy())
        value = corr + a * (np.exp(-b * REF_AGE) - np.exp(-b * p["age"].to_numpy()))
        value = value + rng.normal(0, NOISE_SD, len(p))
        for hemi in ("bilateral", "left"):
            v = value + (rng.normal(0, 0.3, len(p)) if hemi == "left" else 0.0)
            regional.append(pd.DataFrame({
                "participant_id": p["participant_id"], "session_id": "n/a", "region": region,
                "hemisphere": hemi, "r2star_mean": v, "r2star_median": v, "r2star_sd": 3.0,
                "n_voxels": 100, "n_voxels_mask": 150, "n_voxels_eroded": 50,
                "n_voxels_flagged": 0}))
        truth.append(pd.DataFrame({"participant_id": p["participant_id"], "region": region,
                                   "r2star_agecorr_true": corr}))
    reg = pd.concat(regional, ignore_index=True)
    reg["session_id"] = np.nan
    write_tsv(reg, out / "group" / "regional_r2star.tsv",
              {"r2star_mean": {"Description": "mean R2*", "Units": "1/s"}})
    patients = (p["group"] != "HC").to_numpy()
    load = np.where(patients, np.exp(rng.normal(1.5, 0.8, len(p))), 0.0)
    lesion_r2 = np.where(patients, 18.0 - 0.3 * load + rng.normal(0, 0.5, len(p)), np.nan)
    write_tsv(pd.DataFrame({"participant_id": p["participant_id"], "session_id": np.nan,
                            "lesion_load_cm3": load, "lesion_count": 3,
                            "lesion_r2star_mean": lesion_r2,
                            "lesion_r2star_median": lesion_r2, "n_voxels": 20}),
              out / "group" / "lesions.tsv")
    gm = rng.normal(600, 40, len(p))
    wm = rng.normal(700, 45, len(p))
    write_tsv(pd.DataFrame({"participant_id": p["participant_id"], "session_id": np.nan,
                            "gm_cm3": gm + 50, "cortical_gm_cm3": gm, "wm_cm3": wm,
                            "csf_cm3": 300.0, "scaling_factor": 1.2,
                            "gm_norm_cm3": (gm + 50) * 1.2, "cortical_gm_norm_cm3": gm * 1.2,
                            "wm_norm_cm3": wm * 1.2, "csf_norm_cm3": 360.0}),
              out / "group" / "volumes.tsv")
    return bids, out, pd.concat(truth, ignore_index=True).merge(p, on="participant_id")
