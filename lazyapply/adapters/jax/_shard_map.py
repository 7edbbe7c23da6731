"""Per-shard calls on meshes with explicit axes: ``jax.shard_map`` (see :mod:`._shard`).

The trace knows such operands' sharding, so the callback path maps the staging over
the loop axes directly; a host callback inside ``shard_map`` is an ordinary
``jax.pure_callback``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["explicit_map"]


def explicit_map(
    on_map: Callable[..., Any],
    stage_local: Callable[..., Any],
    operands: list[Any],
    given: list[tuple[Any, int]],
    top: int,
    out_shapes: tuple[tuple[int | None, ...], ...],
    multi: bool,
) -> Callable[..., Any] | None:
    """``jax.shard_map`` over the operands' explicit sharding (the callback path).

    ``on_map(stage_local, *shards)`` stages one shard's call (marked as such).

    Used where the trace knows the operands' sharding (``given``: each operand's
    sharding and rank before broadcasting): meshes with ``AxisType.Explicit`` axes,
    the loop axes sharded as the first operand that shards one. Elsewhere the
    callback path is partitioned like the native one, with :mod:`._host`'s target
    standing in for ``jax.pure_callback``.
    """
    import jax
    import jax.sharding as shd

    PartitionSpec: Any = shd.PartitionSpec  # untyped in jax's stubs
    mesh, loop_spec = None, (None,) * top
    for (sharding, ndim), op in zip(given, operands, strict=True):
        m = getattr(sharding, "mesh", None)
        if m is None or getattr(m, "empty", True):
            continue
        # Right-aligned as broadcasting aligns an operand of fewer dimensions.
        pad = (None,) * (op.ndim - ndim)
        spec = (*pad, *tuple(sharding.spec), *(None,) * ndim)[:top]
        if any(spec):
            mesh, loop_spec = m, spec
            break
    if mesh is None:
        return None
    in_specs = tuple(
        PartitionSpec(*loop_spec, *(None,) * (op.ndim - top)) for op in operands
    )
    outs = [PartitionSpec(*loop_spec, *(None,) * (len(s) - top)) for s in out_shapes]
    mapped = jax.shard_map(
        functools.partial(on_map, stage_local),
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
