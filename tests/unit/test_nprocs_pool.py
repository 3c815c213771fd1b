"""``--nprocs N`` on one machine: the participant pool of :mod:`ironmap.parallel` (run_tasks)."""

from __future__ import annotations

import os

import pytest

from ironmap.parallel import WORKER_ENV, run_tasks, worker_environment


def _threads(_):
    """What a worker sees: the thread variables and the BLAS/OpenMP pools' real sizes."""
    import numpy  # noqa: F401 - loads its BLAS
    from threadpoolctl import threadpool_info

    return ({k: os.environ.get(k) for k in WORKER_ENV},
            sorted({p["num_threads"] for p in threadpool_info()}), os.getpid())


def _square_or_die(x):
    if x == "die":
        os._exit(3)  # the worker process ends abruptly, as when killed for memory
    return x * x


def test_workers_run_with_one_thread_per_library(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # a user setting the workers must not inherit
    results = run_tasks(_threads, [0, 1, 2], labels=["a", "b", "c"], nprocs=2, progress=False)
    for env, pools, _ in results:
        assert env == WORKER_ENV
        assert pools in ([], [1])  # every BLAS / OpenMP pool loaded has one thread
    assert len({pid for *_, pid in results}) == 2  # two worker processes, not this one
    assert os.environ["OMP_NUM_THREADS"] == "7"  # the caller's environment is restored


def test_a_dying_worker_fails_only_its_own_task():
    from concurrent.futures.process import BrokenProcessPool

    items = [1, 2, "die", 4, 5, 6]
    results = run_tasks(_square_or_die, items, labels=[str(i) for i in items], nprocs=2,
                        progress=False)
    assert isinstance(results[2], BrokenProcessPool)
    assert [r for i, r in enumerate(results) if i != 2] == [1, 4, 16, 25, 36]


def test_a_raising_task_returns_its_exception():
    results = run_tasks(int, ["1", "x", "3"], labels=["a", "b", "c"], nprocs=2, progress=False)
    assert results[0] == 1 and results[2] == 3 and isinstance(results[1], ValueError)


def test_worker_environment_restores_unset_variables(monkeypatch):
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with worker_environment() as env:
        assert os.environ["MKL_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert "MKL_NUM_THREADS" not in os.environ


@pytest.mark.slow
def test_dask_local_cluster_is_still_available(monkeypatch):
    monkeypatch.setenv("IRONMAP_LOCAL_EXECUTOR", "dask")
    results = run_tasks(_threads, [0, 1], labels=["a", "b"], nprocs=2, progress=False)
    assert all(env == WORKER_ENV for env, *_ in results)


def _warn(name):
    import logging

    logging.getLogger("ironmap.workflows.participant").warning("small region in %s", name)
    return name


def test_worker_warnings_reach_the_parent_log(caplog):
    import logging

    caplog.set_level(logging.INFO)
    out = run_tasks(_warn, ["sub-01", "sub-02"], labels=["sub-01", "sub-02"], nprocs=2,
                    progress=False)
    assert sorted(out) == ["sub-01", "sub-02"]
    seen = sorted(r.getMessage() for r in caplog.records
                  if r.name == "ironmap.workflows.participant")
    assert seen == ["small region in sub-01", "small region in sub-02"]
