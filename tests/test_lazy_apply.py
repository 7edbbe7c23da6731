"""Every behaviour of ``lazy_apply`` from issue 2, on every backend.

Each test runs through the ``backend`` fixture: NumPy (writeable and read-only),
array-api-strict (CPU and ``device1``), torch (CPU and ``meta``), sparse, JAX (eager and
inside ``jax.jit``), Dask (nothing computed during the call) and, on GPU machines, CuPy
and CUDA torch. Kernels use operators or the array's own namespace, so the same kernel
runs on every library.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

from lazyapply import KernelOutputError, lazy_apply

from .conftest import Backend


def _ns(a: Any) -> Any:
    """The namespace of an array the kernel received (or returned)."""
    return array_api_compat.array_namespace(a)


def _arange(backend: Backend, n: int = 6, dtype: Any = np.float32) -> Any:
    return backend.asarray(np.arange(n, dtype=dtype))


class KernelFailure(Exception):
    """Raised by a kernel on purpose."""


# ---------------------------------------------------------------------------- arguments
def test_scalars_and_none_pass_through(backend: Backend) -> None:
    seen: list[tuple[type, ...]] = []

    def kernel(a: Any, nothing: Any, n: Any, f: Any, flag: Any) -> Any:
        seen.append((type(nothing), type(n), type(f), type(flag)))
        return a * n

    x = _arange(backend)
    out = backend.call(lambda a: lazy_apply(kernel, a, None, 2, 1.5, True), x)
    if backend is Backend.DASK:
        out = out.persist()  # the kernel runs now
    # Python scalars and None reach the kernel as they were passed, on every path
    # (inside jax.jit too: lazyapply bakes them into the host callback).
    assert seen
    assert set(seen) == {(type(None), int, float, bool)}
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(6) * 2)


def test_kwargs_verbatim(backend: Backend) -> None:
    nested = {"names": ["a", "b"], "inner": {"k": [1, (2, 3)], "s": "text"}}
    # A tuple that starts with a callable is a task to Dask: it must not be run.
    looks_like_task = (len, "abc")
    seen: list[dict[str, Any]] = []

    def kernel(a: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return a + kwargs["n"]

    x = _arange(backend)
    out = backend.call(
        lambda a: lazy_apply(
            kernel, a, n=3, nested=nested, task=looks_like_task, label="s", none=None
        ),
        x,
    )
    if backend is Backend.DASK:
        out = out.persist()  # the kernel runs now
    assert seen
    kw = seen[-1]
    assert kw == {
        "n": 3,
        "nested": nested,
        "task": looks_like_task,
        "label": "s",
        "none": None,
    }
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(6) + 3)
    # Never traced, never converted: a Python int stays an int (inside jax.jit too).
    assert type(kw["n"]) is int
    assert type(kw["nested"]["inner"]["k"][1]) is tuple
    if not backend.is_lazy:
        assert kw["nested"] is nested


# ---------------------------------------------------------------------------- shapes
def test_shape_inferred_by_broadcast(backend: Backend) -> None:
    a = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 1, 3))
    b = backend.asarray(np.arange(4, dtype=np.float32).reshape(4, 1))
    out = backend.call(
        lambda p, q: lazy_apply(lambda u, v, s: u + v * s, p, q, 1.0), a, b
    )
    assert tuple(out.shape) == (2, 4, 3)  # known before anything is computed
    expected = np.arange(6.0).reshape(2, 1, 3) + np.arange(4.0).reshape(4, 1)
    np.testing.assert_array_equal(backend.values_or_skip(out), expected)


def test_declared_shape_differs_from_inputs(backend: Backend) -> None:
    x = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    out = backend.call(
        lambda a: lazy_apply(lambda u: u[0, :2], a, shape=(2,), dtype="float32"), x
    )
    assert tuple(out.shape) == (2,)
    np.testing.assert_array_equal(backend.values_or_skip(out), [0.0, 1.0])


def test_multi_output(backend: Backend) -> None:
    def kernel(a: Any) -> tuple[Any, Any]:
        return a * 2, a > 2

    x = _arange(backend)
    out = backend.call(
        lambda a: lazy_apply(kernel, a, shape=[(6,), (6,)], dtype=["float32", "bool"]),
        x,
    )
    assert isinstance(out, tuple)
    assert len(out) == 2
    xp = backend.xp
    assert out[0].dtype == xp.float32
    assert out[1].dtype == xp.bool
    np.testing.assert_array_equal(backend.values_or_skip(out[0]), np.arange(6) * 2)
    np.testing.assert_array_equal(backend.values_or_skip(out[1]), np.arange(6) > 2)


def test_multi_output_different_shapes(backend: Backend) -> None:
    def kernel(a: Any) -> list[Any]:
        return [a[:2], a + 1, a[3]]  # a list is a sequence of outputs too

    x = _arange(backend)
    out = backend.call(
        lambda a: lazy_apply(kernel, a, shape=[(2,), (6,), ()], dtype=("float32",) * 3),
        x,
    )
    assert [tuple(o.shape) for o in out] == [(2,), (6,), ()]
    values = [backend.values_or_skip(o) for o in out]
    np.testing.assert_array_equal(values[0], [0.0, 1.0])
    np.testing.assert_array_equal(values[1], np.arange(6) + 1)
    np.testing.assert_array_equal(values[2], 3.0)


@pytest.mark.skip_backend(
    Backend.JAX_JIT, reason="unknown sizes are refused inside jax.jit (test_jax.py)"
)
def test_unknown_output_size(backend: Backend) -> None:
    x = _arange(backend)
    out = backend.call(
        lambda a: lazy_apply(lambda u, k: u[:k], a, 4, shape=(None,), dtype="float32"),
        x,
    )
    if backend is Backend.DASK:
        assert np.isnan(out.shape[0])  # Dask's unknown size: a NaN chunk
    else:
        assert tuple(out.shape) == (4,)  # None matches anything on eager backends
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(4))


def test_integer_like_sizes_and_dtype_names(backend: Backend) -> None:
    x = backend.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    shape = (np.int64(2), np.int32(3))  # one shape, not two outputs
    for dtype in ("float32", np.float32, np.dtype("float32"), backend.xp.float32):
        out = backend.call(
            lambda a, d=dtype: lazy_apply(lambda u: u, a, shape=shape, dtype=d), x
        )
        assert not isinstance(out, tuple)
        assert tuple(out.shape) == (2, 3)
        assert out.dtype == backend.xp.float32  # the namespace's own dtype


def test_python_type_as_dtype(backend: Backend) -> None:
    x = backend.asarray(np.arange(3, dtype=np.int32))
    out = backend.call(lambda a: lazy_apply(lambda u: u > 0, a, dtype=bool), x)
    assert out.dtype == backend.xp.bool


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize(
    ("np_dtype", "scalar"),
    [(np.float32, 2.0), (np.int32, 3), (np.int8, 3), (np.bool_, True)],
    ids=["float32*float", "int32*int", "int8*int", "bool&bool"],
)
def test_weak_python_scalars(backend: Backend, np_dtype: Any, scalar: Any) -> None:
    """The inferred dtype follows array-API weak-scalar rules; lazy backends check."""
    x = backend.asarray(np.arange(4).astype(np_dtype))
    # The array API has no bool * bool.
    kernel = _and if np_dtype is np.bool_ else _mul
    out = backend.call(lambda a: lazy_apply(kernel, a, scalar), x)
    expected = getattr(backend.xp, np.dtype(np_dtype).name)
    assert out.dtype == expected  # before compute on Dask
    values = backend.values_or_skip(out)  # Dask/JAX: the task's output is checked here
    assert values.dtype == np.dtype(np_dtype)
    np.testing.assert_array_equal(values, np.arange(4).astype(np_dtype) * scalar)


def test_result_type_of_several_arrays(backend: Backend) -> None:
    a = backend.asarray(np.arange(4, dtype=np.int8))
    b = backend.asarray(np.arange(4, dtype=np.int16))
    out = backend.call(lambda p, q: lazy_apply(lambda u, v, _: u + v, p, q, None), a, b)
    assert out.dtype == backend.xp.int16
    np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(4) * 2)


# ---------------------------------------------------------------------------- as_numpy
def test_as_numpy(backend: Backend) -> None:
    seen: list[type] = []

    def kernel(a: Any, b: Any, c: Any) -> Any:
        seen.extend([type(a), type(b)])
        assert c is None
        return a + b

    x = _arange(backend)
    y = _arange(backend)

    def call(p: Any, q: Any) -> Any:
        return lazy_apply(kernel, p, q, None, as_numpy=True)

    if not backend.converts_to_numpy:
        refusal = {
            Backend.SPARSE: RuntimeError,  # sparse refuses implicit densification
            Backend.TORCH_META: TypeError,  # torch: "can't convert meta ... to numpy"
            Backend.ARRAY_API_STRICT_DEVICE1: RuntimeError,  # not on the CPU device
            Backend.CUPY: TypeError,  # no implicit device-to-host copy
            Backend.TORCH_CUDA: TypeError,
        }[backend]
        with pytest.raises(refusal):
            backend.call(call, x, y)
        assert not seen
        return
    out = backend.call(call, x, y)
    assert type(out) is type(x) or backend is Backend.JAX_JIT
    np.testing.assert_array_equal(backend.to_numpy(out), np.arange(6) * 2)
    assert seen
    assert set(seen) == {np.ndarray}


def test_as_numpy_scalar_and_array_like_outputs(backend: Backend) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True is refused (test_as_numpy)")
    x = _arange(backend)
    out = backend.call(
        lambda a: lazy_apply(
            lambda u: (int(u.sum()), u.tolist()),
            a,
            shape=[(), (6,)],
            dtype=["int32", "float32"],
            as_numpy=True,
            strict=True,
        ),
        x,
    )
    assert out[0].dtype == backend.xp.int32
    assert out[1].dtype == backend.xp.float32
    assert int(backend.to_numpy(out[0])) == 15
    np.testing.assert_array_equal(backend.to_numpy(out[1]), np.arange(6))


# ---------------------------------------------------------------------------- outputs
def test_array_like_outputs_get_declared_dtype(backend: Backend) -> None:
    x = _arange(backend, 3)
    out_int = backend.call(
        lambda a: lazy_apply(lambda u: 7, a, shape=(), dtype="int32", strict=True), x
    )
    out_list = backend.call(
        lambda a: lazy_apply(
            lambda u: [1, 2, 3], a, shape=(3,), dtype="float32", strict=True
        ),
        x,
    )
    for out, dtype in ((out_int, backend.xp.int32), (out_list, backend.xp.float32)):
        assert out.dtype == dtype
        if backend is not Backend.JAX_JIT:
            assert array_api_compat.array_namespace(
                out
            ) is array_api_compat.array_namespace(x)
            assert array_api_compat.device(out) == array_api_compat.device(x)
    for out, expected in ((out_int, 7), (out_list, [1.0, 2.0, 3.0])):
        np.testing.assert_array_equal(backend.values_or_skip(out), expected)


@pytest.mark.skip_backend(
    Backend.DASK,
    Backend.JAX_JIT,
    reason="lazy backends infer and check shape/dtype (test_inferred_dtype_checked)",
)
def test_array_like_output_undeclared(backend: Backend) -> None:
    x = _arange(backend, 3)
    out = lazy_apply(lambda u: [1, 2, 3], x)
    assert array_api_compat.array_namespace(out) is array_api_compat.array_namespace(x)
    assert array_api_compat.device(out) == array_api_compat.device(x)
    assert tuple(out.shape) == (3,)


def test_result_namespace_and_device(backend: Backend) -> None:
    x = _arange(backend)
    y = _arange(backend)
    outs = [
        backend.call(lambda a, b: lazy_apply(lambda u, v: u + v, a, b), x, y),
        *backend.call(
            lambda a: lazy_apply(
                lambda u: (u, u * 2), a, shape=[(6,), (6,)], dtype=["float32"] * 2
            ),
            x,
        ),
    ]
    for out in outs:
        if backend is Backend.JAX_JIT:
            import jax

            assert isinstance(out, jax.Array)
            continue
        assert type(out) is type(x)
        assert array_api_compat.array_namespace(
            out
        ) is array_api_compat.array_namespace(x)
        assert array_api_compat.device(out) == array_api_compat.device(x)


@pytest.mark.parametrize(
    ("module", "make"),
    [
        (
            "array_api_strict",
            lambda xs: (
                xs.asarray([1.0], device=xs.Device("device1")),
                xs.asarray([1.0], device=xs.Device("CPU_DEVICE")),
            ),
        ),
        (
            "torch",
            lambda torch: (
                torch.ones(1, device="meta"),
                torch.ones(1, device="cpu"),
            ),
        ),
    ],
    ids=["array_api_strict", "torch"],
)
def test_device_of_first_array(module: str, make: Any) -> None:
    """Array-like outputs go to the first array argument's device, whichever it is."""
    lib = pytest.importorskip(module)
    a, b = make(lib)
    for first, second in ((a, b), (b, a)):
        out = lazy_apply(_seven, None, first, 2, second, shape=(1,), dtype="float32")
        assert array_api_compat.device(out) == array_api_compat.device(first)


def test_numpy_scalar_output_becomes_array(backend: Backend) -> None:
    """A kernel returning a NumPy scalar (``np.sum``) still gives an array."""
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True is refused (test_as_numpy)")
    x = _arange(backend)
    out = backend.call(lambda a: lazy_apply(np.sum, a, shape=(), as_numpy=True), x)
    if backend is not Backend.DASK:  # Dask's compute of a 0-d array is a NumPy scalar
        assert type(out) is type(x) or backend is Backend.JAX_JIT
    assert float(backend.to_numpy(out)) == 15.0


@pytest.mark.parametrize("as_numpy", [False, True])
@pytest.mark.parametrize("writeable", [True, False], ids=["writeable", "readonly"])
def test_numpy_inputs_not_copied(writeable: bool, as_numpy: bool) -> None:
    x = np.arange(6, dtype=np.float32)
    x.flags.writeable = writeable
    seen: list[Any] = []

    def kernel(a: Any) -> Any:
        seen.append(a)
        return a

    out = lazy_apply(kernel, x, shape=(6,), dtype="float32", as_numpy=as_numpy)
    assert seen[0] is x
    assert out is x
    assert x.flags.writeable is writeable


# --------------------------------------------------------------------------- exceptions
def test_kernel_exception_propagates(backend: Backend) -> None:
    def kernel(a: Any) -> Any:
        msg = "the kernel failed on purpose"
        raise KernelFailure(msg)

    x = _arange(backend)
    if backend is Backend.JAX_JIT:
        import jax

        # A host callback cannot raise through XLA: JAX reports the kernel's exception
        # (type and message) inside its own runtime error.
        with pytest.raises(jax.errors.JaxRuntimeError) as info:
            backend.to_numpy(backend.call(lambda a: lazy_apply(kernel, a), x))
        assert "KernelFailure: the kernel failed on purpose" in str(info.value)
        return
    if backend is Backend.DASK:
        out = backend.call(lambda a: lazy_apply(kernel, a), x)  # nothing raised yet
        with pytest.raises(KernelFailure, match="the kernel failed on purpose"):
            out.compute()
        return
    with pytest.raises(KernelFailure, match="the kernel failed on purpose"):
        lazy_apply(kernel, x)


# ---------------------------------------------------------------------------- checks
def _expect_output_error(backend: Backend, call: Any, x: Any, *fragments: str) -> None:
    """The call (or, on lazy backends, its computation) raises KernelOutputError."""
    if backend is Backend.JAX_JIT:
        import jax

        with pytest.raises(jax.errors.JaxRuntimeError) as jinfo:
            _materialise(backend, backend.call(call, x))
        text = str(jinfo.value)
        assert "KernelOutputError" in text
    else:
        with pytest.raises(KernelOutputError) as info:
            _materialise(backend, backend.call(call, x))
        text = str(info.value)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def _identity(a: Any) -> Any:
    return a


def _head(a: Any) -> Any:
    return a[:2]


def _two(u: Any) -> Any:
    return u, u[:2]


def _three(u: Any) -> Any:
    return u, u, u


_STRICT = {"strict": True}


@pytest.mark.parametrize(
    ("kernel", "options", "fragments"),
    [
        pytest.param(
            _identity,
            {"shape": (5,), "dtype": "float32", **_STRICT},
            ("_identity", "output 0", "shape (6,)", "expected (5,)", "shape="),
            id="shape",
        ),
        pytest.param(
            _identity,
            {"shape": (6, 1), "dtype": "float32", **_STRICT},
            ("output 0", "expected (6, 1)"),
            id="ndim",
        ),
        pytest.param(
            _identity,
            {"shape": (6,), "dtype": "int32", **_STRICT},
            ("_identity", "output 0", "float32, expected", "int32;", "dtype="),
            id="dtype",
        ),
        pytest.param(
            _two,
            {"shape": [(6,), (3,)], "dtype": ["float32"] * 2, **_STRICT},
            ("output 1", "shape (2,)", "expected (3,)"),
            id="second output",
        ),
        pytest.param(
            _three,
            {"shape": [(6,), (6,)], "dtype": ["float32"] * 2},
            ("declared with 2 outputs but returned 3",),
            id="number of outputs",
        ),
    ],
)
def test_wrong_declared_output(
    backend: Backend, kernel: Any, options: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    x = _arange(backend)
    _expect_output_error(
        backend, lambda a: lazy_apply(kernel, a, **options), x, *fragments
    )


def test_none_sizes_match_anything(backend: Backend) -> None:
    if backend is Backend.JAX_JIT:
        pytest.skip("unknown sizes are refused inside jax.jit (test_jax.py)")
    x = backend.asarray(np.ones((2, 3), dtype=np.float32))
    out = backend.call(
        lambda a: lazy_apply(_identity, a, shape=(None, 3), dtype="float32"), x
    )
    _expect_output_error(
        backend,
        lambda a: lazy_apply(
            _identity, a, shape=(None, 4), dtype="float32", strict=True
        ),
        x,
        "expected (None, 4)",
    )
    assert backend.values_or_skip(out).shape == (2, 3)


def test_inferred_dtype_checked(backend: Backend) -> None:
    """No declared dtype: eager backends return the kernel's output; lazy ones check."""

    def to_int(a: Any) -> Any:
        return _ns(a).astype(a, _ns(a).int32)

    x = _arange(backend)
    if backend.is_lazy:
        _expect_output_error(
            backend,
            lambda a: lazy_apply(to_int, a),
            x,
            "to_int",
            "dtype int32",
            "expected float32",
            "declare dtype=",
        )
        return
    out = lazy_apply(to_int, x)
    assert out.dtype == backend.xp.int32


def test_inferred_shape_checked(backend: Backend) -> None:
    """No declared shape: lazy backends check the broadcast shape when the task runs."""
    x = _arange(backend)
    if backend.is_lazy:
        _expect_output_error(
            backend,
            lambda a: lazy_apply(_head, a),
            x,
            "_head",
            "shape (2,)",
            "expected (6,)",
            "declare shape=",
        )
        return
    out = lazy_apply(_head, x)
    assert tuple(out.shape) == (2,)


def _materialise(backend: Backend, out: Any) -> Any:
    if backend is Backend.DASK and isinstance(out, tuple):
        import dask

        return dask.compute(*out)
    if isinstance(out, tuple):
        return [backend.to_numpy(o) for o in out] if backend.has_values else out
    return backend.to_numpy(out) if backend.has_values else out


def _seven(*args: Any) -> list[float]:
    return [7.0]


def _mul(a: Any, b: Any) -> Any:
    return a * b


def _and(a: Any, b: Any) -> Any:
    return a & b


def test_repeated_option_calls_never_mix() -> None:
    # lazy_apply reuses the last call's spec when func, shape, dtype and every option
    # are the same objects: equal-but-different options, and a kernel that takes the
    # keyword itself, must each get their own behaviour.
    x = np.arange(3.0)

    def to_int(x: Any) -> Any:
        return x.astype(np.int32)  # not result_type: strict refuses it

    for _ in range(2):
        with pytest.raises(KernelOutputError, match="dtype"):
            lazy_apply(to_int, x, strict=True)
        assert lazy_apply(to_int, x, strict=False).dtype == np.int32

    def takes_strict(x: Any, strict: Any) -> Any:
        return x + (10 if strict is True else 20)

    for _ in range(2):
        np.testing.assert_array_equal(lazy_apply(takes_strict, x, strict=True), x + 10)
        np.testing.assert_array_equal(lazy_apply(takes_strict, x, strict=1), x + 20)
        with pytest.raises(KernelOutputError, match="dtype"):
            lazy_apply(to_int, x, strict=True)
