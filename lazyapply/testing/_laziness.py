"""Laziness assertions: count Dask graph executions, check that a result is lazy."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ComputeCounter", "assert_lazy", "count_dask_computes"]


class ComputeCounter:
    """How many times Dask executed a graph; made by :func:`count_dask_computes`.

    Attributes
    ----------
    count : int
        Graph executions so far (``compute``, ``persist``, ``np.asarray``...).
    """

    def __init__(self) -> None:
        self.count = 0


class count_dask_computes:  # lower case: used like a function
    """Count every Dask graph execution inside a ``with`` block.

    Installs a counting scheduler (a wrapper of the synchronous one) for the block, so
    any ``compute``, ``persist`` or implicit conversion is seen. Use it to assert that
    a lazy call computed nothing while it built its graph.

    Examples
    --------
    >>> import dask.array as da  # doctest: +SKIP
    >>> with count_dask_computes() as counter:  # doctest: +SKIP
    ...     y = da.ones(4, chunks=2) + 1
    >>> counter.count  # doctest: +SKIP
    0
    """

    def __enter__(self) -> ComputeCounter:
        import dask.config
        from dask.local import get_sync

        counter = ComputeCounter()

        def scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return get_sync(dsk, keys, **kwargs)

        self._cfg = dask.config.set(scheduler=scheduler)
        self._cfg.__enter__()  # type: ignore[no-untyped-call]
        return counter

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cfg.__exit__(None, None, None)  # type: ignore[no-untyped-call]


def assert_lazy(result: Any) -> None:
    """Assert that ``result`` (or each item of a tuple of results) is lazy.

    Lazy means a Dask collection (not computed yet) or a JAX tracer (inside a JAX
    transformation such as ``jax.jit``): the kernel has not run during the call.

    Parameters
    ----------
    result : Any
        One result, or a tuple or list of results.

    Raises
    ------
    AssertionError
        An item is a concrete array; the message names its type.
    """
    items = result if isinstance(result, (tuple, list)) else (result,)
    for item in items:
        if "dask" in sys.modules:
            from dask.base import is_dask_collection

            if is_dask_collection(item):
                continue
        if "jax" in sys.modules:
            from jax.core import Tracer

            if isinstance(item, Tracer):
                continue
        kind = type(item)
        msg = (
            f"expected a lazy result (a Dask collection or a JAX tracer), got "
            f"{kind.__module__}.{kind.__qualname__}: the kernel ran during the call"
        )
        raise AssertionError(msg)
