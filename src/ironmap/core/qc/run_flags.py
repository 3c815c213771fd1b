"""Automatic quality-control flags of one participant's run (pure rules, no files).

Six rules, the first four comparing a measured value with a threshold:

- ``registration``: the similarity a registration reached (as recorded by the participant
  level, e.g. normalised correlation or mutual information; higher is better) is below
  ``min_registration_similarity``;
- ``low_snr``: the first-echo signal-to-noise ratio is below ``min_snr``;
- ``flagged_voxels``: the fraction of voxels excluded by the R2* fit flags, in the brain or in
  any region's eroded mask, is above ``max_flagged_fraction`` / ``max_region_flagged_fraction``;
- ``small_region``: a region of the regional table keeps fewer than ``min_region_voxels``
  voxels after erosion and quality exclusion (0 = its R2* is n/a), e.g. the substantia nigra
  after a one-voxel erosion at 3-4 mm;
- ``volumes``: tissue volumes were measured but lie outside plausible adult ranges
  (``volumes:implausible``; :data:`ironmap.core.regions.tissue_volumes.PLAUSIBLE_RANGES`);
- ``segmentation``: a T1w step (tissue volumes, atlas labels or AC/PC location) failed for this
  participant (e.g. the template registration did not reach its similarity threshold); no
  value or threshold.

A value that was not measured (None/NaN) raises no flag; the report says "not recorded".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage


@dataclass(frozen=True)
class QCThresholds:
    """Thresholds of the automatic QC flags (dimensionless)."""

    min_registration_similarity: float = 1.1  # NMI: 1 = independent, 2 = identical
    min_snr: float = 10.0
    max_flagged_fraction: float = 0.05
    max_region_flagged_fraction: float = 0.20
    min_region_voxels: int = 10


@dataclass(frozen=True)
class QCFlag:
    """One raised flag: rule name, what was measured, the threshold and a sentence."""

    participant_id: str
    rule: str
    item: str
    value: float
    threshold: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The flag's fields as a plain dict (a row of the QC flag table).

        Returns
        -------
        dict
            ``participant_id``, ``rule``, ``item``, ``value``, ``threshold``, ``message``.
        """
        return asdict(self)


def _measured(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def registration_flags(participant_id: str, similarities: dict[str, float],
                       thr: QCThresholds) -> list[QCFlag]:
    """Flags for registrations below the similarity threshold.

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    similarities : dict of str to float
        ``{"FLAIR": nmi, "MEGRE": nmi}`` (normalised mutual information, 1-2).
    thr : QCThresholds
        The limits of the rules.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    out = []
    for series, value in sorted(similarities.items()):
        if _measured(value) and float(value) < thr.min_registration_similarity:
            out.append(QCFlag(participant_id, "registration", f"{series}->T1w", float(value),
                              thr.min_registration_similarity,
                              f"{series} to T1w registration similarity {float(value):.3f} is "
                              f"below {thr.min_registration_similarity:g}"))
    return out


def snr_flags(participant_id: str, snr: float | None, thr: QCThresholds) -> list[QCFlag]:
    """Flag a first-echo SNR below ``thr.min_snr``.

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    snr : float or None
        First-echo SNR (None: not measured, no flag).
    thr : QCThresholds
        The limits of the rules.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    if _measured(snr) and float(snr) < thr.min_snr:
        return [QCFlag(participant_id, "low_snr", "echo 1", float(snr), thr.min_snr,
                       f"first-echo SNR {float(snr):.1f} is below {thr.min_snr:g}")]
    return []


def flagged_voxel_flags(participant_id: str, brain_fraction: float | None,
                        region_fractions: dict[str, float], thr: QCThresholds) -> list[QCFlag]:
    """Flags for many fit-flagged voxels in the brain or in a region's eroded mask.

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    brain_fraction : float or None
        Flagged fraction of head voxels (0-1).
    region_fractions : dict of str to float
        Region -> flagged fraction of its eroded voxels.
    thr : QCThresholds
        The limits of the rules.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    out = []
    if _measured(brain_fraction) and float(brain_fraction) > thr.max_flagged_fraction:
        out.append(QCFlag(participant_id, "flagged_voxels", "brain", float(brain_fraction),
                          thr.max_flagged_fraction,
                          f"{100 * float(brain_fraction):.1f}% of brain voxels are flagged by "
                          f"the R2* fit (limit {100 * thr.max_flagged_fraction:g}%)"))
    for region, frac in sorted(region_fractions.items()):
        if _measured(frac) and float(frac) > thr.max_region_flagged_fraction:
            out.append(QCFlag(participant_id, "flagged_voxels", region, float(frac),
                              thr.max_region_flagged_fraction,
                              f"{100 * float(frac):.1f}% of {region} voxels are flagged "
                              f"(limit {100 * thr.max_region_flagged_fraction:g}%)"))
    return out


def region_flagged_fractions(regions: pd.DataFrame) -> dict[str, float]:
    """Flagged fraction per bilateral region from a regional table.

    Parameters
    ----------
    regions : pandas.DataFrame
        Columns ``region``, ``hemisphere``, ``n_voxels_eroded`` and ``n_voxels_flagged``
        (voxel counts).

    Returns
    -------
    dict of str to float
        Region -> flagged / eroded (NaN when empty).
    """
    need = {"region", "n_voxels_eroded", "n_voxels_flagged"}
    if regions.empty or not need <= set(regions.columns):
        return {}
    rows = regions
    if "hemisphere" in regions.columns and (regions["hemisphere"] == "bilateral").any():
        rows = regions[regions["hemisphere"] == "bilateral"]
    out = {}
    for region, grp in rows.groupby("region", sort=False):
        eroded = float(pd.to_numeric(grp["n_voxels_eroded"], errors="coerce").sum())
        flagged = float(pd.to_numeric(grp["n_voxels_flagged"], errors="coerce").sum())
        out[str(region)] = flagged / eroded if eroded > 0 else math.nan
    return out


def first_echo_snr(echo1: np.ndarray, head: np.ndarray | None = None,
                   margin_voxels: int = 3) -> float:
    """First-echo SNR: mean head signal over the background noise SD.

    Parameters
    ----------
    echo1 : ndarray of shape (X, Y, Z)
        First-echo magnitude (a.u.).
    head : ndarray of bool of shape (X, Y, Z), optional
        Head voxels; default: above 20 % of the 99th percentile.
    margin_voxels : int
        The head mask is dilated by this much before the rest counts as background.

    Returns
    -------
    float
        SNR (dimensionless); NaN without enough non-zero background (e.g. masked images).
        The background of a magnitude image is Rayleigh-distributed, so the noise SD is
        ``sqrt(mean(M^2) / 2)``.
    """
    e = np.asarray(echo1, dtype=float)
    if not np.isfinite(e).all():  # already finite (the page's float64 copy): no second copy
        e = np.nan_to_num(e)
    if head is None:
        pos = e[e > 0]
        if pos.size == 0:
            return math.nan
        head = e > 0.2 * np.percentile(pos, 99)
    if not head.any():
        return math.nan
    bg = ~ndimage.binary_dilation(head, iterations=margin_voxels)
    bg_vals = e[bg & (e > 0)]
    if bg_vals.size < 50:
        return math.nan
    sigma = math.sqrt(float(np.mean(bg_vals ** 2)) / 2.0)
    return float(e[head].mean() / sigma) if sigma > 0 else math.nan


def small_region_flags(participant_id: str, regions: pd.DataFrame | None,
                       thr: QCThresholds) -> list[QCFlag]:
    """One flag per regional-table row with too few voxels.

    Rows whose used voxels (``n_voxels``) are below ``thr.min_region_voxels`` (item
    ``"<region> <hemisphere>"``).

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    regions : pandas.DataFrame or None
        The regional table.
    thr : QCThresholds
        The limits of the rules.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    from ironmap.core.regions.regional_values import small_regions

    if regions is None:
        return []
    out = []
    for item, n in small_regions(regions, thr.min_region_voxels).items():
        what = "no voxel: its R2* is n/a" if n == 0 else f"only {n} voxel(s)"
        out.append(QCFlag(participant_id, "small_region", item, float(n),
                          float(thr.min_region_voxels),
                          f"{item} keeps {what} after erosion and quality exclusion (minimum "
                          f"{thr.min_region_voxels}); try --erosion-space native, "
                          "--erosion-fallback-mm or --erosion-mm"))
    return out


def registration_check_flags(participant_id: str, checks: dict[str, str]) -> list[QCFlag]:
    """One flag per within-session registration whose two-seed check failed.

    The two seeds' transforms disagreed by more than the tolerance; the message names the
    kept seed (:func:`ironmap.spatial.seedcheck.describe_check`).

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    checks : dict of str to str
        Series (``FLAIR``, ``MEGRE``) -> the failed check's description (the manifest's
        ``summary["registration_check_flags"]``).

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    return [QCFlag(participant_id, "registration", f"{series}->T1w seeds", math.nan, math.nan,
                   f"{series} to T1w registration unstable: {message}")
            for series, message in sorted(checks.items())]


def segmentation_flags(participant_id: str, errors: dict[str, str]) -> list[QCFlag]:
    """One flag per failed T1w step.

    The template registration or segmentation of the T1w failed; the step has no output.
    A ``registration_seeds_<series>`` step (manifests written before the check's flags had
    their own key) is a failed two-seed check (:func:`registration_check_flags`).

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    errors : dict of str to str
        Step -> message, e.g. ``{"volumes": ..., "deep_gm_labels": ...}``.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    out = []
    for step, message in sorted(errors.items()):
        if step == "volumes" and "implausible" in message:  # ran, but refused by its checks
            out.append(QCFlag(participant_id, "volumes", "implausible", math.nan, math.nan,
                              f"tissue volumes not reported: {message}"))
        elif step.startswith("registration_seeds_"):  # a failed two-seed check (old manifest)
            out += registration_check_flags(
                participant_id, {step.removeprefix("registration_seeds_"): message})
        else:
            out.append(QCFlag(participant_id, "segmentation", step, math.nan, math.nan,
                              f"{step.replace('_', ' ')} failed: {message}"))
    return out


def evaluate(participant_id: str, *, similarities: dict[str, float] | None = None,
             snr: float | None = None, brain_flagged_fraction: float | None = None,
             region_fractions: dict[str, float] | None = None,
             segmentation_errors: dict[str, str] | None = None,
             thresholds: QCThresholds | None = None,
             regions: pd.DataFrame | None = None,
             registration_checks: dict[str, str] | None = None) -> list[QCFlag]:
    """All flags of one participant.

    Parameters
    ----------
    participant_id : str
        The participant (named in the flags).
    similarities : dict of str to float, optional
        Registration NMI per series.
    snr : float, optional
        First-echo SNR.
    brain_flagged_fraction : float, optional
        Flagged fraction of head voxels.
    region_fractions : dict of str to float, optional
        Flagged fraction per region.
    segmentation_errors : dict of str to str, optional
        Failed T1w steps.
    thresholds : QCThresholds, optional
        Limits (defaults when None).
    regions : pandas.DataFrame, optional
        The regional table (small regions).
    registration_checks : dict of str to str, optional
        Series -> description of its failed two-seed registration check.

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    thr = thresholds or QCThresholds()
    return (registration_flags(participant_id, similarities or {}, thr)
            + registration_check_flags(participant_id, registration_checks or {})
            + snr_flags(participant_id, snr, thr)
            + flagged_voxel_flags(participant_id, brain_flagged_fraction,
                                  region_fractions or {}, thr)
            + small_region_flags(participant_id, regions, thr)
            + segmentation_flags(participant_id, segmentation_errors or {}))
