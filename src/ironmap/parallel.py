"""Executors for independent tasks: serial, a spawned process pool, or a Dask cluster.

Tasks are independent (one participant each); results come back as they complete. ``nprocs``
> 1 on one machine runs a ``concurrent.futures`` pool of spawned processes (no scheduler, no
sockets: the Dask LocalCluster used before cost about 6 CPU-s more per run of 4
participants; ``IRONMAP_LOCAL_EXECUTOR=dask`` still selects it). Workers get one
ITK/OpenMP/BLAS thread each (set in their environment before ``ants`` or numpy is imported),
so ``n`` workers use about ``n`` cores and ITK registration stays reproducible. With Dask,
anything that listens binds to 127.0.0.1 on a free port (the HTTP/dashboard ports too:
``None`` would still try port 8787 first). A rich progress bar is shown on a terminal;
otherwise one log line per finished task.

:func:`process_pool` is the one local process pool of the steps that are not participant
tasks (the simulation, the report's pages, the demo's automatic anatomy check): spawned
workers, their log records relayed to this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
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

    Parameters
    ----------
    force : bool, optional
        Overwrite values the user set.

    Returns
    -------
    dict of str to str
        The resulting environment values of :data:`WORKER_ENV`'s keys.
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
        1 = run serially in this process; more = this many spawned worker processes (one
        thread per library each; a Dask LocalCluster with ``IRONMAP_LOCAL_EXECUTOR=dask``).
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:port``); overrides ``nprocs``.
    progress : bool, optional
        Rich progress bar; default: when stderr is a terminal.

    Returns
    -------
    list
        One result per item, in input order (an exception for a task that raised or a worker
        that died).
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
    if scheduler is None and os.environ.get(LOCAL_EXECUTOR_ENV, "processes") != "dask":
        yield from _pool_completed(func, items, nprocs)
        return
    yield from _dask_completed(func, items, labels, nprocs, scheduler)


#: ``dask`` makes ``nprocs > 1`` use a Dask LocalCluster instead of the process pool
LOCAL_EXECUTOR_ENV = "IRONMAP_LOCAL_EXECUTOR"


@contextlib.contextmanager
def worker_environment() -> Iterator[dict[str, str]]:
    """:data:`WORKER_ENV` in ``os.environ`` inside the block (restored after it).

    Spawned worker processes copy the environment when they start, before they import numpy
    or ANTs, so every worker of a pool started in the block runs with one thread per library.

    Yields
    ------
    dict of str to str
        The values set.
    """
    before = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield dict(WORKER_ENV)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_STARTED = None  # in a pool worker: the queue that tells the parent which tasks started


def _pool_init(started) -> None:
    global _STARTED
    _STARTED = started


def _pool_task(func, item, index):
    _STARTED.put(index)
    return _call(func, item)


def _pool_round(func, items, todo, nprocs, began: set[int]) -> Iterator[tuple[int, bool, Any]]:
    """One spawned process pool over the tasks ``todo``.

    Yields ``(index, broken, result)``; ``broken`` is True when the pool broke before the task
    finished (a worker process died). The indices of the tasks that started are added to
    ``began`` when the pool has shut down.
    """
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    # spawned, not forked: the parent may hold threads (progress, logging); the workers' log
    # records reach this process's handlers as in a serial run
    started = mp.get_context(POOL_START).SimpleQueue()
    try:
        with worker_environment(), process_pool(
                min(nprocs, len(todo)), initializer=_pool_init, initargs=(started,)) as pool:
            futures = {pool.submit(_pool_task, func, items[i], i): i for i in todo}
            for fut in cf.as_completed(futures):
                exc = fut.exception()
                broken = isinstance(exc, BrokenProcessPool)
                yield futures[fut], broken, (fut.result() if exc is None else exc)
        while not started.empty():
            began.add(started.get())
    finally:
        started.close()


def _pool_completed(func, items, nprocs) -> Iterator[tuple[int, Any]]:
    """Run the tasks in ``nprocs`` spawned worker processes (one thread per library each).

    A worker that dies (killed, out of memory, a crash in compiled code) breaks the pool: each
    task that had started then is run again alone in a fresh process, and one whose process
    dies again gets the error as its result; the tasks that had not started go to a fresh
    pool. Results already returned are kept.
    """
    todo = list(range(len(items)))
    while todo:
        broken: dict[int, BaseException] = {}
        began: set[int] = set()
        for i, failed, result in _pool_round(func, items, todo, nprocs, began):
            if failed:
                broken[i] = result
            else:
                yield i, result
        todo = [i for i in broken if i not in began]
        for i in sorted(set(broken) & began):
            log.warning("a worker process died while task %d ran; running it again alone", i)
            for _, _failed, result in _pool_round(func, items, [i], 1, set()):
                yield i, result


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


#: how :func:`process_pool` starts its workers: a fresh interpreter ("spawn"), never a fork of
#: this process (a fork of a process with threads - ITK, Dask, a pool's own manager thread, a
#: test runner - can inherit a lock another thread held and hang for ever)
POOL_START = "spawn"


class ProcessPool(ProcessPoolExecutor):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose workers are started by ``start``.

    With a start method other than ``fork`` a worker inherits no logging set-up, so each
    worker sends its log records to this process (a queue read by a listener thread here),
    where they go through the same loggers and handlers as this process's own records; the
    workers' logger levels are this process's. :func:`process_pool` makes one.

    Parameters
    ----------
    max_workers : int
        Worker processes.
    start : {"spawn", "forkserver", "fork"}, optional
        The multiprocessing start method.
    forward_logs : bool, optional
        Send the workers' log records here (ignored for ``fork``, which inherits the handlers).
    initializer : callable, optional
        Called with ``initargs`` at each worker's start (after its log set-up).
    initargs : tuple, optional
        Arguments of ``initializer``.
    """

    def __init__(self, max_workers: int, start: str = POOL_START, forward_logs: bool = True,
                 initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        import multiprocessing

        ctx = multiprocessing.get_context(start)
        self._listener = None
        logs = None
        if forward_logs and start != "fork":
            from logging.handlers import QueueListener

            queue = ctx.Queue()
            self._listener = QueueListener(queue, _Relay())
            self._listener.start()
            logs = (queue, _logger_levels())
        super().__init__(max_workers=max_workers, mp_context=ctx, initializer=_worker_start,
                         initargs=(logs, initializer, initargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the workers down, then stop relaying their log records.

        Parameters
        ----------
        wait : bool, optional
            Wait for running tasks and the workers' exit.
        cancel_futures : bool, optional
            Cancel the tasks not yet started.
        """
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._listener is not None:
            self._listener.stop()  # handles what is queued, then ends its thread
            self._listener = None


def process_pool(max_workers: int, *, start: str = POOL_START, forward_logs: bool = True,
                 initializer: Callable[..., None] | None = None,
                 initargs: tuple = ()) -> ProcessPool:
    """The process pool of ironmap's parallel steps (simulation, report pages, demo check).

    Parameters
    ----------
    max_workers : int
        Worker processes.
    start : {"spawn", "forkserver", "fork"}, optional
        Start method; default :data:`POOL_START` (``spawn``: see docs/performance.md for
        what it costs against ``fork``).
    forward_logs : bool, optional
        Send the workers' log records to this process's handlers.
    initializer : callable, optional
        Called with ``initargs`` at each worker's start.
    initargs : tuple, optional
        Arguments of ``initializer``.

    Returns
    -------
    ProcessPool
        Use it as a context manager (``with process_pool(2) as pool: ...``).
    """
    return ProcessPool(max_workers, start=start, forward_logs=forward_logs,
                       initializer=initializer, initargs=initargs)


class _Relay(logging.Handler):
    """Hands a worker's record to the logger of the same name in this process."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        logging.getLogger(record.name).handle(record)
        return True


def _logger_levels() -> dict[str, int]:
    """The levels set on this process's loggers (root as ``""``)."""
    levels = {"": logging.getLogger().level}
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _worker_start(logs, initializer, initargs) -> None:
    """Worker start: its log records to the parent (``logs``), then the caller's initializer."""
    if logs is not None:
        _log_to_queue(*logs)
    if initializer is not None:
        initializer(*initargs)


def _log_to_queue(queue, levels: dict[str, int]) -> None:
    """Worker start: log to ``queue`` only, at the parent's levels."""
    from logging.handlers import QueueHandler

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(QueueHandler(queue))
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def estimate_remaining(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left, from the pace of the items completed so far (None before the first).

    ``elapsed / done`` is the time per completed item at the concurrency actually reached
    (with n workers it already counts n items finishing in parallel), so the estimate is
    ``elapsed / done * (total - done)``; it is not a fixed guess per item.

    Parameters
    ----------
    elapsed : float
        Seconds since the start.
    done : int
        Items completed.
    total : int
        All items.

    Returns
    -------
    float or None
        Seconds left; None before the first item completes.
    """
    if done <= 0:
        return None
    return elapsed / done * max(total - done, 0)


def format_duration(seconds: float | None) -> str:
    """A duration for humans.

    Parameters
    ----------
    seconds : float or None
        The duration.

    Returns
    -------
    str
        ``"1 h 02 min"``, ``"4 min 05 s"``, ``"12 s"``; ``"estimating..."`` for None.
    """
    if seconds is None:
        return "estimating..."
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class Progress:
    """Progress of ``total`` items: a rich bar on a terminal, else one log line per item.

    Each line or bar update gives the elapsed time and an estimate of the time left from the
    completed items' pace (:func:`estimate_remaining`).

    Parameters
    ----------
    total : int
    what : str
        Name of the items ("participants", "subjects", "pages").
    bar : bool or None
        Rich bar; default: when stderr is a terminal.
    logger : logging.Logger, optional
        Where the plain lines go (default: this module's).
    """

    def __init__(self, total: int, what: str = "items", bar: bool | None = None,
                 logger: logging.Logger | None = None):
        self.total, self.what, self.n = total, what, 0
        self.bar = sys.stderr.isatty() if bar is None else bar
        self.log = logger or log
        self.start = time.monotonic()
        self._progress = None

    def __enter__(self) -> Progress:
        if self.bar and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"), TextColumn("{task.description}"),
                transient=False)
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total,
                                                 left=format_duration(None))
        return self

    def done(self, label: str, status: str = "done") -> None:
        """One more item finished.

        Parameters
        ----------
        label : str
            The item (shown on the bar or logged).
        status : str, optional
            How it ended.
        """
        self.n += 1
        elapsed = time.monotonic() - self.start
        left = format_duration(estimate_remaining(elapsed, self.n, self.total))
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=f"{label} {status}",
                                  left=f"about {left} left" if self.n < self.total else "")
        elif self.n < self.total:
            self.log.info("[%d/%d] %s %s (%.1f s elapsed, about %s left)", self.n, self.total,
                          label, status, elapsed, left)
        else:
            self.log.info("[%d/%d] %s %s (%.1f s elapsed, all done)", self.n, self.total,
                          label, status, elapsed)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


class _Reporter(Progress):
    """Participant progress: the status of a task's result record."""

    def __init__(self, total: int, bar: bool):
        super().__init__(total, "participants", bar)

    def done(self, label: str, result: Any) -> None:  # type: ignore[override]
        status = getattr(result, "status", None) or (
            result.get("status") if isinstance(result, dict) else None) or (
            "failed" if isinstance(result, BaseException) else "done")
        super().done(label, status)
