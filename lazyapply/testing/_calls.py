"""How each path of the matrix calls a kernel (:mod:`lazyapply.testing._paths`)."""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lazyapply.testing._backends import Backend
from lazyapply.testing._laziness import assert_lazy, count_dask_computes

if TYPE_CHECKING:
    from lazyapply._decorator import LazyFunction
    from lazyapply.testing._paths import Path

    Kernel = LazyFunction[..., Any]

__all__ = [
    "CHUNKINGS",
    "autograd",
    "compiled",
    "dask",
    "direct",
    "jit",
    "quiet_callbacks",
    "torch_vmap",
    "vmap",
]


def direct(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    return kernel(*args, **kw)


def dask(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    with count_dask_computes() as counter:
        out = kernel(*args, **kw)
    assert counter.count == 0, (
        f"{kernel.__name__}: Dask computed {counter.count} time(s) while building "
        "the graph"
    )
    assert_lazy(out)
    return out


def jit(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    import jax

    def body(*arrays: Any) -> Any:
        out = kernel(*arrays, **kw)
        assert_lazy(out)  # the kernel became a callback or an FFI call
        return out

    return jax.jit(body)(*args)


def vmap(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    import jax
    import jax.numpy as jnp

    axes = tuple(0 if hasattr(a, "shape") else None for a in args)
    stacked = tuple(
        jnp.stack([a] * path.batch) if ax == 0 else a
        for a, ax in zip(args, axes, strict=True)
    )
    return jax.vmap(functools.partial(kernel, **kw), in_axes=axes)(*stacked)


def torch_vmap(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    import torch

    # Copies stacked on a new leading axis, except every second tensor argument,
    # stacked on a new last axis (in_dims=-1): the batch dimension moves, as users'
    # in_dims make it. Other arguments are not batched (in_dims=None).
    axes: list[int | None] = []
    stacked = []
    for a in args:
        if not isinstance(a, torch.Tensor):
            axes.append(None)
            stacked.append(a)
            continue
        axis = -1 if sum(ax is not None for ax in axes) % 2 else 0
        axes.append(axis)
        stacked.append(torch.stack([a] * path.batch, dim=axis))
    batched = torch.func.vmap(functools.partial(kernel, **kw), in_dims=tuple(axes))
    return batched(*stacked)


def compiled(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    import torch

    def call(*arrays: Any) -> Any:
        return kernel(*arrays, **kw)

    # A code object of its own for each run: dynamo keeps its compiled frames, guards
    # and recompile limit per code object, and a frame of LazyFunction.__call__ (or of
    # one shared wrapper) would collect every kernel of a test session.
    fresh = types.FunctionType(
        call.__code__.replace(), call.__globals__, "call", None, call.__closure__
    )
    # aot_eager traces the op's fake implementation and autograd rule as Inductor
    # would, without generating C++: the same graph, a fraction of the time.
    return torch.compile(fresh, fullgraph=True, backend="aot_eager")(*args)


def autograd(
    path: Path, kernel: Kernel, backend: Backend, args: tuple[Any, ...], kw: Any
) -> Any:
    out = kernel(*args, **kw)
    for o in out if isinstance(out, (tuple, list)) else (out,):
        if o.dtype.is_floating_point or o.dtype.is_complex:
            assert o.grad_fn is not None, (
                f"{kernel.__name__}: the result records no autograd node"
            )
    return out


def _uneven(n: int) -> tuple[int, ...]:
    # Sizes 1, 2, 3... and what is left: 6 -> (1, 2, 3), 5 -> (1, 2, 2), 2 -> (1, 1).
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(len(sizes) + 1, n - sum(sizes)))
    return tuple(sizes) or (0,)


#: The chunkings of every Dask path: one block, blocks of one element, uneven blocks.
CHUNKINGS: dict[str, Callable[[tuple[int, ...]], Any]] = {
    "one chunk": lambda shape: shape,
    "chunks of 1": lambda shape: tuple(1 if s else 0 for s in shape),
    "uneven chunks": lambda shape: tuple(_uneven(s) for s in shape),
}


@contextlib.contextmanager
def quiet_callbacks() -> Iterator[None]:
    # JAX logs a failing callback's traceback before raising it; the error reaches
    # the caller anyway, so the log would only repeat it.
    logger = logging.getLogger("jax._src.callback")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
