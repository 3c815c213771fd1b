"""On-disk cache of static products (:mod:`ironmap.io.cache`): round trip, keys, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ironmap.io import cache


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    return tmp_path / "c"


def _arrays(rng):
    return {"labels": rng.integers(0, 9, (7, 8, 9)).astype(np.uint8),
            "affine": rng.normal(size=(4, 4)), "text": np.str_("a source ü"),
            "fraction": np.float64(0.25), "mask": rng.random((3, 4)) > 0.5}


def test_round_trip_gives_the_same_arrays_and_types(folder, rng):
    key = cache.content_key(["x", "1.0"])
    want = _arrays(rng)
    path = cache.save_arrays("thing", key, want)
    assert path is not None and path.parent == folder and path.is_file()
    got = cache.load_arrays("thing", key)
    assert set(got) == set(want)
    for name, a in want.items():
        assert got[name].dtype == np.asarray(a).dtype and got[name].shape == np.shape(a)
        np.testing.assert_array_equal(got[name], a)
    assert str(got["text"]) == "a source ü"
    # nothing left beside the entry (atomic write)
    assert [p.name for p in folder.iterdir()] == [path.name]


def test_another_key_or_kind_is_a_miss(folder, rng):
    key = cache.content_key(["x"])
    cache.save_arrays("thing", key, _arrays(rng))
    assert cache.load_arrays("thing", cache.content_key(["y"])) is None
    assert cache.load_arrays("other", key) is None


def test_key_follows_file_content_and_folder_content(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x.txt").write_text("x")
    k1 = cache.content_key(["v", f, d])
    assert cache.content_key(["v", f, d]) == k1
    f.write_bytes(b"two")
    k2 = cache.content_key(["v", f, d])
    (d / "sub" / "x.txt").write_text("y")
    k3 = cache.content_key(["v", f, d])
    assert len({k1, k2, k3, cache.content_key(["w", f, d])}) == 4
    # a string is not taken for the file of the same name
    assert cache.content_key([str(f)]) != cache.content_key([f])


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "stored_key"])
def test_corrupt_entry_is_a_miss_and_removed(folder, rng, damage):
    key = cache.content_key(["x"])
    path = cache.save_arrays("thing", key, _arrays(rng))
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":  # a byte inside the labels' data
        start = raw.find(b"labels.npy") + 200
        raw[start] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    else:  # a valid file under this key's name that holds another key
        np.savez(path, labels=np.zeros(3), __key__=np.asarray("other"),
                 __digest__=np.asarray("0"))
    assert cache.load_arrays("thing", key) is None
    assert not path.exists()
    # computed again and stored again: valid from then on
    cache.save_arrays("thing", key, {"v": np.arange(3)})
    np.testing.assert_array_equal(cache.load_arrays("thing", key)["v"], np.arange(3))


def test_digest_catches_changed_values_under_a_valid_zip(folder, rng):
    key = cache.content_key(["x"])
    path = cache.save_arrays("thing", key, {"v": np.arange(5.0)})
    with np.load(path) as npz:
        stored = {n: npz[n] for n in npz.files}
    stored["v"] = stored["v"] + 1
    np.savez(path, **stored)
    assert cache.load_arrays("thing", key) is None


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_unwritable_folder_means_no_cache(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv(cache.CACHE_ENV, str(ro / "c"))
    try:
        assert cache.save_arrays("thing", "k" * 64, {"v": np.arange(3)}) is None
        assert cache.load_arrays("thing", "k" * 64) is None
    finally:
        ro.chmod(0o700)


def test_folder_that_is_a_file_means_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))
    assert cache.save_arrays("thing", "k" * 64, {"v": np.arange(3)}) is None
    assert cache.load_arrays("thing", "k" * 64) is None


def test_cache_folder_choice(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "")
    assert cache.cache_dir() is None
    assert cache.save_arrays("thing", "k" * 64, {"v": np.arange(3)}) is None
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "ironmap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "ironmap"
