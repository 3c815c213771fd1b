"""Fast gzip paths of io/nifti: ISA-L writing, one decompression when reading.

Both change only how the gzip stream is made or read: the header and voxel bytes, and the
values every reader gets, are those of the zlib/nibabel paths (checked here bit for bit).
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from ironmap.io import nifti
from ironmap.io.nifti import ImageError, load_image, save_image

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _data(rng, kind):
    if kind == "float":
        return rng.normal(30.0, 5.0, (17, 13, 9)).astype(np.float32)
    if kind == "labels":
        return rng.integers(0, 12, (17, 13, 9)).astype(np.int16)
    return rng.random((17, 13, 9, 2)) > 0.5


@pytest.mark.parametrize("kind", ["float", "labels", "mask4d"])
def test_written_stream_holds_the_zlib_paths_bytes_and_is_deterministic(tmp_path, rng, kind,
                                                                       monkeypatch):
    data = _data(rng, kind)
    fast = save_image(data, AFFINE, tmp_path / "fast.nii.gz", compresslevel=6)
    again = save_image(data, AFFINE, tmp_path / "again.nii.gz", compresslevel=6)
    monkeypatch.setattr(nifti, "_igzip", None)
    slow = save_image(data, AFFINE, tmp_path / "slow.nii.gz", compresslevel=6)
    assert fast.read_bytes() == again.read_bytes()  # deterministic (no time stamp)
    assert gzip.decompress(fast.read_bytes()) == gzip.decompress(slow.read_bytes())
    np.testing.assert_array_equal(nib.load(fast).get_fdata(), nib.load(slow).get_fdata())


@pytest.mark.parametrize("inflate", ["isal", "zlib"])
@pytest.mark.parametrize("kind", ["float", "labels", "mask4d"])
def test_loaded_image_equals_nibabels(tmp_path, rng, kind, inflate, monkeypatch):
    import zlib

    if inflate == "zlib":  # as without the isal package
        monkeypatch.setattr(nifti, "_inflate", zlib)
    path = save_image(_data(rng, kind), AFFINE, tmp_path / "x.nii.gz")
    img, ref = load_image(path), nib.load(path)
    assert type(img) is type(ref)
    assert img.file_map["image"].filename is None  # held in memory, decompressed once
    assert img.header.binaryblock == ref.header.binaryblock
    np.testing.assert_array_equal(img.affine, ref.affine)
    for get in (lambda i: np.asarray(i.dataobj), lambda i: i.get_fdata(),
                lambda i: i.get_fdata(dtype=np.float32)):
        a, b = get(img), get(ref)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_scaled_image_reads_the_same_values(tmp_path, rng):
    img = nib.Nifti1Image(rng.integers(0, 1000, (6, 5, 4)).astype(np.int16), AFFINE)
    img.header.set_slope_inter(0.5, 3.0)
    path = tmp_path / "scaled.nii.gz"
    path.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    got, ref = load_image(path), nib.load(path)
    np.testing.assert_array_equal(np.asarray(got.dataobj), np.asarray(ref.dataobj))
    assert got.dataobj.slope == 0.5 and got.dataobj.inter == 3.0


def test_several_gzip_members_and_trailing_bytes(tmp_path, rng):
    img = nib.Nifti1Image(_data(rng, "float"), AFFINE)
    raw = img.to_bytes()
    multi = tmp_path / "multi.nii.gz"  # two gzip members: nibabel's reader takes over
    multi.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    got = load_image(multi)
    np.testing.assert_array_equal(got.get_fdata(), img.get_fdata())
    assert got.file_map["image"].filename == str(multi)
    tail = tmp_path / "tail.nii.gz"  # bytes after the data are not read
    tail.write_bytes(gzip.compress(raw + b"\0" * 64))
    np.testing.assert_array_equal(load_image(tail).get_fdata(), img.get_fdata())


@pytest.mark.parametrize("cut", ["data", "stream", "wrapper"])
def test_truncated_file_is_still_named(tmp_path, rng, cut):
    raw = nib.Nifti1Image(_data(rng, "float"), AFFINE).to_bytes()
    path = tmp_path / "cut.nii.gz"
    if cut == "data":  # a complete gzip stream of too few bytes
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    elif cut == "stream":  # a gzip stream cut off
        full = gzip.compress(raw)
        path.write_bytes(full[: len(full) // 2])
    else:  # not gzip at all under the .gz name
        path.write_bytes(raw)
    with pytest.raises(ImageError, match="not a readable NIfTI image"):
        load_image(path)
