"""Simulated repeated-scan studies as participant-level tables (no images).

Regional R2* of every scan = the simulator's truth the images would carry (site bias included,
R2* changed linearly at the participant's annual rate) + Gaussian noise with the site's SD
(:func:`ironmap.sim.sessions.measured_regions`); bilateral rows only.
"""

from __future__ import annotations

import json
from pathlib import Path

from ironmap.io.tables import write_tsv
from ironmap.sim import sessions, truth


def write_repeated_study(root: Path, counts: dict[str, int], n_sites: int, seed: int, *,
                         n_sessions: int | None = None, interval_years: float = 1.0,
                         site_bias: float | None = None):
    """Write ``root/bids`` (participants + sessions.tsv) and ``root/out/group`` tables.

    ``site_bias`` given: travelling heads; else ``n_sessions`` longitudinal sessions.
    Returns ``(bids, out, plan, splan)``.
    """
    plan = truth.plan_cohort(counts, n_sites, seed)
    if site_bias is not None:
        splan = sessions.plan_travelling(plan, site_bias, seed)
    else:
        splan = sessions.plan_longitudinal(plan, n_sessions, interval_years, seed)
    bids, out = root / "bids", root / "out"
    (out / "group").mkdir(parents=True)
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "sim", "BIDSVersion": "1.9.0"}))
    write_tsv(plan.participants[list(truth.PARTICIPANT_COLUMNS)], bids / "participants.tsv",
              truth.PARTICIPANTS_JSON)
    for pid, rows in splan.sessions.groupby("participant_id"):
        write_tsv(rows[["session_id", "age", "site"]], bids / pid / f"{pid}_sessions.tsv")
    write_tsv(sessions.measured_regions(plan, splan, seed),
              out / "group" / "regional_r2star.tsv")
    return bids, out, plan, splan
