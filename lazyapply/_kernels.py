"""What kind of kernel this is: the one place that answers it.

A kernel can be a plain Python function, a ``functools.partial``, a NumPy ufunc or
gufunc (SciPy's special functions are NumPy ufuncs), a Numba dispatcher (``@njit``),
a Numba ``@vectorize`` (``DUFunc``) or ``@guvectorize`` (``GUFunc``) kernel, or a
Cython function. Detection is import-free: a NumPy or Numba type is looked up only if
that module is already loaded (a kernel of that library cannot exist otherwise).

Used by the spec builder (the mode a ufunc or gufunc implies), by the error hints (a
compiled kernel handed arrays it cannot read), by Dask tokens (which kernels cannot
change) and, through :func:`numba_kind`, by the JAX native path.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any, Literal

__all__ = [
    "compiled_kind",
    "implied_mode",
    "is_immutable",
    "numba_kind",
    "unwrap",
    "writes_read_only",
]

_PLAIN = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    functools.partial,
)


def unwrap(func: Any) -> Any:
    """The callable under any number of ``functools.partial`` layers."""
    while isinstance(func, functools.partial):
        func = func.func
    return func


def numba_kind(func: Any) -> Literal["dispatcher", "ufunc", "gufunc"] | None:
    """Which Numba kernel ``func`` is (``@njit``, ``@vectorize``, ``@guvectorize``).

    ``None`` for anything else, and whenever Numba is not imported.
    """
    if "numba" not in sys.modules or isinstance(func, _PLAIN):
        return None
    from numba.core.dispatcher import Dispatcher
    from numba.np.ufunc.dufunc import DUFunc
    from numba.np.ufunc.gufunc import GUFunc

    if isinstance(func, Dispatcher):
        return "dispatcher"
    if isinstance(func, DUFunc):
        return "ufunc"
    if isinstance(func, GUFunc):
        return "gufunc"
    return None


def writes_read_only(func: Any, argtypes: tuple[Any, ...]) -> bool:
    """Whether the ``@njit`` kernel ``func`` is refused for the Numba types
    ``argtypes`` but types once their read-only arrays are writable: it writes
    into an input.

    Numba's refusal of such a kernel does not always say so: ``x += 1`` on a
    read-only array fails inside its typing with ``AttributeError: 'NoneType'
    object has no attribute 'args'``; ``np.add(x, 1, out=x)`` or ``x.fill(0)`` with
    a "no implementation" TypingError. Typing it for the writable types (as an
    eager call on a writable array would) tells them apart from other failures;
    such an overload cannot serve a read-only argument (Numba does not convert a
    read-only array to a writable one). Called only after a failure.
    """
    if numba_kind(func) != "dispatcher":
        return False
    from numba import types as nbtypes

    def writable(t: Any) -> Any:
        is_ro = isinstance(t, nbtypes.Array) and not t.mutable
        return t.copy(readonly=False) if is_ro else t

    unlocked = tuple(writable(t) for t in argtypes)
    if unlocked == tuple(argtypes):
        return False
    try:  # typed as it is (the failure came at run time): not a write
        func.get_call_template(tuple(argtypes), {})
    except Exception:
        pass
    else:
        return False
    try:
        func.get_call_template(unlocked, {})
    except Exception:  # any other reason: not a write
        return False
    return True


def compiled_kind(func: Any) -> Literal["Numba", "Cython"] | None:
    """``"Numba"`` or ``"Cython"`` if ``func`` (through partials) is compiled code
    that reads only NumPy arrays; ``None`` otherwise."""
    func = unwrap(func)
    cls = type(func)
    if cls.__module__.startswith("numba.") and hasattr(func, "py_func"):
        return "Numba"
    if "cython" in cls.__name__.lower():
        return "Cython"
    return None


def implied_mode(kernel: object) -> tuple[bool, str | None] | None:
    """``(elementwise, signature)`` implied by the kernel's type, or ``None``.

    A NumPy ufunc (SciPy special functions included) and a Numba ``@vectorize``
    kernel are elementwise; a NumPy gufunc and a Numba ``@guvectorize`` kernel bring
    their ``signature``. Signatures with optional core dimensions (``np.matmul``'s
    ``?``) imply nothing. Any other callable implies nothing.

    Examples
    --------
    >>> import numpy as np
    >>> implied_mode(np.hypot), implied_mode(np.vecdot), implied_mode(len)
    ((True, None), (False, '(n),(n)->()'), None)
    """
    if isinstance(kernel, _PLAIN):
        return None
    np: Any = sys.modules.get("numpy")
    if np is not None and isinstance(kernel, np.ufunc):
        signature = getattr(kernel, "signature", None)
    else:
        kind = numba_kind(kernel)
        if kind == "ufunc":
            signature = None
        elif kind == "gufunc":
            signature = kernel.signature  # type: ignore[attr-defined]
        else:
            return None
    if signature is None:
        return (True, None)
    return None if "?" in signature else (False, signature)


def is_immutable(func: Any) -> bool:
    """Whether nothing about ``func`` can change its results (its Dask token may be
    cached by identity).

    A plain function, a NumPy ufunc or a Numba dispatcher cannot change in a way that
    changes its result. A ``functools.partial`` (its arguments may be arrays changed
    in place), a callable object (its attributes) or a bound method (its ``self``)
    can, so it is tokenized at every call, as ``dask.array.map_blocks`` does: a new
    state gets a new key and a persisted old result is never taken for a new one.
    """
    if isinstance(func, (types.FunctionType, types.BuiltinFunctionType)):
        return True
    np: Any = sys.modules.get("numpy")
    if np is not None and type(func) is np.ufunc:
        return True
    # Not through partials: a partial's own arguments may change.
    return type(func).__module__.startswith("numba.") and hasattr(func, "py_func")
