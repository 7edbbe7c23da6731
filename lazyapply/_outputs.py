"""Output conversions that need a second try, and the message when none works.

The plain conversion runs first; the copy and the message are made only when it
fails, so the common path pays one ``try``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._errors import KernelOutputError

__all__ = ["convert_output"]


def convert_output(
    convert: Callable[[Any], Any], o: Any, where: Callable[[], str], i: int
) -> Any:
    """``convert(o)``, copying a NumPy output where the caller's library needs it.

    torch refuses NumPy arrays with negative strides (``np.flip``, ``a[::-1]``) or a
    non-native byte order; a native, contiguous copy converts. An output that still
    does not convert gets a :class:`KernelOutputError` naming the kernel (``where()``,
    called only then).
    """
    try:
        return convert(o)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
        import numpy as np  # only here: a function-level import costs every output

        if isinstance(o, np.ndarray):
            fixed = o
            if o.dtype.byteorder not in "=|":
                fixed = o.astype(o.dtype.newbyteorder("="))
            fixed = np.ascontiguousarray(fixed)
            if fixed is not o:
                return convert(fixed)
        msg = (
            f"{where()}: output {i} is a {type(o).__name__} ({o!r:.60}) that does not "
            f"convert to an array of the caller's library ({exc}); return an array"
        )
        raise KernelOutputError(msg) from exc
