"""JAX without surprises: static keys, immutable inputs, gradients on every input JAX
accepts, second derivatives and mixed NumPy arguments (errors under ``jax.jit``:
test_jax_errors.py).

Every case runs eagerly and under ``jax.jit`` (the callback path), and values are
compared with the same kernel on NumPy; gradients with NumPy's finite differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import NotDifferentiableError, SpecError, lazy

from ._finite import central_differences

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
from jax.test_util import check_grads  # noqa: E402

X = np.asarray([0.3, -1.2, 2.0, 0.7])


def _modes(f: Any) -> list[Any]:
    return [f, jax.jit(f)]


# ------------------------------------------------------------ static-argument keys
# Equal-but-different static arguments (0.0/-0.0, 1/1.0/True, tuples, NaN, NumPy
# scalars), positional or keyword, through jax.jit and jax.grad eager and under jit:
# tests/test_static_key.py and the path matrix. The native path: below.


# ------------------------------------------------------------ immutable inputs
# A kernel writing into its input (in place, through .flat; NumPy and Numba) is
# refused on every JAX path: tests/test_behaviour_paths.py, written once for all.


def test_numpy_array_beside_jax_is_read_only_too() -> None:
    @lazy(as_numpy=True)
    def add_into(x: Any, y: Any) -> Any:
        y += x
        return y

    host = X.copy()
    with pytest.raises(SpecError, match=r"x = x\.copy\(\)"):
        add_into(jnp.asarray(X), host)
    np.testing.assert_array_equal(host, X)


# ------------------------------------------------------------ gradients, NumPy inputs
@lazy(as_numpy=True, elementwise=True)
def cube(x: Any) -> Any:
    return x**3


@cube.defvjp
def _cube_vjp(g: Any, out: Any, x: Any) -> Any:
    return (3 * x**2 * g,)


@cube.defjvp
def _cube_jvp(t: Any, out: Any, x: Any) -> Any:
    return 3 * x**2 * t[0]


def _cube_loss(x: np.ndarray) -> float:
    return float((x**3).sum())


@pytest.mark.parametrize("how", ["grad", "vjp", "jvp", "jacfwd", "jacrev", "linearize"])
def test_eager_derivatives_of_numpy_inputs(how: str) -> None:
    x = X.astype(np.float32)  # a NumPy array, as check_grads and users pass
    expected = central_differences(_cube_loss, X)
    if how == "grad":
        got = jax.grad(lambda a: cube(a).sum())(x)
    elif how == "vjp":
        _, pull = jax.vjp(cube, x)
        (got,) = pull(np.ones(4, np.float32))
    elif how == "jvp":
        got = np.stack(
            [
                jax.jvp(lambda a: cube(a).sum(), (x,), (e,))[1]
                for e in np.eye(4, dtype=np.float32)
            ]
        )
    elif how == "jacfwd":
        got = np.diag(jax.jacfwd(cube)(x))
    elif how == "jacrev":
        got = np.diag(jax.jacrev(cube)(x))
    else:  # evaluated forward: the jvp rule, not the custom_vjp
        _, lin = jax.linearize(lambda a: cube(a).sum(), x)
        got = np.stack([lin(e) for e in np.eye(4, dtype=np.float32)])
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("modes", [["rev"], ["fwd"]])
def test_check_grads_with_numpy_beside_jax(modes: list[str]) -> None:
    @lazy(as_numpy=True, elementwise=True)
    def mul(x: Any, w: Any) -> Any:
        return x * w

    @mul.defvjp
    def _mul_vjp(g: Any, out: Any, x: Any, w: Any) -> Any:
        return g * w, g * x

    @mul.defjvp
    def _mul_jvp(t: Any, out: Any, x: Any, w: Any) -> Any:
        tx, tw = t
        return (0 if tx is None else tx * w) + (0 if tw is None else tw * x)

    w = jnp.asarray(X)  # closed over: check_grads perturbs x with NumPy arrays
    check_grads(lambda a: mul(a, w), (X,), order=1, modes=modes)


@pytest.mark.parametrize("jit", [False, True])
def test_integer_output_beside_float_output(jit: bool) -> None:
    @lazy(as_numpy=True, shape=[(4,), (4,)], dtype=["float32", "int32"])
    def split(x: Any) -> Any:
        return np.sin(x).astype(np.float32), np.floor(x).astype(np.int32)

    @split.defvjp
    def _split_vjp(g: Any, out: Any, x: Any) -> Any:
        g_sin, g_floor = g
        assert not g_floor.any()  # the integer output's cotangent: zeros
        return (g_sin * np.cos(x),)

    grad = jax.grad(lambda a: split(a)[0].sum())
    got = (jax.jit(grad) if jit else grad)(jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(got, np.cos(X), rtol=1e-5)


# ------------------------------------------------------------ second derivatives
@lazy(as_numpy=True, elementwise=True)
def _cube2_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
    (gg_x,) = gg
    return 3 * x**2 * gg_x, None, 6 * x * g * gg_x


@lazy(as_numpy=True, elementwise=True, vjp=_cube2_vjp_vjp)
def _cube2_vjp(g: Any, out: Any, x: Any) -> Any:
    return (3 * x**2 * g,)


@lazy(as_numpy=True, elementwise=True, vjp=_cube2_vjp)
def cube2(x: Any) -> Any:
    return x**3


@pytest.mark.parametrize("jit", [False, True])
def test_grad_of_grad_with_the_vjps_own_vjp(jit: bool) -> None:
    f = jax.grad(lambda a: jax.grad(lambda b: cube2(b).sum())(a).sum())
    got = (jax.jit(f) if jit else f)(jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(got, 6 * X, rtol=1e-5)  # d/dx sum(3x^2)
    hess = jax.jacrev(jax.jacrev(lambda a: cube2(a).sum()))(jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(hess, np.diag(6 * X), rtol=1e-5)


def test_check_grads_order_two() -> None:
    check_grads(lambda a: cube2(a).sum(), (X,), order=2, modes=["rev"])


def test_second_derivative_without_the_vjps_vjp_names_it() -> None:
    f = jax.grad(lambda a: jax.grad(lambda b: cube(b).sum())(a).sum())
    with pytest.raises(NotDifferentiableError, match=r"vjp of cube has no vjp") as info:
        f(jnp.asarray(X, jnp.float32))
    assert "@lazy(vjp=...)" in str(info.value)


def test_hessian_with_the_vjps_own_vjp() -> None:
    got = jax.hessian(lambda a: cube2(a).sum())(jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(got, np.diag(6 * X), rtol=1e-5)


# ------------------------------------------------------------ NumPy beside JAX
@lazy(as_numpy=True, elementwise=True)
def axpy(a: Any, x: Any, y: Any) -> Any:
    return a * x + y


@pytest.mark.parametrize("jit", [False, True])
def test_numpy_scalars_and_arrays_beside_jax(jit: bool) -> None:
    x = jnp.asarray(X, jnp.float32)
    host = np.arange(4, dtype=np.float32)
    f = (
        (lambda v: axpy(np.float32(2), v, host))
        if not jit
        else jax.jit(lambda v: axpy(np.float32(2), v, host))
    )
    out = f(x)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, 2 * X.astype(np.float32) + host, rtol=1e-6)


def test_numpy_beside_dask_is_dask() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    x = da.from_array(X, chunks=2)
    out = axpy(np.float64(2), x, np.arange(4.0))
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), 2 * X + np.arange(4.0))


def test_numpy_scalar_beside_torch_numpy_array_is_still_mixed() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    t = torch.asarray(X)
    np.testing.assert_allclose(axpy(np.float64(2), t, t).numpy(), 3 * X)
    from lazyapply import MixedNamespaceError

    with pytest.raises(MixedNamespaceError, match="NumPy scalars may go with any"):
        axpy(2.0, t, np.arange(4.0))


def test_vjp_defvjp_declares_the_second_order_rule() -> None:
    @lazy(as_numpy=True, elementwise=True)
    def quartic(x: Any) -> Any:
        return x**4

    @quartic.defvjp
    def _quartic_vjp(g: Any, out: Any, x: Any) -> Any:
        return (4 * x**3 * g,)

    @quartic.vjp.defvjp
    def _quartic_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
        return 4 * x**3 * gg[0], None, 12 * x**2 * g * gg[0]

    x = jnp.asarray(X, jnp.float32)
    (g1,) = quartic.vjp(jnp.ones(4), quartic(x), x)
    np.testing.assert_allclose(g1, 4 * X**3, rtol=1e-5)
    for f in _modes(jax.grad(lambda a: jax.grad(lambda b: quartic(b).sum())(a).sum())):
        np.testing.assert_allclose(f(x), 12 * X**2, rtol=1e-5)
    check_grads(lambda a: quartic(a).sum(), (X,), order=2, modes=["rev"])


# ------------------------------------------------------------ the native path
def test_equal_statics_on_the_native_path() -> None:
    numba = pytest.importorskip("numba", reason="numba is not installed")
    from lazyapply import explain_native

    @numba.vectorize(["float32(float32, float64)"])
    def nb_signed(x: Any, s: Any) -> Any:  # pragma: no cover - compiled
        return x * x * np.float32(np.copysign(1.0, s))

    def nb_signed_vjp(g: Any, out: Any, x: Any, s: Any) -> Any:
        return ((2 * x * g * np.copysign(1.0, s)).astype(x.dtype), None)

    kernel = lazy(as_numpy=True, vjp=nb_signed_vjp)(nb_signed)
    x = jnp.asarray(X, jnp.float32)
    host = X.astype(np.float32)
    for s in (0.0, -0.0, 1, 1.0, -1.0):
        got = jax.jit(lambda a, s=s: kernel(a, s))(x)
        assert explain_native(nb_signed).startswith("native"), explain_native(nb_signed)
        np.testing.assert_allclose(got, nb_signed(host, s), rtol=1e-6)
        grad = jax.jit(jax.grad(lambda a, s=s: kernel(a, s).sum()))(x)
        expected = nb_signed_vjp(np.ones(4, np.float32), None, host, s)[0]
        np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_adopted_numpy_array_takes_part_in_the_inferred_shape() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")

    @lazy
    def add(x: Any, y: Any) -> Any:
        return x + y

    wide = np.arange(12.0).reshape(3, 4)
    expected = np.ones(4) + wide
    np.testing.assert_allclose(add(da.ones(4), wide).compute(), expected)
    np.testing.assert_allclose(add(jnp.ones(4), wide), expected)
    np.testing.assert_allclose(jax.jit(lambda a: add(a, wide))(jnp.ones(4)), expected)
