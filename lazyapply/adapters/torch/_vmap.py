"""``torch.func.vmap`` of a kernel: its custom op's rule, and its autograd node's.

The op (a kernel without a vjp): the batch dimension of every batched tensor moves
to the front, and size-1 loop dimensions are inserted after it so that all batched
tensors have as many loop dimensions as the widest argument; unbatched tensors then
broadcast against them. The kernel (elementwise, or a gufunc over its loop
dimensions) handles the extra leading dimension itself, so the batch costs one
kernel call. A whole-array kernel runs once per batch element.

The node (a kernel with a vjp, and the vjp itself): one call only where no operand
broadcasts (:func:`batch_operands`), so that the vjp's cotangents are the stacked
per-element ones; otherwise once per element.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from lazyapply.spec import CallSpec, OutputSpec, Shape
from lazyapply.spec._build import derive_spec

__all__ = ["batch_operands", "batched_spec", "node_vmap", "register_op_vmap"]


def _core_ndims(spec: CallSpec, args: tuple[Any, ...]) -> list[int]:
    sig = spec.mode.signature
    if sig is None:
        return [0] * len(args)
    return [len(dims) for dims in sig.inputs]


def batched_spec(spec: CallSpec) -> CallSpec:
    """``spec`` for arguments with one more leading (batch) dimension.

    Declared output shapes of the full output (elementwise, or a gufunc's that are
    not only core shapes) no longer hold and are dropped; callables stay (evaluated
    on the batched arguments). An elementwise kernel's several outputs keep their
    count: one unknown shape each, which the layout fills with the broadcast of the
    batched arguments (dropped whole, they would read as one output).
    """
    sig = spec.mode.signature
    shapes = spec.output.shapes
    if shapes is not None and sig is None:
        shapes = cast("tuple[Shape, ...]", (None,) * len(shapes))
    elif shapes is not None and any(
        len(s) != len(d) for s, d in zip(shapes, sig.outputs, strict=True)
    ):
        shapes = None  # the signature gives the count
    output = OutputSpec(shapes, spec.output.dtypes, spec.output.multi)
    return derive_spec(spec, output=output)


def batch_operands(
    step: Any, args: tuple[Any, ...], dims: tuple[Any, ...], size: int
) -> list[Any] | None:
    """The operands of one batched call (batch first), or ``None``: call per element.

    One call serves the batch only where the step is elementwise or a gufunc and
    every tensor operand has the same loop shape: then no operand broadcasts, so the
    batched call, and a vjp's cotangent of each operand, is exactly the stack of the
    per-element ones. An unbatched operand is repeated along the batch (a copy: a
    kernel writing into it must not write into the other elements' operand).
    """
    tensors = [i for i, a in enumerate(args) if hasattr(a, "movedim")]
    cores = step.cores(len(args))
    if cores is None or not tensors:
        return None
    loops = set()
    for i in tensors:
        shape = list(args[i].shape)
        if dims[i] is not None:
            del shape[dims[i]]
        loops.add(tuple(shape[: len(shape) - cores[i]]))
    if len(loops) != 1:
        return None
    new = list(args)
    for i in tensors:
        a, d = args[i], dims[i]
        if d is None:
            new[i] = a.unsqueeze(0).expand(size, *a.shape).contiguous()
        else:
            new[i] = a.movedim(d, 0)
    return new


def node_vmap(
    node: Any, info: Any, dims: tuple[Any, ...], step: Any, args: tuple[Any, ...]
) -> tuple[Any, Any]:
    """The ``vmap`` rule of an autograd node (``node.apply(step, *args)``).

    One node on the batch where :func:`batch_operands` allows, else one per batch
    element, stacked; either way a node at the next level, so a grad transform
    below still differentiates it.
    """
    import torch

    operands = batch_operands(step, args, dims, info.batch_size)
    if operands is not None:
        out = node.apply(step.batched(), *operands)
        return out, (0,) * len(out) if isinstance(out, tuple) else 0
    runs = [
        node.apply(
            step,
            *(
                a if d is None else a.select(d, b)
                for a, d in zip(args, dims, strict=True)
            ),
        )
        for b in range(info.batch_size)
    ]
    if not isinstance(runs[0], tuple):
        return torch.stack(runs), 0
    outs = tuple(torch.stack(r) for r in zip(*runs, strict=True))
    return outs, (0,) * len(outs)


def register_op_vmap(
    op: Any,
    kernel: Any,
    spec: CallSpec,
    prepare_op: Callable[[Any, CallSpec, int], Any],
    single: bool,
) -> None:
    """Register the batching rule of ``op`` (kernel ``kernel`` called as ``spec``;
    ``single``: it returns one tensor, not a list).

    Elementwise and gufunc kernels: one batched call, through the op that
    ``prepare_op`` (:func:`._op.prepare_op`) makes. A whole-array kernel: one call
    per batch element (as ``jax.vmap`` does with a sequential callback), stacked.
    """
    import torch

    from lazyapply.adapters.torch._sites import join_site, operand_index

    if not (spec.mode.elementwise or spec.mode.signature is not None):
        op.register_vmap(functools.partial(_one_by_one, op, single))
        return

    batched = batched_spec(spec)

    def rule(info: Any, in_dims: Any, *operands: Any) -> Any:
        tensors, site = operands[:-1], operands[-1]
        dims = in_dims[:-1]
        # Numbers passed as 0-d tensors (Scalar) are never batched (made in the
        # call): they stay operands as they are.
        args, _ = join_site(site, tensors, "raw")
        at = operand_index(args, torch.Tensor)
        cores = _core_ndims(spec, args)
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        loops = [args[i].ndim - cores[i] for i in positions]
        batch = [dims[at[i]] for i in positions]
        widest = max(
            (n - (d is not None) for n, d in zip(loops, batch, strict=True)), default=0
        )
        new = list(tensors)
        for i, loop, d in zip(positions, loops, batch, strict=True):
            if d is None:
                continue
            t = args[i].movedim(d, 0)
            pad = widest - (loop - 1)
            new[at[i]] = t.reshape(t.shape[:1] + (1,) * pad + t.shape[1:])
        outs = prepare_op(kernel, batched, len(new))(*new, site)
        if type(outs) is not list:  # the batched op returns one tensor
            return (outs, 0) if single else ([outs], [0])
        if single:
            return outs[0], 0
        return list(outs), [0] * len(outs)

    op.register_vmap(rule)


def _one_by_one(op: Any, single: bool, info: Any, in_dims: Any, *operands: Any) -> Any:
    """The op once per batch element, outputs stacked along a new first axis."""
    import torch

    tensors, site = operands[:-1], operands[-1]
    dims = in_dims[:-1]
    size = info.batch_size
    runs = []
    for b in range(size):
        one = [
            t if d is None else t.select(d, b)
            for t, d in zip(tensors, dims, strict=True)
        ]
        out = op(*one, site)
        runs.append([out] if single else out)
    outs = [torch.stack([r[i] for r in runs]) for i in range(len(runs[0]))]
    if single:
        return outs[0], 0
    return outs, [0] * len(outs)
