# mypy: disable-error-code="no-untyped-call"
"""Dask blocks: the picklable call that runs a kernel on one block, and task tokens.

Kept apart from the graph builders (:mod:`lazyapply.adapters.dask._chunked`) so that
both Dask modules import it, and neither imports the other back.

A block is the caller's data: ``da.from_array(a)`` stores its blocks in the graph, and
the threaded scheduler hands the kernel those very arrays, so a kernel writing into
its input would change the caller's Dask array for every later compute (and another
task's input on the same block). :class:`BlockCall` hands the kernel read-only views,
on every scheduler alike: a writing kernel fails with lazyapply's error naming the
fix (``x = x.copy()``), as on JAX, instead of changing the source silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lazyapply._caches import weak
from lazyapply._kernels import compiled_kind
from lazyapply._readonly import readonly, refuse_flat_writes

if TYPE_CHECKING:
    from lazyapply._call import KernelCall

__all__ = ["BlockCall", "kernel_token"]


class BlockCall:
    """Runs a kernel call on one block: each output is checked against the block's
    loop dimensions followed by its core shape (the call's check holds the cores).

    The kernel gets read-only views of the NumPy blocks (the module's docstring says
    why). Picklable: tasks run on ``dask.distributed`` worker processes.
    """

    __slots__ = ("call", "core_ndims", "loop_ndims", "numba")

    def __init__(
        self,
        call: KernelCall,
        loop_ndims: tuple[int, ...],
        core_ndims: tuple[int, ...] | None = None,
    ) -> None:
        self.call = call
        self.loop_ndims = loop_ndims
        # Per argument, its number of core dimensions: blockwise hands them over as
        # nested lists of blocks, merged here (a single block is not copied).
        self.core_ndims = core_ndims
        # Numba lets a kernel write through .flat of a read-only array: checked
        # before each call (the typed code of a new overload is read once).
        self.numba = compiled_kind(call.func) == "Numba" and hasattr(
            call.func, "get_call_template"
        )

    @classmethod
    def whole(cls, call: KernelCall, nargs: int) -> BlockCall:
        """The call of the default mode: one task on whole (merged) arrays."""
        return cls(call, (0,) * nargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BlockCall, (self.call, self.loop_ndims, self.core_ndims))

    @property
    def __name__(self) -> str:  # dask's funcname, for task names
        return self.call.name

    def __repr__(self) -> str:
        return f"<lazyapply block call {self.call.name} ({self.call.check.kind})>"

    def __call__(self, *blocks: Any) -> Any:
        import numpy as np

        if self.core_ndims is not None:
            blocks = tuple(
                _merge(b, n) if n else b
                for b, n in zip(blocks, self.core_ndims, strict=True)
            )
        blocks = tuple(readonly(b) if isinstance(b, np.ndarray) else b for b in blocks)
        lead = np.broadcast_shapes(
            *(
                tuple(getattr(b, "shape", ()))[:n]
                for b, n in zip(blocks, self.loop_ndims, strict=True)
            )
        )
        call = self.call
        if self.numba:
            refuse_flat_writes(call.func, blocks, call.kwargs, call.where())
        return call.run(blocks, call.kwargs, lead)


def _merge(blocks: Any, n: int) -> Any:
    """Merge the nested lists of blocks along the last ``n`` (core) axes."""
    inner = blocks
    for _ in range(n):
        if len(inner) != 1:
            break
        inner = inner[0]
    else:
        return inner  # one block: no copy
    from dask.array.core import concatenate_axes

    first = blocks
    while isinstance(first, list):
        first = first[0]
    return concatenate_axes(blocks, list(range(first.ndim - n, first.ndim)))


_FUNC_TOKENS = weak("dask: kernel tokens")


def kernel_token(func: Any) -> Any:
    """Dask's token of a kernel, computed once per kernel object if it is immutable.

    Tokenizing a function pickles it; for a Numba dispatcher or a function whose module
    attribute is a ``@lazy`` wrapper that costs hundreds of microseconds per call.
    Dask caches function tokens by identity in the same way.
    """
    from dask.base import tokenize

    from lazyapply._kernels import is_immutable

    if not is_immutable(func):  # a partial, a callable object: keys follow state
        return tokenize(func)
    try:
        return _FUNC_TOKENS[func]
    except KeyError:
        token = _FUNC_TOKENS[func] = tokenize(func)
        return token
    except TypeError:  # not weak-referenceable (e.g. a builtin): no cache
        return func
