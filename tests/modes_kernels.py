"""Module-level kernels for the chunk-wise mode tests.

Worker processes of a ``dask.distributed`` cluster import kernels by reference, so the
kernels that run there live in an importable module rather than inside a test. The
NumPy versions are array-API generic (they run on every backend); the Numba ones are
compiled lazily, on first call, in whichever process calls them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _xp(a: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(a)


def scale_add(a: Any, b: Any) -> Any:
    """Elementwise: ``2 * a + b`` (broadcasting)."""
    return a * 2 + b


def dot_last(a: Any, b: Any) -> Any:
    """Signature ``(n),(n)->()``: inner product along the last axis."""
    return _xp(a).sum(a * b, axis=-1)


def min_max(a: Any) -> tuple[Any, Any]:
    """Signature ``(n)->(),()``: two outputs from one pass."""
    xp = _xp(a)
    return xp.min(a, axis=-1), xp.max(a, axis=-1)


def min_max_stacked(a: Any) -> Any:
    """Signature ``(n)->(k)`` with ``k = 2``: a new core dimension."""
    xp = _xp(a)
    return xp.stack([xp.min(a, axis=-1), xp.max(a, axis=-1)], axis=-1)


def smooth0(a: Any) -> Any:
    """A 3-point moving average along axis 0; the two edge rows are kept as they are.

    The kernel's own edge handling is part of its result: with ``depth={0: 1}`` and no
    boundary, Dask's result must match the eager one, edge rows included.
    """
    xp = _xp(a)
    inner = (a[:-2, ...] + a[1:-1, ...] + a[2:, ...]) / 3
    return xp.concat([a[:1, ...] * 1.0, inner, a[-1:, ...] * 1.0], axis=0)


def laplace_edge(a: np.ndarray) -> np.ndarray:
    """A 5-point Laplacian whose own edge handling replicates the edge values."""
    p = np.pad(a, 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * a


def laplace_raw(a: np.ndarray) -> np.ndarray:
    """A 5-point Laplacian without edge handling: the edge values are left as zero."""
    out = np.zeros_like(a)
    out[1:-1, 1:-1] = (
        a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1]
    )
    return out


def grad_pair(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two outputs of one stencil: ``np.gradient`` along each axis (own edge rule)."""
    g0, g1 = np.gradient(a)
    return g0, g1


def block_sum_wrong(a: np.ndarray) -> np.ndarray:
    """Claims to be elementwise but returns one row per block (a wrong shape)."""
    return a.sum(axis=0, keepdims=True)


try:
    import numba
except ImportError:  # pragma: no cover - the tests skip with a reason
    numba = None

if numba is not None:

    @numba.njit(cache=False)
    def numba_poly(a: np.ndarray) -> np.ndarray:
        """Elementwise ``a**2 - 3a + 1`` as explicit loops over a 2-D block."""
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                v = a[i, j]
                out[i, j] = v * v - 3.0 * v + 1.0
        return out

    @numba.njit(cache=False)
    def numba_norm(a: np.ndarray) -> np.ndarray:
        """Signature ``(n)->()`` on a 2-D block: the Euclidean norm of each row."""
        out = np.empty(a.shape[0], dtype=a.dtype)
        for i in range(a.shape[0]):
            s = 0.0
            for j in range(a.shape[1]):
                s += a[i, j] * a[i, j]
            out[i] = np.sqrt(s)
        return out

    @numba.njit(cache=False)
    def numba_laplace(a: np.ndarray) -> np.ndarray:
        """The Laplacian of :func:`laplace_edge`, with its edge rule, in loops."""
        n, m = a.shape
        out = np.empty_like(a)
        for i in range(n):
            for j in range(m):
                up = a[max(i - 1, 0), j]
                down = a[min(i + 1, n - 1), j]
                left = a[i, max(j - 1, 0)]
                right = a[i, min(j + 1, m - 1)]
                out[i, j] = up + down + left + right - 4.0 * a[i, j]
        return out


def fill_pid(a: np.ndarray) -> np.ndarray:
    """Elementwise: the id of the process that ran the block (where did it run?)."""
    import os

    return np.full(a.shape, os.getpid(), dtype=np.int64)


try:
    from lazyapply import lazy
except ImportError:  # pragma: no cover - the decorator is another module
    lazy = None

if lazy is not None:

    @lazy(elementwise=True)
    def lazy_scale_add(a: Any, b: Any) -> Any:
        """``@lazy(elementwise=True)``: a decorated kernel, pickled by reference."""
        return a * 2 + b

    @lazy(signature="(n)->(),()")
    def lazy_min_max(a: Any) -> tuple[Any, Any]:
        """``@lazy(signature=...)`` with two outputs."""
        return min_max(a)
