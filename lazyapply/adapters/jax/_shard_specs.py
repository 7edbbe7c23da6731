"""The partition specs of a per-shard call (:mod:`._shard`): which mesh axes shard
each loop dimension, Shardy's sharding rule, and the padding of uneven shards.

A loop dimension is sharded as the operands shard it; core dimensions are never
sharded (a gufunc needs them whole). A spec entry names one mesh axis, several
(``P(("a", "b"))``), or none.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["core_factors", "loop_spec_of", "named", "padded_loops", "sharding_rule"]


def _names(entry: Any) -> tuple[str, ...]:
    """A PartitionSpec entry's mesh axis names."""
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(n for n in entry if isinstance(n, str))


def loop_spec_of(
    mesh: Any, arg_shapes: Any, top: int, *, spread: bool
) -> tuple[Any, ...]:
    """Each loop dimension's mesh axes: the first operand's that shards it (two
    operands sharded differently agree on one). ``spread``: replicated operands are
    split along the first loop dimension over the whole mesh, so that the devices
    compute one part each, not each the whole (a host callback's copies would queue
    for the GIL); XLA then gathers the result if the program wants it replicated.
    Operands sharded along some mesh axes only keep that sharding, like XLA's own
    elementwise ops: the devices along the other axes compute the same shard."""
    used: set[str] = set()
    spec: list[tuple[str, ...]] = []
    for d in range(top):
        pick: tuple[str, ...] = ()
        for a in arg_shapes:
            entries = (*tuple(getattr(a.sharding, "spec", ())), *(None,) * a.ndim)
            names = _names(entries[d])
            if names and not used.intersection(names):
                pick = names
                break
        used.update(pick)
        spec.append(pick)
    if spread and not used and mesh.size > 1:
        spec[0] = tuple(n for n in mesh.axis_names if mesh.shape[n] > 1)
    return tuple(None if not p else p[0] if len(p) == 1 else p for p in spec)


def named(mesh: Any, loop_spec: tuple[Any, ...], core: int) -> Any:
    import jax.sharding as shd

    PartitionSpec: Any = shd.PartitionSpec  # untyped in jax's stubs
    return shd.NamedSharding(mesh, PartitionSpec(*loop_spec, *(None,) * core))


def padded_loops(
    mesh: Any, loop_spec: tuple[Any, ...], shape: tuple[int, ...]
) -> tuple[tuple[int, tuple[str, ...]], ...] | None:
    """Each loop dimension's size and mesh axes, when the mesh leaves one padded."""
    out = []
    uneven = False
    for size, entry in zip(shape, loop_spec, strict=False):
        names = _names(entry)
        parts = 1
        for n in names:
            parts *= mesh.shape[n]
        uneven = uneven or size % parts != 0
        out.append((size, names))
    return tuple(out) if uneven else None


def core_factors(rule: str, top: int) -> tuple[str, ...]:
    """The rule's core factors (every factor after the loop ones)."""
    factors = sorted(set(rule.replace(",", " ").replace("->", " ").split()))
    return tuple(f for f in factors if f >= string.ascii_lowercase[top])


def sharding_rule(operands: list[Any], top: int, out_core_ndims: Any) -> str:
    """Shardy's einsum-like rule: shared loop factors, a factor per core axis."""
    letters = iter(string.ascii_lowercase)
    loop = [next(letters) for _ in range(top)]
    ins = [
        " ".join(loop + [next(letters) for _ in range(op.ndim - top)])
        for op in operands
    ]
    outs = [" ".join(loop + [next(letters) for _ in range(c)]) for c in out_core_ndims]
    return f"{', '.join(ins)} -> {', '.join(outs)}"
