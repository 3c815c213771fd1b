"""The project foundation: atomic writes, NIfTI/TSV round trips, region names, CLI shell."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ironmap.cli.main import main
from ironmap.core.regions.names import canonical_region, region_label_name, split_hemisphere
from ironmap.io.atomic import OutputExistsError, atomic_path, check_writable, write_json
from ironmap.io.nifti import ImageError, load_array, load_image, read_sidecar, save_image
from ironmap.io.tables import read_dictionary, read_tsv, write_tsv
from ironmap.units import looks_like_milliseconds, ms_to_s, r2star_to_t2star


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "map.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_existing(tmp_path):
    p = tmp_path / "x.json"
    write_json(p, {"a": 1})
    with pytest.raises(OutputExistsError, match="x.json"):
        check_writable(p, overwrite=False)
    assert check_writable(p, overwrite=True) == p


def test_nifti_roundtrip_keeps_nan_and_is_deterministic(tmp_path, rng):
    data = rng.normal(size=(4, 5, 6)).astype(np.float32)
    data[0, 0, 0] = np.nan
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    a = save_image(data, affine, tmp_path / "a.nii.gz", sidecar={"Units": "1/s"})
    b = save_image(data, affine, tmp_path / "b.nii.gz")
    assert a.read_bytes() == b.read_bytes()
    back, aff = load_array(a)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(aff, affine)
    assert read_sidecar(a) == {"Units": "1/s"}


def test_truncated_nifti_is_named(tmp_path, rng):
    p = save_image(rng.normal(size=(8, 8, 8)), np.eye(4), tmp_path / "t.nii.gz")
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageError, match="t.nii.gz"):
        load_image(p)
    (tmp_path / "junk.nii").write_text("not an image")
    with pytest.raises(ImageError, match="junk.nii"):
        load_image(tmp_path / "junk.nii")


def test_tsv_roundtrip_with_dictionary(tmp_path):
    df = pd.DataFrame({"participant_id": ["sub-001", "sub-002"], "r2star_mean": [21.5, np.nan]})
    meta = {"r2star_mean": {"Description": "mean R2*", "Units": "1/s"}}
    p = write_tsv(df, tmp_path / "t.tsv", meta)
    assert "n/a" in p.read_text()
    back = read_tsv(p)
    assert back["participant_id"].tolist() == ["sub-001", "sub-002"]
    assert back["r2star_mean"].iloc[0] == 21.5 and np.isnan(back["r2star_mean"].iloc[1])
    assert read_dictionary(p) == meta
    assert json.loads((tmp_path / "t.json").read_text())["r2star_mean"]["Units"] == "1/s"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Left-Caudate", ("caudate", "left")),
        ("Right-Putamen-Posterior", ("putamen_posterior", "right")),
        ("lh-pallidum", ("globus_pallidus", "left")),
        ("Red_Nucleus_R", ("red_nucleus", "right")),
        ("Substantia-Nigra", ("substantia_nigra", "bilateral")),
        ("Left-Dentate", ("dentate_nucleus", "left")),
        ("Left-Thalamus", (None, "left")),
    ],
)
def test_canonical_region(name, expected):
    assert canonical_region(name) == expected


def test_region_label_names_roundtrip():
    for region in ("caudate", "putamen_anterior", "dentate_nucleus", "red_nucleus"):
        for hemi in ("left", "right"):
            assert canonical_region(region_label_name(region, hemi)) == (region, hemi)
    assert split_hemisphere("Caudate") == ("Caudate", "bilateral")


def test_units():
    np.testing.assert_allclose(ms_to_s([4.92, 24.6]), [0.00492, 0.0246])
    assert looks_like_milliseconds([4.92, 24.6]) and not looks_like_milliseconds([0.004, 0.02])
    t2 = r2star_to_t2star(np.array([20.0, 0.0, -1.0, np.nan]))
    assert t2[0] == pytest.approx(0.05) and np.isnan(t2[1:]).all()


def test_cli_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert "ironmap" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "participant" in capsys.readouterr().out


def test_bidsapp_refuses_output_inside_raw(tmp_path):
    raw = tmp_path / "bids"
    raw.mkdir()
    (raw / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    assert main([str(raw), str(raw / "out"), "participant"]) == 2
    assert main([str(raw), str(raw), "group"]) == 2
    assert main([str(tmp_path / "missing"), str(tmp_path / "o"), "participant"]) == 2


def test_mistyped_subcommand_is_a_usage_error(capsys):
    from ironmap.cli.main import main

    assert main(["simulte", "out"]) == 2
    err = capsys.readouterr().err
    assert "'simulte' is not a subcommand" in err and "did you mean 'simulate'" in err


def test_bidsapp_unknown_estimator_is_a_usage_error(tmp_path, capsys):
    from ironmap.cli.main import main
    from ironmap.core.r2star.relaxometry import METHODS

    (tmp_path / "raw").mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "raw"), str(tmp_path / "out"), "participant", "--method", "loglin"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'loglin'" in err
    assert all(m in err for m in METHODS)


def test_python_warnings_reach_the_user_as_log_lines(caplog):
    from ironmap.cli.main import _warning_as_log_line

    with caplog.at_level("WARNING"):
        _warning_as_log_line(UserWarning("echo times look odd"), UserWarning,
                             "/x/site-packages/ironmap/io/bids.py", 12)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("ironmap", "echo times look odd")]
