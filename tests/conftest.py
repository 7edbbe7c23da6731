"""The shared test vocabulary: one ``Backend`` per library and mode, and fixtures.

A behaviour test is written once against ``backend`` and runs on every installed
library: NumPy (writeable and read-only), array-api-strict (CPU and an extra device),
torch (CPU and ``meta``), sparse, JAX (eager and inside ``jax.jit``) and Dask, with
CuPy and CUDA torch on GPU machines. A library that is not installed is a skip with
the reason; ``skip_backend``/``xfail_backend`` markers name deliberate exclusions.

``backend.call(f, *arrays, **static)`` runs ``f`` the way the backend's users would:
inside ``jax.jit`` for ``JAX_JIT`` (statics closed over), and for Dask it asserts that
nothing was computed while ``f`` built the graph.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


class Backend(enum.Enum):
    NUMPY = "numpy"
    NUMPY_READONLY = "numpy_readonly"
    ARRAY_API_STRICT = "array_api_strict"
    ARRAY_API_STRICT_DEVICE1 = "array_api_strict_device1"
    TORCH = "torch"
    TORCH_META = "torch_meta"
    SPARSE = "sparse"
    JAX = "jax"
    JAX_JIT = "jax_jit"
    DASK = "dask"
    CUPY = "cupy"
    TORCH_CUDA = "torch_cuda"

    def __str__(self) -> str:
        return self.value

    # ------------------------------------------------------------ what it needs
    @property
    def module(self) -> str:
        return {
            "numpy_readonly": "numpy",
            "array_api_strict_device1": "array_api_strict",
            "torch_meta": "torch",
            "torch_cuda": "torch",
            "jax_jit": "jax",
        }.get(self.value, self.value)

    @property
    def gpu(self) -> bool:
        return self in (Backend.CUPY, Backend.TORCH_CUDA)

    @property
    def is_lazy(self) -> bool:
        """The kernel does not run during the call (it runs later, or in a callback)."""
        return self in (Backend.DASK, Backend.JAX_JIT)

    @property
    def has_values(self) -> bool:
        """Results can be compared by value (not on torch's ``meta`` device)."""
        return self is not Backend.TORCH_META

    @property
    def converts_to_numpy(self) -> bool:
        """``as_numpy=True`` is allowed (the library converts implicitly)."""
        return self not in (
            Backend.SPARSE,
            Backend.TORCH_META,
            Backend.ARRAY_API_STRICT_DEVICE1,
            Backend.CUPY,
            Backend.TORCH_CUDA,
        )

    def skip_reason(self) -> str | None:
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed"
        if self.gpu and not _cuda_available():
            return "needs a CUDA GPU"
        if self is Backend.DASK and importlib.util.find_spec("dask.array") is None:
            return "dask.array is not installed"
        return None

    # ------------------------------------------------------------ arrays
    @property
    def xp(self) -> Any:
        """The array-API namespace a user of this backend would use."""
        import array_api_compat

        return array_api_compat.array_namespace(self.asarray(np.zeros(1)))

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A backend array holding the values of NumPy array ``a``."""
        a = np.asarray(a, dtype=dtype)
        if self is Backend.NUMPY:
            return a.copy()
        if self is Backend.NUMPY_READONLY:
            a = a.copy()
            a.flags.writeable = False
            return a
        if self in (Backend.ARRAY_API_STRICT, Backend.ARRAY_API_STRICT_DEVICE1):
            import array_api_strict as xs

            out = xs.asarray(a.copy())
            if self is Backend.ARRAY_API_STRICT_DEVICE1:
                out = xs.asarray(out, device=xs.Device("device1"))
            return out
        if self.module == "torch":
            import torch

            device = {"torch_meta": "meta", "torch_cuda": "cuda"}.get(self.value, "cpu")
            return torch.asarray(a.copy(), device=device)
        if self is Backend.SPARSE:
            import sparse

            return sparse.COO.from_numpy(a)
        if self.module == "jax":
            import jax.numpy as jnp

            return jnp.asarray(a)
        if self is Backend.DASK:
            import dask.array as da

            chunks = tuple(max(1, (s + 1) // 2) for s in a.shape) or ()
            return da.from_array(a.copy(), chunks=chunks)
        if self is Backend.CUPY:
            import cupy

            return cupy.asarray(a)
        raise AssertionError(self)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Materialise a result as NumPy, for comparing values."""
        if self is Backend.DASK:
            x = x.compute()
        mod = type(x).__module__
        if mod.startswith("torch"):
            return x.detach().cpu().numpy()
        if mod.startswith("sparse"):
            return x.todense()
        if mod.startswith("array_api_strict"):
            import array_api_strict as xs

            return np.asarray(xs.asarray(x, device=xs.Device("CPU_DEVICE")))
        if mod.startswith("cupy"):
            return x.get()
        if hasattr(x, "todense") and not isinstance(x, np.ndarray):
            return x.todense()
        return np.asarray(x)

    def call(self, f: Callable[..., Any], *args: Any, **static: Any) -> Any:
        """Run ``f(*args, **static)`` as this backend's users would.

        ``JAX_JIT``: inside ``jax.jit`` with ``static`` closed over. ``DASK``: asserts
        that building the graph computed nothing.
        """
        if self is Backend.JAX_JIT:
            import jax

            return jax.jit(functools.partial(f, **static))(*args)
        if self is Backend.DASK:
            with count_dask_computes() as counter:
                out = f(*args, **static)
            assert counter.count == 0, (
                f"Dask computed {counter.count} time(s) in the call"
            )
            return out
        return f(*args, **static)

    def pytest_param(self) -> Any:
        marks = [pytest.mark.gpu] if self.gpu else []
        return pytest.param(self, id=self.value, marks=marks)


@functools.cache
def _cuda_available() -> bool:
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            return bool(cupy.cuda.runtime.getDeviceCount())
        except Exception:
            return False
    if importlib.util.find_spec("torch") is not None:
        import torch

        return bool(torch.cuda.is_available())
    return False


class _ComputeCounter:
    def __init__(self) -> None:
        self.count = 0


class count_dask_computes:  # lower case: used as a context manager, like a function
    """Count every Dask graph execution inside the block (any scheduler call)."""

    def __enter__(self) -> _ComputeCounter:
        import dask

        counter = _ComputeCounter()

        def scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return dask.get(dsk, keys, **kwargs)

        self._cfg = dask.config.set(scheduler=scheduler)
        self._cfg.__enter__()
        return counter

    def __exit__(self, *exc: object) -> None:
        self._cfg.__exit__(None, None, None)


ALL_BACKENDS = list(Backend)


def _apply_markers(request: pytest.FixtureRequest, elem: Backend) -> None:
    for marker in request.node.iter_markers("skip_backend"):
        if elem in marker.args:
            pytest.skip(f"{elem}: {marker.kwargs.get('reason', 'skipped')}")
    for marker in request.node.iter_markers("xfail_backend"):
        if elem in marker.args:
            request.applymarker(
                pytest.mark.xfail(
                    reason=f"{elem}: {marker.kwargs['reason']}",
                    strict=marker.kwargs.get("strict", True),
                )
            )


@pytest.fixture(params=[b.pytest_param() for b in Backend])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend and mode; skipped with the reason where it is not installed."""
    elem: Backend = request.param
    reason = elem.skip_reason()
    if reason is not None:
        pytest.skip(f"{elem}: {reason}")
    _apply_markers(request, elem)
    return elem


@pytest.fixture
def xp(backend: Backend) -> Any:
    """The backend's array namespace."""
    return backend.xp


@pytest.fixture(scope="session")
def dask_cluster() -> Any:
    """A real ``dask.distributed`` cluster: two worker processes on loopback.

    The dashboard is off; the scheduler's own health/metrics HTTP server still binds a
    port (distributed always starts it, trying 8787 first), so the "port in use"
    warning that a second xdist worker gets is expected and silenced here.
    """
    import warnings

    distributed = pytest.importorskip(
        "distributed", reason="distributed is not installed"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def client(dask_cluster: Any) -> Any:
    """A client of the shared cluster, the default scheduler only inside the test."""
    import distributed

    with distributed.Client(dask_cluster) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "skip_backend(*backends, reason): skip these backends, with a reason"
    )
    config.addinivalue_line(
        "markers", "xfail_backend(*backends, reason, strict=True): expected failure"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (CuPy or CUDA torch)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
