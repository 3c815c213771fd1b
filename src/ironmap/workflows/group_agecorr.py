"""Group level, age-correction step: one age model per region and hemisphere.

Reads the settings' age model (``--age-model`` / ``study.toml [agecorr]``), fits it on the
controls of every region and hemisphere (:func:`ironmap.core.group.age_correction.correct_region`),
and returns the corrected values, their bootstrap SD, the ``agefit.tsv`` rows and the curve bands
that ``stats.json`` carries for the age-curve figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ironmap.core.group import age_correction, age_pooling
from ironmap.core.group.paper_tables import GroupSettings

__all__ = ["AgeCorrection", "age_correct_all", "model_summary"]

#: What each age model is, for ``stats.json`` and the methods text.
MODEL_TEXT = {
    "auto": "exponential saturation a*(1-exp(-b*age))+c, maximum a posteriori with a "
            "log-normal prior on the rate b (median {b_med:.4f}/year, SD of log b {b_sd:.2f})",
    "seed": "exponential saturation a*(1-exp(-b*age))+c by bounded least squares (the seed's "
            "fit, no fallback)",
    "prior": "exponential saturation a*(1-exp(-b*age))+c with b fixed at {b_med:.4f}/year "
             "(the prior median) and a, c by least squares",
    "linear": "straight line c+slope*age by least squares, held at the controls' age range",
    "pooled": "exponential saturation a*(1-exp(-b*age))+c per region, with the rate b and the "
              "amplitude a partially pooled across regions (empirical Bayes: log b and a "
              "normal across regions, their means and SDs estimated from all regions' "
              "controls)",
    "none": "no age correction",
    "fixed": "exponential saturation with parameters given in study.toml",
}


class AgeCorrection:
    """Result of :func:`age_correct_all`.

    ``adjusted``, ``sd``: Series on the regional index; ``fits``: the ``agefit.tsv`` rows;
    ``bands``: region -> bootstrap band of the bilateral pooled curve.
    """

    def __init__(self, adjusted: pd.Series, sd: pd.Series, fits: pd.DataFrame, bands: dict):
        self.adjusted, self.sd, self.fits, self.bands = adjusted, sd, fits, bands


def _row(region, hemi, site, fit: age_correction.AgeFit, res, n_boot: int) -> dict:
    row = {"region": region, "hemisphere": hemi, "site": site, **fit.to_row()}
    ext = res.extrapolation if site == "all" else {}
    row.update(n_boot=n_boot if site == "all" and fit.model != "none" else 0,
               correction_sd_median=float(np.nanmedian(res.sd)) if site == "all"
               and np.isfinite(res.sd).any() else np.nan,
               n_extrapolated=int(ext.get("n", 0)), extrapolation=ext.get("how", ""))
    return row


def _pool_priors(groups: dict, values: pd.Series, merged: pd.DataFrame,
                 settings: GroupSettings, notes: list[str]) -> dict:
    """Per hemisphere, the regions' pooled prior.

    See :func:`ironmap.core.group.age_pooling.pool_prior`. Pooled from the controls of every
    region without a fixed curve (4 or more, two or more ages).
    """
    by_hemi: dict[str, list] = {}
    for (region, hemi), idx in groups.items():
        if region in settings.fixed_curves:
            continue
        ctl = merged.loc[idx, "is_control"].astype(bool).to_numpy()
        age = merged.loc[idx, "age"].to_numpy(float)[ctl]
        y = values[idx].to_numpy(float)[ctl]
        ok = np.isfinite(age) & np.isfinite(y) & (age >= age_correction.AGE_LIMITS[0]) & (
            age <= age_correction.AGE_LIMITS[1])
        if ok.sum() >= 4 and np.ptp(age[ok]) > 0:
            by_hemi.setdefault(hemi, []).append((age[ok], y[ok]))
    out = {}
    for hemi, regions in by_hemi.items():
        if len(regions) < 2:
            notes.append(f"age model pooled ({hemi}): fewer than 2 regions with controls, "
                         "nothing to pool; the regions there are excluded")
            continue
        out[hemi] = age_pooling.pool_prior(regions)
        mu_b, tau_b, mu_a, tau_a = out[hemi]
        notes.append(f"age model pooled ({hemi}, {len(regions)} regions): log b ~ "
                     f"N(log {np.exp(mu_b):.4f}/y, {tau_b:.2f}^2), a ~ N({mu_a:.2f}, "
                     f"{tau_a:.2f}^2) s^-1; r2star_agecorr_sd is the unpooled (auto) "
                     "fit's spread")
    return out


def age_correct_all(regional: pd.DataFrame, subjects: pd.DataFrame, settings: GroupSettings,
                    ref_age: float, notes: list[str]) -> AgeCorrection:
    """Fit and apply the age model per region and hemisphere.

    Parameters
    ----------
    regional : pandas.DataFrame
        One session per participant, long table with the analysed R2* column (s^-1).
    subjects : pandas.DataFrame
        One row per participant (``age`` in years, ``is_control``, ``site``).
    settings : GroupSettings
        The group settings (model, bootstrap, per-site).
    ref_age : float
        Reference age in years.
    notes : list of str
        Messages are appended here.

    Returns
    -------
    AgeCorrection
        Adjusted values and their bootstrap SD (s^-1, on ``regional``'s index), the fits and
        the bands.
    """
    info = subjects.set_index("participant_id")
    merged = regional[["participant_id"]].join(info[["age", "is_control", "site"]],
                                               on="participant_id")
    values = pd.to_numeric(regional[settings.value_column], errors="coerce")
    adjusted = pd.Series(np.nan, index=regional.index)
    sd = pd.Series(np.nan, index=regional.index)
    fits, bands = [], {}
    ages_all = merged["age"].to_numpy(float)
    finite = ages_all[np.isfinite(ages_all)]
    band_ages = np.linspace(finite.min(), finite.max(), 60) if finite.size else None
    kwargs = {"min_n": settings.min_controls, "max_rel_se_b": settings.max_rel_se_b,
              "method": settings.age_model, "n_boot": settings.bootstrap,
              "seed": settings.bootstrap_seed, "band_ages": band_ages}
    groups = regional.groupby(["region", "hemisphere"], sort=False).groups
    pools = (_pool_priors(groups, values, merged, settings, notes)
             if settings.age_model == "pooled" else {})
    for (region, hemi), idx in groups.items():
        idx = idx[merged.loc[idx, "age"].notna().to_numpy()]
        label = f"{region} ({hemi})"
        if values[idx].notna().sum() == 0:
            notes.append(f"{label}: no R2* values in {settings.value_column}; region skipped")
            continue
        fixed = settings.fixed_curves.get(region) if settings.age_model != "none" else None
        res = age_correction.correct_region(
            values[idx], merged.loc[idx, "age"], merged.loc[idx, "is_control"].astype(bool),
            ref_age, sites=merged.loc[idx, "site"], per_site=settings.per_site, label=label,
            fixed=fixed, pool=pools.get(hemi), **kwargs)
        notes.extend(res.messages)
        adjusted[idx], sd[idx] = res.adjusted, res.sd
        fits.append(_row(region, hemi, "all", res.fit, res, settings.bootstrap))
        fits += [_row(region, hemi, s, f, res, 0) for s, f in res.site_fits.items()]
        if hemi == "bilateral" and res.band is not None:
            bands[region] = res.band
    return AgeCorrection(adjusted, sd, pd.DataFrame(fits), bands)


def model_summary(fits: pd.DataFrame, settings: GroupSettings) -> dict:
    """``stats.json`` → ``age_model``.

    Requested model, the model used per region (bilateral, pooled), and a description of each model
    used (read by the methods text).

    Parameters
    ----------
    fits : pandas.DataFrame
        ``agefit.tsv``.
    settings : GroupSettings
        The group settings.

    Returns
    -------
    dict
        ``requested``, ``per_region`` (region -> model used), the prior on ``b``, the
        bootstrap settings and ``descriptions``.
    """
    b_med, b_sd = float(np.exp(age_correction.B_PRIOR[0])), age_correction.B_PRIOR[1]
    used: dict[str, str] = {}
    if not fits.empty and "method" in fits:
        rows = fits[(fits["hemisphere"] == "bilateral") & (fits["site"] == "all")]
        for _, r in rows.iterrows():
            used[str(r["region"])] = ("excluded" if r["model"] == "none" and r["method"] != "none"
                                      else str(r["method"]))
    return {"requested": settings.age_model, "per_region": used,
            "descriptions": {m: MODEL_TEXT[m].format(b_med=b_med, b_sd=b_sd)
                             for m in sorted(set(used.values())) if m in MODEL_TEXT},
            "prior_b": {"median_per_year": b_med, "sd_log": b_sd},
            "bootstrap": {"resamples": settings.bootstrap, "seed": settings.bootstrap_seed},
            "reference": "Hallgren B, Sourander P. J Neurochem. 1958;3(1):41-51 (curve form)"}
