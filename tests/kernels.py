"""Module-level decorated kernels: importable by Dask worker processes and by pickle.

Kept free of test-only imports so that a worker can import ``tests.kernels`` quickly.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lazyapply import lazy


@lazy
def scaled_sum(x: Any, y: Any, *, scale: float = 1.0) -> Any:
    """(x + y) * scale, written with operators every namespace has."""
    return (x + y) * scale


@lazy(shape=lambda x: (x.shape[0] - 1,), as_numpy=True)
def steps(x: np.ndarray) -> np.ndarray:
    """Differences of neighbours: one element fewer than the input."""
    return np.diff(x)


@lazy(shape=lambda x: x.shape, dtype="int64", as_numpy=True)
def worker_pid(x: np.ndarray) -> np.ndarray:
    """The id of the process that ran the kernel, in every element."""
    return np.full(x.shape, os.getpid(), dtype=np.int64)


class Scaler:
    """A class whose method is a lazy kernel; ``self`` is not an array."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    @lazy(dtype=lambda self, x: x.dtype)
    def apply(self, x: Any) -> Any:
        """x * factor."""
        return x * self.factor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scaler) and other.factor == self.factor

    def __hash__(self) -> int:
        return hash(self.factor)

    def __repr__(self) -> str:
        return f"Scaler({self.factor})"


try:
    import numba
except ImportError:  # pragma: no cover - numba is a test dependency
    running_max = None
else:

    @lazy(as_numpy=True)
    @numba.njit(cache=False)
    def running_max(x: np.ndarray) -> np.ndarray:
        """Running maximum along the last axis, with an explicit loop (Numba)."""
        out = np.empty_like(x)
        flat_in = x.reshape(-1, x.shape[-1])
        flat_out = out.reshape(-1, x.shape[-1])
        for i in range(flat_in.shape[0]):
            best = flat_in[i, 0]
            for j in range(flat_in.shape[1]):
                best = max(best, flat_in[i, j])
                flat_out[i, j] = best
        return out


def _square_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
    return 2 * x * gg[0], None, 2 * g * gg[0]


@lazy(as_numpy=True, elementwise=True, vjp=_square_vjp_vjp)
def square_vjp(g: Any, out: Any, x: Any) -> Any:
    """The vjp of :func:`square`, a lazy function with its own vjp."""
    return (2 * x * g,)


@lazy(as_numpy=True, elementwise=True, vjp=square_vjp)
def square(x: Any) -> Any:
    """x * x, differentiable twice."""
    return x * x
