"""PyTorch: a kernel inside ``torch.compile``, and autograd through a declared vjp.

``torch_compile``: a compiled function that calls the kernel (``as_numpy``, ``x + 1``)
through lazyapply's automatic custom op, against the same function calling a
hand-written ``torch.library.custom_op`` with ``register_fake``; the eager lazyapply
call is shown beside them. ``torch_grad``: forward and backward (``.sum().backward()``)
through lazyapply with ``vjp=`` against a hand-written ``torch.autograd.Function``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["count", "run"]

SIZES = (10, 1_000)


def _kernel(x: Any) -> Any:
    return x + 1


def _vjp(g: Any, out: Any, x: Any) -> Any:
    return (g,)


def _compile_variants(n: int) -> dict[str, Callable[[], object]]:
    import torch

    from lazyapply import lazy

    @torch.library.custom_op(
        "lazyapply_bench::add_one", mutates_args=(), schema="(Tensor x) -> Tensor"
    )
    def hand_op(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(_kernel(x.numpy()))

    @hand_op.register_fake
    def _(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    ours = lazy(_kernel, as_numpy=True, shape=lambda x: x.shape, dtype="float32")
    x = torch.arange(n, dtype=torch.float32)
    hand = torch.compile(lambda a: hand_op(a) * 2, fullgraph=True)
    mine = torch.compile(lambda a: ours(a) * 2, fullgraph=True)
    fns: dict[str, Callable[[], object]] = {
        "hand-written": lambda: hand(x),
        "lazyapply": lambda: mine(x),
        "eager": lambda: ours(x) * 2,
    }
    for fn in fns.values():
        np.testing.assert_allclose(fn(), (np.arange(n, dtype=np.float32) + 1) * 2)
    return fns


def _grad_variants(n: int) -> dict[str, Callable[[], object]]:
    import torch

    from lazyapply import lazy

    class Hand(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, a: Any) -> Any:
            return torch.from_numpy(_kernel(a.detach().numpy()))

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return torch.from_numpy(_vjp(g.numpy(), None, None)[0])

    ours = lazy(_kernel, as_numpy=True, vjp=_vjp)
    x = torch.arange(n, dtype=torch.float64, requires_grad=True)

    def step(f: Callable[[Any], Any]) -> Callable[[], object]:
        def run() -> object:
            x.grad = None
            f(x).sum().backward()
            return x.grad

        return run

    fns = {"hand-written": step(Hand.apply), "lazyapply": step(ours)}
    for fn in fns.values():
        np.testing.assert_allclose(fn(), np.ones(n))
    return fns


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per section and size."""
    if "torch" not in backends:
        return []
    rows = []
    for section, variants in (
        ("torch_compile", _compile_variants),
        ("torch_grad", _grad_variants),
    ):
        for n in SIZES:
            bar.set_description(f"{section} n={n:,}")
            times, samples = compare(variants(n), settings)
            rows.append(
                {
                    "section": section,
                    "backend": "torch",
                    "case": "as_numpy=True",
                    "size": n,
                    "times": times,
                    "samples": samples,
                }
            )
            bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return 2 * len(SIZES) if "torch" in backends else 0
