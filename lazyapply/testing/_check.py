"""``check_kernel``: run a ``@lazy`` kernel on every backend and compare with NumPy.

In the spirit of ``torch.library.opcheck``: one call in a user's test suite runs the
kernel the way each of its users would (eager libraries, Dask on several chunkings,
JAX eagerly, under ``jit`` and ``vmap``, a pickle round trip) and compares every
result with the kernel's own result on NumPy, so a declaration that would break on a
cluster or under ``jit`` fails in CI, on a laptop without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from lazyapply._decorator import LazyFunction
from lazyapply.testing._backends import Backend
from lazyapply.testing._compare import Run, as_tuple, describe
from lazyapply.testing._fixes import FIXTURE_BACKENDS
from lazyapply.testing._report import CheckFailed, KernelReport
from lazyapply.testing._runs import pickle_round_trip, run_paths

__all__ = ["check_kernel"]


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
    # A tuple or a list is several outputs, as lazyapply reads a kernel's result.
    items = as_tuple(out, kernel.spec.output.multi or isinstance(out, (tuple, list)))
    return tuple(np.asarray(o) for o in items)


def _selected(backends: Iterable[Backend | str] | None) -> list[Backend]:
    if backends is None:  # the test fixtures of lazyapply itself are opt-in
        return [b for b in Backend if b.value not in FIXTURE_BACKENDS]
    names = {b.value: b for b in Backend}
    chosen = set()
    for b in backends:
        if isinstance(b, str) and b not in names:
            msg = (
                f"check_kernel: unknown backend {b!r}; choose among "
                f"{', '.join(names)} (or Backend members)"
            )
            raise ValueError(msg)
        chosen.add(names[b] if isinstance(b, str) else b)
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
    progress: Callable[[str], None] | None = None,
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
        ``["numpy", "dask"]``). Default: every member except the two that test
        lazyapply itself, ``array_api_strict_device1`` and ``torch_meta`` (devices
        NumPy cannot read, where a kernel that calls NumPy cannot run; name them
        to run them). The pickle round trip always runs.
    rtol, atol : float, optional
        Tolerances of the value comparison. Default by the result's dtype: 1e-7 for
        float64, 1e-5 for float32 (JAX without x64 computes in float32), 1e-3 for
        float16; integer and boolean results compare exactly.
    progress : callable, optional
        Called with each backend's name before its runs, skipped backends aside
        (``python -m lazyapply check`` prints a line per backend with it).
    **kwargs
        Keyword arguments of the kernel (``backends``, ``rtol``, ``atol`` and
        ``progress`` are taken by ``check_kernel``).

    Returns
    -------
    KernelReport
        One :class:`CheckRow` per run (all ``"ok"`` or ``"skip"``): kernel, backend,
        mode, outcome, message and fix; ``report.records()`` gives them as dicts.

    Raises
    ------
    AssertionError
        A run failed (a :class:`CheckFailed`, whose ``report`` holds the rows). The
        message is the report's table: kernel, backend, mode, outcome and what
        differed with the fix when it is known, one line per run, the kernel's name
        on each. Also raised when the kernel fails on the NumPy sample arguments
        themselves.
    TypeError
        ``kernel`` is not callable, or no sample argument is a NumPy array.

    Notes
    -----
    The runs are the paths of :data:`~lazyapply.testing.PATHS` that take the kernel
    as declared (one row per path and backend; three per Dask mode). The reference
    is the undecorated kernel on NumPy copies of ``args``. Each run must give the
    same number of outputs, each an array of the input's library on the input's
    device, with the reference's shape and dtype (as the backend stores
    it: JAX without x64 keeps float64 as float32) and close values.

    A kernel that returns a tuple or a list returns several outputs, as lazyapply
    reads it: declare one shape (or dtype) per output, or a ``signature`` with
    several outputs, for Dask and ``jax.jit`` to know them before the kernel runs.

    NumPy, NumPy read-only, array-api-strict (CPU; ``device1`` if named), PyTorch
        (CPU, CUDA; ``meta`` if named: shape, dtype and device only), sparse, CuPy, JAX
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
    PyTorch (CPU, CUDA)
        Also with tensors that require grad (one autograd node, whose backward runs
        the declared vjp; an ``as_numpy`` kernel without a vjp is left out), under
        ``torch.func.vmap`` over a batch of two copies (stacked on the first axis,
        or the last for every second tensor argument: every output, each batch
        element) and under ``torch.compile(fullgraph=True, backend="aot_eager")``:
        the automatic custom op with its fake implementation, traced as Inductor
        would. NumPy code without ``as_numpy`` fails under ``vmap`` (NumPy cannot
        read torch.func's batched tensors); the row says to declare it.
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
    lazyapply.testing.CheckFailed: check_kernel: liar failed 2 of 2 runs
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
        run = Run(lazy_kernel, args, kwargs, (), tolerance)
        run.row("numpy", "reference", "FAIL", describe(exc))
        raise CheckFailed(run.report) from exc
    run = Run(lazy_kernel, args, kwargs, reference, tolerance)
    for backend in _selected(backends):
        reason = _skip_reason(lazy_kernel, backend)
        if reason is not None:
            run.row(backend, "-", "skip", reason)
            continue
        if progress is not None:
            progress(str(backend))
        run_paths(run, backend)
    if progress is not None:
        progress("pickle")
    pickle_round_trip(run, kernel if isinstance(kernel, LazyFunction) else lazy_kernel)
    if run.report.failures:
        raise CheckFailed(run.report)
    return run.report
