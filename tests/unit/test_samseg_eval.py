"""benchmarks/samseg_eval.py: label grouping, cost parsing, the TensorFlow stub, clean skips.

SAMSEG itself is not installed in ironmap's environment (it needs numpy<2); the test that runs
it skips unless ``SAMSEG_CMD`` names a ``run_samseg`` console script.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "samseg_eval.py"


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("samseg_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tissue_groups_are_disjoint_and_numbered_like_fast(ev):
    groups = [set(v) for v in ev.TISSUE_LABELS.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    labels = np.array([0, 3, 42, 2, 41, 4, 24, ev.LESION_LABEL, 11, 16, 165])
    # background, cortex x2 (GM), cerebral WM x2, lateral ventricle and CSF, lesion (WM),
    # caudate (GM), brainstem (WM), skull (not a tissue class)
    assert ev.tissue_classes(labels).tolist() == [0, 2, 2, 3, 3, 1, 1, 3, 2, 3, 0]


def test_volumes_in_cm3_and_plausibility(ev):
    labels = np.zeros((10, 10, 10), np.int32)
    labels[:5] = 3      # 500 voxels GM
    labels[5:9] = 2     # 400 voxels WM
    labels[9] = 24      # 100 voxels CSF
    row = ev.volumes(labels, vox_cm3=1.0)
    assert (row["gm_cm3"], row["wm_cm3"], row["csf_cm3"]) == (500.0, 400.0, 100.0)
    assert row["problems"] == "plausible"
    assert "gm_cm3" in ev.volumes(labels, vox_cm3=0.001)["problems"]


def test_labels_carried_to_reference_grid(ev, tmp_path):
    seg = np.zeros((4, 4, 4), np.int32)
    seg[1, 2, 3] = ev.LESION_LABEL
    nib.save(nib.MGHImage(seg, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "seg.mgz")
    ref = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4))
    out = ev.samseg_labels(tmp_path, ref)
    assert out.shape == (8, 8, 8)
    # world (2, 4, 6) mm is source voxel (1, 2, 3); 1 mm voxels 1.5-2.5 mm round to it
    assert out[2, 4, 6] == ev.LESION_LABEL and out[0, 0, 0] == 0
    assert np.count_nonzero(out == ev.LESION_LABEL) == 8


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="GNU time is absent")
def test_gnu_time_log_parsed(ev, tmp_path):
    log = tmp_path / "time.txt"
    with open(log, "w") as fh:
        subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", "sum(range(10**6))"],
                       stderr=fh, check=True)
    cost = ev.gnu_time(log)
    assert cost["rc"] == 0
    assert 0 < cost["cpu_s"] < 60 and 0 < cost["wall_s"] < 60
    assert 5 < cost["peak_mb"] < 2000


def test_run_timed_measures_the_child(ev, tmp_path):
    cost = ev.run_timed([sys.executable, "-c", "import numpy; a = numpy.ones(40_000_000)"],
                        tmp_path / "log.txt")
    assert cost["rc"] == 0
    assert cost["peak_mb"] > 300          # 320 MB array, resident in the child only
    assert cost["cpu_s"] > 0


def test_skips_cleanly(tmp_path):
    env = {**os.environ, "IRONMAP_SHARED_DATA": str(tmp_path / "absent")}
    done = subprocess.run([sys.executable, str(SCRIPT), "tissue", "--samseg", sys.executable],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.startswith("skipped: shared data folder")
    env["IRONMAP_SHARED_DATA"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(SCRIPT), "lesion", "--samseg",
                           str(tmp_path / "no_run_samseg")], capture_output=True, text=True,
                          env=env, check=True)
    assert done.stdout.startswith("skipped: SAMSEG's run_samseg not found")


@pytest.mark.slow
@pytest.mark.realdata
def test_samseg_on_mni152_matches_fast(tmp_path):
    cmd = os.environ.get("SAMSEG_CMD")
    if not cmd or shutil.which(cmd) is None and not Path(cmd).is_file():
        pytest.skip("SAMSEG is not installed (set SAMSEG_CMD to its run_samseg)")
    from conftest import SHARED_DATA, require_shared

    require_shared("mni152_fsl", "MNI152_T1_1mm_Brain_FAST_seg.nii.gz")
    env = {**os.environ, "IRONMAP_SHARED_DATA": str(SHARED_DATA)}
    done = subprocess.run([sys.executable, str(SCRIPT), "tissue", "mni152", "--samseg", cmd,
                           "--fit-spacing", "2", "--work", str(tmp_path)],
                          capture_output=True, text=True, check=True, env=env)
    dice = {line.split(":")[0].strip(): float(line.split("Dice vs FAST ")[1].split(",")[0])
            for line in done.stdout.splitlines() if "Dice vs FAST" in line}
    # a regression floor under the measured run (GM 0.705, WM 0.850 with --fit-spacing 2;
    # docs/samseg.md): SAMSEG's GM agrees less with FAST than ironmap's own classes do
    assert dice["GM"] >= 0.65 and dice["WM"] >= 0.80, done.stdout
