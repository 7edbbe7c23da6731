"""Gradient behaviours written once over ``backend``: each library's own way.

JAX differentiates with ``jax.grad``/``jax.vjp`` (inside ``jax.jit`` for
``JAX_JIT``), PyTorch with autograd (tensors that require grad), every other library
through ``f.vjp(grad_out, out, *args)``. The same three behaviours hold everywhere:
the declared vjp gives the gradient; a kernel without one is refused with an error
naming it and the fix; an integer argument gets no cotangent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import NotDifferentiableError, lazy
from lazyapply.testing import Backend

X = np.linspace(0.1, 1.2, 6)
N = np.arange(6)


def _needs_numpy(backend: Backend) -> None:
    if not backend.converts_to_numpy:
        pytest.skip(f"{backend}: as_numpy=True kernels refuse this library's arrays")


# The dtype of x, declared: array-api-strict promotes no float with an int.
@lazy(as_numpy=True, dtype=lambda x, n: x.dtype)
def wave(x: Any, n: Any) -> Any:
    return (np.sin(x) * n).astype(x.dtype)


@wave.defvjp
def _wave_vjp(g: Any, out: Any, x: Any, n: Any) -> tuple[Any, None]:
    return (g * np.cos(x) * n).astype(x.dtype), None  # none for the integer n


@lazy(as_numpy=True, dtype=lambda x, n: x.dtype)
def no_rule(x: Any, n: Any) -> Any:
    return (np.sin(x) * n).astype(x.dtype)


def _grad(backend: Backend, kernel: Any, x: np.ndarray, n: np.ndarray) -> Any:
    """d sum(kernel(x, n)) / dx, and n's cotangent, as the backend's users get them."""
    if backend.module == "jax":
        import jax
        import jax.numpy as jnp

        def pulled(a: Any, b: Any) -> Any:
            out, pull = jax.vjp(kernel, a, b)
            return pull(jnp.ones_like(out))

        fn = jax.jit(pulled) if backend is Backend.JAX_JIT else pulled
        return fn(backend.asarray(x), backend.asarray(n))
    if backend.module == "torch":
        xt = backend.asarray(x).requires_grad_()
        nt = backend.asarray(n)
        kernel(xt, nt).sum().backward()
        return xt.grad, nt.grad
    xb, nb = backend.asarray(x), backend.asarray(n)
    out = backend.call(kernel, xb, nb)
    ones = backend.asarray(np.ones(x.shape))
    return backend.call(kernel.vjp, ones, out, xb, nb)


def test_the_declared_vjp_gives_the_gradient(backend: Backend) -> None:
    _needs_numpy(backend)
    gx, _ = _grad(backend, wave, X, N)
    np.testing.assert_allclose(
        backend.values_or_skip(gx), np.cos(X) * N, rtol=1e-6, atol=1e-6
    )


def test_no_vjp_names_the_kernel_and_the_fix(backend: Backend) -> None:
    _needs_numpy(backend)
    with pytest.raises(NotDifferentiableError, match=r"no_rule.*(defvjp|vjp=)"):
        _grad(backend, no_rule, X, N)
    assert issubclass(NotDifferentiableError, TypeError)


def test_an_integer_argument_gets_no_cotangent(backend: Backend) -> None:
    _needs_numpy(backend)
    gx, gn = _grad(backend, wave, X, N)
    if backend.module == "jax":
        import jax

        assert gn.dtype == jax.dtypes.float0  # JAX's "no cotangent"
        assert gn.shape == N.shape
    else:
        assert gn is None
    np.testing.assert_allclose(
        backend.values_or_skip(gx), np.cos(X) * N, rtol=1e-6, atol=1e-6
    )
