"""What kind of callable a kernel is: immutable (its Dask token may be cached) or not.

Dask names a task by a token of its function and arguments. A plain function, a NumPy
ufunc or a Numba dispatcher cannot change in a way that changes its result, so its
token is computed once. A ``functools.partial`` (its arguments may be arrays changed
in place), a callable object (its attributes) or a bound method (its ``self``) is
tokenized at every call, as ``dask.array.map_blocks`` does, so that a new state gets
a new key and a persisted old result is never mistaken for a new one.
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["is_immutable"]


def is_immutable(func: Any) -> bool:
    """Whether ``func``'s Dask token can be cached by identity."""
    if isinstance(func, (types.FunctionType, types.BuiltinFunctionType)):
        return True
    cls = type(func)
    if cls.__name__ == "ufunc" and cls.__module__ == "numpy":
        return True
    return cls.__module__.startswith("numba.") and hasattr(func, "py_func")
