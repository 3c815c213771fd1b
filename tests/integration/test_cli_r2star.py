"""``ironmap r2star``: NIfTI echoes in, R2*/S0/flag maps with sidecars out; bad inputs refused."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from ironmap.cli.main import main
from ironmap.core.r2star.fit_flags import FLAG_OUTSIDE_MASK

TE = [0.004, 0.012, 0.020, 0.028]
AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


@pytest.fixture
def truth(rng):
    r2 = rng.uniform(10, 60, (6, 5, 4))
    r2[0, 0, 0] = 35.0
    return r2


def write_echoes(folder, truth, te=TE, sidecar=True, affine=AFFINE):
    paths = []
    for k, t in enumerate(te):
        p = folder / f"sub-01_echo-{k + 1}_part-mag_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image((1000 * np.exp(-truth * t)).astype(np.float32), affine), p)
        if sidecar:
            (folder / p.name.replace(".nii.gz", ".json")).write_text(json.dumps({"EchoTime": t}))
        paths.append(str(p))
    return paths


def load(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_r2star_from_sidecars(tmp_path, truth):
    echoes = write_echoes(tmp_path, truth)
    out = tmp_path / "out" / "sub-01_R2starmap.nii.gz"
    assert main(["r2star", *echoes, "-o", str(out), "--t2star"]) == 0
    np.testing.assert_allclose(load(out), truth, rtol=1e-5)
    side = json.loads(out.with_name("sub-01_R2starmap.json").read_text())
    assert side["Units"] == "1/s" and side["EstimationMethod"] == "nonlinear"
    assert side["EchoTime"] == TE
    assert side["GeneratedBy"][0]["Name"] == "ironmap" and side["GeneratedBy"][0]["Version"]
    t2 = tmp_path / "out" / "sub-01_T2starmap.nii.gz"
    np.testing.assert_allclose(load(t2), 1 / truth, rtol=1e-5)
    assert json.loads(t2.with_suffix("").with_suffix(".json").read_text())["Units"] == "s"
    np.testing.assert_allclose(load(tmp_path / "out" / "sub-01_S0map.nii.gz"), 1000, rtol=1e-4)
    assert load(tmp_path / "out" / "sub-01_desc-fitflags_mask.nii.gz").max() == 0
    assert (tmp_path / "out" / "sub-01_desc-rmse_R2starmap.nii.gz").exists()
    assert nib.load(str(out)).affine == pytest.approx(AFFINE)
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_4d_file_with_te_in_ms_and_mask(tmp_path, truth, capsys):
    data = np.stack([1000 * np.exp(-truth * t) for t in TE], axis=-1).astype(np.float32)
    four_d = tmp_path / "megre.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), four_d)
    mask = (truth > 30).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, AFFINE), tmp_path / "mask.nii.gz")
    out = tmp_path / "r2"
    te_ms = [str(1000 * t) for t in TE]
    rc = main(["r2star", str(four_d), "-o", str(out), "--te", *te_ms, "--method", "loglinear",
               "--mask", str(tmp_path / "mask.nii.gz")])
    assert rc == 0
    assert "look like milliseconds" in capsys.readouterr().err
    r2 = load(tmp_path / "r2_R2starmap.nii.gz")
    np.testing.assert_allclose(r2[mask > 0], truth[mask > 0], rtol=1e-4)
    assert np.all(np.isnan(r2[mask == 0]))
    flags = load(tmp_path / "r2_desc-fitflags_mask.nii.gz")
    assert np.all(flags[mask == 0] == FLAG_OUTSIDE_MASK)
    # explicit unit: ms converted silently; "s" with ms-looking values is refused
    assert main(["r2star", str(four_d), "-o", str(tmp_path / "b"), "--te", *te_ms,
                 "--te-unit", "ms"]) == 0
    assert main(["r2star", str(four_d), "-o", str(tmp_path / "c"), "--te", *te_ms,
                 "--te-unit", "s"]) == 1


def test_existing_output_refused_unless_overwrite(tmp_path, truth, capsys):
    echoes = write_echoes(tmp_path, truth)
    out = tmp_path / "sub-01_R2starmap.nii.gz"
    out.write_bytes(b"keep me")
    assert main(["r2star", *echoes, "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert not (tmp_path / "sub-01_S0map.nii.gz").exists()  # nothing half-written
    assert main(["r2star", *echoes, "-o", str(out), "--overwrite"]) == 0
    np.testing.assert_allclose(load(out), truth, rtol=1e-5)


@pytest.mark.parametrize("problem", ["shape", "affine", "no_echotime", "single", "truncated",
                                     "not_nifti", "sidecar_ms", "rician_no_sigma"])
def test_bad_inputs(tmp_path, truth, capsys, problem):
    echoes = write_echoes(tmp_path, truth)
    args = ["r2star", *echoes]
    expect = {"shape": "shape", "affine": "affine", "no_echotime": "EchoTime",
              "single": "single echo", "truncated": "not a readable NIfTI",
              "not_nifti": "not a readable NIfTI", "sidecar_ms": "milliseconds",
              "rician_no_sigma": "sigma"}[problem]
    if problem == "shape":
        nib.save(nib.Nifti1Image(np.ones((6, 5, 3), np.float32), AFFINE), echoes[1])
    elif problem == "affine":
        nib.save(nib.Nifti1Image(np.ones((6, 5, 4), np.float32), AFFINE * 2), echoes[1])
    elif problem == "no_echotime":
        (tmp_path / "sub-01_echo-3_part-mag_MEGRE.json").write_text("{}")
    elif problem == "single":
        args = ["r2star", echoes[0]]
    elif problem == "truncated":
        raw = gzip.decompress(open(echoes[2], "rb").read())
        with open(echoes[2], "wb") as fh:
            fh.write(gzip.compress(raw[: len(raw) // 2]))
    elif problem == "not_nifti":
        open(echoes[2], "wb").write(b"this is not an image")
    elif problem == "sidecar_ms":
        (tmp_path / "sub-01_echo-2_part-mag_MEGRE.json").write_text('{"EchoTime": 12.0}')
    elif problem == "rician_no_sigma":
        args += ["--method", "rician"]
    out = tmp_path / "out" / "x_R2starmap.nii.gz"
    rc = main([*args, "-o", str(out)])
    assert rc in (1, 2)
    assert expect in capsys.readouterr().err
    assert not out.exists()


def test_rician_with_sigma_and_arlo_spacing_error(tmp_path, truth, capsys):
    echoes = write_echoes(tmp_path, truth)
    assert main(["r2star", *echoes, "-o", str(tmp_path / "ml"), "--method", "rician",
                 "--sigma", "0.01"]) == 0
    np.testing.assert_allclose(load(tmp_path / "ml_R2starmap.nii.gz"), truth, rtol=1e-4)
    (tmp_path / "u").mkdir()
    uneven = write_echoes(tmp_path / "u", truth, te=[0.004, 0.010, 0.020])
    assert main(["r2star", *uneven, "-o", str(tmp_path / "a"), "--method", "arlo"]) == 1
    assert "evenly spaced" in capsys.readouterr().err


def test_echo_selection_runs_arlo_on_the_evenly_spaced_echoes(tmp_path, truth):
    """A 12-echo train whose first spacing differs: ARLO on all is refused, on 2-12 it fits."""
    te = [0.0035] + [0.0035 + 0.004 * k for k in range(1, 12)]
    te[0] = 0.003
    echoes = write_echoes(tmp_path, truth, te=te)
    out = tmp_path / "out" / "sub-01_R2starmap.nii.gz"
    assert main(["r2star", *echoes, "-o", str(out), "--method", "arlo"]) == 1
    assert not out.exists()
    assert main(["r2star", *echoes, "-o", str(out), "--method", "arlo", "--echoes", "2-12"]) == 0
    np.testing.assert_allclose(load(out), truth, rtol=2e-3)
    side = json.loads(out.with_name("sub-01_R2starmap.json").read_text())
    assert side["EchoTime"] == pytest.approx(te[1:])
    assert side["EchoNumbersUsed"] == list(range(2, 13))


@pytest.mark.parametrize("text, message", [("1", "at least two"), ("3-14", "outside 1..4"),
                                           ("1,1", "repeats")])
def test_echo_selection_refuses_bad_lists(tmp_path, truth, capsys, text, message):
    echoes = write_echoes(tmp_path, truth)
    out = tmp_path / "out" / "sub-01_R2starmap.nii.gz"
    assert main(["r2star", *echoes, "-o", str(out), "--echoes", text]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_echo_selection_syntax_is_a_usage_error(tmp_path, truth, capsys):
    echoes = write_echoes(tmp_path, truth)
    with pytest.raises(SystemExit) as exc:
        main(["r2star", *echoes, "-o", str(tmp_path / "x"), "--echoes", "two-four"])
    assert exc.value.code == 2
    assert "expected 1-based echo numbers" in capsys.readouterr().err
