"""Import-free backend detection, cached per argument type.

A backend can only be in play if its module is already imported, so detection looks
in ``sys.modules`` and never imports one. The answer for each argument type is cached
in a plain dict: the hot path is one lookup per argument.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._errors import ArgumentTypeError, MixedNamespaceError, SpecError
from lazyapply.spec import dtype_args  # re-exported: where adapters find it

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter

__all__ = ["adapter_for", "check_definition", "dtype_args", "find_adapter"]

# Python scalars and None pass through to the kernel; they pick no backend.
_TYPES: dict[type, Adapter | None] = {
    type(None): None,
    bool: None,
    int: None,
    float: None,
    complex: None,
}
_ADAPTERS: dict[str, Adapter] = {}  # one instance per backend (or generic namespace)

# (module that must already be imported, adapter module, adapter class). Order matters
# only where a type could claim to be two things; Dask and JAX come first.
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("dask.array", "lazyapply.adapters.dask", "DaskAdapter"),
    ("jax", "lazyapply.adapters.jax", "JaxAdapter"),
    ("torch", "lazyapply.adapters.torch", "TorchAdapter"),
    ("cupy", "lazyapply.adapters.cupy", "CuPyAdapter"),
    ("sparse", "lazyapply.adapters.sparse", "SparseAdapter"),
    ("numpy", "lazyapply.adapters.numpy", "NumPyAdapter"),
)


# drop-in (issue 9): adapters are made under a lock, so threads that make their first
# call at once (GIL or free-threaded) share one instance per backend.
_LOCK = threading.Lock()


def _instance(module: str, cls: str) -> Adapter:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        import importlib

        with _LOCK:
            adapter = _ADAPTERS.get(cls)
            if adapter is None:
                adapter = getattr(importlib.import_module(module), cls)()
                adapter.lookup = adapter_for
                _ADAPTERS[cls] = adapter
    return adapter


def _learn(x: Any, name: str) -> Adapter | None:
    t = type(x)
    if t is list or t is tuple:  # never cached: the next one may hold arrays
        # Checked here, not in _learn_key: Dynamo runs that one at trace time and
        # needs constant arguments, and a tuple of numbers that changes between
        # compiled calls holds symbolic ones.
        _plain_sequence(x, name)
        return None
    key = _learn_key(x, name)
    return None if key is None else _ADAPTERS[key]


def _learn_key(x: Any, name: str) -> str | None:
    """Learn the adapter of ``type(x)``; its key in ``_ADAPTERS``."""
    t = type(x)
    for trigger, module, cls in _ROWS:
        if trigger in sys.modules:
            adapter_cls = getattr(__import__(module, fromlist=[cls]), cls)
            if adapter_cls.claims(x):
                _TYPES[t] = _instance(module, cls)
                _learn_ndarray()
                return cls
    if hasattr(x, "__array_namespace__"):
        xp = x.__array_namespace__()
        key = f"generic:{getattr(xp, '__name__', id(xp))}"
        generic = _ADAPTERS.get(key)
        if generic is None:
            from lazyapply.adapters.numpy import GenericAdapter

            with _LOCK:
                generic = _ADAPTERS.get(key)
                if generic is None:
                    generic = GenericAdapter(xp, t)
                    generic.lookup = adapter_for
                    _ADAPTERS[key] = generic
        _TYPES[t] = generic
        return key
    msg = (
        f"{name}: got an argument of type {t.__module__}.{t.__qualname__}, which is "
        "neither an array of a supported library nor a Python scalar or None; pass "
        "arrays, Python scalars or None positionally and everything else as a keyword "
        "argument"
    )
    raise ArgumentTypeError(msg)


def _relearn(x: Any, name: str) -> Adapter | None:
    """The adapter of ``x`` after this call learnt a type, asked without the table.

    torch.compile's Dynamo traces :func:`find_adapter` on a view of ``_TYPES`` taken
    when it first read it, and runs :func:`_learn_key` untraced: a type learnt
    there (NumPy's array type, learnt with torch's tensor) is missing from that
    view, and Dynamo's guard that it is missing fails on the frame that made it (a
    NumPy scalar is a 0-d ``numpy.ndarray`` to Dynamo, pytorch/pytorch#141343).
    """
    t = type(x)
    if t is list or t is tuple:
        return _learn(x, name)
    key = _known_key(t)
    if key == "":
        return _learn(x, name)
    return None if key is None else _ADAPTERS[key]


def _known_key(t: type) -> str | None:
    """The key in ``_ADAPTERS`` of type ``t``'s adapter (``None``: a Python scalar
    type), or ``""`` where ``t`` is not learnt yet."""
    if t not in _TYPES:
        return ""
    adapter = _TYPES[t]
    if adapter is None:
        return None
    # A copy: another thread's first call may add an adapter meanwhile.
    return next(k for k, v in tuple(_ADAPTERS.items()) if v is adapter)


def _learn_ndarray() -> None:
    """Learn NumPy's array type as soon as any library's is.

    torch.compile's Dynamo shows a NumPy scalar argument as a 0-d ``numpy.ndarray``
    whose value it does not know, which :func:`_learn_key` (run at trace time on
    constant arguments) cannot take; known beforehand, it takes the hot path.
    """
    numpy = sys.modules.get("numpy")
    if numpy is not None and numpy.ndarray not in _TYPES:
        _TYPES[numpy.ndarray] = _instance("lazyapply.adapters.numpy", "NumPyAdapter")


_NUMBERS = (bool, int, float, complex)


def _plain_sequence(seq: list[Any] | tuple[Any, ...], name: str) -> None:
    """Accept a (nested) list or tuple of Python numbers; it passes to the kernel.

    Such a sequence is a constant of the call (baked into the Dask task or the JIT
    callback, never traced). One that holds an array is refused: its arrays would be
    neither converted nor traced.
    """
    stack: list[Any] = [seq]
    while stack:
        for item in stack.pop():
            if type(item) is list or type(item) is tuple:
                stack.append(item)
            elif not isinstance(item, _NUMBERS) and item is not None:
                t = type(item)
                msg = (
                    f"{name}: a {type(seq).__name__} among the positional arguments "
                    f"holds a {t.__module__}.{t.__qualname__}; only lists and tuples "
                    "of Python numbers pass to the kernel as they are. Pass arrays "
                    "positionally, one argument each (e.g. f(*arrays)), or stack them "
                    "into one array"
                )
                raise ArgumentTypeError(msg)


def check_definition(name: str) -> None:
    """Ask every adapter in use whether a kernel can be decorated now."""
    for adapter in tuple(_ADAPTERS.values()):
        adapter.check_definition(name)


def adapter_for(x: Any, name: str = "kernel") -> Adapter:
    """The adapter of one array (e.g. a Dask chunk's ``_meta``)."""
    adapter = _TYPES.get(type(x), _TYPES)
    if adapter is _TYPES:
        adapter = _learn(x, name)
    if adapter is None:
        msg = f"{name}: expected an array, got {type(x).__qualname__}"
        raise ArgumentTypeError(msg)
    return adapter  # type: ignore[return-value]


def find_adapter(
    args: tuple[Any, ...], func: Callable[..., Any] | str
) -> tuple[Adapter, Any]:
    """Return ``(adapter, first_array)`` for a call's positional arguments."""
    if len(args) == 1:  # one array of a known type (the common case): one lookup
        a = args[0]
        one = _TYPES.get(type(a))
        if one is not None:
            return one, a
    adapter: Adapter | None = None
    first = None
    types = _TYPES
    seen: type | None = None
    learnt = False
    ad: Any  # an adapter, None, or the table itself (a miss)
    for a in args:
        t = type(a)
        if t is seen:  # arrays of one type (the common case): one lookup for all
            continue
        if learnt:  # a type learnt by this call: the table changed (rare)
            ad = _relearn(a, _name(func))
        else:
            ad = types.get(t, types)
            if ad is types:  # not cached (lists and tuples never are: each checked)
                ad = _learn(a, _name(func))
                learnt = True
            else:
                seen = t
        if ad is None:
            continue
        if adapter is None:
            adapter, first = ad, a  # type: ignore[assignment]
        elif ad is not adapter:
            adapter, first = _mixed(args, func)
            break
    if adapter is None:
        msg = (
            f"Must have at least one argument array ({_name(func)} got only Python "
            "scalars and None); pass at least one array positionally"
        )
        raise SpecError(msg)
    return adapter, first


def _mixed(args: tuple[Any, ...], func: Callable[..., Any] | str) -> tuple[Any, Any]:
    """The adapter of arguments from several libraries, where one can take them all.

    Off the hot path (only reached when two libraries meet). As NumPy promotes with
    Python scalars, a NumPy scalar beside another library's arrays is a scalar of
    the call, whatever that library (torch, JAX, Dask, CuPy...). A NumPy array
    beside arrays of a library that adopts NumPy arrays (``adopts_numpy``: Dask and
    JAX, as ``dask.array`` and ``jax.numpy`` do) is taken as one of that library's.
    """
    numpy = sys.modules.get("numpy")
    found: list[tuple[Adapter, Any]] = []
    numpy_arrays: list[tuple[Adapter, Any]] = []
    for a in args:
        key = _known_key(type(a))  # not _TYPES.get: see _relearn
        if not key:
            continue
        ad = _ADAPTERS[key]
        if numpy is not None and isinstance(a, (numpy.generic, numpy.ndarray)):
            if isinstance(a, numpy.ndarray):
                numpy_arrays.append((ad, a))
            continue  # a NumPy scalar: a scalar of the call
        if all(ad is not f for f, _ in found):
            found.append((ad, a))
    if len(found) == 1:
        adapter, first = found[0]
        if not numpy_arrays or getattr(adapter, "adopts_numpy", False):
            return adapter, first
        if all(a.ndim == 0 for _, a in numpy_arrays):
            # 0-d arrays promote as NumPy scalars do (NEP 50), and torch.compile's
            # Dynamo shows every NumPy scalar as one (pytorch/pytorch#141343):
            # scalars of the call, as eagerly.
            return adapter, first
        found.append(numpy_arrays[0])
    elif not found:  # NumPy arrays and scalars only: NumPy's adapter (not reached)
        ad, a = numpy_arrays[0]
        return ad, a
    (adapter, first), (other, a) = found[:2]
    msg = (
        f"{_name(func)}: arguments mix array libraries "
        f"({adapter.label(first)} and {other.label(a)}); convert them to one "
        "library before the call. NumPy scalars may go with any library, and NumPy "
        "arrays with Dask and JAX arrays"
    )
    raise MixedNamespaceError(msg)


def _name(func: Callable[..., Any] | str) -> str:
    if isinstance(func, str):
        return func
    from lazyapply.spec import kernel_name

    return kernel_name(func)


# hook (issue 11): torch.compile's Dynamo cannot trace a first call's adapter import;
# it runs _learn_key at trace time and keeps the key as a constant (as
# torch._dynamo.assume_constant_result does, without importing torch), then _learn
# reads the adapter from _ADAPTERS, a global it can trace.
_learn_key._dynamo_marked_constant = True  # type: ignore[attr-defined]
_known_key._dynamo_marked_constant = True  # type: ignore[attr-defined]
