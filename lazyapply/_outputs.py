"""Output conversions that need a second try, and the messages when none works.

Called only when the plain conversion of a kernel's output fails or its dtype differs
from the declared one, so the common path pays nothing.
"""

from __future__ import annotations

from typing import Any

from ._errors import KernelOutputError

__all__ = ["convert_output", "native_order"]


def native_order(dtype: Any) -> Any:
    """A numeric NumPy dtype in native byte order (``>f8`` → float64); else as is."""
    import numpy as np

    if isinstance(dtype, np.dtype) and dtype.byteorder not in "=|":
        return dtype.newbyteorder("=")
    return dtype


def convert_output(
    asarray: Any, o: Any, kwargs: dict[str, Any], where: str, i: int, dtype: Any
) -> Any:
    """``asarray(o, **kwargs)``, copying a NumPy output where the library needs it.

    torch refuses NumPy arrays with negative strides (``np.flip``, ``a[::-1]``) or a
    non-native byte order; a native, contiguous copy converts. A non-array output
    that cannot become the declared dtype (a string where a float is declared) gets a
    :class:`KernelOutputError` naming the kernel.
    """
    import numpy as np

    try:
        return asarray(o, **kwargs)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
        if isinstance(o, np.ndarray):
            fixed = o
            if o.dtype.byteorder not in "=|":
                fixed = o.astype(o.dtype.newbyteorder("="))
            fixed = np.ascontiguousarray(fixed)
            if fixed is not o:
                return asarray(fixed, **kwargs)
        if isinstance(o, (tuple, list)) and any(hasattr(e, "shape") for e in o):
            msg = (
                f"{where}: the kernel returned a {type(o).__name__} of {len(o)} "
                f"arrays, but one output was expected ({exc}); declare one shape per "
                "output, e.g. shape=[(n,), (m,)], to get a tuple back"
            )
            raise KernelOutputError(msg) from exc
        want = f" of dtype {dtype}" if dtype is not None else ""
        msg = (
            f"{where}: output {i} is {type(o).__name__} {o!r:.60}, which does not "
            f"convert to an array{want} ({exc}); return an array (or a number) of the "
            "declared dtype"
        )
        raise KernelOutputError(msg) from exc
