"""The host callback of a traced call: lazyapply's own primitive, lowered on one CPU
device to lazyapply's FFI target (:mod:`._host`) instead of ``jax.pure_callback``.

Why not ``jax.pure_callback`` there: on CPU, jaxlib 0.10 reports a callback's exception
as ``INTERNAL: CpuCallback error calling callback:`` followed by nanobind's text of it
(the thread's whole Python stack, then ``Type: message``), and JAX logs the traceback
before that; the kernel's message comes last, and neither the exception nor its notes
survive. Our FFI target's error is lazyapply's message alone, so the first line a user
reads is ``JaxRuntimeError: UNKNOWN: f (jax (traced)): the kernel raised ...`` (the
status code is XLA's). It is also cheaper per call: no ``device_put`` of the operands,
no pytree flattening, no second output check.

The primitive, ``lazyapply_host_call``, has the semantics of ``pure_callback``:

- its result types are the declared ones; it has no derivative (the staging is wrapped
  in a ``custom_jvp`` that says which to declare, see :mod:`._stage`);
- under ``vmap`` it batches like ``pure_callback`` with the same ``vmap_method``:
  ``broadcast_all`` (one call, a leading batch dimension on every operand) or
  ``sequential`` (a loop);
- lowered in a program on one CPU device: a custom call of ``lazyapply_host_callback``
  whose ``key`` selects the :class:`~._host.HostEntry`, kept alive by the compiled
  executable (``ModuleContext.add_keepalive``) as well as by the staging;
- lowered anywhere else (another platform, a program over several devices, inside
  ``shard_map``): ``pure_callback``'s own lowering, which runs it once on the first
  device (XLA gathers the operands) or once per device, as JAX defines;
- bound on concrete values (``vmap`` outside ``jit``): the callback runs now, and the
  kernel's error is raised as lazyapply's exception.

Where JAX lacks what this needs (``jax.extend.core.Primitive``), :func:`host_callback`
returns ``None`` and the caller stages ``jax.pure_callback`` itself.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from lazyapply.adapters.jax._host import TARGET, HostEntry, register_target

if TYPE_CHECKING:
    from collections.abc import Callable

    from lazyapply.adapters.jax._callback import Callback

__all__ = ["host_callback"]

_PRIMITIVE: list[Any] = []  # the primitive, made once per process (or None)
_LOCK = threading.Lock()


def host_callback(
    callback: Callback, dtypes: tuple[Any, ...], result: Any, method: str
) -> Callable[..., Any] | None:
    """A staged function of the operands that calls ``callback`` on the host.

    ``result`` is a ``ShapeDtypeStruct`` or a tuple of them (several outputs);
    ``method`` the ``vmap_method`` (``broadcast_all`` or ``sequential``). ``None``
    when this JAX cannot make the primitive.
    """
    prim = _primitive()
    if prim is None:
        return None
    multi = isinstance(result, tuple)
    entry = HostEntry(callback, dtypes, result if multi else (result,), multi)
    return functools.partial(_bind, prim, entry, method)


def _bind(prim: Any, entry: HostEntry, method: str, *ops: Any) -> Any:
    from jax.core import ShapedArray

    register_target()  # before XLA compiles the program that calls it
    avals = tuple(ShapedArray(s.shape, s.dtype) for s in entry.outs)
    outs = prim.bind(*ops, entry=entry, vmap_method=method, result_avals=avals)
    return tuple(outs) if entry.multi else outs[0]


def _primitive() -> Any:
    if _PRIMITIVE:
        return _PRIMITIVE[0]
    with _LOCK:
        if not _PRIMITIVE:
            _PRIMITIVE.append(_make_primitive())
    return _PRIMITIVE[0]


def _make_primitive() -> Any:
    try:
        from jax.extend.core import Primitive
        from jax.interpreters import batching, mlir
    except ImportError:  # an older JAX: jax.pure_callback as before
        return None
    prim: Any = Primitive("lazyapply_host_call")  # untyped in jax's stubs
    prim.multiple_results = True
    prim.def_impl(_impl)
    prim.def_abstract_eval(lambda *_, result_avals, **__: result_avals)
    batching.primitive_batchers[prim] = functools.partial(_batch, prim)
    # Not cacheable: the lowering may be pure_callback's, which is not either.
    mlir.register_lowering(prim, _lower, cacheable=False)
    return prim


def _impl(*ops: Any, entry: HostEntry, vmap_method: str, result_avals: Any) -> Any:
    """Concrete operands (``vmap`` outside ``jit``): call the kernel now."""
    import jax.numpy as jnp
    import numpy as np

    # Concrete JAX arrays: what the kernel gets without as_numpy (see HostEntry).
    value = entry.callback(*(ops if entry.as_jax else [np.asarray(o) for o in ops]))
    outs = entry.checked(value, result_avals)
    return [jnp.asarray(v, a.dtype) for v, a in zip(outs, result_avals, strict=True)]


def _batch(
    prim: Any,
    args: Any,
    dims: Any,
    *,
    entry: HostEntry,
    vmap_method: str,
    result_avals: Any,
) -> Any:
    """``vmap``, as ``pure_callback`` does with the same ``vmap_method``."""
    import jax
    import jax.numpy as jnp

    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    moved = [
        a if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims, strict=True)
    ]
    if vmap_method == "broadcast_all":  # one call, every operand batched
        full = [
            jnp.broadcast_to(a, (size, *a.shape)) if d is None else a
            for a, d in zip(moved, dims, strict=True)
        ]
        avals = tuple(a.update(shape=(size, *a.shape)) for a in result_avals)
        outs = prim.bind(
            *full, entry=entry, vmap_method=vmap_method, result_avals=avals
        )
    else:  # sequential: one call per batch element

        def one(batched: Any) -> Any:
            it = iter(batched)
            ops = [
                a if d is None else next(it) for a, d in zip(moved, dims, strict=True)
            ]
            return prim.bind(
                *ops, entry=entry, vmap_method=vmap_method, result_avals=result_avals
            )

        outs = jax.lax.map(
            one, [a for a, d in zip(moved, dims, strict=True) if d is not None]
        )
    return list(outs), [0] * len(outs)


def _lower(
    ctx: Any, *ops: Any, entry: HostEntry, vmap_method: str, result_avals: Any
) -> Any:
    import jax
    import numpy as np
    from jax.interpreters import mlir

    module = ctx.module_context
    if tuple(module.platforms) == ("cpu",) and _one_device(module.axis_context):
        module.add_keepalive(entry)  # as long as the executable
        rule = jax.ffi.ffi_lowering(TARGET)
        return rule(ctx, *ops, key=np.int64(entry.key))
    fallback = functools.partial(_pure_callback, entry, vmap_method, result_avals)
    return mlir.lower_fun(fallback, multiple_results=True)(ctx, *ops)


def _one_device(axis_context: Any) -> bool:
    """Whether the program runs on one device, with JAX's automatic sharding."""
    try:  # private; if it moves, every program takes pure_callback's lowering
        from jax._src.sharding_impls import ShardingContext
    except ImportError:
        return False
    return isinstance(axis_context, ShardingContext) and axis_context.num_devices == 1


def _pure_callback(entry: HostEntry, method: str, avals: Any, *ops: Any) -> Any:
    import jax

    struct: Any = jax.ShapeDtypeStruct  # untyped in jax's stubs
    structs = tuple(struct(a.shape, a.dtype) for a in avals)
    result = structs if entry.multi else structs[0]
    out = jax.pure_callback(entry.callback, result, *ops, vmap_method=method)
    return list(out) if entry.multi else [out]
