"""Modes a kernel brings with it: ufuncs are elementwise, gufuncs have a signature.

Kept apart from :mod:`lazyapply.spec._modes` (which re-exports :func:`infer_mode`) so
the hot path of ``lazy_apply`` pays one type check for a plain function. Detection
is import-free: NumPy and Numba types are looked up only if those modules are loaded.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Callable
from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import CallSpec

__all__ = ["infer_mode", "with_inferred_mode"]

_PLAIN = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    functools.partial,
)


def infer_mode(kernel: object) -> tuple[bool, str | None] | None:
    """``(elementwise, signature)`` implied by the kernel's type, or ``None``.

    A NumPy ufunc and a Numba ``@vectorize`` kernel (``DUFunc``) are elementwise; a
    NumPy gufunc and a Numba ``@guvectorize`` kernel (``GUFunc``) bring their
    ``signature``. Signatures with optional core dimensions (``np.matmul``'s ``?``)
    imply nothing. Any other callable implies nothing.

    Examples
    --------
    >>> import numpy as np
    >>> infer_mode(np.hypot), infer_mode(np.vecdot), infer_mode(len)
    ((True, None), (False, '(n),(n)->()'), None)
    """
    if isinstance(kernel, _PLAIN):
        return None
    np: Any = sys.modules.get("numpy")
    if np is not None and isinstance(kernel, np.ufunc):
        signature = getattr(kernel, "signature", None)
    elif "numba" in sys.modules:
        from numba.np.ufunc.dufunc import DUFunc
        from numba.np.ufunc.gufunc import GUFunc

        if isinstance(kernel, DUFunc):
            signature = None
        elif isinstance(kernel, GUFunc):
            signature = kernel.signature
        else:
            return None
    else:
        return None
    if signature is None:
        return (True, None)
    return None if "?" in signature else (False, signature)


_CACHE: dict[tuple[Any, CallSpec], CallSpec] = {}


def with_inferred_mode(spec: CallSpec, kernel: Callable[..., Any]) -> CallSpec:
    """``spec`` with the mode ``kernel`` implies, when no mode was given.

    Inference is a default, never an error: if the implied mode contradicts the
    declared outputs (``shape=`` unlike a gufunc's), the whole-array mode is kept.
    """
    mode = infer_mode(kernel)
    if mode is None or not spec.mode.is_default:
        return spec
    key = (kernel, spec)
    try:
        return _CACHE[key]
    except (KeyError, TypeError):
        pass
    from lazyapply.spec._modes import with_mode

    try:
        out = with_mode(spec, kernel, mode[0], mode[1])
    except SpecError:
        out = spec
    if len(_CACHE) > 512:
        _CACHE.clear()
    with contextlib.suppress(TypeError):  # an unhashable spec: infer next time again
        _CACHE[key] = out
    return out
