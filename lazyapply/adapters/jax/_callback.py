"""The JAX host callback: the traced operands put back among the call's constants.

Only the array arguments are operands of ``jax.pure_callback``; Python scalars,
``None`` and sequences of numbers are baked into the :class:`Callback`, which calls
the one :class:`~lazyapply._call.KernelCall` with the arguments in their places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lazyapply._call import KernelCall

__all__ = ["Callback"]


class Callback:
    """Puts the callback's operands back among the baked-in scalars and ``None``\\ s."""

    __slots__ = ("align", "args", "call", "ndims", "positions")

    def __init__(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        ndims: tuple[int, ...],
        align: tuple[int, ...] | None = None,
    ) -> None:
        self.call = call
        # Loop ranks of the operands (elementwise/gufunc kernels): a batched call
        # right-aligns them, which vmap's leading batch dimensions would break.
        self.align = align
        # Keep only the static arguments; the traced ones are replaced at each call.
        self.args = [None if i in positions else a for i, a in enumerate(args)]
        self.positions = positions
        self.ndims = ndims

    def __call__(self, *arrays: Any) -> Any:
        lead: tuple[int, ...] = ()
        if arrays and arrays[0].ndim > self.ndims[0]:  # batched by vmap in one call
            lead = tuple(arrays[0].shape[: arrays[0].ndim - self.ndims[0]])
            if self.align is not None:
                arrays = _align(arrays, lead, self.align)
        args = self.args.copy()
        for i, a in zip(self.positions, arrays, strict=True):
            args[i] = a
        call = self.call
        return call.run(tuple(args), call.kwargs, lead)


def _align(
    arrays: tuple[Any, ...], lead: tuple[int, ...], loop_ndims: tuple[int, ...]
) -> tuple[Any, ...]:
    """Insert size-1 loop axes after vmap's batch axes so that loop dims align.

    ``vmap_method="broadcast_all"`` puts the batch axes first in every operand; an
    operand with fewer loop dimensions than another (``x`` of shape ``(3, 4)`` with
    ``y`` of shape ``(4,)``) would then broadcast its batch axis against a loop axis.
    """
    top = max(loop_ndims)
    out = []
    for a, n in zip(arrays, loop_ndims, strict=True):
        if n < top:
            out.append(a.reshape((*lead, *(1,) * (top - n), *a.shape[len(lead) :])))
        else:
            out.append(a)
    return tuple(out)
