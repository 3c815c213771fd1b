"""A participant's QC page: images in memory -> figure jobs, QC metrics and flags.

Input is :class:`SubjectImages` (arrays in closest-RAS voxel order, loaded and resampled by
the workflow); nothing here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from ironmap.core import qcflags
from ironmap.report import figures as F
from ironmap.report.html import TableView, table_view


@dataclass
class SubjectImages:
    """One participant's arrays; any may be None when the file is missing.

    ``echo1``, ``echo2``, ``r2star``, ``flags``, ``labels``, ``eroded``, ``lesion`` share the
    R2* grid, shape (X, Y, Z); ``t1w``, ``flair_on_t1w``, ``megre_on_t1w`` share the T1w grid.
    """

    label: str
    participant_id: str
    session_id: str | None = None
    echo1: np.ndarray | None = None
    echo2: np.ndarray | None = None
    echo_times: list[float] = field(default_factory=list)  # s
    r2star: np.ndarray | None = None  # s^-1
    flags: np.ndarray | None = None  # uint16 bit field
    labels: np.ndarray | None = None
    eroded: np.ndarray | None = None
    lesion: np.ndarray | None = None
    brain: np.ndarray | None = None  # brain mask on the R2* grid (``--brain-mask``)
    t1w: np.ndarray | None = None
    flair_on_t1w: np.ndarray | None = None
    megre_on_t1w: np.ndarray | None = None
    regions: pd.DataFrame | None = None  # the participant's regional table
    lesions: pd.DataFrame | None = None  # per-lesion table
    similarity: dict[str, float] = field(default_factory=dict)  # series -> NMI
    segmentation_errors: dict[str, str] = field(default_factory=dict)  # T1w step -> message
    problems: list[str] = field(default_factory=list)


def head_mask(echo1: np.ndarray | None) -> np.ndarray | None:
    """Voxels of the head: first echo above 20 % of its 99th percentile."""
    if echo1 is None:
        return None
    e = np.nan_to_num(np.asarray(echo1, float))
    hi = np.percentile(e[e > 0], 99) if np.any(e > 0) else 0.0
    return e > 0.2 * hi if hi > 0 else None


def display_mask(echo1: np.ndarray | None) -> np.ndarray | None:
    """Head mask for display: first echo above 10 % of its 99th percentile, holes filled."""
    from scipy import ndimage

    if echo1 is None:
        return None
    e = np.nan_to_num(np.asarray(echo1, float))
    if not np.any(e > 0):
        return None
    mask = ndimage.binary_closing(e > 0.1 * np.percentile(e[e > 0], 99), iterations=2)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def masked_r2star(img: SubjectImages) -> np.ndarray | None:
    """R2* with the background (outside :func:`display_mask`) set to NaN, for display."""
    mask = display_mask(img.echo1)
    if img.r2star is None or mask is None or mask.shape != img.r2star.shape:
        return img.r2star
    return np.where(mask, img.r2star, np.nan)


def metrics(img: SubjectImages) -> dict[str, Any]:
    """QC metrics: registration NMI per series, first-echo SNR, flagged fractions."""
    from ironmap.core.qc import FLAGS_INVALID

    head = head_mask(img.echo1)
    out: dict[str, Any] = {
        "registration_nmi_flair": img.similarity.get("FLAIR", np.nan),
        "registration_nmi_megre": img.similarity.get("MEGRE", np.nan),
        "snr_echo1": qcflags.first_echo_snr(img.echo1, head) if img.echo1 is not None
        else np.nan,
        "flagged_fraction_head": np.nan,
    }
    if img.flags is not None and head is not None and head.any():
        invalid = (np.asarray(img.flags, np.uint16) & FLAGS_INVALID) != 0
        out["flagged_fraction_head"] = float(invalid[head].mean())
    fracs = qcflags.region_flagged_fractions(img.regions) if img.regions is not None else {}
    out["region_flagged_fraction"] = fracs
    finite = [v for v in fracs.values() if np.isfinite(v)]
    out["max_region_flagged_fraction"] = max(finite) if finite else np.nan
    return out


def flags_for(img: SubjectImages, m: dict[str, Any],
              thresholds: qcflags.QCThresholds | None = None) -> list[qcflags.QCFlag]:
    """The automatic QC flags of one participant."""
    return qcflags.evaluate(img.label, similarities=dict(img.similarity), snr=m["snr_echo1"],
                            brain_flagged_fraction=m["flagged_fraction_head"],
                            region_fractions=m["region_flagged_fraction"],
                            segmentation_errors=dict(img.segmentation_errors),
                            thresholds=thresholds, regions=img.regions)


def metrics_view(m: dict[str, Any]) -> TableView:
    """The metrics as a one-row table."""
    row = {k: v for k, v in m.items() if not isinstance(v, dict)}
    return table_view(pd.DataFrame([row]), id="metrics", caption="QC metrics",
                      combine_mean_sd=False, dictionary=METRIC_DICTIONARY)


METRIC_DICTIONARY: dict[str, dict[str, str]] = {
    "registration_nmi_flair": {"Description": "Normalised mutual information of FLAIR and T1w "
                               "after registration (1 = independent, 2 = identical)"},
    "registration_nmi_megre": {"Description": "Normalised mutual information of GRE echo 1 and "
                               "T1w after registration"},
    "snr_echo1": {"Description": "First-echo SNR: mean head signal / noise SD estimated from "
                  "the background (Rayleigh)"},
    "flagged_fraction_head": {"Description": "Fraction of head voxels whose R2* fit failed or "
                              "was flagged invalid"},
    "max_region_flagged_fraction": {"Description": "Largest fraction of a region's eroded "
                                    "voxels excluded by the fit flags"},
}


def _r2_range(img: SubjectImages) -> tuple[float, float]:
    """Colour range of the R2* figures: brain voxels' 99th percentile where a brain mask
    exists (the scalp's R2* would stretch it), else from the labels and the whole map."""
    if img.r2star is None:
        return 0.0, 1.0
    if img.brain is not None and img.brain.shape == img.r2star.shape and img.brain.any():
        return 0.0, F.robust_range(np.where(img.brain > 0, img.r2star, np.nan), 1, 99)[1]
    vals = img.r2star
    if img.labels is not None and np.any(img.labels > 0):
        vals = np.where(img.labels > 0, img.r2star, np.nan)
    return 0.0, max(F.robust_range(vals, 1, 99.5)[1], F.robust_range(img.r2star, 1, 95)[1])


def figure_jobs(img: SubjectImages) -> list[tuple[str, F.FigureJob]]:
    """(section, job) pairs of the participant page (sections: maps, registration, overlays)."""
    p = img.label
    rng = _r2_range(img)
    r2 = masked_r2star(img)
    mask = img.labels if img.labels is not None else head_mask(img.echo1)
    jobs = [
        ("maps", F.FigureJob(
            "fig1", "Figure 1 · echoes and R2* map",
            "(A) first and (B) second echo, (C) R2* map, (D) eroded regions on R2*.",
            f"{p}_desc-fig1_R2starmap",
            partial(F.subject_maps_figure, img.echo1, img.echo2, r2, img.eroded,
                    r2star_range=rng, echo_times=img.echo_times, title=p))),
        ("maps", F.FigureJob(
            "montage", "R2* montage", "Axial R2* slices (s⁻¹) across the head.",
            f"{p}_desc-montage_R2starmap",
            partial(F.r2star_montage_figure, r2, mask=head_mask(img.echo1),
                    r2star_range=rng))),
        ("registration", F.FigureJob(
            "flair-t1w", "FLAIR registered to T1w", "FLAIR edges over the T1w image.",
            f"{p}_desc-flairedges_T1w",
            partial(F.edge_overlay_figure, img.t1w, img.flair_on_t1w))),
        ("registration", F.FigureJob(
            "megre-t1w", "GRE (echo 1) registered to T1w", "GRE echo-1 edges over the T1w.",
            f"{p}_desc-megreedges_T1w",
            partial(F.edge_overlay_figure, img.t1w, img.megre_on_t1w))),
        ("overlays", F.FigureJob(
            "regions", "Regions and lesions on R2*",
            "Deep grey-matter labels (colours, before erosion) and lesion outlines (cyan).",
            f"{p}_desc-overlay_R2starmap",
            partial(F.regions_lesions_figure, r2, img.labels, img.lesion,
                    r2star_range=rng))),
    ]
    if mask is not None and img.regions is not None:
        fr = qcflags.region_flagged_fractions(img.regions)
        frame = pd.DataFrame({"region": list(fr), "flagged_fraction": list(fr.values())})
        jobs.append(("overlays", F.FigureJob(
            "flagfraction", "Quality-flag fraction per region",
            "Fraction of each region's eroded voxels excluded by the R2* fit flags.",
            f"{p}_desc-flags_R2starmap", partial(F.flag_fraction_figure, frame))))
    return jobs


def regions_view(img: SubjectImages) -> TableView | None:
    """The participant's regional table."""
    if img.regions is None:
        return None
    return table_view(img.regions, id="regions", caption="Regional R2* (s⁻¹)",
                      source=f"{img.label}_desc-regions_r2star.tsv")


def lesions_view(img: SubjectImages) -> TableView | None:
    """The participant's per-lesion table (first 50 rows)."""
    if img.lesions is None or img.lesions.empty:
        return None
    note = f"{len(img.lesions)} lesions; first 50 shown." if len(img.lesions) > 50 else ""
    return table_view(img.lesions.head(50), id="lesions", caption="Lesion R2*",
                      source=f"{img.label}_desc-lesions_r2star.tsv", note=note)
