"""Declared derivatives: a kernel's vjp, run through the engine like the kernel.

The vjp kernel is called as ``vjp(grad_out, out, *args, **kwargs)`` and returns one
cotangent per positional argument. The engine cannot express "``None`` for some
outputs", so :class:`VjpKernel` flattens the call (``*grads, *outs, *args``) and keeps
only the cotangents of the differentiable arguments, whose shapes and dtypes are then
declared: the same output check serves every backend (eager, Dask task, jit callback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._errors import KernelOutputError
from ._spec import CallSpec

__all__ = ["VjpFunction", "VjpKernel", "differentiable_positions", "run_vjp"]


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
        self.vjp = vjp
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


def differentiable_positions(args: Sequence[Any]) -> tuple[int, ...]:
    """Positions of the real or complex floating-point array arguments."""
    from array_api_compat import array_namespace, is_array_api_obj

    out = []
    for i, a in enumerate(args):
        dtype = getattr(a, "dtype", None)
        if dtype is not None and is_array_api_obj(a):
            xp = array_namespace(a)
            if xp.isdtype(dtype, ("real floating", "complex floating")):
                out.append(i)
    return tuple(out)


def run_vjp(
    spec: CallSpec,
    grads: tuple[Any, ...],
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
    multi: bool,
) -> tuple[Any, ...]:
    """Run ``spec.vjp`` through the engine; the cotangents of ``positions``.

    Each cotangent is declared with its argument's shape and dtype, so it is checked
    on every backend. An elementwise kernel's vjp is elementwise too.
    """
    from ._lazy_apply import lazy_apply

    if spec.vjp is None or not positions:
        return ()
    kernel = VjpKernel(spec.vjp, spec.name, len(grads), multi, positions, len(args))
    return lazy_apply(  # type: ignore[no-any-return]
        kernel,
        *grads,
        *outs,
        *args,
        shape=[tuple(args[i].shape) for i in positions],
        dtype=[args[i].dtype for i in positions],
        as_numpy=spec.as_numpy,
        strict=True,
        elementwise=spec.mode.elementwise,
        **kwargs,
    )


class VjpFunction:
    """``f.vjp``: the declared vjp of a lazy kernel, itself run lazily."""

    __slots__ = ("spec",)

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec

    def __call__(
        self, grad_out: Any, out: Any, *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        from ._errors import NotDifferentiableError

        if self.spec.vjp is None:
            msg = (
                f"{self.spec.name}: no vjp was declared; declare one with "
                f"@{self.spec.name}.defvjp or lazy(..., vjp=...)"
            )
            raise NotDifferentiableError(msg)
        multi = isinstance(grad_out, (tuple, list))
        grads = tuple(grad_out) if multi else (grad_out,)
        outs = tuple(out) if multi else (out,)
        positions = differentiable_positions(args)
        picked = run_vjp(self.spec, grads, outs, args, kwargs, positions, multi)
        full: list[Any] = [None] * len(args)
        for i, c in zip(positions, picked, strict=True):
            full[i] = c
        return tuple(full)
