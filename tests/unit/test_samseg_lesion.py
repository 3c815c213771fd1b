"""``ironmap lesions segment --method samseg``: SAMSEG found or refused, its TensorFlow stub, a
real run when SAMSEG is installed (``SAMSEG_CMD``; it needs numpy<2, so never in ironmap's own
environment) and the open_ms data are present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ironmap.cli.main import main
from ironmap.io.samseg import (
    TF_STUB,
    SamsegError,
    find_samseg,
    samseg_python,
)


def _images(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    paths = []
    for name in ("FLAIR", "T1w"):
        path = tmp_path / f"sub-01_{name}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((12, 12, 12)).astype(np.float32), np.eye(4)), path)
        paths.append(path)
    return paths[0], paths[1]


def test_tensorflow_stub_satisfies_import_and_refuses_use():
    code = TF_STUB + ("import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n"
                      "try:\n    tf.Session()\nexcept RuntimeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "shape model" in out


def test_interpreter_from_console_script(tmp_path):
    script = tmp_path / "run_samseg"
    script.write_text("#!/opt/samseg/bin/python3\nimport sys\n")
    assert samseg_python(script) == "/opt/samseg/bin/python3"
    script.write_text("not a script\n")
    with pytest.raises(SamsegError, match="no #! line"):
        samseg_python(script)


def test_absent_samseg_is_named_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMSEG_CMD", str(tmp_path / "nowhere" / "run_samseg"))
    with pytest.raises(SamsegError, match=r"SAMSEG is not available: .*nowhere.*SAMSEG_CMD"):
        find_samseg()
    with pytest.raises(SamsegError, match="pip install samseg"):
        find_samseg(tmp_path / "also_missing")


def test_cli_refuses_without_samseg_or_t1w_and_writes_nothing(tmp_path, monkeypatch, capfd):
    flair, t1w = _images(tmp_path)
    out = tmp_path / "out" / "sub-01_label-lesion_mask.nii.gz"
    monkeypatch.setenv("SAMSEG_CMD", str(tmp_path / "no_run_samseg"))
    rc = main(["lesions", "segment", str(flair), "--t1w", str(t1w), "-o", str(out),
               "--method", "samseg"])
    err = capfd.readouterr().err
    assert rc == 1
    assert "SAMSEG is not available" in err and "no_run_samseg" in err
    rc = main(["lesions", "segment", str(flair), "-o", str(out), "--method", "samseg"])
    err = capfd.readouterr().err
    assert rc == 1 and "needs the T1w" in err and str(flair) in err
    assert not out.exists() and not list(out.parent.glob("*"))


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.timeout(3600)  # SAMSEG: 4-5 CPU-min, much more wall time on a loaded machine
def test_samseg_lesion_mode_on_open_ms_patient(tmp_path):
    """Runs SAMSEG (several CPU-minutes) through the CLI on held-out patient 07."""
    cmd = os.environ.get("SAMSEG_CMD")
    try:
        find_samseg(cmd)
    except SamsegError as exc:
        pytest.skip(f"SAMSEG is not installed (set SAMSEG_CMD to its run_samseg): {exc}")
    from conftest import require_shared
    from ironmap.core.lesions.auto_segment import lesion_detection

    mni = require_shared("open_ms_data", "cross_sectional", "MNI", "patient07")
    stem = "_N4_noneck_reduced_winsor_regtoFLAIR{}_regtoMNI.nii.gz"
    flair = mni / f"FLAIR{stem.format('_brain_N4')}"
    out = tmp_path / "patient07_label-lesion_mask.nii.gz"
    prob = tmp_path / "patient07_label-lesion_probseg.nii.gz"
    t1w = mni / f"T1{stem.format('_brain_N4')}"
    rc = main(["lesions", "segment", str(flair), "--t1w", str(t1w), "-o", str(out),
               "--probability", str(prob), "--method", "samseg"])
    assert rc == 0
    sidecar = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Method"].startswith("SAMSEG lesion mode") and sidecar["SamsegVersion"]
    assert sidecar["LesionSource"] == "automatic" and sidecar["Threshold"] == 0.5
    mask = np.asarray(nib.load(out).dataobj) > 0
    p = np.asarray(nib.load(prob).dataobj)
    assert p.min() >= 0 and p.max() <= 1 and not np.any(mask & (p <= 0.5))
    gold = np.asarray(nib.load(mni / f"GOLD_STANDARD{stem.format('')}").dataobj) > 0
    m = lesion_detection(mask, gold)
    assert m["recall"] >= 0.5, m


def test_posterior_lesions_applies_cortex_rule_and_minimum_size():
    from ironmap.core.lesions.auto_segment import ContrastError, posterior_lesions

    shape = (30, 30, 30)
    flair = np.full(shape, 100.0)
    cortex = np.zeros(shape, bool)
    cortex[:, :, :3] = True
    flair[cortex] = 120.0                       # cortex geometric mean 120
    post = np.zeros(shape)
    post[10:14, 10:14, 10:14] = 0.9             # bright lesion, 64 voxels: kept
    flair[10:14, 10:14, 10:14] = 160.0
    post[20:23, 20:23, 20:23] = 0.9             # posterior high but FLAIR below cortex: dropped
    flair[20:23, 20:23, 20:23] = 110.0
    post[5, 25, 20] = 0.9                       # bright single voxel, 1 mm3: too small
    flair[5, 25, 20] = 200.0
    post[25:28, 5:8, 20:23] = 0.4               # bright but posterior below the threshold
    flair[25:28, 5:8, 20:23] = 200.0
    mask = posterior_lesions(post, flair, cortex, (1.0, 1.0, 1.0), threshold=0.5)
    expected = np.zeros(shape, bool)
    expected[10:14, 10:14, 10:14] = True
    assert np.array_equal(mask, expected)
    assert posterior_lesions(post, flair, cortex, (1, 1, 1), threshold=0.3)[26, 6, 21]
    with pytest.raises(ContrastError, match="cortex voxels"):
        posterior_lesions(post, flair, np.zeros(shape, bool), (1, 1, 1))
