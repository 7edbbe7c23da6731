"""The cases of test_jax_surprises.py with Numba and SciPy special kernels, which
``jax.jit`` runs on the native path (XLA FFI targets), and with ``jax.jit`` outside
and inside the derivative: NumPy beside JAX, derivatives of NumPy inputs,
``check_grads`` in both modes, an integer output beside a float output. Values are
compared with NumPy (derivatives with finite differences of NumPy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import explain_native, lazy

from ._finite import central_differences

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
numba = pytest.importorskip("numba", reason="numba is not installed")
special = pytest.importorskip("scipy.special", reason="scipy is not installed")
from jax.test_util import check_grads  # noqa: E402

X = np.asarray([0.3, -1.2, 2.0, 0.7])


def _assert_native(kernel: Any) -> None:
    decision = explain_native(kernel)
    assert decision is not None
    assert decision.startswith("native"), decision


# ------------------------------------------------------------ kernels
@numba.njit
def _nb_axpy(a: Any, x: Any, y: Any) -> Any:  # pragma: no cover - compiled
    return a * x + y


nb_axpy = lazy(as_numpy=True, elementwise=True)(_nb_axpy)


@numba.njit
def _nb_cube(x: Any) -> Any:  # pragma: no cover - compiled
    return x**3


@numba.njit
def _nb_cube_vjp(g: Any, out: Any, x: Any) -> Any:  # pragma: no cover - compiled
    return (3 * x**2 * g,)


nb_cube = lazy(as_numpy=True, elementwise=True, vjp=_nb_cube_vjp)(_nb_cube)


def _expit_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g * out * (1 - out),)


expit = lazy(as_numpy=True, elementwise=True, vjp=_expit_vjp)(special.expit)

KERNELS = {
    "numba": (nb_cube, _nb_cube, lambda x: float((x**3).sum())),
    "scipy": (expit, special.expit, lambda x: float(special.expit(x).sum())),
}


# ------------------------------------------------------------ NumPy beside JAX
@pytest.mark.parametrize("scalar", [2.0, np.float32(2)], ids=["float", "np.float32"])
@pytest.mark.parametrize("jit", [False, True])
def test_numpy_scalars_and_arrays_beside_jax_on_the_native_path(
    jit: bool, scalar: Any
) -> None:
    x = jnp.asarray(X, jnp.float32)
    host = np.arange(4, dtype=np.float32)

    def f(v: Any) -> Any:
        return nb_axpy(scalar, v, host)

    out = (jax.jit(f) if jit else f)(x)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, 2 * X.astype(np.float32) + host, rtol=1e-6)
    if jit and type(scalar) is float:  # a NumPy scalar static: the callback path
        _assert_native(_nb_axpy)


# ------------------------------------------------------------ derivatives
DERIVATIVES = {
    "eager grad": lambda k: jax.grad(lambda a: k(a).sum()),
    "eager jacfwd": lambda k: lambda a: jnp.diag(jax.jacfwd(k)(a)),
    "jit(grad)": lambda k: jax.jit(jax.grad(lambda a: k(a).sum())),
    "grad(jit)": lambda k: jax.grad(jax.jit(lambda a: k(a).sum())),
    "jacfwd(jit)": lambda k: lambda a: jnp.diag(jax.jacfwd(jax.jit(k))(a)),
}


@pytest.mark.parametrize("how", list(DERIVATIVES))
@pytest.mark.parametrize("which", list(KERNELS))
def test_derivatives_of_numpy_inputs(which: str, how: str) -> None:
    kernel, raw, loss = KERNELS[which]
    x = X.astype(np.float32)  # a NumPy array, as check_grads and users pass
    got = DERIVATIVES[how](kernel)(x)
    np.testing.assert_allclose(got, central_differences(loss, X), rtol=1e-4, atol=1e-6)
    if "jit" in how:
        _assert_native(raw)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("which", list(KERNELS))
def test_check_grads_with_numpy_beside_jax(which: str, jit: bool) -> None:
    kernel, raw, _ = KERNELS[which]
    w = jnp.asarray(np.linspace(0.5, 2.0, 4))  # closed over; x comes as NumPy

    def f(a: Any) -> Any:
        return kernel(a) * w

    g = jax.jit(f) if jit else f
    check_grads(g, (X,), order=1, modes=["rev", "fwd"])
    if jit:
        _assert_native(raw)


# ------------------------------------------------------------ integer output
@numba.njit
def _nb_split(x: Any) -> Any:  # pragma: no cover - compiled
    return np.sin(x), np.floor(x).astype(np.int32)


def _split_vjp(g: Any, out: Any, x: Any) -> Any:
    g_sin, g_floor = g
    assert not np.asarray(g_floor).any()  # the integer output's cotangent: zeros
    return (g_sin * np.cos(x),)


nb_split = lazy(
    as_numpy=True, shape=[(4,), (4,)], dtype=["float32", "int32"], vjp=_split_vjp
)(_nb_split)


@pytest.mark.parametrize("how", ["eager", "jit(grad)", "grad(jit)"])
def test_integer_output_beside_float_output_on_the_native_path(how: str) -> None:
    x = jnp.asarray(X, jnp.float32)
    sin, floor = jax.jit(nb_split)(x)
    np.testing.assert_allclose(sin, np.sin(X), rtol=1e-6)
    np.testing.assert_array_equal(floor, np.floor(X).astype(np.int32))
    assert floor.dtype == jnp.int32
    _assert_native(_nb_split)

    def loss(a: Any) -> Any:
        s, k = nb_split(a)
        return (s * k).sum()  # the integer output is not differentiated

    if how == "eager":
        grad = jax.grad(loss)
    elif how == "jit(grad)":
        grad = jax.jit(jax.grad(loss))
    else:
        grad = jax.grad(jax.jit(loss))
    expected = np.cos(X) * np.floor(X)
    np.testing.assert_allclose(grad(x), expected, rtol=1e-5, atol=1e-6)
