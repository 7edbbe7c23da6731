"""The backends vocabulary: one :class:`Backend` per array library and mode.

Nothing here imports a backend at import time: each method imports the library it
needs when it is called, so ``import lazyapply.testing`` stays as light as
``import lazyapply``.
"""

from __future__ import annotations

import enum
import functools
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyapply.testing._laziness import count_dask_computes

__all__ = [
    "Backend",
    "cuda_available",
    "installed_backends",
    "to_numpy",
]

# Backends that are a mode of another library's module (the rest are named after it).
_MODULES = {
    "numpy_readonly": "numpy",
    "array_api_strict_device1": "array_api_strict",
    "torch_meta": "torch",
    "torch_cuda": "torch",
    "jax_jit": "jax",
}
_TORCH_DEVICES = {"torch_meta": "meta", "torch_cuda": "cuda"}


class Backend(enum.Enum):
    """An array library, in one of the modes its users run it in.

    A behaviour written once against a ``Backend`` runs on every library: make the
    inputs with :meth:`asarray`, run the code with :meth:`call`, read results back
    with :meth:`to_numpy`. :meth:`skip_reason` says why a backend cannot run here.

    Attributes
    ----------
    NUMPY, NUMPY_READONLY
        NumPy arrays; read-only ones catch kernels that write into their inputs.
    ARRAY_API_STRICT, ARRAY_API_STRICT_DEVICE1
        array-api-strict on its CPU device and on its extra ``device1``.
    TORCH, TORCH_META, TORCH_CUDA
        PyTorch tensors on the CPU, on the ``meta`` device (shapes and dtypes, no
        values) and on a CUDA GPU.
    SPARSE
        ``sparse.COO`` arrays.
    JAX, JAX_JIT
        JAX arrays, eagerly and inside ``jax.jit``.
    DASK
        Dask arrays of NumPy chunks (two chunks per axis).
    CUPY
        CuPy arrays on a CUDA GPU.
    """

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
        """The top-level module of the library, e.g. ``"torch"`` for ``TORCH_META``."""
        return _MODULES.get(self.value, self.value)

    @property
    def gpu(self) -> bool:
        """Whether the backend needs a CUDA GPU."""
        return self in (Backend.CUPY, Backend.TORCH_CUDA)

    @property
    def is_lazy(self) -> bool:
        """Whether the kernel runs after the call (Dask) or in a callback (jit)."""
        return self in (Backend.DASK, Backend.JAX_JIT)

    @property
    def has_values(self) -> bool:
        """Whether results can be compared by value (not on torch's ``meta``)."""
        return self is not Backend.TORCH_META

    @property
    def converts_to_numpy(self) -> bool:
        """Whether ``as_numpy=True`` is allowed: the library converts implicitly.

        Sparse arrays, ``meta`` and CUDA tensors, CuPy arrays and array-api-strict
        arrays on ``device1`` refuse an implicit conversion to NumPy.
        """
        return self not in (
            Backend.SPARSE,
            Backend.TORCH_META,
            Backend.ARRAY_API_STRICT_DEVICE1,
            Backend.CUPY,
            Backend.TORCH_CUDA,
        )

    def skip_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` if it can.

        Returns
        -------
        str or None
            ``"<module> is not installed"``, ``"needs a CUDA GPU"``, or ``None``.
        """
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed"
        if self.gpu and not cuda_available():
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
        """A backend array holding the values of ``a``.

        Parameters
        ----------
        a : array_like
            The values, as anything ``numpy.asarray`` accepts. Never shared with the
            result: a kernel that writes into its input cannot change ``a``.
        dtype : NumPy dtype, optional
            The dtype of the values before conversion. JAX without x64 stores
            64-bit values in 32 bits, as ``jax.numpy.asarray`` does.

        Returns
        -------
        array
            An array of the backend's library, on its device; for ``DASK``, a Dask
            array of two chunks per axis.
        """
        a = np.array(a, dtype=dtype, copy=True)
        if self is Backend.NUMPY:
            return a
        if self is Backend.NUMPY_READONLY:
            a.flags.writeable = False
            return a
        maker = _MAKERS.get(self.module)
        if maker is None:  # pragma: no cover - every member has a maker
            msg = f"no array maker for backend {self}"
            raise AssertionError(msg)
        return maker(self, a)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Materialise a result of this backend as a NumPy array, to compare values.

        Parameters
        ----------
        x : array
            A result of this backend (Dask arrays are computed).

        Returns
        -------
        numpy.ndarray
            The values, on the host (see :func:`to_numpy`).
        """
        return to_numpy(x)

    def values_or_skip(self, x: Any) -> np.ndarray:
        """The values of a result, to compare; a pytest skip where there are none.

        Put it after the assertions that hold on every backend (shape, dtype, device):
        on ``TORCH_META`` they ran, and the test is then reported as skipped with the
        reason, never as a pass that checked no values.

        Parameters
        ----------
        x : array
            A result of this backend.

        Returns
        -------
        numpy.ndarray
            ``to_numpy(x)``.

        Raises
        ------
        pytest.skip.Exception
            ``TORCH_META``: the ``meta`` device holds shapes and dtypes, no values.
            Imports pytest (only then).
        """
        if not self.has_values:
            import pytest

            pytest.skip(
                f"{self}: the meta device holds no values to compare "
                "(shape and dtype were checked)"
            )
        return to_numpy(x)

    def call(self, f: Callable[..., Any], *args: Any, **static: Any) -> Any:
        """Run ``f(*args, **static)`` the way this backend's users would.

        Parameters
        ----------
        f : callable
            The code under test, e.g. a ``@lazy`` kernel.
        *args : array or scalar
            Traced by ``jax.jit`` for ``JAX_JIT``.
        **static
            Closed over, never traced.

        Returns
        -------
        Any
            What ``f`` returned.

        Raises
        ------
        AssertionError
            ``DASK``: Dask computed something while ``f`` built the graph.

        Notes
        -----
        ``JAX_JIT`` runs ``f`` inside ``jax.jit`` (``static`` closed over). ``DASK``
        counts graph executions with :func:`count_dask_computes`: there must be none.
        The other backends call ``f`` directly.
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
        """This backend as a ``pytest.param``, to parametrise a test over backends.

        Returns
        -------
        pytest.param
            With the backend's value as its id, marked ``gpu`` where it needs one.
            Imports pytest (as :meth:`values_or_skip` does, and nothing else here).
        """
        import pytest

        marks = [pytest.mark.gpu] if self.gpu else []
        return pytest.param(self, id=self.value, marks=marks)


def _strict_array(backend: Backend, a: np.ndarray) -> Any:
    import array_api_strict as xs

    out = xs.asarray(a)
    if backend is Backend.ARRAY_API_STRICT_DEVICE1:
        out = xs.asarray(out, device=xs.Device("device1"))
    return out


def _torch_array(backend: Backend, a: np.ndarray) -> Any:
    import torch

    return torch.asarray(a, device=_TORCH_DEVICES.get(backend.value, "cpu"))


def _sparse_array(backend: Backend, a: np.ndarray) -> Any:
    import sparse

    return sparse.COO.from_numpy(a)


def _jax_array(backend: Backend, a: np.ndarray) -> Any:
    import jax.numpy as jnp

    return jnp.asarray(a)


def _dask_array(backend: Backend, a: np.ndarray) -> Any:
    import dask.array as da

    chunks = tuple(max(1, (s + 1) // 2) for s in a.shape)
    return da.from_array(a, chunks=chunks)  # type: ignore[no-untyped-call]


def _cupy_array(backend: Backend, a: np.ndarray) -> Any:
    return _cupy().asarray(a)


def _cupy() -> Any:
    # By name: the type checkers know no CuPy where it is not installed.
    return importlib.import_module("cupy")


_MAKERS: dict[str, Callable[[Backend, np.ndarray], Any]] = {
    "array_api_strict": _strict_array,
    "torch": _torch_array,
    "sparse": _sparse_array,
    "jax": _jax_array,
    "dask": _dask_array,
    "cupy": _cupy_array,
}


def to_numpy(x: Any) -> np.ndarray:
    """Materialise an array of any supported library as a NumPy array.

    Parameters
    ----------
    x : array
        A NumPy, Dask (computed here), torch (detached, copied to the host), sparse
        (densified), array-api-strict (moved to its CPU device), CuPy (copied to the
        host) or JAX array, or a NumPy scalar.

    Returns
    -------
    numpy.ndarray
        The values, on the host.
    """
    if hasattr(x, "dask") and hasattr(x, "compute"):
        x = x.compute()
    mod = type(x).__module__
    if mod.startswith("torch"):
        return np.asarray(x.detach().cpu().numpy())
    if mod.startswith("array_api_strict"):
        import array_api_strict as xs

        return np.asarray(xs.asarray(x, device=xs.Device("CPU_DEVICE")))
    if mod.startswith("cupy"):
        return np.asarray(x.get())
    if hasattr(x, "todense") and not isinstance(x, np.ndarray):  # sparse
        return np.asarray(x.todense())
    return np.asarray(x)


@functools.cache
def cuda_available() -> bool:
    """Whether a CUDA GPU is usable through CuPy or PyTorch (cached).

    Imports CuPy or torch on the first call, when one is installed.
    """
    if importlib.util.find_spec("cupy") is not None:
        try:
            return bool(_cupy().cuda.runtime.getDeviceCount())
        except Exception:  # no driver, no device: CUDA is simply unavailable
            return False
    if importlib.util.find_spec("torch") is not None:
        import torch

        return bool(torch.cuda.is_available())
    return False


def installed_backends() -> list[Backend]:
    """Every :class:`Backend` that can run here, in declaration order.

    Returns
    -------
    list of Backend
        The members whose :meth:`Backend.skip_reason` is ``None``.

    Examples
    --------
    >>> from lazyapply.testing import Backend, installed_backends
    >>> Backend.NUMPY in installed_backends()
    True
    """
    return [b for b in Backend if b.skip_reason() is None]
