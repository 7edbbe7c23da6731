"""Sharded JAX arrays: an elementwise or gufunc kernel runs once per shard.

Under ``jax.jit`` a host callback or an FFI call is opaque to XLA's partitioner, which
would gather a sharded operand onto every device and run the kernel on the whole array.
:func:`per_shard` partitions such a kernel's staging along its loop dimensions, which
keep the operands' sharding, while its core dimensions (a gufunc's) are replicated;
each device stages the kernel on its own shard, so that the output keeps the input's
sharding without an all-gather:

- operands whose sharding the trace sees (meshes with ``AxisType.Explicit`` axes) on
  the callback path: ``jax.shard_map``;
- otherwise (Auto axes: ``Mesh(devices, names)``, ``jax.device_put``):
  ``jax.experimental.custom_partitioning``, whose per-shard function stages the native
  FFI call, or on the callback path lazyapply's own host-callback FFI target
  (:mod:`._host`; ``jax.pure_callback`` crashes there on JAX 0.10). That target is
  CPU-only: on other platforms the callback path gathers as before. A shard that XLA
  pads (a loop dimension the mesh does not divide) shows the kernel only its real
  elements, on both paths (:func:`padded_shard`), so that a kernel raising on (or
  looping on) XLA's padding values never sees them: the native handler of a
  ``@vectorize`` or ``@guvectorize`` kernel loops within the extents, an ``@njit``
  kernel (or a foreign loop) is called through that host callback on every shard.
  Replicated operands are split over the devices so that each computes a
  part once. ``custom_partitioning`` has no batching rule: under ``vmap`` the batch
  becomes one more loop dimension, staged and partitioned anew.

Operands whose loop shapes broadcast against each other are broadcast first. A
whole-array kernel (no mode) or an explicit ``shape=`` is not wrapped: XLA gathers the
operands, the kernel runs once on the whole array, and the result is re-sharded as
the program asks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from lazyapply.adapters.jax._host import HostEntry, host_call, register_target
from lazyapply.adapters.jax._shard_map import explicit_map
from lazyapply.adapters.jax._shard_specs import (
    core_factors,
    loop_spec_of,
    named,
    padded_loops,
    sharding_rule,
)

__all__ = ["in_shard", "padded_shard", "partitioned_callback", "per_shard"]

# Set while one shard's call is staged, so that it is not partitioned again:
# ``on`` is "map" (inside shard_map) or "partition" (a custom_partitioning rule's
# per-shard function, whose host callbacks go through :mod:`._host`); ``keep`` holds
# what the partitioned program's host callbacks need alive; ``extents`` is a padded
# shard's valid loop extents (a traced int32 vector) or None.
_LOCAL = threading.local()


def in_shard() -> str:
    """``""``, or how the current thread is staging one shard's call."""
    return str(getattr(_LOCAL, "on", ""))


def padded_shard() -> Any:
    """The valid loop extents (a traced int32 vector) of the partitioned shard that
    the current thread stages, when XLA pads it; else None."""
    return getattr(_LOCAL, "extents", None)


def partitioned_callback(entry: HostEntry, *ops: Any) -> Any:
    """Stage ``entry``'s host callback in a partitioned shard (see :mod:`._host`)."""
    keep, extents = getattr(_LOCAL, "keep", None), getattr(_LOCAL, "extents", None)
    if keep is not None and not any(e is entry for e in keep):
        keep.append(entry)  # alive as long as the partitioned program
    return host_call(entry, extents, *ops)


def on_map(stage_local: Callable[..., Any], *shards: Any) -> Any:
    """Stage one shard's call in shard_map, marked so it is not partitioned again."""
    _LOCAL.on = "map"
    try:
        return stage_local(*shards)
    finally:
        _LOCAL.on = ""


def _on_partition(
    stage_local: Callable[..., Any],
    keep: list[Any],
    padded: tuple[tuple[int, tuple[str, ...]], ...] | None,
    *shards: Any,
) -> Any:
    """Stage one partitioned shard's call; ``padded``: each loop dimension's global
    size and mesh axes when one of them is not divided evenly (else None)."""
    extents = None
    if padded is not None:
        import jax
        import jax.numpy as jnp

        top = shards[0].shape[: len(padded)]
        sizes = []
        for tile, (size, names) in zip(top, padded, strict=True):
            if names:
                start = jax.lax.axis_index(names) * tile
                sizes.append(jnp.clip(size - start, 0, tile))
            else:
                sizes.append(jnp.asarray(size))
        extents = jnp.stack(sizes).astype(jnp.int32)
    _LOCAL.on, _LOCAL.keep, _LOCAL.extents = "partition", keep, extents
    try:
        return stage_local(*shards)
    finally:
        _LOCAL.on, _LOCAL.keep, _LOCAL.extents = "", None, None


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
    ``None`` when the call is not worth partitioning (one device, no loop dimension).
    Operands whose loop shapes broadcast against each other (a parameter array
    beside a sharded one) are broadcast first, as NumPy would: each device then
    holds only its own part of the broadcast.
    """
    import jax
    import numpy as np

    struct: Any = jax.ShapeDtypeStruct  # untyped in jax's stubs
    top = max(loop_ndims, default=0)
    if jax.device_count() < 2 or top == 0 or in_shard():
        return None
    loops = [tuple(op.shape[:n]) for op, n in zip(operands, loop_ndims, strict=True)]
    try:
        common = tuple(np.broadcast_shapes(*loops))
    except ValueError:
        return None  # the kernel's own call reports the shapes
    full = tuple(
        (*common, *op.shape[n:]) for op, n in zip(operands, loop_ndims, strict=True)
    )
    given = [(jax.typeof(op).sharding, op.ndim) for op in operands]
    wide = [struct(s, op.dtype) for s, op in zip(full, operands, strict=True)]
    fn: Callable[..., Any] | None = None
    if native is None:  # the callback path
        fn = explicit_map(on_map, stage_local, wide, given, top, out_shapes, multi)
        if fn is None and jax.default_backend() != "cpu":
            return None  # lazyapply's host callback target is CPU-only
    # Now, not while XLA partitions; the native path needs it for padded shards.
    register_target()
    if fn is None:
        fn = _partitioned(stage_local, wide, top, out_shapes, multi, native is None)
    if all(s == op.shape for s, op in zip(full, operands, strict=True)):
        return fn
    return functools.partial(_broadcast, fn, full)


def _broadcast(fn: Callable[..., Any], full: tuple[Any, ...], *ops: Any) -> Any:
    import jax.numpy as jnp

    return fn(
        *(
            op if op.shape == s else jnp.broadcast_to(op, s)
            for op, s in zip(ops, full, strict=True)
        )
    )


def _partitioned(
    stage_local: Callable[..., Any],
    operands: list[Any],
    top: int,
    out_shapes: tuple[tuple[int | None, ...], ...],
    multi: bool,
    callback: bool,
) -> Callable[..., Any]:
    """``custom_partitioning`` along the loop dimensions (any mesh)."""
    from jax.experimental import custom_partitioning as cp

    custom_partitioning: Any = cp.custom_partitioning  # untyped in jax's stubs
    out_core_ndims = tuple(len(s) - top for s in out_shapes)
    rule = sharding_rule(operands, top, out_core_ndims)
    keep: list[Any] = []  # kept alive with the compiled program (see _host)

    def shardings(mesh: Any, arg_shapes: Any) -> Any:
        # Loop axes: sharded as the operands are; core axes are replicated.
        loop_spec = loop_spec_of(mesh, arg_shapes, top, spread=callback)
        args = [named(mesh, loop_spec, a.ndim - top) for a in arg_shapes]
        results = [named(mesh, loop_spec, c) for c in out_core_ndims]
        return loop_spec, args, (tuple(results) if multi else results[0])

    def infer(mesh: Any, arg_shapes: Any, result_shape: Any) -> Any:
        return shardings(mesh, arg_shapes)[2]

    def partition(mesh: Any, arg_shapes: Any, result_shape: Any) -> Any:
        loop_spec, args, results = shardings(mesh, arg_shapes)
        # Native too: a padded shard's call sees only its real elements (_route).
        padded = padded_loops(mesh, loop_spec, arg_shapes[0].shape)
        lower = functools.partial(_on_partition, stage_local, keep, padded)
        return mesh, lower, results, tuple(args)

    wrapped: Any = custom_partitioning(
        functools.partial(_on_partition, stage_local, keep, None)
    )
    wrapped.def_partition(
        partition=partition,
        infer_sharding_from_operands=infer,
        sharding_rule=rule,
        need_replication_factors=core_factors(rule, top),
    )
    return functools.partial(_unbatched, wrapped, stage_local)


def _unbatched(wrapped: Any, stage_local: Callable[..., Any], *ops: Any) -> Any:
    """``wrapped(*ops)``, under a ``custom_vmap`` (custom_partitioning has no batching
    rule): a batch is one more leading loop dimension, staged (and partitioned) anew."""
    import jax
    from jax.custom_batching import custom_vmap

    @custom_vmap
    def call(*xs: Any) -> Any:
        return wrapped(*xs)

    @call.def_vmap
    def _rule(axis_size: int, in_batched: Any, *xs: Any) -> Any:
        xs = tuple(
            x if b else jax.numpy.broadcast_to(x, (axis_size, *x.shape))
            for x, b in zip(xs, in_batched, strict=True)
        )
        out = stage_local(*xs)
        batched = jax.tree.map(lambda _: True, out)
        return out, batched

    return call(*ops)
