"""Forward mode from a declared vjp: ``jax.jvp``, ``jax.linearize``, ``jax.hessian``.

A kernel with a vjp gets forward mode from it (``J t`` read off ``J^T``); with the
vjp's own vjp, ``jax.hessian`` (forward over reverse), ``jax.jacrev(jax.jacfwd(f))``
and ``check_grads(order=2, modes=["fwd", "rev"])`` work. Plain NumPy, Numba and SciPy
special kernels, elementwise (diagonal Jacobian) and whole-array (materialised
Jacobian), eagerly and under ``jax.jit``; values against the analytic derivatives and
finite differences of NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import NotDifferentiableError, explain_native, lazy

from ._finite import central_differences

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
from jax.test_util import check_grads  # noqa: E402

X = np.asarray([0.3, -1.2, 2.0, 0.7])
Y = np.asarray([1.5, 0.5, -0.4, 2.0])


# ------------------------------------------------------------ x * y**2 (NumPy)
@lazy(as_numpy=True, elementwise=True)
def _xy2_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any, y: Any) -> Any:
    ggx, ggy = gg  # <gg, (g y^2, 2 g x y)> differentiated by g, out, x, y
    return (
        ggx * y**2 + 2 * ggy * x * y,
        None,
        2 * ggy * g * y,
        2 * g * (ggx * y + ggy * x),
    )


@lazy(as_numpy=True, elementwise=True, vjp=_xy2_vjp_vjp)
def _xy2_vjp(g: Any, out: Any, x: Any, y: Any) -> Any:
    return g * y**2, 2 * g * x * y


@lazy(as_numpy=True, elementwise=True, vjp=_xy2_vjp)
def xy2(x: Any, y: Any) -> Any:
    return x * y**2


def _xy2_loss(x: Any, y: Any) -> Any:
    return jnp.sum(jnp.sin(xy2(x, y)))


def _xy2_hessian_x(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.diag(-np.sin(x * y**2) * y**4)


def _hessian(f: Any, how: str, **options: Any) -> Any:
    """``jax.hessian`` of ``f`` eagerly, under ``jax.jit`` (``jit(hessian(f))``,
    where the trace sees the derivative) or of a jitted ``f`` (``hessian(jit(f))``,
    where the kernel is staged before JAX knows which mode will differentiate it)."""
    if how == "jit inside":
        return jax.hessian(jax.jit(f), **options)
    hess = jax.hessian(f, **options)
    return jax.jit(hess) if how == "jit outside" else hess


HOW = ["eager", "jit outside", "jit inside"]


@pytest.mark.parametrize("how", HOW)
def test_hessian_of_a_numpy_kernel_with_two_arguments(how: str) -> None:
    got = _hessian(_xy2_loss, how)(jnp.asarray(X), jnp.asarray(Y))
    np.testing.assert_allclose(got, _xy2_hessian_x(X, Y), rtol=1e-5, atol=1e-6)
    both = _hessian(_xy2_loss, how, argnums=(0, 1))(jnp.asarray(X), jnp.asarray(Y))
    dyy = np.diag(2 * X * np.cos(X * Y**2) - np.sin(X * Y**2) * (2 * X * Y) ** 2)
    np.testing.assert_allclose(both[1][1], dyy, rtol=1e-5, atol=1e-6)


def test_forward_over_reverse_and_reverse_over_forward_agree() -> None:
    x, y = jnp.asarray(X), jnp.asarray(Y)
    f = lambda a: _xy2_loss(a, y)  # noqa: E731
    expected = _xy2_hessian_x(X, Y)
    jf = jax.jit(f)
    for hess in (
        jax.jit(jax.jacfwd(jax.jacrev(f))),
        jax.jit(jax.jacrev(jax.jacfwd(f))),
        jax.jacfwd(jax.jacrev(jf)),
        jax.jacrev(jax.jacfwd(jf)),
        jax.jacfwd(jax.jit(jax.jacrev(f))),
        jax.jacrev(jax.jit(jax.jacfwd(f))),
    ):
        np.testing.assert_allclose(hess(x), expected, rtol=1e-5, atol=1e-6)
    for g in (f, jf):
        check_grads(g, (x,), order=2, modes=["fwd", "rev"])
    check_grads(_xy2_loss, (x, y), order=2, modes=["fwd", "rev"])
    check_grads(jax.jit(_xy2_loss), (x, y), order=2, modes=["fwd", "rev"])


@pytest.mark.parametrize("how", HOW)
def test_jvp_and_linearize_from_the_vjp(how: str) -> None:
    x, y = jnp.asarray(X), jnp.asarray(Y)
    t = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    kernel = jax.jit(xy2) if how == "jit inside" else xy2

    def both(a: Any, b: Any, v: Any) -> Any:
        _, jvp_t = jax.jvp(lambda c: kernel(c, b), (a,), (v,))
        _, lin = jax.linearize(lambda c: kernel(c, b), a)
        return jvp_t, lin(v), jax.jacfwd(lambda c: kernel(c, b))(a) @ v

    run = jax.jit(both) if how == "jit outside" else both
    for got in run(x, y, t):
        np.testing.assert_allclose(got, Y**2 * np.asarray(t), rtol=1e-6)


# ------------------------------------------------------------ whole array (NumPy)
@lazy(as_numpy=True)
def _spread_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
    (h,) = gg  # V(g, x) = g * |x|^2 + 2 x <g, x>
    s = np.sum(x**2)
    dg = h * s + 2 * x * np.dot(h, x)
    dx = 2 * x * np.dot(g, h) + 2 * h * np.dot(g, x) + 2 * g * np.dot(x, h)
    return dg, None, dx


@lazy(as_numpy=True, vjp=_spread_vjp_vjp)
def _spread_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g * np.sum(x**2) + 2 * x * np.dot(g, x),)


@lazy(as_numpy=True, vjp=_spread_vjp)
def spread(x: Any) -> Any:
    """``x * |x|^2``: every output depends on every input."""
    return x * np.sum(x**2)


def _spread_np_grad(x: np.ndarray) -> np.ndarray:
    out = x * np.sum(x**2)  # d/dx sum(out^2) = 2 J^T out
    return 2 * (out * np.sum(x**2) + 2 * x * np.dot(out, x))


@pytest.mark.parametrize("how", HOW)
def test_hessian_of_a_whole_array_kernel(how: str) -> None:
    def loss(a: Any) -> Any:
        return jnp.sum(spread(a) ** 2)

    got = np.asarray(_hessian(loss, how)(jnp.asarray(X)))
    expected = jax.hessian(lambda a: jnp.sum((a * jnp.sum(a**2)) ** 2))(jnp.asarray(X))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        got, central_differences(_spread_np_grad, X, 1e-5), rtol=1e-4
    )
    f = jax.jit(loss) if how == "jit inside" else loss
    check_grads(f, (jnp.asarray(X),), order=2, modes=["fwd", "rev"])


# ------------------------------------------------------------ Numba
def test_hessian_of_a_numba_kernel() -> None:
    numba = pytest.importorskip("numba", reason="numba is not installed")

    @lazy(as_numpy=True, elementwise=True)
    @numba.njit
    def xsin_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
        (h,) = gg  # V = g (sin x + x cos x)
        return (
            h * (np.sin(x) + x * np.cos(x)),
            None,
            h * g * (2 * np.cos(x) - x * np.sin(x)),
        )

    @lazy(as_numpy=True, elementwise=True, vjp=xsin_vjp_vjp)
    @numba.njit
    def xsin_vjp(g: Any, out: Any, x: Any) -> Any:
        return (g * (np.sin(x) + x * np.cos(x)),)

    @lazy(as_numpy=True, elementwise=True, vjp=xsin_vjp)
    @numba.njit
    def xsin(x: Any) -> Any:
        return x * np.sin(x)

    loss = lambda a: jnp.sum(xsin(a))  # noqa: E731
    expected = np.diag(2 * np.cos(X) - X * np.sin(X))
    for how in HOW:
        got = _hessian(loss, how)(jnp.asarray(X))
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=how)
    assert explain_native(xsin.__wrapped__).startswith("native")
    for f in (loss, jax.jit(loss)):
        check_grads(f, (jnp.asarray(X),), order=2, modes=["fwd", "rev"])


# ------------------------------------------------------------ SciPy special
def test_newton_step_with_the_hessian_of_a_scipy_special_loss() -> None:
    special = pytest.importorskip("scipy.special", reason="scipy is not installed")

    @lazy(as_numpy=True, elementwise=True)
    def gammaln_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
        (h,) = gg
        return h * special.digamma(x), None, h * g * special.polygamma(1, x)

    @lazy(as_numpy=True, elementwise=True, vjp=gammaln_vjp_vjp)
    def gammaln_vjp(g: Any, out: Any, x: Any) -> Any:
        return (g * special.digamma(x),)

    @lazy(as_numpy=True, elementwise=True, vjp=gammaln_vjp)
    def gammaln(x: Any) -> Any:
        return special.gammaln(x)

    c = jnp.asarray([0.5, 1.0, 2.0])
    loss = lambda t: jnp.sum(gammaln(t) - c * t)  # noqa: E731
    grad, hess = jax.jit(jax.grad(loss)), jax.jit(jax.hessian(loss))
    theta = jnp.asarray([1.0, 2.0, 3.0])
    for _ in range(8):
        theta = theta - jnp.linalg.solve(hess(theta), grad(theta))
    np.testing.assert_allclose(special.digamma(np.asarray(theta)), c, rtol=1e-5)
    trigamma = np.diag(special.polygamma(1, np.asarray(theta)))
    np.testing.assert_allclose(hess(theta), trigamma, rtol=1e-5)
    np.testing.assert_allclose(jax.hessian(jax.jit(loss))(theta), trigamma, rtol=1e-5)
    check_grads(loss, (theta,), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------ what stays refused
@lazy(as_numpy=True, elementwise=True)
def cube(x: Any) -> Any:
    return x**3


@cube.defvjp
def _cube_vjp(g: Any, out: Any, x: Any) -> Any:  # and no vjp of its own
    return (3 * x**2 * g,)


def test_hessian_without_the_vjps_own_vjp_names_what_to_declare() -> None:
    x = jnp.asarray(X)
    _, t = jax.jvp(cube, (x,), (jnp.ones_like(x),))  # first order: from the vjp
    np.testing.assert_allclose(t, 3 * X**2, rtol=1e-6)
    with pytest.raises(NotDifferentiableError, match=r"vjp of cube has no vjp") as info:
        jax.hessian(lambda a: cube(a).sum())(x)
    assert "@cube.vjp.defvjp" in str(info.value)


def test_hessian_of_a_jitted_function_without_the_vjps_own_vjp() -> None:
    x = jnp.asarray(X)
    loss = jax.jit(lambda a: cube(a).sum())
    np.testing.assert_allclose(jax.grad(loss)(x), 3 * X**2, rtol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(loss)(x), 3 * X**2, rtol=1e-6)
    with pytest.raises(NotDifferentiableError, match=r"vjp of cube has no vjp") as info:
        jax.hessian(loss)(x)
    assert "@cube.vjp.defvjp" in str(info.value)


# ------------------------------------------------------------ which rule runs
def test_reverse_mode_of_a_jitted_function_calls_the_vjp_once() -> None:
    """``grad(jit(f))`` of a whole-array kernel: the primal and one vjp call, on
    the unbatched shapes, as with ``jit(grad(f))`` (no Jacobian is materialised)."""
    seen: list[tuple[str, tuple[int, ...]]] = []

    @lazy(as_numpy=True)
    def spread_vjp(g: Any, out: Any, x: Any) -> Any:
        seen.append(("vjp", g.shape))
        return (g * np.sum(x**2) + 2 * x * np.dot(g, x),)

    @lazy(as_numpy=True, vjp=spread_vjp)
    def spread_counted(x: Any) -> Any:
        seen.append(("f", x.shape))
        return x * np.sum(x**2)

    def loss(a: Any) -> Any:
        return jnp.sum(spread_counted(a) ** 2)

    for grad in (jax.grad(jax.jit(loss)), jax.jit(jax.grad(jax.jit(loss)))):
        seen.clear()
        np.testing.assert_allclose(grad(jnp.asarray(X)), _spread_np_grad(X), rtol=1e-5)
        assert seen == [("f", (4,)), ("vjp", (4,))]


def test_jitted_function_with_a_declared_jvp_and_vjp_uses_each() -> None:
    seen: list[str] = []

    def cube_vjp(g: Any, out: Any, x: Any) -> Any:
        seen.append("vjp")
        return (3 * x**2 * g,)

    def cube_jvp(t: Any, out: Any, x: Any) -> Any:
        seen.append("jvp")
        return 3 * x**2 * t[0]  # one tangent per float argument

    cube = lazy(as_numpy=True, elementwise=True, vjp=cube_vjp, jvp=cube_jvp)(
        lambda x: x**3
    )
    x, t = jnp.asarray(X), jnp.asarray(Y)
    f = jax.jit(cube)
    _, got = jax.jvp(f, (x,), (t,))
    np.testing.assert_allclose(got, 3 * X**2 * Y, rtol=1e-6)
    assert seen == ["jvp"]
    seen.clear()
    np.testing.assert_allclose(jax.grad(lambda a: f(a).sum())(x), 3 * X**2, rtol=1e-6)
    assert seen == ["vjp"]
