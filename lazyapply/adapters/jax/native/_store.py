"""Typing-time checks for generated handler bodies, and the result-copy source.

The handler body is written before the kernel's result type is known. These
intrinsics check it when Numba types the handler, and compile to (almost) nothing:

- ``check_store(o, v)``: ``v`` (the kernel's result) fits the result buffer ``o``
  (same rank, and the same dtype or one JAX stores as ``o``'s without x64); its value
  is the constant "one ``memcpy`` may copy it" (same dtype, an array);
- ``as_scalar(v)``: a scalar, or the element of a 0-d array;
- ``check_element(o, v)``: an element function's result fits ``o``;
- ``expect_tuple(n)(res)``: a kernel with ``n`` outputs returns a tuple of ``n``.

A mismatch stops the compile with a message starting with :data:`MARK`: the native
path then leaves the call to the callback path, whose output check explains it.
Intrinsics, not ``overload``\\ s: an overload compiles a function of its own per
signature, which a first call pays for. :func:`store_lines` writes the copy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.numpy_support import as_dtype

__all__ = ["MARK", "as_scalar", "check_element", "check_store", "expect_tuple"]

MARK = "lazyapply-native-refusal: "


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


def _constant(value: bool) -> Any:
    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return context.get_constant(types.boolean, value)

    return codegen


@intrinsic
def check_store(typingctx: Any, o: Any, v: Any) -> Any:
    if isinstance(v, (types.Number, types.Boolean)):
        if o.ndim != 0 or not _accepts(v, o.dtype):
            _refuse(f"the kernel returns {v}, expected {o.ndim}-d {o.dtype}")
        return types.boolean(o, v), _constant(False)
    if not isinstance(v, types.Array) or v.ndim != o.ndim:
        _refuse(f"the kernel returns {v}, expected {o.ndim}-d {o.dtype}")
    if not _accepts(v.dtype, o.dtype):
        _refuse(f"the kernel returns {v}, expected {o.dtype}")
    return types.boolean(o, v), _constant(v.dtype == o.dtype)


@intrinsic
def as_scalar(typingctx: Any, v: Any) -> Any:
    if isinstance(v, types.Array):
        if v.ndim != 0:
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            from numba.np.arrayobj import make_array

            ary = make_array(sig.args[0])(context, builder, value=args[0])
            return builder.load(ary.data)

        return v.dtype(v), codegen
    return v(v), lambda context, builder, sig, args: args[0]


@intrinsic
def check_element(typingctx: Any, o: Any, v: Any) -> Any:
    if not isinstance(v, (types.Number, types.Boolean)) or not _accepts(v, o.dtype):
        _refuse(f"the element function returns {v}, expected {o.dtype}")
    return types.none(o, v), lambda context, builder, sig, args: None


@functools.cache
def expect_tuple(count: int) -> Any:
    """An intrinsic checking that its argument is a tuple of ``count`` values."""

    @intrinsic
    def check(typingctx: Any, res: Any) -> Any:
        if not isinstance(res, types.BaseTuple) or len(res) != count:
            _refuse(f"the kernel returns {res}, expected a tuple of {count} outputs")
        return types.none(res), lambda context, builder, sig, args: None

    return check


def store_lines(k: int, got: str, dtype: Any, ndim: int, pad: str) -> list[str]:
    """Source copying the kernel's result ``got`` into result buffer ``o{k}``.

    Sets ``ok = False`` when the shapes differ; one ``memcpy`` when the result is a
    C-contiguous array of the buffer's dtype, explicit loops (with the cast) else.
    """
    o = f"o{k}"
    if ndim == 0:
        return [f"{pad}check_store({o}, {got})", f"{pad}{o}[()] = as_scalar({got})"]
    itemsize = np.dtype(as_dtype(dtype)).itemsize
    differ = " or ".join(f"{got}.shape[{d}] != {o}_s{d}" for d in range(ndim))
    index = ", ".join(f"i{d}" for d in range(ndim))
    lines = [
        f"{pad}fast = check_store({o}, {got})",
        f"{pad}if {differ}:",
        f"{pad}    ok = False",
        f"{pad}elif fast and {got}.flags.c_contiguous:",
        f"{pad}    copy_bytes({o}_a, {got}.ctypes.data, {o}_n * {itemsize})",
        f"{pad}else:",
    ]
    for d in range(ndim):
        lines.append(f"{pad}    " + "    " * d + f"for i{d} in range({o}_s{d}):")
    lines.append(f"{pad}    " + "    " * ndim + f"{o}[{index}] = {got}[{index}]")
    return lines
