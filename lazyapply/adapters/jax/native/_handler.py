"""Numba ``cfunc`` handlers for XLA's typed FFI: the native path's machine code.

Imported only once a Numba kernel is staged under ``jax.jit`` (it imports numba).

The reusable entry point is :func:`make_handler`: given the operands (Numba dtype,
rank), the scalar attributes (Numba types), the results (Numba dtype, rank) and the
source lines of an element loop or kernel call (the *body*), it writes one Python
function, compiles it as a ``cfunc`` of C type ``XLA_FFI_Error* (XLA_FFI_CallFrame*)``
and returns it. Inside the body these names exist:

- ``x0, x1, ...``: the operands as read-only C-contiguous arrays of their own shape
  (a write into one does not compile: JAX arrays are immutable), ``x0_n`` their sizes,
  ``x0_a`` their data addresses, ``x0_s0, x0_s1...`` their dimensions;
- ``s0, s1, ...``: the scalar attributes (named ``s000``, ``s001``... when staged);
- ``o0, o1, ...``: the result buffers, writable C-contiguous arrays of their shape,
  with ``o0_n`` and ``o0_a``;
- ``ok``: starts ``True``; the body sets it to ``False`` when the call failed. The
  handler then asks :mod:`._failure` (through the ``lazyapply_native_failure`` symbol,
  not through Python objects baked into the code) for the error XLA reports.
- helpers ``copy_bytes`` and ``V_x0``/``V_o0`` (``V_x0(address, shape_tuple)``: a
  view of the same dtype, read-only for operands), so that a body can take other
  views of the same memory without compiling ``numba.carray`` (an ``overload``: one
  more compiled function per signature).

The body must not raise: call what can through ``guarded(fn, (args...))``, which
returns ``(ok, result)`` (``try``/``except`` works too, but makes Numba compile its
exception matching: seconds of a first call). Nothing
in the generated code formats an error message (no ``o[...] = res``, which makes Numba
compile ``raise_with_shape_context``): checks set ``ok`` instead. The code refers to no
Python object at run time, so Numba can cache it on disk (:mod:`._cache`).

Pointers are carried as ``int64``. The byte offsets are those of
``xla/ffi/api/c_api.h`` (``jax.ffi.include_dir()``) on a 64-bit host; the handler
checks the frame's argument, result and attribute counts before it reads a buffer,
and answers XLA's metadata query (API version) at registration.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from lazyapply.adapters.jax.native._failure import HOOK_SYMBOL, install_hook
from lazyapply.adapters.jax.native._fpmode import fp_enter, fp_leave

__all__ = ["capsule", "handler_source", "make_handler"]

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


@intrinsic
def readonly(typingctx: Any, array: Any) -> Any:
    """The same array, typed read-only: Numba refuses to compile writes into it."""
    if not isinstance(array, types.Array):
        return None
    result = array.copy(readonly=True)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return impl_ret_borrowed(context, builder, result, args[0])  # type: ignore[no-untyped-call]

    return result(array), codegen


@intrinsic
def copy_bytes(typingctx: Any, dst: Any, src: Any, nbytes: Any) -> Any:
    """``memcpy(dst, src, nbytes)`` on addresses: the cheapest copy of a result."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        dst_p = builder.inttoptr(args[0], _I8P)
        src_p = builder.inttoptr(args[1], _I8P)
        cgutils.raw_memcpy(builder, dst_p, src_p, args[2], 1)  # type: ignore[no-untyped-call]
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


@intrinsic
def fail_hook(typingctx: Any, token: Any, frame: Any) -> Any:
    """Call the external ``lazyapply_native_failure(token, frame)``: the error path.

    A symbol resolved when the code is loaded (``llvmlite.binding.add_symbol``), so
    the machine code holds no process-specific address and can be cached.
    """

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fnty = ir.FunctionType(_I64, [_I64, _I64])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, HOOK_SYMBOL
        )
        return builder.call(fn, [args[0], args[1]])

    return types.int64(types.int64, types.int64), codegen


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
def guarded(typingctx: Any, fn: Any, args: Any) -> Any:
    """``(ok, result)`` of ``fn(*args)`` for a Numba dispatcher: an exception is a flag.

    What ``try``/``except`` does, without the exception matching Numba compiles for
    it (seconds of a first call): the callee's status is read directly; on failure
    the result is zeroed (no reference to release). ``args`` is a tuple.
    """
    if not isinstance(fn, types.Dispatcher) or not isinstance(args, types.BaseTuple):
        return None
    sig = typingctx.resolve_function_type(fn, tuple(args), {})  # type: ignore[arg-type]
    if sig is None:
        return None
    result = types.Tuple((types.boolean, sig.return_type))

    def codegen(context: Any, builder: Any, outer: Any, values: Any) -> Any:
        cres = fn.dispatcher.overloads[tuple(sig.args)]
        fndesc = cres.fndesc
        context.add_linking_libs([cres.library])
        func = context.declare_function(builder.module, fndesc)
        items = cgutils.unpack_tuple(builder, values[1])
        items = [
            context.cast(builder, v, t, want)
            for v, t, want in zip(items, args, sig.args, strict=True)  # type: ignore[call-overload]
        ]
        status, value = context.call_conv.call_function(
            builder, func, fndesc.restype, fndesc.argtypes, items
        )
        value = context.get_returned_value(builder, fndesc.restype, value)
        ok = builder.not_(status.is_error)
        value = builder.select(ok, value, ir.Constant(value.type, None))
        return context.make_tuple(builder, result, [ok, value])

    return result(fn, args), codegen


@functools.cache
def view_of(nbtype: Any, readonly: bool) -> Any:
    """An intrinsic ``view(address, shape)``: a C-contiguous array over that memory.

    An intrinsic rather than ``numba.carray`` (an ``overload``, which compiles a
    function of its own for every signature); read-only when asked, so that Numba
    refuses to compile a write into it.
    """
    from numba.core.typing import signature  # type: ignore[attr-defined]
    from numba.np.arrayobj import np_cfarray

    ptr_type = types.CPointer(nbtype)  # type: ignore[no-untyped-call]

    @intrinsic
    def view(typingctx: Any, addr: Any, shape: Any) -> Any:
        if not isinstance(shape, types.BaseTuple):
            return None
        plain = types.Array(nbtype, len(shape), "C")
        result = plain.copy(readonly=True) if readonly else plain

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr = builder.inttoptr(args[0], context.get_value_type(ptr_type))
            inner = signature(plain, ptr_type, sig.args[1])
            return np_cfarray(context, builder, inner, [ptr, args[1]])

        return result(types.int64, shape), codegen

    return view


@functools.cache
def load_as(nbtype: Any) -> Any:
    """An intrinsic reading one ``nbtype`` value at an address (a scalar attribute)."""

    @intrinsic
    def load(typingctx: Any, addr: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ptr_type = context.get_value_type(nbtype).as_pointer()
            return builder.load(builder.inttoptr(args[0], ptr_type))

        return nbtype(types.int64), codegen

    return load


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


def _views(prefix: str, table: str, k: int, ndim: int) -> list[str]:
    """Source lines viewing XLA_FFI_Buffer ``k`` of ``table`` (data at 24, dims 40)."""
    name, buf = f"{prefix}{k}", f"load_i64({table} + {8 * k})"
    lines = [f"    {name}_a = load_i64({buf} + 24)"]
    if ndim:
        lines.append(f"    {name}_d = load_i64({buf} + 40)")
    dims = [f"load_i64({name}_d + {8 * j})" for j in range(ndim)]
    lines += [f"    {name}_s{j} = {d}" for j, d in enumerate(dims)]
    shape = "".join(f"{name}_s{j}, " for j in range(ndim))
    lines.append(
        f"    {name}_n = " + (" * ".join(f"{name}_s{j}" for j in range(ndim)) or "1")
    )
    lines.append(f"    {name} = V_{name}({name}_a, ({shape}))")
    return lines


def handler_source(
    ins: Sequence[tuple[Any, int]],
    scalars: Sequence[Any],
    outs: Sequence[tuple[Any, int]],
    body: Sequence[str],
    token: int,
) -> tuple[str, dict[str, Any]]:
    """The handler's source and the globals it needs (see the module docstring).

    ``token`` is passed to the failure hook, which maps it to this call's
    :class:`~._failure.FailureInfo`; it must be the same number in every process that
    loads the cached code (a digest, not a counter).
    """
    major, minor = FFI_API_VERSION
    env: dict[str, Any] = {
        # Numba's cache rebuilds the function's environment from its module's name.
        "__name__": __name__,
        "carray": numba.carray,  # type: ignore[attr-defined]
        "load_i64": load_i64,
        "load_i32": load_i32,
        "store_i32": store_i32,
        "make_error": make_error,
        "fail_hook": fail_hook,
        "readonly": readonly,
        "copy_bytes": copy_bytes,
        "guarded": guarded,
        "fp_enter": fp_enter,
        "fp_leave": fp_leave,
        "BAD": np.frombuffer(b"lazyapply: unexpected XLA FFI call frame\0", np.uint8),
    }
    lines = [
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
        f"    if (load_i64(frame + 56) != {len(ins)} or load_i64(frame + 96) != "
        f"{len(outs)} or load_i64(frame + 136) != {len(scalars)}):",
        "        return make_error(api, BAD.ctypes.data, 13)",
        "    a = load_i64(frame + 72)",
        "    r = load_i64(frame + 112)",
        "    t = load_i64(frame + 160)",
    ]
    for i, (dtype, ndim) in enumerate(ins):
        env[f"V_x{i}"] = view_of(dtype, True)
        lines += _views("x", "a", i, ndim)
    for j, nbtype in enumerate(scalars):  # XLA_FFI_Scalar: dtype, then value*
        env[f"L_s{j}"] = load_as(nbtype)
        lines.append(f"    s{j} = L_s{j}(load_i64(load_i64(t + {8 * j}) + 8))")
    for k, (dtype, ndim) in enumerate(outs):
        env[f"V_o{k}"] = view_of(dtype, False)
        lines += _views("o", "r", k, ndim)
    # The kernel runs in the caller's floating-point mode, not XLA's (denormals
    # kept): see _fpmode. The body never returns early.
    lines += ["    ok = True", "    fpm = fp_enter()", *body, "    fp_leave(fpm)"]
    lines += [
        "    if not ok:",
        f"        return fail_hook({token}, frame)",
        "    return 0",
    ]
    return "\n".join(lines) + "\n", env


def make_handler(
    ins: Sequence[tuple[Any, int]],
    scalars: Sequence[Any],
    outs: Sequence[tuple[Any, int]],
    body: Sequence[str],
    token: int,
    env: Mapping[str, Any] = {},
    entry: Path | None = None,
) -> tuple[Any, bool]:
    """Compile the handler; ``(cfunc, loaded from the disk cache)``.

    ``env`` adds globals for the body (the kernel, helpers). With ``entry`` (a folder
    of :mod:`._cache`, named by a digest of everything the code depends on) the
    source is written there as ``handler.py`` and Numba caches the machine code
    beside it; without, nothing is written.
    """
    src, base = handler_source(ins, scalars, outs, body, token)
    base.update(env)
    install_hook()
    namespace: dict[str, Any] = {}
    sig = types.int64(types.int64)
    if entry is None:
        exec(compile(src, "<lazyapply native handler>", "exec"), base, namespace)
        return numba.cfunc(sig)(namespace["handler"]), False
    from lazyapply.adapters.jax.native._cache import cached_cfunc, write_source

    path = write_source(entry, src)
    exec(compile(src, str(path), "exec"), base, namespace)
    return cached_cfunc(namespace["handler"], sig)


def capsule(address: int) -> Any:
    """The ``PyCapsule`` that ``jax.ffi.register_ffi_target`` expects."""
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(address, b"xla._CUSTOM_CALL_TARGET", None)
