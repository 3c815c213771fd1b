"""A real Dask scheduler and two workers on 127.0.0.1: same results as the local serial run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _participant_fixtures import assert_same_subject_outputs, group_rows, make_config

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).with_name("dask")
LABELS = ("sub-001", "sub-002")


def _wait_for(predicate, timeout: float, what: str, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process exited early ({p.args})")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def _listening(procs) -> list[str]:
    """Local addresses the processes listen on (``ss -ltnp``); skips the test without ss."""
    if shutil.which("ss") is None:
        pytest.skip("ss is not installed; cannot list listening sockets")
    pids = {f"pid={p.pid}," for p in procs}
    lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return [ln.split()[3] for ln in lines.splitlines() if any(p in ln for p in pids)]


@pytest.fixture
def dask_cluster(tmp_path):
    """``dask scheduler`` + two ``dask worker`` processes, loopback only, no dashboards."""
    if not DASK.exists():
        pytest.skip("the dask command line is not installed")
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    sched_file = tmp_path / "scheduler.json"
    logs = [open(tmp_path / f"dask-{n}.log", "w") for n in ("scheduler", "w1", "w2")]  # noqa: SIM115
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)],
            stdout=logs[0], stderr=subprocess.STDOUT, env=env, start_new_session=True))
        _wait_for(sched_file.exists, 60, "dask scheduler", procs)
        for log in logs[1:]:
            procs.append(subprocess.Popen(
                [str(DASK), "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                 "--dashboard-address", "127.0.0.1:0", "--nworkers", "1", "--nthreads", "1",
                 "--no-nanny", "--local-directory", str(tmp_path / "dask-work")],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        from distributed import Client

        _wait_for(lambda: sched_file.stat().st_size > 0, 30, "scheduler file", procs)
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
            workers = list(client.scheduler_info()["workers"])
        assert _listening(procs) and all(a.startswith("127.0.0.1:") for a in _listening(procs))
        yield address, workers
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def test_dask_cluster_gives_identical_results(reference_run, dask_cluster, tmp_path):
    from ironmap.workflows.participant_level import run_participant_level

    address, workers = dask_cluster
    assert address.startswith("tcp://127.0.0.1:")
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    out = tmp_path / "out"
    cfg = make_config(reference_run.bids_dir, out, reference_run.masks_dir,
                      participant_label=tuple(s.removeprefix("sub-") for s in LABELS),
                      dask_scheduler=address)
    assert run_participant_level(cfg) == 0
    for label in LABELS:
        assert assert_same_subject_outputs(reference_run.output_dir, out, label) > 10
        log = (out / "logs" / f"{label}.log").read_text()
        assert "registration" in log  # processed on a worker, logged per participant
    for table in ("regional_r2star.tsv", "lesions.tsv"):
        assert group_rows(out, table, LABELS) == group_rows(reference_run.output_dir, table,
                                                            LABELS)


def test_local_cluster_pins_threads_and_isolates_failures():
    """``--nprocs 2``: a LocalCluster whose workers run with one ITK/BLAS thread each."""
    from ironmap.parallel import run_tasks

    env = run_tasks(os.getenv, ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"],
                    labels=["itk", "omp"], nprocs=2, progress=False)
    assert env == ["1", "1"]
    results = run_tasks(int, ["1", "x", "3"], labels=["a", "b", "c"], nprocs=2, progress=False)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], ValueError)  # one failing task does not stop the others


def test_serial_executor_keeps_order_and_isolates_failures():
    from ironmap.parallel import run_tasks

    results = run_tasks(int, ["1", "x", "3"], labels=["a", "b", "c"], progress=False)
    assert results[0] == 1 and results[2] == 3 and isinstance(results[1], ValueError)
