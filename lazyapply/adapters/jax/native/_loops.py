# Numba intrinsics and cfuncs are untyped, and are called with fewer arguments than
# their Python signatures take (typingctx is supplied by Numba):
# mypy: disable-error-code="no-untyped-call,call-arg,var-annotated,no-any-return"
# pyright: reportCallIssue=false
"""Machine code for foreign kernels: one XLA FFI handler, and loops around C entries.

:data:`HANDLER` is one Numba ``cfunc`` for every foreign kernel, whatever its types
and ranks: it receives the address of a NumPy-style one-dimensional inner loop
(``void loop(char **args, npy_intp *dims, npy_intp *steps, void *data)``) and its
``data`` as FFI attributes, checks every buffer's XLA dtype and item size against the
``types``/``sizes`` attributes (8 bits per argument), broadcasts dimensions of size 1
with zero strides, and calls the loop once (contiguous or scalar operands) or once per
row. It is compiled once per installation (``cache=True``), not per kernel.

A SciPy ufunc brings its own inner loops. A Cython entry point gets one from
:func:`entry_loop`: a ``cfunc`` per C signature and buffer dtypes that loads each
element, converts it to the C type, calls the entry (its address is the ``data``
pointer, so one loop serves every function of that signature) and stores the results.

Offsets: ``xla/ffi/api/c_api.h`` (``jax.ffi.include_dir()``) on a 64-bit host, as in
:mod:`._handler`.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from lazyapply._caches import bounded
from lazyapply.adapters.jax.native._capi import CSignature
from lazyapply.adapters.jax.native._fpmode import fp_enter, fp_leave
from lazyapply.adapters.jax.native._handler import (
    FFI_API_VERSION,
    load_i32,
    load_i64,
    make_error,
    store_i32,
)

__all__ = ["HANDLER", "MAX_ARGS", "entry_loop"]

MAX_ARGS = 8  # arguments + results: 8 bits each of a 64-bit attribute
_I64, _I8P = ir.IntType(64), ir.IntType(8).as_pointer()
_MAJOR, _MINOR = FFI_API_VERSION
_BAD_FRAME = np.frombuffer(b"lazyapply: unexpected XLA FFI call frame\0", np.uint8)
_BAD_TYPE = np.frombuffer(
    b"lazyapply: an operand of a native SciPy/Cython call has an unexpected dtype "
    b"or rank\0",
    np.uint8,
)
_BAD_SHAPE = np.frombuffer(
    b"lazyapply: operands of a native SciPy/Cython call do not broadcast to the "
    b"result's shape\0",
    np.uint8,
)


@intrinsic
def _call_loop(
    typingctx: Any, fn: Any, args: Any, dims: Any, steps: Any, data: Any
) -> Any:
    """``((loop) fn)((char **) args, (npy_intp *) dims, (npy_intp *) steps, data)``."""

    def codegen(context: Any, builder: Any, sig: Any, llargs: Any) -> Any:
        i64p = _I64.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [_I8P.as_pointer(), i64p, i64p, _I8P])
        f = builder.inttoptr(llargs[0], fnty.as_pointer())
        builder.call(
            f,
            [
                builder.inttoptr(llargs[1], _I8P.as_pointer()),
                builder.inttoptr(llargs[2], i64p),
                builder.inttoptr(llargs[3], i64p),
                builder.inttoptr(llargs[4], _I8P),
            ],
        )
        return context.get_dummy_value()

    i = types.int64
    return types.none(i, i, i, i, i), codegen


@numba.njit(cache=True)
def _attr(attrs: int, k: int) -> int:  # pragma: no cover
    # XLA_FFI_Scalar {dtype, value*}: every attribute here is an int64.
    return load_i64(load_i64(load_i64(attrs + 8 * k) + 8))  # type: ignore[no-any-return]


@numba.njit(cache=True)
def _strides(
    bufs: Any, nin: int, sizes: int, dtypes: int, rank: int, odims: int, out: Any
) -> int:  # pragma: no cover
    """Fill ``out``: data pointer, flat step, then byte strides (0: broadcast).

    Returns 1 when every operand is whole or a single element (one flat call), 0
    otherwise, -1 for an unexpected dtype or rank, -2 for shapes that do not
    broadcast to the first result's.
    """
    contiguous = 1
    for k in range(bufs.shape[0]):
        b = bufs[k]
        if load_i32(b + 16) != (dtypes >> (8 * k)) & 255:
            return -1
        if load_i64(b + 32) != rank:
            return -1
        out[k, 0] = load_i64(b + 24)
        dims = load_i64(b + 40)
        size = (sizes >> (8 * k)) & 255
        step = size
        full = True
        single = True
        for d in range(rank - 1, -1, -1):
            dk = load_i64(dims + 8 * d)
            if dk == load_i64(odims + 8 * d):
                out[k, 2 + d] = step
            elif dk == 1 and k < nin:
                out[k, 2 + d] = 0
                full = False
            else:
                return -2
            single = single and dk == 1
            step *= dk
        out[k, 1] = size if full else 0
        if not (full or single):
            contiguous = 0
    return contiguous


@numba.njit(cache=True)
def _rows(
    fn: int, data: int, ptrs: Any, strides: Any, odims: int, total: int
) -> None:  # pragma: no cover
    """Call the loop once per row (the last axis), an odometer over the others."""
    n, rank = strides.shape
    ptrs = ptrs.copy()
    strides = strides.copy()  # contiguous rows for the loop's steps
    count = np.empty(1, np.int64)
    count[0] = load_i64(odims + 8 * (rank - 1))
    steps = strides[:, rank - 1].copy()
    index = np.zeros(rank, np.int64)
    cur = np.empty(n, np.int64)
    for _ in range(total // count[0]):
        for k in range(n):
            p = ptrs[k]
            for d in range(rank - 1):
                p += index[d] * strides[k, d]
            cur[k] = p
        _call_loop(fn, cur.ctypes.data, count.ctypes.data, steps.ctypes.data, data)
        d = rank - 2
        while d >= 0:
            index[d] += 1
            if index[d] < load_i64(odims + 8 * d):
                break
            index[d] = 0
            d -= 1


@numba.cfunc(types.int64(types.int64), cache=True)
def _handler(frame: int) -> int:  # pragma: no cover  (machine code, run by XLA)
    ext = load_i64(frame + 8)
    if ext != 0 and load_i32(ext + 8) == 1:  # XLA_FFI_Extension_Metadata
        meta = load_i64(ext + 24)
        store_i32(meta + 24, _MAJOR)
        store_i32(meta + 28, _MINOR)
        return 0
    if load_i32(frame + 32) != 3:  # only XLA_FFI_ExecutionStage_EXECUTE
        return 0
    api = load_i64(frame + 16)
    nin = load_i64(frame + 56)
    nout = load_i64(frame + 96)
    n = nin + nout
    if load_i64(frame + 136) != 4 or nout < 1 or n > MAX_ARGS:
        return make_error(api, _BAD_FRAME.ctypes.data, 13)  # type: ignore[no-any-return]
    attrs = load_i64(frame + 160)  # sorted by name: data, fn, sizes, types
    bufs = np.empty(n, np.int64)
    for k in range(nin):
        bufs[k] = load_i64(load_i64(frame + 72) + 8 * k)
    for k in range(nout):
        bufs[nin + k] = load_i64(load_i64(frame + 112) + 8 * k)
    rank = load_i64(bufs[nin] + 32)
    odims = load_i64(bufs[nin] + 40) if rank else 0
    total = 1
    for d in range(rank):
        total *= load_i64(odims + 8 * d)
    table = np.zeros((n, 2 + rank), np.int64)  # pointer, flat step, strides
    sizes, dtypes = _attr(attrs, 2), _attr(attrs, 3)
    how = _strides(bufs, nin, sizes, dtypes, rank, odims, table)
    if how < 0:
        bad = _BAD_TYPE if how == -1 else _BAD_SHAPE
        return make_error(api, bad.ctypes.data, 3)  # type: ignore[no-any-return]
    if total == 0:
        return 0
    fn, data = _attr(attrs, 1), _attr(attrs, 0)
    mode = fp_enter()
    if how == 1:  # every operand is whole or one element: one flat call
        count = np.full(1, total, np.int64)
        ptrs = table[:, 0].copy()
        flat = table[:, 1].copy()
        _call_loop(fn, ptrs.ctypes.data, count.ctypes.data, flat.ctypes.data, data)
    else:
        _rows(fn, data, table[:, 0], table[:, 2:], odims, total)
    fp_leave(mode)
    return 0


HANDLER = _handler


@functools.cache
def _memory(nbtype: Any) -> tuple[Any, Any]:
    """Intrinsics loading and storing a ``nbtype`` at an integer address."""

    @intrinsic
    def load(typingctx: Any, addr: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr = builder.inttoptr(args[0], context.get_value_type(nbtype).as_pointer())
            return builder.load(ptr)

        return nbtype(types.int64), codegen

    @intrinsic
    def store(typingctx: Any, addr: Any, value: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr = builder.inttoptr(args[0], context.get_value_type(nbtype).as_pointer())
            builder.store(args[1], ptr)
            return context.get_dummy_value()

        return types.none(types.int64, nbtype), codegen

    return load, store


@functools.cache
def _entry_call(sig: CSignature) -> Any:
    """An intrinsic ``call(address, args)`` calling a C entry of signature ``sig``.

    Arguments arrive as the Numba types of their C types; a ``void`` entry's results
    are written into stack slots and returned (a tuple when several).
    """
    nb_args = tuple(numba.from_dtype(np.dtype(c)) for c in sig.args)
    nb_res = tuple(numba.from_dtype(np.dtype(c)) for c in sig.results)
    ret_type = nb_res[0] if len(nb_res) == 1 else types.Tuple(nb_res)

    @intrinsic
    def call(typingctx: Any, addr: Any, args: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, llargs: Any) -> Any:
            ll = [context.get_value_type(t) for t in nb_args]
            values = [builder.extract_value(llargs[1], k) for k in range(len(ll))]
            slots = []
            if sig.ret is None:
                for t in nb_res:
                    slot = cgutils.alloca_once(builder, context.get_value_type(t))
                    slots.append(slot)
                    ll.append(slot.type)
                    values.append(slot)
            if sig.skip_dispatch:
                ll.append(ir.IntType(32))
                values.append(ir.Constant(ir.IntType(32), 0))
            if sig.optional:
                ll.append(_I8P)
                values.append(ir.Constant(_I8P, None))
            res_ll = (
                ir.VoidType() if sig.ret is None else context.get_value_type(nb_res[0])
            )
            fnty = ir.FunctionType(res_ll, ll)
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            result = builder.call(fn, values)
            if sig.ret is not None:
                return result
            loaded = [builder.load(s) for s in slots]
            if len(loaded) == 1:
                return loaded[0]
            return context.make_tuple(builder, ret_type, loaded)

        return ret_type(types.int64, types.Tuple(nb_args)), codegen

    return call


_LOCK = threading.Lock()
_ENTRY_LOOPS = bounded("jax native: Cython entry loops per signature", 256)


def entry_loop(sig: CSignature, buffers: tuple[str, ...]) -> Any:
    """A NumPy-style inner loop calling a C entry of ``sig`` on each element.

    ``buffers`` are the type chars of the arguments' and results' buffers; each
    element is converted to and from the entry's C types as NumPy's ``astype``
    would. The entry's address is the loop's ``data``. Compiled once per key.
    """
    key = (sig, buffers)
    with _LOCK:
        found = _ENTRY_LOOPS.get(key)
        if found is None:
            found = _ENTRY_LOOPS.put(key, _compile_entry_loop(sig, buffers))
    return found


def _compile_entry_loop(sig: CSignature, buffers: tuple[str, ...]) -> Any:
    nin = len(sig.args)
    env: dict[str, Any] = {"call": _entry_call(sig)}
    lines = ["def loop(args, dims, steps, data):", "    n = load_i64(dims)"]
    env["load_i64"] = load_i64
    for k, char in enumerate(buffers):
        nb = numba.from_dtype(np.dtype(char))
        env[f"ld{k}"], env[f"st{k}"] = _memory(nb)
        lines += [
            f"    p{k} = load_i64(args + {8 * k})",
            f"    s{k} = load_i64(steps + {8 * k})",
        ]
    for k, char in enumerate(sig.args):
        env[f"T{k}"] = numba.from_dtype(np.dtype(char))
    lines.append("    for i in range(n):")
    cargs = "".join(f"T{k}(ld{k}(p{k} + i * s{k})), " for k in range(nin))
    lines.append(f"        r = call(data, ({cargs}))")
    res = sig.results
    for j, char in enumerate(buffers[nin:]):
        k = nin + j
        env[f"U{k}"] = numba.from_dtype(np.dtype(char))
        value = "r" if len(res) == 1 else f"r[{j}]"
        lines.append(f"        st{k}(p{k} + i * s{k}, U{k}({value}))")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), env, namespace)
    i = types.int64
    return numba.cfunc(types.void(i, i, i, i))(namespace["loop"])
