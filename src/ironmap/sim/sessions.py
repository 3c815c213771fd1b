"""Repeated scans of a simulated cohort: longitudinal sessions and travelling heads.

Two designs, both built on :func:`ironmap.sim.truth.plan_cohort`:

- **longitudinal**: every participant is scanned ``n_sessions`` times at their own site,
  ``interval_years`` apart. Regional R2* changes linearly,
  ``R2*(t) = R2*(0) + rate * t``, with a per-participant annual rate (s^-1/year)
  ``rate = f'(age at baseline) + GROUP_CHANGE[group] * REGION_WEIGHT[region] + u``: the slope of
  the region's age curve, an extra MS change (faster in progressive MS) and a participant
  deviation ``u ~ N(0, SLOPE_SD)``. MS lesions are added (new) and enlarged, and cortical grey
  and white matter shrink (``ATROPHY_PER_YEAR``).
- **travelling heads**: every participant is scanned once at every site on the same day; site
  ``s`` multiplies R2* by its bias (evenly spread over ``+-site_bias``, in random order) and
  adds its own measurement noise (``SITE_NOISE_SD`` range in the regional tables, a scaled SNR
  in the images).

The change rates and the additional MS change are assumptions of this simulator (the seed study
is cross-sectional); they are chosen of the order reported for deep grey matter R2* in MS over
two years, not fitted to any data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ironmap.sim import cohort
from ironmap.sim.anatomy import Geometry
from ironmap.sim.subject import place_lesions, solve_atrophy
from ironmap.sim.truth import CohortPlan

#: Additional annual R2* change (s^-1/year) of each group beyond the age curve's slope.
GROUP_CHANGE: dict[str, float] = {"HC": 0.0, "RRMS": 0.25, "SPMS": 0.6, "PPMS": 0.6}
#: Share of the group change each region carries (basal ganglia most, brainstem nuclei less).
REGION_WEIGHT: dict[str, float] = {
    "caudate": 1.0, "putamen_anterior": 1.0, "putamen_posterior": 1.0, "globus_pallidus": 0.8,
    "substantia_nigra": 0.6, "red_nucleus": 0.6, "dentate_nucleus": 0.6,
}
#: SD (s^-1/year) of a participant's own deviation from the group's annual change.
SLOPE_SD = 0.25
#: New T2 lesions per year (Poisson mean) and probability that a lesion enlarges per year.
NEW_LESIONS_PER_YEAR: dict[str, float] = {"HC": 0.0, "RRMS": 1.0, "SPMS": 0.5, "PPMS": 0.4}
ENLARGE_PER_YEAR = 0.15
#: Mean volume (template cm^3) of a new lesion; volume factor of an enlarging lesion.
NEW_LESION_CM3 = 0.3
ENLARGE_FACTOR = (1.3, 1.8)
#: Annual loss of cortical GM and WM volume (fraction per year).
ATROPHY_PER_YEAR: dict[str, float] = {"HC": 0.002, "RRMS": 0.005, "SPMS": 0.006, "PPMS": 0.006}
#: Regional measurement noise SD (s^-1) of a site in the regional tables (uniform range) and
#: the matching range of image SNR factors.
SITE_NOISE_SD = (0.3, 0.8)
SITE_SNR_FACTOR = (0.8, 1.25)


@dataclass(frozen=True)
class SessionPlan:
    """The repeated-scan design drawn on top of a :class:`CohortPlan`.

    ``sessions``: one row per scan (``participant_id, session_id, site, age, years``; ``years``
    since the first scan); ``rates``: participant x atomic region annual R2* change (s^-1/year);
    ``sites``: ``site, manufacturer, r2star_bias, intensity_scale, noise_sd`` (s^-1),
    ``snr_factor``; ``design``: ``"longitudinal"`` or ``"travelling"``.
    """

    design: str
    sessions: pd.DataFrame
    rates: pd.DataFrame
    sites: pd.DataFrame


def age_slope(age, a: float, b: float):
    """Slope of the age curve ``a (1 - exp(-b age)) + c`` at ``age``.

    Parameters
    ----------
    age : float or ndarray
        Years.
    a, b : float
        Amplitude (s^-1) and rate (1/years).

    Returns
    -------
    float or ndarray
        s^-1/year, shape of ``age``.
    """
    return a * b * np.exp(-b * np.asarray(age, dtype=float))


def draw_change_rates(plan: CohortPlan, rng: np.random.Generator) -> pd.DataFrame:
    """Annual R2* change per participant and atomic region.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    pandas.DataFrame
        Participants (rows) x atomic regions (columns), s^-1/year.
    """
    p = plan.participants
    par = plan.agecurves.set_index("region")
    age = p["age"].to_numpy(dtype=float)
    extra = p["group"].map(GROUP_CHANGE).to_numpy(dtype=float)
    out = {}
    for region in cohort.ATOMIC_REGIONS:
        a, b = par.loc[region, ["a", "b"]]
        out[region] = (age_slope(age, a, b) + extra * REGION_WEIGHT[region]
                       + rng.normal(0.0, SLOPE_SD, len(p)))
    return pd.DataFrame(out, index=p["participant_id"].to_numpy())


def _site_noise(sites: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = sites.copy()
    out["noise_sd"] = rng.uniform(*SITE_NOISE_SD, len(out))
    out["snr_factor"] = rng.uniform(*SITE_SNR_FACTOR, len(out))
    return out


def plan_longitudinal(plan: CohortPlan, n_sessions: int, interval_years: float,
                      seed: int) -> SessionPlan:
    """Sessions ``ses-01``... ``interval_years`` apart (later ones jittered by +-10 %).

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    n_sessions : int
        Sessions per participant.
    interval_years : float
        Nominal years between sessions.
    seed : int
        Seed of the draws.

    Returns
    -------
    SessionPlan
        The design.
    """
    if isinstance(n_sessions, bool) or not isinstance(n_sessions, int | np.integer) \
            or not 2 <= n_sessions <= 20:
        raise ValueError(f"sessions must be an integer 2-20, got {n_sessions!r}")
    if not np.isfinite(interval_years) or not 0.05 <= interval_years <= 10:
        raise ValueError(f"interval must be 0.05-10 years, got {interval_years!r}")
    rng = np.random.default_rng([seed, 7])
    rates = draw_change_rates(plan, rng)
    rows = []
    for p in plan.participants.itertuples():
        for k in range(n_sessions):
            jitter = rng.uniform(-0.1, 0.1) * interval_years if k else 0.0
            years = round(k * interval_years + jitter, 3)
            rows.append({"participant_id": p.participant_id, "session_id": f"ses-{k + 1:02d}",
                         "site": p.site, "age": round(p.age + years, 2), "years": years})
    return SessionPlan("longitudinal", pd.DataFrame(rows), rates,
                       _site_noise(plan.sites, rng))


def plan_travelling(plan: CohortPlan, site_bias: float, seed: int) -> SessionPlan:
    """Every participant at every site (``ses-<site>``), biases spread over ``+-site_bias``.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    site_bias : float
        Largest relative R2* bias of a site (e.g. 0.04).
    seed : int
        Seed of the draws.

    Returns
    -------
    SessionPlan
        The design.
    """
    if not np.isfinite(site_bias) or not 0 <= site_bias <= 0.3:
        raise ValueError(f"site bias must be a fraction 0-0.3, got {site_bias!r}")
    rng = np.random.default_rng([seed, 8])
    n = len(plan.sites)
    sites = plan.sites.copy()
    spread = np.linspace(-site_bias, site_bias, n) if n > 1 else np.zeros(1)
    sites["r2star_bias"] = 1.0 + rng.permutation(spread)
    sites = _site_noise(sites, rng)
    rows = [{"participant_id": p.participant_id,
             "session_id": f"ses-{s.replace('-', '')}", "site": s, "age": p.age, "years": 0.0}
            for p in plan.participants.itertuples() for s in sites["site"]]
    zero = pd.DataFrame(0.0, index=plan.agecorr.index, columns=list(cohort.ATOMIC_REGIONS))
    return SessionPlan("travelling", pd.DataFrame(rows), zero, sites)


def session_r2star(plan: CohortPlan, splan: SessionPlan) -> pd.DataFrame:
    """R2* before site bias per scan and atomic region.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.

    Returns
    -------
    pandas.DataFrame
        Rows as ``splan.sessions``, atomic regions as columns, s^-1.
    """
    s = splan.sessions
    base = plan.r2star_nosite.loc[s["participant_id"]].to_numpy()
    rate = splan.rates.loc[s["participant_id"]].to_numpy()
    values = base + rate * s["years"].to_numpy(dtype=float)[:, None]
    return pd.DataFrame(values, columns=plan.r2star_nosite.columns)


def with_putamen(df: pd.DataFrame, w: float) -> pd.DataFrame:
    """Add the whole putamen as the volume mix of its parts.

    Parameters
    ----------
    df : pandas.DataFrame
        Atomic regions as columns.
    w : float
        Volume fraction of the anterior part.

    Returns
    -------
    pandas.DataFrame
        ``df`` with a ``putamen`` column.
    """
    out = df.copy()
    out["putamen"] = w * df["putamen_anterior"] + (1 - w) * df["putamen_posterior"]
    return out


def canonical_regions() -> list[str]:
    """Region order of the truth tables (whole putamen after the caudate).

    Returns
    -------
    list of str
        Canonical region names.
    """
    return ["caudate", "putamen", *cohort.ATOMIC_REGIONS[1:]]


def scan_truth(plan: CohortPlan, splan: SessionPlan) -> pd.DataFrame:
    """Per scan and canonical region: R2* the images carry (site bias in) and site-free R2*.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id, session_id, site, group, age, years, region, r2star_true,
        r2star_nosite_true`` (s^-1).
    """
    s = splan.sessions
    nosite = with_putamen(session_r2star(plan, splan), plan.putamen_anterior_fraction)
    regions = canonical_regions()
    bias = s["site"].map(splan.sites.set_index("site")["r2star_bias"]).to_numpy()
    group = s["participant_id"].map(plan.participants.set_index("participant_id")["group"])
    long = s.assign(group=group.to_numpy()).loc[np.repeat(np.arange(len(s)), len(regions))]
    long = long.reset_index(drop=True)
    long["region"] = np.tile(regions, len(s))
    long["r2star_nosite_true"] = nosite[regions].to_numpy().ravel()
    long["r2star_true"] = long["r2star_nosite_true"] * np.repeat(bias, len(regions))
    return long


def measured_regions(plan: CohortPlan, splan: SessionPlan, seed: int) -> pd.DataFrame:
    """A perfect participant level's regional table plus the site's measurement noise.

    ``r2star_mean = r2star_true + N(0, noise_sd[site])`` per scan and region (bilateral
    rows only).

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.
    seed : int
        Seed of the noise.

    Returns
    -------
    pandas.DataFrame
        Columns as ``group/regional_r2star.tsv`` (``participant_id, session_id, region,
        hemisphere, r2star_mean, n_voxels``).
    """
    rng = np.random.default_rng([seed, 9])
    t = scan_truth(plan, splan)
    sd = t["site"].map(splan.sites.set_index("site")["noise_sd"]).to_numpy()
    return pd.DataFrame({
        "participant_id": t["participant_id"], "session_id": t["session_id"],
        "region": t["region"], "hemisphere": "bilateral",
        "r2star_mean": t["r2star_true"] + rng.normal(0.0, 1.0, len(t)) * sd,
        "n_voxels": 100})


def rates_table(plan: CohortPlan, splan: SessionPlan) -> pd.DataFrame:
    """``change_rates.tsv``: per participant and canonical region the annual change.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.

    Returns
    -------
    pandas.DataFrame
        Long table, change in s^-1/year.
    """
    rates = with_putamen(splan.rates, plan.putamen_anterior_fraction)[canonical_regions()]
    long = rates.stack().rename("r2star_change_per_year_true").reset_index()
    long.columns = ["participant_id", "region", "r2star_change_per_year_true"]
    group = plan.participants.set_index("participant_id")["group"]
    long.insert(1, "group", long["participant_id"].map(group).to_numpy())
    return long


def group_rates_table(plan: CohortPlan, splan: SessionPlan) -> pd.DataFrame:
    """``change_rates_group.tsv``: the group's expected annual change per region.

    The expectation over the participant deviation ``u`` (the age-curve slope averaged over
    the group's participants plus the group's MS change): what a mixed model's group slope
    estimates.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.

    Returns
    -------
    pandas.DataFrame
        One row per group and region, s^-1/year.
    """
    par = plan.agecurves.set_index("region")
    p = plan.participants
    rows = []
    for group in [g for g in cohort.GROUPS if (p["group"] == g).any()]:
        age = p.loc[p["group"] == group, "age"].to_numpy(dtype=float)
        atomic = {r: float(np.mean(age_slope(age, *par.loc[r, ["a", "b"]]))
                           + GROUP_CHANGE[group] * REGION_WEIGHT[r])
                  for r in cohort.ATOMIC_REGIONS}
        w = plan.putamen_anterior_fraction
        atomic["putamen"] = w * atomic["putamen_anterior"] + (1 - w) * atomic[
            "putamen_posterior"]
        rows += [{"region": r, "group": group, "r2star_change_per_year_true": atomic[r]}
                 for r in canonical_regions()]
    return pd.DataFrame(rows)


def session_geometry(base: Geometry, row: dict, years: float,
                     rng: np.random.Generator) -> tuple[Geometry, dict]:
    """The phantom ``years`` after baseline: atrophy, enlarged and new lesions.

    Parameters
    ----------
    base : Geometry
        The baseline phantom.
    row : dict
        The participant's generator columns.
    years : float
        Time since baseline.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    geometry : Geometry
        The later phantom.
    counts : dict
        ``{"new_lesions", "enlarged_lesions"}``.
    """
    loss = 1.0 - ATROPHY_PER_YEAR[row["group"]] * years
    gap, cortex = solve_atrophy(float(row["cortical_gm_norm_target"]) * loss,
                                float(row["wm_norm_target"]) * loss)
    vent = base.ventricle_scale * (1.0 + 2.0 * (1.0 - loss))
    lesions = base.lesions.copy()
    enlarged = 0
    if len(lesions) and years > 0:
        grow = rng.random(len(lesions)) < 1.0 - np.exp(-ENLARGE_PER_YEAR * years)
        factor = rng.uniform(*ENLARGE_FACTOR, len(lesions)) ** (1 / 3)
        lesions[grow, 3:] *= factor[grow, None]
        enlarged = int(grow.sum())
    n_new = int(rng.poisson(NEW_LESIONS_PER_YEAR[row["group"]] * years))
    geom = replace(base, csf_gap_mm=gap, cortex_mm=cortex, ventricle_scale=vent,
                   lesions=lesions)
    placed = 0
    for _ in range(n_new):
        new = place_lesions(geom, NEW_LESION_CM3, rng)
        if len(new) and all(np.linalg.norm(new[0, :3] - o[:3]) > new[0, 3:].max() + o[3:].max()
                            for o in geom.lesions):
            geom = replace(geom, lesions=np.vstack([geom.lesions, new[:1]]))
            placed += 1
    n_new = placed
    return geom, {"new_lesions": n_new, "enlarged_lesions": enlarged}


def measured_scans(plan: CohortPlan, splan: SessionPlan, seed: int) -> pd.DataFrame:
    """:func:`measured_regions` joined to each scan's site, age, group and ``years``.

    ``years`` is recomputed from the ages written to ``sessions.tsv`` (rounded to 0.01 year),
    as the group level does.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    splan : SessionPlan
        The repeated-scan design.
    seed : int
        Seed of the noise.

    Returns
    -------
    pandas.DataFrame
        One row per scan and region.
    """
    from ironmap.core.group.longitudinal import years_since_first

    reg = measured_regions(plan, splan, seed).merge(
        splan.sessions.drop(columns="years"), on=["participant_id", "session_id"])
    reg["group"] = reg["participant_id"].map(
        plan.participants.set_index("participant_id")["group"])
    reg["years"] = years_since_first(reg["participant_id"], reg["age"])
    return reg
