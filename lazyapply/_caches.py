"""Every module-level store of lazyapply, bounded or weak, made through one helper.

A store that holds kernels, specs or compiled rules must not grow without end (a
kernel made per call, a lambda, a new shape each step) and must be inspectable. Make
it here rather than with a bare ``{}``:

``bounded(name, maxsize)``
    A :class:`BoundedDict`: a plain ``dict`` (lookups cost what a dict's do) whose
    :meth:`~BoundedDict.put` drops the oldest entry once ``maxsize`` is reached.
    Keys that hold non-array values must be made with
    :func:`lazyapply.spec._static.static_key`, never the values themselves.
``weak(name)``
    A ``weakref.WeakKeyDictionary``, for what is built once per kernel object (the
    entry goes when the kernel does).

``slots(name)``
    A :class:`Slots`: last-call slots held by many owners (one per ``@lazy``
    function), matched by identity on their owner's hot path and emptied together.

``pinned(name)``
    A plain ``dict`` whose entries are never dropped, for what is not a cache but a
    table that something outside lazyapply refers to by name or number: a custom op
    registered with torch (a compiled graph names it), a call site baked into a graph,
    a native handler's failure token, a kernel registered by the user. Evicting an
    entry would break the graph that holds its name, so :func:`clear_caches` leaves
    these alone; :func:`cache_report` lists them (``"pinned": True``).

All register the store under ``name`` (say which module and what it holds, e.g.
``"dask: kernel tokens"``), so that :func:`clear_caches` empties every cache and
:func:`cache_report` lists their sizes; ``lazyapply.testing`` re-exports both.
Adapters and other modules adopt it the same way: ``_OPS = bounded("torch: ops",
256)`` then ``_OPS.get(key)`` / ``_OPS.put(key, op)``.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Generic, TypeVar

__all__ = [
    "BoundedDict",
    "Slot",
    "Slots",
    "bounded",
    "cache_report",
    "clear_caches",
    "pinned",
    "slots",
    "weak",
]

K = TypeVar("K")
V = TypeVar("V")

_REGISTRY: dict[str, Any] = {}
# An empty ``BoundedDict.last``: a fresh object, so its first item is no kernel.
_NO_LAST: tuple[Any, ...] = (object(), None, None, None, (), (), None, None)
_PINNED: set[str] = set()  # names in _REGISTRY of pinned stores (never cleared)
_LOCK = threading.Lock()


class BoundedDict(dict[K, V], Generic[K, V]):
    """A ``dict`` with a size bound, kept by :meth:`put` (first in, first out).

    ``last`` is a slot for its owner's identity fast path (the engine keeps the last
    eager call's key parts and value there); :meth:`clear` empties it too.
    """

    __slots__ = ("last", "maxsize", "name")

    def __init__(self, name: str, maxsize: int) -> None:
        super().__init__()
        self.name = name
        self.maxsize = maxsize
        self.last: tuple[Any, ...] = _NO_LAST

    def clear(self) -> None:
        """Remove every entry, and the owner's last entry."""
        self.last = _NO_LAST
        super().clear()

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key``, dropping the oldest entry when full."""
        if len(self) >= self.maxsize:
            # Another thread may drop the same entry or change the dict meanwhile:
            # losing a cache entry is harmless, so only never fail here.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del self[next(iter(self))]
        self[key] = value
        return value

    def __repr__(self) -> str:
        return f"<BoundedDict {self.name!r}: {len(self)}/{self.maxsize}>"


def _register(name: str, store: Any, *, keep: bool = False) -> None:
    with _LOCK:
        unique, n = name, 1
        while unique in _REGISTRY:  # one store per adapter instance, say
            n += 1
            unique = f"{name} #{n}"
        _REGISTRY[unique] = store
        if keep:
            _PINNED.add(unique)


def bounded(name: str, maxsize: int = 256) -> BoundedDict[Any, Any]:
    """A registered :class:`BoundedDict` holding at most ``maxsize`` entries."""
    store: BoundedDict[Any, Any] = BoundedDict(name, maxsize)
    _register(name, store)
    return store


def weak(name: str) -> weakref.WeakKeyDictionary[Any, Any]:
    """A registered ``WeakKeyDictionary`` (entries go with their keys)."""
    store: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
    _register(name, store)
    return store


def pinned(name: str) -> dict[Any, Any]:
    """A registered plain ``dict`` whose entries stay: never bounded, never cleared.

    Only for tables that code outside lazyapply refers to by name or number (see the
    module's docstring); anything that can be rebuilt is :func:`bounded` or
    :func:`weak` instead.
    """
    store: dict[Any, Any] = {}
    _register(name, store, keep=True)
    return store


class Slot:
    """A last-call slot of one owner (a ``@lazy`` function): ``last`` is a tuple
    that its owner replaces whole; made by :meth:`Slots.new`, emptied by
    :func:`clear_caches` with every other slot of its :class:`Slots`."""

    __slots__ = ("__weakref__", "last")

    def __init__(self) -> None:
        self.last: tuple[Any, ...] = _NO_LAST


class Slots:
    """The registered set of many owners' :class:`Slot` objects (held weakly: a
    slot goes with its owner); :meth:`clear` empties them all."""

    __slots__ = ("_slots", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._slots: weakref.WeakSet[Slot] = weakref.WeakSet()

    def new(self) -> Slot:
        """A fresh, empty slot, registered here."""
        slot = Slot()
        self._slots.add(slot)
        return slot

    def clear(self) -> None:
        """Empty every slot (their owners refill them on their next call)."""
        for slot in list(self._slots):
            slot.last = _NO_LAST

    def __len__(self) -> int:
        return sum(1 for slot in list(self._slots) if slot.last is not _NO_LAST)

    def __repr__(self) -> str:
        return f"<Slots {self.name!r}: {len(self)} filled>"


def slots(name: str) -> Slots:
    """A registered :class:`Slots`: last-call slots, one per owner, cleared as one
    cache (their number is the owners that hold a last call)."""
    store = Slots(name)
    _register(name, store)
    return store


def clear_caches() -> None:
    """Empty every registered cache (compiled rules, specs, tokens, calls).

    Safe at any time: every cache is refilled on the next call. Useful in tests, and
    to release memory held for kernels that are no longer used. Pinned tables (custom
    ops and call sites that compiled graphs name) are left as they are.
    """
    with _LOCK:
        stores = [s for name, s in _REGISTRY.items() if name not in _PINNED]
    for store in stores:
        store.clear()


def cache_report() -> dict[str, dict[str, Any]]:
    """Every registered store: ``{name: {"size": n, "maxsize": m or None,
    "pinned": bool}}`` (pinned tables have no bound and are never cleared).

    Examples
    --------
    >>> from lazyapply._caches import cache_report
    >>> all(v["maxsize"] is None or v["size"] <= v["maxsize"]
    ...     for v in cache_report().values())
    True
    """
    with _LOCK:
        items = list(_REGISTRY.items())
        keep = set(_PINNED)
    return {
        name: {
            "size": len(store),
            "maxsize": getattr(store, "maxsize", None),
            "pinned": name in keep,
        }
        for name, store in items
    }
