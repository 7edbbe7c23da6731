"""Numba kernels that write into their read-only inputs through ``.flat``.

JAX arrays are immutable, and every JAX path hands a kernel read-only views
(:func:`~._callback.readonly_inputs`). NumPy and Numba refuse ``x[i] = v`` on them,
but Numba compiles ``x.flat[i] = v`` on a read-only array and writes into it: the
caller's ``jax.Array`` (eagerly, a zero-copy view) or XLA's buffer would change,
with no error. The typed code of the kernel shows the write
(:func:`writes_through_flat`); :func:`guard_host` checks it once per kernel and
argument types, before the first call, on the eager and callback paths (the native
path checks it when it compiles).

Overloads that Numba loaded from its own disk cache (``cache=True``) carry no typed
code and cannot be checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lazyapply._caches import bounded
from lazyapply._errors import SpecError
from lazyapply._kernels import numba_kind

__all__ = ["guard_host", "writes_through_flat"]

Host = Callable[[tuple[Any, ...]], tuple[Any, ...]]
# (kernel, argument types) -> whether it writes through .flat of a read-only input
_VERDICTS = bounded("jax: Numba kernels writing through .flat", 1024)


def guard_host(func: Any, host: Host) -> Host:
    """``host`` for ``func``: for a Numba ``@njit`` kernel, first refuse a write."""
    if numba_kind(func) != "dispatcher":
        return host
    return functools.partial(_checked, func, host)


def _key(a: Any) -> Any:
    flags = getattr(a, "flags", None)
    if flags is None or not hasattr(a, "dtype"):
        return type(a)
    return (
        a.dtype.str,
        a.ndim,
        flags.c_contiguous,
        flags.f_contiguous,
        flags.writeable,
    )


def _checked(func: Any, host: Host, args: tuple[Any, ...]) -> tuple[Any, ...]:
    args = host(args)
    key = (func, tuple(_key(a) for a in args))
    verdict = _VERDICTS.get(key)
    if verdict is None:
        verdict = _verdict(func, args)
        _VERDICTS.put(key, verdict)
    if verdict:
        name = getattr(func, "__name__", "kernel")
        msg = (
            f"{name}: the kernel writes into its input through .flat, which is "
            "read-only (Numba compiles such writes into read-only arrays). JAX arrays "
            "are immutable and lazyapply hands kernels read-only views of them; copy "
            "the input inside the kernel before writing into it: x = x.copy()"
        )
        raise SpecError(msg)
    return args


def _verdict(func: Any, args: tuple[Any, ...]) -> bool:
    """Compile ``func`` for ``args`` (as the call would) and read its typed code."""
    import numba

    try:
        func.compile(tuple(numba.typeof(a) for a in args))  # type: ignore[no-untyped-call]
    except Exception:  # the call itself raises (and explains) it
        return False
    return writes_through_flat((func,)) is not None


def writes_through_flat(dispatchers: tuple[Any, ...]) -> str | None:
    """Whether a compiled kernel writes through ``.flat`` of a read-only array.

    Numba refuses ``x[i] = v`` on a read-only array but not ``x.flat[i] = v``; the
    typed code of the kernel (and of the Numba functions it calls) shows it.
    """
    from numba import types
    from numba.core import ir

    seen: set[int] = set()
    todo = list(dispatchers)
    while todo:
        disp = todo.pop()
        if id(disp) in seen or not hasattr(disp, "overloads"):
            continue
        seen.add(id(disp))
        for cres in list(disp.overloads.values()):
            ann = getattr(cres, "type_annotation", None)
            if isinstance(ann, str) or ann is None:
                if "NumpyFlatType(readonly" in str(ann) and "setitem" in str(ann):
                    return "an input through .flat"
                continue
            typemap = ann.typemap
            for block in ann.blocks.values():
                for stmt in block.body:
                    if isinstance(stmt, (ir.SetItem, ir.StaticSetItem)):
                        t = typemap.get(stmt.target.name)
                        if (
                            isinstance(t, types.NumpyFlatType)
                            and not t.array_type.mutable
                        ):
                            return "an input through .flat"
            for sig in ann.calltypes.values():
                if sig is None:
                    continue
                for t in (*sig.args, sig.return_type):
                    if isinstance(t, types.Dispatcher):
                        todo.append(t.dispatcher)
            for t in typemap.values():
                if isinstance(t, types.Dispatcher):
                    todo.append(t.dispatcher)
    return None
