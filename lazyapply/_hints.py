"""Clearer errors for the first mistakes new users make, raised from a kernel's error.

:func:`explain` is called only when a call has already failed (from an ``except``
clause at the call sites), so successful calls pay nothing. It recognises the error
of a compiled kernel (Numba ``@njit``, Cython) that was handed arrays of a library it
cannot read because ``as_numpy=True`` was not given, a float16 array that a Numba
kernel cannot compile for, a kernel that writes into a read-only input (a JAX
array, a Dask block), and a bfloat16 tensor that ``as_numpy=True`` cannot hand to
NumPy, and raises a :class:`~lazyapply.SpecError` naming the kernel and the fix,
chained to the original.
"""

from __future__ import annotations

from typing import Any

from lazyapply._errors import LazyApplyError, SpecError
from lazyapply._kernels import compiled_kind, writes_read_only
from lazyapply._readonly import write_error

__all__ = ["explain"]


def _foreign(args: tuple[Any, ...]) -> str | None:
    """The library of the first array argument that is not NumPy's, if any."""
    import numpy as np

    for a in args:
        if hasattr(a, "shape") and not isinstance(a, np.ndarray):
            return type(a).__module__.split(".")[0]
    return None


def explain(
    exc: BaseException, func: Any, args: tuple[Any, ...], name: str, as_numpy: bool
) -> None:
    """Raise a clearer error for ``exc`` if it is a known mistake; else return."""
    if isinstance(exc, LazyApplyError):
        return
    _float16(exc, func, args, name)
    _read_only(exc, func, args, name)
    if as_numpy:
        _bfloat16(exc, args, name)
        return
    kind = compiled_kind(func)
    lib = _foreign(args) if kind is not None else None
    if kind is None or lib is None:
        return
    if kind == "Numba" and type(exc).__name__ != "TypingError":
        return
    if kind == "Cython" and not isinstance(exc, (TypeError, ValueError)):
        return
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = (
        f"{name} ({lib}): a {kind} kernel cannot take {lib} arrays "
        f"({type(exc).__name__}: {first}); pass as_numpy=True so that it receives "
        "NumPy arrays and its outputs go back to the caller's library"
    )
    raise SpecError(msg) from exc


def _read_only(exc: BaseException, func: Any, args: tuple[Any, ...], name: str) -> None:
    """A kernel that writes into a read-only input (a JAX array's or a Dask block's
    NumPy view, :mod:`lazyapply._readonly`)."""
    flags = [getattr(getattr(a, "flags", None), "writeable", True) for a in args]
    if all(flags):
        return
    text = str(exc)
    kind = compiled_kind(func)
    if kind == "Cython" and "buffer source array is read-only" in text:
        msg = (
            f"{name}: a Cython kernel takes a read-only array only through a const "
            f"memoryview ({type(exc).__name__}: {text.strip()}); lazyapply hands "
            "kernels read-only inputs on JAX and Dask. Declare the parameter const "
            "(const double[:] x) if the kernel does not write into it, else copy "
            "the input before writing into it: x = x.copy()"
        )
        raise SpecError(msg) from exc
    numba_typing = type(exc).__name__ == "TypingError" and "readonly" in text
    refused = numba_typing or (isinstance(exc, ValueError) and "read-only" in text)
    if not refused and not (kind == "Numba" and _numba_needs_writeable(func, args)):
        return
    which = ", ".join(str(i) for i, w in enumerate(flags) if not w)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    got = f"{type(exc).__name__}: {first}"
    raise write_error(name, f"its input (argument {which})", got) from exc


def _numba_needs_writeable(func: Any, args: tuple[Any, ...]) -> bool:
    """Whether the Numba kernel is refused for these read-only arguments but compiles
    once they are writeable (see :func:`lazyapply._kernels.writes_read_only`).

    Only called on a failed call, so the extra typing costs nothing on success.
    """
    try:
        arg_types = tuple(func.typeof_pyval(a) for a in args)
    except Exception:  # an argument Numba cannot type: not this
        return False
    return writes_read_only(func, arg_types)


def _float16(exc: BaseException, func: Any, args: tuple[Any, ...], name: str) -> None:
    # Numba has no float16 type: its compiler raises NotImplementedError("float16")
    # (or a TypingError naming it) for a float16 array.
    if "float16" not in str(exc) or compiled_kind(func) != "Numba":
        return
    if not any(str(getattr(a, "dtype", "")).endswith("float16") for a in args):
        return
    msg = (
        f"{name}: a Numba kernel cannot take float16 arrays (Numba has no float16 "
        f"type; {type(exc).__name__}: {str(exc).strip().splitlines()[0]}); cast the "
        "input first (x.astype(np.float32), torch's x.float()), or wrap the kernel "
        "to compute in float32 and cast its result back, declaring dtype='float16'"
    )
    raise SpecError(msg) from exc


def _bfloat16(exc: BaseException, args: tuple[Any, ...], name: str) -> None:
    # torch refuses to hand a bfloat16 tensor to NumPy, which has no such dtype.
    if not isinstance(exc, TypeError) or "bfloat16" not in str(exc).lower():
        return
    lib = next(
        (type(a).__module__.split(".")[0] for a in args if hasattr(a, "dtype")), "?"
    )
    msg = (
        f"{name} ({lib}): as_numpy=True needs NumPy arrays, and NumPy has no "
        "bfloat16; cast the input first (x.to(torch.float32)) and the result back, "
        "or drop as_numpy=True if the kernel can take the tensors themselves"
    )
    raise SpecError(msg) from exc
