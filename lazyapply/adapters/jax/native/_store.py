"""Typing-time checks and cheap stores for generated handler bodies.

``store(o, v)`` copies a kernel's result ``v`` (an array or a scalar) into the
result buffer ``o`` and returns whether the shapes matched; ``put(o, i, v)`` stores
one element.
``expect_tuple(res, n)`` checks that a kernel with ``n`` outputs returns a tuple of that
length. Each is a Numba ``overload`` that picks its code from the types, so a handler
body can be written before the kernel's result type is known, and a result of the wrong
rank or dtype stops the compile with a message starting with :data:`MARK` (the native
path then leaves the call to the callback path, whose output check explains it). None
of them formats an error message at run time.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from lazyapply.adapters.jax.native._handler import copy_bytes

__all__ = ["MARK", "expect_tuple", "put", "store"]

MARK = "lazyapply-native-refusal: "


# Numba compares an overload's parameters with its implementation's, annotations
# included: the stubs and implementations are left unannotated.
def store(o, v):  # type: ignore[no-untyped-def]  # pragma: no cover - overloaded
    raise NotImplementedError


def put(o, i, v):  # type: ignore[no-untyped-def]  # pragma: no cover
    raise NotImplementedError


def expect_tuple(res, n):  # type: ignore[no-untyped-def]  # pragma: no cover
    raise NotImplementedError


def _accepts(got: Any, want: Any) -> bool:
    """The callback's rule: the same dtype, or one JAX stores as ``want`` (no x64)."""
    if got == want:
        return True
    from jax.dtypes import canonicalize_dtype

    try:
        return bool(canonicalize_dtype(as_dtype(got)) == as_dtype(want))
    except Exception:  # a Numba type without a NumPy dtype
        return False


def _refuse(text: str) -> None:
    raise TypingError(MARK + text)


@overload(expect_tuple, prefer_literal=True)
def _expect_tuple(res, n):  # type: ignore[no-untyped-def]
    count = getattr(n, "literal_value", None)
    if not isinstance(res, types.BaseTuple) or len(res) != count:
        _refuse(f"the kernel returns {res}, expected a tuple of {count} outputs")
    return lambda res, n: None


@overload(put)
def _put(o, i, v):  # type: ignore[no-untyped-def]
    if not isinstance(v, (types.Number, types.Boolean)) or not _accepts(v, o.dtype):
        _refuse(f"the element function returns {v}, expected {o.dtype}")
    return _put_impl


def _put_impl(o, i, v):  # type: ignore[no-untyped-def]  # pragma: no cover
    o[i] = v


@overload(store)
def _store(o, v):  # type: ignore[no-untyped-def]
    if isinstance(v, (types.Number, types.Boolean)):
        if o.ndim != 0 or not _accepts(v, o.dtype):
            _refuse(f"the kernel returns {v}, expected {o.ndim}-d {o.dtype}")
        return _store_scalar
    if not isinstance(v, types.Array) or v.ndim != o.ndim:
        _refuse(f"the kernel returns {v}, expected {o.ndim}-d {o.dtype}")
    if not _accepts(v.dtype, o.dtype):
        _refuse(f"the kernel returns {v}, expected {o.dtype}")
    memcpy = v.layout == "C" and v.dtype == o.dtype
    return _store_array(o.ndim, memcpy, np.dtype(as_dtype(o.dtype)).itemsize)


def _store_scalar(o, v):  # type: ignore[no-untyped-def]  # pragma: no cover
    o[()] = v
    return True


@functools.cache
def _store_array(ndim: int, memcpy: bool, itemsize: int) -> Any:
    """Check the shape, then one ``memcpy`` (C-contiguous) or explicit loops."""
    same = " or ".join(f"v.shape[{d}] != o.shape[{d}]" for d in range(ndim))
    lines = ["def impl(o, v):"]
    if same:
        lines += [f"    if {same}:", "        return False"]
    if memcpy:
        lines.append(
            f"    copy_bytes(o.ctypes.data, v.ctypes.data, o.size * {itemsize})"
        )
    else:
        index = ", ".join(f"i{d}" for d in range(ndim))
        for d in range(ndim):
            lines.append("    " * (d + 1) + f"for i{d} in range(o.shape[{d}]):")
        lines.append("    " * (ndim + 1) + f"o[{index or '()'}] = v[{index or '()'}]")
    lines.append("    return True")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), {"copy_bytes": copy_bytes}, namespace)
    return namespace["impl"]
