"""A small synthetic study written to the file contracts of docs/file-formats.md.

Used by the report tests to exercise the report without running the pipeline: a raw BIDS
tree (echoes, T1w, FLAIR, participants.tsv), per-subject derivatives (R2* map, fit flags,
labels, lesion mask, transforms, regional table, manifest) and the group tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.core.regions.names import REGIONS
from ironmap.io.nifti import save_image
from ironmap.io.outputs import derivative_path
from ironmap.io.tables import write_tsv
from ironmap.workflows.config import RunConfig

TE = (0.00492, 0.0246)
SHAPE = (24, 28, 12)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
TRUE_R2 = {r: 20.0 + 3.0 * i for i, r in enumerate(REGIONS)}


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.int16)
    for i in range(len(REGIONS) - 1):  # putamen is the union of its parts: no own label
        x = 3 + 3 * (i % 6)
        y = 8 + 10 * (i // 6)
        lab[x:x + 3, y:y + 4, 4:8] = 2 * i + 1
    return lab


def lesion_mask() -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[10:13, 20:23, 5:7] = True
    return m


def _write_subject(bids: Path, out: Path, pid: str, rng, r2_shift: float,
                   missing_region: str | None) -> None:
    anat = bids / pid / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    head = np.zeros(SHAPE, bool)
    head[2:22, 3:25, 1:11] = True
    labels = _labels()
    r2 = np.where(head, 25.0 + r2_shift, np.nan)
    r2[labels > 0] += labels[labels > 0]
    s0 = np.where(head, 1000.0, 0.0)
    for k, te in enumerate(TE, 1):
        sig = s0 * np.exp(-np.nan_to_num(r2) * te) + np.abs(rng.normal(0, 8, SHAPE))
        save_image(sig, AFFINE, anat / f"{pid}_echo-{k}_part-mag_MEGRE.nii.gz",
                   sidecar={"EchoTime": te})
    t1 = np.where(head, 600.0, 0.0) + np.where(labels > 0, 200.0, 0.0)
    save_image(t1, AFFINE, anat / f"{pid}_T1w.nii.gz", sidecar={})
    flair = np.where(head, 400.0, 0.0) + np.where(lesion_mask(), 500.0, 0.0)
    save_image(flair, AFFINE, anat / f"{pid}_FLAIR.nii.gz", sidecar={})
    flags = np.where(head, 0, 64).astype(np.uint16)
    save_image(r2, AFFINE, derivative_path(out, "r2starmap", pid),
               sidecar={"Units": "1/s", "EstimationMethod": "two_point", "EchoTime": list(TE)})
    save_image(flags, AFFINE, derivative_path(out, "fitflags", pid))
    save_image(labels, AFFINE, derivative_path(out, "dseg_r2star", pid))
    save_image(labels, AFFINE, derivative_path(out, "dseg_eroded", pid))
    save_image(lesion_mask().astype(np.uint8), AFFINE, derivative_path(out, "lesion_r2star", pid))
    from ironmap.spatial.registration import save_transform

    for name in ("xfm_flair_to_t1w", "xfm_megre_to_t1w"):
        save_transform(np.eye(4), derivative_path(out, name, pid))
    (out / "logs" / "manifests").mkdir(parents=True, exist_ok=True)
    (out / "logs" / "manifests" / f"{pid}.json").write_text(json.dumps(
        {"summary": {"registration_nmi": {"MEGRE": 1.3, "FLAIR": 1.25}}}))


def regional_rows(pid: str, r2_shift: float, missing_region: str | None) -> list[dict]:
    rows = []
    for region in REGIONS:
        value = np.nan if region == missing_region else TRUE_R2[region] + r2_shift
        rows.append({"participant_id": pid, "session_id": np.nan, "region": region,
                     "hemisphere": "bilateral", "r2star_mean": value, "r2star_median": value,
                     "r2star_sd": 1.0, "n_voxels": 40, "n_voxels_mask": 96,
                     "n_voxels_eroded": 48, "n_voxels_flagged": 8 if region == "caudate" else 0})
    return rows


def make_study(root: Path, rng: np.random.Generator, *,
               groups: dict[str, int] | None = None, missing_region: str | None = None,
               with_group_tables: bool = True, failed: tuple[str, ...] = ()) -> RunConfig:
    """Write the study under ``root`` and return the group-level RunConfig."""
    groups = groups or {"HC": 3, "RRMS": 3, "SPMS": 2}
    bids, out = root / "bids", root / "out"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "synthetic", "BIDSVersion": "1.10.0"}))
    parts, regional, lesions, volumes = [], [], [], []
    n = 0
    for g, count in groups.items():
        for _ in range(count):
            n += 1
            pid = f"sub-{n:03d}"
            shift = {"HC": 0.0, "RRMS": 1.5, "SPMS": 3.0, "PPMS": 3.5}.get(g, 2.0)
            parts.append({"participant_id": pid, "age": 25.0 + 3 * n, "sex": "FM"[n % 2],
                          "site": f"site-0{1 + n % 2}", "group": g,
                          "disease_duration": np.nan if g == "HC" else 5.0 + n,
                          "edss": np.nan if g == "HC" else 2.0 + 0.5 * (n % 4)})
            if pid in failed:
                continue
            _write_subject(bids, out, pid, rng, shift, missing_region)
            rows = regional_rows(pid, shift, missing_region)
            regional += rows
            own = pd.DataFrame(rows).drop(columns=["participant_id", "session_id"])
            write_tsv(own, derivative_path(out, "regions_table", pid))
            lesions.append({"participant_id": pid, "session_id": np.nan,
                            "lesion_load_cm3": 0.0 if g == "HC" else 3.0 + n,
                            "lesion_count": 0 if g == "HC" else 2 + n % 3,
                            "lesion_r2star_mean": np.nan if g == "HC" else 18.0 - 0.2 * n,
                            "lesion_r2star_median": np.nan, "n_voxels": 18})
            cgm, wm = 620.0 - 4 * n + rng.normal(0, 5), 700.0 - 3 * n + rng.normal(0, 5)
            volumes.append({"participant_id": pid, "session_id": np.nan, "gm_cm3": cgm + 60,
                            "cortical_gm_cm3": cgm, "wm_cm3": wm, "csf_cm3": 150.0,
                            "scaling_factor": 1.0, "gm_norm_cm3": cgm + 60,
                            "cortical_gm_norm_cm3": cgm, "wm_norm_cm3": wm,
                            "csf_norm_cm3": 150.0})
    for pid in failed:
        (bids / pid / "anat").mkdir(parents=True, exist_ok=True)
    write_tsv(pd.DataFrame(parts), bids / "participants.tsv")
    group = out / "group"
    write_tsv(pd.DataFrame(regional), group / "regional_r2star.tsv")
    write_tsv(pd.DataFrame(lesions), group / "lesions.tsv")
    write_tsv(pd.DataFrame(volumes), group / "volumes.tsv")
    write_tsv(pd.DataFrame([{"participant_id": p, "session_id": np.nan,
                             "error": f"{p}: GRE echo 2 has no EchoTime"} for p in failed],
                           columns=["participant_id", "session_id", "error"]),
              out / "logs" / "failures.tsv")
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False)
    if with_group_tables:
        from ironmap.workflows.group_level import run_group_level

        run_group_level(cfg)
    return cfg
