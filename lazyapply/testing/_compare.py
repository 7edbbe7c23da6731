"""The comparison of each run with the NumPy reference, and the run's bookkeeping."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyapply._decorator import LazyFunction
from lazyapply.testing._backends import Backend, to_numpy
from lazyapply.testing._fixes import fix_for
from lazyapply.testing._report import CheckRow, KernelReport

__all__ = ["Run", "as_tuple", "describe"]

# Default tolerances by the result's dtype (those of ``torch.testing.assert_close``,
# loosened for float32 because JAX without x64 computes in float32 what NumPy computes
# in float64); integer and boolean results compare exactly.
_TOLERANCES = {
    np.dtype(np.float16): (1e-3, 1e-5),
    np.dtype(np.float32): (1e-5, 1e-5),
    np.dtype(np.complex64): (1e-5, 1e-5),
}
_FLOAT64_TOLERANCE = (1e-7, 1e-7)


class Run:
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

    def row(self, backend: object, mode: str, outcome: Any, message: str = "") -> None:
        """Record a row; a failure gets the fix that :func:`fix_for` knows."""
        fix = ""
        if outcome == "FAIL":
            options = self.kernel.options
            fix = fix_for(str(backend), mode, message, options, self.reference)
        self.report.append(
            CheckRow(self.name, str(backend), mode, outcome, message, fix)
        )

    def attempt(
        self, backend: object, mode: str, run: Callable[[], str | None]
    ) -> None:
        """Record one run: ``run`` returns what differed (or ``None``), or raises."""
        try:
            problem = run()
        except Exception as exc:  # the kernel's error is the finding: report it
            problem = describe(exc)
        if problem is None:
            self.row(backend, mode, "ok")
        else:
            self.row(backend, mode, "FAIL", problem)

    def compare(
        self, backend: Backend, outs: Any, first: Any, *, values: bool = True
    ) -> str | None:
        """What differs between ``outs`` and the NumPy reference, or ``None``.

        ``first`` is the first array argument of the run (``None``: a NumPy one), whose
        namespace and device the outputs must have. ``values=False`` compares the
        metadata only (a Dask graph, before computing).
        """
        if first is None:
            first = np.empty(0)
        items = as_tuple(outs, self.multi)
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


def describe(exc: BaseException) -> str:
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


def as_tuple(outs: Any, multi: bool) -> tuple[Any, ...]:
    if multi and isinstance(outs, (tuple, list)):
        return tuple(outs)
    return (outs,)


def _stored_dtype(backend: Backend, dtype: np.dtype[Any]) -> Any:
    # How the backend stores a NumPy dtype: JAX without x64 keeps float64 as float32.
    # Not cached: JAX's x64 flag may change between two checks.
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
