"""Progress of long steps: the time left comes from the completed items' pace."""

from __future__ import annotations

import logging

from ironmap.parallel import Progress, estimate_remaining, format_duration


def test_estimate_from_completed_items():
    assert estimate_remaining(10.0, 0, 5) is None  # nothing done yet: no guess
    assert estimate_remaining(30.0, 3, 10) == 70.0  # 10 s per item, 7 left
    assert estimate_remaining(30.0, 10, 10) == 0.0
    # two workers: 4 items in 20 s is 5 s per item of wall time, whatever each one took
    assert estimate_remaining(20.0, 4, 6) == 10.0
    assert [format_duration(s) for s in (None, 12.4, 245, 3720)] == [
        "estimating...", "12 s", "4 min 05 s", "1 h 02 min"]


def test_plain_lines_without_a_terminal(caplog, monkeypatch):
    clock = iter([100.0, 110.0, 130.0, 160.0])
    monkeypatch.setattr("ironmap.parallel.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="ironmap.parallel"), \
            Progress(3, "pages", bar=False) as progress:
        progress.done("sub-001")
        progress.done("sub-002", "ok")
        progress.done("sub-003", "failed")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["[1/3] sub-001 done (10.0 s elapsed, about 20 s left)",
                     "[2/3] sub-002 ok (30.0 s elapsed, about 15 s left)",
                     "[3/3] sub-003 failed (60.0 s elapsed, all done)"]
