"""Compile a Numba kernel call into a registered XLA FFI target (the native path).

:func:`compile_target` writes a small ``@njit`` wrapper that calls the kernel with the
call's layout (operands, scalar attributes, baked ``None``\\ s, keywords; a gufunc also
gets the result buffers), compiles it for the operands' Numba types, checks what it
returns against the declared outputs, builds the ``cfunc`` handler around it and
registers it with ``jax.ffi.register_ffi_target``. Every refusal is a reason string.
:func:`batched` gives a staged call its ``vmap`` rule (one call of a new signature).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["batched", "compile_target"]

_COUNTER = itertools.count()


def compile_target(
    template: Any, args: Any, positions: Any, key: Any
) -> tuple[str, Any] | str:
    """Compile and register the FFI handler for signature ``key`` (see _target).

    Returns ``(target name, handler)`` or why Numba cannot run this call natively.
    """
    import jax
    import numba
    from numba import types

    from lazyapply.adapters.jax.native import kernel_kind
    from lazyapply.adapters.jax.native._failure import FailureInfo
    from lazyapply.adapters.jax.native._handler import build_handler, capsule

    ins = tuple((numba.from_dtype(dt), nd) for dt, nd in key[4])
    outs_dt = tuple((numba.from_dtype(dt), nd) for dt, nd in key[7])
    layout, scalars, names = _layout(args, positions, template.kwargs)
    keys = tuple(template.kwargs)
    n = len(args)
    gufunc = kernel_kind(template.func) == "gufunc"
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
    outs = _outputs(ret, outs_dt, gufunc, template.check.multi)
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


def _layout(
    args: tuple[Any, ...], positions: tuple[int, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[Any], list[str]]:
    """Each argument's role, the scalars' Numba types, and its name in the wrapper."""
    from numba import types

    from lazyapply.adapters.jax.native import scalar_type

    layout: list[Any] = []
    scalars: list[Any] = []
    names: list[str] = []
    for i, value in enumerate((*args, *kwargs.values())):
        if i < len(args) and i in positions:
            layout.append(("a", positions.index(i)))
            names.append(f"x{positions.index(i)}")
        elif value is None:
            layout.append(("n",))
            names.append("None")
        else:
            layout.append(("s", len(scalars)))
            names.append(f"s{len(scalars)}")
            kind = scalar_type(value).replace("bool", "boolean")
            scalars.append(getattr(types, kind))
    return layout, scalars, names


def _outputs(ret: Any, outs: Any, gufunc: bool, multi: bool) -> Any:
    """(dtype, ndim, returns a scalar) per output, or why they cannot be copied."""
    import numba
    from jax.dtypes import canonicalize_dtype
    from numba import types
    from numba.np.numpy_support import as_dtype

    if gufunc:
        return tuple((dt, nd, False) for dt, nd in outs)
    is_tuple = isinstance(ret, types.BaseTuple)
    rets = tuple(ret) if multi and is_tuple else (ret,)  # type: ignore[call-overload]
    if (multi and not is_tuple) or len(rets) != len(outs):
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


def batched(
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

    from lazyapply.adapters.jax.native import native_stage

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
        return out, ([True] * len(structs) if template.check.multi else True)

    return staged
