"""JAX: eager outside transformations, a host callback inside ``jit``/``vmap``/``grad``.

Covers the reference's JAX defects: ``vmap`` and ``grad`` outside ``jit`` (bare
``assert``), ``jit(vmap(...))`` (``NotImplementedError``), Python scalars turned into
strongly typed 64-bit arrays under ``jit`` (x64), and checks that keyword arguments are
never traced and that unknown sizes are refused inside ``jit``.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pytest

from lazyapply import lazy_apply
from tests._python import run_python

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
xpx = pytest.importorskip("array_api_extra", reason="the reference is not installed")


class Recorder:
    """A NumPy-only kernel (``np.asarray`` fails on a tracer) recording its inputs."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, a: Any, *rest: Any, **kwargs: Any) -> Any:
        self.calls.append(
            tuple((type(x), getattr(x, "shape", None)) for x in (a, *rest))
            + tuple(sorted((k, type(v)) for k, v in kwargs.items()))
        )
        a = np.asarray(a)
        return a.sum(axis=-1) + sum(np.asarray(r).sum() for r in rest if r is not None)


def total(a: Any) -> Any:
    return np.asarray(a).sum()


def test_eager_runs_now_on_concrete_arrays() -> None:
    rec = Recorder()
    x = jnp.ones((2, 3), dtype=jnp.float32)
    out = lazy_apply(rec, x, shape=(2,), dtype="float32")
    assert rec.calls == [((type(x), (2, 3)),)]  # a concrete jax.Array, not a tracer
    assert isinstance(out, jax.Array)
    np.testing.assert_array_equal(out, [3.0, 3.0])


def test_jit_defers_to_execution() -> None:
    rec = Recorder()
    f = jax.jit(lambda a: lazy_apply(rec, a, shape=(2,), dtype="float32"))
    x = jnp.ones((2, 3), dtype=jnp.float32)
    lowered = f.lower(x)  # tracing and lowering do not run the kernel
    assert rec.calls == []
    assert "callback" in lowered.as_text()
    np.testing.assert_array_equal(f(x), [3.0, 3.0])
    assert len(rec.calls) == 1
    (args,) = rec.calls
    assert args[0][1] == (2, 3)
    assert not issubclass(args[0][0], jax.core.Tracer)


def test_vmap_outside_jit_is_sequential() -> None:
    rec = Recorder()
    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    out = jax.vmap(lambda a: lazy_apply(rec, a, shape=(), dtype="float32"))(x)
    np.testing.assert_array_equal(out, np.arange(12.0).reshape(4, 3).sum(axis=1))
    assert len(rec.calls) == 4
    assert {c[0][1] for c in rec.calls} == {(3,)}  # one unbatched row per call


def test_vmap_inside_jit() -> None:
    rec = Recorder()
    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    f = jax.jit(jax.vmap(lambda a: lazy_apply(rec, a, shape=(), dtype="float32")))
    np.testing.assert_array_equal(f(x), np.arange(12.0).reshape(4, 3).sum(axis=1))
    assert {c[0][1] for c in rec.calls} == {(3,)}


def test_vmap_with_unbatched_argument_scalar_and_kwargs() -> None:
    rec = Recorder()
    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    y = jnp.ones(3, dtype=jnp.float32)

    def f(a: Any, b: Any) -> Any:
        return lazy_apply(rec, a, b, None, shape=(), dtype="float32", tag="t")

    out = jax.jit(jax.vmap(f, in_axes=(0, None)))(x, y)
    np.testing.assert_array_equal(out, np.arange(12.0).reshape(4, 3).sum(axis=1) + 3)
    assert len(rec.calls) == 4
    assert {(c[0][1], c[1][1], c[2]) for c in rec.calls} == {
        ((3,), (3,), (type(None), None))
    }
    assert {c[3] for c in rec.calls} == {("tag", str)}


def test_vmap_several_outputs() -> None:
    def stats(a: Any) -> tuple[Any, Any]:
        a = np.asarray(a)
        return a.min(), a.max()

    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    lo, hi = jax.jit(
        jax.vmap(lambda a: lazy_apply(stats, a, shape=[(), ()], dtype=["float32"] * 2))
    )(x)
    np.testing.assert_array_equal(lo, [0, 3, 6, 9])
    np.testing.assert_array_equal(hi, [2, 5, 8, 11])


def test_reference_vmap_defects() -> None:
    x = jnp.ones((2, 3), dtype=jnp.float32)
    with pytest.raises(AssertionError):  # bare assert outside jit
        jax.vmap(lambda a: xpx.lazy_apply(lambda b: b.sum(), a, shape=()))(x)
    with pytest.raises(NotImplementedError):  # no vmap_method inside jit
        jax.jit(jax.vmap(lambda a: xpx.lazy_apply(lambda b: b.sum(), a, shape=())))(x)


def test_reference_grad_defect() -> None:
    with pytest.raises(AssertionError):
        jax.grad(lambda a: xpx.lazy_apply(lambda b: b.sum(), a, shape=()))(jnp.ones(3))


def test_stop_gradient_is_the_way_out() -> None:
    def loss(a: Any) -> Any:
        stopped = lazy_apply(total, jax.lax.stop_gradient(a), shape=(), dtype="float32")
        return (a * stopped).sum()

    np.testing.assert_array_equal(
        jax.grad(loss)(jnp.ones(3, dtype=jnp.float32)), [3.0] * 3
    )


@pytest.mark.parametrize(
    ("dtype", "scalar"), [("float32", 2.0), ("int32", 3), ("bfloat16", 2.0)]
)
def test_scalars_stay_weak_under_jit(dtype: str, scalar: Any) -> None:
    seen: list[type] = []

    def scale(a: Any, s: Any) -> Any:
        seen.append(type(s))
        return a * s

    x = jnp.arange(4).astype(dtype)
    out = jax.jit(lambda a: lazy_apply(scale, a, scalar))(x)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(
        np.asarray(out, dtype=np.float64), np.arange(4) * scalar
    )
    assert seen == [type(scalar)]  # the kernel gets the Python scalar itself


_X64_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    import array_api_extra as xpx
    from lazyapply import lazy_apply

    x = jnp.arange(3, dtype=jnp.float32)
    out = jax.jit(lambda a: lazy_apply(lambda b, s: b * s, a, 2.0))(x)
    assert out.dtype == jnp.float32, out.dtype
    out = jax.jit(lambda a: lazy_apply(lambda b, s: b * s, a, 2))(x.astype(jnp.int32))
    assert out.dtype == jnp.int32, out.dtype
    try:
        f = jax.jit(lambda a: xpx.lazy_apply(lambda b, s: b * s, a, 2.0))
        f(x).block_until_ready()
    except Exception as exc:
        print("reference failed:", type(exc).__name__)
    else:
        print("reference passed")
    """
)


@pytest.mark.slow
def test_scalars_stay_weak_with_x64_and_reference_does_not() -> None:
    env = {"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    proc = run_python("-c", _X64_SCRIPT, env=env, timeout=120)
    assert "reference failed: JaxRuntimeError" in proc.stdout


def test_kwargs_never_traced() -> None:
    seen: list[Any] = []

    def kernel(a: Any, *, n: Any, axes: Any, mode: Any) -> Any:
        seen.append((n, axes, mode))
        assert type(n) is int
        return np.asarray(a)[:n].sum(axis=axes[0])

    x = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
    f = jax.jit(
        lambda a: lazy_apply(
            kernel, a, shape=(3,), dtype="float32", n=2, axes=[0], mode={"k": "v"}
        )
    )
    np.testing.assert_array_equal(f(x), [3.0, 5.0, 7.0])
    assert seen == [(2, [0], {"k": "v"})]


@pytest.mark.parametrize(
    "shape", [(None,), (2, None), [(3,), (None,)]], ids=["1d", "2d", "second-output"]
)
def test_unknown_size_refused_inside_jit(shape: Any) -> None:
    multi = isinstance(shape, list)
    dtype = ["float32", "float32"] if multi else "float32"
    f = jax.jit(lambda a: lazy_apply(total, a, shape=shape, dtype=dtype))
    with pytest.raises(ValueError, match="Output shape must be fully known") as info:
        f(jnp.ones(3))
    assert "total" in str(info.value)


def test_exception_inside_jit_reported_by_jax() -> None:
    def broken(a: Any) -> Any:
        msg = "kernel failed inside jit"
        raise LookupError(msg)

    f = jax.jit(lambda a: lazy_apply(broken, a))
    with pytest.raises(jax.errors.JaxRuntimeError, match="LookupError: kernel failed"):
        f(jnp.ones(3)).block_until_ready()
    # Outside jit the kernel's own exception propagates unchanged.
    with pytest.raises(LookupError, match="kernel failed inside jit"):
        lazy_apply(broken, jnp.ones(3))


def test_declared_float64_without_x64_is_stored_as_float32() -> None:
    x = jnp.arange(3, dtype=jnp.float32)
    kernel = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    for out in (
        lazy_apply(kernel, x, dtype="float64"),
        jax.jit(lambda a: lazy_apply(kernel, a, dtype="float64"))(x),
    ):
        assert out.dtype == jax.dtypes.canonicalize_dtype(np.float64)
        np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])


@pytest.mark.parametrize("transform", ["jit", "vmap", "jit_vmap"])
def test_kernel_without_as_numpy_gets_jax_arrays_under_jit(transform: str) -> None:
    # As jax.pure_callback gives them and array_api_extra's suite checks: the
    # namespace of the kernel's arguments is jax.numpy (the host callback once
    # handed over NumPy views).
    seen: list[type] = []

    def kernel(x):
        seen.append(type(x))
        return x + 1

    def f(x):
        return lazy_apply(kernel, x, shape=x.shape, dtype=x.dtype)

    run = {
        "jit": jax.jit(f),
        "vmap": jax.vmap(f),
        "jit_vmap": jax.jit(jax.vmap(f)),
    }[transform]
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(np.asarray(run(x)), np.arange(6.0).reshape(2, 3) + 1)
    assert seen, "the kernel did not run"
    assert all(issubclass(t, jax.Array) for t in seen), seen
