"""On-disk cache of static derived arrays (the same on every run, like numba's kernel cache).

Some products are derived from installed data only - the ICBM152 template resampled to 2 mm,
the template-built head of ``ironmap simulate --anatomy template`` - and are identical on
every run, yet cost seconds to compute. They are kept here, in a user cache folder:

* ``$IRONMAP_CACHE_DIR`` when set (an empty value turns the cache off);
* else ``$XDG_CACHE_HOME/ironmap``;
* else ``~/.cache/ironmap``.

An entry is one uncompressed ``.npz`` file named by its kind and a key, the hash of
everything the product is computed from (the input files' bytes, the versions, the source
of the code that computes it: :func:`content_key`). It stores the key and a digest of its
arrays and is used only when both match; anything else (missing, truncated, corrupt, another
key) counts as absent and the product is computed again. Entries are written atomically; an
unwritable cache folder only means recomputing. Per-run results (a participant's images,
registrations) never go here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ironmap.io.atomic import atomic_path

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder (empty: no cache).
CACHE_ENV = "IRONMAP_CACHE_DIR"
_KEY = "__key__"
_DIGEST = "__digest__"


def cache_dir() -> Path | None:
    """The cache folder (not created here), or None when the cache is turned off.

    Returns
    -------
    pathlib.Path or None
        ``$IRONMAP_CACHE_DIR``, ``$XDG_CACHE_HOME/ironmap`` or ``~/.cache/ironmap``; None
        when ``IRONMAP_CACHE_DIR`` is set but empty.
    """
    own = os.environ.get(CACHE_ENV)
    if own is not None:
        return Path(own).expanduser() if own.strip() else None
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ironmap"


def content_key(parts: Iterable[object]) -> str:
    """Hash of the inputs of a cached product.

    Parameters
    ----------
    parts : iterable
        Strings (versions, settings, source code) and paths: a file contributes its bytes, a
        folder every file below it (relative name and bytes, in name order), a path that does
        not exist its name only.

    Returns
    -------
    str
        Hex digest (64 characters).
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(b"path\0")
            if part.is_dir():
                files = sorted(p for p in part.rglob("*") if p.is_file())
                for f in files:
                    h.update(f.relative_to(part).as_posix().encode() + b"\0")
                    h.update(f.read_bytes())
            elif part.is_file():
                h.update(part.read_bytes())
            else:
                h.update(b"missing\0" + str(part).encode())
        else:
            h.update(b"text\0" + str(part).encode("utf-8") + b"\0")
    return h.hexdigest()


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=32)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.hexdigest()


def entry_path(kind: str, key: str) -> Path | None:
    """Where the entry of ``kind`` with ``key`` lives (None: cache off).

    Parameters
    ----------
    kind : str
        Name of the product (a file-name part).
    key : str
        :func:`content_key` of its inputs.

    Returns
    -------
    pathlib.Path or None
        ``CACHE_DIR/<kind>-<first 24 hex digits of key>.npz``.
    """
    folder = cache_dir()
    return None if folder is None else folder / f"{kind}-{key[:24]}.npz"


def load_arrays(kind: str, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``kind`` for ``key``, or None when absent or not valid.

    Parameters
    ----------
    kind : str
        Name of the product.
    key : str
        :func:`content_key` of its inputs.

    Returns
    -------
    dict of str to ndarray or None
        The arrays as stored; None when there is no entry, the cache is off, or the entry
        is unreadable, holds another key or fails its digest (then it is removed).
    """
    path = entry_path(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        stored_key, stored = str(arrays.pop(_KEY)), str(arrays.pop(_DIGEST))
        if stored_key != key or stored != _digest(arrays):
            raise ValueError("key or digest does not match")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("cache entry %s is not valid (%s): computing it again", path, exc)
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return arrays


def save_arrays(kind: str, key: str, arrays: Mapping[str, np.ndarray]) -> Path | None:
    """Store ``arrays`` as the entry of ``kind`` for ``key`` (atomically).

    Parameters
    ----------
    kind : str
        Name of the product.
    key : str
        :func:`content_key` of its inputs.
    arrays : mapping of str to ndarray
        The product (names must not start with two underscores).

    Returns
    -------
    pathlib.Path or None
        The entry, or None when the cache is off or the folder is not writable (logged).
    """
    path = entry_path(kind, key)
    if path is None:
        return None
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    payload = {**arrays, _KEY: np.asarray(key), _DIGEST: np.asarray(_digest(arrays))}
    try:
        with atomic_path(path) as tmp:
            np.savez(tmp, **payload)
    except OSError as exc:
        log.info("cache folder %s not writable (%s): not cached", path.parent, exc)
        return None
    return path
