"""The compiled Rician magnitude equals the numpy reference cast to float32, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.sim import noise_kernel, signal

pytestmark = pytest.mark.skipif(not noise_kernel.AVAILABLE, reason="numba not installed")


def _both(image, sigma, seed=3):
    ref = signal.add_rician_noise(image, sigma, np.random.default_rng(seed)).astype(np.float32)
    new = signal.rician_noise_float32(image, sigma, np.random.default_rng(seed))
    return ref, new


@pytest.mark.parametrize("sigma", [0.37, np.float64(0.37), np.float32(0.37), 12.5,
                                   np.float64(1e-3)])
def test_equals_reference(sigma):
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 50.0, size=(23, 17, 11))
    image[0] = 0.0  # background: the magnitude of the noise alone
    image[1] *= 1e6
    ref, new = _both(image, sigma)
    assert new.dtype == np.float32 and new.shape == image.shape
    assert np.array_equal(ref.view(np.uint32), new.view(np.uint32))


def test_strided_echo_of_a_4d_array():
    """The simulator passes one echo of a (X, Y, Z, echoes) array: not contiguous."""
    gre = np.random.default_rng(1).uniform(0, 400, size=(9, 8, 7, 3))
    ref, new = _both(gre[..., 1], np.float64(4.1))
    assert np.array_equal(ref.view(np.uint32), new.view(np.uint32))


def test_same_stream_afterwards():
    """Both take two draws of the image's shape, so later draws are the same."""
    image = np.ones((4, 5, 6))
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    signal.add_rician_noise(image, 0.5, a)
    signal.rician_noise_float32(image, 0.5, b)
    assert a.standard_normal() == b.standard_normal()


def test_other_inputs_take_the_reference():
    image = np.random.default_rng(2).uniform(0, 10, size=(50,))  # 1-D
    ref, new = _both(image, 0.5)
    assert np.array_equal(ref, new)
    flat = np.full((3, 3, 3), 5.0)
    ref, new = _both(flat, 0.0)  # no noise
    assert np.array_equal(ref, new) and np.all(new == 5.0)
