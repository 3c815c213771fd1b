"""The cohort plan (participants, sites, regional truth) and the truth tables as DataFrames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ironmap.sim import anatomy, cohort

PARTICIPANT_COLUMNS = ("participant_id", "age", "sex", "site", "group", "disease_duration",
                       "edss")
PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Participant identifier"},
    "age": {"Description": "Age at scan", "Units": "years"},
    "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
    "site": {"Description": "Acquisition site (scanner)"},
    "group": {"Description": "Diagnostic group",
              "Levels": {"HC": "healthy control", "RRMS": "relapsing-remitting MS",
                         "SPMS": "secondary progressive MS", "PPMS": "primary progressive MS"}},
    "disease_duration": {"Description": "Time since first symptoms (n/a for controls)",
                         "Units": "years"},
    "edss": {"Description": "Expanded Disability Status Scale, 0-10 in 0.5 steps "
                            "(n/a for controls)"},
}
SERIES_ORDER = ("MEGRE", "T1w", "FLAIR")


@dataclass(frozen=True)
class CohortPlan:
    """Everything drawn before any image is made.

    ``participants``: participants.tsv columns + generator columns; ``sites``: sites.tsv;
    ``agecorr``: age-corrected site-free R2* (participant x atomic region, s^-1);
    ``r2star_nosite``: R2* at the participant's age before the site bias (same shape);
    ``lesion_r2star``: (n,) s^-1 before site bias (NaN for controls); ``agecurves``: table.
    """

    participants: pd.DataFrame
    sites: pd.DataFrame
    agecorr: pd.DataFrame
    r2star_nosite: pd.DataFrame
    lesion_r2star: np.ndarray
    agecurves: pd.DataFrame
    putamen_anterior_fraction: float
    reference_age: float


def plan_cohort(counts: dict[str, int], n_sites: int, seed: int,
                control_ages: str = "random",
                putamen_anterior_fraction: float | None = None) -> CohortPlan:
    """Draw participants, sites and regional/lesional truth (deterministic in ``seed``).

    ``control_ages``: see :func:`ironmap.sim.cohort.draw_participants`.

    Parameters
    ----------
    counts : dict of str to int
        Group -> participants.
    n_sites : int
        Number of sites.
    seed : int
        Seed of every draw.
    control_ages : str, optional
        ``"random"`` or ``"span"``.
    putamen_anterior_fraction : float, optional
        Volume share of the putamen anterior to the AC (default: the analytic phantom's),
        which weights the whole putamen's truth.

    Returns
    -------
    CohortPlan
        Participants, sites, age curves and regional and lesion truth.
    """
    rng = np.random.default_rng([seed, 0])
    participants = cohort.draw_participants(counts, n_sites, rng, control_ages=control_ages)
    sites = cohort.draw_sites(n_sites, rng)
    agecorr = cohort.draw_agecorr_r2star(participants, rng)
    lesion = cohort.draw_lesion_r2star(participants, rng)
    w = (anatomy.putamen_anterior_fraction() if putamen_anterior_fraction is None
         else float(putamen_anterior_fraction))
    curves = cohort.age_curves(w)
    par = curves.set_index("region")
    age = participants["age"].to_numpy(dtype=float)
    nosite = agecorr.copy()
    for region in cohort.ATOMIC_REGIONS:
        a, b, c = par.loc[region, ["a", "b", "c"]]
        shift = cohort.age_curve(age, a, b, c) - cohort.age_curve(cohort.REFERENCE_AGE, a, b, c)
        nosite[region] = agecorr[region].to_numpy() + shift
    return CohortPlan(participants, sites, agecorr, nosite, lesion, curves, w,
                      cohort.REFERENCE_AGE)


def _with_putamen(df: pd.DataFrame, w: float) -> pd.DataFrame:
    out = df.copy()
    out["putamen"] = w * df["putamen_anterior"] + (1 - w) * df["putamen_posterior"]
    return out


def regions_table(plan: CohortPlan) -> pd.DataFrame:
    """``regions.tsv``: R2* the images carry (site bias included) and age-corrected truth.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).

    Returns
    -------
    pandas.DataFrame
        One row per participant, region and hemisphere; s^-1.
    """
    bias = plan.participants["site"].map(plan.sites.set_index("site")["r2star_bias"]).to_numpy()
    w = plan.putamen_anterior_fraction
    img = _with_putamen(plan.r2star_nosite, w).mul(bias, axis=0)
    corr = _with_putamen(plan.agecorr, w)
    regions = ["caudate", "putamen", *cohort.ATOMIC_REGIONS[1:]]
    hemis = ["left", "right", "bilateral"]
    pids = plan.participants["participant_id"].to_numpy()
    return pd.DataFrame({
        "participant_id": np.repeat(pids, len(regions) * len(hemis)),
        "region": np.tile(np.repeat(regions, len(hemis)), len(pids)),
        "hemisphere": np.tile(hemis, len(pids) * len(regions)),
        "r2star_true": np.repeat(img.loc[pids, regions].to_numpy().ravel(), len(hemis)),
        "r2star_agecorr_true": np.repeat(corr.loc[pids, regions].to_numpy().ravel(),
                                         len(hemis)),
    })


def table2(regions: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """Group mean and SD of bilateral age-corrected R2* per region (what a perfect run reports).

    Parameters
    ----------
    regions : pandas.DataFrame
        :func:`regions_table`.
    participants : pandas.DataFrame
        ``participant_id`` and ``group``.

    Returns
    -------
    pandas.DataFrame
        One row per region; ``<group>_mean`` and ``<group>_sd`` in s^-1.
    """
    bil = regions[regions["hemisphere"] == "bilateral"].merge(
        participants[["participant_id", "group"]], on="participant_id")
    out = pd.DataFrame({"region": list(dict.fromkeys(bil["region"]))}).set_index("region")
    for group in cohort.GROUPS:
        sel = bil[bil["group"] == group]
        if sel.empty:
            continue
        stats = sel.groupby("region", sort=False)["r2star_agecorr_true"]
        out[f"{group}_mean"] = stats.mean()
        out[f"{group}_sd"] = stats.std()
    return out.reset_index()


def lesions_table(plan: CohortPlan, results: list[dict]) -> pd.DataFrame:
    """``lesions.tsv``: lesion count, volume in the phantom and R2* the images carry.

    Parameters
    ----------
    plan : CohortPlan
        The drawn cohort (:func:`ironmap.sim.truth.plan_cohort`).
    results : list of dict
        Per-participant results of the image simulation.

    Returns
    -------
    pandas.DataFrame
        One row per participant (cm^3, s^-1).
    """
    bias = plan.participants["site"].map(plan.sites.set_index("site")["r2star_bias"]).to_numpy()
    rows = []
    for i, res in enumerate(results):
        count = res["lesion_count"]
        r2 = plan.lesion_r2star[i] * bias[i] if count else np.nan
        rows.append((res["participant_id"], count, res["volumes"]["lesion_cm3"], r2,
                     res["volumes"].get("lesion_mask_cm3", np.nan)))
    return pd.DataFrame(rows, columns=["participant_id", "lesion_count", "lesion_load_cm3",
                                       "lesion_r2star_true", "lesion_mask_cm3"])


def volumes_table(results: list[dict]) -> pd.DataFrame:
    """``volumes.tsv``: tissue volumes of the phantom and the head scale.

    Parameters
    ----------
    results : list of dict
        Per-participant results of the image simulation.

    Returns
    -------
    pandas.DataFrame
        One row per participant, volumes in cm^3.
    """
    cols = ["gm_cm3", "cortical_gm_cm3", "deep_gm_cm3", "wm_cm3", "csf_cm3", "brain_cm3",
            "icv_cm3"]
    rows = [{"participant_id": r["participant_id"], **{c: r["volumes"][c] for c in cols},
             "head_scale": r["head_scale"]} for r in results]
    df = pd.DataFrame(rows)
    for c in ("gm_cm3", "cortical_gm_cm3", "wm_cm3", "csf_cm3"):
        df[c.replace("_cm3", "_norm_cm3")] = df[c] / df["head_scale"] ** 3
    return df


def poses_table(results: list[dict]) -> pd.DataFrame:
    """``poses.tsv``: per series the 4x4 scanner-world -> head matrix.

    Parameters
    ----------
    results : list of dict
        Per-participant results of the image simulation.

    Returns
    -------
    pandas.DataFrame
        One row per participant and series, entries ``m00``..``m33``.
    """
    rows = []
    for r in results:
        for series in SERIES_ORDER:
            m = np.asarray(r["poses"][series])
            rows.append({"participant_id": r["participant_id"], "series": series,
                         **{f"m{i}{j}": m[i, j] for i in range(4) for j in range(4)}})
    return pd.DataFrame(rows)


def landmarks_table(results: list[dict]) -> pd.DataFrame:
    """``landmarks.tsv``: AC and PC in T1w world mm.

    Parameters
    ----------
    results : list of dict
        Per-participant results of the image simulation.

    Returns
    -------
    pandas.DataFrame
        ``participant_id, landmark, x, y, z`` (mm).
    """
    rows = []
    for r in results:
        head_to_world = np.linalg.inv(np.asarray(r["poses"]["T1w"]))
        given = r.get("landmarks_head")  # template-built heads: AC/PC in head mm
        for name, point in (("AC", (0.0, 0.0, 0.0)), ("PC", anatomy.PC_TEMPLATE)):
            head = (np.asarray(point) * r["head_scale"] if given is None
                    else np.asarray(given[name], dtype=float))
            p = head_to_world @ np.append(head, 1.0)
            rows.append({"participant_id": r["participant_id"], "landmark": name,
                         "x": p[0], "y": p[1], "z": p[2]})
    return pd.DataFrame(rows)


def _d(desc: str, units: str | None = None) -> dict[str, str]:
    return {"Description": desc, **({"Units": units} if units else {})}


DICTIONARIES: dict[str, dict] = {
    "regions": {"participant_id": _d("Participant"), "region": _d("Canonical region"),
                "hemisphere": _d("left, right or bilateral"),
                "r2star_true": _d("R2* the images carry (site bias included)", "1/s"),
                "r2star_agecorr_true": _d("R2* adjusted to the reference age, site bias "
                                          "removed", "1/s")},
    "lesions": {"participant_id": _d("Participant"), "lesion_count": _d("Number of lesions"),
                "lesion_load_cm3": _d("Lesion volume in the phantom", "cm3"),
                "lesion_r2star_true": _d("R2* of lesion tissue the images carry", "1/s"),
                "lesion_mask_cm3": _d("Volume of the rater lesion mask on the FLAIR grid "
                                      "(voxel count x voxel volume, the seed's definition)",
                                      "cm3")},
    "volumes": {"participant_id": _d("Participant"),
                "gm_cm3": _d("Grey matter (cortical + deep)", "cm3"),
                "cortical_gm_cm3": _d("Cerebral and cerebellar cortex", "cm3"),
                "deep_gm_cm3": _d("Thalamus and deep nuclei", "cm3"),
                "wm_cm3": _d("White matter including lesions and brainstem", "cm3"),
                "csf_cm3": _d("Ventricular and extra-cerebral CSF", "cm3"),
                "brain_cm3": _d("Grey + white matter", "cm3"),
                "icv_cm3": _d("Intracranial volume (brain + CSF)", "cm3"),
                "head_scale": _d("Linear head size relative to the template"),
                **{f"{t}_norm_cm3": _d(f"{t} volume divided by head_scale^3 (head-size "
                                       "normalised, as the seed's Table 1)", "cm3")
                   for t in ("gm", "cortical_gm", "wm", "csf")}},
    "sites": {"site": _d("Site"), "manufacturer": _d("Scanner manufacturer"),
              "r2star_bias": _d("Multiplicative R2* bias of the site"),
              "intensity_scale": _d("Vendor/site intensity scale of all images")},
    "agecurves": {"region": _d("Canonical region"), "a": _d("Amplitude", "1/s"),
                  "b": _d("Rate", "1/years"), "c": _d("Offset", "1/s")},
    "landmarks": {"participant_id": _d("Participant"), "landmark": _d("AC or PC"),
                  "x": _d("T1w world x", "mm"), "y": _d("T1w world y", "mm"),
                  "z": _d("T1w world z", "mm")},
}
