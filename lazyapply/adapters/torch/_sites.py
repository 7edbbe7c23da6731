"""Call sites of torch's custom ops: what a graph passes beside the tensors.

The op's schema is ``(Tensor[] tensors, int site)``. A call site is an entry of a
process-wide table that holds everything the schema cannot express: the positions of
the tensors among the positional arguments (``TENSOR``), the other positional
arguments (Python scalars, ``None``) and the keyword arguments, all passed to the
kernel unchanged. Equal sites share one integer, a constant of the graph, so a
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

__all__ = ["TENSOR", "TOKEN", "join_site", "site_of"]

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


def join_site(site: int, tensors: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The kernel's positional and keyword arguments, from the op's operands."""
    template, kwargs = _SITES[site]
    it = iter(tensors)
    return tuple(next(it) if a == TENSOR else a for a in template), kwargs


# Dynamo runs it at trace time and keeps the result as a constant of the graph:
# registering a call site cannot be traced, only done (as
# torch._dynamo.assume_constant_result does, without importing torch._dynamo).
site_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
