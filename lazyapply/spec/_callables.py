"""Shape and dtype given as callables of the call's arguments (for ``@lazy``)."""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import CallSpec, OutputSpec, parse_output

__all__ = ["evaluate_callables"]


def evaluate_callables(
    spec: CallSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> OutputSpec:
    """Call ``spec.shape_fn``/``spec.dtype_fn`` on the real arguments and validate.

    The callables see the caller's arrays: inside ``jax.jit`` their shapes are static,
    on Dask an unknown size is NaN (read as ``None``).
    """
    declared = spec.output
    if spec.shape_fn is not None:
        shape = _call(spec.shape_fn, "shape", name, args, kwargs)
        if shape is None:
            msg = f"{name}: the shape callable returned None; return a tuple of sizes"
            raise SpecError(msg)
    elif declared.shapes is None:
        shape = None
    else:
        shape = list(declared.shapes) if declared.multi else declared.shapes[0]
    if spec.dtype_fn is not None:
        dtype = _call(spec.dtype_fn, "dtype", name, args, kwargs)
    elif declared.dtypes is None:
        dtype = None
    else:
        # Beside a shape callable, several constant dtypes mark several outputs
        # (the decorator sets ``multi`` from their count).
        dtype = declared.dtypes if declared.multi else declared.dtypes[0]
    sig = spec.mode.signature
    return parse_output(
        shape, dtype, name, nout=None if sig is None else len(sig.outputs)
    )


def _call(fn: Any, what: str, name: str, args: Any, kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        msg = (
            f"{name}: the {what} callable {getattr(fn, '__name__', fn)!r} raised "
            f"{type(exc).__name__}: {exc}; it is called with the kernel's arguments "
            f"and must return the output {what}"
        )
        raise SpecError(msg) from exc
