"""Call sites of torch's custom ops: what a graph passes beside the tensors.

The op's schema is ``(Tensor t0, ..., Tensor t<n-1>, int site)``. A call site is an
entry of a process-wide table that holds everything the schema cannot express: the
positions of the tensors among the positional arguments (``TENSOR``), the other
positional arguments (Python scalars, ``None``) and the keyword arguments, all passed
to the kernel unchanged. Equal sites share one integer, a constant of the graph, so a
compiled function is compiled once per set of static values.

Below :mod:`._op`, :mod:`._grad` and :mod:`._vmap`, which all join sites: none of
them imports another for it.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from typing import Any

from lazyapply._caches import pinned
from lazyapply.spec._static import Unkeyable, static_key

__all__ = [
    "FLOAT",
    "INT",
    "TENSOR",
    "TOKEN",
    "Scalar",
    "join_site",
    "n_operands",
    "operand_index",
    "site_of",
    "split",
    "template_of",
]

_LOCK = threading.Lock()
# Static key of the static part -> int, and back. The int is derived from the static
# key's repr (float.hex for floats: 0.0 and -0.0 differ; 1, 1.0 and True differ by
# type), so a graph that Inductor cached in another process finds its sites. Pinned
# (never dropped): compiled graphs hold the numbers.
_SITE_IDS: dict[Any, int] = pinned("torch: call site numbers by static key")
_SITES: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = pinned("torch: call sites")
# Marks a tensor's place among the positional arguments: a string, because Dynamo
# traces the code that builds templates and compares only constants it knows.
TENSOR = "<lazyapply tensor argument>"
# Mark a Python float or int passed as a 0-d float64/int64 tensor among the op's
# tensors (after the positional tensors, kwargs in order): Dynamo makes a number that
# changes between calls symbolic, and a site (a constant of the graph) cannot hold
# it. The kernel gets ``float(t.item())``/``int(t.item())``: float64 and int64 keep
# the value, its sign (-0.0) and its type. Bools are never passed so.
FLOAT = "<lazyapply float argument>"
INT = "<lazyapply int argument>"
_NUMBER: dict[str, type] = {FLOAT: float, INT: int}
# Sites and ops without a stable identity carry this process's token: a graph cached
# by another process never names them.
TOKEN = secrets.token_hex(4)


def site_of(template: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The call site of a template (tensors replaced by ``TENSOR``) and kwargs.

    Keyed by :func:`~lazyapply.spec._static.static_key`, never by ``==``: ``0.0``
    and ``-0.0``, ``1``, ``1.0`` and ``True`` get different sites.
    """
    key: Any
    try:
        key = static_key((template, tuple(sorted(kwargs.items()))))
        stable = True
    except (Unkeyable, TypeError, RecursionError):
        # An array among the static values: one site per value object (held).
        key = (static_key(template), tuple(kwargs), tuple(map(id, kwargs.values())))
        stable = False
    site = _SITE_IDS.get(key)
    if site is None:
        with _LOCK:
            site = _SITE_IDS.get(key)
            if site is None:
                text = repr(key) if stable else f"{TOKEN}{key!r}"
                digest = hashlib.blake2b(text.encode(), digest_size=7).digest()
                site = int.from_bytes(digest, "big")
                while site in _SITES:  # a collision: the next free integer
                    site += 1
                _SITES[site] = (template, dict(kwargs))
                _SITE_IDS[key] = site
    return site


class Scalar:
    """A number passed as a 0-d tensor, as :func:`join_site` gives it with
    ``numbers="raw"`` (a backward or a vmap rule passes it on unchanged)."""

    __slots__ = ("marker", "tensor")

    def __init__(self, marker: str, tensor: Any) -> None:
        self.marker, self.tensor = marker, tensor


def _take(a: Any, it: Any, numbers: str) -> Any:
    if type(a) in (tuple, list):  # numbers in a tuple or list (one level)
        return type(a)(_take(b, it, numbers) for b in a)
    if type(a) is not str or (a != TENSOR and a not in _NUMBER):
        return a
    t = next(it)
    if a == TENSOR:
        return t
    if numbers == "raw":
        return Scalar(a, t)
    if numbers == "placeholder":  # fake tensors hold no value; metadata needs none
        return _NUMBER[a](1)
    return _NUMBER[a](t.item())


def join_site(
    site: int, tensors: Any, numbers: str = "value"
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The kernel's positional and keyword arguments, from the op's operands.

    ``numbers``: how a number passed as a tensor comes back: ``"value"`` (the
    Python number), ``"placeholder"`` (``1`` or ``1.0``, for fake tensors: the
    metadata of a spec without shape/dtype callables does not depend on it), or
    ``"raw"`` (a :class:`Scalar`).
    """
    template, kwargs = _SITES[site]
    it = iter(tensors)
    args = tuple(_take(a, it, numbers) for a in template)
    if any(_has_number(v) for v in kwargs.values()):
        kwargs = {k: _take(v, it, numbers) for k, v in kwargs.items()}
    return args, kwargs


def template_of(site: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The template and keyword arguments of a call site."""
    return _SITES[site]


def n_operands(template: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """How many tensors a call site's op takes (``TENSOR``, ``FLOAT``, ``INT``)."""
    n = 0
    for a in (*template, *kwargs.values()):
        for b in a if type(a) in (tuple, list) else (a,):
            n += type(b) is str and (b == TENSOR or b in _NUMBER)
    return n


def operand_index(args: tuple[Any, ...], tensor_type: type) -> list[int]:
    """Each argument's first operand (of arguments :func:`join_site` gave "raw")."""
    at, j = [], 0
    for a in args:
        at.append(j)
        j += len(split((a,), {}, tensor_type)[0])
    return at


class _NoTensor:  # keyword arguments hold no tensor operand
    pass


def _has_number(v: Any) -> bool:
    if type(v) in (tuple, list):
        return any(type(b) is str and b in _NUMBER for b in v)
    return type(v) is str and v in _NUMBER


def _part(a: Any, tensors: list[Any], tensor_type: type) -> Any:
    if isinstance(a, tensor_type):
        tensors.append(a)
        return TENSOR
    if isinstance(a, Scalar):
        tensors.append(a.tensor)
        return a.marker
    if type(a) in (tuple, list) and any(isinstance(b, Scalar) for b in a):
        return type(a)(_part(b, tensors, tensor_type) for b in a)
    return a


def split(
    args: tuple[Any, ...], kwargs: dict[str, Any], tensor_type: type
) -> tuple[list[Any], tuple[Any, ...], dict[str, Any]]:
    """Operands and template of arguments :func:`join_site` gave with ``"raw"``."""
    tensors: list[Any] = []
    template = [_part(a, tensors, tensor_type) for a in args]
    kw = {k: _part(v, tensors, _NoTensor) for k, v in kwargs.items()}
    return tensors, tuple(template), kw


# Dynamo runs it at trace time and keeps the result as a constant of the graph:
# registering a call site cannot be traced, only done (as
# torch._dynamo.assume_constant_result does, without importing torch._dynamo).
site_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
