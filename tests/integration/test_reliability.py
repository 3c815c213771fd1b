"""Hardening: nothing lost, nothing silently wrong (docs/reliability.md lists each case)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ironmap.cli.main import main

TINY_SIM = ["--preset", "fast", "--subjects-per-group", "0", "--hc", "1", "--sites", "1",
            "--voxel-size", "4", "--t1w-voxel-size", "4", "--flair-voxel-size", "4", "-q"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- simulate --overwrite replaces only a simulated cohort ----------------------------------

def test_simulate_overwrite_never_removes_a_real_dataset(tmp_path, capsys):
    out = tmp_path / "study"
    (out / "bids" / "sub-01" / "anat").mkdir(parents=True)
    (out / "bids" / "dataset_description.json").write_text('{"Name": "real study"}')
    (out / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"real data")
    (out / "truth").mkdir()
    (out / "truth" / "notes.txt").write_text("mine")
    before = _tree(out)
    assert main(["simulate", str(out), "--overwrite", *TINY_SIM]) == 1
    assert _tree(out) == before  # nothing removed, nothing added
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "not written by `ironmap simulate`" in err[0]


def test_simulate_overwrite_replaces_its_own_cohort(tmp_path):
    out = tmp_path / "sim"
    assert main(["simulate", str(out), *TINY_SIM]) == 0
    marker = json.loads((out / ".ironmap-simulate.json").read_text())
    assert marker["GeneratedBy"][0]["Name"] == "ironmap simulate"
    (out / "bids" / "stale.txt").write_text("left by the first run")
    assert main(["simulate", str(out), "--overwrite", *TINY_SIM]) == 0
    assert not (out / "bids" / "stale.txt").exists()
    assert (out / "bids" / "participants.tsv").exists()


# --- OUTPUT_DIR never on, inside or around a dataset ironmap reads ------------------------

def _bids(root: Path) -> tuple[Path, Path]:
    bids = root / "bids"
    masks = bids / "derivatives" / "raters"
    (masks / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    (masks / "dataset_description.json").write_text('{"Name": "raters", "DatasetType": '
                                                    '"derivative"}')
    return bids, masks


@pytest.mark.parametrize("where", ["masks", "inside masks", "around masks", "around bids"])
def test_output_dir_on_an_input_dataset_is_refused(tmp_path, capsys, where):
    bids, masks = _bids(tmp_path)
    out = {"masks": masks, "inside masks": masks / "ironmap", "around masks": bids / "derivatives",
           "around bids": tmp_path}[where]
    before = _tree(tmp_path)
    assert main([str(bids), str(out), "participant", "--masks", str(masks)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err
    assert "--masks" in err[0] or "contains the BIDS dataset" in err[0]
    assert _tree(tmp_path) == before  # the raters' dataset_description.json is untouched


# --- one run at a time per OUTPUT_DIR; a killed run's lock is recovered ---------------------

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ironmap.cli.main", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    """One RRMS participant on a 4 mm phantom (a participant-level run takes seconds)."""
    from ironmap.workflows.simulate import simulate_cohort

    return simulate_cohort(tmp_path_factory.mktemp("tiny") / "sim",
                           subjects_per_group={"RRMS": 1}, sites=1, preset="fast",
                           voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})


def _start_locked_run(sim, out: Path) -> tuple[subprocess.Popen, tuple[str, ...]]:
    """A real participant-level run, returned once it holds the OUTPUT_DIR lock."""
    args = (str(sim.bids_dir), str(out), "participant", "--masks", str(sim.masks_dir))
    proc = subprocess.Popen(_cli(*args), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / ".ironmap.lock.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the run never took the lock")
        time.sleep(0.02)
    return proc, args


@pytest.mark.slow
def test_second_run_refused_and_killed_runs_lock_recovered(tiny_cohort, tmp_path):
    sim, out = tiny_cohort, tmp_path / "out"
    first, args = _start_locked_run(sim, out)
    try:
        second = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first run ended before the second one was refused"
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "already running" in lines[0], second.stderr
        assert f"(pid {first.pid}, host {socket.gethostname()}, since 20" in lines[0]
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert (out / ".ironmap.lock.json").exists()  # left behind by the killed run
    third = subprocess.run(_cli(str(sim.bids_dir), str(out), "group", "--no-report"),
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert "already running" not in third.stderr
    assert f"recovered the lock of a run that ended without releasing it (pid {first.pid}" \
        in third.stderr
    assert not (out / ".ironmap-staging").exists()  # the killed run's scratch files are gone
    assert not (out / ".ironmap.lock.json").exists()  # released by the third run


@pytest.mark.slow
def test_sigterm_releases_the_lock_and_removes_staging(tiny_cohort, tmp_path):
    out = tmp_path / "out"
    proc, _ = _start_locked_run(tiny_cohort, out)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".ironmap-staging/*/sub-001/*")):  # mid-participant
            assert proc.poll() is None and time.monotonic() < deadline, "no staging seen"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert code == 128 + signal.SIGTERM
    assert not (out / ".ironmap.lock.json").exists()
    assert not list(out.glob(".ironmap-staging/*/*"))


def _failing_bids(root: Path, subjects=("01", "02")) -> Path:
    """Participants whose anat folder has a single GRE echo (each fails at once)."""
    import nibabel as nib
    import numpy as np

    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    for sub in subjects:
        anat = bids / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)).to_filename(
            anat / f"sub-{sub}_echo-1_part-mag_MEGRE.nii.gz")
        (anat / f"sub-{sub}_echo-1_part-mag_MEGRE.json").write_text('{"EchoTime": 0.005}')
    return bids


def test_a_run_never_deletes_another_runs_staging_files(tmp_path):
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.participant_level import STAGING, run_participant_level

    bids, out = _failing_bids(tmp_path, ("01",)), tmp_path / "out"
    other = out / STAGING / "sub-01" / "sub-01" / "anat" / "being-written.nii.gz"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another run's file")
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="participant")
    assert run_participant_level(cfg) == 3
    assert other.read_bytes() == b"another run's file"


def test_failures_of_earlier_runs_are_kept(tmp_path):
    from ironmap.io.tables import read_tsv

    bids, out = _failing_bids(tmp_path), tmp_path / "out"
    for label in ("01", "02"):
        assert main([str(bids), str(out), "participant", "--participant-label", label,
                     "-q"]) == 3
    failures = read_tsv(out / "logs" / "failures.tsv")
    assert sorted(failures["participant_id"]) == ["sub-01", "sub-02"]
    assert all("at least two echoes" in e for e in failures["error"])
    assert main([str(bids), str(out), "participant", "--participant-label", "01", "-q"]) == 3
    assert sorted(read_tsv(out / "logs" / "failures.tsv")["participant_id"]) == [
        "sub-01", "sub-02"]  # rerunning sub-01 replaces its row only


# --- header sanity before any allocation ------------------------------------------------------

def write_bomb(path: Path, shape=(1600, 1600, 1600)) -> Path:
    """A ~1 KB .nii.gz whose header claims ``shape`` int16 voxels (8 GB for 1600^3)."""
    import gzip

    import nibabel as nib
    import numpy as np

    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + bytes(range(256)) * 2
    path.write_bytes(gzip.compress(raw))
    return path


def test_memory_bomb_header_fails_fast_and_small(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.nii.gz")
    assert bomb.stat().st_size < 1200
    cmd = _cli("r2star", str(bomb), str(bomb), "--te", "0.005", "0.01", "-o",
               str(tmp_path / "r2.nii.gz"))
    wrapper = ("import resource, subprocess, sys, time; t = time.monotonic(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.returncode, time.monotonic() - t, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "print(r.stderr, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=_env(),
                         capture_output=True, text=True, timeout=120)
    code, seconds, max_rss_kib = res.stdout.split()
    assert int(code) != 0
    assert float(seconds) < 5.0, seconds
    assert int(max_rss_kib) < 500 * 1024, max_rss_kib
    assert f"{bomb}: header claims 1600x1600x1600 voxels of int16" in res.stderr, res.stderr


def test_header_claims_and_orientation_are_checked(tmp_path):
    import nibabel as nib
    import numpy as np

    from ironmap.io.nifti import ImageError, load_image

    data = np.arange(64, dtype=np.float32).reshape(4, 4, 4) + 1
    img = nib.Nifti1Image(data, np.diag([-2.0, 2, 2, 1]))
    ok = tmp_path / "ok.nii"
    img.to_filename(ok)
    assert load_image(ok).shape == (4, 4, 4)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(ok.read_bytes()[:-100])
    with pytest.raises(ImageError, match=r"cut\.nii: .*256 bytes"):
        load_image(cut)
    bare = nib.Nifti1Image(data, None)  # no affine: sform_code = qform_code = 0
    path = tmp_path / "bare.nii.gz"
    bare.to_filename(path)
    header = nib.load(path).header
    assert int(header["sform_code"]) == int(header["qform_code"]) == 0
    with pytest.raises(ImageError, match=r"bare\.nii\.gz: no orientation"):
        load_image(path)


def test_memory_ceiling_per_participant(tmp_path):
    import nibabel as nib
    import numpy as np

    from ironmap.io.sanity import check_memory

    paths = []
    for k in range(2):
        paths.append(tmp_path / f"e{k}.nii.gz")
        nib.Nifti1Image(np.ones((64, 64, 64), np.int16), np.eye(4)).to_filename(paths[-1])
    need = 2 * 64 ** 3 * 4 / 1024 ** 3  # GiB as float32
    assert check_memory(paths, 1.0, "sub-01") == pytest.approx(need)
    with pytest.raises(ValueError, match=r"e0\.nii\.gz: sub-01's images need 0.00195 GiB as "
                                         r"float32 .* above the 0.001 GiB ceiling"):
        check_memory(paths, 0.001, "sub-01")


@pytest.mark.parametrize(("meta", "error", "warning"), [
    ({"EchoTime": 0.005, "RepetitionTime": 0.03, "FlipAngle": 15}, None, None),
    ({"EchoTime": 0.5, "RepetitionTime": 0.03}, "not shorter than RepetitionTime 0.03 s", None),
    ({"EchoTime": 0.03, "RepetitionTime": 0.02}, "not shorter than RepetitionTime", None),
    ({"EchoTime": 0.3}, "beyond any gradient-echo", None),
    ({"EchoTime": 0.15}, None, "outside the usual"),
    ({"EchoTime": 0.005, "RepetitionTime": 30}, None, None),
    ({"EchoTime": 0.005, "RepetitionTime": 300}, "looks like milliseconds", None),
    ({"EchoTime": 0.005, "RepetitionTime": "n/a"}, "not a positive number", None),
    ({"EchoTime": 0.005, "FlipAngle": 0}, "outside 0-180", None),
    ({"EchoTime": 0.005, "FlipAngle": 270}, "outside 0-180", None),
    ({"EchoTime": 0.005, "FlipAngle": 120}, None, "unusual for a spoiled"),
])
def test_sequence_plausibility(meta, error, warning):
    from ironmap.core.metadata.plausibility import sequence_problems

    errors, warnings = sequence_problems(meta)
    assert (error is None) == (errors == []) and (warning is None) == (warnings == [])
    assert error is None or any(error in e for e in errors)
    assert warning is None or warning in warnings[0]


def test_negative_lesion_mask_is_refused(tmp_path):
    import numpy as np

    from ironmap.io.sanity import check_mask_values

    check_mask_values(np.array([0.0, 1.0, np.nan]), "m.nii.gz")
    with pytest.raises(ValueError, match=r"m\.nii\.gz: lesion mask has negative values \(min -1"):
        check_mask_values(np.array([0.0, -1.0, 1.0]), "m.nii.gz", "lesion mask")


def test_group_level_names_processed_participants_missing_from_participants_tsv(
        tmp_path, rng, caplog):
    import logging

    from _group_fixtures import write_study
    from ironmap.workflows.config import RunConfig
    from ironmap.workflows.group_level import run_group_level

    bids, out, _ = write_study(tmp_path, rng, {"HC": 12, "RRMS": 8})
    table = bids / "participants.tsv"
    table.write_text("".join(line for line in table.read_text().splitlines(keepends=True)
                             if not line.startswith(("sub-005\t", "sub-017\t"))))
    cfg = RunConfig(bids_dir=bids, output_dir=out, analysis_level="group", report=False)
    with caplog.at_level(logging.WARNING, logger="ironmap"):
        assert run_group_level(cfg) == 0
    said = [r.getMessage() for r in caplog.records if "sub-005, sub-017" in r.getMessage()]
    assert said and "participants.tsv" in said[0] and "left out" in said[0]
    doc = json.loads((out / "group" / "stats.json").read_text())
    assert {"sub-005", "sub-017"} <= set(doc["exclusions"]["participants_excluded"])
    assert any("sub-005" in i and "no row in participants.tsv" in i
               for i in doc["exclusions"]["issues"])


# --- explicit readers: encodings, non-object JSON, ragged or badly quoted tables ----------------

def test_json_sidecar_must_be_an_object(tmp_path):
    from ironmap.io.readers import InputError, read_json_object

    path = tmp_path / "x.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(InputError, match=r"x\.json: a JSON sidecar must be a JSON object .* got "
                                         r"list"):
        read_json_object(path)
    path.write_text('{\n  "EchoTime": 0.005,\n  "FlipAngle": 15,,\n}')
    with pytest.raises(InputError, match=r"x\.json: line 3, column 19: invalid JSON"):
        read_json_object(path)


def test_cp1252_files_are_read_with_a_warning_naming_file_and_line(tmp_path, caplog):
    import logging

    from ironmap.io.readers import read_json_object
    from ironmap.io.tables import read_tsv

    sidecar = tmp_path / "s.json"
    sidecar.write_bytes('{"EchoTime": 0.005,\n "InstitutionName": "Hôpital Zürich – Süd"}'
                        .encode("cp1252"))
    table = tmp_path / "participants.tsv"
    table.write_bytes("participant_id\tsite\nsub-01\tZürich\nsub-02\tBern\n".encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="ironmap"):
        assert read_json_object(sidecar)["InstitutionName"] == "Hôpital Zürich – Süd"
        assert list(read_tsv(table)["site"]) == ["Zürich", "Bern"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{sidecar}: not UTF-8" in m and "line 2" in m and "cp1252" in m
               for m in messages)
    assert any(f"{table}: not UTF-8" in m and "line 2" in m for m in messages)


@pytest.mark.parametrize(("rows", "line", "what"), [
    (["sub-01\t30\tHC", "sub-02\t41", "sub-03\t50\tHC"], 3, "2 fields, but the header has 3"),
    (["sub-01\t30\tHC", "sub-02\t41\tHC\tx"], 3, "4 fields, but the header has 3"),
    (["sub-01\t30\tHC", 'sub-02\t41\t"RRMS', "sub-03\t50\tHC"], 3, "unbalanced double quote"),
])
def test_ragged_or_badly_quoted_participants_tsv_refuses_the_run(tmp_path, capsys, rows, line,
                                                                  what):
    bids = _failing_bids(tmp_path)
    table = bids / "participants.tsv"
    table.write_text("\n".join(["participant_id\tage\tgroup", *rows]) + "\n")
    assert main([str(bids), str(tmp_path / "out"), "participant"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{table}: line {line}: " in err[0] and what in err[0], err
    assert main([str(bids), str(tmp_path / "out"), "group"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{table}: line {line}: " in err[0], err


def test_bad_sidecars_fail_their_participant_alone(tmp_path, caplog):
    import logging

    from ironmap.io.bids import discover

    bids = _failing_bids(tmp_path, ("01", "02", "03", "04"))
    anat = {s: bids / f"sub-{s}" / "anat" for s in ("01", "02", "03", "04")}
    (anat["04"] / "sub-04_echo-1_part-mag_MEGRE.json").write_text('{"EchoTime": true}')
    (anat["01"] / "sub-01_echo-1_part-mag_MEGRE.json").write_text("[1, 2, 3]")
    (anat["02"] / "sub-02_echo-1_part-mag_MEGRE.json").write_bytes(
        '{"EchoTime": 0.005, "InstitutionName": "Köln"}'.encode("cp1252"))
    (anat["03"] / "sub-03_echo-1_part-mag_MEGRE.json").write_text(
        '{"EchoTime": 0.5, "RepetitionTime": 0.03}')
    with caplog.at_level(logging.WARNING, logger="ironmap"):
        subjects = {s.participant_id: s for s in discover(bids)}
    assert any("must be a JSON object" in p and "sub-01_echo-1_part-mag_MEGRE.json" in p
               for p in subjects["sub-01"].problems)
    assert [e.echo_time for e in subjects["sub-02"].echoes] == [0.005]
    assert any("sub-02_echo-1_part-mag_MEGRE.json: not UTF-8" in r.getMessage()
               for r in caplog.records)
    assert any("sub-03_echo-1_part-mag_MEGRE.nii.gz: " in p and "not shorter than "
               "RepetitionTime 0.03 s" in p for p in subjects["sub-03"].problems)
    assert subjects["sub-04"].echoes == ()  # JSON true is not an echo time of 1 s
    assert any("no valid EchoTime" in p for p in subjects["sub-04"].problems)


def test_unwritable_output_is_one_line(tmp_path, capsys):
    bids = _failing_bids(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"  # a path under a file: unwritable even for root
    assert main([str(bids), str(out), "participant"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "Not a directory" in err[0], err


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_is_one_line(tmp_path, capsys):  # pragma: no cover - not as root
    bids = _failing_bids(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main([str(bids), str(out / "x"), "participant"]) == 1
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0], err


# --- import-dicom scratch files, transform modes, labels ------------------------------------

@pytest.mark.slow
def test_killed_import_leaves_no_identifiers_in_the_system_temp_folder(tmp_path):
    import gzip

    from test_dicom_synthetic import _leaks, write_series

    dicom_dir = tmp_path / "DICOM"
    write_series(dicom_dir, n_slices=12)
    for path in sorted(dicom_dir.iterdir()):  # .dcm.gz: decompressed copies are made
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    bids, temp = tmp_path / "bids", tmp_path / "systemp"
    temp.mkdir()
    env = {**_env(), "TMPDIR": str(temp)}
    cmd = _cli("import-dicom", str(dicom_dir), str(bids), "--participant-label", "01")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(bids.glob(".ironmap-work/*/input/*.dcm")):
            assert proc.poll() is None and time.monotonic() < deadline, "never decompressed"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert list(temp.iterdir()) == []  # nothing decompressed into the system temp folder
    assert list(bids.glob(".ironmap-work/*/input/*.dcm"))  # left inside the output instead
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "removing the scratch folder of a run that ended without cleaning up" in done.stderr
    assert not (bids / ".ironmap-work").exists()
    for path in sorted(p for p in bids.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        assert _leaks(gzip.decompress(raw) if path.name.endswith(".gz") else raw) == [], path


def test_transforms_have_the_mode_of_other_outputs(tmp_path):
    import numpy as np

    from ironmap.io.atomic import write_text
    from ironmap.spatial.registration import save_transform

    xfm = save_transform(np.eye(4), tmp_path / "sub-01_xfm.txt")
    other = write_text(tmp_path / "other.tsv", "a\n")
    assert xfm.stat().st_mode & 0o777 == other.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert xfm.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("label", ["01;rm", "sub-0_1", "../02", "a b"])
def test_bids_app_labels_follow_the_import_rule(tmp_path, capsys, label):
    from ironmap.io.dicom import DicomImportError
    from ironmap.workflows.import_dicom import bids_label

    bids = _failing_bids(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(bids), str(tmp_path / "out"), "participant", "--participant-label", label])
    assert exit_info.value.code == 2
    assert "letters and digits only" in capsys.readouterr().err
    with pytest.raises(DicomImportError, match="letters and digits only"):
        bids_label(label, "sub")
    assert not (tmp_path / "out").exists()


# --- the participant level: each broken participant fails alone, nothing earlier is lost -------

#: participant -> expected words in its logs/failures.tsv error
BROKEN = {
    "sub-201": r"sub-201_echo-2_part-mag_MEGRE\.nii\.gz: header claims 1600x1600x1600 voxels "
               r"of int16",
    "sub-202": r"sub-202_echo-1_part-mag_MEGRE\.nii\.gz: no orientation",
    "sub-203": r"sub-203_echo-1_part-mag_MEGRE\.json: a JSON sidecar must be a JSON object",
    "sub-204": r"sub-204_echo-1_part-mag_MEGRE\.nii\.gz: .*EchoTime 0\.5 s is not shorter than "
               r"RepetitionTime 0\.03 s",
    "sub-205": r"sub-205_label-lesion_mask\.nii\.gz: lesion mask has negative values",
}


def _break_subjects(bids: Path, masks: Path) -> None:
    import nibabel as nib
    import numpy as np

    def echo(sub, k, ext=".nii.gz"):
        return bids / sub / "anat" / f"{sub}_echo-{k}_part-mag_MEGRE{ext}"

    write_bomb(echo("sub-201", 2))
    img = nib.load(echo("sub-202", 1))
    nib.Nifti1Image(np.asarray(img.dataobj), None).to_filename(echo("sub-202", 1))
    echo("sub-203", 1, ".json").write_text("[1, 2, 3]")
    echo("sub-204", 1, ".json").write_text('{"EchoTime": 0.5, "RepetitionTime": 0.03}')
    lesion = masks / "sub-205" / "anat" / "sub-205_label-lesion_mask.nii.gz"
    img = nib.load(lesion)
    data = np.asarray(img.dataobj).astype(np.int16)
    assert data.max() > 0
    nib.Nifti1Image(-data, img.affine).to_filename(lesion)


@pytest.mark.slow
def test_broken_participants_fail_alone_and_earlier_results_stay(tmp_path):
    from _participant_fixtures import clone_subject
    from ironmap.io.tables import read_tsv
    from ironmap.workflows.simulate import simulate_cohort

    sim = simulate_cohort(tmp_path / "sim", subjects_per_group={"RRMS": 1}, sites=1,
                          preset="fast", voxel_size={"MEGRE": 4.0, "T1w": 4.0, "FLAIR": 4.0})
    bids, masks, out = Path(sim.bids_dir), Path(sim.masks_dir), tmp_path / "out"
    for sub in BROKEN:
        clone_subject((bids, masks), "sub-001", sub)
    table = bids / "participants.tsv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([*lines, *(lines[1].replace("sub-001", s) for s in BROKEN)])
                     + "\n")
    args = [str(bids), str(out), "participant", "--masks", str(masks), "-q"]
    assert main([*args, "--participant-label", "201"]) == 0  # earlier, complete results
    earlier = _tree(out / "sub-201")
    assert earlier
    _break_subjects(bids, masks)
    t0 = time.monotonic()
    assert main(args) == 3
    seconds = time.monotonic() - t0
    failures = read_tsv(out / "logs" / "failures.tsv").set_index("participant_id")
    assert sorted(failures.index) == sorted(BROKEN)
    for sub, pattern in BROKEN.items():
        error = failures.loc[sub, "error"]
        assert re.search(pattern, error) and "\n" not in error, (sub, error)
    regions = read_tsv(out / "group" / "regional_r2star.tsv")
    assert set(regions["participant_id"]) == {"sub-001"}  # the healthy one finished
    assert _tree(out / "sub-201") == earlier  # nothing earlier lost or overwritten
    assert (out / "logs" / "manifests" / "sub-201.json").exists()
    assert not (out / ".ironmap-staging").exists() and not (out / ".ironmap.lock.json").exists()
    assert seconds < 600


def test_import_into_a_cp1252_participants_tsv(tmp_path, capsys):
    from test_dicom_synthetic import write_series

    dicom_dir, bids = tmp_path / "DICOM", tmp_path / "bids"
    write_series(dicom_dir)
    bids.mkdir()
    (bids / "participants.tsv").write_bytes(
        "participant_id\tsite\nsub-01\tZürich\n".encode("cp1252"))
    assert main(["import-dicom", str(dicom_dir), str(bids), "--participant-label", "02",
                 "--site", "site2"]) == 0
    assert "participants.tsv: not UTF-8 (byte 0xfc on line 2); read as cp1252" in \
        capsys.readouterr().err
    text = (bids / "participants.tsv").read_text(encoding="utf-8")  # written back as UTF-8
    assert "sub-01\tZürich" in text and "sub-02" in text
