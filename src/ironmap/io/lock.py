"""One run at a time per OUTPUT_DIR: an OS file lock plus a sidecar naming its holder.

The lock is :class:`filelock.FileLock` (``fcntl.flock`` on POSIX): the operating system
releases it when the holding process ends, however it ends (SIGKILL, out of memory, power
loss of a client on a local disk), so a crashed run never blocks the next one. The sidecar
``.ironmap.lock.json`` records who holds it (pid, host, start time, command) for the message a
second run prints; a sidecar found when the lock is free was left by a run that died, and its
scratch folders (named by the caller) are removed before the new run starts.

Network file systems without ``flock`` support make :mod:`filelock` fall back to a marker
file; there a killed run's lock has to be removed by hand (the message says which file).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ironmap.io.atomic import write_json
from ironmap.io.layout import output_path, relative_path

log = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "AlreadyRunningError", "output_lock", "lock_holder"]

LOCK_NAME = relative_path("lock")


class AlreadyRunningError(RuntimeError):
    """Another run holds the lock of this OUTPUT_DIR."""


def _info_path(output_dir: Path) -> Path:
    return output_path(output_dir, "lock_info")


def lock_holder(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The holder recorded beside the lock of an OUTPUT_DIR.

    Parameters
    ----------
    output_dir : path-like
        OUTPUT_DIR.

    Returns
    -------
    dict
        ``pid``, ``host``, ``since`` and ``command`` of the run holding the lock; ``{}`` when
        none is recorded or the record is unreadable.
    """
    try:
        info = json.loads(_info_path(Path(output_dir)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')}, host {info.get('host', '?')}, "
            f"since {info.get('since', '?')}")


@contextlib.contextmanager
def output_lock(output_dir: str | os.PathLike, command: str = "",
                scratch: Iterable[str] = ()) -> Iterator[dict[str, Any]]:
    """Hold the OUTPUT_DIR lock for the duration of the ``with`` block.

    Parameters
    ----------
    output_dir : path
        Created when absent.
    command : str
        Recorded in the sidecar (shown to a second run).
    scratch : iterable of str
        Folder names inside ``output_dir`` that only the lock holder uses; removed when the
        lock is released and when it is recovered from a run that died.

    Yields
    ------
    dict
        The holder record of a dead run whose lock was recovered, else ``{}``.

    Raises
    ------
    AlreadyRunningError
        When another live process holds the lock; the message names its pid, host and start.
    """
    out = Path(output_dir)
    scratch = tuple(scratch)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK_NAME, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise AlreadyRunningError(
            f"{out}: another ironmap run is already running ({_describe(lock_holder(out))}); "
            "wait for it to finish or choose another OUTPUT_DIR") from None
    try:
        stale = lock_holder(out)
        if stale:
            log.warning("%s: recovered the lock of a run that ended without releasing it (%s); "
                        "its unfinished scratch files are removed", out, _describe(stale))
            for name in scratch:
                shutil.rmtree(out / name, ignore_errors=True)
        write_json(_info_path(out), {
            "pid": os.getpid(), "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": command})
        yield stale
    finally:
        for name in scratch:  # whatever the run left there (SIGTERM, an exception)
            shutil.rmtree(out / name, ignore_errors=True)
        _info_path(out).unlink(missing_ok=True)
        lock.release()
