"""Declared derivatives: one vjp kernel gives ``jax.grad`` and a lazy ``f.vjp``.

Kernels: a Numba ``@njit`` kernel with an ``@njit`` vjp (elementwise), SciPy's
``erf`` (elementwise), SciPy's complete elliptic integrals ``K`` and ``E`` as one
kernel with two outputs, and a gufunc ``(n),(n)->()``. JAX is checked eagerly, inside
``jit``, under ``vmap`` of ``grad`` and with ``check_grads``; ``f.vjp`` runs on every
backend of ``tests/conftest.py`` that converts to NumPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, NotDifferentiableError, lazy

from .conftest import Backend, count_dask_computes

numba = pytest.importorskip("numba", reason="numba is not installed")
special = pytest.importorskip("scipy.special", reason="scipy is not installed")


# ------------------------------------------------------------------ kernels
@numba.njit(cache=False)
def _sin_scale(x: Any, y: Any) -> Any:
    return np.sin(x) * y


@numba.njit(cache=False)
def _sin_scale_vjp(g: Any, out: Any, x: Any, y: Any) -> Any:
    return g * np.cos(x) * y, g * np.sin(x)


def _sin_scale_jvp(t: Any, out: Any, x: Any, y: Any) -> Any:
    tx, ty = t
    return tx * np.cos(x) * y + ty * np.sin(x)


sin_scale = lazy(as_numpy=True, elementwise=True)(_sin_scale)
sin_scale.defvjp(_sin_scale_vjp)
# The same kernel with both rules: forward mode as well.
sin_scale_fj = lazy(as_numpy=True, elementwise=True, vjp=_sin_scale_vjp)(_sin_scale)
sin_scale_fj.defjvp(_sin_scale_jvp)
# A jvp alone: forward mode only.
sin_scale_jvp_only = lazy(as_numpy=True, elementwise=True, jvp=_sin_scale_jvp)(
    _sin_scale
)


@lazy(as_numpy=True, elementwise=True)
def erf(x: Any) -> Any:
    return special.erf(x)


@erf.defvjp
def erf_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g * (2 / math.sqrt(math.pi)) * np.exp(-(x**2)),)


# shape=[(), ()] (core shapes): main 9e467c7 fails a strict eager gufunc with several
# outputs and no shape= ("declared with 1 outputs but returned 2").
@lazy(as_numpy=True, signature="()->(),()", shape=[(), ()])
def ellipke(m: Any) -> Any:
    return special.ellipk(m), special.ellipe(m)


@ellipke.defvjp
def ellipke_vjp(g: Any, out: Any, m: Any) -> Any:
    (gk, ge), (k, e) = g, out
    dk = (e - (1 - m) * k) / (2 * m * (1 - m))
    de = (e - k) / (2 * m)
    return (gk * dk + ge * de,)


# shape=() (the core shape): main 9e467c7 checks a strict eager gufunc without
# shape= against the broadcast of its inputs.
@lazy(as_numpy=True, signature="(n),(n)->()", shape=())
def dot(a: Any, b: Any) -> Any:
    return np.einsum("...i,...i->...", a, b)


@dot.defvjp
def dot_vjp(g: Any, out: Any, a: Any, b: Any) -> Any:
    return g[..., None] * b, g[..., None] * a


@lazy(as_numpy=True, vjp=lambda g, out, x, n: (g * n, None))
def scale(x: Any, n: Any) -> Any:
    return x * n


def _bad_vjp(g: Any, out: Any, x: Any, y: Any) -> Any:
    return (g,)  # one cotangent for two arguments


bad = lazy(as_numpy=True, elementwise=True, vjp=_bad_vjp)(_sin_scale)
no_rule = lazy(as_numpy=True, elementwise=True)(_sin_scale)

X = np.linspace(0.1, 0.9, 6)
Y = np.linspace(-1.0, 2.0, 6)


# ------------------------------------------------------------------ JAX
@pytest.fixture
def jax() -> Any:
    return pytest.importorskip("jax", reason="jax is not installed")


def _sin_scale_loss(f: Any) -> Any:
    import jax.numpy as jnp

    return lambda x, y: jnp.sum(f(x, y) ** 2)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_grad_numba_kernel(jax: Any, jit: bool) -> None:
    import jax.numpy as jnp

    grad = jax.grad(_sin_scale_loss(sin_scale), argnums=(0, 1))
    want = jax.grad(_sin_scale_loss(lambda x, y: jnp.sin(x) * y), argnums=(0, 1))
    x, y = jnp.asarray(X, dtype="float32"), jnp.asarray(Y, dtype="float32")
    got = (jax.jit(grad) if jit else grad)(x, y)
    for g, w in zip(got, want(x, y), strict=True):
        assert isinstance(g, jax.Array)
        np.testing.assert_allclose(g, w, rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_value_and_grad_scipy_kernel(jax: Any, jit: bool) -> None:
    import jax.numpy as jnp

    fn = jax.value_and_grad(lambda x: jnp.sum(erf(x)))
    value, grad = (jax.jit(fn) if jit else fn)(jnp.asarray(X, dtype="float32"))
    np.testing.assert_allclose(value, special.erf(X).sum(), rtol=1e-5)
    np.testing.assert_allclose(grad, 2 / np.sqrt(np.pi) * np.exp(-(X**2)), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True], ids=["vmap", "jit(vmap)"])
def test_vmap_of_grad(jax: Any, jit: bool) -> None:
    import jax.numpy as jnp

    # SciPy's erf here: the Numba kernel would compile once more for 2-d batches.
    xs = jnp.asarray(np.stack([X, 2 * X, -3 * X]), dtype="float32")
    fn = jax.vmap(jax.grad(lambda x: jnp.sum(erf(x) * x)))
    got = (jax.jit(fn) if jit else fn)(xs)
    want = jax.vmap(jax.grad(lambda x: jnp.sum(jax.scipy.special.erf(x) * x)))(xs)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # A gufunc's vjp keeps its signature under vmap: batched in one callback.
    grad_dot = jax.vmap(jax.grad(dot))
    a = jnp.asarray(np.arange(12.0).reshape(4, 3), dtype="float32")
    got = (jax.jit(grad_dot) if jit else grad_dot)(a, 2 * a)
    np.testing.assert_allclose(got, 2 * a)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_several_outputs(jax: Any, jit: bool) -> None:
    import jax.numpy as jnp

    m = np.linspace(0.2, 0.8, 5)
    fn = jax.grad(lambda m: jnp.sum(ellipke(m)[0] + 2 * ellipke(m)[1]))
    got = (jax.jit(fn) if jit else fn)(jnp.asarray(m, dtype="float32"))
    h = 1e-6
    k = special.ellipk(m + h) - special.ellipk(m - h)
    e = special.ellipe(m + h) - special.ellipe(m - h)
    np.testing.assert_allclose(got, (k + 2 * e) / (2 * h), rtol=1e-4)
    # jax.vjp takes one cotangent per output; one of them may be zero.
    out, pull = jax.vjp(ellipke, jnp.asarray(m))
    (ct,) = pull((jnp.zeros_like(out[0]), jnp.ones_like(out[1])))
    np.testing.assert_allclose(ct, e / (2 * h), rtol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["sin_scale", "erf", "ellipke", "dot"],
)
def test_check_grads(jax: Any, case: str) -> None:
    from jax.test_util import check_grads

    a = np.linspace(0.2, 0.8, 6).reshape(2, 3)
    args = {
        "sin_scale": (sin_scale, (X, Y)),  # 1-d: compiled for the other tests already
        "erf": (erf, (a,)),
        "ellipke": (ellipke, (a,)),
        "dot": (dot, (a, a + 1)),
    }[case]
    f, operands = args
    jargs = tuple(jax.numpy.asarray(o) for o in operands)
    check_grads(f, jargs, order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
    check_grads(jax.jit(f), jargs, order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("how", ["jvp", "jit(jacfwd)"])
def test_forward_mode_from_the_vjp(jax: Any, how: str) -> None:
    import jax.numpy as jnp

    x, y = jnp.asarray(X), jnp.asarray(Y)
    f = lambda x: sin_scale(x, y)  # noqa: E731
    if how == "jvp":
        got = jax.jvp(f, (x,), (x,))[1]
        expected = np.cos(X) * Y * X
    else:
        got = jax.jit(jax.jacfwd(f))(x)
        expected = np.diag(np.cos(X) * Y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_defjvp_gives_forward_mode(jax: Any) -> None:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    x, y = jnp.asarray(X, dtype="float32"), jnp.asarray(Y, dtype="float32")
    out, tangent = jax.jvp(lambda x: sin_scale_fj(x, y), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(out, np.sin(X) * Y, rtol=1e-5)
    np.testing.assert_allclose(tangent, np.cos(X) * Y, rtol=1e-5)
    jac = jax.jit(jax.jacfwd(lambda x: sin_scale_fj(x, y)))(x)
    np.testing.assert_allclose(jac, np.diag(np.cos(X) * Y), rtol=1e-5, atol=1e-6)
    # Both modes with both rules declared.
    check_grads(sin_scale_fj, (x, y), order=1, modes=["fwd", "rev"], atol=2e-2)
    # A jvp alone gives forward mode; reverse mode names the missing vjp.
    _, t = jax.jvp(lambda x: sin_scale_jvp_only(x, y), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(t, np.cos(X) * Y, rtol=1e-5)
    with pytest.raises(NotDifferentiableError, match=r"reverse-mode.*\.defvjp"):
        jax.grad(lambda x: jnp.sum(sin_scale_jvp_only(x, y)))(x)


def test_bad_vjp_names_the_vjp(jax: Any) -> None:
    import jax.numpy as jnp

    fn = jax.grad(lambda x: jnp.sum(bad(x, x)))
    with pytest.raises(KernelOutputError, match=r"^_sin_scale_vjp: .*one cotangent"):
        fn(jnp.asarray(X))


# ------------------------------------------------------------------ f.vjp everywhere
def _eager_sin_scale_vjp(g: Any, x: Any, y: Any) -> tuple[Any, Any]:
    return g * np.cos(x) * y, g * np.sin(x)


def test_vjp_on_every_backend(backend: Backend) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True kernels refuse this library's arrays")
    g = np.linspace(1.0, 2.0, 6)
    x, y, gb = backend.asarray(X), backend.asarray(Y), backend.asarray(g)
    out = backend.call(sin_scale, x, y)
    gx, gy = backend.call(sin_scale.vjp, gb, out, x, y)
    want = _eager_sin_scale_vjp(g, X, Y)
    assert type(gx) is type(x) or backend is Backend.JAX_JIT
    np.testing.assert_allclose(backend.to_numpy(gx), want[0], rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(gy), want[1], rtol=1e-6)
    # A non-floating argument gets None, and a bad vjp is named on every backend.
    n = backend.asarray(np.arange(6))
    assert backend.call(scale.vjp, gb, out, x, n)[1] is None
    # Under jit the callback's error reaches the caller inside XLA's own error.
    expected: Any = KernelOutputError
    if backend is Backend.JAX_JIT:
        import jax

        expected = jax.errors.JaxRuntimeError
    with pytest.raises(expected, match="_sin_scale_vjp: the vjp must return one"):
        backend.to_numpy(backend.call(bad.vjp, gb, out, x, y)[0])


def test_vjp_without_rule() -> None:
    with pytest.raises(NotDifferentiableError, match=r"^_sin_scale: no vjp.*defvjp"):
        no_rule.vjp(X, X, X, Y)


def test_dask_vjp_runs_chunk_by_chunk() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    x = da.from_array(X, chunks=2)
    y = da.from_array(Y, chunks=2)
    with count_dask_computes() as counter:
        out = sin_scale(x, y)
        gx, gy = sin_scale.vjp(da.ones_like(out), out, x, y)
    assert counter.count == 0
    assert gx.chunks == x.chunks
    graph = dict(gx.__dask_graph__())
    vjp_tasks = [k for k in graph if isinstance(k, tuple) and "_sin_scale_vjp" in k[0]]
    assert len(vjp_tasks) == 3 * 2  # one task per chunk, one getter per output chunk
    want = _eager_sin_scale_vjp(np.ones(6), X, Y)
    np.testing.assert_allclose(gx.compute(), want[0])
    np.testing.assert_allclose(gy.compute(), want[1])
    # A gufunc's vjp: chunk by chunk along the loop axis.
    a = np.arange(12.0).reshape(6, 2)
    ad = da.from_array(a, chunks=(2, 2))
    o = dot(ad, 2 * ad)
    ga, gb = dot.vjp(da.ones_like(o), o, ad, 2 * ad)
    assert ga.chunks == ad.chunks
    chunk_tasks = [k for k in dict(ga.__dask_graph__()) if "dot_vjp" in k[0]]
    assert len(chunk_tasks) == 3 * 2
    np.testing.assert_allclose(ga.compute(), 2 * a)
    np.testing.assert_allclose(gb.compute(), a)


def test_dask_vjp_broadcast_argument_runs_whole() -> None:
    """A broadcast argument's cotangent spans chunks: one task on the whole array."""
    da = pytest.importorskip("dask.array", reason="dask is not installed")

    @lazy(as_numpy=True, elementwise=True)
    def mul(x: Any, w: Any) -> Any:
        return x * w

    @mul.defvjp
    def mul_vjp(g: Any, out: Any, x: Any, w: Any) -> Any:
        return g * w, (g * x).sum(axis=0)

    x = da.from_array(np.arange(12.0).reshape(4, 3), chunks=(2, 3))
    w = da.from_array(np.asarray([1.0, 2.0, 3.0]), chunks=3)
    out = mul(x, w)
    gx, gw = mul.vjp(da.ones_like(out), out, x, w)
    np.testing.assert_allclose(gw.compute(), np.arange(12.0).reshape(4, 3).sum(0))
    np.testing.assert_allclose(gx.compute(), np.broadcast_to([1.0, 2.0, 3.0], (4, 3)))


def test_rules_built_once_per_kernel_spec_and_statics(jax: Any) -> None:
    import jax.numpy as jnp

    from lazyapply._detect import find_adapter
    from lazyapply._engine import prepared

    @lazy(as_numpy=True, elementwise=True, vjp=lambda g, out, x, s: (g * s, None))
    def times(x: Any, s: float) -> Any:
        return x * s

    grad = jax.grad(lambda x, s: jnp.sum(times(x, s)))
    x = jnp.asarray(X)
    np.testing.assert_allclose(grad(x, 2.0), np.full(6, 2.0))
    # The engine's per-kernel preparation holds the stagings, one per signature.
    adapter, _ = find_adapter((x,), "times")
    stager = prepared(adapter, times.eager, times.spec)
    assert len(stager.stagings) == 1
    np.testing.assert_allclose(grad(x + 1, 2.0), np.full(6, 2.0))
    assert len(stager.stagings) == 1  # the same rules again
    np.testing.assert_allclose(grad(x, 3.0), np.full(6, 3.0))  # a new static value
    assert len(stager.stagings) == 2
