"""``@lazy``: behaviour on every backend, metadata, methods, pickling and bad use."""

from __future__ import annotations

import functools
import inspect
import pickle
from typing import Any

import numpy as np
import pytest

from lazyapply import ArgumentTypeError, LazyFunction, SpecError, lazy, lazy_apply
from lazyapply.spec import parse_output

from . import kernels
from .conftest import Backend, count_dask_computes


def _namespace(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(x)


# ------------------------------------------------------------------ every backend
@lazy
def double(x: Any) -> Any:
    """Twice x."""
    return x * 2


def test_bare(backend: Backend) -> None:
    x = backend.asarray(np.arange(6.0).reshape(2, 3))
    out = backend.call(double, x)
    assert type(out) is type(x) or backend is Backend.JAX_JIT
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(
        backend.values_or_skip(out), np.arange(6.0).reshape(2, 3) * 2
    )


@lazy(as_numpy=True)
def cumsum_rows(x: np.ndarray) -> np.ndarray:
    assert type(x) is np.ndarray, type(x)
    return np.cumsum(x, axis=1)


def test_as_numpy(backend: Backend) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: the library refuses an implicit NumPy conversion")
    a = np.arange(6.0).reshape(2, 3)
    x = backend.asarray(a)
    out = backend.call(cumsum_rows, x)
    assert type(out) is type(x) or backend is Backend.JAX_JIT
    np.testing.assert_allclose(backend.to_numpy(out), np.cumsum(a, axis=1))


@lazy(shape=lambda x, y: (x.shape[0], y.shape[1]), dtype=lambda x, y: x.dtype)
def matmul(x: Any, y: Any) -> Any:
    return x @ y


def test_shape_and_dtype_callables(backend: Backend) -> None:
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    x, y = backend.asarray(a), backend.asarray(b)
    out = backend.call(matmul, x, y)
    assert out.shape == (2, 4)
    assert out.dtype == x.dtype
    np.testing.assert_allclose(backend.values_or_skip(out), a @ b)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64:UserWarning")
@pytest.mark.parametrize(
    "form", ["name", "numpy_type", "numpy_dtype", "python_type", "namespace"]
)
def test_dtype_forms_map_to_namespace(backend: Backend, form: str) -> None:
    want = np.float64 if form == "python_type" else np.float32
    x = backend.asarray(np.arange(4.0))
    xp = backend.xp
    dtype = {
        "name": "float32",
        "numpy_type": np.float32,
        "numpy_dtype": np.dtype("float32"),
        "python_type": float,
        "namespace": getattr(xp, "float32", None),
    }[form]

    def cast(x: Any) -> Any:
        ns = _namespace(x)
        return ns.astype(x, getattr(ns, np.dtype(want).name))

    kernel = lazy(cast, dtype=dtype)  # decorated here: the namespace's own dtype
    out = backend.call(kernel, x)
    # What the namespace stores such a dtype as (JAX without x64: float32).
    assert out.dtype == backend.asarray(np.zeros(1, dtype=want)).dtype
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(4.0))


def test_method(backend: Backend) -> None:
    x = backend.asarray(np.arange(3.0))
    scaler = kernels.Scaler(3.0)
    out = backend.call(scaler.apply, x)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(3.0) * 3)


def test_numba_dispatcher(backend: Backend) -> None:
    pytest.importorskip("numba", reason="numba is not installed")
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: the library refuses an implicit NumPy conversion")
    a = np.asarray([[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0]])
    out = backend.call(kernels.running_max, backend.asarray(a))
    np.testing.assert_array_equal(
        backend.to_numpy(out), np.maximum.accumulate(a, axis=1)
    )


def test_keyword_arguments_reach_the_kernel(backend: Backend) -> None:
    x = backend.asarray(np.arange(3.0))
    out = backend.call(kernels.scaled_sum, x, x, scale=0.5)
    assert tuple(out.shape) == (3,)
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(3.0))


@pytest.mark.parametrize("backend", [Backend.JAX_JIT, Backend.DASK], indirect=True)
def test_lazy_backends_defer_the_kernel(backend: Backend) -> None:
    calls: list[int] = []

    @lazy(shape=lambda x: x.shape, dtype=lambda x: x.dtype, as_numpy=True)
    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        return x + 1

    x = backend.asarray(np.arange(3.0))
    if backend is Backend.DASK:
        with count_dask_computes() as counter:
            out = counted(x)
        assert (counter.count, calls) == (0, [])
        np.testing.assert_array_equal(out.compute(), np.arange(3.0) + 1)
        assert calls == [1]
    else:
        import jax

        traced = jax.jit(counted).lower(x)  # tracing evaluates the callables only
        assert calls == []
        np.testing.assert_array_equal(
            np.asarray(traced.compile()(x)), np.arange(3.0) + 1
        )
        assert calls == [1]


# ------------------------------------------------------------------ Dask NaN sizes
def test_shape_callable_on_unknown_dask_sizes() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    a = np.asarray([5.0, 1.0, 7.0, 2.0, 9.0])
    x = da.from_array(a, chunks=2)
    picked = x[x > 1.5]  # unknown size: NaN chunks
    assert np.isnan(picked.shape[0])
    with count_dask_computes() as counter:
        out = kernels.steps(picked)
    assert counter.count == 0
    assert np.isnan(out.shape[0])
    np.testing.assert_array_equal(out.compute(), np.diff(a[a > 1.5]))


def test_unknown_size_inside_jit_is_a_clear_error() -> None:
    jax = pytest.importorskip("jax", reason="jax is not installed")

    @lazy(shape=lambda x: (None,))
    def unknown(x: Any) -> Any:
        return x

    with pytest.raises(SpecError, match=r"unknown.*fully known|fully known.*unknown"):
        jax.jit(unknown)(jax.numpy.arange(3.0))


# ------------------------------------------------------------------ same as lazy_apply
def test_decorated_call_is_lazy_apply() -> None:
    kernel = lazy(np.add, shape=(3,), dtype="float64")
    assert kernel.spec.name == "add"
    assert kernel.spec.output == parse_output((3,), "float64", "add")
    x = np.arange(3.0)
    np.testing.assert_array_equal(
        kernel(x, 1.0), lazy_apply(np.add, x, 1.0, shape=(3,), dtype="float64")
    )


def test_empty_parentheses_equal_bare() -> None:
    def kernel(x: Any) -> Any:
        return x + 1

    assert lazy()(kernel).spec == lazy(kernel).spec
    np.testing.assert_array_equal(lazy()(kernel)(np.zeros(2)), [1.0, 1.0])


def test_constant_options_are_normalised_once() -> None:
    seen: list[Any] = []

    def shape_of(x: Any) -> tuple[int, ...]:
        seen.append(x)
        return tuple(x.shape)

    kernel = lazy(np.negative, shape=shape_of, dtype=np.float64)
    assert seen == []  # a shape callable waits for the call's arguments
    spec = kernel.spec
    kernel(np.arange(2.0))
    assert kernel.spec is spec
    assert len(seen) == 1


def test_mode_options_reach_the_spec() -> None:
    pytest.importorskip("lazyapply.spec._modes", reason="chunk-wise modes not present")
    assert lazy(np.sin, elementwise=True).spec.mode.elementwise
    sig = lazy(np.linalg.norm, signature="(n)->()").spec.mode.signature
    assert sig is not None
    with pytest.raises(SpecError, match="norm"):
        lazy(np.linalg.norm, signature="(n)->()", elementwise=True)
    with pytest.raises(SpecError, match="sin: elementwise must be True or False"):
        lazy(np.sin, elementwise="yes")
    assert lazy(np.negative, depth=0).spec.mode.depth is not None  # 0 is given


# ------------------------------------------------------------------ metadata
def test_metadata() -> None:
    def kernel(x: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """Scale x."""
        return x * scale

    decorated = lazy(as_numpy=True, dtype="float32")(kernel)
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        assert getattr(decorated, attr) == getattr(kernel, attr)
    assert decorated.__wrapped__ is kernel
    assert decorated.eager is kernel
    assert inspect.signature(decorated) == inspect.signature(kernel)
    assert isinstance(decorated, LazyFunction)
    assert decorated.options["as_numpy"] is True
    assert decorated.options["dtype"] == "float32"
    assert decorated.options["shape"] is None
    with pytest.raises(TypeError):
        decorated.options["as_numpy"] = False  # type: ignore[index]
    text = repr(decorated)
    assert "test_metadata.<locals>.kernel" in text
    assert "as_numpy=True" in text
    assert "dtype='float32'" in text
    assert "shape" not in text
    twin = lazy(**decorated.options)(kernel)
    assert twin.spec == decorated.spec


def test_metadata_of_numba_and_partial_kernels() -> None:
    pytest.importorskip("numba", reason="numba is not installed")
    assert kernels.running_max.__name__ == "running_max"
    assert kernels.running_max.__module__ == "tests.kernels"
    assert str(inspect.signature(kernels.running_max)).startswith("(x")
    assert kernels.running_max.__doc__ is not None
    # A dispatcher's compiler state is not copied onto the decorated object.
    assert "overloads" not in vars(kernels.running_max)
    partial = lazy(functools.partial(np.add, 1.0))
    assert partial.spec.name == "add"
    np.testing.assert_array_equal(partial(np.arange(2.0)), [1.0, 2.0])


def test_method_binding() -> None:
    scaler = kernels.Scaler(2.0)
    assert kernels.Scaler.apply is kernels.Scaler.__dict__["apply"]
    bound = scaler.apply
    assert bound.__self__ is scaler
    assert bound.__func__ is kernels.Scaler.apply
    assert bound.__name__ == "apply"
    assert str(inspect.signature(bound)) == "(x: 'Any') -> 'Any'"
    assert "Scaler(2.0)" in repr(bound)
    # Unbound through the class: the instance is the first argument, as usual.
    np.testing.assert_array_equal(kernels.Scaler.apply(scaler, np.ones(2)), [2.0, 2.0])


def test_lazy_as_staticmethod() -> None:
    class Ops:
        @staticmethod
        @lazy
        def triple(x: Any) -> Any:
            return x * 3

    np.testing.assert_array_equal(Ops().triple(np.ones(2)), [3.0, 3.0])
    np.testing.assert_array_equal(Ops.triple(np.ones(2)), [3.0, 3.0])


# ------------------------------------------------------------------ pickling
@pytest.mark.parametrize("module", ["pickle", "cloudpickle"])
def test_pickles_by_reference(module: str) -> None:
    mod = pytest.importorskip(module)
    objects = [kernels.scaled_sum, kernels.steps, kernels.Scaler.apply]
    if kernels.running_max is not None:
        objects.append(kernels.running_max)
    for obj in objects:
        assert mod.loads(mod.dumps(obj)) is obj
    bound = mod.loads(mod.dumps(kernels.Scaler(4.0).apply))
    assert bound.__self__ == kernels.Scaler(4.0)
    np.testing.assert_array_equal(bound(np.ones(2)), [4.0, 4.0])


def test_local_kernel_pickles_by_value_with_cloudpickle_only() -> None:
    cloudpickle = pytest.importorskip("cloudpickle")

    @lazy(shape=lambda x: x.shape, dtype="float64")
    def local(x: Any) -> Any:
        return x + 1

    copy = cloudpickle.loads(cloudpickle.dumps(local))
    assert copy is not local
    assert copy.options["dtype"] == "float64"
    np.testing.assert_array_equal(copy(np.zeros(2)), [1.0, 1.0])
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(local)


# ------------------------------------------------------------------ bad use
def test_not_callable() -> None:
    with pytest.raises(TypeError, match="expected a function to decorate, got int 3"):
        lazy(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="got str"):
        lazy(as_numpy=True)("kernel")  # type: ignore[arg-type]


def test_non_array_argument_of_a_plain_kernel() -> None:
    # Only a kernel defined in a class body binds a non-array first argument.
    with pytest.raises(ArgumentTypeError, match=r"scaled_sum: got an argument of type"):
        kernels.scaled_sum(kernels.Scaler(1.0), np.ones(2))


def test_unknown_option() -> None:
    with pytest.raises(
        TypeError, match=r"unknown option 'shap'; valid options are shape"
    ):
        lazy(shap=(3,))  # type: ignore[call-overload]
    with pytest.raises(
        TypeError, match=r"'shap' for add; valid options are .*boundary"
    ):
        lazy(np.add, shap=(3,))  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dtype": "floot32"}, r"bad_kernel: unknown dtype 'floot32'"),
        ({"dtype": ("float32", "nope")}, r"bad_kernel: unknown dtype 'nope'"),
        ({"shape": "abc"}, r"bad_kernel: shape must be a tuple"),
        ({"shape": (-1,)}, r"bad_kernel: output sizes must be >= 0"),
        ({"shape": [(2,), (3,)], "dtype": "float32"}, r"only one dtype \(bad_kernel"),
        ({"dtype": ("float32", "float64")}, r"multiple dtypes \(bad_kernel"),
    ],
)
def test_bad_constant_options_fail_at_decoration(
    options: dict[str, Any], match: str
) -> None:
    def bad_kernel(x: Any) -> Any:
        return x

    with pytest.raises(SpecError, match=match):
        lazy(bad_kernel, **options)


def _boom(x: Any) -> Any:
    raise RuntimeError("no shape today")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"shape": _boom},
            r"bad_kernel: the shape callable '_boom' raised RuntimeError",
        ),
        ({"shape": lambda x: "abc"}, r"bad_kernel: shape must be a tuple"),
        ({"shape": lambda x: None}, r"bad_kernel: the shape callable returned None"),
        ({"dtype": _boom}, r"bad_kernel: the dtype callable '_boom' raised"),
        ({"dtype": lambda x: "floot32"}, r"bad_kernel: unknown dtype 'floot32'"),
    ],
)
@pytest.mark.parametrize("backend", [Backend.NUMPY, Backend.DASK], indirect=True)
def test_bad_callables_fail_at_call(
    backend: Backend, options: dict[str, Any], match: str
) -> None:
    def bad_kernel(x: Any) -> Any:
        return x

    kernel = lazy(bad_kernel, **options)  # nothing to check yet
    with pytest.raises(SpecError, match=match):
        kernel(backend.asarray(np.arange(3.0)))
