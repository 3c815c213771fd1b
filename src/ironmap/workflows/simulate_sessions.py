"""Write a simulated cohort with repeated scans: longitudinal sessions or travelling heads.

Raw BIDS with sessions (``sub-X/ses-Y/anat/...``), ``participants.tsv`` and one
``sub-X/sub-X_sessions.tsv`` per participant (age and site at each session), rater masks per
session, and the truth tables (``docs/longitudinal.md``). Generator: :mod:`ironmap.sim.sessions`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.io.atomic import write_json
from ironmap.io.tables import write_tsv
from ironmap.sim import anatomy, images, poses, sessions
from ironmap.sim import truth as truth_tables
from ironmap.sim.images import SubjectTruth
from ironmap.sim.subject import make_geometry
from ironmap.workflows.simulated_dataset import (
    SimulatedCohort,
    prepare_out_dir,
    write_dataset_files,
    write_subject,
    write_truth_json,
)

log = logging.getLogger(__name__)

SESSIONS_JSON = {
    "session_id": {"Description": "Session label"},
    "age": {"Description": "Age at the session", "Units": "years"},
    "site": {"Description": "Acquisition site (scanner) of the session"},
}


def _d(desc: str, units: str | None = None) -> dict[str, str]:
    return {"Description": desc, **({"Units": units} if units else {})}


DICTIONARIES = {
    "scans": {"participant_id": _d("Participant"), "session_id": _d("Session"),
              "site": _d("Site of the scan"), "group": _d("Diagnostic group"),
              "age": _d("Age at the scan", "years"),
              "years": _d("Time since the participant's first scan", "years"),
              "region": _d("Canonical region"),
              "r2star_true": _d("R2* the images carry (site bias included)", "1/s"),
              "r2star_nosite_true": _d("R2* before the site bias", "1/s")},
    "change_rates": {"participant_id": _d("Participant"), "group": _d("Diagnostic group"),
                     "region": _d("Canonical region"),
                     "r2star_change_per_year_true": _d("Annual R2* change of the "
                                                       "participant", "1/s/year")},
    "change_rates_group": {"region": _d("Canonical region"), "group": _d("Diagnostic group"),
                           "r2star_change_per_year_true": _d(
                               "Expected annual R2* change of the group (age-curve slope "
                               "averaged over its participants + the group's MS change)",
                               "1/s/year")},
    "sites": {"site": _d("Site"), "manufacturer": _d("Scanner manufacturer"),
              "r2star_bias": _d("Multiplicative R2* bias of the site"),
              "intensity_scale": _d("Vendor/site intensity scale of all images"),
              "noise_sd": _d("Regional measurement noise SD of the site (regional tables "
                             "only)", "1/s"),
              "snr_factor": _d("Image SNR of the site relative to the protocol's")},
    "lesion_change": {"participant_id": _d("Participant"), "session_id": _d("Session"),
                      "years": _d("Time since the first scan", "years"),
                      "lesion_count": _d("Lesions in the phantom"),
                      "new_lesions": _d("Lesions added since the first scan"),
                      "enlarged_lesions": _d("Lesions enlarged since the first scan"),
                      "lesion_load_cm3": _d("Lesion volume in the phantom", "cm3"),
                      "lesion_mask_cm3": _d("Volume of the rater lesion mask", "cm3")},
}


def simulate_repeated(out: Path, *, overwrite: bool, counts: dict, n_sites: int, protocol,
                      preset: str, seed: int, nprocs: int, n_sessions: int | None,
                      interval_years: float, travelling_heads: bool,
                      site_bias: float) -> SimulatedCohort:
    """Simulate and write a repeated-scan cohort (called by ``simulate_cohort``).

    Parameters
    ----------
    out : pathlib.Path
        The simulation's folder.
    overwrite : bool
        Replace an earlier simulation.
    counts : dict of str to int
        Participants per group.
    n_sites : int
        Sites.
    protocol : Protocol
        The acquisition protocol.
    preset : str
        The resolution preset.
    seed : int
        Seed of every draw.
    nprocs : int
        Scans simulated in parallel.
    n_sessions : int or None
        Sessions per participant (longitudinal design).
    interval_years : float
        Years between sessions.
    travelling_heads : bool
        Every participant at every site instead.
    site_bias : float
        Largest relative R2* bias of a site.

    Returns
    -------
    SimulatedCohort
        Paths of the BIDS, mask and truth folders.
    """
    t0 = time.perf_counter()
    plan = truth_tables.plan_cohort(counts, n_sites, seed)
    if travelling_heads:
        splan = sessions.plan_travelling(plan, site_bias, seed)
    else:
        splan = sessions.plan_longitudinal(plan, n_sessions, interval_years, seed)
    prepare_out_dir(out, overwrite)
    bids, truth_dir = out / "bids", out / "truth"
    masks = bids / "derivatives" / "raters"
    write_dataset_files(bids, masks, plan.participants, preset)
    _write_sessions_tsv(bids, splan.sessions)
    jobs = _jobs(plan, splan, protocol, seed, bids)
    results = _run(jobs, nprocs)
    _write_truth(truth_dir, plan, splan, results, protocol,
                 {"preset": preset, "seed": seed, "sites": n_sites,
                  "subjects_per_group": counts, "noise": bool(protocol.noise),
                  "design": splan.design, "sessions": n_sessions,
                  "interval_years": interval_years if not travelling_heads else None,
                  "site_bias": site_bias if travelling_heads else None})
    seconds = time.perf_counter() - t0
    log.info("simulated %d scans of %d subjects (%s) in %.1f s -> %s", len(jobs),
             len(plan.participants), splan.design, seconds, out)
    return SimulatedCohort(out, bids, truth_dir, masks, len(plan.participants), seconds)


def _write_sessions_tsv(bids: Path, table: pd.DataFrame) -> None:
    for pid, rows in table.groupby("participant_id", sort=True):
        write_tsv(rows[["session_id", "age", "site"]], bids / pid / f"{pid}_sessions.tsv",
                  SESSIONS_JSON, float_format="%.10g")


def _jobs(plan, splan, protocol, seed: int, bids: Path) -> list[tuple]:
    r2 = sessions.session_r2star(plan, splan)
    sites = splan.sites.set_index("site")
    index = {pid: i for i, pid in enumerate(plan.participants["participant_id"])}
    rows = {r["participant_id"]: r for r in plan.participants.to_dict("records")}
    jobs = []
    for k, scan in enumerate(splan.sessions.to_dict("records")):
        pid = scan["participant_id"]
        i = index[pid]
        site = sites.loc[scan["site"]].to_dict()
        jobs.append((rows[pid], site, r2.iloc[k].to_dict(), float(plan.lesion_r2star[i]),
                     protocol, seed, i, str(bids), scan["session_id"], float(scan["years"]), k))
    return jobs


def _run(jobs: list[tuple], nprocs: int) -> list[dict]:
    if nprocs > 1 and len(jobs) > 1:
        from ironmap.parallel import process_pool

        with process_pool(nprocs) as pool:
            return list(pool.map(_simulate_scan, jobs))
    return [_simulate_scan(job) for job in jobs]


def _simulate_scan(job) -> dict:
    """Simulate and write one scan; returns its truth rows."""
    row, site, region_r2, lesion_r2, protocol, seed, index, bids, ses, years, k = job
    geom0 = make_geometry(row, np.random.default_rng([seed, index, 1]))
    geom, change = sessions.session_geometry(geom0, row, years,
                                             np.random.default_rng([seed, index, 3, k]))
    rng = np.random.default_rng([seed, index, 2, k])
    series_poses = {s: poses.random_pose(rng) for s in images.SERIES}
    truth = SubjectTruth(region_r2star=anatomy.dseg_r2star(region_r2), lesion_r2star=lesion_r2,
                         r2star_bias=float(site["r2star_bias"]),
                         intensity_scale=float(site["intensity_scale"]))
    snr = {s: v * float(site["snr_factor"]) for s, v in protocol.snr.items()}
    proto = dataclasses.replace(protocol, snr=snr)
    imgs = images.simulate_images(geom, truth, proto, series_poses, rng)
    write_subject(Path(bids), row["participant_id"], imgs, proto, site, ses)
    vols = images.tissue_volumes_cm3(imgs.t1w_content, imgs.t1w_voxel_mm3)
    mask = imgs.images["lesion"][0]
    vols["lesion_mask_cm3"] = float(mask.sum()) * float(
        np.prod(protocol.voxel_size["FLAIR"])) / 1000.0
    return {"participant_id": row["participant_id"], "session_id": ses, "years": years,
            "volumes": vols, "lesion_count": int(len(geom.lesions)), **change,
            "head_scale": geom.head_scale, "geometry": anatomy.geometry_to_dict(geom),
            "poses": series_poses}


def _write_truth(truth_dir: Path, plan, splan, results: list[dict], protocol,
                 settings: dict) -> None:
    d = DICTIONARIES
    write_tsv(sessions.scan_truth(plan, splan), truth_dir / "regions.tsv", d["scans"])
    write_tsv(splan.sessions, truth_dir / "sessions.tsv",
              {k: v for k, v in d["scans"].items() if k in splan.sessions.columns})
    write_tsv(splan.sites, truth_dir / "sites.tsv", d["sites"])
    write_tsv(plan.agecurves, truth_dir / "agecurves.tsv",
              truth_tables.DICTIONARIES["agecurves"])
    if splan.design == "longitudinal":
        write_tsv(sessions.rates_table(plan, splan), truth_dir / "change_rates.tsv",
                  d["change_rates"])
        write_tsv(sessions.group_rates_table(plan, splan),
                  truth_dir / "change_rates_group.tsv", d["change_rates_group"])
    rows = [{"participant_id": r["participant_id"], "session_id": r["session_id"],
             "years": r["years"], "lesion_count": r["lesion_count"],
             "new_lesions": r["new_lesions"], "enlarged_lesions": r["enlarged_lesions"],
             "lesion_load_cm3": r["volumes"]["lesion_cm3"],
             "lesion_mask_cm3": r["volumes"]["lesion_mask_cm3"]} for r in results]
    write_tsv(pd.DataFrame(rows), truth_dir / "lesion_change.tsv", d["lesion_change"])
    vols = truth_tables.volumes_table(results)
    vols.insert(1, "session_id", [r["session_id"] for r in results])
    write_tsv(vols, truth_dir / "volumes.tsv",
              {"session_id": _d("Session"), **truth_tables.DICTIONARIES["volumes"]})
    write_json(truth_dir / "geometry.json",
               {f"{r['participant_id']}_{r['session_id']}": r["geometry"] for r in results})
    poses_df = truth_tables.poses_table(results)  # each scan's series at its own head pose
    poses_df.insert(1, "session_id", [r["session_id"] for r in results
                                      for _ in truth_tables.SERIES_ORDER])
    write_tsv(poses_df, truth_dir / "poses.tsv",
              {"session_id": _d("Session"), "series": _d("MEGRE, T1w or FLAIR"),
               **{c: _d("Scanner world mm -> head mm matrix element")
                  for c in poses_df.columns[3:]}}, float_format="%.10g")
    write_truth_json(
        truth_dir, plan, protocol, settings,
        {"change_model": {"group_change_per_year": sessions.GROUP_CHANGE,
                          "region_weight": sessions.REGION_WEIGHT,
                          "slope_sd_per_year": sessions.SLOPE_SD,
                          "new_lesions_per_year": sessions.NEW_LESIONS_PER_YEAR,
                          "enlarge_probability_per_year": sessions.ENLARGE_PER_YEAR,
                          "atrophy_per_year": sessions.ATROPHY_PER_YEAR}},
        "regions.tsv holds one row per scan and region; r2star_true is what the images carry. "
        "R2* changes linearly in time at change_rates.tsv's rate.")
