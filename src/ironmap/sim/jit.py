"""numba decorators shared by the simulator's compiled kernels, with a pure-Python fallback.

Without numba, :data:`AVAILABLE` is False, the decorators return the function unchanged and
the callers use their numpy references.
"""

from __future__ import annotations

try:
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is a dependency
    numba = None
    AVAILABLE = False


def compiled(func):
    """Compile ``func`` with numba (cached on disk, no GIL, numpy's error model).

    Parameters
    ----------
    func : callable
        The kernel.

    Returns
    -------
    callable
        The compiled kernel, or ``func`` itself without numba.
    """
    if not AVAILABLE:  # pragma: no cover
        return func
    return numba.njit(cache=True, nogil=True, error_model="numpy")(func)


def inline(func):
    """Compile ``func`` with numba to be inlined into the kernels that call it.

    Parameters
    ----------
    func : callable
        A helper of a kernel.

    Returns
    -------
    callable
        The compiled helper, or ``func`` itself without numba.
    """
    if not AVAILABLE:  # pragma: no cover
        return func
    return numba.njit(inline="always", error_model="numpy")(func)
