"""Second derivatives: the vjp's own vjp, in a vjp kernel's flat calling convention.

A kernel's vjp is staged as ``VjpKernel(*grads, *outs, *args) -> cotangents``. When
the vjp declares a vjp of its own (it is a ``@lazy(vjp=...)`` function, or was given
one with ``@f.vjp.defvjp``), :class:`VjpOfVjp` adapts that rule to the flat call, so
the vjp's staging is differentiable again (``jax.grad(jax.grad(f))``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._errors import NotDifferentiableError
from lazyapply._grad_kernels import eager_rule

__all__ = ["VjpOfVjp"]


class VjpOfVjp:
    """The second-order rule of a vjp kernel, in the engine's flat calling convention.

    The vjp is staged as ``VjpKernel(*grads, *outs, *args) -> picked cotangents``;
    its own vjp is then called ``(gg, cts, *grads, *outs, *args)`` with ``gg`` and
    ``cts`` holding the picked cotangents' cotangents and values. The user's rule
    ``own(gg, cts, g, out, *args)`` sees them as full tuples (``None`` for arguments
    without a cotangent) and returns one cotangent per argument of the vjp,
    ``(g, out, *args)``, which are flattened back here.
    """

    __slots__ = ("multi", "n_args", "n_out", "name", "own", "positions")

    def __init__(
        self,
        own: Callable[..., Any],
        name: str,
        n_out: int,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        self.own = own
        self.name = name
        self.n_out = n_out
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    @property
    def __name__(self) -> str:
        return f"{self.name}_vjp"

    def __call__(self, gg: Any, cts: Any, *flat: Any, **kwargs: Any) -> tuple[Any, ...]:
        n = self.n_out
        grads, outs, args = flat[:n], flat[n : 2 * n], flat[2 * n :]
        full_gg: list[Any] = [None] * self.n_args
        full_ct: list[Any] = [None] * self.n_args
        for i, a, b in zip(self.positions, gg, cts, strict=True):
            full_gg[i], full_ct[i] = a, b
        g = tuple(grads) if self.multi else grads[0]
        out = tuple(outs) if self.multi else outs[0]
        rule = eager_rule(self.own)
        got = rule(tuple(full_gg), tuple(full_ct), g, out, *args, **kwargs)
        if not isinstance(got, (tuple, list)) or len(got) != 2 + self.n_args:
            msg = (
                f"{self.__name__}: the vjp's vjp must return one cotangent per "
                f"argument of the vjp (g, out and the {self.n_args} argument(s) of "
                f"{self.name}), got {got!r:.80}"
            )
            raise NotDifferentiableError(msg)
        g_ct, out_ct, *rest = got
        g_cts = tuple(g_ct) if self.multi else (g_ct,)
        out_cts = tuple(out_ct) if self.multi else (out_ct,)
        # None: no dependence; a zero cotangent for the floating-point ones.
        flat_cts = (*g_cts, *out_cts, *rest)
        return tuple(
            _zeros_like(a) if c is None and _inexact(a) else c
            for c, a in zip(flat_cts, flat, strict=True)
        )


def _inexact(a: Any) -> bool:
    import numpy as np

    return hasattr(a, "dtype") and np.issubdtype(a.dtype, np.inexact)


def _zeros_like(a: Any) -> Any:
    import numpy as np

    return np.zeros_like(a)
