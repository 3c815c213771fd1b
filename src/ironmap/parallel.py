"""Executors for independent tasks: serial, a Dask LocalCluster, or an existing Dask cluster.

Tasks are independent (one participant each); results come back as they complete. Workers get
one ITK/OpenMP/BLAS thread each (set in their environment before ``ants`` is imported), so
``n`` workers use about ``n`` cores and ITK registration stays reproducible. Anything that
listens binds to 127.0.0.1 on a free port (the HTTP/dashboard ports too: ``None`` would still
try port 8787 first). A rich progress bar is shown on a
terminal; otherwise one log line per finished task.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: environment every worker process runs with (one thread per library)
WORKER_ENV: dict[str, str] = {
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def pin_threads(force: bool = False) -> dict[str, str]:
    """Put :data:`WORKER_ENV` into ``os.environ`` (keeping user values unless ``force``).

    Effective only in a process that has not yet imported ``ants``/numpy's BLAS; returns the
    resulting values. Called at the start of every task, so that a worker process which has
    not imported ``ants`` yet gets one ITK thread whatever its launcher did.
    """
    for key, value in WORKER_ENV.items():
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)
    return {k: os.environ[k] for k in WORKER_ENV}


def _worker_state() -> dict[str, Any]:
    return {"ants_imported": "ants" in sys.modules,
            "itk_threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}


def run_tasks(func: Callable[[Any], Any], items: Iterable[Any], *, labels: Iterable[str],
              nprocs: int = 1, scheduler: str | None = None,
              progress: bool | None = None) -> list[Any]:
    """Run ``func(item)`` for every item; return the results in input order.

    Parameters
    ----------
    func : callable
        Module-level (picklable) function; it should catch its own errors and return a record.
        An exception that escapes it (or a worker that dies) is returned as the result.
    items : iterable
        Picklable task inputs.
    labels : iterable of str
        One name per item for progress and log lines.
    nprocs : int
        1 = run serially in this process; more = a Dask LocalCluster with this many worker
        processes (one thread each).
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:port``); overrides ``nprocs``.
    progress : bool, optional
        Rich progress bar; default: when stderr is a terminal.
    """
    items = list(items)
    labels = list(labels)
    if progress is None:
        progress = sys.stderr.isatty()
    results: list[Any] = [None] * len(items)
    with _Reporter(len(items), progress) as report:
        for index, result in _completed(func, items, labels, nprocs, scheduler):
            results[index] = result
            report.done(labels[index], result)
    return results


def _completed(func, items, labels, nprocs, scheduler) -> Iterator[tuple[int, Any]]:
    if scheduler is None and nprocs <= 1:
        pin_threads()
        for i, item in enumerate(items):
            yield i, _call(func, item)
        return
    yield from _dask_completed(func, items, labels, nprocs, scheduler)


def _call(func, item):
    try:
        return func(item)
    except Exception as exc:  # the task should not raise; keep the others running if it does
        log.exception("task failed")
        return exc


def _dask_completed(func, items, labels, nprocs, scheduler) -> Iterator[tuple[int, Any]]:
    from distributed import Client, LocalCluster, as_completed

    # distributed sets its own loggers to INFO on import; keep them quiet unless debugging
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=nprocs, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               worker_dashboard_address="127.0.0.1:0", env=dict(WORKER_ENV),
                               silence_logs=logging.WARNING)
        client = Client(cluster)
        log.info("Dask LocalCluster with %d worker processes (1 thread each)", nprocs)
    else:
        client = Client(scheduler, timeout="30s")
        log.info("connected to Dask scheduler %s (%d workers)", scheduler,
                 len(client.scheduler_info().get("workers", {})))
        client.run(pin_threads)
        for addr, state in client.run(_worker_state).items():
            if state["ants_imported"] and state["itk_threads"] != "1":
                log.warning("worker %s imported ANTs with ITK threads %s; start workers with "
                            "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 for reproducible "
                            "registration", addr, state["itk_threads"])
    try:
        index = {}
        futures = []
        for i, (item, label) in enumerate(zip(items, labels, strict=True)):
            fut = client.submit(func, item, key=f"ironmap-{label}-{time.time_ns()}",
                                pure=False, retries=0)
            index[fut.key] = i
            futures.append(fut)
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                yield i, fut.result()
            except Exception as exc:  # worker died or task raised
                yield i, exc
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Reporter:
    """Progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, bar: bool):
        self.total, self.bar, self.n = total, bar, 0
        self.start = time.monotonic()
        self._progress = None

    def __enter__(self) -> _Reporter:
        if self.bar and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("participants"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.description}"),
                                      transient=False)
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def done(self, label: str, result: Any) -> None:
        self.n += 1
        status = getattr(result, "status", None) or (
            result.get("status") if isinstance(result, dict) else None) or (
            "failed" if isinstance(result, BaseException) else "done")
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=f"{label} {status}")
        else:
            log.info("[%d/%d] %s %s (%.1f s elapsed)", self.n, self.total, label, status,
                     time.monotonic() - self.start)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
