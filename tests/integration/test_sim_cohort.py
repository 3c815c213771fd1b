"""The simulated cohort carries its ground truth: images, masks, volumes, BIDS layout."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from ironmap.io.tables import read_tsv
from ironmap.sim import anatomy
from ironmap.sim.voxelize import voxelize
from ironmap.workflows.simulate import simulate_cohort

SMALL = {"HC": 1, "RRMS": 1}


@pytest.fixture(scope="module")
def clean_cohort(tmp_path_factory):
    """Two noise-free subjects (one with lesions) at two sites, coarse voxels."""
    out = tmp_path_factory.mktemp("sim") / "cohort"
    return simulate_cohort(out, subjects_per_group=SMALL, sites=2, preset="fast", seed=3,
                           noise=False)


def _pose(truth_dir: Path, pid: str, series: str) -> np.ndarray:
    poses = read_tsv(truth_dir / "poses.tsv")
    row = poses[(poses.participant_id == pid) & (poses.series == series)].iloc[0]
    return np.array([[row[f"m{i}{j}"] for j in range(4)] for i in range(4)])


def _dseg_on_gre(cohort, pid: str):
    """Rater labels (FLAIR grid) sampled at the MEGRE voxel centres through both poses."""
    anat = cohort.bids_dir / pid / "anat"
    e1 = nib.load(anat / f"{pid}_echo-1_part-mag_MEGRE.nii.gz")
    dseg = nib.load(cohort.masks_dir / pid / "anat" / f"{pid}_desc-deepgm_dseg.nii.gz")
    gre_vox_to_flair_vox = (np.linalg.inv(dseg.affine)
                            @ np.linalg.inv(_pose(cohort.truth_dir, pid, "FLAIR"))
                            @ _pose(cohort.truth_dir, pid, "MEGRE") @ e1.affine)
    return ndimage.affine_transform(np.asarray(dseg.dataobj), gre_vox_to_flair_vox,
                                    output_shape=e1.shape, order=0)


def _hemi_region(index: int) -> tuple[str, str]:
    region = next(r for r, pair in anatomy.DSEG_REGIONS.items() if index in pair)
    return region, "left" if index % 2 else "right"


@pytest.mark.parametrize("pid", ["sub-001", "sub-002"])
def test_two_point_r2star_in_region_interiors_equals_truth(clean_cohort, pid):
    c = clean_cohort
    anat = c.bids_dir / pid / "anat"
    s1 = nib.load(anat / f"{pid}_echo-1_part-mag_MEGRE.nii.gz").get_fdata()
    s2 = nib.load(anat / f"{pid}_echo-2_part-mag_MEGRE.nii.gz").get_fdata()
    tes = [json.loads((anat / f"{pid}_echo-{e}_part-mag_MEGRE.json").read_text())["EchoTime"]
           for e in (1, 2)]
    assert tes == [0.00492, 0.0246]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.log(s1 / s2) / (tes[1] - tes[0])
    labels = _dseg_on_gre(c, pid)
    truth = read_tsv(c.truth_dir / "regions.tsv").set_index(
        ["participant_id", "region", "hemisphere"])["r2star_true"]
    checked = 0
    for index in anatomy.DSEG_LABELS:
        interior = ndimage.binary_erosion(labels == index)
        if interior.sum() < 2:
            continue  # the smallest nuclei have no interior at 2x2x3 mm
        region, hemi = _hemi_region(index)
        # int16 storage limits agreement to ~0.1 s^-1
        assert np.median(r2[interior]) == pytest.approx(truth[(pid, region, hemi)], abs=0.15)
        checked += 1
    assert checked >= 9


def test_rater_masks_land_on_the_right_anatomy(clean_cohort):
    c = clean_cohort
    geometry = json.loads((c.truth_dir / "geometry.json").read_text())
    for pid, geo in geometry.items():
        geom = anatomy.geometry_from_dict(geo)
        img = nib.load(c.masks_dir / pid / "anat" / f"{pid}_desc-deepgm_dseg.nii.gz")
        data = np.asarray(img.dataobj)
        ijk = np.argwhere(data > 0)
        world = nib.affines.apply_affine(img.affine, ijk)
        head = nib.affines.apply_affine(_pose(c.truth_dir, pid, "FLAIR"), world)
        phantom = anatomy.label_points(head, geom)
        agree = phantom == data[tuple(ijk.T)].astype(int) + anatomy.DSEG_OFFSET
        assert agree.mean() > 0.85
        for index in anatomy.DSEG_LABELS:  # each label is mostly on its own nucleus
            sel = data[tuple(ijk.T)] == index
            assert agree[sel].mean() > 0.6, (pid, index)


def test_lesion_masks_and_volumes_match_truth(clean_cohort):
    c = clean_cohort
    lesions = read_tsv(c.truth_dir / "lesions.tsv").set_index("participant_id")
    assert lesions.loc["sub-001", "lesion_count"] == 0
    assert lesions.loc["sub-002", "lesion_count"] > 0
    for pid in ("sub-001", "sub-002"):
        img = nib.load(c.masks_dir / pid / "anat" / f"{pid}_label-lesion_mask.nii.gz")
        vol = np.asarray(img.dataobj).astype(bool).sum() * np.prod(img.header.get_zooms()) / 1e3
        assert vol == pytest.approx(lesions.loc[pid, "lesion_load_cm3"], rel=0.3, abs=0.05)
        assert vol == pytest.approx(lesions.loc[pid, "lesion_mask_cm3"], rel=1e-4, abs=1e-6)
    pid = "sub-002"  # lesions are bright on FLAIR: compare with the phantom's white matter
    flair = nib.load(c.bids_dir / pid / "anat" / f"{pid}_FLAIR.nii.gz")
    mask = np.asarray(nib.load(c.masks_dir / pid / "anat" / f"{pid}_label-lesion_mask.nii.gz")
                      .dataobj).astype(bool)
    geom = anatomy.geometry_from_dict(json.loads((c.truth_dir / "geometry.json").read_text())[pid])
    pv = voxelize(geom, flair.shape, flair.affine, _pose(c.truth_dir, pid, "FLAIR"), (1, 1, 1))
    data = flair.get_fdata()
    assert np.median(data[mask]) > 2.0 * np.median(data[pv.labels == anatomy.WM])


def test_tissue_volumes_match_an_independent_grid(clean_cohort):
    c = clean_cohort
    volumes = read_tsv(c.truth_dir / "volumes.tsv").set_index("participant_id")
    lesions = read_tsv(c.truth_dir / "lesions.tsv").set_index("participant_id")
    geo = json.loads((c.truth_dir / "geometry.json").read_text())["sub-002"]
    geom = anatomy.geometry_from_dict(geo)
    vs = 2.5
    shape = (80, 96, 76)
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = np.array([0.0, -20.0, 10.0]) - vs * (np.array(shape) - 1) / 2
    pv = voxelize(geom, shape, affine, np.eye(4), (3, 3, 3))
    v = pv.volumes_mm3(vs**3) / 1e3
    row = volumes.loc["sub-002"]
    assert v[anatomy.CORTEX] == pytest.approx(row["cortical_gm_cm3"], rel=0.01)
    assert v[anatomy.WM] + v[anatomy.LESION] == pytest.approx(row["wm_cm3"], rel=0.01)
    assert v[anatomy.LESION] == pytest.approx(lesions.loc["sub-002", "lesion_load_cm3"], rel=0.1)
    assert row["icv_cm3"] == pytest.approx(row["brain_cm3"] + row["csf_cm3"], rel=1e-4)


def test_bids_layout_is_valid(clean_cohort):
    from bids_validator import BIDSValidator

    validator = BIDSValidator()
    bids = clean_cohort.bids_dir
    files = [p for p in bids.rglob("*") if p.is_file() and "derivatives" not in p.parts]
    assert len(files) > 10
    for p in files:
        assert validator.is_bids("/" + p.relative_to(bids).as_posix()), p
    desc = json.loads((clean_cohort.masks_dir / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["DatasetLinks"] == {"raw": "../../"}
    side = json.loads(next(clean_cohort.masks_dir.rglob("*_dseg.json")).read_text())
    assert side["SpatialReference"].startswith("bids:raw:sub-")
    ref = side["SpatialReference"].removeprefix("bids:raw:")
    assert (bids / ref).is_file()
    table = read_tsv(next(clean_cohort.masks_dir.rglob("*_dseg.tsv")))
    assert dict(zip(table["index"], table["name"], strict=True)) == anatomy.DSEG_LABELS
    participants = read_tsv(bids / "participants.tsv")
    assert list(participants.columns) == ["participant_id", "age", "sex", "site", "group",
                                          "disease_duration", "edss"]
    assert pd.isna(participants.loc[0, "edss"])


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(tmp_path):
    kwargs = dict(subjects_per_group={"RRMS": 1}, sites=1, preset="fast", seed=11,
                  voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})
    a = simulate_cohort(tmp_path / "a", **kwargs).out_dir
    b = simulate_cohort(tmp_path / "b", **kwargs).out_dir
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 20
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = simulate_cohort(tmp_path / "c", **{**kwargs, "seed": 12}).out_dir
    rel = Path("bids/sub-001/anat/sub-001_T1w.nii.gz")
    assert (a / rel).read_bytes() != (c / rel).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("design", [{}, {"sessions": 2}])
def test_two_worker_processes_write_the_serial_files(tmp_path, design):
    """The simulation's process pool (spawned workers) writes byte for byte what one process
    writes, for single scans and for sessions."""
    kwargs = dict(subjects_per_group={"HC": 1, "RRMS": 1}, sites=1, preset="fast", seed=5,
                  voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0}, **design)
    a = simulate_cohort(tmp_path / "a", nprocs=1, **kwargs).out_dir
    b = simulate_cohort(tmp_path / "b", nprocs=2, **kwargs).out_dir
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_pure_voxels_carry_lesion_and_tissue_r2star(clean_cohort):
    c = clean_cohort
    pid = "sub-002"
    anat = c.bids_dir / pid / "anat"
    e1 = nib.load(anat / f"{pid}_echo-1_part-mag_MEGRE.nii.gz")
    s1 = e1.get_fdata()
    s2 = nib.load(anat / f"{pid}_echo-2_part-mag_MEGRE.nii.gz").get_fdata()
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.log(s1 / s2) / (0.0246 - 0.00492)
    geom = anatomy.geometry_from_dict(json.loads((c.truth_dir / "geometry.json").read_text())[pid])
    pv = voxelize(geom, e1.shape, e1.affine, _pose(c.truth_dir, pid, "MEGRE"), (3, 3, 3))
    pure = np.ones(pv.labels.size, dtype=bool)
    pure[pv.edge] = False
    pure = pure.reshape(pv.labels.shape)
    lesion_truth = read_tsv(c.truth_dir / "lesions.tsv").set_index("participant_id")
    lesion = pure & (pv.labels == anatomy.LESION)
    assert lesion.sum() > 0
    assert np.median(r2[lesion]) == pytest.approx(
        lesion_truth.loc[pid, "lesion_r2star_true"], abs=0.15)
    sites = read_tsv(c.truth_dir / "sites.tsv").set_index("site")
    site = read_tsv(c.bids_dir / "participants.tsv").set_index("participant_id").loc[pid, "site"]
    wm = pure & (pv.labels == anatomy.WM)
    assert np.median(r2[wm]) == pytest.approx(21.0 * sites.loc[site, "r2star_bias"], abs=0.1)


def test_more_echoes_follow_the_mono_exponential_truth(tmp_path):
    c = simulate_cohort(tmp_path / "me", subjects_per_group={"HC": 1}, sites=1, preset="fast",
                        echoes=4, noise=False, seed=2,
                        voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})
    anat = c.bids_dir / "sub-001" / "anat"
    tes = np.array([json.loads((anat / f"sub-001_echo-{e}_part-mag_MEGRE.json").read_text())
                    ["EchoTime"] for e in range(1, 5)])
    np.testing.assert_allclose(tes, [0.00492, 0.01148, 0.01804, 0.0246], atol=1e-9)
    first = nib.load(anat / "sub-001_echo-1_part-mag_MEGRE.nii.gz")
    signal = np.stack([nib.load(anat / f"sub-001_echo-{e}_part-mag_MEGRE.nii.gz").get_fdata()
                       for e in range(1, 5)], axis=-1)
    geom = anatomy.geometry_from_dict(
        json.loads((c.truth_dir / "geometry.json").read_text())["sub-001"])
    pv = voxelize(geom, first.shape, first.affine, _pose(c.truth_dir, "sub-001", "MEGRE"),
                  (2, 2, 2))
    wm = (pv.labels == anatomy.WM).reshape(-1)
    wm[pv.edge] = False
    logs = np.log(signal.reshape(-1, 4)[wm])
    slope = np.polyfit(tes, logs.T, 1)[0]
    bias = read_tsv(c.truth_dir / "sites.tsv")["r2star_bias"].iloc[0]
    assert np.median(-slope) == pytest.approx(21.0 * bias, abs=0.1)
