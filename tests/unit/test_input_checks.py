"""The participant level's input checks: the one-pass path equals the earlier two-step check."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ironmap.io.bids import InputError
from ironmap.workflows.participant import _check_values, _finite


def _reference_check(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """The check as it was: finite voxels copied out, then tested for a non-zero."""
    data = img.get_fdata(dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(f"{path}: every voxel is NaN/Inf")
    if not np.any(data[finite] != 0):
        raise InputError(f"{path}: image is all zeros")
    if not finite.all():
        logging.getLogger("ironmap.workflows.participant").warning(
            "%s: %d NaN/Inf voxels (treated as missing)", path, int((~finite).sum()))
    return data


def _outcome(check, data: np.ndarray, caplog) -> tuple:
    img = nib.Nifti1Image(data, np.eye(4))
    caplog.clear()
    try:
        out = check(img, Path("x.nii.gz"))
    except InputError as exc:
        return ("error", str(exc), caplog.text.count("NaN/Inf voxels"))
    return ("ok", out.tobytes(), caplog.text.count("NaN/Inf voxels"))


def _random_images(rng, n: int):
    for _ in range(n):
        shape = tuple(int(s) for s in rng.integers(1, 6, size=3))
        data = rng.normal(size=shape).astype(np.float32)
        kind = rng.integers(0, 6)
        if kind == 1:
            data[:] = 0.0
        elif kind == 2:
            data[:] = -0.0
        elif kind == 3:
            data[rng.random(shape) < 0.5] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 4:
            data[:] = np.nan
            data.flat[rng.integers(data.size)] = 0.0
        elif kind == 5:
            data[rng.random(shape) < 0.7] = 0.0
            data[rng.random(shape) < 0.2] = np.nan
        yield data


def test_check_values_equals_reference(caplog):
    caplog.set_level(logging.WARNING)
    rng = np.random.default_rng(16)
    for data in [*_random_images(rng, 200), np.zeros((0, 2, 2), np.float32),
                 np.full((2, 2, 2), np.inf, np.float32)]:
        assert _outcome(_check_values, data, caplog) == _outcome(_reference_check, data,
                                                                 caplog)


def test_finite_equals_nan_to_num():
    rng = np.random.default_rng(7)
    for data in _random_images(rng, 100):
        out = _finite(data)
        ref = np.nan_to_num(data)
        assert out.dtype == ref.dtype and out.tobytes() == ref.tobytes()


@pytest.mark.parametrize("value, message", [(0.0, "all zeros"), (np.nan, "NaN/Inf")])
def test_check_values_names_the_file(value, message):
    img = nib.Nifti1Image(np.full((2, 2, 2), value, np.float32), np.eye(4))
    with pytest.raises(InputError, match=f"bad.nii.gz: .*{message}"):
        _check_values(img, Path("bad.nii.gz"))
