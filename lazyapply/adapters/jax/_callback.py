"""The JAX host callback: the traced operands put back among the call's constants.

Only the array arguments are operands of ``jax.pure_callback``; Python scalars,
``None`` and sequences of numbers are baked into the :class:`Callback`, which calls
the one :class:`~lazyapply._call.KernelCall` with the arguments in their places.
:func:`readonly_inputs` is how every JAX path hands arrays to a kernel: read-only
NumPy views, since a JAX array is immutable and the kernel must not change it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from lazyapply._errors import LazyApplyError
from lazyapply._kernels import numba_kind
from lazyapply._readonly import refuse_flat_writes
from lazyapply.adapters.jax._fenv import in_default_fp_env
from lazyapply.adapters.jax._stage import align_loops

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply._check import OutputCheck

__all__ = [
    "Callback",
    "error_text",
    "guard_flat_writes",
    "kernel_raised",
    "readonly_inputs",
]


def readonly_inputs(args: tuple[Any, ...], types: tuple[type, ...]) -> tuple[Any, ...]:
    """The arguments with each array (an instance of ``types``) as a read-only view.

    A view whose ``writeable`` flag is off refuses ``x[i] = v`` and ``x.flat[i] = v``
    alike; a NumPy array given beside JAX arrays is protected too, as ``jnp`` copies
    it. A kernel that needs scratch space writes into ``x = x.copy()``.
    """
    import numpy as np

    out = list(args)
    for i, a in enumerate(args):
        if isinstance(a, types):
            v = np.asarray(a)
            if v.flags.writeable:
                v = v.view()
                v.flags.writeable = False
            out[i] = v
    return tuple(out)


def guard_flat_writes(func: Any, host: Any) -> Any:
    """``host`` for kernel ``func``; for a Numba ``@njit`` kernel, one that first
    refuses a write through ``.flat`` (which Numba compiles into read-only arrays:
    the caller's ``jax.Array`` or XLA's buffer would change, with no error)."""
    if numba_kind(func) != "dispatcher":
        return host
    return functools.partial(_refusing_flat_writes, func, host)


def _refusing_flat_writes(func: Any, host: Any, args: tuple[Any, ...]) -> Any:
    args = host(args)
    refuse_flat_writes(func, args, {}, getattr(func, "__name__", "kernel"))
    return args


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

    def __call__(self, *arrays: Any, check: OutputCheck | None = None) -> Any:
        lead: tuple[int, ...] = ()
        if arrays and arrays[0].ndim > self.ndims[0]:  # batched by vmap in one call
            lead = tuple(arrays[0].shape[: arrays[0].ndim - self.ndims[0]])
            if self.align is not None:
                arrays = align_loops(arrays, lead, self.align)
        args = self.args.copy()
        for i, a in zip(self.positions, arrays, strict=True):
            args[i] = a
        call = self.call
        try:
            # XLA flushes denormals in this thread; the kernel runs as eagerly.
            return in_default_fp_env(call.run, tuple(args), call.kwargs, lead, check)
        except LazyApplyError:
            raise
        except Exception as exc:
            raise LazyApplyError(kernel_raised(call.where(), exc)) from exc


def error_text(exc: LazyApplyError) -> str:
    """The text of a lazyapply error raised in compiled code (JAX keeps only text):
    the message, and the class when it says more than the base class."""
    if type(exc) is LazyApplyError:
        return str(exc)
    return f"{exc} [lazyapply.{type(exc).__name__}]"


def kernel_raised(where: str, exc: BaseException) -> str:
    """The message of a kernel's exception under ``jax.jit`` (callback and native).

    JAX keeps only the text of an error raised in compiled code, not the exception
    or its notes or traceback: this text leads with the kernel, its exception's
    first line, and how to see the kernel's own traceback.
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"{where}: the kernel raised {type(exc).__name__}: {first}. Call it "
        "outside jax.jit (on concrete arrays) to see its own traceback"
    )
