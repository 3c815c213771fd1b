"""Participant level at clinical GRE resolution (3.4 mm): erosion never silently empties a region.

A simulated patient with the rater masks as truth, its GRE at 3.4 mm isotropic (the XA30 field
map's voxels): the seed's one-voxel erosion on the R2* grid leaves the substantia nigra and red
nucleus with (almost) no voxels; the run must say so (warning, QC flag, page entry), and
``--erosion-space native`` must keep them.
"""

from __future__ import annotations

import os

import pytest

from ironmap.io.tables import read_tsv

pytestmark = pytest.mark.slow

COARSE = (3.4, 3.4, 3.4)


@pytest.fixture(scope="module")
def coarse_cohort(tmp_path_factory):
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    from ironmap.workflows.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("coarse")
    return simulate_cohort(root / "sim", subjects_per_group={"RRMS": 1}, sites=1,
                           preset="fast", seed=7,
                           voxel_size={"MEGRE": COARSE, "FLAIR": (1.0, 1.0, 3.0)})


def _run(cohort, out, **options):
    from _participant_fixtures import make_config
    from ironmap.workflows.participant_level import run_participant_level
    from ironmap.workflows.report import write_reports

    cfg = make_config(cohort.bids_dir, out, cohort.masks_dir, **options)
    assert run_participant_level(cfg) == 0
    write_reports(cfg)
    return cfg


def _regions(out):
    table = read_tsv(out / "group" / "regional_r2star.tsv")
    return table.set_index(["region", "hemisphere"])


def test_small_regions_are_flagged_and_native_erosion_keeps_them(coarse_cohort, tmp_path,
                                                                  caplog):
    default_out = tmp_path / "default"
    with caplog.at_level("WARNING", logger="ironmap"):
        _run(coarse_cohort, default_out, brain_mask=True)
    plain = _regions(default_out)
    print(plain[["n_voxels_mask", "n_voxels", "r2star_mean"]])
    small = [key for key in plain.index if plain.loc[key, "n_voxels"] < 10]
    assert ("substantia_nigra", "bilateral") in small or ("red_nucleus", "bilateral") in small
    # ... never silently: a log warning, a QC flag per small region, and the page says so
    assert "keeps" in caplog.text and "after erosion" in caplog.text
    qc = read_tsv(default_out / "group" / "qc.tsv")
    flags = str(qc.loc[0, "flags"])
    for region, hemi in small:
        assert f"small_region:{region} {hemi}" in flags
    page = next(default_out.glob("sub-*.html")).read_text()
    assert "No flag raised" not in page and "small_region" in page
    eroded_sidecar = next(default_out.rglob("*desc-deepgmeroded_dseg.json")).read_text()
    assert '"MinRegionVoxels": 10' in eroded_sidecar

    _check_brain_mask(coarse_cohort, default_out)

    # native erosion (1 mm on the FLAIR grid of the rater masks, before transport)
    native_out = tmp_path / "native"
    _run(coarse_cohort, native_out, erosion_space="native", erosion_mm=1.0)
    native = _regions(native_out)
    truth = read_tsv(coarse_cohort.truth_dir / "regions.tsv").set_index(["region", "hemisphere"])
    print(native[["n_voxels_mask", "n_voxels", "r2star_mean"]])
    for key in (("substantia_nigra", "bilateral"), ("red_nucleus", "bilateral"),
                ("globus_pallidus", "bilateral")):
        assert native.loc[key, "n_voxels"] > max(plain.loc[key, "n_voxels"], 3), key
        true = truth.loc[key, "r2star_true"]
        assert abs(native.loc[key, "r2star_mean"] / true - 1) < 0.10, (key, true)
    assert (native["n_voxels_mask"] == plain["n_voxels_mask"]).all()
    cfg_text = (native_out / "logs" / "config-participant.json").read_text()
    assert '"erosion_space": "native"' in cfg_text and '"min_region_voxels": 10' in cfg_text
    sidecar = next(native_out.rglob("*desc-deepgmeroded_dseg.json")).read_text()
    assert '"ErosionDistance": 1.0' in sidecar and "native" in sidecar
    # a region still below the minimum keeps its flag (the red nucleus: 8 voxels of 3.4 mm)
    qc = read_tsv(native_out / "group" / "qc.tsv")
    still = [k for k in native.index if native.loc[k, "n_voxels"] < 10]
    for region, hemi in still:
        assert f"small_region:{region} {hemi}" in str(qc.loc[0, "flags"])


def _check_brain_mask(cohort, out):
    """``--brain-mask``: the T1w brain mask on the R2* grid holds the brain and no scalp."""
    import nibabel as nib
    import numpy as np

    sub = "sub-001"
    anat = out / sub / "anat"
    mask = nib.load(anat / f"{sub}_space-R2starmap_desc-brain_mask.nii.gz")
    r2 = nib.load(anat / f"{sub}_R2starmap.nii.gz")
    assert mask.shape == r2.shape and np.allclose(mask.affine, r2.affine)
    truth = read_tsv(cohort.truth_dir / "volumes.tsv").iloc[0]
    t1_mask = nib.load(anat / f"{sub}_space-T1w_desc-brain_mask.nii.gz")
    cm3 = float(np.asarray(t1_mask.dataobj).sum() * np.prod(t1_mask.header.get_zooms())) / 1e3
    print("brain mask", cm3, "truth GM+WM", truth.gm_cm3 + truth.wm_cm3, "CSF", truth.csf_cm3)
    # partial-volume cortex (GM fraction < 0.5) lies outside; CSF around the brain inside
    assert 0.9 * (truth.gm_cm3 + truth.wm_cm3) < cm3 < truth.icv_cm3
    values = np.asarray(r2.dataobj)
    inside = values[(np.asarray(mask.dataobj) > 0) & np.isfinite(values)]
    assert np.percentile(inside, 99) < 80.0  # brain R2*: no scalp/air-boundary values
    page = (out / f"{sub}.html").read_text()
    assert "No flag raised" not in page


def test_erosion_fallback_keeps_small_regions_and_names_them(coarse_cohort, tmp_path):
    """``--erosion-fallback-mm 1`` at 3.4 mm: the small nuclei keep voxels, the rest the seed's.

    At 3.4 mm isotropic a 1 mm distance removes no voxel, so a region that falls back keeps
    all its voxels; every other row must equal today's one-voxel table (recomputed here from
    the level's own labels, R2* map and fit flags).
    """
    import json

    import nibabel as nib
    import numpy as np
    import pandas as pd

    from ironmap.core.regions.regional_values import regional_stats
    from ironmap.io.outputs import derivative_path

    out = tmp_path / "fallback"
    _run(coarse_cohort, out, erosion_fallback_mm=1.0)
    sub = "sub-001"
    table = read_tsv(derivative_path(out, "regions_table", sub))
    labels = np.asarray(nib.load(derivative_path(out, "dseg_r2star", sub)).dataobj).astype(int)
    img = nib.load(derivative_path(out, "r2starmap", sub))
    flags = np.asarray(nib.load(derivative_path(out, "fitflags", sub)).dataobj)
    names_t = read_tsv(derivative_path(out, "dseg_labels", sub))
    names = dict(zip(names_t["index"].astype(int), names_t["name"], strict=True))
    plain = regional_stats(np.asarray(img.dataobj, float), labels, names, flags=flags,
                           voxel_sizes=COARSE)
    sidecar = json.loads(next(out.rglob("*desc-deepgmeroded_dseg.json")).read_text())
    used = set(sidecar["ErosionFallbackRegions"])
    assert sidecar["ErosionFallbackDistance"] == 1.0
    print(table[["region", "hemisphere", "n_voxels_mask", "n_voxels_eroded", "n_voxels"]], used)
    fell = [(r, h) for r, h in zip(plain.region, plain.hemisphere, strict=True)
            if f"{r} {h}" in used]
    assert ("substantia_nigra", "left") in fell or ("red_nucleus", "left") in fell
    key = ["region", "hemisphere"]
    t, p = table.set_index(key), plain.set_index(key)
    for row in p.index:
        if row in fell:  # 1 mm at 3.4 mm: nothing eroded
            assert t.loc[row, "n_voxels_eroded"] == t.loc[row, "n_voxels_mask"] > 0, row
            # below the minimum after one voxel (the whole putamen follows its parts)
            assert p.loc[row, "n_voxels_eroded"] < 10 or row[0] == "putamen", row
        elif row[1] != "bilateral":
            pd.testing.assert_series_equal(t.loc[row, p.columns], p.loc[row], check_names=False,
                                           check_dtype=False)
    cfg_text = (out / "logs" / "config-participant.json").read_text()
    assert '"erosion_fallback_mm": 1.0' in cfg_text
