"""Participants and per-subject ground truth modelled on the seed study's Tables 1 and 2.

Regional R2* is built as ``age-corrected value + age curve(age) - age curve(reference age)``,
times the site's multiplicative bias in the images. The age-corrected value follows Table 2's
group means and SDs, with the within-group effects of EDSS, disease duration and brain volumes
that the seed reports (standardised betas / correlations), and a subject factor shared by all
regions. Lesion R2* decreases with disease duration and lesion load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GROUPS: tuple[str, ...] = ("HC", "RRMS", "SPMS", "PPMS")
#: Group sizes and number of sites of the seed study.
SEED_COUNTS: dict[str, int] = {"HC": 81, "RRMS": 83, "SPMS": 7, "PPMS": 7}
SEED_SITES = 7
#: Age (years) to which the seed adjusted R2* (the controls' mean age, rounded).
REFERENCE_AGE = 32.0
#: Atomic regions (the putamen is their composite of the anterior and posterior parts).
ATOMIC_REGIONS: tuple[str, ...] = (
    "caudate", "putamen_anterior", "putamen_posterior", "globus_pallidus",
    "substantia_nigra", "red_nucleus", "dentate_nucleus",
)
MANUFACTURERS: tuple[str, ...] = ("Siemens", "GE", "Philips")
#: Typical magnitude scale of each vendor's reconstruction (arbitrary units).
VENDOR_SCALE: dict[str, float] = {"Siemens": 1.0, "GE": 2.6, "Philips": 0.6}


@dataclass(frozen=True)
class GroupStats:
    """One row of the seed's Table 1 (ranges as (low, high, mean); others as (mean, SD))."""

    female: float
    age: tuple[float, float, float]
    duration: tuple[float, float, float] | None
    edss: tuple[float, float, float] | None
    lesion_load: tuple[float, float] | None
    cortical_gm: tuple[float, float]
    wm: tuple[float, float]


TABLE1: dict[str, GroupStats] = {
    "HC": GroupStats(50 / 81, (18, 57, 31.6), None, None, None, (631.0, 54.6), (731.8, 42.3)),
    "RRMS": GroupStats(58 / 83, (17, 55, 35.9), (1, 27, 7.8), (0, 7, 2.8), (7.1, 9.4),
                       (607.9, 46.0), (705.7, 47.7)),
    "SPMS": GroupStats(2 / 7, (35, 59, 43.7), (3, 28, 12.0), (1.5, 7.5, 4.5), (7.5, 8.5),
                       (577.8, 20.2), (675.7, 41.4)),
    "PPMS": GroupStats(5 / 7, (34, 63, 49.4), (8, 19, 13.1), (2.5, 7, 4.2), (10.2, 10.9),
                       (584.7, 42.4), (662.7, 51.3)),
}

#: Seed Table 2: age-corrected regional R2* (s^-1), mean and SD per group.
TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "caudate": {"HC": (21.1, 2.4), "RRMS": (22.7, 3.6), "SPMS": (21.9, 2.9), "PPMS": (27.8, 6.7)},
    "putamen": {"HC": (25.8, 1.9), "RRMS": (26.4, 2.3), "SPMS": (28.3, 1.8), "PPMS": (29.3, 3.2)},
    "putamen_anterior": {"HC": (24.9, 2.2), "RRMS": (25.6, 3.0), "SPMS": (27.0, 1.9),
                         "PPMS": (27.7, 3.1)},
    "putamen_posterior": {"HC": (26.9, 2.8), "RRMS": (27.7, 3.3), "SPMS": (29.8, 2.3),
                          "PPMS": (33.2, 4.8)},
    "globus_pallidus": {"HC": (37.6, 4.6), "RRMS": (37.3, 4.7), "SPMS": (43.4, 4.7),
                        "PPMS": (39.4, 5.3)},
    "substantia_nigra": {"HC": (37.1, 4.6), "RRMS": (36.8, 5.7), "SPMS": (46.4, 6.8),
                         "PPMS": (38.5, 5.1)},
    "red_nucleus": {"HC": (32.6, 3.8), "RRMS": (33.1, 4.5), "SPMS": (38.0, 3.5),
                    "PPMS": (38.3, 3.9)},
    "dentate_nucleus": {"HC": (29.5, 3.9), "RRMS": (31.0, 4.8), "SPMS": (36.2, 3.3),
                        "PPMS": (36.6, 6.2)},
}

#: Age curve R2* = a (1 - exp(-b age)) + c: amplitude a (s^-1) and rate b (1/years); c is
#: set so that the curve passes through the controls' Table 2 mean at the reference age.
AGE_CURVE_AB: dict[str, tuple[float, float]] = {
    "caudate": (9.0, 0.045), "putamen_anterior": (12.0, 0.05),
    "putamen_posterior": (14.0, 0.05), "globus_pallidus": (16.0, 0.10),
    "substantia_nigra": (14.0, 0.07), "red_nucleus": (13.0, 0.06),
    "dentate_nucleus": (12.0, 0.05),
}

#: Standardised within-group effects on age-corrected R2* in MS (seed Table 2 and text).
MS_EFFECTS: dict[str, dict[str, float]] = {
    "caudate": {},
    "putamen_anterior": {"edss": 0.25, "duration": 0.32},
    "putamen_posterior": {"duration": 0.20},
    "globus_pallidus": {"edss": 0.27, "duration": 0.28, "wm": -0.22},
    "substantia_nigra": {"edss": 0.33, "cortical_gm": -0.35, "wm": -0.25},
    "red_nucleus": {"edss": 0.35, "cortical_gm": -0.22, "wm": -0.25},
    "dentate_nucleus": {"edss": 0.36, "duration": 0.27, "wm": -0.22},
}
#: ... and in healthy controls (seed text: positive cortex associations, negative WM ones).
HC_EFFECTS: dict[str, dict[str, float]] = {
    "putamen_anterior": {"cortical_gm": 0.22}, "putamen_posterior": {"cortical_gm": 0.22},
    "globus_pallidus": {"wm": -0.30}, "substantia_nigra": {"wm": -0.28},
    "red_nucleus": {"cortical_gm": 0.26},
}
#: Share of each region's residual variance carried by a subject factor common to all regions.
SHARED_VARIANCE = 0.35
#: Lesion R2* (s^-1, before site bias): mean, SD, and standardised effects of duration and
#: lesion load (seed: r = -0.34 and -0.38).
LESION_R2STAR = (16.5, 2.0)
LESION_EFFECTS = {"duration": -0.34, "lesion_load": -0.38}
#: Rank correlation (Gaussian copula) of EDSS with disease duration within a group.
EDSS_DURATION_CORRELATION = 0.5
#: Correlation of cortical GM and WM volume within a group.
VOLUME_CORRELATION = 0.5


def age_curve(age, a: float, b: float, c: float):
    """R2* of the exponential saturation model ``a (1 - exp(-b age)) + c``.

    Parameters
    ----------
    age : float or ndarray
        Age in years.
    a, b, c : float
        Amplitude (s^-1), rate (1/years), offset (s^-1).

    Returns
    -------
    float or ndarray
        R2* in s^-1, shape of ``age``.
    """
    return a * (1.0 - np.exp(-b * np.asarray(age, dtype=float))) + c


def age_curves(putamen_anterior_fraction: float,
               reference_age: float = REFERENCE_AGE) -> pd.DataFrame:
    """Age-curve parameters per region, the putamen as volume mix.

    Both putamen parts share ``b``, so the composite is again an exponential saturation.

    Parameters
    ----------
    putamen_anterior_fraction : float
        Volume fraction of the anterior putamen (0-1).
    reference_age : float, optional
        Age (years) at which the curves meet the seed's control means.

    Returns
    -------
    pandas.DataFrame
        ``region, a, b, c`` (a, c in s^-1; b in 1/years).
    """
    rows = []
    for region in ATOMIC_REGIONS:
        a, b = AGE_CURVE_AB[region]
        c = TABLE2[region]["HC"][0] - a * (1.0 - np.exp(-b * reference_age))
        rows.append({"region": region, "a": a, "b": b, "c": c})
    df = pd.DataFrame(rows).set_index("region")
    w = putamen_anterior_fraction
    mix = w * df.loc["putamen_anterior"] + (1 - w) * df.loc["putamen_posterior"]
    df.loc["putamen"] = mix
    order = ["caudate", "putamen", *ATOMIC_REGIONS[1:]]
    return df.loc[order].reset_index()


def _beta_in_range(rng, lo: float, hi: float, mean: float, n: int, conc: float = 5.0):
    """Draws on [lo, hi] from a beta distribution with the given mean."""
    m = float(np.clip((mean - lo) / (hi - lo), 0.05, 0.95))
    return lo + (hi - lo) * rng.beta(m * conc, (1 - m) * conc, n)


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Normal quantiles of the ranks of ``x``."""
    # imported here: the simulation's worker processes never plan a cohort (about 1 CPU-s)
    from scipy.stats import norm

    return norm.ppf((np.argsort(np.argsort(x)) + 0.5) / x.size)


def _couple(values: np.ndarray, driver: np.ndarray, rho: float) -> np.ndarray:
    """Reorder ``values`` so that their ranks correlate with ``driver`` (Gaussian copula).

    The sample itself (hence its distribution) is unchanged.
    """
    score = rho * _normal_scores(driver) + np.sqrt(1 - rho**2) * _normal_scores(values)
    return np.sort(values)[np.argsort(np.argsort(score))]


def _lognormal(rng, mean: float, sd: float, n: int):
    """Skewed positive draws with the given mean and SD."""
    s2 = np.log1p((sd / mean) ** 2)
    return rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)


def round_edss(values) -> np.ndarray:
    """EDSS on its scale: 0, 1.0, 1.5, ... 10 (0.5 steps; 0.5 itself does not exist).

    Parameters
    ----------
    values : array-like
        Raw scores.

    Returns
    -------
    ndarray
        Rounded scores, shape of ``values``.
    """
    v = np.clip(np.round(np.asarray(values, dtype=float) * 2) / 2, 0.0, 10.0)
    return np.where(v == 0.5, 1.0, v)


def _draw_group(group: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Demographic, clinical and volume draws of ``n`` participants of one group."""
    st = TABLE1[group]
    age = np.round(_beta_in_range(rng, *st.age, n), 1)
    sex = np.where(rng.random(n) < st.female, "F", "M")
    z = rng.multivariate_normal([0, 0], [[1, VOLUME_CORRELATION], [VOLUME_CORRELATION, 1]], n)
    df = pd.DataFrame({"group": group, "age": age, "sex": sex,
                       "cortical_gm_norm_target": st.cortical_gm[0] + st.cortical_gm[1] * z[:, 0],
                       "wm_norm_target": st.wm[0] + st.wm[1] * z[:, 1]})
    if st.duration is None:
        df["disease_duration"] = np.nan
        df["edss"] = np.nan
        df["lesion_load_target"] = 0.0
    else:
        dur = _beta_in_range(rng, *st.duration, n)
        df["disease_duration"] = np.round(np.minimum(dur, age - 12.0), 1)
        raw = _beta_in_range(rng, *st.edss, n)
        df["edss"] = round_edss(_couple(raw, dur, EDSS_DURATION_CORRELATION))
        df["lesion_load_target"] = np.clip(_lognormal(rng, *st.lesion_load, n), 0.2, 60.0)
    male = (sex == "M").astype(float)
    df["head_scale"] = np.clip(1.0 + 0.03 * male + rng.normal(0, 0.035, n), 0.9, 1.12)
    return df


def draw_participants(counts: dict[str, int], n_sites: int,
                      rng: np.random.Generator, control_ages: str = "random") -> pd.DataFrame:
    """Participants of all groups, ids ``sub-001``..., balanced over ``n_sites`` sites.

    ``control_ages``: ``"random"`` (ages drawn like every group's) or ``"span"``: the
    controls' ages evenly spaced over the seed's control range (18-57 years) and everyone
    assigned to the sites in turn (controls first, in age order), so that each site has
    controls young and old (the random draws are made all the same, so the other
    participants' draws do not change).

    Returns a table with the ``participants.tsv`` columns plus private generator columns
    (``cortical_gm_norm_target``, ``wm_norm_target`` in cm^3, ``lesion_load_target`` in cm^3,
    ``head_scale``).

    Parameters
    ----------
    counts : dict of str to int
        Group -> participants.
    n_sites : int
        Number of sites.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).
    control_ages : str, optional
        ``"random"`` or ``"span"`` (above).

    Returns
    -------
    pandas.DataFrame
        One row per participant (see above).
    """
    if control_ages not in ("random", "span"):
        raise ValueError(f"control_ages must be 'random' or 'span', got {control_ages!r}")
    parts = [_draw_group(g, int(counts.get(g, 0)), rng) for g in GROUPS if counts.get(g, 0)]
    df = pd.concat(parts, ignore_index=True)
    sites = np.arange(len(df)) % n_sites
    rng.shuffle(sites)
    hc = np.flatnonzero((df["group"] == "HC").to_numpy())
    if control_ages == "span" and hc.size > 1:
        lo, hi, _ = TABLE1["HC"].age
        df.loc[hc, "age"] = np.round(np.linspace(lo, hi, hc.size), 1)
        sites = np.arange(len(df)) % n_sites  # in turn, controls first in age order
    df.insert(0, "participant_id", [f"sub-{i + 1:03d}" for i in range(len(df))])
    df.insert(4, "site", [f"site-{s + 1:02d}" for s in sites])
    return df


def draw_sites(n_sites: int, rng: np.random.Generator) -> pd.DataFrame:
    """Sites with manufacturer, multiplicative R2* bias (within a few %) and intensity scale.

    Parameters
    ----------
    n_sites : int
        Number of sites.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    pandas.DataFrame
        One row per site: ``site``, ``manufacturer``, ``r2star_bias``, ``intensity_scale``.
    """
    man = [MANUFACTURERS[i % len(MANUFACTURERS)] for i in range(n_sites)]
    bias = 1.0 + np.clip(rng.normal(0.0, 0.02, n_sites), -0.05, 0.05)
    scale = np.array([VENDOR_SCALE[m] for m in man]) * np.exp(rng.normal(0, 0.15, n_sites))
    return pd.DataFrame({"site": [f"site-{i + 1:02d}" for i in range(n_sites)],
                         "manufacturer": man, "r2star_bias": bias, "intensity_scale": scale})


def _standardise(values: pd.Series, groups: pd.Series) -> np.ndarray:
    """Within-group z-scores (0 where a group has no spread or values are missing)."""
    mean = values.groupby(groups).transform("mean")
    sd = values.groupby(groups).transform("std")
    z = (values - mean) / sd
    return np.nan_to_num(z.to_numpy(dtype=float), nan=0.0)


def draw_agecorr_r2star(participants: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Age-corrected, site-free R2* per participant and atomic region.

    Parameters
    ----------
    participants : pandas.DataFrame
        :func:`draw_participants`.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    pandas.DataFrame
        Participants (rows) x atomic regions (columns), s^-1.
    """
    p = participants
    g = p["group"]
    cov = {"edss": _standardise(p["edss"], g), "duration": _standardise(p["disease_duration"], g),
           "cortical_gm": _standardise(p["cortical_gm_norm_target"], g),
           "wm": _standardise(p["wm_norm_target"], g)}
    shared = rng.normal(0, 1, len(p))
    out = {}
    for region in ATOMIC_REGIONS:
        own = rng.normal(0, 1, len(p))
        values = np.empty(len(p))
        for group in g.unique():
            sel = (g == group).to_numpy()
            effects = (HC_EFFECTS if group == "HC" else MS_EFFECTS).get(region, {})
            signal = sum(beta * cov[name][sel] for name, beta in effects.items())
            resid_var = max(0.3, 1.0 - sum(b**2 for b in effects.values()))
            noise = (np.sqrt(SHARED_VARIANCE) * shared[sel]
                     + np.sqrt(1 - SHARED_VARIANCE) * own[sel])
            mean, sd = TABLE2[region][group]
            values[sel] = mean + sd * (signal + np.sqrt(resid_var) * noise)
        out[region] = np.maximum(values, 5.0)
    return pd.DataFrame(out, index=p["participant_id"].to_numpy())


def draw_lesion_r2star(participants: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Lesion R2* (before site bias) per participant.

    Parameters
    ----------
    participants : pandas.DataFrame
        :func:`draw_participants`.
    rng : numpy.random.Generator
        Random source (the draws are deterministic in its seed).

    Returns
    -------
    ndarray of shape (n_participants,)
        s^-1; NaN for controls.
    """
    p = participants
    ms = (p["group"] != "HC").to_numpy()
    out = np.full(len(p), np.nan)
    if not ms.any():
        return out
    dur = p.loc[ms, "disease_duration"].to_numpy(dtype=float)
    load = np.log(p.loc[ms, "lesion_load_target"].to_numpy(dtype=float))
    z = {"duration": _z(dur), "lesion_load": _z(load)}
    signal = sum(beta * z[k] for k, beta in LESION_EFFECTS.items())
    resid = np.sqrt(1.0 - sum(b**2 for b in LESION_EFFECTS.values()))
    mean, sd = LESION_R2STAR
    out[ms] = np.maximum(mean + sd * (signal + resid * rng.normal(0, 1, ms.sum())), 6.0)
    return out


def _z(x: np.ndarray) -> np.ndarray:
    sd = np.std(x)
    return (x - np.mean(x)) / sd if x.size > 1 and sd > 0 else np.zeros_like(x)
