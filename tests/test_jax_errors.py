"""Errors under ``jax.jit`` lead with the kernel's message and the fix.

JAX keeps only the text of an error raised while a compiled program runs. On the
callback path (lazyapply's own FFI target on one CPU device) and the native path
(a Numba kernel's handler, re-run in Python for its message) that text is lazyapply's
alone: the first line of ``str(exc)`` and the exception line of the printed traceback
are ``<XLA status>: <kernel> (jax (traced)): <what happened>; <fix>``, with no
Python stack or ``CpuCallback`` header before it, and nothing is logged first.
Every case: a kernel that raises, a wrong output shape and a Numba kernel failing in
native code, under ``jax.jit``, ``jax.vmap`` (with and without ``jit``) and
``jax.grad`` (each kernel declares a vjp). Values on the same route are compared
with NumPy.
"""

from __future__ import annotations

import gc
import logging
import re
import traceback
from typing import Any

import numpy as np
import pytest

from lazyapply import explain_native, lazy, lazy_apply
from lazyapply.testing import clear_caches

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
numba = pytest.importorskip("numba", reason="numba is not installed")

X = np.asarray([0.5, -1.0, 2.0, 3.5])


def _identity_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g,)


@lazy(as_numpy=True, vjp=_identity_vjp)
def raising(x: Any) -> Any:
    msg = "negative input\nsecond line of the kernel's message"
    raise ValueError(msg)


@lazy(as_numpy=True, vjp=_identity_vjp)
def doubled(x: Any) -> Any:
    """Returns twice as many elements as its (inferred) output shape."""
    return np.concatenate([x, x])


@numba.njit
def _nb_checked(x: Any) -> Any:  # pragma: no cover - compiled
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        if x[i] < 0:
            raise ValueError("x must be >= 0")
        out[i] = np.sqrt(x[i])
    return out


nb_checked = lazy(as_numpy=True, vjp=_identity_vjp)(_nb_checked)

CASES = {
    "raising": (
        raising,
        "the kernel raised ValueError: negative input.",
        "Call it outside jax.jit (on concrete arrays) to see its own traceback",
    ),
    "wrong shape": (
        doubled,
        "output 0 has shape (",
        "declare shape= with what the kernel returns",
    ),
    "native": (
        nb_checked,
        "the kernel raised ValueError: x must be >= 0.",
        "Call it outside jax.jit (on concrete arrays) to see its own traceback",
    ),
}

TRANSFORMS = {
    "jit": lambda k: (jax.jit(k), X),
    "vmap": lambda k: (jax.vmap(k), np.stack([X, X])),
    "jit(vmap)": lambda k: (jax.jit(jax.vmap(k)), np.stack([X, X])),
    "jit(grad)": lambda k: (jax.jit(jax.grad(lambda a: k(a).sum())), X),
}


@pytest.mark.parametrize("how", list(TRANSFORMS))
@pytest.mark.parametrize("case", list(CASES))
def test_first_line_is_the_kernels_message_and_the_fix(
    case: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    kernel, what, fix = CASES[case]
    f, x = TRANSFORMS[how](kernel)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(jax.errors.JaxRuntimeError) as info:
        jax.block_until_ready(f(jnp.asarray(x)))
    exc = info.value
    name = kernel.__name__
    first = str(exc).splitlines()[0]
    # XLA prefixes its status code; lazyapply's message is all that follows.
    assert re.match(rf"[A-Z_]+: {re.escape(name)} \(jax \(traced\)\): ", first), first
    assert what in first, first
    assert fix in first, first
    printed = traceback.format_exception_only(exc)[0]
    assert re.match(rf"[\w.]*JaxRuntimeError: [A-Z_]+: {re.escape(name)} ", printed)
    assert "CpuCallback" not in "".join(traceback.format_exception(exc))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    if case == "native":
        assert explain_native(_nb_checked).startswith("native"), explain_native(
            _nb_checked
        )


def test_same_kernels_give_numpy_values_when_they_succeed() -> None:
    x = jnp.asarray(np.abs(X))
    np.testing.assert_allclose(jax.jit(nb_checked)(x), np.sqrt(np.abs(X)), rtol=1e-6)
    grad = jax.jit(jax.grad(lambda a: nb_checked(a).sum()))(x)
    np.testing.assert_allclose(grad, np.ones(4))


def test_vjp_that_raises_names_the_vjp() -> None:
    def bad_vjp(g: Any, out: Any, x: Any) -> Any:
        msg = "vjp says no"
        raise ArithmeticError(msg)

    kernel = lazy(as_numpy=True, vjp=bad_vjp)(np.sin)
    f = jax.jit(jax.grad(lambda a: kernel(a).sum()))
    with pytest.raises(jax.errors.JaxRuntimeError) as info:
        jax.block_until_ready(f(jnp.asarray(X)))
    first = str(info.value).splitlines()[0]
    assert "sin_vjp (jax (traced)): the kernel raised ArithmeticError: vjp says no" in (
        first
    )


# ------------------------------------------------------------ the route itself
@lazy(as_numpy=True, shape=lambda x: [x.shape, (x.shape[0],)])
def centred_and_sums(x: Any) -> Any:
    """Two outputs; the first reads all of ``x`` (a whole-array kernel)."""
    return x - x.mean(), x.sum(axis=tuple(range(1, x.ndim)))


def _expected(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return h - h.mean(), h.sum(axis=tuple(range(1, h.ndim)))


def _targets(f: Any, *args: Any) -> set[str]:
    text = f.lower(*args).compile().as_text()
    return set(re.findall(r'custom_call_target="([^"]+)"', text))


def test_callback_on_one_cpu_device_is_lazyapplys_ffi_target() -> None:
    h = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    f = jax.jit(centred_and_sums)
    for got, want in zip(f(jnp.asarray(h)), _expected(h), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert _targets(f, jnp.asarray(h)) == {"lazyapply_host_callback"}


@pytest.mark.parametrize("jit", [False, True])
def test_vmap_sequential_and_broadcast_give_numpy_values(jit: bool) -> None:
    h = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    wrap = jax.jit if jit else (lambda f: f)
    # A whole-array kernel loops over the batch (one call per element).
    got = wrap(jax.vmap(centred_and_sums))(jnp.asarray(h))
    for k in range(2):
        for g, want in zip(got, _expected(h[k]), strict=True):
            np.testing.assert_allclose(g[k], want, rtol=1e-6)
    # An elementwise kernel is called once on the batch, an unbatched operand
    # broadcast against it (vmap along an inner axis).
    sub = lazy(as_numpy=True, elementwise=True)(lambda a, b: a - 2 * b)
    a, b = jnp.asarray(h[0]), jnp.asarray(h[1, :, 0])
    got = wrap(jax.vmap(sub, in_axes=(1, None)))(a, b)
    np.testing.assert_allclose(got, (h[0] - 2 * h[1, :, :1]).T, rtol=1e-6)


def _tripled() -> Any:
    def local_kernel(a: Any) -> Any:
        return np.asarray(a) * 3.0

    return jax.jit(lambda a: lazy_apply(local_kernel, a, as_numpy=True))


def test_compiled_program_keeps_its_callback_alive() -> None:
    x = jnp.asarray(X, jnp.float32)
    compiled = _tripled().lower(x).compile()
    clear_caches()  # the kernel's stagings are gone (lazyapply's and JAX's caches)
    jax.clear_caches()
    gc.collect()
    np.testing.assert_allclose(compiled(x), 3 * X, rtol=1e-6)
