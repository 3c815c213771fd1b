"""Shared fixtures: seeded RNG, the optional real-data folder, temporary outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IRONMAP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (every test that draws numbers uses it)."""
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real MRI data); the test skips with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set IRONMAP_SHARED_DATA)")
    return SHARED_DATA


def require_shared(*parts: str) -> Path:
    """Path under ``../shared/data``; skips the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data {p} is absent")
    return p


# Participant-level cohort shared by test_participant*.py, test_dask_cluster.py, test_resume.py
from _participant_fixtures import reference_run, sim_cohort  # noqa: E402,F401
