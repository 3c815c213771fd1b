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

from ironmap.core.qc import run_flags
from ironmap.report import figures as F
from ironmap.report import overlays as O
from ironmap.report import pageimages as P
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
    t1w: np.ndarray | None = None
    #: whether the participant has a FLAIR (no FLAIR-to-T1w figure without one)
    has_flair: bool = True
    flair_on_t1w: np.ndarray | None = None
    megre_on_t1w: np.ndarray | None = None
    #: axial T1w slices of ``flair_on_t1w`` / ``megre_on_t1w`` to show (only those are filled)
    t1w_slices: dict[str, list[int]] = field(default_factory=dict)
    regions: pd.DataFrame | None = None  # the participant's regional table
    lesions: pd.DataFrame | None = None  # per-lesion table
    brain: np.ndarray | None = None  # brain mask on the R2* grid (desc-brain_mask), if any
    voxel_sizes: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm, R2* grid (closest RAS)
    t1w_voxel_sizes: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm, T1w (closest RAS)
    label_names: dict[int, str] = field(default_factory=dict)  # label value -> name
    similarity: dict[str, float] = field(default_factory=dict)  # series -> NMI
    segmentation_errors: dict[str, str] = field(default_factory=dict)  # T1w step -> message
    #: series -> description of its failed two-seed registration check
    registration_checks: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: masks and ranges derived from the arrays, computed once (see :func:`derived`)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def derived(img: SubjectImages, name: str, make):
    """A value derived from a participant's arrays, computed once and kept in ``img.cache``.

    Parameters
    ----------
    img : SubjectImages
        The participant; its arrays must not change after the first call for ``name``.
    name : str
        Key of the value (e.g. ``"head"``, ``"display"``, ``"range"``).
    make : callable
        ``() -> value``, called only when ``name`` is not cached yet.

    Returns
    -------
    object
        The cached value.
    """
    if name not in img.cache:
        img.cache[name] = make()
    return img.cache[name]


def head_mask(echo1: np.ndarray | None) -> np.ndarray | None:
    """Voxels of the head: first echo above 20 % of its 99th percentile.

    Parameters
    ----------
    echo1 : ndarray of shape (nx, ny, nz) or None
        First-echo magnitude.

    Returns
    -------
    ndarray of bool, shape (nx, ny, nz), or None
        None without an echo.
    """
    if echo1 is None:
        return None
    e = np.nan_to_num(np.asarray(echo1, float))
    hi = np.percentile(e[e > 0], 99) if np.any(e > 0) else 0.0
    return e > 0.2 * hi if hi > 0 else None


def display_mask(echo1: np.ndarray | None) -> np.ndarray | None:
    """Head mask for display: first echo above 10 % of its 99th percentile, holes filled.

    Parameters
    ----------
    echo1 : ndarray of shape (nx, ny, nz) or None
        First-echo magnitude.

    Returns
    -------
    ndarray of bool, shape (nx, ny, nz), or None
        None without an echo.
    """
    from scipy import ndimage

    if echo1 is None:
        return None
    e = np.nan_to_num(np.asarray(echo1, float))
    if not np.any(e > 0):
        return None
    mask = ndimage.binary_closing(e > 0.1 * np.percentile(e[e > 0], 99), iterations=2)
    return fill_holes_in_plane(mask)


def fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice: ``binary_fill_holes`` slice by slice, at once.

    A hole is background that no in-plane (4-connected) path joins to the slice's edge, as
    :func:`scipy.ndimage.binary_fill_holes` defines it on each 2-D slice; the background of
    all slices is labelled in one pass with an in-plane structure instead of a loop.

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz)
        The mask.

    Returns
    -------
    ndarray of bool, shape (nx, ny, nz)
        The mask with each slice's holes filled.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    background, _ = ndimage.label(~mask, plane)
    edges = np.concatenate([background[0].ravel(), background[-1].ravel(),
                            background[:, 0].ravel(), background[:, -1].ravel()])
    reached = np.unique(edges[edges > 0])
    return ~np.isin(background, reached)


def masked_r2star(img: SubjectImages) -> np.ndarray | None:
    """R2* with the background (outside :func:`display_mask`) set to NaN, for display.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    ndarray of shape (nx, ny, nz) or None
        R2* in s^-1; None without an R2* map.
    """
    mask = derived(img, "display", lambda: display_mask(img.echo1))
    if img.r2star is None or mask is None or mask.shape != img.r2star.shape:
        return img.r2star
    return np.where(mask, img.r2star, np.nan)


def metrics(img: SubjectImages) -> dict[str, Any]:
    """QC metrics: registration NMI per series, first-echo SNR, flagged fractions.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    dict
        The columns of :data:`ironmap.io.dictionaries.QC_METRICS` (NaN when not measurable)
        and per-region flagged fractions.
    """
    from ironmap.core.r2star.fit_flags import FLAGS_INVALID

    head = derived(img, "head", lambda: head_mask(img.echo1))
    out: dict[str, Any] = {
        "registration_nmi_flair": img.similarity.get("FLAIR", np.nan),
        "registration_nmi_megre": img.similarity.get("MEGRE", np.nan),
        "snr_echo1": run_flags.first_echo_snr(img.echo1, head) if img.echo1 is not None
        else np.nan,
        "flagged_fraction_head": np.nan,
    }
    if img.flags is not None and head is not None and head.any():
        invalid = (np.asarray(img.flags, np.uint16) & FLAGS_INVALID) != 0
        out["flagged_fraction_head"] = float(invalid[head].mean())
    fracs = run_flags.region_flagged_fractions(img.regions) if img.regions is not None else {}
    out["region_flagged_fraction"] = fracs
    finite = [v for v in fracs.values() if np.isfinite(v)]
    out["max_region_flagged_fraction"] = max(finite) if finite else np.nan
    return out


def flags_for(img: SubjectImages, m: dict[str, Any],
              thresholds: run_flags.QCThresholds | None = None) -> list[run_flags.QCFlag]:
    """The automatic QC flags of one participant.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).
    m : dict
        Its metrics (:func:`metrics`).
    thresholds : QCThresholds, optional
        Limits of the rules (defaults when None).

    Returns
    -------
    list of QCFlag
        The flags raised (empty: pass).
    """
    return run_flags.evaluate(img.label, similarities=dict(img.similarity), snr=m["snr_echo1"],
                            brain_flagged_fraction=m["flagged_fraction_head"],
                            region_fractions=m["region_flagged_fraction"],
                            segmentation_errors=dict(img.segmentation_errors),
                            thresholds=thresholds, regions=img.regions,
                            registration_checks=dict(img.registration_checks))


def metrics_view(m: dict[str, Any]) -> TableView:
    """The metrics as a one-row table.

    Parameters
    ----------
    m : dict
        The metrics (:func:`metrics`).

    Returns
    -------
    TableView
        One row, scalar metrics only.
    """
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


#: display range of R2*: these percentiles of the brain voxels' R2*
DISPLAY_PERCENTILES = (1.0, 99.0)
#: without a brain mask, the GRE signal mask is eroded in-plane by this much (mm): about the
#: thickness of scalp and skull, whose R2* would otherwise set the colour scale
SCALP_MM = 8.0


def brain_voxels(img: SubjectImages) -> tuple[np.ndarray | None, str]:
    """Voxels whose R2* sets the colour scale, and where they come from (for the caption).

    The brain mask on the R2* grid when there is one; otherwise the GRE signal mask eroded
    by :data:`SCALP_MM` (drops most of the scalp); in both cases only voxels with a valid R2*.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    mask : ndarray of bool, shape (nx, ny, nz), or None
        The voxels (None without an R2* map).
    source : str
        Where they come from.
    """
    from scipy import ndimage

    from ironmap.core.r2star.fit_flags import FLAGS_INVALID

    if img.r2star is None:
        return None, "no R2* map"
    valid = np.isfinite(img.r2star)
    if img.flags is not None and img.flags.shape == valid.shape:
        valid &= (np.asarray(img.flags, np.uint16) & FLAGS_INVALID) == 0
    if img.brain is not None and img.brain.shape == valid.shape and np.any(img.brain):
        return valid & (np.asarray(img.brain) > 0), "brain mask (desc-brain_mask)"
    head = derived(img, "display", lambda: display_mask(img.echo1))
    if head is not None and head.shape == valid.shape:
        n = max(1, int(round(SCALP_MM / max(min(img.voxel_sizes[:2]), 1e-3))))
        plane = np.zeros((3, 3, 3), bool)
        plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)  # in-plane only
        inner = ndimage.binary_erosion(head, plane, iterations=n)
        if np.any(inner & valid):
            return valid & inner, f"GRE signal mask eroded by {SCALP_MM:g} mm ({n} voxels)"
    return valid, "all voxels with a valid R2*"


def r2star_display_range(img: SubjectImages) -> tuple[float, float, str]:
    """The R2* colour range and a sentence stating it and the voxels it comes from.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    low, high : float
        The range in s^-1 (:data:`DISPLAY_PERCENTILES` of :func:`brain_voxels`).
    text : str
        The sentence for the caption.
    """
    return derived(img, "range", lambda: _display_range(img))


def _display_range(img: SubjectImages) -> tuple[float, float, str]:
    mask, source = brain_voxels(img)
    if mask is None or not np.any(mask):
        return 0.0, 1.0, "R2* display range: no valid voxels"
    lo, hi = np.percentile(img.r2star[mask], DISPLAY_PERCENTILES)
    lo, hi = float(max(lo, 0.0)), float(hi if hi > lo else lo + 1.0)
    p_lo, p_hi = (_ordinal(p) for p in DISPLAY_PERCENTILES)
    return lo, hi, (f"R2* colour scale {lo:.1f}-{hi:.1f} s⁻¹: the {p_lo}-{p_hi} "
                    f"percentiles of R2* in {int(mask.sum())} voxels of the {source}.")


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    suffix = {"1": "st", "2": "nd", "3": "rd"}.get(n[-1], "th")
    return n + ("th" if n.endswith(("11", "12", "13")) else suffix)


def flagged_mask(img: SubjectImages) -> np.ndarray | None:
    """Voxels whose fit is flagged invalid.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    ndarray of bool, shape (nx, ny, nz), or None
        On the R2* grid; None without a flags map.
    """
    from ironmap.core.r2star.fit_flags import FLAGS_INVALID

    if img.flags is None:
        return None
    return (np.asarray(img.flags, np.uint16) & FLAGS_INVALID) != 0


def figure_jobs(img: SubjectImages) -> list[tuple[str, F.FigureJob]]:
    """The figures of the participant page.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    list of (str, FigureJob)
        Section (``maps``, ``registration``, ``overlays``) and figure, in page order.
    """
    from ironmap.core.r2star.fit_flags import FLAGS_INVALID

    p = img.label
    lo, hi, range_text = r2star_display_range(img)
    rng = (lo, hi)
    r2 = masked_r2star(img)
    head = derived(img, "head", lambda: head_mask(img.echo1))
    t1w_range = None if img.t1w is None else F.robust_range(img.t1w, 1, 99.5)
    names = img.label_names or None
    vox, t1w_vox = img.voxel_sizes[:2], img.t1w_voxel_sizes[:2]
    echo_range = None if img.echo1 is None else F.robust_range(img.echo1, 1, 99.5)
    jobs = [
        ("maps", F.FigureJob(
            "fig1", "Figure 1 · echoes and R2* map",
            "(A) first and (B) second echo, (C) R2* map, (D) eroded regions on R2* (legend: "
            "label names). " + range_text,
            f"{p}_desc-fig1_R2starmap",
            partial(P.maps_figure, img.echo1, img.echo2, r2, img.eroded,
                    r2star_range=rng, echo_times=img.echo_times, title=p, label_names=names,
                    voxel_sizes=vox, echo_range=echo_range))),
        ("maps", F.FigureJob(
            "montage", "R2* montage", "Axial R2* slices (s⁻¹) across the head. " + range_text,
            f"{p}_desc-montage_R2starmap",
            partial(P.montage_figure, r2, mask=head, r2star_range=rng, voxel_sizes=vox))),
        *([("registration", F.FigureJob(
            "flair-t1w", "FLAIR registered to T1w", "FLAIR edges (orange) over the T1w image.",
            f"{p}_desc-flairedges_T1w",
            partial(P.edges_figure, img.t1w, img.flair_on_t1w,
                    slices=img.t1w_slices.get("flair_on_t1w"), display_range=t1w_range,
                    voxel_sizes=t1w_vox)))] if img.has_flair else []),
        ("registration", F.FigureJob(
            "megre-t1w", "GRE (echo 1) registered to T1w",
            "GRE echo-1 edges (orange) over the T1w.", f"{p}_desc-megreedges_T1w",
            partial(P.edges_figure, img.t1w, img.megre_on_t1w,
                    slices=img.t1w_slices.get("megre_on_t1w"), display_range=t1w_range,
                    voxel_sizes=t1w_vox))),
        ("overlays", F.FigureJob(
            "regions", "Regions and lesions on R2*",
            "Deep grey-matter labels (one colour each, before erosion; the legend lists the "
            "labels drawn) and lesion outlines (cyan) on R2* (grey). " + range_text,
            f"{p}_desc-overlay_R2starmap",
            partial(P.regions_figure, r2, img.labels, img.lesion,
                    r2star_range=rng, label_names=names, voxel_sizes=vox))),
    ]
    if img.eroded is not None and img.r2star is not None:
        jobs.append(("overlays", F.FigureJob(
            "histograms", "R2* per region",
            "Histogram of R2* in each eroded label: the valid (unflagged) voxels the regional "
            "mean is computed from; black line = mean.", f"{p}_desc-histograms_R2starmap",
            partial(P.histograms_svg, img.r2star, img.eroded, img.flags, names,
                    int(FLAGS_INVALID)))))
    flagged = flagged_mask(img)
    if flagged is not None and img.echo1 is not None:
        jobs.append(("overlays", F.FigureJob(
            "flagged", "Flagged voxels",
            "Voxels whose R2* fit failed or was flagged invalid (red) inside the head, on the "
            "first echo, with the region outlines (green); slices with the most flagged voxels "
            "are shown.", f"{p}_desc-flags_R2starmap",
            partial(P.flagged_figure, img.echo1, flagged, head, img.labels,
                    voxel_sizes=vox, display_range=echo_range))))
    return jobs


def viewer_view(img: SubjectImages) -> dict[str, Any] | None:
    """The interactive viewer's payload, legend and stated range.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    dict or None
        Quantised R2* planes and labels for the page's script; None without an R2* map.
    """
    from ironmap.report.viewer import viewer_data

    if img.r2star is None:
        return None
    lo, hi, range_text = r2star_display_range(img)
    head = derived(img, "display", lambda: display_mask(img.echo1))
    if head is not None and head.shape != img.r2star.shape:
        head = None
    colors = O.label_colors(np.unique(img.labels)) if img.labels is not None else {}
    data = viewer_data(img.r2star, head=head, labels=img.labels, lesion=img.lesion,
                       voxel_sizes=img.voxel_sizes, window=(lo, hi), label_colors=colors,
                       label_names=img.label_names)
    legend = [(img.label_names.get(v, f"label {v}"), c) for v, c in colors.items()]
    note = range_text + (f" Shown every {_ordinal(data.step)} voxel in-plane (page size)."
                         if data.step > 1 else "")
    return {"payload": data.payload, "n_bytes": data.n_bytes, "legend": legend,
            "lesion": img.lesion is not None, "note": note,
            "shape": "×".join(str(n) for n in data.shape)}


def regions_view(img: SubjectImages) -> TableView | None:
    """The participant's regional table.

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    TableView or None
        None without a regional table.
    """
    if img.regions is None:
        return None
    return table_view(img.regions, id="regions", caption="Regional R2* (s⁻¹)",
                      source=f"{img.label}_desc-regions_r2star.tsv")


def lesions_view(img: SubjectImages) -> TableView | None:
    """The participant's per-lesion table (first 50 rows).

    Parameters
    ----------
    img : SubjectImages
        The participant's arrays (closest RAS+).

    Returns
    -------
    TableView or None
        None without lesions.
    """
    if img.lesions is None or img.lesions.empty:
        return None
    note = f"{len(img.lesions)} lesions; first 50 shown." if len(img.lesions) > 50 else ""
    return table_view(img.lesions.head(50), id="lesions", caption="Lesion R2*",
                      source=f"{img.label}_desc-lesions_r2star.tsv", note=note)
