"""The runs of ``check_kernel``: each path of the matrix, compared with NumPy."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyapply.testing._backends import Backend
from lazyapply.testing._compare import Run, as_tuple, describe
from lazyapply.testing._paths import PATHS, Path

__all__ = ["pickle_round_trip", "run_path", "run_paths"]


def run_paths(run: Run, backend: Backend) -> None:
    """Every path of :data:`~lazyapply.testing.PATHS` that takes the kernel."""
    for path in PATHS:
        if backend in path.backends and path.takes(run.kernel) is None:
            run_path(run, path, backend)


def run_path(run: Run, path: Path, backend: Backend) -> None:
    """One row per variant of ``path`` (Dask: per chunking): ok, FAIL or skip."""
    reason = path.skip_reason(backend, run.kernel)
    if reason is not None:
        run.row(backend, path.label(run.kernel), "skip", reason)
        return
    for variant in path.variants:
        mode = path.label(run.kernel, variant)
        try:
            problem = _once(run, path, backend, variant)
        except Exception as exc:  # the kernel's error is the finding: report it
            problem = describe(exc)
        if problem is None:
            taken = path.taken(run.kernel)  # same values, another path: say so
            run.row(backend, mode, "ok", "" if taken is None else f"took {taken}")
        else:
            run.row(backend, mode, "FAIL", problem)


def _once(run: Run, path: Path, backend: Backend, variant: str) -> str | None:
    args = path.arrays(backend, run.args, variant)
    first = next(a for a, s in zip(args, run.args, strict=True) if a is not s)
    out = path.call(run.kernel, backend, *args, **run.kwargs)
    expected = path.expected(run.reference)
    check = Run(run.kernel, run.args, run.kwargs, expected, run.tolerance)
    if backend is not Backend.DASK:
        return check.compare(backend, out, first)
    from dask.base import compute

    problem = check.compare(backend, out, first, values=False)
    if problem is not None:
        return f"graph metadata: {problem}"
    items = as_tuple(out, run.multi)
    computed = compute(*items, scheduler="sync")  # type: ignore[no-untyped-call]
    return check.compare(
        Backend.NUMPY, tuple(computed) if run.multi else computed[0], None
    )


def pickle_round_trip(run: Run, original: Callable[..., Any]) -> None:
    """Pickle the kernel (by value with cloudpickle if need be) and run the copy."""
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
