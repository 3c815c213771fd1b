"""Scratch folders inside the output, named by their owner, cleaned even after a crash.

A conversion may hold identifying data (decompressed DICOM, dcm2niix sidecars). In the system
temp folder such files outlive a run killed with SIGKILL; here they live inside the output
(``<parent>/.ironmap-work/<host>-<pid>-<random>``), are removed when the ``with`` block ends
(normally, on an exception, on SIGTERM when the command line installed its handler), and a
folder left by a dead process on this host is removed by the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["SCRATCH_NAME", "scratch_dir"]

SCRATCH_NAME = ".ironmap-work"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(root: Path, host: str) -> None:
    for folder in root.glob(f"{host}-*-*"):
        pid = folder.name[len(host) + 1:].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.warning("%s: removing the scratch folder of a run that ended without cleaning "
                        "up (pid %s)", folder, pid)
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(parent: str | os.PathLike) -> Iterator[Path]:
    """A private folder under ``parent/.ironmap-work``, removed when the block ends.

    Folders left by runs on this host that died are removed first.

    Parameters
    ----------
    parent : path-like
        Where the scratch space lives (e.g. ``--work-dir`` or OUTPUT_DIR).

    Yields
    ------
    pathlib.Path
        A folder of this process only.
    """
    root = Path(parent) / SCRATCH_NAME
    made_parent = not Path(parent).exists()
    root.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    _remove_orphans(root, host)
    path = Path(tempfile.mkdtemp(prefix=f"{host}-{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()  # only when no other run uses it
            if made_parent:
                Path(parent).rmdir()  # only when nothing was written into it
