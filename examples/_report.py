"""Shared reporting helpers for the examples: time a call, check a result, print a line.

Each example prints one line per check, ``OK   <label>`` or ``FAIL <label>`` followed
by the result's type and the median time per call, and ``SKIP <label> <reason>`` where
a library is missing; ``tests/test_examples.py`` reads these lines. The examples run
as scripts, with their own folder on ``sys.path``, and import this module as
``_report``. Backend knowledge (is a library usable here, how to read a result back as
NumPy, counting Dask computes) comes from :mod:`lazyapply.testing`, the vocabulary the
project's tests use too.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from lazyapply.testing import Backend, count_dask_computes, to_numpy

__all__ = [
    "Layout",
    "check",
    "count_dask_computes",
    "failures",
    "finish",
    "installed",
    "report",
    "skip",
    "timed",
]

failures: list[str] = []
"""The labels of the checks that failed so far, in order."""


class Layout(NamedTuple):
    """Column widths of a printed check line.

    Attributes
    ----------
    label : int
        Width of the label column.
    kind : int
        Width of the result type column.
    time : int
        Width of the time column (the number, one decimal, before ``µs``).
    """

    label: int = 42
    kind: int = 22
    time: int = 9


_BACKENDS = {b.value: b for b in Backend}


def installed(module: str) -> bool:
    """Whether ``module`` can be used here.

    Parameters
    ----------
    module : str
        A backend's name (``"jax"``, ``"dask"``...: asked of
        :meth:`lazyapply.testing.Backend.skip_reason`, so ``"cupy"`` also needs a
        GPU) or any other top-level module name, e.g. ``"Cython"``.

    Returns
    -------
    bool
        True if the backend can run, or the module is found on the import path.
    """
    backend = _BACKENDS.get(module)
    if backend is not None:
        return backend.skip_reason() is None
    return importlib.util.find_spec(module) is not None


def timed(fn: Callable[[], Any], repeat: int = 20) -> tuple[Any, float]:
    """Call ``fn`` once to warm up, then time ``repeat`` further calls.

    Parameters
    ----------
    fn : callable
        The call to time, without arguments.
    repeat : int, default 20
        How many calls are timed after the warm-up call.

    Returns
    -------
    result : Any
        What the warm-up call returned.
    us : float
        The median time per call, in microseconds.
    """
    out = fn()  # warm-up: compiles (Numba, jax.jit) outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)) * 1e6


def report(
    ok: bool,
    label: str,
    kind: str,
    us: float,
    *,
    failure: str | None = None,
    layout: Layout = Layout(),  # noqa: B008 (an immutable NamedTuple)
) -> None:
    """Print one ``OK`` or ``FAIL`` line and record a failure.

    Parameters
    ----------
    ok : bool
        Whether the check passed.
    label : str
        What was checked, printed after the status.
    kind : str
        The result's type, as printed.
    us : float
        The time per call, in microseconds.
    failure : str, optional
        The name recorded in `failures` if the check failed; ``label`` by default.
    layout : Layout, optional
        The column widths.
    """
    status = "OK  " if ok else "FAIL"
    print(
        f"{status} {label:<{layout.label}} {kind:<{layout.kind}} "
        f"{us:{layout.time}.1f} µs"
    )
    if not ok:
        failures.append(label if failure is None else failure)


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__.split('.')[0]}.{kind.__name__}"


def check(
    label: str,
    got: Any,
    expected: Any,
    us: float,
    rtol: float,
    *,
    equal_nan: bool = False,
    layout: Layout = Layout(),  # noqa: B008 (an immutable NamedTuple)
) -> None:
    """Compare a result with the expected values and print the check's line.

    Parameters
    ----------
    label : str
        What was checked, printed after the status.
    got : Any
        The result: one array (of any library), or a tuple of arrays for a routine
        with several outputs, compared element by element with ``expected``.
    expected : Any
        The expected NumPy array, or a tuple of them when ``got`` is a tuple.
    us : float
        The time per call, in microseconds.
    rtol : float
        Relative and absolute tolerance of the comparison.
    equal_nan : bool, default False
        Whether NaNs in the same places compare equal.
    layout : Layout, optional
        The column widths.
    """
    if isinstance(got, tuple):
        kind = f"{len(got)} x {_type_name(got[0])}"
        pairs = list(zip(got, expected, strict=True))
    else:
        kind = _type_name(got)
        pairs = [(got, expected)]
    ok = all(
        np.allclose(to_numpy(g), e, rtol=rtol, atol=rtol, equal_nan=equal_nan)
        for g, e in pairs
    )
    report(ok, label, kind, us, layout=layout)


def skip(label: str, reason: str, *, width: int = 42) -> None:
    """Print a ``SKIP`` line.

    Parameters
    ----------
    label : str
        What is skipped, e.g. the missing library.
    reason : str
        Why, printed after the label.
    width : int, default 42
        Width of the label column.
    """
    print(f"SKIP {label:<{width}} {reason}")


def finish() -> int:
    """Print the summary line and return the example's exit status.

    Returns
    -------
    int
        1 after printing ``FAILED: <labels>`` if a check failed, otherwise 0 after
        printing ``all checks passed``.
    """
    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0
