"""Sharded JAX arrays: an elementwise or gufunc kernel runs once per shard.

Under ``jax.jit`` a host callback or an FFI call is opaque to XLA's partitioner, which
would gather a sharded operand onto every device and run the kernel on the whole array.
:func:`per_shard` wraps the staging of such a kernel in
``jax.experimental.custom_partitioning``: its loop dimensions keep the operands'
sharding, its core dimensions (a gufunc's) are replicated, and each device stages the
kernel on its own shard (callback or native path alike), so that the output keeps the
input's sharding without an all-gather.

A whole-array kernel (no mode), an explicit ``shape=``, or operands whose loop shapes
differ (broadcasting) are not wrapped: XLA gathers the operands, the kernel runs once
on the whole array, and the result is re-sharded as the program asks.
"""

from __future__ import annotations

import functools
import string
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["in_shard", "per_shard"]

# Set while one shard's call is staged, so that it is not partitioned again.
_LOCAL = threading.local()


def in_shard() -> bool:
    """Whether the current thread is staging one shard's call."""
    return bool(getattr(_LOCAL, "on", False))


def _on_shard(stage_local: Callable[..., Any], *shards: Any) -> Any:
    """Stage one shard's call, marked so that it is not partitioned again."""
    _LOCAL.on = True
    try:
        return stage_local(*shards)
    finally:
        _LOCAL.on = False


def per_shard(
    stage_local: Callable[..., Any],
    operands: list[Any],
    loop_ndims: tuple[int, ...],
    out_shapes: tuple[tuple[int | None, ...], ...],
    multi: bool,
    native: object,
) -> Callable[..., Any] | None:
    """A function of the operands partitioned along their loop dimensions, or None.

    ``stage_local(*shards)`` stages the kernel for operands of any (local) shape;
    ``native`` is the native path's staging (``None``: the callback path).
    ``None`` when the call is not worth partitioning (one device, broadcasting).
    """
    stage_local = functools.partial(_on_shard, stage_local)
    import jax
    import jax.sharding as shd
    from jax.experimental import custom_partitioning as cp

    # Untyped in jax's stubs: typed as Any once here.
    custom_partitioning: Any = cp.custom_partitioning
    NamedSharding: Any = shd.NamedSharding
    PartitionSpec: Any = shd.PartitionSpec

    if jax.device_count() < 2 or not operands or in_shard():
        return None
    if native is None:  # the callback path
        return _explicit(stage_local, operands, loop_ndims, out_shapes, multi)
    top = max(loop_ndims)
    loops = {tuple(op.shape[:n]) for op, n in zip(operands, loop_ndims, strict=True)}
    if len(loops) != 1 or top == 0:
        return None  # broadcast loop dims: the partitioner would have to split 1s
    out_core_ndims = tuple(len(s) - top for s in out_shapes)
    rule = _sharding_rule(operands, top, out_core_ndims)

    def shardings(mesh: Any, arg_shapes: Any, result_shape: Any) -> Any:
        # The first operand's sharding of the loop axes; core axes are replicated.
        spec = tuple(getattr(arg_shapes[0].sharding, "spec", ())) + (None,) * top
        loop_spec = spec[:top]
        args = [
            NamedSharding(mesh, PartitionSpec(*loop_spec, *(None,) * (a.ndim - top)))
            for a in arg_shapes
        ]
        results = [
            NamedSharding(mesh, PartitionSpec(*loop_spec, *(None,) * c))
            for c in out_core_ndims
        ]
        return args, (results if multi else results[0])

    def infer(mesh: Any, arg_shapes: Any, result_shape: Any) -> Any:
        return shardings(mesh, arg_shapes, result_shape)[1]

    def partition(mesh: Any, arg_shapes: Any, result_shape: Any) -> Any:
        args, results = shardings(mesh, arg_shapes, result_shape)
        return mesh, stage_local, results, tuple(args)

    wrapped: Callable[..., Any] = custom_partitioning(stage_local)
    wrapped.def_partition(  # type: ignore[attr-defined]
        partition=partition, infer_sharding_from_operands=infer, sharding_rule=rule
    )
    return wrapped


def _sharding_rule(operands: list[Any], top: int, out_core_ndims: Any) -> str:
    """Shardy's einsum-like rule: shared loop factors, a factor per core axis."""
    letters = iter(string.ascii_lowercase)
    loop = [next(letters) for _ in range(top)]
    ins = [
        " ".join(loop + [next(letters) for _ in range(op.ndim - top)])
        for op in operands
    ]
    outs = [" ".join(loop + [next(letters) for _ in range(c)]) for c in out_core_ndims]
    return f"{', '.join(ins)} -> {', '.join(outs)}"


def _explicit(
    stage_local: Callable[..., Any],
    operands: list[Any],
    loop_ndims: tuple[int, ...],
    out_shapes: tuple[tuple[int | None, ...], ...],
    multi: bool,
) -> Callable[..., Any] | None:
    """``jax.shard_map`` over the operands' explicit sharding (the callback path).

    A host callback cannot be lowered inside ``custom_partitioning`` (its Python
    object would not be kept alive), so the callback path partitions only operands
    whose sharding the trace knows: meshes with ``AxisType.Explicit`` axes.
    """
    import jax
    import jax.sharding as shd

    PartitionSpec: Any = shd.PartitionSpec  # untyped in jax's stubs
    sharding = jax.typeof(operands[0]).sharding
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or getattr(mesh, "empty", True) or not any(sharding.spec):
        return None
    top = max(loop_ndims)
    if (
        len({tuple(op.shape[:n]) for op, n in zip(operands, loop_ndims, strict=True)})
        != 1
    ):
        return None
    loop_spec = (*tuple(sharding.spec), *(None,) * top)[:top]
    in_specs = tuple(
        PartitionSpec(*loop_spec, *(None,) * (op.ndim - top)) for op in operands
    )
    outs = [PartitionSpec(*loop_spec, *(None,) * (len(s) - top)) for s in out_shapes]
    mapped = jax.shard_map(
        stage_local,
        mesh=mesh,
        in_specs=in_specs,
        out_specs=tuple(outs) if multi else outs[0],
    )
    shardings = tuple(shd.NamedSharding(mesh, spec) for spec in in_specs)
    return functools.partial(_resharded, mapped, shardings)


def _resharded(
    mapped: Callable[..., Any], shardings: tuple[Any, ...], *ops: Any
) -> Any:
    """Reshard operands whose core axes are sharded (or loop axes differ): each shard
    needs whole core dimensions, and an explicit mesh's shard_map takes its operands
    only as sharded as ``in_specs`` say."""
    import jax

    ops = tuple(
        op
        if jax.typeof(op).sharding.spec == sharding.spec
        else jax.sharding.reshard(op, sharding)  # type: ignore[no-untyped-call]
        for op, sharding in zip(ops, shardings, strict=True)
    )
    return mapped(*ops)
