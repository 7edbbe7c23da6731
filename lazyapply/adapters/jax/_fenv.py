"""The default floating-point environment for a kernel called back from XLA.

XLA's CPU executables run with denormals flushed to zero and treated as zero
(``FTZ``/``DAZ`` in ``MXCSR`` on x86-64, ``FZ`` in ``FPCR`` on ARM), in whichever
thread runs them, and a ``jax.pure_callback`` runs inside that span. A NumPy or
SciPy kernel called there would compute ``1e-310 * 0.5 == 0.0`` and
``scipy.special.chndtridf(1.0, 1e-310, 1.0)`` as NaN, where the same kernel called
eagerly (in an ordinary Python thread) returns the subnormal and ``301.3...``: a
wrong value with no error. :func:`in_default_fp_env` sets C's default environment
(``fesetenv(FE_DFL_ENV)``: round to nearest, exceptions masked, denormals kept) for
the kernel's call and restores XLA's after, through the C library's ``<fenv.h>``
functions, which know the platform's register layout.

The native path does the same in machine code (:mod:`.native._fpmode`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["in_default_fp_env"]

T = TypeVar("T")


@functools.cache
def _fenv() -> tuple[Any, Any, Any] | None:
    """``(fegetenv, fesetenv, FE_DFL_ENV)`` of this platform's C library, or ``None``.

    ``FE_DFL_ENV`` is ``(const fenv_t *) -1`` for glibc and musl, and the address
    of ``_FE_DFL_ENV`` on macOS. Elsewhere (Windows) nothing is changed.
    """
    try:
        if sys.platform.startswith("linux"):
            lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
            default: Any = ctypes.c_void_p(-1)
        elif sys.platform == "darwin":
            lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
            default = ctypes.c_void_p(
                ctypes.addressof(ctypes.c_char.in_dll(lib, "_FE_DFL_ENV"))
            )
        else:
            return None
        get, put = lib.fegetenv, lib.fesetenv
    except (OSError, AttributeError, ValueError):
        return None
    get.argtypes = put.argtypes = [ctypes.c_void_p]
    get.restype = put.restype = ctypes.c_int
    return get, put, default


def in_default_fp_env(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in C's default floating-point environment; XLA's restored after.

    Thread-safe: the saved environment lives in this call's frame (the
    environment itself is per thread).
    """
    fenv = _fenv()
    if fenv is None:
        return fn(*args)
    get, put, default = fenv
    # fenv_t: 32 bytes on x86-64 glibc, 8 on aarch64, 16 on macOS; room to spare.
    saved = ctypes.create_string_buffer(128)
    get(saved)
    put(default)
    try:
        return fn(*args)
    finally:
        put(saved)
