"""The staging of a call without derivatives: native, per shard, or a host callback.

Chosen once per signature (see :mod:`._stage`): the native path when the kernel
compiles for it (:func:`~.native.native_decision`), else a host callback of the
one :class:`~lazyapply._call.KernelCall` (:mod:`._hostcall`: lazyapply's FFI target
on one CPU device, ``jax.pure_callback`` elsewhere); either runs once per shard when the
operands are sharded along loop dimensions (:func:`~._shard.per_shard`); a padded
shard's kernel sees only its real elements (:func:`_native_shard`).
Wrapped in a ``custom_jvp`` whose rule says which derivative to declare.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._errors import SpecError
from lazyapply.adapters.jax._callback import Callback
from lazyapply.adapters.jax._host import HostEntry
from lazyapply.adapters.jax._hostcall import host_callback
from lazyapply.adapters.jax._shard import (
    in_shard,
    padded_shard,
    partitioned_callback,
    per_shard,
)
from lazyapply.adapters.jax._stage import (
    Decision,
    Route,
    Stager,
    Staging,
    no_derivative,
)
from lazyapply.adapters.jax.native import native_decision, native_stage

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.adapters.jax import JaxAdapter
    from lazyapply.spec._metadata import Layout

__all__ = ["plain_staging"]


def plain_staging(
    adapter: JaxAdapter,
    stager: Stager,
    call: KernelCall,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    layout: Layout,
) -> Staging:
    """A callback, native or per-shard staging, without derivatives."""
    import jax
    import numpy as np

    spec = stager.spec
    shapes = layout.shapes
    if any(None in s for s in shapes):
        msg = (
            f"Output shape must be fully known when running inside jax.jit; "
            f"{call.name} got shape={shapes if layout.multi else shapes[0]}. "
            "Declare every size in shape= (JAX traces need static shapes)"
        )
        raise SpecError(msg)
    arrays = [args[i] for i in positions]
    ndims = tuple(np.ndim(a) for a in arrays)
    batched = spec.mode.elementwise or spec.mode.signature is not None
    align = None
    if batched and layout.loop_ndims is not None:
        align = tuple(layout.loop_ndims[i] for i in positions)
    structs = tuple(
        jax.ShapeDtypeStruct(s, d)  # type: ignore[no-untyped-call]
        for s, d in zip(shapes, layout.dtypes, strict=True)
    )
    result = structs if layout.multi else structs[0]
    loop = (align or ndims) if batched else None
    decision, native = native_decision(
        call, args, positions, structs, loop, spec.as_numpy
    )
    fn: Callable[..., Any]
    callback = Callback(call, args, positions, ndims, align)
    entry = None
    if in_shard() == "partition":  # pure_callback would crash there (see _host)
        dtypes = tuple(a.dtype for a in arrays)
        entry = HostEntry(callback, dtypes, structs, layout.multi)
    if native is not None:
        fn = native
        if entry is not None:
            padded = functools.partial(
                native_stage, call, args, positions, structs, loop, spec.as_numpy
            )
            fn = functools.partial(_native_shard, native, padded, entry)
    elif entry is not None:
        fn = functools.partial(partitioned_callback, entry)
    else:
        method = "broadcast_all" if batched else "sequential"
        dtypes = tuple(a.dtype for a in arrays)
        found = host_callback(callback, dtypes, result, method)
        fn = found or functools.partial(_pure_callback, callback, result, method)
    local = functools.partial(adapter.stage_local, stager, args, positions, call.kwargs)
    sharded = None
    if not layout.declared[0] and loop is not None:
        sharded = per_shard(local, arrays, loop, shapes, layout.multi, native)
    if sharded is not None:
        fn = sharded
        decision = Decision(Route.SHARDED, str(decision))
    return Staging(no_derivative(fn, stager.hint), decision)


def _native_shard(
    native: Callable[..., Any],
    padded: Callable[..., Any],
    entry: HostEntry,
    *ops: Any,
) -> Any:
    """One partitioned shard's native call. When XLA pads the shard, the kernel must
    see only the real elements (one raising on the padding's values would fail): the
    handler compiled for the shard's extents (``padded(padded=rank)``), else the host
    callback, which slices the operands."""
    extents = padded_shard()
    if extents is None:
        return native(*ops)
    staged = padded(padded=int(extents.shape[0]))
    if isinstance(staged, str):
        return partitioned_callback(entry, *ops)
    return staged(*ops, extents)


def _pure_callback(callback: Callback, result: Any, method: str, *ops: Any) -> Any:
    import jax

    return jax.pure_callback(callback, result, *ops, vmap_method=method)
