"""A stable identity of a kernel, its vjp and its spec: the name of its custom op.

A graph that Inductor cached on disk (shared between a user's processes) names the
custom ops it calls. A new process that loads the graph calls whatever op it has
registered under that name, so the name must say exactly which code runs: the
module and qualified name of every function involved, a digest of its code, and the
static key of its closure cells and defaults (functions in them recursively). Two
kernels made by one factory with different closures get different names; the order
in which a process registers them does not matter.

Where no identity holds across processes (a closure over an object without a value,
a callable instance), :func:`op_digest` returns ``None`` and the op's name takes a
per-process token: no other process's cached graph can name it.
"""

from __future__ import annotations

import hashlib
import types
from typing import Any, cast

from lazyapply.spec import CallSpec
from lazyapply.spec._static import Identity, Unkeyable, static_key

__all__ = ["op_digest", "stable"]


class _Unstable(Exception):
    """Raised inside :func:`stable` for a value without a cross-process identity."""


def _code(code: types.CodeType, depth: int) -> Any:
    consts = tuple(
        _code(c, depth) if isinstance(c, types.CodeType) else _value(c, depth)
        for c in code.co_consts
    )
    return (code.co_code.hex(), consts, code.co_names, code.co_varnames)


def _function(fn: Any, depth: int) -> Any:
    if depth > 8:
        raise _Unstable
    depth += 1
    where = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
    eager = getattr(fn, "eager", None)  # a LazyFunction: its kernel and spec
    if eager is not None and hasattr(fn, "spec"):
        return ("lazy", where, _function(eager, depth), _spec(fn.spec, depth))
    inner = getattr(fn, "py_func", None)  # a Numba dispatcher: its Python code
    if inner is not None:
        return ("numba", type(fn).__name__, _function(inner, depth))
    if isinstance(fn, types.FunctionType):
        cells = tuple(_value(c.cell_contents, depth) for c in fn.__closure__ or ())
        return (
            where,
            _code(fn.__code__, depth),
            cells,
            _value(fn.__defaults__, depth),
            _value(fn.__kwdefaults__, depth),
        )
    if isinstance(fn, functools_partial()):
        fn = cast(Any, fn)  # a functools.partial (its type is looked up lazily)
        return (
            "partial",
            _function(fn.func, depth),
            _value(fn.args, depth),
            _value(fn.keywords, depth),
        )
    identity = getattr(fn, "stable_identity", None)  # lazyapply's own callables
    if identity is not None:
        return (type(fn).__qualname__, identity())
    reduce = getattr(type(fn), "__reduce__", None)
    if type(fn).__name__ in {"VjpKernel", "JvpKernel"} and reduce is not None:
        cls, fields = fn.__reduce__()
        return (cls.__qualname__, *(_value(f, depth) for f in fields))
    # Builtins, ufuncs (scipy.special), C extension functions (Cython): their module
    # and name say which code runs.
    if where[0] is not None and where[1] is not None and not hasattr(fn, "__dict__"):
        return ("builtin", where)
    if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        return ("builtin", where, getattr(fn, "__name__", None))
    ufunc = type(fn).__name__ == "ufunc"
    if ufunc:
        return ("ufunc", where, fn.__name__)
    raise _Unstable


def _value(value: Any, depth: int) -> Any:
    if callable(value) and not isinstance(value, type):
        return _function(value, depth)
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, type):
        return ("type", value.__module__, value.__qualname__)
    try:
        key = static_key(value)
    except (Unkeyable, RecursionError) as exc:
        raise _Unstable from exc
    return _portable(key, depth)


def _portable(key: Any, depth: int) -> Any:
    """``key`` with every :class:`Identity` replaced by a cross-process identity."""
    if isinstance(key, Identity):
        return _value_of_identity(key.obj, depth)
    if isinstance(key, tuple):
        return tuple(_portable(k, depth) for k in key)
    if isinstance(key, frozenset):
        return tuple(sorted(repr(_portable(k, depth)) for k in key))
    return key


def _value_of_identity(obj: Any, depth: int) -> Any:
    if isinstance(obj, type):
        return ("type", obj.__module__, obj.__qualname__)
    if isinstance(obj, types.ModuleType):
        return ("module", obj.__name__)
    if callable(obj):
        return _function(obj, depth)
    if type(obj).__module__ == "torch" and type(obj).__name__ == "dtype":
        return ("torch dtype", str(obj))
    raise _Unstable


def _spec(spec: CallSpec, depth: int) -> Any:
    fns = (spec.shape_fn, spec.dtype_fn, spec.vjp, spec.jvp)
    return (
        repr(_portable(static_key(spec.output), depth)),
        spec.as_numpy,
        repr(spec.mode),
        spec.strict,
        *(None if f is None else _function(f, depth) for f in fns),
    )


def functools_partial() -> type:
    import functools

    return functools.partial


def stable(obj: Any) -> Any:
    """A cross-process identity of ``obj`` (a kernel), or ``None``."""
    try:
        return _function(obj, 0)
    except (_Unstable, Unkeyable, RecursionError):
        return None


def op_digest(kernel: Any, spec: CallSpec) -> str | None:
    """Eight hex digits naming the op of ``kernel`` and ``spec`` in every process,
    or ``None`` where ``kernel``, its vjp or a spec callable has no stable identity."""
    try:
        ident = (_function(kernel, 0), _spec(spec, 0))
    except (_Unstable, Unkeyable, RecursionError):
        return None
    text = repr(ident).encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()[:8]
