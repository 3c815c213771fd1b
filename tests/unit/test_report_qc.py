"""Automatic QC flag rules (pure) and the first-echo SNR estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ironmap.core.qc import run_flags


def test_rules_raise_named_flags():
    thr = run_flags.QCThresholds()
    flags = run_flags.evaluate("sub-01", similarities={"FLAIR": 1.02, "MEGRE": 1.35}, snr=6.0,
                             brain_flagged_fraction=0.08,
                             region_fractions={"caudate": 0.5, "putamen": 0.01})
    got = {(f.rule, f.item) for f in flags}
    assert got == {("registration", "FLAIR->T1w"), ("low_snr", "echo 1"),
                   ("flagged_voxels", "brain"), ("flagged_voxels", "caudate")}
    reg = next(f for f in flags if f.rule == "registration")
    assert reg.value == 1.02 and reg.threshold == thr.min_registration_similarity
    assert "below 1.1" in reg.message


def test_unmeasured_values_raise_nothing():
    assert run_flags.evaluate("sub-01", similarities={"FLAIR": math.nan}, snr=None,
                            brain_flagged_fraction=float("nan"),
                            region_fractions={"caudate": math.nan}) == []


def test_region_fractions_use_bilateral_rows():
    table = pd.DataFrame({"region": ["caudate", "caudate", "caudate", "putamen"],
                          "hemisphere": ["left", "right", "bilateral", "bilateral"],
                          "n_voxels_eroded": [10, 10, 20, 0], "n_voxels_flagged": [1, 3, 4, 0]})
    fr = run_flags.region_flagged_fractions(table)
    assert fr["caudate"] == pytest.approx(0.2) and math.isnan(fr["putamen"])


@pytest.mark.parametrize("sigma", [5.0, 20.0])
def test_first_echo_snr_recovers_rayleigh_sigma(rng, sigma):
    shape = (40, 40, 20)
    head = np.zeros(shape, bool)
    head[12:28, 12:28, 5:15] = True
    signal = np.where(head, 800.0, 0.0)
    noisy = np.abs(signal + rng.normal(0, sigma, shape) + 1j * rng.normal(0, sigma, shape))
    snr = run_flags.first_echo_snr(noisy, head)
    assert snr == pytest.approx(noisy[head].mean() / sigma, rel=0.05)
    assert math.isnan(run_flags.first_echo_snr(np.where(head, 800.0, 0.0), head))  # no noise


def _reference_snr(echo1, head=None, margin_voxels=3):
    """first_echo_snr as it was: the echo always copied through np.nan_to_num."""
    from scipy import ndimage

    e = np.nan_to_num(np.asarray(echo1, dtype=float))
    if head is None:
        pos = e[e > 0]
        if pos.size == 0:
            return math.nan
        head = e > 0.2 * np.percentile(pos, 99)
    if not head.any():
        return math.nan
    bg = ~ndimage.binary_dilation(head, iterations=margin_voxels)
    bg_vals = e[bg & (e > 0)]
    if bg_vals.size < 50:
        return math.nan
    sigma = math.sqrt(float(np.mean(bg_vals ** 2)) / 2.0)
    return float(e[head].mean() / sigma) if sigma > 0 else math.nan


def test_first_echo_snr_equals_reference_with_and_without_nan():
    rng = np.random.default_rng(3)
    for trial in range(60):
        echo = rng.rayleigh(10.0, (12, 12, 8)).astype(rng.choice([np.float32, np.float64]))
        echo[3:9, 3:9, 2:6] += rng.uniform(50.0, 800.0)
        if trial % 2:
            echo[rng.random(echo.shape) < 0.05] = rng.choice([np.nan, np.inf, -np.inf])
        if trial % 7 == 0:
            echo[:] = 0.0
        head = np.zeros(echo.shape, bool)
        head[2:10, 2:10, 1:7] = True
        for h in (None, head):
            with np.errstate(over="ignore"):  # +Inf becomes the largest float
                want = _reference_snr(echo, h)
                got = run_flags.first_echo_snr(echo, h)
            assert np.array_equal(got, want, equal_nan=True)
