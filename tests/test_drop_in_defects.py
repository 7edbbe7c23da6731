"""The defects found by swapping lazyapply in for real users' ``lazy_apply`` (issue 9).

Each test failed before its fix, and runs on every installed backend it applies to.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, LazyApplyError, SpecError, lazy_apply

from ._python import ROOT, run_python
from .conftest import Backend


def weighted(x: Any, w: Any, offset: Any) -> Any:
    """A kernel that takes a weight list, as ``scipy.spatial.distance.pdist`` does."""
    assert type(w) is list, type(w)  # passed through, not converted or traced
    assert type(offset) is tuple
    return x * sum(w) + offset[0]


# ----------------------------------------------------------- 1. sequences as args
def test_sequence_of_numbers_passes_through(backend: Backend) -> None:
    x = backend.asarray(np.arange(4.0))
    as_numpy = backend.converts_to_numpy
    out = backend.call(
        lambda x: lazy_apply(weighted, x, [1.0, 2.0], (3,), as_numpy=as_numpy), x
    )
    assert tuple(out.shape) == (4,)
    np.testing.assert_allclose(backend.values_or_skip(out), np.arange(4.0) * 3 + 3)


def test_sequence_holding_an_array_is_refused(backend: Backend) -> None:
    x = backend.asarray(np.arange(4.0))
    with pytest.raises(
        LazyApplyError, match=r"weighted: a list .*Pass arrays positionally"
    ):
        lazy_apply(weighted, x, [x, 1.0], (3,))


def test_only_sequences_is_refused() -> None:
    with pytest.raises(SpecError, match="at least one array"):
        lazy_apply(weighted, [1.0], [1.0, 2.0], (3,))


# ----------------------------------------------------------- 2. dtypes
def _numpy_dtypes() -> list[Any]:
    dtypes: list[Any] = [
        "<U3",
        "S2",
        object,
        np.dtype("datetime64[ns]"),
        np.dtype("timedelta64[s]"),
        np.dtype([("a", "f8"), ("b", "i4")]),
    ]
    try:
        import ml_dtypes

        dtypes += [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn]
    except ImportError:
        pass
    return dtypes


def _zeros_of(dtype: Any) -> Any:
    def zeros(x: Any) -> Any:
        return np.zeros(x.shape, dtype=dtype)

    return zeros


@pytest.mark.parametrize("dtype", _numpy_dtypes(), ids=str)
@pytest.mark.parametrize("backend", [Backend.NUMPY, Backend.DASK], ids=str)
def test_every_numpy_dtype_declared(backend: Backend, dtype: Any) -> None:
    if backend.skip_reason():
        pytest.skip(str(backend.skip_reason()))
    x = backend.asarray(np.arange(3.0))
    out = backend.call(lambda x: lazy_apply(_zeros_of(dtype), x, dtype=dtype), x)
    assert out.dtype == np.dtype(dtype)
    assert backend.to_numpy(out).dtype == np.dtype(dtype)


def test_non_native_byte_order_counts_as_native(backend: Backend) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True is refused")
    x = backend.asarray(np.arange(3.0))

    def swapped(x: Any) -> Any:
        return (x * 2).astype(">f8")

    out = backend.call(lambda x: lazy_apply(swapped, x, dtype=">f8", as_numpy=True), x)
    np.testing.assert_array_equal(backend.to_numpy(out), np.arange(3.0) * 2)


@pytest.mark.parametrize("name", ["e", "pi", "inf", "nan", "newaxis"])
def test_names_that_are_not_dtypes(backend: Backend, name: str) -> None:
    x = backend.asarray(np.arange(3.0))
    with pytest.raises(SpecError, match=r"_zeros_of\.<locals>\.zeros|zeros.*float64"):
        backend.call(lambda x: lazy_apply(_zeros_of("f8"), x, dtype=name), x)


def test_dtype_of_another_library_on_dask() -> None:
    torch = pytest.importorskip("torch")
    if Backend.DASK.skip_reason():
        pytest.skip(str(Backend.DASK.skip_reason()))
    x = Backend.DASK.asarray(np.arange(3.0))
    with pytest.raises(SpecError, match=r"zeros: dtype torch.float32 belongs to torch"):
        lazy_apply(_zeros_of("f4"), x, dtype=torch.float32)


# ----------------------------------------------------------- 6. torch as_numpy outputs
@pytest.mark.parametrize(
    "make",
    [np.flip, lambda a: a[::-1], lambda a: a.astype(">f8")],
    ids=["flip", "reversed", "big-endian"],
)
def test_as_numpy_outputs_that_torch_refuses(backend: Backend, make: Any) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True is refused")
    x = backend.asarray(np.arange(4.0))
    out = backend.call(lambda x: lazy_apply(make, x, as_numpy=True), x)
    np.testing.assert_array_equal(backend.to_numpy(out), make(np.arange(4.0)))


# ----------------------------------------------------------- 8. clear errors
def test_string_output_where_float_declared(backend: Backend) -> None:
    x = backend.asarray(np.arange(3.0))

    def words(x: Any) -> Any:
        return "not a number"

    def run(x: Any) -> Any:
        return backend.to_numpy(lazy_apply(words, x, shape=(), dtype="float64"))

    # Under jax.jit the error is raised in the host callback; JAX re-raises it as
    # its own JaxRuntimeError, with the message.
    expected = Exception if backend is Backend.JAX_JIT else KernelOutputError
    message = r"words \(.*\): output 0 has dtype <U\d+ \(from a str\)"
    with pytest.raises(expected, match=message):
        run(x) if backend is not Backend.JAX_JIT else _jit_run(words, x)


# ----------------------------------------------------------- 3. Dask keys follow state
def _dask() -> Any:
    reason = Backend.DASK.skip_reason()
    if reason:
        pytest.skip(f"dask: {reason}")
    import dask.array as da

    return da


def add_weights(x: Any, w: Any) -> Any:
    return x + w


class Shift:
    """A callable object whose attribute is its state."""

    def __init__(self, by: float) -> None:
        self.by = by

    def __call__(self, x: Any) -> Any:
        return x + self.by


@pytest.mark.parametrize("mode", [{}, {"elementwise": True}, {"depth": 1}], ids=str)
def test_dask_key_follows_a_partial_changed_in_place(mode: dict[str, Any]) -> None:
    da = _dask()
    w = np.ones(1)  # broadcasts against any block
    kernel = functools.partial(add_weights, w=w)
    x = da.zeros(4, chunks=2)
    y1 = lazy_apply(kernel, x, **mode).persist()
    w += 1  # the same partial object, new state
    y2 = lazy_apply(kernel, x, **mode)
    assert y1.name != y2.name
    np.testing.assert_array_equal((y1 + y2).compute(), np.full(4, 3.0))


def test_dask_key_follows_a_callable_objects_attributes() -> None:
    da = _dask()
    shift = Shift(1.0)
    x = da.zeros(4, chunks=2)
    y1 = lazy_apply(shift, x).persist()
    shift.by = 5.0
    y2 = lazy_apply(shift, x)
    np.testing.assert_array_equal((y1 + y2).compute(), np.full(4, 6.0))


def test_dask_key_of_a_plain_function_is_stable() -> None:
    da = _dask()
    x = da.zeros(4, chunks=2)
    assert lazy_apply(np.sin, x).name == lazy_apply(np.sin, x).name
    assert lazy_apply(add_weights, x, 1.0).name == lazy_apply(add_weights, x, 1.0).name


# ----------------------------------------------------------- 9. stencil task names
def test_stencil_output_carries_the_kernel_name() -> None:
    da = _dask()

    def smooth(x: Any) -> Any:
        return x * 2

    x = da.ones(10, chunks=5)
    for boundary in (None, "reflect"):
        y = lazy_apply(smooth, x, depth=1, boundary=boundary)
        assert y.name.startswith("smooth-"), y.name
        np.testing.assert_array_equal(y.compute(), np.full(10, 2.0))


def two_outputs(x: Any) -> Any:
    return x[:2], x


def test_tuple_returned_without_shapes(backend: Backend) -> None:
    x = backend.asarray(np.arange(3.0))
    expected = Exception if backend is Backend.JAX_JIT else KernelOutputError
    with pytest.raises(expected, match=r"two_outputs .*returned a tuple .*shape=\["):
        backend.to_numpy(backend.call(lambda x: lazy_apply(two_outputs, x), x))


_KERNEL_SEES_NUMPY = (
    Backend.NUMPY,
    Backend.NUMPY_READONLY,
    Backend.DASK,  # chunks are NumPy arrays
    Backend.JAX_JIT,  # the host callback receives NumPy arrays
)


@functools.cache
def _njit_double() -> Any:
    numba = pytest.importorskip("numba")

    @numba.njit(cache=False)
    def double(x: Any) -> Any:
        return x * 2

    return double


def test_numba_kernel_without_as_numpy(backend: Backend) -> None:
    if backend in _KERNEL_SEES_NUMPY:
        pytest.skip(f"{backend}: the kernel receives NumPy arrays")
    double = _njit_double()
    x = backend.asarray(np.arange(3.0))
    with pytest.raises(SpecError, match=r"double \(.*\): a Numba kernel .*as_numpy"):
        lazy_apply(double, x)


def test_bfloat16_with_as_numpy() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(SpecError, match=r"sin \(torch\): .*NumPy has no bfloat16"):
        lazy_apply(np.sin, x, as_numpy=True)


def _jit_run(kernel: Any, x: Any) -> Any:
    import jax

    f = jax.jit(lambda x: lazy_apply(kernel, x, shape=(), dtype="float64"))
    return np.asarray(f(x))


# ----------------------------------------------------------- 7. pickling
_SCRIPT = """
import sys

import numpy as np
from distributed import Client

from lazyapply import lazy


@lazy
def double(x):
    return x * 2


def plus_one(x):  # a plain function of __main__ that calls the @lazy one
    return double(x) + 1


if __name__ == "__main__":
    with Client(sys.argv[1]) as client:
        a = client.submit(double, np.ones(3)).result()
        b = client.submit(plus_one, np.ones(3)).result()
    print(a.tolist(), b.tolist())
"""


@pytest.mark.slow
def test_lazy_function_of_main_runs_on_workers(
    dask_cluster: Any, tmp_path: Any
) -> None:

    script = tmp_path / "script.py"
    script.write_text(_SCRIPT)
    done = run_python(str(script), dask_cluster.scheduler_address, timeout=120)
    assert done.stdout.split("\n")[-2] == "[2.0, 2.0, 2.0] [3.0, 3.0, 3.0]"


def test_module_level_lazy_function_pickles_by_reference() -> None:
    import pickle

    cloudpickle = pytest.importorskip("cloudpickle")
    from . import kernels

    name = next(k for k, v in vars(kernels).items() if hasattr(v, "eager"))
    f = getattr(kernels, name)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        data = dumps(f)
        assert name.encode() in data
        assert len(data) < 200  # a reference: no code
        assert pickle.loads(data) is f


# ----------------------------------------------------------- 4. thread safety
_THREADS_SCRIPT = """
import sys
import threading

sys.setswitchinterval(1e-6)  # switch threads as often as possible (GIL builds)

import numpy as np

from lazyapply import _detect, lazy_apply
from tests.conftest import Backend

errors = []


def add(a, b):  # operators only: every namespace and device has them
    return a + b


def first_calls(backend, x, barrier):
    barrier.wait()
    try:
        for _ in range(3):
            # backend.call for jit only: its Dask compute counter is process-wide.
            if backend is Backend.JAX_JIT:
                out = backend.call(lambda a: lazy_apply(add, a, a), x)
            else:
                out = lazy_apply(add, x, x)
            if backend.has_values:  # a script, not a test: compute if it can
                backend.to_numpy(out)
    except Exception as exc:
        errors.append(f"{backend}: {exc!r}")


for backend in map(Backend, sys.argv[1:]):  # each backend's first calls, at once
    arrays = [backend.asarray(np.arange(3.0)) for _ in range(16)]
    barrier = threading.Barrier(len(arrays))
    threads = [
        threading.Thread(target=first_calls, args=(backend, x, barrier))
        for x in arrays
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
adapters = [a for a in _detect._TYPES.values() if a is not None]
print(len(errors), len({id(a) for a in adapters}), len({type(a) for a in adapters}))
print(errors[:3])
"""


@pytest.mark.slow
def test_first_calls_from_many_threads() -> None:
    """16 threads make each backend's first call at once, in a fresh process.

    One adapter instance per backend must come out (two made the process report
    "arguments mix array libraries (numpy and numpy)" for its whole life).
    """

    names = [b.value for b in Backend if b.skip_reason() is None]
    done = run_python("-c", _THREADS_SCRIPT, *names, cwd=ROOT)
    counts, errors = done.stdout.splitlines()[-2:]
    n_errors, n_instances, n_classes = counts.split()
    assert n_errors == "0", errors
    assert n_instances == n_classes, done.stdout  # one instance per adapter class


# ----------------------------------------------------------- 5. JAX
_SHARDED_SCRIPT = """
x = np.arange(8.0)
for spec in (P("d"), P()):  # sharded, replicated
    a = put(x, line, spec)
    out = lazy_apply(np.cumsum, a, as_numpy=True)
    np.testing.assert_array_equal(np.asarray(out), np.cumsum(x))
    out = lazy_apply(np.cumsum, a, as_numpy=True, shape=(8,), dtype=a.dtype)
    np.testing.assert_array_equal(np.asarray(out), np.cumsum(x))
print("ok")
"""


@pytest.mark.slow
def test_jax_as_numpy_on_a_multi_device_array() -> None:
    pytest.importorskip("jax")
    from ._devices import run_on_devices

    assert run_on_devices(_SHARDED_SCRIPT, timeout=120).strip().endswith("ok")


def scale_by(x: Any, *, factor: Any) -> Any:
    return x * factor


def test_jax_traced_array_as_keyword() -> None:
    jax = pytest.importorskip("jax")
    x = jax.numpy.arange(3.0)
    f = jax.jit(lambda x: lazy_apply(scale_by, x, factor=x[0], as_numpy=True))
    with pytest.raises(SpecError, match=r"scale_by .*keyword argument 'factor'"):
        f(x)
    g = jax.jit(lambda x: lazy_apply(scale_by, x, factor=[x[0]], as_numpy=True))
    with pytest.raises(SpecError, match=r"keyword argument 'factor'"):
        g(x)


def as_float64(x: Any) -> Any:
    return np.asarray(x, dtype=np.float64) * 2


def test_jax_declared_dtype_follows_x64_between_calls() -> None:
    jax = pytest.importorskip("jax")
    toggle = getattr(jax, "enable_x64", None)
    if toggle is None or jax.config.jax_enable_x64:
        pytest.skip("needs jax.enable_x64 and x64 off by default")

    def f(a: Any) -> Any:
        return lazy_apply(as_float64, a, as_numpy=True, dtype="float64")

    x = jax.numpy.arange(3.0)
    assert f(x).dtype == jax.jit(f)(x).dtype == np.float32
    with toggle(True):
        y = jax.numpy.arange(3.0, dtype="float64")
        assert f(y).dtype == jax.jit(f)(y).dtype == np.float64
    assert f(x).dtype == jax.jit(f)(x).dtype == np.float32
