"""Pickling of ``@lazy`` functions: by reference where the module holds them.

A module-level lazy function pickles as its qualified name. One defined in a script or
notebook (``__main__``) pickles as its name plus a cloudpickle copy carried as bytes
(as Numba pickles its dispatchers), so that plain ``pickle`` works (``multiprocessing``
spawn re-imports the script and finds the same object) and a process whose
``__main__`` lacks it (a ``dask worker`` started from the command line) builds the copy.
"""

from __future__ import annotations

import pickle
import sys
import threading
from typing import TYPE_CHECKING, Any

from lazyapply._caches import pinned

if TYPE_CHECKING:
    from lazyapply._decorator import LazyFunction

__all__ = ["by_value", "from_main", "kernel_of", "kernel_reference", "lookup"]


def lookup(module: str, qualname: str) -> object:
    """The object at ``module.qualname`` if the module is imported, else ``None``."""
    obj: object = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def kernel_reference(func: Any, spec: Any) -> tuple[Any, Any]:
    """What stands for a kernel and its spec in a pickle: the lazy function its
    module holds.

    ``@lazy`` at module level rebinds the kernel's name to the lazy function, so plain
    ``pickle`` cannot find the kernel by its own name ("not the same object"), nor a
    lambda among its options: a call that carries them (a Dask graph's task) pickles
    the lazy function instead and takes them back on load (:func:`kernel_of`).
    """
    holder = lookup(
        getattr(func, "__module__", None) or "", getattr(func, "__qualname__", "")
    )
    # What stands in needs only the holder's kernel and spec back (no import of the
    # decorator here: the call module imports this one).
    if holder is None or getattr(holder, "eager", None) is not func:
        return func, spec
    same = spec is getattr(holder, "spec", None)
    return _KernelOf(holder), (_KernelOf(holder) if same else spec)


def kernel_of(func: Any, spec: Any) -> tuple[Any, Any]:
    """The kernel and spec that :func:`kernel_reference` stands for."""
    if type(func) is _KernelOf:
        func = func.lazy.eager
    if type(spec) is _KernelOf:
        spec = spec.lazy.spec
    return func, spec


class _KernelOf:
    __slots__ = ("lazy",)

    def __init__(self, lazy: Any) -> None:
        self.lazy = lazy

    def __reduce__(self) -> tuple[Any, ...]:
        return (_KernelOf, (self.lazy,))


# The ``__main__`` functions being pickled by value right now, per thread: a kernel that
# names itself (recursion through its module global) is sent by reference inside its
# own copy, rather than recursing forever.
_PICKLING = threading.local()


def by_value(func: LazyFunction[Any, Any]) -> bytes | None:
    """``cloudpickle`` bytes of ``(kernel, options)``, or ``None`` if impossible."""
    busy: set[int] = _PICKLING.__dict__.setdefault("busy", set())
    if id(func) in busy:
        return None
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:  # plain pickle by reference still works
        return None
    busy.add(id(func))
    try:
        data: bytes = cloudpickle.dumps((func.eager, dict(func.options)))
    except Exception:  # an unpicklable kernel: by reference only
        return None
    finally:
        busy.discard(id(func))
    return data


def from_main(qualname: str, data: bytes | None, cls: type) -> Any:
    """Unpickle a ``__main__`` lazy function: the process's own, else the copy.

    ``cls`` is the lazy function's class (pickled by reference with it), which
    makes the copy from ``data``'s kernel and options.
    """
    found = lookup("__main__", qualname)
    if isinstance(found, cls):
        return found
    if data is None:  # a kernel's reference to itself, inside its own copy
        return _Copied(qualname, cls)
    kernel, options = pickle.loads(data)  # our own cloudpickle bytes
    copy = cls(kernel, **options)
    _COPIES[qualname] = copy
    return copy


# The copies of ``__main__`` lazy functions made in this process (see _from_main).
# (Pinned: a copy's own name for itself resolves through this table.)
_COPIES: dict[str, LazyFunction[Any, Any]] = pinned(
    "pickling: copies of __main__ kernels"
)


class _Copied:
    """A ``__main__`` kernel's name for itself inside its own copy (in another
    process): resolved when used, once the copy exists."""

    __slots__ = ("_cls", "_qualname")

    def __init__(self, qualname: str, cls: type) -> None:
        self._qualname = qualname
        self._cls = cls

    def _target(self) -> LazyFunction[Any, Any]:
        return _COPIES[self._qualname]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (from_main, (self._qualname, None, self._cls))
