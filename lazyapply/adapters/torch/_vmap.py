"""``torch.func.vmap`` of an elementwise or gufunc kernel's custom op: one call.

The batch dimension of every batched tensor moves to the front, and size-1 loop
dimensions are inserted after it so that all batched tensors have as many loop
dimensions as the widest argument; unbatched tensors then broadcast against them.
The kernel (elementwise, or a gufunc over its loop dimensions) handles the extra
leading dimension itself, so the batch costs one kernel call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lazyapply.spec import CallSpec, OutputSpec
from lazyapply.spec._build import derive_spec

__all__ = ["register_op_vmap"]


def _core_ndims(spec: CallSpec, args: tuple[Any, ...]) -> list[int]:
    sig = spec.mode.signature
    if sig is None:
        return [0] * len(args)
    return [len(dims) for dims in sig.inputs]


def register_op_vmap(
    op: Any, kernel: Any, spec: CallSpec, prepare_op: Callable[[Any, CallSpec], Any]
) -> None:
    """Register the batching rule of ``op`` (kernel ``kernel`` called as ``spec``).

    Elementwise and gufunc kernels: one batched call, through the op that
    ``prepare_op`` (:func:`._op.prepare_op`) makes. A whole-array kernel: one call
    per batch element (as ``jax.vmap`` does with a sequential callback), stacked.
    """
    from lazyapply.adapters.torch._sites import join_site

    if not (spec.mode.elementwise or spec.mode.signature is not None):
        op.register_vmap(functools.partial(_one_by_one, op))
        return

    # The batched call has one more dimension than a declared full output shape.
    sig = spec.mode.signature
    shapes = spec.output.shapes
    if shapes is not None and (
        sig is None
        or any(len(s) != len(d) for s, d in zip(shapes, sig.outputs, strict=True))
    ):
        shapes = None
    batched_spec = derive_spec(
        spec, output=OutputSpec(shapes, spec.output.dtypes, spec.output.multi)
    )

    def rule(info: Any, in_dims: Any, tensors: Any, site: int) -> Any:
        dims = in_dims[0]
        args, _ = join_site(site, tensors)
        cores = _core_ndims(spec, args)
        positions = [i for i, a in enumerate(args) if hasattr(a, "movedim")]
        loops = [args[i].ndim - cores[i] for i in positions]
        widest = max(
            (n - (d is not None) for n, d in zip(loops, dims, strict=True)), default=0
        )
        new = list(args)
        for i, loop, d in zip(positions, loops, dims, strict=True):
            if d is None:
                continue
            t = args[i].movedim(d, 0)
            pad = widest - (loop - 1)
            new[i] = t.reshape(t.shape[:1] + (1,) * pad + t.shape[1:])
        batched = prepare_op(kernel, batched_spec)
        outs = batched([new[i] for i in positions], site)
        return list(outs), [0] * len(outs)

    op.register_vmap(rule)


def _one_by_one(op: Any, info: Any, in_dims: Any, tensors: Any, site: int) -> Any:
    """The op once per batch element, outputs stacked along a new first axis."""
    import torch

    dims = in_dims[0]
    size = info.batch_size
    runs = []
    for b in range(size):
        one = [
            t if d is None else t.select(d, b)
            for t, d in zip(tensors, dims, strict=True)
        ]
        runs.append(op(one, site))
    outs = [torch.stack([r[i] for r in runs]) for i in range(len(runs[0]))]
    return outs, [0] * len(outs)
