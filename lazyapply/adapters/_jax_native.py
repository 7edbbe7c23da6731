"""The native path: a Numba kernel under ``jax.jit`` as an XLA FFI target, no Python.

:func:`native_stage` turns one traced call of a Numba dispatcher (``@njit``,
``@vectorize``, ``@guvectorize``) into a function of the traced operands that stages
``jax.ffi.ffi_call``. The handler (:mod:`._ffi_numba`) is compiled and registered once
per signature: operand dtypes and ranks, the types of the Python scalars (passed as FFI
attributes, so a new value neither recompiles nor retraces the handler), the positions
of ``None`` arguments, result dtypes and ranks. When the path cannot apply,
:func:`native_stage` returns the reason and the caller uses its ``pure_callback``. Every
decision is logged on the ``lazyapply.native`` logger at DEBUG and kept for
:func:`explain_native`.

Nothing here imports jax or numba at import time.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["explain_native", "native_stage"]

logger = logging.getLogger("lazyapply.native")

_LOCK = threading.Lock()
# Handlers are never evicted: XLA keeps their addresses for the life of the process.
_TARGETS: dict[tuple[Any, ...], tuple[str, Any] | str] = {}
_DECISIONS: dict[Any, str] = {}
_COUNTER = itertools.count()
_SCALARS = (bool, int, float)


def explain_native(kernel: Any) -> str | None:
    """Why the last traced call of ``kernel`` did or did not take the native path.

    Returns ``"native: <FFI target>"``, ``"callback: <reason>"``, or ``None`` when
    ``kernel`` was never staged under a JAX transformation with ``as_numpy=True``.
    """
    return _DECISIONS.get(getattr(kernel, "__wrapped__", kernel)) or (
        _DECISIONS.get(kernel)
    )


def _decide(kernel: Any, name: str, decision: str) -> None:
    if len(_DECISIONS) > 1024:
        _DECISIONS.clear()
    _DECISIONS[kernel] = decision
    logger.debug("%s: %s", name, decision)


def _kind(func: Any) -> str | None:
    """'jit', 'ufunc' or 'gufunc' for a Numba dispatcher; ``None`` otherwise."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    from numba.core.dispatcher import Dispatcher
    from numba.np.ufunc.dufunc import DUFunc
    from numba.np.ufunc.gufunc import GUFunc

    if isinstance(func, Dispatcher):
        return "jit"
    if isinstance(func, DUFunc):
        return "ufunc"
    return "gufunc" if isinstance(func, GUFunc) else None


def native_stage(
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...] | None,
) -> Callable[..., Any] | str:
    """A function of the operands ``args[i] for i in positions`` staging the kernel.

    Parameters
    ----------
    template
        The callback path's :class:`~lazyapply._call.KernelCall` (kernel, kwargs, name,
        multi, declared): its checks and messages are reused on the error path.
    args, positions
        The call's positional arguments and which of them are traced operands.
    structs
        ``jax.ShapeDtypeStruct`` per output.
    loop_ndims
        Loop ranks of the operands for an elementwise/gufunc kernel (``vmap`` batches
        them into one call); ``None`` for a whole-array kernel (one call per element).

    Returns
    -------
    callable or str
        The staging function, or why the native path does not apply.
    """
    func, name = template.func, template.name
    dtypes = [args[i].dtype for i in positions] + [s.dtype for s in structs]
    reason = _refusal(func, args, positions, template.kwargs, dtypes)
    if reason is None:
        built = _target(template, args, positions, structs)
        reason = built if isinstance(built, str) else None
    if reason is not None:
        _decide(func, name, f"callback: {reason}")
        return reason
    target, _ = built
    _decide(func, name, f"native: {target}")
    return _stager(target, template, args, positions, structs, loop_ndims)


def _refusal(
    func: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    kwargs: dict[str, Any],
    dtypes: list[Any],
) -> str | None:
    import jax
    import numpy as np

    kind = _kind(func)
    if kind is None:
        return f"{type(func).__name__} is not a Numba dispatcher"
    if kind == "jit" and func.targetoptions.get("forceobj"):
        return "the Numba kernel is compiled in object mode"
    if jax.default_backend() != "cpu":
        return f"the default JAX backend is {jax.default_backend()}, not cpu"
    for dt in map(np.dtype, dtypes):
        # Numba's array types: bool, integers, float32/64, complex64/128.
        if dt.kind not in "biufc" or dt == np.float16:
            return f"Numba has no {dt} arrays"
    for i, a in enumerate(args):
        if i not in positions and a is not None and type(a) not in _SCALARS:
            return f"argument {i} is a {type(a).__name__} (only bool/int/float/None)"
    for key, v in kwargs.items():
        if v is not None and type(v) not in _SCALARS:
            return f"keyword {key!r} is a {type(v).__name__} (only bool/int/float/None)"
    big = [
        v for v in (*args, *kwargs.values()) if type(v) is int and v.bit_length() > 63
    ]
    if big:
        return f"the Python int {big[0]} does not fit in int64"
    return None


def _scalar_type(v: Any) -> str:
    return "bool" if type(v) is bool else "int64" if type(v) is int else "float64"


def _target(
    template: Any, args: tuple[Any, ...], positions: tuple[int, ...], structs: Any
) -> tuple[str, Any] | str:
    """The registered FFI target for this signature (compiled once, thread-safely)."""
    import numpy as np

    kw = template.kwargs
    statics = [(i, args[i]) for i in range(len(args)) if i not in positions]
    key = (
        template.func,
        template.name,
        template.declared,
        template.multi,
        tuple((np.dtype(args[i].dtype), args[i].ndim) for i in positions),
        tuple((i, None if v is None else _scalar_type(v)) for i, v in statics),
        tuple((k, None if v is None else _scalar_type(v)) for k, v in kw.items()),
        tuple((np.dtype(s.dtype), len(s.shape)) for s in structs),
    )
    with _LOCK:  # one compile per signature, even when threads trace at once
        found = _TARGETS.get(key)
        if found is None:
            found = _TARGETS[key] = _compile(template, args, positions, structs, key)
    return found


def _compile(
    template: Any, args: Any, positions: Any, structs: Any, key: Any
) -> tuple[str, Any] | str:
    import jax
    import numba
    from numba import types

    from ._ffi_numba import FailureInfo, build_handler, capsule

    ins = tuple((numba.from_dtype(dt), nd) for dt, nd in key[4])
    outs_dt = tuple((numba.from_dtype(dt), nd) for dt, nd in key[7])
    layout: list[Any] = []
    scalars: list[Any] = []
    names: list[str] = []
    for value in (*args, *template.kwargs.values()):
        i = len(layout)
        if i < len(args) and i in positions:
            layout.append(("a", positions.index(i)))
            names.append(f"x{positions.index(i)}")
        elif value is None:
            layout.append(("n",))
            names.append("None")
        else:
            layout.append(("s", len(scalars)))
            names.append(f"s{len(scalars)}")
            scalars.append(
                getattr(types, _scalar_type(value).replace("bool", "boolean"))
            )
    keys = tuple(template.kwargs)
    n = len(args)
    gufunc = _kind(template.func) == "gufunc"
    call_args = [*names[:n], *(f"o{k}" for k in range(len(outs_dt)) if gufunc)]
    call_args += [f"{k}={v}" for k, v in zip(keys, names[n:], strict=True)]
    params = [f"x{i}" for i in range(len(ins))] + [f"s{j}" for j in range(len(scalars))]
    params += [f"o{k}" for k in range(len(outs_dt)) if gufunc]
    src = (
        f"def kcall({', '.join(params)}):\n    return kernel({', '.join(call_args)})\n"
    )
    namespace: dict[str, Any] = {}
    exec(src, {"kernel": template.func}, namespace)
    sig = [types.Array(dt, nd, "C") for dt, nd in ins] + scalars
    sig += [types.Array(dt, nd, "C") for dt, nd in outs_dt if gufunc]
    try:
        kcall = numba.njit(tuple(sig))(namespace["kcall"])
    except Exception as exc:  # a typing error: the callback path runs it in Python
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"Numba could not compile the kernel for {sig}: {first}"
    ret = kcall.nopython_signatures[0].return_type
    outs = _outputs(ret, outs_dt, gufunc, template.multi)
    if isinstance(outs, str):
        return outs
    kinds = tuple({"bool": bool, "int64": int}.get(str(t), float) for t in scalars)
    failure = FailureInfo(
        template, tuple(layout), keys, key[4] and tuple(d for d, _ in key[4]), kinds
    )
    handler = build_handler(kcall, ins, tuple(scalars), outs, gufunc, failure)
    target = f"lazyapply_numba_{next(_COUNTER)}_{template.name}"[:120]
    jax.ffi.register_ffi_target(target, capsule(handler.address), platform="cpu")
    return target, handler  # the handler object keeps the machine code alive


def _outputs(ret: Any, outs: Any, gufunc: bool, multi: bool) -> Any:
    """(dtype, ndim, returns a scalar) per output, or why they cannot be copied."""
    import numba
    from jax.dtypes import canonicalize_dtype
    from numba import types
    from numba.np.numpy_support import as_dtype

    if gufunc:
        return tuple((dt, nd, False) for dt, nd in outs)
    rets = tuple(ret) if multi and isinstance(ret, types.BaseTuple) else (ret,)
    if (multi and not isinstance(ret, types.BaseTuple)) or len(rets) != len(outs):
        return f"the kernel returns {ret}, expected {len(outs)} output(s)"
    out = []
    for got, (dt, nd) in zip(rets, outs, strict=True):
        scalar = not isinstance(got, types.Array)
        gdt = got if scalar else got.dtype
        gnd = 0 if scalar else got.ndim
        if gnd != nd or not isinstance(gdt, (types.Number, types.Boolean)):
            return (
                f"the kernel returns {got}, expected {nd}-d {dt} (the callback checks)"
            )
        # Without x64 a float64 result is stored as float32, as the callback casts.
        canon = numba.from_dtype(canonicalize_dtype(as_dtype(gdt)))
        if dt not in (gdt, canon):
            return f"the kernel returns {got}, expected {dt} (the callback checks)"
        out.append((dt, nd, scalar))
    return tuple(out)


def _stager(
    target: str,
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...] | None,
) -> Callable[..., Any]:
    import jax
    import numpy as np

    values = [a for i, a in enumerate(args) if i not in positions and a is not None]
    values += [v for v in template.kwargs.values() if v is not None]
    attrs = {
        f"s{j:03d}": np.bool_(v)
        if type(v) is bool
        else np.int64(v)
        if type(v) is int
        else np.float64(v)
        for j, v in enumerate(values)
    }
    result = structs if template.multi else structs[0]
    method = None if loop_ndims is not None else "sequential"
    call = jax.ffi.ffi_call(target, result, vmap_method=method)

    def stage(*operands: Any) -> Any:
        return call(*operands, **attrs)

    if loop_ndims is None:
        return stage
    return _batched(stage, template, args, positions, structs, loop_ndims)


def _batched(
    stage: Callable[..., Any],
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...],
) -> Callable[..., Any]:
    """``stage`` with a vmap rule: one call of a handler compiled for rank + 1.

    ``jax.ffi.ffi_call``'s own batching would call the same handler, compiled for the
    unbatched ranks, with batched buffers; this rule stages a new signature instead.
    """
    import jax
    import jax.numpy as jnp

    staged = jax.custom_batching.custom_vmap(stage)
    top = max(loop_ndims)

    @staged.def_vmap
    def _rule(size: int, in_batched: list[bool], *ops: Any) -> Any:
        full = [
            op if b else jnp.broadcast_to(op, (size, *op.shape))
            for op, b in zip(ops, in_batched, strict=True)
        ]
        # Put the batch axis in front of the outermost loop axis of every operand,
        # as the callback's _align does, so that loop axes still broadcast.
        aligned = [
            op.reshape((size, *(1,) * (top - n), *op.shape[1:])) if n < top else op
            for op, n in zip(full, loop_ndims, strict=True)
        ]
        new_args = list(args)
        for i, op in zip(positions, aligned, strict=True):
            new_args[i] = op
        shapes = tuple(
            jax.ShapeDtypeStruct((size, *s.shape), s.dtype)  # type: ignore[no-untyped-call]
            for s in structs
        )
        inner = native_stage(
            template, tuple(new_args), positions, shapes, (top + 1,) * len(ops)
        )
        if isinstance(inner, str):  # one call per batch element instead
            out = jax.lax.map(lambda xs: stage(*xs), tuple(full))
        else:
            out = inner(*aligned)
        return out, ([True] * len(structs) if template.multi else True)

    return staged
