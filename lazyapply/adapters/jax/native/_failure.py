"""The native path's error path: re-run a failed call in Python for its message.

A handler whose kernel raised (or returned an output of the wrong shape) calls, through
Numba's ``objmode``, :func:`failure_bytes` with XLA's call frame. It reads the operands
and the scalar attributes from the frame with ``ctypes`` and runs the callback path's
:class:`~lazyapply._call.KernelCall` on copies of them, so that the message is the one
the callback path would give (the kernel's exception, or the output check's text).
Offsets: ``xla/ffi/api/c_api.h`` on a 64-bit host, as in :mod:`._handler`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from lazyapply._check import OutputCheck
from lazyapply._errors import KernelOutputError

__all__ = ["FailureInfo", "failure_bytes"]

_LOCK = threading.Lock()


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
    ) -> None:
        self.template = template
        self.layout = layout
        self.keys = keys
        self.dtypes = dtypes
        self.scalars = scalars

    def register(self) -> int:
        """Keep this object for the process's life; its slot number for the handler."""
        with _LOCK:
            _FAILURES.append(self)
            return len(_FAILURES) - 1

    def message(self, frame: int) -> str:
        """Re-run the call described by XLA's call frame; the error it raises."""
        ins = [
            _read(_i64(_i64(frame + 72) + 8 * i), dt)
            for i, dt in enumerate(self.dtypes)
        ]
        rets = _i64(frame + 112)
        outs = [_shape(_i64(rets + 8 * k)) for k in range(_i64(frame + 96))]
        attrs = _i64(frame + 160)
        scalars = []
        for j, kind in enumerate(self.scalars):  # XLA_FFI_Scalar: dtype, value*
            ctype: Any = {bool: ctypes.c_bool, int: ctypes.c_int64}.get(
                kind, ctypes.c_double
            )
            value = ctype.from_address(_i64(_i64(attrs + 8 * j) + 8)).value
            scalars.append(kind(value))
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
            return str(exc)
        except Exception as exc:  # the kernel's own error
            return f"{call.where()}: {type(exc).__name__}: {exc}"
        return (
            f"{call.where()}: the kernel failed in native code but not "
            "when re-run in Python; pass the kernel's Python function to run it as a "
            "callback"
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


_FAILURES: list[FailureInfo] = []  # index = slot baked into a handler


def failure_bytes(slot: int, frame: int) -> np.ndarray[Any, Any]:
    text = _FAILURES[slot].message(frame)
    return np.frombuffer(text.encode("utf-8", "replace") + b"\0", np.uint8).copy()
