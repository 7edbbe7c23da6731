"""Gradients: a kernel with a declared vjp, against the plumbing users write by hand.

JAX: ``jax.jit(jax.grad(loss))`` where the kernel is a hand-written ``jax.custom_vjp``
around two ``jax.pure_callback``\\ s (forward and backward), against the same kernel
through ``lazy_apply(..., vjp=)`` and ``@lazy`` + ``defvjp`` (target <= 1.25x).

torch: ``f(x).sum().backward()`` on a tensor that requires grad, where the kernel is a
hand-written ``torch.autograd.Function`` (NumPy forward and backward), against the
``@lazy`` kernel (target <= 1.5x). Until lazy kernels have torch autograd the lazyapply
column is empty and the case names the reason.

The kernel is ``sin(x) * y`` with ``as_numpy=True`` and its vjp
``(g cos(x) y, g sin(x))``; every variant is checked against the others first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["count", "run"]

SIZES = (10, 100_000)
TARGET_JAX = 1.25
TARGET_TORCH = 1.5


def _kernel(x: Any, y: Any) -> Any:
    return np.sin(x) * y


def _vjp(g: Any, out: Any, x: Any, y: Any) -> Any:
    return g * np.cos(x) * y, g * np.sin(x)


def _jax_variants(n: int) -> dict[str, Callable[[], object]]:
    import jax
    import jax.numpy as jnp

    import lazyapply

    x = jnp.linspace(0.0, 1.0, n, dtype=jnp.float32)
    y = jnp.linspace(1.0, 2.0, n, dtype=jnp.float32)
    struct = jax.ShapeDtypeStruct(x.shape, x.dtype)

    def fwd_cb(a: Any, b: Any) -> Any:
        return _kernel(np.asarray(a), np.asarray(b))

    def bwd_cb(g: Any, a: Any, b: Any) -> Any:
        return _vjp(np.asarray(g), None, np.asarray(a), np.asarray(b))

    @jax.custom_vjp
    def hand(a: Any, b: Any) -> Any:
        return jax.pure_callback(fwd_cb, struct, a, b, vmap_method="broadcast_all")

    def hand_fwd(a: Any, b: Any) -> Any:
        return hand(a, b), (a, b)

    def hand_bwd(res: Any, g: Any) -> Any:
        return jax.pure_callback(
            bwd_cb, (struct, struct), g, *res, vmap_method="broadcast_all"
        )

    hand.defvjp(hand_fwd, hand_bwd)
    decorated = lazyapply.lazy(as_numpy=True, elementwise=True)(_kernel)
    decorated.defvjp(_vjp)

    def plain(a: Any, b: Any) -> Any:
        return lazyapply.lazy_apply(
            _kernel, a, b, as_numpy=True, elementwise=True, vjp=_vjp
        )

    grads = {
        "hand-written": jax.jit(jax.grad(lambda a, b: (hand(a, b) ** 2).sum(), (0, 1))),
        "lazyapply": jax.jit(jax.grad(lambda a, b: (plain(a, b) ** 2).sum(), (0, 1))),
        "decorated": jax.jit(
            jax.grad(lambda a, b: (decorated(a, b) ** 2).sum(), (0, 1))
        ),
    }
    xn, yn = np.asarray(x), np.asarray(y)
    want = _vjp(2 * _kernel(xn, yn), None, xn, yn)
    fns: dict[str, Callable[[], object]] = {}
    for name, grad in grads.items():
        for got, w in zip(grad(x, y), want, strict=True):
            np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5)
        fns[name] = lambda grad=grad: jax.block_until_ready(grad(x, y))
    return fns


def _torch_variants(n: int) -> tuple[dict[str, Callable[[], object]], str | None]:
    """The torch cases, and why the lazyapply one is missing (``None`` if present)."""
    import torch

    import lazyapply

    class Hand(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            ctx.save_for_backward(a, b)
            return torch.from_numpy(_kernel(a.detach().numpy(), b.detach().numpy()))

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            a, b = ctx.saved_tensors
            ga, gb = _vjp(g.numpy(), None, a.detach().numpy(), b.detach().numpy())
            return torch.from_numpy(ga), torch.from_numpy(gb)

    decorated = lazyapply.lazy(as_numpy=True, elementwise=True)(_kernel)
    decorated.defvjp(_vjp)
    x = torch.linspace(0.0, 1.0, n, dtype=torch.float64, requires_grad=True)
    y = torch.linspace(1.0, 2.0, n, dtype=torch.float64, requires_grad=True)

    def backward(f: Callable[..., Any]) -> Callable[[], object]:
        def step() -> object:
            x.grad = y.grad = None
            f(x, y).sum().backward()
            return x.grad, y.grad

        return step

    fns = {"hand-written": backward(Hand.apply)}
    want = [g.clone() for g in fns["hand-written"]()]  # type: ignore[union-attr]
    try:
        got = backward(decorated)()
    except (lazyapply.NotDifferentiableError, RuntimeError) as e:
        return fns, f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    for g, w in zip(got, want, strict=True):  # type: ignore[call-overload]
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12)
    fns["decorated"] = backward(decorated)
    return fns, None


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per (library, size)."""
    rows = []
    for n in SIZES:
        if "jax" in backends:
            bar.set_description(f"grad jax.jit n={n:,}")
            times, samples = compare(_jax_variants(n), settings)
            rows.append(
                _row("jax", "jit(grad(sum(f ** 2)))", n, times, samples, TARGET_JAX)
            )
            bar.update()
        if "torch" in backends:
            bar.set_description(f"grad torch n={n:,}")
            fns, missing = _torch_variants(n)
            times, samples = compare(fns, settings)
            case = "f(x).sum().backward()"
            if missing is not None:
                case += f" (lazyapply: {missing})"
            rows.append(_row("torch", case, n, times, samples, TARGET_TORCH))
            bar.update()
    return rows


def _row(
    backend: str,
    case: str,
    n: int,
    times: dict[str, float],
    samples: dict[str, list[float]],
    target: float,
) -> dict[str, Any]:
    return {
        "section": "grad",
        "backend": backend,
        "case": f"{backend}: {case}",
        "size": n,
        "times": times,
        "samples": samples,
        "target": target,
    }


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return len(SIZES) * sum(b in backends for b in ("jax", "torch"))
