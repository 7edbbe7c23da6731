"""The native path's error path: re-run a failed call in Python for its message.

A handler whose kernel raised (or returned an output of the wrong shape) calls the
C symbol ``lazyapply_native_failure(token, frame)``: a ``ctypes`` callback into
:func:`_on_failure`, registered with LLVM by :func:`install_hook` before any handler is
compiled or loaded (the machine code names the symbol, never an address, so that it
can be cached on disk). The token selects the call's :class:`FailureInfo`, which reads
the operands and scalar attributes from the frame and runs the callback path's
:class:`~lazyapply._call.KernelCall` on copies of them: the message is the one the
callback path gives (the kernel's exception, or the output check's text). A failure
that the re-run does not reproduce is a lazyapply bug, and says so with the signature.
Offsets: ``xla/ffi/api/c_api.h`` on a 64-bit host, as in :mod:`._handler`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from lazyapply._caches import pinned
from lazyapply._check import OutputCheck
from lazyapply._errors import KernelOutputError
from lazyapply.adapters.jax._callback import error_text, kernel_raised

__all__ = ["HOOK_SYMBOL", "FailureInfo", "install_hook"]

HOOK_SYMBOL = "lazyapply_native_failure"
_LOCK = threading.Lock()
# Token baked into a compiled handler -> its call: the handler reports a failure by
# this token for as long as XLA keeps it, so an entry is never dropped.
_FAILURES: dict[int, FailureInfo] = pinned("jax native: failure tokens of handlers")


class FailureInfo:
    """What the error path needs to re-run a failed call in Python for its message.

    ``template`` is the callback path's :class:`~lazyapply._call.KernelCall` (same
    name, output checks and messages); ``layout`` maps each positional argument and
    keyword to ``("a", i)`` (operand ``i``), ``("s", j)`` (scalar ``j``) or ``("n",)``;
    ``dtypes`` are the operands' and ``scalars`` the Python types of the attributes.
    """

    def __init__(
        self,
        template: Any,
        layout: tuple[Any, ...],
        keys: tuple[str, ...],
        dtypes: tuple[np.dtype[Any], ...],
        scalars: tuple[type, ...],
        signature: str = "",
    ) -> None:
        self.template = template
        self.layout = layout
        self.keys = keys
        self.dtypes = dtypes
        self.scalars = scalars
        self.signature = signature
        self.padded = 0  # a padded shard's loop rank: its extents follow the operands

    def register(self, token: int) -> None:
        """Answer failures of the handlers compiled with ``token``."""
        with _LOCK:
            _FAILURES[token] = self

    def message(self, frame: int) -> str:
        """Re-run the call described by XLA's call frame; the error it raises."""
        ins = [
            _read(_i64(_i64(frame + 72) + 8 * i), dt)
            for i, dt in enumerate(self.dtypes)
        ]
        rets = _i64(frame + 112)
        outs = [_shape(_i64(rets + 8 * k)) for k in range(_i64(frame + 96))]
        if self.padded:  # the real elements only, as the handler saw them
            table = _i64(frame + 72) + 8 * len(self.dtypes)
            extents = _read(_i64(table), np.dtype(np.int32))
            cut = tuple(slice(0, int(e)) for e in extents)
            ins = [a[cut] for a in ins]
            outs = [np.empty(o, np.int8)[cut].shape for o in outs]
        attrs = _i64(frame + 160)
        scalars = []
        for j, kind in enumerate(self.scalars):  # XLA_FFI_Scalar: dtype, value*
            at = _i64(_i64(attrs + 8 * j) + 8)
            if kind in (bool, int, float):
                ctype: Any = {bool: ctypes.c_bool, int: ctypes.c_int64}.get(
                    kind, ctypes.c_double
                )
                scalars.append(kind(ctype.from_address(at).value))
            else:  # a NumPy scalar, of its own width
                dt = np.dtype(kind)
                scalars.append(np.frombuffer(ctypes.string_at(at, dt.itemsize), dt)[0])
        values = [
            ins[p[1]] if p[0] == "a" else scalars[p[1]] if p[0] == "s" else None
            for p in self.layout
        ]
        n = len(values) - len(self.keys)
        call = self.template
        old = call.check
        check = OutputCheck(tuple(outs), old.dtypes, old.multi, old.declared, old.kind)
        kwargs = {**call.kwargs, **dict(zip(self.keys, values[n:], strict=True))}
        try:
            call.run(tuple(values[:n]), kwargs, check=check)
        except KernelOutputError as exc:  # the callback path's message, word for word
            return error_text(exc)
        except Exception as exc:  # the kernel's own error, as the callback says it
            return kernel_raised(call.where(), exc)
        return self.bug()

    def bug(self) -> str:
        """The message of a native failure that Python does not reproduce."""
        name = self.template.name
        return (
            f"{self.template.where()}: lazyapply bug: the native code of {name} "
            f"({self.signature}) failed, but the same call re-run in Python did not. "
            "Please report it at https://github.com/lazyapply/lazyapply/issues with "
            f"this message; meanwhile pass the kernel's Python function "
            f"({name}.py_func) to run it as a callback"
        )


def _i64(address: int) -> int:
    return ctypes.c_int64.from_address(address).value


def _shape(buf: int) -> tuple[int, ...]:
    """The dimensions of an XLA_FFI_Buffer (rank at byte 32, dims* at 40)."""
    dims = _i64(buf + 40)
    return tuple(_i64(dims + 8 * k) for k in range(_i64(buf + 32)))


def _read(buf: int, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """A copy of an XLA_FFI_Buffer's data (data* at byte 24)."""
    shape = _shape(buf)
    size = int(np.prod(shape)) * dtype.itemsize
    if size == 0:
        return np.empty(shape, dtype)
    raw = (ctypes.c_char * size).from_address(_i64(buf + 24))
    out: np.ndarray[Any, Any] = np.frombuffer(memoryview(raw), dtype)
    return out.reshape(shape).copy()


class _ErrorArgs(ctypes.Structure):
    # XLA_FFI_Error_Create_Args
    _fields_ = (
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("message", ctypes.c_char_p),
        ("errc", ctypes.c_int32),
    )


_CREATE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(_ErrorArgs))


def _on_failure(token: int, frame: int) -> int:
    """The hook: an ``XLA_FFI_Error*`` for the failed call (never raises)."""
    try:
        info = _FAILURES.get(token)
        if info is None:
            text = f"lazyapply bug: no native call registered for token {token}"
        else:
            try:
                text = info.message(frame)
            except BaseException as exc:  # the error path must always answer XLA
                text = f"{info.bug()} ({type(exc).__name__}: {exc})"
        api = _i64(frame + 16)
        create = _CREATE(_i64(api + 48))  # XLA_FFI_Api.XLA_FFI_Error_Create
        args = _ErrorArgs(32, None, text.encode("utf-8", "replace"), 2)
        return int(create(ctypes.byref(args)) or 0)
    except BaseException:  # pragma: no cover - nothing sane is left to report
        return 0


_HOOK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)(_on_failure)


def install_hook() -> None:
    """Make the symbol the handlers call resolvable (idempotent)."""
    import llvmlite.binding as llvm  # type: ignore[import-untyped]

    address = ctypes.cast(_HOOK, ctypes.c_void_p).value
    llvm.add_symbol(HOOK_SYMBOL, address)
