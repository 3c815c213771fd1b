"""The process pool of the simulation, the report's pages and the demo check: real worker
processes, started fresh (spawn), their log records relayed to the parent's handlers."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from ironmap.parallel import POOL_START, process_pool

#: a lock held by a thread of the parent while the pool starts (see the fork test)
_LOCK = threading.Lock()


def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fail(x: int) -> int:
    raise ValueError(f"bad item {x}")


def _log_twice(name: str) -> int:
    logger = logging.getLogger(name)
    logger.info("info from a worker")
    logger.warning("warning from a worker")
    return os.getpid()


def _lock_free(timeout: float) -> bool:
    got = _LOCK.acquire(timeout=timeout)
    if got:
        _LOCK.release()
    return got


def test_results_come_from_other_processes_in_order():
    assert POOL_START == "spawn"
    with process_pool(2) as pool:
        out = list(pool.map(_square, range(6)))
        with pytest.raises(ValueError, match="bad item 3"):
            pool.submit(_fail, 3).result()
    assert [r for r, _ in out] == [0, 1, 4, 9, 16, 25]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_worker_log_records_reach_the_parent_at_its_levels(caplog):
    name = "ironmap.tests.pool"
    logging.getLogger(name).setLevel(logging.WARNING)  # the parent's level holds in workers
    try:
        with caplog.at_level(logging.INFO), process_pool(1) as pool:
            pid = pool.submit(_log_twice, name).result()
        mine = [r for r in caplog.records if r.name == name]
        assert [(r.levelname, r.getMessage()) for r in mine] == [
            ("WARNING", "warning from a worker")]
        assert mine[0].process == pid != os.getpid()
    finally:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_without_forwarding_nothing_is_relayed(caplog):
    name = "ironmap.tests.pool_quiet"
    with caplog.at_level(logging.INFO), process_pool(1, forward_logs=False) as pool:
        pool.submit(_log_twice, name).result()
    assert not [r for r in caplog.records if r.name == name]


@pytest.mark.parametrize("start, free", [("spawn", True), ("fork", False)])
def test_a_lock_held_by_a_parent_thread_is_not_inherited(start, free):
    """Why the pool spawns: a forked worker inherits a lock that another thread of the parent
    held at the fork, and nothing in the worker will ever release it (the CI hang)."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with _LOCK:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        t0 = time.monotonic()
        with process_pool(1, start=start) as pool:
            got = pool.submit(_lock_free, 2.0).result(timeout=60)
    finally:
        release.set()
        t.join()
    assert got is free
    assert time.monotonic() - t0 < 60
