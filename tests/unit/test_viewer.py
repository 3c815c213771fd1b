"""The viewer's volume encoding: lossless for labels, 8-bit R2* within half a step."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np

from ironmap.report.viewer import crop_box, viewer_data


def _decode(b64: str, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(b64)), np.uint8).reshape(
        shape, order="F")


def test_payload_roundtrip(rng):
    shape = (30, 34, 12)
    head = np.zeros(shape, bool)
    head[5:25, 4:30, 2:10] = True
    r2 = np.where(head, rng.uniform(5, 60, shape), np.nan)
    labels = np.zeros(shape, int)
    labels[10:14, 10:14, 4:6] = 3
    lesion = np.zeros(shape, bool)
    lesion[20, 20, 5] = True
    data = viewer_data(r2, head=head, labels=labels, lesion=lesion, voxel_sizes=(1, 1, 2),
                       window=(10.0, 40.0), label_colors={3: "#123456", 7: "#000000"},
                       label_names={3: "Left-Caudate"})
    doc = json.loads(data.payload)
    box = crop_box(head)
    assert tuple(doc["shape"]) == (24, 30, 12) == data.shape  # with a 2-voxel margin
    assert doc["step"] == 1
    codes = _decode(doc["r2star"], doc["shape"]).astype(float)
    back = np.where(codes > 0, (codes - 1) * doc["scale"], np.nan)  # 0 = no value
    ref = r2[box]
    np.testing.assert_allclose(back, ref, atol=doc["scale"] / 2 + 1e-9)
    np.testing.assert_array_equal(_decode(doc["labels"], doc["shape"]), labels[box])
    np.testing.assert_array_equal(_decode(doc["lesion"], doc["shape"]), lesion[box])
    assert doc["colors"] == {"3": "#123456"} and doc["names"] == {"3": "Left-Caudate"}
    assert doc["window"] == [10.0, 40.0] and doc["voxel_mm"] == [1.0, 1.0, 2.0]
    assert "</" not in data.payload


def test_large_volume_is_downsampled_in_plane(rng):
    r2 = rng.uniform(10, 50, (120, 120, 40))
    data = viewer_data(r2, window=(10, 50), max_voxels=200_000)
    doc = json.loads(data.payload)
    assert data.step == 2 and doc["shape"] == [60, 60, 40]
    assert doc["voxel_mm"] == [2.0, 2.0, 1.0]
