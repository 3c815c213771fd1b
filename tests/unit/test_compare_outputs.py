"""benchmarks/compare_outputs.py: equal trees pass, each kind of real change is caught."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_outputs.py"


@pytest.fixture(scope="module")
def cmp():
    spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tree(root: Path, version: str, stamp: str = "20261206T232625Z-9839") -> Path:
    anat = root / "ironmap" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    data = np.random.default_rng(0).uniform(5, 60, (4, 3, 2)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0]))
    nib.save(img, anat / "sub-01_R2starmap.nii.gz")
    side = {"Units": "1/s", "GeneratedBy": [{"Name": "ironmap", "Version": version,
                                             "Command": f"ironmap {root} participant"}],
            "Sources": [str(root / "bids" / "sub-01_echo-1.nii.gz")]}
    (anat / "sub-01_R2starmap.json").write_text(json.dumps(side))
    (anat / "sub-01_desc-regions_r2star.tsv").write_text(
        "region\tr2star_mean\nputamen\t22.5\ncaudate\t18.25\n")
    logs = root / "ironmap" / "logs"
    logs.mkdir()
    (logs / "sub-01.log").write_text(f"{version} started at some time\n")
    (logs / f"config-participant-{stamp}.json").write_text(
        json.dumps({"method": "auto", "ironmap_version": version}))
    return root


def test_identical_results_pass_despite_versions_paths_and_stamps(cmp, tmp_path):
    a = make_tree(tmp_path / "a", "0.1.0")
    b = make_tree(tmp_path / "b", "0.2.0.dev3", stamp="20261207T000102Z-12")
    assert cmp.main([str(a), str(b)]) == 0


@pytest.mark.parametrize("change", ["voxel", "header", "tsv", "json", "extra"])
def test_each_change_is_reported(cmp, tmp_path, change):
    a = make_tree(tmp_path / "a", "0.1.0")
    b = make_tree(tmp_path / "b", "0.1.0")
    anat = b / "ironmap" / "sub-01" / "anat"
    img_path = anat / "sub-01_R2starmap.nii.gz"
    img = nib.load(img_path)
    data = np.asarray(img.dataobj).copy()
    if change == "voxel":
        data[1, 1, 1] = np.nextafter(data[1, 1, 1], np.float32(100))  # one ulp
        nib.save(nib.Nifti1Image(data, img.affine, img.header), img_path)
    elif change == "header":
        nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.01, 1.0])), img_path)
    elif change == "tsv":
        tsv = anat / "sub-01_desc-regions_r2star.tsv"
        tsv.write_text(tsv.read_text().replace("18.25", "18.26"))
    elif change == "json":
        side = anat / "sub-01_R2starmap.json"
        side.write_text(side.read_text().replace('"1/s"', '"1/ms"'))
    else:
        (anat / "sub-01_T2starmap.json").write_text("{}")
    res = cmp.compare_trees(a, b)
    assert cmp.main([str(a), str(b)]) == 1
    assert len(res["differ"]) + len(res["only_b"]) == 1
    assert len(res["same"]) == (4 if change == "extra" else 3)


@pytest.mark.parametrize("field, changed", [("key", False), ("row", True)])
def test_page_cache_key_is_ignored_the_rest_of_the_page_record_compared(cmp, tmp_path, field,
                                                                        changed):
    """The QC-page cache key hashes the output path and file times (different in every run);
    the QC row stored beside it is a result and is compared."""
    trees = []
    for name, key, value in (("a", "0a1b", 0.5), ("b", "9f8e" if field == "key" else "0a1b",
                                                  0.5 if field == "key" else 0.6)):
        root = make_tree(tmp_path / name, "0.1.0")
        fig = root / "ironmap" / "sub-01" / "figures"
        fig.mkdir()
        (fig / "page-key.json").write_text(json.dumps(
            {"key": key, "page": "sub-01.html", "row": {"snr_echo1": value}}))
        trees.append(root)
    assert cmp.main([str(t) for t in trees]) == (1 if changed else 0)
