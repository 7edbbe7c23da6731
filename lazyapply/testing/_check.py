"""``check_kernel``: run a ``@lazy`` kernel on every backend and compare with NumPy.

In the spirit of ``torch.library.opcheck``: one call in a user's test suite runs the
kernel the way each of its users would (eager libraries, Dask on several chunkings,
JAX eagerly, under ``jit`` and ``vmap``, a pickle round trip) and compares every
result with the kernel's own result on NumPy, so a declaration that would break on a
cluster or under ``jit`` fails in CI, on a laptop without a GPU.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from lazyapply._decorator import LazyFunction

from ._backends import Backend, assert_lazy, count_dask_computes, to_numpy
from ._report import CheckRow, KernelReport

__all__ = ["check_kernel"]

# Default tolerances by the result's dtype (those of ``torch.testing.assert_close``,
# loosened for float32 because JAX without x64 computes in float32 what NumPy computes
# in float64); integer and boolean results compare exactly.
_TOLERANCES = {
    np.dtype(np.float16): (1e-3, 1e-5),
    np.dtype(np.float32): (1e-5, 1e-5),
    np.dtype(np.complex64): (1e-5, 1e-5),
}
_FLOAT64_TOLERANCE = (1e-7, 1e-7)


class _Run:
    """What every run of one ``check_kernel`` call shares."""

    def __init__(
        self,
        kernel: LazyFunction[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        reference: tuple[np.ndarray, ...],
        tolerance: tuple[float | None, float | None],
    ) -> None:
        self.kernel = kernel
        self.name = kernel.__name__
        self.args = args
        self.kwargs = kwargs
        self.reference = reference
        self.multi = kernel.spec.output.multi or len(reference) > 1
        self.tolerance = tolerance
        self.report = KernelReport()

    def row(self, backend: object, mode: str, outcome: Any, detail: str = "") -> None:
        self.report.append(CheckRow(self.name, str(backend), mode, outcome, detail))

    def attempt(
        self, backend: object, mode: str, run: Callable[[], str | None]
    ) -> None:
        """Record one run: ``run`` returns what differed (or ``None``), or raises."""
        try:
            problem = run()
        except Exception as exc:  # the kernel's error is the finding: report it
            problem = _describe(exc)
        if problem is None:
            self.row(backend, mode, "ok")
        else:
            self.row(backend, mode, "FAIL", problem)

    def compare(
        self, backend: Backend, outs: Any, first: Any, *, values: bool = True
    ) -> str | None:
        """What differs between ``outs`` and the NumPy reference, or ``None``.

        ``values=False`` compares the metadata only (a Dask graph, before computing).
        """
        items = _as_tuple(outs, self.multi)
        if len(items) != len(self.reference):
            return f"returned {len(items)} output(s), NumPy gave {len(self.reference)}"
        for i, (out, ref) in enumerate(zip(items, self.reference, strict=True)):
            problem = _compare_one(
                backend, out, ref, first, self.tolerance if values else None
            )
            if problem is not None:
                where = f"output {i}: " if len(items) > 1 else ""
                return where + problem
        return None


_ERROR_LINE = re.compile(r"^\w*(Error|Exception): ")


def _describe(exc: BaseException) -> str:
    text = [ln.strip() for ln in str(exc).strip().splitlines()]
    # A callback's error arrives wrapped (JaxRuntimeError: ... Traceback ...): the
    # kernel's own error is the last "SomeError: message" line of the text.
    inner = [ln for ln in text[1:] if _ERROR_LINE.match(ln)]
    if inner:
        return inner[-1][:300]
    first = text[0] if text else ""
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(exc).__name__}: {first}"


def _as_tuple(outs: Any, multi: bool) -> tuple[Any, ...]:
    if multi and isinstance(outs, (tuple, list)):
        return tuple(outs)
    return (outs,)


@functools.cache
def _stored_dtype(backend: Backend, dtype: np.dtype[Any]) -> Any:
    # How the backend stores a NumPy dtype: JAX without x64 keeps float64 as float32.
    maker = Backend.JAX if backend is Backend.JAX_JIT else backend
    return maker.asarray(np.empty((0,), dtype)).dtype


def _compare_one(
    backend: Backend,
    out: Any,
    ref: np.ndarray,
    first: Any,
    tolerance: tuple[float | None, float | None] | None,
) -> str | None:
    """One output against its reference; ``tolerance=None``: metadata only."""
    import array_api_compat

    try:
        namespace = array_api_compat.array_namespace(out)
    except TypeError:
        return f"returned a {type(out).__name__}, not an array of the input's library"
    if namespace is not array_api_compat.array_namespace(first):
        return f"result is a {type(out).__module__} array, the input is not"
    if str(array_api_compat.device(out)) != str(array_api_compat.device(first)):
        return (
            f"result on device {array_api_compat.device(out)}, input on "
            f"{array_api_compat.device(first)}"
        )
    expected = _stored_dtype(backend, ref.dtype)
    if out.dtype != expected:
        return f"dtype {out.dtype}, NumPy gives {ref.dtype} (stored as {expected})"
    shape = tuple(out.shape)
    if not any(isinstance(s, float) and math.isnan(s) for s in shape) and (
        shape != ref.shape
    ):
        return f"shape {shape}, NumPy gives {ref.shape}"
    if tolerance is None or not backend.has_values:
        return None
    return _compare_values(to_numpy(out), ref, tolerance)


def _compare_values(
    got: np.ndarray, ref: np.ndarray, tolerance: tuple[float | None, float | None]
) -> str | None:
    if got.shape != ref.shape:
        return f"computed shape {got.shape}, NumPy gives {ref.shape}"
    rtol, atol = tolerance
    default = _TOLERANCES.get(got.dtype, _FLOAT64_TOLERANCE)
    if got.dtype.kind in "biuSUO":
        default = (0.0, 0.0)
    try:
        np.testing.assert_allclose(
            got.astype(ref.dtype, copy=False) if got.dtype.kind in "biu" else got,
            ref,
            rtol=default[0] if rtol is None else rtol,
            atol=default[1] if atol is None else atol,
            equal_nan=True,
        )
    except AssertionError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        facts = [ln for ln in lines if ln.startswith(("Mismatched", "Max"))]
        return "values differ from NumPy: " + "; ".join(facts[:3])
    return None


# --------------------------------------------------------------------------- runs
def _convert(backend: Backend, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    converted = tuple(
        backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args
    )
    first = next(c for c, a in zip(converted, args, strict=True) if a is not c)
    return converted, first


def _eager(run: _Run, backend: Backend) -> None:
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


def _jit(run: _Run, backend: Backend) -> None:
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


def _vmap(run: _Run, backend: Backend) -> None:
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
        batch = _Run(run.kernel, run.args, run.kwargs, expected, run.tolerance)
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


def _dask(run: _Run, backend: Backend) -> None:
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
            items = _as_tuple(out, run.multi)
            computed = compute(*items, scheduler="sync")  # type: ignore[no-untyped-call]
            values = tuple(computed) if run.multi else computed[0]
            return run.compare(Backend.NUMPY, values, run.reference[0])

        run.attempt(backend, f"{_mode_name(run.kernel)}, {label}", go)


def _pickle(run: _Run, original: Callable[..., Any]) -> None:
    def go() -> str | None:
        try:
            restored = pickle.loads(pickle.dumps(original))
            how = "pickle"
        except (pickle.PicklingError, AttributeError, TypeError):
            # Local kernels pickle by value: what dask.distributed does (cloudpickle).
            if "cloudpickle" not in sys.modules:
                import importlib.util

                if importlib.util.find_spec("cloudpickle") is None:
                    return "pickle failed and cloudpickle is not installed"
            import cloudpickle  # type: ignore[import-untyped]

            restored = pickle.loads(cloudpickle.dumps(original))
            how = "cloudpickle"
        out = restored(
            *(np.array(a) if isinstance(a, np.ndarray) else a for a in run.args),
            **run.kwargs,
        )
        problem = run.compare(Backend.NUMPY, out, run.reference[0])
        return None if problem is None else f"after a {how} round trip: {problem}"

    run.attempt("pickle", "round trip", go)


_RUNNERS: dict[Backend, Sequence[Callable[[_Run, Backend], None]]] = {
    Backend.JAX: (_eager, _vmap),
    Backend.JAX_JIT: (_jit,),
    Backend.DASK: (_dask,),
}


def _strict(kernel: Callable[..., Any]) -> LazyFunction[..., Any]:
    """The kernel as a ``@lazy`` function with the strict output policy."""
    if isinstance(kernel, LazyFunction):
        options = dict(kernel.options)
        eager = kernel.eager
    elif callable(kernel):
        options, eager = {}, kernel
    else:
        msg = (
            f"check_kernel: expected a @lazy kernel or a function, got "
            f"{type(kernel).__name__}; pass the decorated function itself"
        )
        raise TypeError(msg)
    return LazyFunction(eager, **{**options, "strict": True})


def _reference(
    kernel: LazyFunction[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[np.ndarray, ...]:
    """The kernel's own result on NumPy copies of the sample arguments."""
    copies = tuple(np.array(a) if isinstance(a, np.ndarray) else a for a in args)
    out = kernel.eager(*copies, **kwargs)
    items = _as_tuple(out, kernel.spec.output.multi or isinstance(out, (tuple, list)))
    return tuple(np.asarray(o) for o in items)


def _selected(backends: Iterable[Backend | str] | None) -> list[Backend]:
    if backends is None:
        return list(Backend)
    chosen = {Backend(b) if isinstance(b, str) else b for b in backends}
    return [b for b in Backend if b in chosen]


def _skip_reason(kernel: LazyFunction[..., Any], backend: Backend) -> str | None:
    reason = backend.skip_reason()
    if reason is None and kernel.spec.as_numpy and not backend.converts_to_numpy:
        reason = (
            f"as_numpy=True: {backend} arrays do not convert to NumPy implicitly "
            "(lazyapply never copies them to the host behind your back)"
        )
    return reason


def check_kernel(
    kernel: Callable[..., Any],
    /,
    *args: Any,
    backends: Iterable[Backend | str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs: Any,
) -> KernelReport:
    """Run a kernel on every installed backend and mode; compare each with NumPy.

    The conformance check of a ``@lazy`` kernel, in the spirit of
    ``torch.library.opcheck``: put one call in your test suite and a declaration that
    would break on a Dask cluster or under ``jax.jit`` fails in CI, on NumPy alone if
    need be, naming the kernel and the backend.

    Parameters
    ----------
    kernel : LazyFunction or callable
        A ``@lazy`` kernel; it runs with its own options and the strict output
        policy (``strict=True``, whatever it was declared with). A plain function is
        checked as ``lazy(kernel)``: inferred shape and dtype, whole-array mode; to
        check other options, decorate it (``check_kernel(lazy(f, dtype=...), x)``).
    *args : numpy.ndarray, Python scalar or None
        Sample arguments, small ones (a few elements per axis: every Dask run also
        uses blocks of one element). NumPy arrays are converted to each backend;
        other arguments are passed as they are.
    backends : iterable of Backend or str, optional
        Run only these backends (members of :class:`Backend` or their values, e.g.
        ``["numpy", "dask"]``). Default: every member. The pickle round trip always
        runs.
    rtol, atol : float, optional
        Tolerances of the value comparison. Default by the result's dtype: 1e-7 for
        float64, 1e-5 for float32 (JAX without x64 computes in float32), 1e-3 for
        float16; integer and boolean results compare exactly.
    **kwargs
        Keyword arguments of the kernel (``backends``, ``rtol`` and ``atol`` are
        taken by ``check_kernel``).

    Returns
    -------
    KernelReport
        One :class:`CheckRow` per run (all ``"ok"`` or ``"skip"``).

    Raises
    ------
    AssertionError
        A run failed. The message is the report's table: kernel, backend, mode,
        outcome and what differed, one line per run, the kernel's name on each.
        Also raised when the kernel fails on the NumPy sample arguments themselves.
    TypeError
        ``kernel`` is not callable, or no sample argument is a NumPy array.

    Notes
    -----
    The reference is the undecorated kernel on NumPy copies of ``args``. Each run
    must give the same number of outputs, each an array of the input's library on
    the input's device, with the reference's shape and dtype (as the backend stores
    it: JAX without x64 keeps float64 as float32) and close values.

    NumPy, NumPy read-only, array-api-strict (CPU, ``device1``), PyTorch (CPU,
        ``meta``: shape, dtype and device only, CUDA), sparse, CuPy, JAX
        The kernel runs eagerly (``as_numpy`` when it was declared so; backends that
        refuse an implicit conversion to NumPy are then skipped with the reason).
        Read-only inputs catch a kernel that writes into its arguments.
    JAX
        Also under ``jax.jit`` (the kernel must become a callback: the result inside
        the trace is a tracer) and under ``jax.vmap`` over a batch of two copies of
        the arguments (stacked on a new leading axis).
    Dask
        The kernel's mode (whole array, ``elementwise``, ``signature`` or ``depth``)
        on three chunkings: one chunk, chunks of one element, uneven chunks. Nothing
        may be computed during the call; the graph's shape and dtype must match the
        reference before computing, and the computed values after. A kernel declared
        ``elementwise`` that is not (``x - x.mean()``) fails here.
    Pickle
        The kernel survives a ``pickle`` round trip (by reference, for a
        module-level kernel) or, for a local one, a ``cloudpickle`` round trip, as
        ``dask.distributed`` sends it to workers; the copy gives the same result.

    Examples
    --------
    >>> import numpy as np
    >>> from lazyapply import lazy
    >>> from lazyapply.testing import check_kernel
    >>> @lazy(elementwise=True)
    ... def scale(x, factor):
    ...     return x * factor
    >>> report = check_kernel(scale, np.arange(6.0).reshape(2, 3), 2.0,
    ...                       backends=["numpy"])
    >>> print(report)
    kernel  backend  mode        outcome  detail
    scale   numpy    eager       ok
    scale   pickle   round trip  ok

    A declared dtype that the kernel does not return fails on NumPy already:

    >>> @lazy(dtype="float32")
    ... def liar(x):
    ...     return x * 2
    >>> check_kernel(liar, np.arange(3.0), backends=["numpy"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: check_kernel: liar failed 2 of 2 runs
    kernel  backend  mode        outcome  detail
    liar    numpy    eager       FAIL     KernelOutputError: liar (numpy): output 0 ...
    liar    pickle   round trip  FAIL     KernelOutputError: liar (numpy): output 0 ...
    """
    lazy_kernel = _strict(kernel)
    if not any(isinstance(a, np.ndarray) for a in args):
        msg = (
            f"check_kernel({lazy_kernel.__name__}): pass at least one NumPy array as a "
            "sample argument; it is converted to every backend"
        )
        raise TypeError(msg)
    tolerance = (rtol, atol)
    try:
        reference = _reference(lazy_kernel, args, kwargs)
    except Exception as exc:  # the kernel itself fails: nothing to compare with
        run = _Run(lazy_kernel, args, kwargs, (), tolerance)
        run.row("numpy", "reference", "FAIL", _describe(exc))
        raise AssertionError(_failure(run.report)) from exc
    run = _Run(lazy_kernel, args, kwargs, reference, tolerance)
    for backend in _selected(backends):
        reason = _skip_reason(lazy_kernel, backend)
        if reason is not None:
            run.row(backend, "-", "skip", reason)
            continue
        for runner in _RUNNERS.get(backend, (_eager,)):
            runner(run, backend)
    _pickle(run, kernel)
    if run.report.failures:
        raise AssertionError(_failure(run.report))
    return run.report


def _failure(report: KernelReport) -> str:
    name = report[0].kernel
    failed = len(report.failures)
    return f"check_kernel: {name} failed {failed} of {len(report)} runs\n{report}"
