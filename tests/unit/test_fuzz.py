"""Property-based fuzzing of the readers and the R2* fit (hypothesis).

For random valid and mutated NIfTI files, JSON sidecars, participants tables and echo
signals: never a traceback, never an infinite number in a result table, always either a result
or a named error (:class:`ironmap.io.readers.InputError` / ``ValueError`` whose message starts
with the file). Deterministic (``derandomize=True``, no example database) so that CI runs the
same cases every time; the number of cases per test is :data:`EXAMPLES` (docs/reliability.md
records the count and the time).
"""

from __future__ import annotations

import json
import os
import struct
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironmap.core.group.cohort_table import validate_participants
from ironmap.core.metadata.plausibility import sequence_problems
from ironmap.core.r2star.relaxometry import fit_r2star
from ironmap.core.regions.regional_values import regional_stats
from ironmap.io.bids import find_echoes
from ironmap.io.nifti import ImageError, load_image
from ironmap.io.readers import InputError, read_json_object
from ironmap.io.sanity import check_memory
from ironmap.io.study import DEFAULT_COLUMNS
from ironmap.io.tables import read_tsv

#: generated cases per fuzz test (4 tests)
EXAMPLES = int(os.environ.get("IRONMAP_FUZZ_EXAMPLES", "250"))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

pytestmark = pytest.mark.filterwarnings("ignore")


# --- NIfTI headers ------------------------------------------------------------------------------

#: byte offsets of NIfTI-1 header fields that mutations target
_FIELDS = {"dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"),
           "pixdim": (76, "<8f"), "vox_offset": (108, "<f"), "scl": (112, "<2f"),
           "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<6f"),
           "srow": (280, "<12f")}


@st.composite
def nifti_files(draw):
    """Bytes of a valid NIfTI-1 image, then optionally mutated; and whether to gzip it."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=4)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    data = (np.random.default_rng(seed).random(shape) * 200 - 50).astype(dtype)
    zooms = draw(st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    affine = np.diag([*(z * s for z, s in zip(zooms, signs, strict=True)), 1.0])
    affine[:3, 3] = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    img = nib.Nifti1Image(data, affine)
    img.header.set_sform(affine, code=draw(st.sampled_from([0, 1, 2, 4])))
    img.header.set_qform(affine, code=draw(st.sampled_from([0, 1, 2])))
    raw = bytearray(img.to_bytes())
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["field", "flip", "truncate", "append"]))
        if kind == "field":
            offset, fmt = _FIELDS[draw(st.sampled_from(sorted(_FIELDS)))]
            n = struct.calcsize(fmt)
            values = draw(st.lists(st.integers(-(2**15), 2**15 - 1), min_size=n // 2,
                                   max_size=n // 2)) if "h" in fmt else draw(st.lists(
                st.floats(allow_nan=True, allow_infinity=True, width=32),
                min_size=n // 4, max_size=n // 4))
            raw[offset:offset + n] = struct.pack(fmt, *values)
        elif kind == "flip":
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            raw = raw[:draw(st.integers(0, len(raw)))]
        else:
            raw += draw(st.binary(max_size=64))
    return bytes(raw), draw(st.booleans())


@FUZZ
@given(case=nifti_files())
def test_fuzz_nifti_reader(tmp_path, case):
    import gzip

    raw, compress = case
    path = tmp_path / ("x.nii.gz" if compress else "x.nii")
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    try:
        img = load_image(path)
    except ImageError as exc:
        assert str(exc).startswith(f"{path}: "), exc
        assert "\n" not in str(exc).strip()
        return
    affine = img.affine
    assert np.all(np.isfinite(affine)) and abs(np.linalg.det(affine[:3, :3])) > 0
    assert int(img.header["sform_code"]) or int(img.header["qform_code"])
    assert img.get_fdata(dtype=np.float32).shape == img.shape
    assert check_memory([path], 1.0, "sub-x") < 1.0


def _result_or_named_error(read, path):
    """``read(path)``, or None after checking that the InputError names the file in one line."""
    try:
        return read(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), exc
        return None


# --- JSON sidecars ------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
_NUMBERS = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10**6)
            | st.text(max_size=6) | st.none() | st.booleans())


@st.composite
def sidecar_bytes(draw):
    """A sidecar: a plausible one with random values, any JSON value, or raw bytes."""
    kind = draw(st.sampled_from(["sequence", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "sequence":
        value = {k: draw(_NUMBERS) for k in ("EchoTime", "RepetitionTime", "FlipAngle")
                 if draw(st.booleans())}
        value.update(draw(st.dictionaries(st.text(max_size=8), _JSON, max_size=3)))
    else:
        value = draw(_JSON)
    text = json.dumps(value, allow_nan=True)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(raw=sidecar_bytes())
def test_fuzz_sidecar_readers(tmp_path, raw):
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz").write_bytes(b"")  # only its name is read
    sidecar = anat / "sub-01_echo-1_part-mag_MEGRE.json"
    sidecar.write_bytes(raw)
    meta = _result_or_named_error(read_json_object, sidecar)
    if meta is not None:
        errors, warns = sequence_problems(meta)
        assert all(isinstance(m, str) and m for m in errors + warns)
    echoes, problems = find_echoes(anat, tmp_path)
    assert all(isinstance(p, str) and str(anat) in p for p in problems)
    for echo in echoes:  # accepted echo times are plausible seconds
        assert np.isfinite(echo.echo_time) and 0 < echo.echo_time <= 0.2
    assert (len(echoes) == 1) != bool(problems)


# --- participants tables ------------------------------------------------------------------------

_CELL = (st.text(alphabet="abHCRMS019.-+e \t\"'\n\r,;äéñ–", max_size=8)
         | st.sampled_from(["n/a", "inf", "-inf", "nan", "1e400", "HC", "RRMS", "42"]))


@st.composite
def participants_bytes(draw):
    columns = ["participant_id", *draw(st.lists(st.sampled_from(
        ["age", "sex", "group", "site", "edss", "disease_duration", "x"]), max_size=5))]
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    rows = []
    for i in range(draw(st.integers(0, 6))):
        n = len(columns) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        cells = [draw(_CELL) for _ in range(max(n, 0))]
        if cells and draw(st.booleans()):
            cells[0] = f"sub-{i:02d}"
        rows.append(cells)
    text = "\n".join("\t".join(r) for r in [columns, *rows]) + draw(st.sampled_from(["", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "cp1252", "latin-1"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(raw=participants_bytes())
def test_fuzz_participants_table(tmp_path, raw):
    from ironmap.io.bids import read_participants

    path = tmp_path / "participants.tsv"
    path.write_bytes(raw)
    table = _result_or_named_error(read_tsv, path)
    if table is None:
        with pytest.raises(InputError):
            read_participants(tmp_path)
        return
    assert isinstance(table, pd.DataFrame)
    if "participant_id" in table.columns:
        assert isinstance(read_participants(tmp_path), set)
    raw_table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                            na_values=["n/a"], encoding="latin-1")
    try:
        subjects, issues = validate_participants(raw_table, dict(DEFAULT_COLUMNS), "HC")
    except (KeyError, ValueError) as exc:  # named: the column or value that is unusable
        assert str(exc)
        return
    numeric = subjects.select_dtypes(include="number").to_numpy(dtype=float)
    assert not np.isinf(numeric).any()  # no infinite age/EDSS reaches a table
    assert all(isinstance(i.message(), str) for i in issues)


# --- fit_r2star and the regional table ----------------------------------------------------------

_SIGNAL = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(0.1, 5000.0)


@st.composite
def echo_series(draw):
    n_echoes = draw(st.integers(2, 6))
    te = np.cumsum(draw(st.lists(st.floats(0.0005, 0.02), min_size=n_echoes,
                                 max_size=n_echoes)))
    n_vox = draw(st.integers(1, 12))
    values = draw(st.lists(_SIGNAL, min_size=n_vox * n_echoes, max_size=n_vox * n_echoes))
    signal = np.asarray(values, dtype=np.float32).reshape(n_vox, n_echoes)
    return signal, te, draw(st.sampled_from(["two_point", "loglinear", "wls", "nonlinear",
                                             "arlo", "auto"]))


@FUZZ
@given(case=echo_series())
def test_fuzz_fit_r2star(case):
    signal, te, method = case
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_r2star(signal, te, method=method)
    except ValueError as exc:
        assert str(exc)
        return
    r2 = np.asarray(fit.r2star, dtype=float)
    assert r2.shape == signal.shape[:1]
    assert not np.isinf(r2).any() and not np.isinf(np.asarray(fit.s0, dtype=float)).any()
    good = np.isfinite(r2)
    assert np.all((r2[good] > 0) & (r2[good] < 1000))  # within the accepted range
    assert np.all(np.asarray(fit.flags)[~good] != 0)  # a NaN voxel always carries a flag
    labels = np.zeros((2, 3, 2), dtype=np.int16)
    labels.flat[: r2.size] = 1 + np.arange(r2.size) % 2
    volume = np.full(labels.shape, np.nan)
    volume.flat[: r2.size] = r2
    table = regional_stats(volume, labels, {1: "Left-Caudate", 2: "Right-Caudate"},
                           erosion_voxels=0)
    numbers = table.select_dtypes(include="number").to_numpy(dtype=float)
    assert not np.isinf(numbers).any()


def test_fuzz_settings_are_deterministic():
    """CI runs the same cases each time: derandomized, no example database, a fixed count."""
    assert FUZZ.derandomize and FUZZ.database is None and FUZZ.max_examples == EXAMPLES
    for test in (test_fuzz_nifti_reader, test_fuzz_sidecar_readers,
                 test_fuzz_participants_table, test_fuzz_fit_r2star):
        assert test._hypothesis_internal_use_settings.max_examples == EXAMPLES
