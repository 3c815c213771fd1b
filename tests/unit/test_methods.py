"""The methods text says what the run's record says, for every setting (and nothing else)."""

from __future__ import annotations

import copy
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from ironmap.io.study import parse_flag
from ironmap.report import methods as M

VERSIONS = {"ironmap": "1.2.3", "numpy": "2.0", "antspyx": "0.6", "statsmodels": "0.14"}
REGIONS = ["caudate", "putamen", "globus_pallidus", "substantia_nigra", "red_nucleus",
           "dentate_nucleus"]


def base_record() -> dict:
    agefit = pd.DataFrame({"region": REGIONS, "hemisphere": "bilateral", "site": "all",
                           "model": "saturation"})
    return M.methods_record(
        {"method": "two_point", "registration": "affine", "erosion_voxels": 1,
         "volumes": True, "control_label": "HC", "group_column": "group"},
        r2star_sidecar={"EstimationMethod": "two_point", "EchoTime": [0.00492, 0.0246]},
        agefit=agefit, settings={"fdr": False, "alpha": 0.05, "p_enter": 0.05,
                                 "p_remove": 0.1, "mixed_model": True},
        reference_age=38.25, sources={"masks": {"rater": 12}, "lesions": {"rater": 12}})


def text_of(record: dict) -> str:
    return " ".join(M.methods_text(record, VERSIONS).paragraphs)


def sentences(text: str) -> list[str]:
    # split after a full stop followed by a capital or "p-values" (no split inside "0.05")
    return [s for s in re.split(r"(?<=\.)\s+(?=[A-Z]|p-values)", text) if s]


def age_clauses(text: str) -> dict[str, list[str]]:
    """Model description -> regions, parsed from the age sentence."""
    sentence = next(s for s in sentences(text) if s.startswith("Age dependence of R2*"))
    body = sentence.split(": ", 1)[1].rstrip(".")
    out = {}
    for clause in body.split("; "):
        m = re.fullmatch(r"(.*) in (\d+) regions? \(([^)]*)\)(, where .*)?", clause)
        assert m, clause
        regions = [r.strip().replace(" ", "_") for r in m.group(3).split(",")]
        assert int(m.group(2)) == len(regions), clause  # the count matches the list
        out[m.group(1)] = regions
    return out


def check_consistent(record: dict, text: str) -> None:  # noqa: C901 - one check per setting
    """Every setting of ``record`` is stated correctly, no other value of it is stated."""
    # estimator
    est = record["r2star"]["estimator"]
    for name, phrase in M.ESTIMATORS.items():
        assert (phrase in text) == (name == est), (name, est)
    if est not in M.ESTIMATORS:
        assert f"the '{est}' estimator" in text
    tes = record["r2star"]["echo_times_s"]
    if tes:
        assert ", ".join(f"{t * 1e3:.2f}" for t in tes) + " ms" in text
    # registration
    model = record["registration"]["model"]
    for name, phrase in M.REGISTRATIONS.items():
        assert (phrase in text) == (name == model), (name, model)
    tol = record["registration"].get("seed_check_mm")
    checked = isinstance(tol, (int, float)) and tol > 0
    assert ("two metric-sampling seeds" in text) == checked
    if checked:
        assert f"transforms differed by more than {tol:g} mm" in text
        assert "second first on the coarse resolution levels only" in text
    # masks and erosion
    masks = record["masks_source"]
    erosion = record["erosion_voxels"]
    assert ("No deep grey-matter masks were available" in text) == (masks == "none")
    assert ("drawn by raters" in text.split("T2 lesion")[0]) == (
        masks == "rater" or (masks == "mixed" and "rater" in record["masks_sources"]))
    assert ("propagated from the atlas" in text) == (
        masks == "atlas" or (masks == "mixed" and "atlas" in record["masks_sources"]))
    automatic = masks == "automatic" or (masks == "mixed"
                                         and "automatic" in record["masks_sources"])
    assert ("propagated automatically from atlas labels" in text) == automatic
    assert ("greatest R2* contrast between the label" in text) == (
        automatic and record.get("nuclei_refine") in ("iron", "iron-all"))
    assert ("substantia nigra and red nucleus (together)" in text) == (
        automatic and record.get("nuclei_refine") == "iron-all")
    assert ("second, local SyN" in text) == (
        automatic and record.get("midbrain_refine") == "local")
    core = record.get("sn_core")
    assert ("as the fraction of every voxel it covers" in text) == (
        automatic and core is not None)
    if automatic and core is not None:
        assert f"covered at least {float(core):g} of" in text
    if masks not in ("none", "mixed", "rater", "atlas", "automatic", "unrecorded"):
        assert f"from source '{masks}'" in text
    if masks != "none":
        assert (f"eroded by {erosion} voxel" in text) == (erosion > 0)
        assert ("not eroded" in text) == (erosion == 0)
    else:
        assert "eroded" not in text
    # lesions
    les = record["lesions_source"]
    assert ("No lesion masks were available" in text) == (les == "none")
    assert ("T2 lesion load was computed" in text) == (les != "none")
    assert ("segmented automatically from each participant's FLAIR" in text) == (
        les == "automatic")
    assert ("measured on the lesion cores" in text) == (les in ("automatic", "mixed"))
    samseg = record.get("lesion_method") == "samseg"
    assert ("partial-volume rim (voxels below a quarter" in text) == (
        les in ("automatic", "mixed") and not samseg)
    assert ("SAMSEG's lesion mode" in text) == (les in ("automatic", "mixed") and samseg)
    assert ("registered rigidly to the first" in text) == bool(
        record.get("longitudinal_template"))
    # age model per region
    age = record["age_model"]
    models = age["regions"]
    fitted = {r: m for r, m in models.items() if m != "none"}
    if fitted:
        clauses = age_clauses(text)
        shown = {r: desc for desc, regs in clauses.items() for r in regs}
        assert set(shown) == set(fitted)  # every fitted region once, no other
        for region, model in fitted.items():
            assert shown[region] == ((age.get("descriptions") or {}).get(model)
                                     or M.AGE_MODELS.get(model, f"the '{model}' age model"))
        assert f"reference age of {age['reference_age_years']:.1f} years" in text
        assert ("separately per site" in text) == bool(age["per_site"])
        assert ("pooled over sites" in text) == (not age["per_site"])
        fallback = "where the saturation was not identifiable" in text
        assert fallback == ("linear" in fitted.values() and age["requested"] in M._AUTOMATIC
                            and bool(set(fitted.values()) - {"linear"}))
    else:
        assert "R2* was not age-corrected" in text and "reference age" not in text
    nones = sorted(r for r, m in models.items() if m == "none")
    if nones and fitted:
        n = len(nones)
        assert f"No age model could be fitted in {n} region{'s' if n > 1 else ''}" in text
    # statistics
    fdr = record["fdr"]
    assert ("Benjamini-Hochberg" in text) == (fdr["applied"] and fdr["method"] in (
        None, "benjamini-hochberg"))
    assert ("No correction for multiple comparisons" in text) == (not fdr["applied"])
    assert "corrected across regions" in text if fdr["applied"] else \
        "corrected across regions" not in text
    assert f"A p-value below {record['alpha']} was considered significant" in text
    assert ("random site intercept" in text) == record["mixed_model"]
    assert ("cortical GM and WM volume" in text) == record["volumes"]
    assert ("head-size-normalised" in text) == (record["volumes"]
                                                and record.get("volumes_normalised", False))


def flip(record: dict, path: str, value) -> dict:
    out = copy.deepcopy(record)
    *parents, key = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[key] = value
    return out


FLIPS = [
    ("fdr", {"applied": True, "method": "benjamini-hochberg"}),
    ("fdr", {"applied": True, "method": "holm"}),
    ("fdr", {"applied": False, "method": None}),
    *[("r2star.estimator", e) for e in [*M.ESTIMATORS, "future_fit"]],
    ("r2star.echo_times_s", None),
    ("r2star.echo_times_s", [0.004, 0.008, 0.012, 0.016]),
    *[("registration.model", r) for r in ("rigid", "affine", "syn")],
    *[("erosion_voxels", n) for n in (0, 1, 2)],
    *[("masks_source", k) for k in ("rater", "atlas", "automatic", "none", "unrecorded",
                                    "synthseg")],
    *[("lesions_source", k) for k in ("rater", "automatic", "none", "unrecorded")],
    ("lesion_method", "samseg"),
    ("age_model.per_site", True),
    ("age_model.reference_age_years", 51.04),
    ("age_model.requested", "linear"),
    ("mixed_model", False),
    ("volumes", False),
    ("volumes_normalised", True),
    ("longitudinal_template", True),
    ("alpha", 0.01),
    ("nuclei_refine", "iron"),
    ("midbrain_refine", "local"),
    ("sn_core", 0.9),
    ("sn_core", 0.75),
    ("registration.seed_check_mm", 2.0),
    ("registration.seed_check_mm", 3.5),
    ("registration.seed_check_mm", 0),
]


def test_registration_seed_check_is_recorded_from_the_config():
    rec = M.methods_record({"method": "two_point", "registration_check_mm": 2.0})
    assert rec["registration"]["seed_check_mm"] == 2.0
    assert "differed by more than 2 mm" in text_of(flip(base_record(), "registration",
                                                        rec["registration"]))
    # a run before the check (no key) states no check
    assert "two metric-sampling seeds" not in text_of(base_record())


@pytest.mark.parametrize("refine", ["iron", "iron-all", "none"])
def test_nuclei_refinement_stated_for_automatic_labels(refine):
    record = flip(flip(base_record(), "masks_source", "automatic"), "nuclei_refine", refine)
    text = text_of(record)
    check_consistent(record, text)
    assert ("cross-fitting" in text) == (refine != "none")
    # a record without the key (a run before the option) states no refinement
    assert M.methods_record({"method": "two_point"})["nuclei_refine"] == "none"


@pytest.mark.parametrize("mode", ["local", "none"])
def test_midbrain_refinement_stated_for_automatic_labels(mode):
    record = flip(flip(base_record(), "masks_source", "automatic"), "midbrain_refine", mode)
    text = text_of(record)
    check_consistent(record, text)
    assert ("box around both nuclei" in text) == (mode == "local")
    # a record without the key (a run before the option) states no local registration
    assert M.methods_record({"method": "two_point"})["midbrain_refine"] == "none"


@pytest.mark.parametrize(("path", "value"), FLIPS, ids=[f"{p}={v}" for p, v in FLIPS])
def test_each_setting_flipped_is_stated(path, value):
    record = flip(base_record(), path, value)
    check_consistent(record, text_of(record))


AGE_CASES = {
    "all saturation": dict.fromkeys(REGIONS, "saturation"),
    "all linear": dict.fromkeys(REGIONS, "linear"),
    "mixed with fallback": {**dict.fromkeys(REGIONS[:4], "saturation"),
                            **dict.fromkeys(REGIONS[4:], "linear")},
    "one none": {**dict.fromkeys(REGIONS[:5], "saturation"), REGIONS[5]: "none"},
    "all none": dict.fromkeys(REGIONS, "none"),
    "new model names": {"caudate": "prior", "putamen": "seed", "globus_pallidus": "auto",
                        "red_nucleus": "spline"},
    "no regions": {},
}


@pytest.mark.parametrize("case", list(AGE_CASES))
@pytest.mark.parametrize("requested", [None, "auto", "linear", "prior"])
def test_age_model_per_region(case, requested):
    record = flip(flip(base_record(), "age_model.regions", AGE_CASES[case]),
                  "age_model.requested", requested)
    text = text_of(record)
    if AGE_CASES[case]:
        check_consistent(record, text)
    else:
        assert "not available, so the model per region is not stated" in text


def test_known_bugs_do_not_come_back():
    # the string "none" (stats.json conventions) and a "false" string are not "FDR on"
    for value in ("none", "false", "off", False, None, 0):
        record = M.methods_record({}, settings={"fdr": value})
        assert record["fdr"] == {"applied": False, "method": None}
        assert "Benjamini" not in text_of(record)
    # "fitted in 8 regions (not identifiable ... in 8 regions: linear)": linear regions are
    # never counted as saturation fits
    record = flip(base_record(), "age_model.regions", dict.fromkeys(REGIONS, "linear"))
    text = text_of(record)
    assert "saturation" not in text and "6 regions" in text
    with pytest.raises(ValueError, match="fdr: cannot read 'maybe'"):
        parse_flag("maybe", "fdr")


def test_all_combinations_of_the_main_switches():
    """FDR x estimator x registration x erosion x masks x lesions: every text consistent."""
    combos = itertools.product([True, False], ["two_point", "loglinear", "arlo"],
                               ["rigid", "affine"], [0, 2], ["rater", "atlas", "none"],
                               ["rater", "none"])
    n = 0
    for fdr, est, reg, ero, masks, les in combos:
        record = base_record()
        for path, value in (("fdr", M.fdr_setting(fdr)), ("r2star.estimator", est),
                            ("registration.model", reg), ("erosion_voxels", ero),
                            ("masks_source", masks), ("lesions_source", les)):
            record = flip(record, path, value)
        check_consistent(record, text_of(record))
        n += 1
    assert n == 2 * 3 * 2 * 2 * 3 * 2


def test_samseg_lesions_are_named_only_when_automatic_masks_came_from_it():
    """``--lesion-method samseg`` is recorded from the run's configuration and changes the text
    only where automatic lesion masks were measured."""
    rec = M.methods_record({"lesion_method": "samseg"},
                           sources={"lesions": {"automatic": 4}})
    assert rec["lesion_method"] == "samseg"
    assert M.methods_record({})["lesion_method"] == "ironmap"
    for les in ("automatic", "rater", "none"):
        record = flip(flip(base_record(), "lesions_source", les), "lesion_method", "samseg")
        text = text_of(record)
        check_consistent(record, text)
        assert ("posterior above 0.5" in text) == (les == "automatic")


def test_source_kinds():
    assert M.source_kind(["file:///data/derivatives/raters/sub-01_dseg.nii.gz"]) == "rater"
    assert M.source_kind(["bids:raters:sub-01/anat/x.nii.gz"]) == "rater"
    assert M.source_kind(["atlas:MNI-deepgm"]) == "atlas"
    assert M.source_kind(["automatic:synthseg"]) == "automatic"
    assert M.source_kind([]) == "unrecorded"
    mixed = flip(flip(base_record(), "masks_source", "mixed"), "masks_sources",
                 {"rater": 9, "atlas": 3})
    text = text_of(mixed)
    assert "drawn by raters and supplied as a BIDS derivative dataset for 9 participants" \
        in text and "registered to each participant's T1-weighted image for 3 participants" \
        in text
    check_consistent(mixed, text)


def test_record_of_a_real_group_run_matches_its_text(tmp_path, rng):
    """The group level writes the record into stats.json; the report's text follows it."""
    from _report_study import make_study
    from ironmap.workflows.group_level import run_group_level

    cfg = make_study(tmp_path, rng, groups={"HC": 3, "RRMS": 2})
    stats = json.loads((cfg.output_dir / "group" / "stats.json").read_text())
    record = stats["methods"]
    assert record["fdr"] == {"applied": False, "method": None}
    assert stats["settings"]["fdr"] is False
    assert record["r2star"] == {"estimator": "two_point", "echo_times_s": [0.00492, 0.0246]}
    fits = pd.read_csv(cfg.output_dir / "group" / "agefit.tsv", sep="\t")
    pooled = fits[(fits["hemisphere"] == "bilateral") & (fits["site"] == "all")]
    used = [("none" if m == "none" else u) for m, u in zip(pooled["model"], pooled["method"],
                                                             strict=True)]
    assert record["age_model"]["regions"] == dict(zip(pooled["region"], used, strict=True))
    assert set(used) <= {"auto", "linear", "none"}  # the default model, as agefit.tsv says
    assert record["age_model"]["reference_age_years"] == pytest.approx(stats["reference_age"])
    assert record["masks_source"] == "unrecorded"  # the synthetic masks have no Sources
    check_consistent(record, text_of(record))
    # the same run with FDR on: the record and the text follow
    from dataclasses import replace

    assert run_group_level(replace(cfg, fdr=True)) == 0
    stats = json.loads((cfg.output_dir / "group" / "stats.json").read_text())
    assert stats["methods"]["fdr"]["applied"] is True
    text = text_of(stats["methods"])
    assert "Benjamini-Hochberg" in text
    check_consistent(stats["methods"], text)
    assert np.isfinite(stats["methods"]["age_model"]["reference_age_years"])


@pytest.mark.parametrize("fallback", [None, 1.0, 1.5])
def test_erosion_fallback_stated_when_recorded(fallback):
    rec = M.methods_record({"method": "two_point", "erosion_voxels": 1,
                            "min_region_voxels": 10, "erosion_fallback_mm": fallback})
    assert rec["erosion_fallback_mm"] == fallback
    record = flip(flip(base_record(), "erosion_fallback_mm", fallback), "min_region_voxels", 10)
    text = text_of(record)
    stated = "fewer than 10 voxels was eroded by"
    assert (stated in text) == (fallback is not None)
    if fallback is not None:
        assert f"was eroded by {fallback:g} mm (Euclidean distance between voxel centres) " \
               "instead" in text
    # no erosion at all: nothing to fall back from
    assert "instead" not in text_of(flip(record, "erosion_voxels", 0))


@pytest.mark.parametrize("level", [None, 0.9])
def test_sn_core_stated_for_automatic_labels(level):
    record = flip(flip(base_record(), "masks_source", "automatic"), "sn_core", level)
    text = text_of(record)
    check_consistent(record, text)
    assert ("without further erosion" in text) == (level is not None)
    # a record without the key (a run before the option) states no core
    assert M.methods_record({"method": "two_point"})["sn_core"] is None
