# Numba intrinsics are untyped, and are called with fewer arguments than their
# Python signatures take (typingctx is supplied by Numba):
# mypy: disable-error-code="no-untyped-call,call-arg,no-any-return"
"""The caller's floating-point mode inside native code that XLA runs.

XLA's CPU executables run with denormals flushed to zero (``FTZ``) and treated as
zero (``DAZ``), in whichever thread runs them (often the caller's, for the span of
the call). A kernel run eagerly by NumPy or Numba sees subnormal numbers; the same
kernel called from an XLA thread would see zeros and return other values, with no
error (``scipy.special.chndtridf`` returns NaN; ``x * 0.5`` returns 0 for
``x = 1e-310``). Every native handler therefore wraps its kernel call in
:func:`fp_enter`/:func:`fp_leave`, which clear those two bits of ``MXCSR`` and
restore the old value after. The callback path does the same in Python
(:mod:`lazyapply.adapters.jax._fenv`).

Only x86-64 is handled here (``MXCSR``); elsewhere the intrinsics do nothing.
"""

from __future__ import annotations

import platform
from typing import Any

from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["fp_enter", "fp_leave"]

_X86 = platform.machine().lower() in ("x86_64", "amd64")
_FTZ_DAZ = 0x8040  # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
_I64, _I8P = ir.IntType(64), ir.IntType(8).as_pointer()


@intrinsic
def fp_enter(typingctx: Any) -> Any:
    """Clear FTZ/DAZ in MXCSR; the old MXCSR (0 off x86-64: nothing is done)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if not _X86:
            return ir.Constant(_I64, 0)
        i32 = ir.IntType(32)
        slot = cgutils.alloca_once(builder, i32)
        fnty = ir.FunctionType(ir.VoidType(), [_I8P])
        mod = builder.module
        st = cgutils.get_or_insert_function(mod, fnty, "llvm.x86.sse.stmxcsr")
        ld = cgutils.get_or_insert_function(mod, fnty, "llvm.x86.sse.ldmxcsr")
        ptr = builder.bitcast(slot, _I8P)
        builder.call(st, [ptr])
        old = builder.load(slot)
        builder.store(builder.and_(old, i32(~_FTZ_DAZ & 0xFFFFFFFF)), slot)
        builder.call(ld, [ptr])
        return builder.zext(old, _I64)

    return types.int64(), codegen


@intrinsic
def fp_leave(typingctx: Any, old: Any) -> Any:
    """Restore the MXCSR saved by :func:`fp_enter`."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if _X86:
            i32 = ir.IntType(32)
            slot = cgutils.alloca_once(builder, i32)
            builder.store(builder.trunc(args[0], i32), slot)
            fnty = ir.FunctionType(ir.VoidType(), [_I8P])
            ld = cgutils.get_or_insert_function(
                builder.module, fnty, "llvm.x86.sse.ldmxcsr"
            )
            builder.call(ld, [builder.bitcast(slot, _I8P)])
        return context.get_dummy_value()

    return types.none(types.int64), codegen
