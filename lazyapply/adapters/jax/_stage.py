"""How a traced call is staged: one :class:`Staging` per kernel, spec and signature.

A kernel's preparation (:class:`Stager`, made once per kernel and spec by the engine)
keeps one :class:`Staging` per argument signature: the operands' abstract values
(shape, dtype, weak type, sharding), their positions, and the static arguments and
keywords keyed by :func:`~lazyapply.spec._static.static_key` (never ``==``: ``-0.0``
after ``0.0`` or ``(1.0, 2.0)`` after ``(1, 2)`` gets its own staging). The staging's
:class:`Decision` says which route it took, chosen once:

- ``callback``: ``jax.pure_callback`` of the one :class:`~lazyapply._call.KernelCall`;
- ``native``: a Numba kernel as an XLA FFI target (:mod:`.native`);
- ``sharded``: either of those, run once per shard (:mod:`._shard`);
- ``differentiable``: a declared vjp/jvp as JAX's custom rules (:mod:`._grad`).

Without declared derivatives the staging is wrapped once in a ``jax.custom_jvp``
whose rule raises :class:`~lazyapply.NotDifferentiableError` with the declaration to
add (a host callback has no derivative of its own).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lazyapply.spec._static import Unkeyable, static_key

__all__ = ["Decision", "Route", "Stager", "Staging", "align_loops", "signature"]


class Route(enum.Enum):
    """The four ways a traced call can be staged."""

    CALLBACK = "callback"
    NATIVE = "native"
    SHARDED = "sharded"
    DIFFERENTIABLE = "differentiable"


@dataclass(frozen=True)
class Decision:
    """The route a staging took and why (a target name, a refusal reason)."""

    route: Route
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.route.value}: {self.reason}" if self.reason else self.route.value


class Staging:
    """A traced call's staged function of its operands, and the route it took."""

    __slots__ = ("decision", "fn")

    def __init__(self, fn: Callable[..., Any], decision: Decision) -> None:
        self.fn = fn
        self.decision = decision

    def __call__(self, *operands: Any) -> Any:
        return self.fn(*operands)

    def __repr__(self) -> str:
        return f"<lazyapply staging ({self.decision})>"


class Stager:
    """A kernel's preparation for one spec: its stagings, one per signature.

    ``hint`` is the sentence that says which derivative to declare when a staging
    without one is differentiated (a vjp's own vjp names the vjp, not the kernel).
    """

    def __init__(self, func: Callable[..., Any], spec: Any, hint: str) -> None:
        self.func = func
        self.spec = spec
        self.hint = hint
        self.stagings: dict[Any, Staging] = {}
        #: Stagers made from this one once (the primal without rules, a vjp's).
        self.derived: dict[Any, Stager] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, build: Callable[[], Staging]) -> Staging:
        """The staging of signature ``key`` (``None``: not keyable, build a new one)."""
        if key is None:
            return build()
        found = self.stagings.get(key)
        if found is None:
            with self._lock:
                found = self.stagings.get(key)
                if found is None:
                    found = build()
                    if len(self.stagings) >= 256:  # bounded: shapes made per call
                        self.stagings.clear()
                    self.stagings[key] = found
        return found


def signature(
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    kwargs: dict[str, Any],
    extra: Any = None,
) -> Any:
    """The cache key of a traced call, or ``None`` when a static value is unkeyable.

    Operands are keyed by their abstract value (``jax.typeof``: shape, dtype, weak
    type and, on explicit meshes, sharding); everything else by ``static_key``.
    """
    import jax

    try:
        statics = tuple(
            ("op", jax.typeof(a)) if i in positions else static_key(a)
            for i, a in enumerate(args)
        )
        return (positions, statics, static_key(kwargs), extra)
    except (Unkeyable, RecursionError, TypeError):
        return None


def align_loops(
    arrays: tuple[Any, ...], lead: tuple[int, ...], loop_ndims: tuple[int, ...]
) -> tuple[Any, ...]:
    """Insert size-1 loop axes after ``lead`` batch axes so that loop dims align.

    A batched call (``vmap`` with ``vmap_method="broadcast_all"``, a native batch
    rule) puts the batch axes first in every operand; an operand with fewer loop
    dimensions than another (``x`` of shape ``(3, 4)`` with ``y`` of shape ``(4,)``)
    would then broadcast its batch axis against a loop axis. Works on NumPy arrays and
    on JAX values alike (``reshape`` only).
    """
    top = max(loop_ndims)
    out = []
    for a, n in zip(arrays, loop_ndims, strict=True):
        if n < top:
            out.append(a.reshape((*lead, *(1,) * (top - n), *a.shape[len(lead) :])))
        else:
            out.append(a)
    return tuple(out)


def no_derivative(fn: Callable[..., Any], message: str) -> Callable[..., Any]:
    """``fn`` under a ``jax.custom_jvp`` whose rule raises ``message``."""
    import jax

    from lazyapply._errors import NotDifferentiableError

    wrapped = jax.custom_jvp(fn)

    @wrapped.defjvp
    def _refuse(*_: Any) -> Any:
        raise NotDifferentiableError(message)

    return wrapped  # type: ignore[no-any-return]
