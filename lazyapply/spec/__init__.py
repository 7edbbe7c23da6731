"""Call specifications: output shapes and dtypes, execution mode, kernel names.

Everything here is namespace-neutral and computed once: when a decorator is applied,
or once per ``lazy_apply`` call. Dtypes are kept as the user wrote them (a name, a
Python type, a NumPy dtype or a namespace's own dtype) and mapped to a namespace by
:func:`resolve_dtype`, which caches its answers.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, SupportsIndex, TypeGuard, cast

from lazyapply._caches import bounded
from lazyapply._errors import SpecError

__all__ = [
    "STRICT_ENV",
    "CallSpec",
    "Mode",
    "OutputSpec",
    "Shape",
    "arg_shape",
    "broadcast_shapes",
    "dtype_args",
    "kernel_name",
    "parse_output",
    "resolve_dtype",
]

Shape = tuple["int | None", ...]

#: ``LAZYAPPLY_STRICT=1`` turns the strict output policy on for every call, so that a
#: library's test suite finds declarations that would break on Dask or under jit.
STRICT_ENV = os.environ.get("LAZYAPPLY_STRICT", "").strip().lower() in {
    "1",
    "true",
    "yes",
    "on",
}

_SEQUENCES = (tuple, list)


def kernel_name(func: Callable[..., Any]) -> str:
    """Return a readable name for ``func``, looking through ``functools.partial``."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__name__", None)
    if not isinstance(name, str):
        name = type(func).__name__
    return re.sub(r"[^0-9A-Za-z_.]", "", name) or "kernel"


def _is_dim(d: object) -> bool:
    if d is None:
        return True
    if isinstance(d, float):
        return math.isnan(d) or d.is_integer()
    if isinstance(d, bool) or type(d).__name__ == "bool_":  # True is no size
        return False
    return hasattr(d, "__index__")


def _dim(d: object, name: str) -> int | None:
    if d is None:
        return None
    if isinstance(d, float):
        if math.isnan(d):
            return None
        size = int(d)
    else:
        # d passed _is_dim (it has __index__); operator.index raises otherwise.
        size = operator.index(cast("SupportsIndex", d))
    if size < 0:
        msg = f"{name}: output sizes must be >= 0 or None (unknown); got {d!r}"
        raise SpecError(msg)
    return size


def normalize_shape(shape: object, name: str) -> tuple[tuple[Shape, ...], bool]:
    """Parse a user ``shape`` into ``(shapes, multi_output)``.

    A flat sequence of sizes (``int``, NumPy integers, ``None`` or NaN) is one shape;
    a sequence of such sequences is several.
    """
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        msg = (
            f"{name}: shape must be a tuple of sizes (int or None) or a sequence of "
            f"such tuples; got {shape!r}"
        )
        raise SpecError(msg)
    items = list(shape)
    if all(_is_dim(d) for d in items):
        return (tuple(_dim(d, name) for d in items),), False
    if all(isinstance(s, Sequence) and not isinstance(s, str) for s in items) and all(
        _is_dim(d) for s in items for d in s
    ):
        return tuple(tuple(_dim(d, name) for d in s) for s in items), True
    msg = (
        f"{name}: shape must be a tuple of sizes (int or None) or a sequence of such "
        f"tuples; got {shape!r}"
    )
    raise SpecError(msg)


def _is_dtype_sequence(dtype: object) -> TypeGuard[tuple[Any, ...] | list[Any]]:
    return isinstance(dtype, _SEQUENCES)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What a kernel returns: one shape and one dtype per output.

    ``shapes is None`` means "broadcast of the array arguments"; ``dtypes is None``
    means "``result_type`` of the arguments". ``None`` inside a shape is an unknown
    size.
    """

    shapes: tuple[Shape, ...] | None
    dtypes: tuple[Any, ...] | None
    multi: bool

    @property
    def declared(self) -> bool:
        """Whether both shapes and dtypes were given by the user."""
        return self.shapes is not None and self.dtypes is not None


INFERRED = OutputSpec(None, None, False)


def parse_output(
    shape: object, dtype: object, name: str, *, nout: int | None = None
) -> OutputSpec:
    """Validate ``shape``/``dtype`` as ``lazy_apply`` accepts them.

    ``nout`` is the number of outputs a signature declares: without ``shape``, a
    list of that many dtypes is one per output.
    """
    if shape is None and dtype is None:
        return INFERRED
    shapes: tuple[Shape, ...] | None = None
    multi = False
    if shape is not None:
        shapes, multi = normalize_shape(shape, name)
    dtypes: tuple[Any, ...] | None = None
    if dtype is not None:
        if shape is None and nout is not None and _is_dtype_sequence(dtype):
            # A signature gives the number of outputs; mode_output checks the count.
            return OutputSpec(None, tuple(dtype), nout > 1 or len(dtype) > 1)
        if multi:
            if not _is_dtype_sequence(dtype):
                msg = (
                    f"Got multiple shapes but only one dtype ({name}: pass one dtype "
                    f"per output, e.g. dtype=({dtype!r}, ...))"
                )
                raise SpecError(msg)
            dtypes = tuple(dtype)
        else:
            if _is_dtype_sequence(dtype):
                given = "one shape=" if shape is not None else "no shape="
                msg = (
                    f"Got single shape but multiple dtypes ({name}: {given} and no "
                    "signature= with several outputs; pass one shape per output, "
                    "e.g. shape=[(n,), (m,)], or a signature such as '(n)->(),()')"
                )
                raise SpecError(msg)
            dtypes = (dtype,)
        n_shapes = len(shapes) if shapes is not None else 1
        if n_shapes != len(dtypes):
            msg = (
                f"Got {n_shapes} shapes and {len(dtypes)} dtypes ({name}: pass one "
                "dtype per output shape)"
            )
            raise SpecError(msg)
    return OutputSpec(shapes, dtypes, multi)


@dataclass(frozen=True, slots=True)
class Mode:
    """How a kernel may be split: whole array, elementwise, gufunc or stencil."""

    elementwise: bool = False
    signature: Any = None  # lazyapply.spec._modes.Signature, parsed once
    depth: Any = None  # lazyapply.spec._modes.Depth (from an int, tuple or dict)
    boundary: Any = None

    @property
    def is_default(self) -> bool:
        return not self.elementwise and self.signature is None and self.depth is None


DEFAULT_MODE = Mode()


@dataclass(frozen=True, slots=True, eq=False)
class CallSpec:
    """Everything about a call that does not depend on its arguments.

    Equal (and hashed alike) only when :func:`~lazyapply.spec._static.static_key`
    of every field is: ``boundary=0.0`` and ``boundary=-0.0``, or dtypes of two
    libraries, never share a cache entry.
    """

    name: str
    output: OutputSpec = INFERRED
    as_numpy: bool = False
    mode: Mode = DEFAULT_MODE
    # Callables of the call's arguments, for decorators written before the inputs exist.
    shape_fn: Callable[..., Any] | None = None
    dtype_fn: Callable[..., Any] | None = None
    #: Output policy: check declared (or inferred) metadata on every backend.
    strict: bool = False
    #: Declared derivatives: ``vjp(grad_out, out, *args, **kwargs)`` returns one
    #: cotangent per positional argument; ``jvp(tangents, out, *args, **kwargs)``.
    vjp: Callable[..., Any] | None = None
    jvp: Callable[..., Any] | None = None
    # Specs key the engine's caches on every call: key and hash once.
    _key: Any = field(init=False, repr=False, compare=False, default=None)
    _hash: int = field(init=False, repr=False, compare=False, default=0)
    #: Derived once for the engine's hot path: strict calls check inferred metadata.
    infer: bool = field(init=False, repr=False, compare=False, default=False)
    #: Derived once: autograd cannot see into the kernel (``as_numpy`` or a vjp), so
    #: a call on arrays that require grad must go through a rule.
    opaque: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        from lazyapply.spec._static import Identity, try_static_key

        key = try_static_key(self)
        if key is None:  # a field holds an array: equal to itself only
            key = Identity(self)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))
        declared = self.output.shapes is not None and self.output.dtypes is not None
        object.__setattr__(self, "infer", self.strict and not declared)
        object.__setattr__(self, "opaque", self.as_numpy or self.vjp is not None)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        # The key and hash are rebuilt where the spec arrives: string hashes and
        # identities differ between processes.
        fields = (
            self.name,
            self.output,
            self.as_numpy,
            self.mode,
            self.shape_fn,
            self.dtype_fn,
            self.strict,
            self.vjp,
            self.jvp,
        )
        return (CallSpec, fields)

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if type(other) is not CallSpec:
            return NotImplemented
        return self._hash == other._hash and self._key == other._key


def broadcast_shapes(shapes: Sequence[Shape], name: str) -> Shape:
    """Broadcast shapes in which ``None`` is an unknown size.

    An unknown size is compatible with anything: beside a known size ``n != 1`` it
    becomes ``n`` (the kernel's broadcast will check at run time); beside 1 or another
    unknown it stays unknown.
    """
    if len(shapes) == 1:
        return shapes[0]
    ndim = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for axis in range(-ndim, 0):
        known: int | None = 1
        unknown = False
        for s in shapes:
            if len(s) < -axis:
                continue
            d = s[axis]
            if d is None:
                unknown = True
            elif d != 1:
                if known not in (1, d):
                    msg = (
                        f"{name}: input shapes {', '.join(map(str, shapes))} cannot be "
                        "broadcast together; pass shape= if the kernel does not "
                        "broadcast its inputs"
                    )
                    raise SpecError(msg)
                known = d
        out.append(None if unknown and known == 1 else known)
    return tuple(out)


_DTYPE_CACHE = bounded("spec: dtypes resolved in a namespace", 1024)


def resolve_dtype(dtype: Any, xp: Any, name: str = "kernel") -> Any:
    """Map a user dtype (name, Python type, NumPy dtype or ``xp``'s own) to ``xp``."""
    # type(dtype) first: dtypes of different libraries are then never compared
    # (array-api-strict warns when they are).
    key = (type(dtype), dtype, id(xp))
    try:
        return _DTYPE_CACHE[key]
    except (KeyError, TypeError):
        pass
    from lazyapply.spec._dtypes import (
        in_namespace,  # every NumPy dtype, not only the array-API names
    )

    resolved = in_namespace(dtype, xp, name)
    # Unhashable dtypes (rare) are resolved again next time. Only reached on a miss.
    with contextlib.suppress(TypeError):
        _DTYPE_CACHE.put(key, resolved)
    return resolved


def check_dtype_name(dtype: Any, name: str) -> None:
    """Reject a dtype that no namespace can ever resolve (at decoration time)."""
    from lazyapply.spec._dtypes import check_name

    check_name(dtype, name)


def arg_shape(a: Any) -> Shape:
    """An argument's shape: ``()`` for a scalar or ``None``; NaN sizes → ``None``."""
    shape = getattr(a, "shape", None)
    if shape is None:
        return ()
    return tuple(_size(s) for s in shape)


def _size(s: Any) -> int | None:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return None
    if isinstance(s, (int, numbers.Integral)) or not hasattr(s, "__index__"):
        return int(s)
    # A symbolic size (torch's SymInt under dynamic shapes): int() would specialise
    # the compiled graph to this size.
    return s  # type: ignore[no-any-return]


def dtype_args(args: tuple[Any, ...]) -> list[Any]:
    """The arguments that take part in ``result_type``: arrays and Python scalars.

    ``None`` and sequences of numbers pass to the kernel but have no dtype of their
    own (NumPy would even read a tuple as a structured dtype).
    """
    return [
        a
        for a in args
        if a is not None and type(a) is not list and type(a) is not tuple
    ]
