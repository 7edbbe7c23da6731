"""The runs of ``check_kernel``: one function per way of running a kernel."""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from lazyapply._decorator import LazyFunction
from lazyapply.testing._backends import Backend
from lazyapply.testing._compare import Run, as_tuple
from lazyapply.testing._laziness import assert_lazy, count_dask_computes

__all__ = ["RUNNERS", "eager", "pickle_round_trip"]


def _convert(backend: Backend, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    converted = tuple(
        backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args
    )
    first = next(c for c, a in zip(converted, args, strict=True) if a is not c)
    return converted, first


def eager(run: Run, backend: Backend) -> None:
    """Run the kernel on the backend's arrays, now (``as_numpy`` if declared)."""
    mode = "as_numpy" if run.kernel.spec.as_numpy else "eager"

    def go() -> str | None:
        args, first = _convert(backend, run.args)
        return run.compare(backend, run.kernel(*args, **run.kwargs), first)

    run.attempt(backend, mode, go)


@contextlib.contextmanager
def _quiet_callbacks() -> Iterator[None]:
    # JAX logs a failing callback's traceback before raising it; the error is in the
    # report already, so the log would only repeat it.
    logger = logging.getLogger("jax._src.callback")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _jit(run: Run, backend: Backend) -> None:
    import jax

    def go() -> str | None:
        args, first = _convert(backend, run.args)

        def body(*arrays: Any) -> Any:
            out = run.kernel(*arrays, **run.kwargs)
            assert_lazy(out)  # the kernel became a callback, it did not run now
            return out

        with _quiet_callbacks():
            out = jax.jit(body)(*args)
        return run.compare(backend, out, first)

    run.attempt(backend, "jit", go)


def _vmap(run: Run, backend: Backend) -> None:
    import jax
    import jax.numpy as jnp

    def go() -> str | None:
        args, first = _convert(backend, run.args)
        axes = tuple(
            0 if a is not b else None for a, b in zip(args, run.args, strict=True)
        )
        stacked = tuple(
            jnp.stack([a, a]) if ax == 0 else a
            for a, ax in zip(args, axes, strict=True)
        )
        batched = jax.vmap(functools.partial(run.kernel, **run.kwargs), in_axes=axes)
        with _quiet_callbacks():
            out = batched(*stacked)
        expected = tuple(np.stack([r, r]) for r in run.reference)
        batch = Run(run.kernel, run.args, run.kwargs, expected, run.tolerance)
        return batch.compare(backend, out, first)

    run.attempt(backend, "vmap, batch of 2", go)


def _uneven(n: int) -> tuple[int, ...]:
    # Sizes 1, 2, 3... and what is left: 6 -> (1, 2, 3), 5 -> (1, 2, 2), 2 -> (1, 1).
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(len(sizes) + 1, n - sum(sizes)))
    return tuple(sizes) or (0,)


#: The chunkings of every Dask run: one block, blocks of one element, uneven blocks.
_CHUNKINGS: dict[str, Callable[[tuple[int, ...]], Any]] = {
    "one chunk": lambda shape: shape,
    "chunks of 1": lambda shape: tuple(1 if s else 0 for s in shape),
    "uneven chunks": lambda shape: tuple(_uneven(s) for s in shape),
}


def _mode_name(kernel: LazyFunction[..., Any]) -> str:
    mode = kernel.spec.mode
    if mode.elementwise:
        return "elementwise"
    if mode.signature is not None:
        return f"signature {mode.signature}"
    if mode.depth is not None:
        return f"overlap depth={kernel.options['depth']!r}"
    return "whole array"


def _dask(run: Run, backend: Backend) -> None:
    import dask.array as da
    from dask.base import compute

    for label, chunking in _CHUNKINGS.items():

        def go(chunking: Callable[[tuple[int, ...]], Any] = chunking) -> str | None:
            args = tuple(
                da.from_array(a.copy(), chunks=chunking(a.shape))  # type: ignore[no-untyped-call]
                if isinstance(a, np.ndarray)
                else a
                for a in run.args
            )
            first = next(a for a in args if isinstance(a, da.Array))
            with count_dask_computes() as counter:
                out = run.kernel(*args, **run.kwargs)
            if counter.count:
                return f"Dask computed {counter.count} time(s) while building the graph"
            assert_lazy(out)
            problem = run.compare(backend, out, first, values=False)
            if problem is not None:
                return f"graph metadata: {problem}"
            items = as_tuple(out, run.multi)
            computed = compute(*items, scheduler="sync")  # type: ignore[no-untyped-call]
            values = tuple(computed) if run.multi else computed[0]
            return run.compare(Backend.NUMPY, values, None)

        run.attempt(backend, f"{_mode_name(run.kernel)}, {label}", go)


def pickle_round_trip(run: Run, original: Callable[..., Any]) -> None:
    """Pickle the kernel (by value with cloudpickle if need be) and run the copy."""
    import importlib.util

    try:
        payload, how = pickle.dumps(original), "pickle"
    except (pickle.PicklingError, AttributeError, TypeError):
        # A local kernel pickles by value only: what dask.distributed does with it.
        if importlib.util.find_spec("cloudpickle") is None:
            reason = "not picklable by reference, and cloudpickle is not installed"
            run.row("pickle", "round trip", "skip", reason)
            return
        import cloudpickle  # type: ignore[import-untyped]

        payload, how = cloudpickle.dumps(original), "cloudpickle"

    def go() -> str | None:
        restored = pickle.loads(payload)
        args = (np.array(a) if isinstance(a, np.ndarray) else a for a in run.args)
        problem = run.compare(Backend.NUMPY, restored(*args, **run.kwargs), None)
        return None if problem is None else f"after a {how} round trip: {problem}"

    run.attempt("pickle", "round trip", go)


RUNNERS: dict[Backend, Sequence[Callable[[Run, Backend], None]]] = {
    Backend.JAX: (eager, _vmap),
    Backend.JAX_JIT: (_jit,),
    Backend.DASK: (_dask,),
}
