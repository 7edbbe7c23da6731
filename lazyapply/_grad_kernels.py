"""The kernels of declared derivatives: a vjp or jvp called on flattened operands.

The engine calls a kernel on positional operands and checks declared outputs. A
vjp is ``vjp(grad_out, out, *args, **kwargs)`` returning one cotangent per positional
argument, ``None`` for some: :class:`VjpKernel` takes ``(*grads, *outs, *args)`` and
returns only the cotangents of the differentiable arguments, so that their shapes
and dtypes can be declared. :class:`JvpKernel` does the same for a jvp. Both pickle
(Dask tasks run them on worker processes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._errors import KernelOutputError

__all__ = ["JvpKernel", "VjpKernel", "eager_rule", "own_vjp"]


def own_vjp(rule: Any) -> Any:
    """The vjp declared on a vjp (a ``@lazy(vjp=...)`` function), or ``None``."""
    from lazyapply.spec import CallSpec

    spec = getattr(rule, "spec", None)
    return spec.vjp if isinstance(spec, CallSpec) else None


def eager_rule(rule: Any) -> Any:
    """The kernel of a rule given as a lazy function (called on converted arrays)."""
    from lazyapply.spec import CallSpec

    return rule.eager if isinstance(getattr(rule, "spec", None), CallSpec) else rule


class VjpKernel:
    """``vjp`` called on flattened operands; returns the picked cotangents (a tuple).

    Picklable (Dask tasks run it on worker processes).
    """

    __slots__ = ("multi", "n_args", "n_out", "name", "positions", "vjp")

    def __init__(
        self,
        vjp: Callable[..., Any],
        name: str,
        n_out: int,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        # A vjp given as a lazy function (it declares its own vjp, for second
        # derivatives) is called here on the converted arrays: its kernel.
        self.vjp = eager_rule(vjp)
        self.name = name
        self.n_out = n_out
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            VjpKernel,
            (
                self.vjp,
                self.name,
                self.n_out,
                self.multi,
                self.positions,
                self.n_args,
            ),
        )

    @property
    def __name__(self) -> str:  # task names and messages
        return f"{self.name}_vjp"

    def __call__(self, *flat: Any, **kwargs: Any) -> tuple[Any, ...]:
        n = self.n_out
        grads, outs, args = flat[:n], flat[n : 2 * n], flat[2 * n :]
        g = tuple(grads) if self.multi else grads[0]
        out = tuple(outs) if self.multi else outs[0]
        cts = self.vjp(g, out, *args, **kwargs)
        if self.n_args == 1 and not isinstance(cts, (tuple, list)):
            cts = (cts,)
        if not isinstance(cts, (tuple, list)) or len(cts) != self.n_args:
            got = len(cts) if isinstance(cts, (tuple, list)) else type(cts).__name__
            msg = (
                f"{self.__name__}: the vjp must return one cotangent per positional "
                f"argument of {self.name} ({self.n_args}), got {got}; return a tuple "
                "with None for arguments that are not differentiable"
            )
            raise KernelOutputError(msg)
        picked = tuple(cts[i] for i in self.positions)
        for i, c in zip(self.positions, picked, strict=True):
            if c is None:
                msg = (
                    f"{self.__name__}: the vjp returned None for argument {i} of "
                    f"{self.name}, which is a floating-point array and needs a "
                    "cotangent; return an array shaped like that argument"
                )
                raise KernelOutputError(msg)
        return picked


class JvpKernel:
    """``jvp`` called on flattened operands ``(*tangents, *args)``; returns outputs.

    ``tangents`` holds the tangents of ``positions`` only; the kernel gets one per
    positional argument, ``None`` elsewhere. Picklable, like :class:`VjpKernel`.
    """

    __slots__ = ("jvp", "multi", "n_args", "name", "positions")

    def __init__(
        self,
        jvp: Callable[..., Any],
        name: str,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        self.jvp = jvp
        self.name = name
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.jvp, self.name, self.multi, self.positions, self.n_args)
        return (JvpKernel, state)

    @property
    def __name__(self) -> str:  # task names and messages
        return f"{self.name}_jvp"

    def __call__(self, *flat: Any, **kwargs: Any) -> Any:
        n = len(self.positions)
        tangents: list[Any] = [None] * self.n_args
        for i, t in zip(self.positions, flat[:n], strict=True):
            tangents[i] = t
        rest = flat[n:]
        n_out = len(rest) - self.n_args
        out = tuple(rest[:n_out]) if self.multi else rest[0]
        return self.jvp(tuple(tangents), out, *rest[n_out:], **kwargs)
