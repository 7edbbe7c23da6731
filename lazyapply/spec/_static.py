"""One key for every cache that holds a non-array value: never ``==``.

``0.0 == -0.0``, ``1 == 1.0 == True`` and ``(1, 2) == (1.0, 2.0)``, yet a kernel can
tell each pair apart (``copysign``, ``type(s)``, integer division). A cache keyed by
the values themselves would hand one of them the other's compiled rule, graph or op.
:func:`static_key` builds a hashable key that keeps the type of every value, the sign
of zero and NaN, and looks inside tuples, lists and dicts. Objects without a value
semantics of their own (functions, modules, instances) are keyed by identity, and the
key holds them, so an id is never reused while the key lives. Dataclasses (specs,
modes) are keyed by their fields, and an object whose class defines
``__static_key__(self)`` by what that returns (itself keyed the same way).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Unkeyable", "static_key", "try_static_key"]

_EXACT = (type(None), bool, int, str, bytes)


class Unkeyable(TypeError):
    """A value that cannot be keyed safely (an array): pass it as data instead."""


class Identity:
    """Compares by identity and holds its object, so the id stays unique."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return type(other) is Identity and other.obj is self.obj

    def __repr__(self) -> str:
        return f"Identity({self.obj!r})"


def _float(x: float) -> str:
    # float.hex keeps the sign of zero ('-0x0.0p+0') and spells NaN 'nan', which is
    # then equal to itself as a key.
    return x.hex()


def static_key(value: Any) -> Any:
    """A hashable key for ``value`` that two values share only if a kernel cannot
    tell them apart.

    Raises
    ------
    Unkeyable
        ``value`` is or holds an array (anything with ``shape`` and ``dtype`` that is
        not a 0-d NumPy scalar): such a value must be passed as data.
    """
    t = type(value)
    if t in _EXACT:
        return (t, value)
    if t is float:
        return (float, _float(value))
    if t is complex:
        return (complex, _float(value.real), _float(value.imag))
    if t is tuple or t is list:
        return (t, tuple([static_key(v) for v in value]))
    if t is dict:
        return (dict, tuple([(static_key(k), static_key(v)) for k, v in value.items()]))
    if t is frozenset or t is set:
        return (t, frozenset(static_key(v) for v in value))
    if isinstance(value, type):
        return Identity(value)
    np = _numpy()
    if np is not None:
        if isinstance(value, np.generic):  # NumPy scalars: their dtype and bytes
            return (t, value.dtype.str, value.tobytes())
        if isinstance(value, np.dtype):
            return (
                np.dtype,
                value.str,
                static_key(value.descr) if value.fields else None,
            )
    own = getattr(t, "__static_key__", None)
    if own is not None:  # an object that says which of its values make it what it is
        return (Identity(t), static_key(own(value)))
    if hasattr(t, "__dataclass_fields__"):  # a frozen spec, mode or signature
        import dataclasses

        return (
            Identity(t),
            tuple(
                [
                    static_key(getattr(value, f.name))
                    for f in dataclasses.fields(value)
                    if f.compare
                ]
            ),
        )
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        msg = f"an array ({t.__name__}) cannot be a static argument; pass it as data"
        raise Unkeyable(msg)
    if isinstance(value, (tuple, list, dict)):  # named tuples, subclasses
        base = (
            tuple
            if isinstance(value, tuple)
            else list
            if isinstance(value, list)
            else dict
        )
        return (Identity(t), static_key(base(value)))
    # Functions, modules, dtypes of other libraries, user objects: by identity. Two
    # equal objects then miss the cache; never do two different ones share it.
    return Identity(value)


def try_static_key(value: Any) -> Any:
    """:func:`static_key`, or ``None`` where it cannot be built (disable the cache)."""
    try:
        return static_key(value)
    except (Unkeyable, RecursionError):
        return None


def _numpy() -> Any:
    import sys

    return sys.modules.get("numpy")
