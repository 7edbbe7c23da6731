"""Inputs a kernel must not change: read-only views, and the one write Numba lets by.

A JAX array is immutable, and a Dask block belongs to the caller's graph (a block of
``da.from_array(a)`` is stored in the graph; a kernel writing into it would change the
caller's array for every later compute). Both adapters hand kernels read-only NumPy
views (:func:`readonly`), which refuse ``x[i] = v``, ``x += 1`` and ``x.flat[i] = v``
in NumPy and ``x[i] = v`` in Numba, where the writing kernel does not compile.

Numba types ``x.flat`` of a read-only array as writeable, so that one write gets by
without an error; :func:`writes_through_flat` finds it in a kernel's typed code and
:func:`refuse_flat_writes` does so *before* a Numba kernel runs on a read-only block.
Every message about a kernel writing into its input is :func:`write_error`.
"""

from __future__ import annotations

from typing import Any

from lazyapply._caches import weak
from lazyapply._errors import SpecError

__all__ = ["readonly", "refuse_flat_writes", "write_error", "writes_through_flat"]


def readonly(a: Any) -> Any:
    """A read-only view of the NumPy array ``a`` (``a`` itself if it is read-only).

    The view's flag is turned off, never ``a``'s: the caller's array stays writeable.
    """
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v


def write_error(where: str, what: str, got: str) -> SpecError:
    """The error for a kernel that writes into ``what`` (an input lazyapply guards)."""
    msg = (
        f"{where}: the kernel writes into {what}, which lazyapply hands it read-only "
        f"({got}): a JAX array is immutable, and a Dask block belongs to the caller's "
        "graph (a write would change the caller's array for every later compute). "
        "Copy the input inside the kernel before writing into it: x = x.copy()"
    )
    return SpecError(msg)


#: Per Numba dispatcher: {argument types: whether the kernel writes through .flat}.
_VERDICTS = weak("numba: kernels writing through .flat")


def refuse_flat_writes(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> None:
    """Raise :func:`write_error` if the Numba kernel ``func`` would write through
    ``.flat`` of one of the read-only ``args``; compiles it for them first.

    The verdict is kept per kernel and argument types (a microsecond or two a call
    after the first). Anything else Numba refuses is left for the call itself to
    raise, with its hint.
    """
    try:
        key = (
            tuple(_typing_key(func, a) for a in args),
            tuple((k, _typing_key(func, v)) for k, v in kwargs.items()),
        )
        verdicts = _VERDICTS.get(func)
        if verdicts is None:
            verdicts = _VERDICTS[func] = {}
        verdict = verdicts.get(key)
        if verdict is None:  # compile the overload the call will use, read its code
            arg_types = tuple(func.typeof_pyval(a) for a in args)
            kw_types = {k: func.typeof_pyval(v) for k, v in kwargs.items()}
            func.get_call_template(arg_types, kw_types)
            verdict = verdicts[key] = writes_through_flat((func,))
    except Exception:  # the call raises it again, with lazyapply's hint
        return
    if verdict:
        raise write_error(where, "an input through .flat", "Numba lets .flat write")


def _typing_key(func: Any, a: Any) -> Any:
    """What Numba's type of ``a`` depends on, cheaper to get than the type itself."""
    flags = getattr(a, "flags", None)
    if flags is None or type(a).__module__ != "numpy":
        return func.typeof_pyval(a)
    return (
        type(a),
        a.dtype,
        a.ndim,
        flags.c_contiguous,
        flags.f_contiguous,
        flags.writeable,
        flags.aligned,
    )


def writes_through_flat(dispatchers: tuple[Any, ...]) -> bool:
    """Whether a compiled Numba kernel writes through ``.flat`` of a read-only array.

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
                    return True
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
                            return True
            for sig in ann.calltypes.values():
                if sig is None:
                    continue
                for t in (*sig.args, sig.return_type):
                    if isinstance(t, types.Dispatcher):
                        todo.append(t.dispatcher)
            for t in typemap.values():
                if isinstance(t, types.Dispatcher):
                    todo.append(t.dispatcher)
    return False
