"""Declared dtypes: what a user may write as ``dtype=``, and its meaning in a namespace.

Accepted: the array-API dtype names (``"float64"``...), any string NumPy reads as a
dtype except one-letter type codes (``"<U8"``, ``"S5"``, ``">f8"``, ``"object"``,
``"datetime64[ns]"``), NumPy dtypes and scalar types (strings, bytes, object,
datetime64/timedelta64, structured, and the ``ml_dtypes`` types such as bfloat16),
Python types, and a namespace's own dtype objects. A numeric dtype in non-native byte
order means its native counterpart (``">f8"`` is float64 when outputs are checked).

Names that are no dtype (``"e"``, ``"pi"``, ``"inf"``: attributes of every namespace)
are refused, naming the kernel and listing the valid names.
"""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError

__all__ = ["NAMES", "check_name", "in_namespace"]

NAMES = frozenset(
    (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
)
_PY_TYPES = {bool: "bool", int: "int64", float: "float64", complex: "complex128"}


def _unknown(dtype: object, name: str, what: str) -> SpecError:
    return SpecError(
        f"{name}: unknown {what} {dtype!r}; use one of {', '.join(sorted(NAMES))}, a "
        "NumPy dtype string such as '<U8' or '>f8', a NumPy dtype, a Python type or a "
        "dtype of the array namespace"
    )


def numpy_dtype(dtype: Any, name: str, what: str = "dtype") -> Any:
    """``dtype`` as a NumPy dtype, or ``None`` for another library's dtype object."""
    import numpy as np  # a hard dependency; free after startup

    if isinstance(dtype, str):
        if dtype in NAMES:
            return dtype  # resolved by name: NumPy itself has no bfloat16
        if len(dtype) < 2:  # one-letter codes: "e" would read as float16
            raise _unknown(dtype, name, what)
        try:
            return np.dtype(dtype)
        except TypeError:
            raise _unknown(dtype, name, what) from None
    if dtype in _PY_TYPES:
        return _PY_TYPES[dtype]
    if dtype is object or isinstance(dtype, np.dtype):
        return np.dtype(dtype)
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        return np.dtype(dtype)
    return None


def check_name(dtype: Any, name: str) -> None:
    """Refuse, at decoration time, a dtype that no namespace can resolve."""
    numpy_dtype(dtype, name)


def in_namespace(dtype: Any, xp: Any, name: str) -> Any:
    """The dtype of ``xp`` that the user's ``dtype`` means (uncached)."""

    dt = numpy_dtype(dtype, name)
    numpy_based = _numpy_based(xp)
    if dt is None:
        if numpy_based:  # e.g. torch.float32 declared for a Dask array
            lib = type(dtype).__module__.split(".")[0]
            msg = (
                f"{name}: dtype {dtype!r} belongs to {lib}, not to "
                f"{getattr(xp, '__name__', xp)!r}; declare a name such as 'float32' "
                "or a NumPy dtype"
            )
            raise SpecError(msg)
        return dtype  # the namespace's own dtype
    if isinstance(dt, str):
        key = dt
    else:
        if dt.byteorder not in "=|" and dt.kind in "biufc":
            dt = dt.newbyteorder("=")  # ">f8" is float64 when checking
        key = "bool" if dt.kind == "b" else dt.name
    resolved = getattr(xp, key, None) if key in NAMES else None
    if resolved is not None and not _is_number_or_function(resolved):
        return resolved
    if numpy_based and not isinstance(dt, str):
        # Strings, object, datetimes, structured, ml_dtypes' types. Not the name
        # "bfloat16": NumPy reads it only once ml_dtypes happens to be imported.
        return dt
    msg = (
        f"{name}: dtype {dtype!r} has no counterpart in namespace "
        f"{getattr(xp, '__name__', xp)!r}; declare a dtype that it supports"
    )
    raise SpecError(msg)


def _is_number_or_function(obj: object) -> bool:
    return isinstance(obj, (int, float, complex)) or (
        callable(obj) and not isinstance(obj, type)
    )


def _numpy_based(xp: Any) -> bool:
    """Whether ``xp``'s dtypes are NumPy's (NumPy, Dask, sparse, CuPy)."""
    import numpy as np

    # Identity: a JAX scalar type compares equal to NumPy's dtype, yet is not one.
    f64 = getattr(xp, "float64", None)
    return f64 is np.float64 or (isinstance(f64, np.dtype) and f64 == np.float64)
