"""A methods paragraph generated from what actually ran, with references.

Everything in the text comes from the run: the :class:`~ironmap.workflows.config.RunConfig`
written to ``logs/``, the R2* map sidecars (estimator, echo times), the age-model table and
``stats.json`` (tests, conventions, thresholds), and the installed library versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

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
    "arlo": "Pei M, Nguyen TD, Thimmappa ND, et al. Algorithm for fast monoexponential fitting "
            "based on auto-regression on linear operations (ARLO) of data. Magn Reson Med. "
            "2015;73(2):843-850.",
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

_ESTIMATORS = {
    "two_point": "the two-point closed form R2* = ln(S(TE1)/S(TE2)) / (TE2 − TE1)",
    "loglinear": "a log-linear least-squares fit of ln S against TE",
    "wls": "a signal-weighted (S²) log-linear least-squares fit",
    "nonlinear": "a nonlinear least-squares fit of S = S0·exp(−R2*·TE)",
    "rician": "a noise-floor-aware (Rician likelihood) fit",
    "arlo": "auto-regression on linear operations (ARLO) [arlo]",
}


@dataclass
class Methods:
    """Paragraphs (plain text; ``[key]`` marks a citation) and the references they cite."""

    paragraphs: list[str] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Installed versions of ironmap and its main libraries ("not installed" otherwise)."""
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


def _fmt_te(echo_times: list[float] | None) -> str:
    if not echo_times:
        return "echo times as recorded in the BIDS sidecars"
    return "echo times " + ", ".join(f"{t * 1e3:.2f}" for t in echo_times) + " ms"


def _r2star_paragraph(config: Mapping[str, Any], r2: Mapping[str, Any]) -> str:
    method = str(r2.get("EstimationMethod") or config.get("method") or "auto")
    est = _ESTIMATORS.get(method, f"the '{method}' estimator")
    tes = r2.get("EchoTime")
    n_echo = len(tes) if isinstance(tes, list) else None
    echo_part = f"{n_echo} echoes, " if n_echo else ""
    return (f"R2* maps were computed voxel-wise from the magnitude multi-echo gradient-echo "
            f"images ({echo_part}{_fmt_te(tes if isinstance(tes, list) else None)}) with {est}, "
            f"using ironmap {config.get('_version', '')} [seed]. Voxels whose fit failed or was "
            f"flagged (non-positive signal, no decay, noise floor, out of range) were set to "
            f"missing and excluded from regional statistics.").replace("  ", " ")


def _erosion_phrase(config: Mapping[str, Any]) -> str:
    native = config.get("erosion_space") == "native"
    where = ("on their native grid before transport to the R2* grid" if native
             else "on the R2* grid")
    mm = config.get("erosion_mm")
    if mm is not None:
        return f"eroded by {float(mm):g} mm (Euclidean, voxel centres) {where}"
    erosion = int(config.get("erosion_voxels", 1))
    return (f"eroded by {erosion} voxel{'s' if erosion != 1 else ''} (3-D, 6-connected "
            f"structuring element) {where}" if erosion else "not eroded")


def _registration_paragraph(config: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    model = config.get("registration", "affine")
    ero = _erosion_phrase(config)
    return (f"FLAIR and gradient-echo (first echo) images were registered to the T1-weighted "
            f"image with a {model} transform using ANTs (antspyx {versions.get('antspyx')}) "
            f"[ants]; rater masks were carried to the R2* grid by composing the transforms once "
            f"with label-preserving (nearest-neighbour) interpolation and {ero} before the mean "
            f"R2* of each region was computed. T2 lesion load was computed as lesion area times "
            f"slice thickness on the FLAIR grid (cm³).")


def _age_paragraph(config: Mapping[str, Any], agefit: Any, stats: Mapping[str, Any]) -> str:
    ref = stats.get("reference_age", config.get("reference_age"))
    ref_txt = f"{float(ref):.1f} years" if _is_number(ref) else "the controls' mean age"
    n_fit, fallback = None, ""
    if agefit is not None and hasattr(agefit, "__len__"):
        n_fit = len(agefit)
        if "model" in getattr(agefit, "columns", ()):
            models = agefit["model"].astype(str).value_counts().to_dict()
            other = {k: v for k, v in models.items() if k != "saturation"}
            if other:
                fallback = (" (not identifiable from the controls in " + ", ".join(
                    f"{v} region{'s' if v != 1 else ''}: {k} model" for k, v in other.items())
                    + ")")
    per_site = " separately per site" if config.get("per_site_agecorr") else ""
    regions = f" in {n_fit} regions{fallback}" if n_fit else ""
    return (f"Age correction followed the seed study: an exponential saturation "
            f"R2* = a·(1 − exp(−b·age)) + c was fitted{regions} by bounded least squares on the "
            f"healthy controls ({config.get('group_column', 'group')} = "
            f"'{config.get('control_label', 'HC')}') only{per_site} [agecorr], and every "
            f"participant's R2* was adjusted to the reference age of {ref_txt}. Lesion R2* was "
            f"not age-corrected.")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _stats_paragraph(config: Mapping[str, Any], stats: Mapping[str, Any],
                     versions: Mapping[str, str]) -> str:
    conv = stats.get("conventions") or {}
    alpha = conv.get("alpha", stats.get("alpha", 0.05))
    p_enter = conv.get("p_enter", stats.get("p_enter", 0.05))
    p_remove = conv.get("p_remove", stats.get("p_remove", 0.10))
    normality = conv.get("normality_test", "a normality test (Shapiro-Wilk)")
    fdr = bool(config.get("fdr") or conv.get("fdr"))
    text = (f"Group differences in age-corrected R2* between each phenotype and the controls, "
            f"and between phenotypes, were tested with the Mann-Whitney U test (exact p without "
            f"ties, normal approximation otherwise) [mannwhitney]; sex differences with "
            f"Student's and Welch's t-tests. Correlations with cortical GM and WM volume, EDSS, "
            f"disease duration and lesion load used Pearson's r or Spearman's ρ, chosen by "
            f"{normality}. Forward stepwise linear regression in patients entered variables at "
            f"p < {p_enter} (partial F-test) and removed them at p > {p_remove}, reporting "
            f"standardised betas, multiple R and the model F-test. Site effects were assessed "
            f"by the inter-site coefficient of variation of control R2* and a mixed model with a "
            f"random site intercept (statsmodels {versions.get('statsmodels')}) [statsmodels]. "
            f"A p-value below {alpha} was considered significant")
    text += ("; p-values were corrected across regions with the Benjamini-Hochberg false "
             "discovery rate [fdr]." if fdr else "; no correction for multiple comparisons "
             "across regions was applied.")
    return text


def _software_paragraph(versions: Mapping[str, str]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "ironmap")
    return (f"Software: ironmap {versions.get('ironmap')} with {libs} [numpy] [scipy] "
            f"[nibabel]; data organised as BIDS [bids].")


def build_methods(config: Mapping[str, Any], *, r2star_sidecar: Mapping[str, Any] | None = None,
                  agefit: Any = None, stats: Mapping[str, Any] | None = None,
                  versions: Mapping[str, str] | None = None) -> Methods:
    """Methods text from the run's configuration and recorded metadata.

    Parameters
    ----------
    config : mapping
        ``RunConfig.to_json()`` of the run (or the one read from ``logs/``).
    r2star_sidecar : mapping, optional
        JSON sidecar of one R2* map (``EstimationMethod``, ``EchoTime`` in s).
    agefit : DataFrame, optional
        The age-model table (one row per region).
    stats : mapping, optional
        Content of ``group/stats.json``.
    versions : mapping, optional
        Library versions (default: :func:`library_versions`).
    """
    vers = dict(versions or library_versions())
    cfg = dict(config)
    cfg.setdefault("_version", vers.get("ironmap", ""))
    st = dict(stats or {})
    paragraphs = [_r2star_paragraph(cfg, r2star_sidecar or {}),
                  _registration_paragraph(cfg, vers),
                  _age_paragraph(cfg, agefit, st),
                  _stats_paragraph(cfg, st, vers),
                  _software_paragraph(vers)]
    cited = []
    for key in REFERENCES:
        if any(f"[{key}]" in p for p in paragraphs):
            cited.append((key, REFERENCES[key]))
    return Methods(paragraphs, cited, vers)
