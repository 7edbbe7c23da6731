"""One path of ``lazyapply.testing.PATHS`` on one backend: the ``path`` fixture's value.

A behaviour written once over ``path`` runs through every way lazyapply runs a kernel
(eager, ``as_numpy``, the Dask modes, ``jax.jit`` callback and native, ``jax.vmap``,
torch autograd, ``torch.compile``) on every backend each takes; a new path added to
the matrix is covered here without a new test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lazyapply.testing import PATHS, Backend, Path, to_numpy

__all__ = ["PATH_PARAMS", "PathCase", "assert_close"]


@dataclass(frozen=True)
class PathCase:
    """``path`` on ``backend``: declare a kernel for it, run it, compare with NumPy."""

    path: Path
    backend: Backend

    def __str__(self) -> str:
        return f"{self.path.name} on {self.backend}"

    def declare(
        self,
        f: Callable[..., Any],
        /,
        *,
        numba: Callable[..., Any] | None = None,
        vjp: Callable[..., Any] | None = None,
        inputs: int = 1,
        outputs: int = 1,
        **options: Any,
    ) -> Any:
        """``f`` declared for this path (its Numba twin on the native path).

        ``inputs`` and ``outputs`` count the kernel's arrays, for the gufunc
        signature of the Dask signature path. Skips, with the reason, where the path
        cannot take the kernel.
        """
        if "signature" in self.path.options:
            core = ["(n)"] * inputs, ["(n)"] * outputs
            options["signature"] = f"{','.join(core[0])}->{','.join(core[1])}"
        if self.path.name == "jax jit native":
            if numba is None:
                pytest.skip(f"{self}: this kernel has no Numba twin")
            f = numba
        if vjp is not None:
            options["vjp"] = vjp
        kernel = self.path.declare(f, **options)
        reason = self.path.skip_reason(self.backend, kernel)
        if reason is not None:
            pytest.skip(f"{self}: {reason}")
        return kernel

    def run(self, kernel: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``kernel`` through the path on this backend's copies of ``args``.

        NumPy arrays in ``args`` become the backend's arrays; the rest is passed as
        it is. Lazy paths assert that nothing ran during the call; the native path
        asserts that the kernel took it.
        """
        arrays = self.path.arrays(self.backend, args)
        out = self.path.call(kernel, self.backend, *arrays, **kwargs)
        taken = self.path.taken(kernel)
        assert taken is None, f"{self}: the kernel took another path: {taken}"
        return out

    def values(self, out: Any) -> list[np.ndarray]:
        """The outputs' values (one list item per output); a skip on ``meta``."""
        items = list(out) if isinstance(out, (tuple, list)) else [out]
        if self.backend is Backend.DASK:
            import dask

            items = list(dask.compute(*items))  # one graph: shared keys would show
        return [self.backend.values_or_skip(o) for o in items]

    def expect(self, out: Any, *reference: np.ndarray) -> None:
        """``out`` holds ``reference`` (eager NumPy's outputs): count, dtype, values."""
        expected = self.path.expected(tuple(np.asarray(r) for r in reference))
        items = list(out) if isinstance(out, (tuple, list)) else [out]
        assert len(items) == len(expected), f"{self}: {len(items)} outputs"
        for item, ref in zip(items, expected, strict=True):
            assert item.dtype == _stored(self.backend, ref.dtype), (str(self), item)
            assert tuple(item.shape) == ref.shape, (str(self), item.shape)
        for got, ref in zip(self.values(out), expected, strict=True):
            assert_close(got, ref, str(self))


def assert_close(got: np.ndarray, ref: np.ndarray, where: str) -> None:
    """Equal values; within float32's rounding where the backend stores float32.

    JAX without x64 computes in float32 what NumPy computes in float64.
    """
    if got.dtype == np.float32 and ref.dtype != np.float32:
        np.testing.assert_allclose(
            got, ref.astype(np.float32), rtol=1e-5, err_msg=where
        )
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0, err_msg=where)


def _stored(backend: Backend, dtype: np.dtype[Any]) -> Any:
    # How the backend stores a NumPy dtype (JAX without x64: float64 as float32).
    maker = Backend.JAX if backend is Backend.JAX_JIT else backend
    return maker.asarray(np.empty((0,), dtype)).dtype


def _param(path: Path, backend: Backend) -> Any:
    marks = [pytest.mark.gpu] if backend.gpu else []
    if path.slow:
        marks.append(pytest.mark.slow)
    case = PathCase(path, backend)
    return pytest.param(
        case, id=f"{path.name.replace(' ', '_')}-{backend}", marks=marks
    )


#: Every (path, backend) pair of the matrix, as pytest params.
PATH_PARAMS = [_param(p, b) for p in PATHS for b in p.backends]


def numpy_values(out: Any) -> list[np.ndarray]:
    """Eager NumPy results as a list of arrays."""
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    return [to_numpy(o) for o in items]
