"""Subnormal numbers under ``jax.jit``: kernels run in the eager floating-point mode.

XLA's CPU threads flush denormals to zero (FTZ) and read them as zero (DAZ). A kernel
called from there (the callback path, a Numba FFI handler, a SciPy loop) must not
inherit that mode: its values are compared bit for bit with the same kernel called
eagerly on NumPy, for subnormal inputs (DAZ), subnormal results (FTZ) and a SciPy
routine that returns NaN when flushed (``chndtridf``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import lazy

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")

F32 = np.asarray(
    [1e-40, np.nextafter(np.float32(0), np.float32(1)) * 3, 1e-30, -2.0], np.float32
)
F64 = np.asarray([1e-310, np.nextafter(0.0, 1.0) * 3, 1e-300, -2.0])


def _halve(x: Any) -> Any:
    return x * x.dtype.type(0.5)  # a subnormal result from a subnormal input


def _sign(x: Any) -> Any:
    return np.where(x > 0, x.dtype.type(1), x.dtype.type(-1))  # DAZ: 1e-40 > 0 fails


def _chndtridf(x: Any) -> Any:
    import scipy.special as sc

    one = x.dtype.type(1)
    return sc.chndtridf(one, np.abs(x), one)  # NaN where the subnormal is flushed


def _bits_equal(got: Any, expected: np.ndarray) -> None:
    got = np.asarray(got)
    assert got.dtype == expected.dtype
    ints = np.int32 if expected.dtype == np.float32 else np.int64
    np.testing.assert_array_equal(got.view(ints), expected.view(ints))


def _numba_kernels() -> list[Any]:
    numba = pytest.importorskip("numba", reason="numba is not installed")
    return [numba.njit(_halve), numba.njit(_sign)]


@pytest.mark.parametrize("python", [_halve, _sign, _chndtridf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_callback_kernel_keeps_subnormals(python: Any, dtype: str) -> None:
    if python is _chndtridf:
        pytest.importorskip("scipy", reason="scipy is not installed")
    kernel = lazy(as_numpy=True)(python)
    host = F32 if dtype == "float32" else F64
    with jax.enable_x64(dtype == "float64"):
        expected = python(host.copy())
        assert not np.array_equal(expected, python(np.where(host > 1e-30, host, 0)))
        _bits_equal(jax.jit(kernel)(jnp.asarray(host)), expected)
        _bits_equal(jax.jit(jax.vmap(kernel))(jnp.asarray(host)[None]), expected[None])


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_native_kernel_keeps_subnormals(index: int, dtype: str) -> None:
    from lazyapply.adapters.jax.native import explain_native

    numba_kernel = _numba_kernels()[index]
    kernel = lazy(as_numpy=True)(numba_kernel)
    host = F32 if dtype == "float32" else F64
    with jax.enable_x64(dtype == "float64"):
        got = jax.jit(kernel)(jnp.asarray(host))
        assert (explain_native(numba_kernel) or "").startswith("native"), (
            explain_native(numba_kernel)
        )
        _bits_equal(got, numba_kernel.py_func(host.copy()))


def test_numba_vectorize_and_scipy_ufunc_keep_subnormals() -> None:
    numba = pytest.importorskip("numba", reason="numba is not installed")
    sc = pytest.importorskip("scipy.special", reason="scipy is not installed")

    halve = numba.vectorize(["float32(float32)"])(lambda v: v * np.float32(0.5))
    one = np.float32(1)
    _bits_equal(jax.jit(lazy(halve))(jnp.asarray(F32)), halve(F32))
    expected = sc.chndtridf(one, np.abs(F32), one)
    got = jax.jit(lazy(sc.chndtridf))(one, jnp.abs(jnp.asarray(F32)), one)
    _bits_equal(got, expected)
