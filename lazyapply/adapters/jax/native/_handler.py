"""Numba ``cfunc`` handlers for XLA's typed FFI: the native path's machine code.

Imported only once a Numba kernel is staged under ``jax.jit`` (it imports numba). The
handler is a ``cfunc`` of C type ``XLA_FFI_Error* (XLA_FFI_CallFrame*)``; pointers are
carried as ``int64`` and turned into typed pointers by the intrinsics below. The byte
offsets are those of ``xla/ffi/api/c_api.h`` (``jax.ffi.include_dir()``) on a 64-bit
host; the handler checks the frame's argument, result and attribute counts before it
reads a buffer, and answers XLA's metadata query (API version) at registration.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.extending import intrinsic

from lazyapply.adapters.jax.native._failure import FailureInfo, failure_bytes

__all__ = ["build_handler", "capsule"]

# XLA_FFI_API_MAJOR / XLA_FFI_API_MINOR of the header this layout was read from.
FFI_API_VERSION = (0, 3)
_I64, _I32, _I8P = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()


@intrinsic
def load_i64(typingctx: Any, addr: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.load(builder.inttoptr(args[0], _I64.as_pointer()))

    return types.int64(types.int64), codegen


@intrinsic
def load_i32(typingctx: Any, addr: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        value = builder.load(builder.inttoptr(args[0], _I32.as_pointer()))
        return builder.sext(value, _I64)

    return types.int64(types.int64), codegen


@intrinsic
def store_i32(typingctx: Any, addr: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = builder.inttoptr(args[0], _I32.as_pointer())
        builder.store(builder.trunc(args[1], _I32), ptr)
        return context.get_dummy_value()

    return types.none(types.int64, types.int64), codegen


@functools.cache
def pointer_to(nbtype: Any) -> Any:
    """An intrinsic turning an address into a ``CPointer(nbtype)`` for ``carray``."""

    @intrinsic
    def as_pointer(typingctx: Any, addr: Any) -> Any:
        ptr_type = types.CPointer(nbtype)  # type: ignore[no-untyped-call]

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(ptr_type))

        return ptr_type(types.int64), codegen

    return as_pointer


@intrinsic
def make_error(typingctx: Any, api: Any, message: Any, code: Any) -> Any:
    """``api->XLA_FFI_Error_Create(&{message, code})``; XLA copies the message."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        # XLA_FFI_Error_Create_Args: struct_size, extension_start, message, errc.
        struct = ir.LiteralStructType([_I64, _I8P, _I8P, _I32])
        slot = builder.alloca(struct)
        builder.store(ir.Constant(struct, [32, None, None, 0]), slot)
        builder.store(
            builder.inttoptr(args[1], _I8P), builder.gep(slot, [_I32(0), _I32(2)])
        )
        builder.store(
            builder.trunc(args[2], _I32), builder.gep(slot, [_I32(0), _I32(3)])
        )
        fn_type = ir.FunctionType(_I8P, [struct.as_pointer()])
        # XLA_FFI_Api: struct_size, extension_start, api_version (24 bytes),
        # internal_api, then XLA_FFI_Error_Create at byte 48.
        slot_48 = builder.add(args[0], _I64(48))
        fn = builder.load(builder.inttoptr(slot_48, fn_type.as_pointer().as_pointer()))
        return builder.ptrtoint(builder.call(fn, [slot]), _I64)

    return types.int64(types.int64, types.int64, types.int64), codegen


@numba.njit(cache=False)
def _fail(api: int, slot: int, frame: int) -> int:  # pragma: no cover
    # Numba forbids `with objmode` inside `except`, so the handler calls this. It is
    # compiled once: Python reads the buffers from the frame itself.
    with numba.objmode(text="uint8[::1]"):
        text = failure_bytes(slot, frame)
    return make_error(api, text.ctypes.data, 2)  # type: ignore[no-any-return,call-arg]


def _view(name: str, buf: str, ndim: int, ptr: str) -> list[str]:
    """Source lines viewing XLA_FFI_Buffer ``buf`` (data at 24, dims at 40)."""
    if ndim == 0:
        return [f"    {name} = carray({ptr}(load_i64({buf} + 24)), (1,)).reshape(())"]
    dims = ", ".join(f"load_i64(d_{name} + {8 * k})" for k in range(ndim))
    return [
        f"    d_{name} = load_i64({buf} + 40)",
        f"    {name} = carray({ptr}(load_i64({buf} + 24)), ({dims},))",
    ]


def build_handler(
    call: Callable[..., Any],
    ins: tuple[tuple[Any, int], ...],
    scalars: tuple[Any, ...],
    outs: tuple[tuple[Any, int, bool], ...],
    writes_outputs: bool,
    failure: FailureInfo,
) -> Any:
    """Compile the ``cfunc`` handler around the njit wrapper ``call``.

    ``ins``: (numba dtype, ndim) per operand; ``scalars``: numba type per attribute
    (named ``s000``, ``s001``... so that XLA's name order is their order); ``outs``:
    (numba dtype, ndim, kernel returns a scalar) per result. ``writes_outputs``: the
    kernel (a gufunc) takes the result buffers as its last arguments.
    """
    env: dict[str, Any] = {
        "carray": numba.carray,  # type: ignore[attr-defined]
        "load_i64": load_i64,
        "load_i32": load_i32,
        "store_i32": store_i32,
        "make_error": make_error,
        "fail": _fail,
        "kcall": call,
        "BAD": np.frombuffer(b"lazyapply: unexpected XLA FFI call frame\0", np.uint8),
    }
    slot = failure.register()
    lines = _prologue(len(ins), len(outs), len(scalars))
    for i, (dtype, ndim) in enumerate(ins):
        env[f"P_x{i}"] = pointer_to(dtype)
        lines += _view(f"x{i}", f"load_i64(a + {8 * i})", ndim, f"P_x{i}")
    for j, nbtype in enumerate(scalars):  # XLA_FFI_Scalar: dtype, then value*
        env[f"P_s{j}"] = pointer_to(nbtype)
        lines.append(
            f"    s{j} = carray(P_s{j}(load_i64(load_i64(t + {8 * j}) + 8)), (1,))[0]"
        )
    for k, (dtype, ndim, _) in enumerate(outs):
        env[f"P_o{k}"] = pointer_to(dtype)
        lines += _view(f"o{k}", f"load_i64(r + {8 * k})", ndim, f"P_o{k}")
    operands = [f"x{i}" for i in range(len(ins))] + [
        f"s{j}" for j in range(len(scalars))
    ]
    results = [f"o{k}" for k in range(len(outs))]
    lines += ["    ok = True", "    try:"]
    if writes_outputs:
        lines.append(f"        kcall({', '.join(operands + results)})")
    else:
        lines.append(f"        res = kcall({', '.join(operands)})")
    lines += ["    except Exception:", "        ok = False"]
    if not writes_outputs:
        lines += _copy_lines(outs)
    lines += [
        "    if not ok:",
        f"        return fail(api, {slot}, frame)",
        "    return 0",
    ]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), env, namespace)
    return numba.cfunc(types.int64(types.int64))(namespace["handler"])


def _prologue(n_in: int, n_out: int, n_attr: int) -> list[str]:
    """Answer the metadata query, check the stage and the counts, find the arrays."""
    major, minor = FFI_API_VERSION
    return [
        "def handler(frame):",
        "    ext = load_i64(frame + 8)",
        "    if ext != 0 and load_i32(ext + 8) == 1:",  # XLA_FFI_Extension_Metadata
        "        meta = load_i64(ext + 24)",
        f"        store_i32(meta + 24, {major})",
        f"        store_i32(meta + 28, {minor})",
        "        return 0",
        "    if load_i32(frame + 32) != 3:",  # only XLA_FFI_ExecutionStage_EXECUTE
        "        return 0",
        "    api = load_i64(frame + 16)",
        f"    if (load_i64(frame + 56) != {n_in} or load_i64(frame + 96) != "
        f"{n_out} or load_i64(frame + 136) != {n_attr}):",
        "        return make_error(api, BAD.ctypes.data, 13)",
        "    a = load_i64(frame + 72)",
        "    r = load_i64(frame + 112)",
        "    t = load_i64(frame + 160)",
    ]


def _copy_lines(outs: tuple[tuple[Any, int, bool], ...]) -> list[str]:
    """Check each returned array's shape against its result buffer, then copy."""
    multi = len(outs) > 1
    lines = ["    if ok:"]
    for k, (_, ndim, scalar) in enumerate(outs):
        got = f"res[{k}]" if multi else "res"
        if scalar:
            lines.append(f"        o{k}[()] = {got}")
            continue
        lines += [
            f"        if {got}.shape != o{k}.shape:",
            "            ok = False",
            "        else:",
            f"            o{k}[...] = {got}"
            if ndim
            else f"            o{k}[()] = {got}[()]",
        ]
    return lines


def capsule(address: int) -> Any:
    """The ``PyCapsule`` that ``jax.ffi.register_ffi_target`` expects."""
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(address, b"xla._CUSTOM_CALL_TARGET", None)
