"""The options of ``@lazy``: their defaults, and the one :class:`CallSpec` they make.

Validated once, when the decorator is applied (or a vjp/jvp is declared), so that a
call only hands the frozen spec to the engine.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

from lazyapply.spec import (
    INFERRED,
    STRICT_ENV,
    CallSpec,
    OutputSpec,
    check_dtype_name,
    kernel_name,
    parse_output,
)

__all__ = ["DEFAULTS", "build_spec", "check_names"]

#: The options ``@lazy`` accepts, with their defaults (those of ``lazy_apply``).
DEFAULTS: Mapping[str, Any] = types.MappingProxyType(
    {
        "shape": None,
        "dtype": None,
        "as_numpy": False,
        "xp": None,
        "elementwise": False,
        "signature": None,
        "depth": None,
        "boundary": None,
        "strict": True,
        "vjp": None,
        "jvp": None,
    }
)
_MODE_OPTIONS = ("elementwise", "signature", "depth", "boundary")


def _is_dtype_callable(dtype: object) -> bool:
    # NumPy scalar types are classes and jnp.float32 & co. carry a ``.dtype``: both are
    # callable, yet they are dtypes, not "dtype of the arguments" functions.
    return (
        callable(dtype) and not isinstance(dtype, type) and not hasattr(dtype, "dtype")
    )


def _check_dtypes(dtype: object, name: str) -> None:
    for d in dtype if isinstance(dtype, (tuple, list)) else (dtype,):
        check_dtype_name(d, name)


def build_spec(kernel: Callable[..., Any], options: Mapping[str, Any]) -> CallSpec:
    """Validate ``options`` and build the kernel's :class:`CallSpec` (once)."""
    name = kernel_name(kernel)
    shape, dtype = options["shape"], options["dtype"]
    shape_fn = shape if callable(shape) else None
    dtype_fn = dtype if _is_dtype_callable(dtype) else None
    if dtype is not None and dtype_fn is None:
        _check_dtypes(dtype, name)
    output: OutputSpec
    if shape_fn is None and dtype_fn is None:
        output = parse_output(shape, dtype, name)
    elif shape_fn is None:  # constant shape, dtype from the arguments
        output = parse_output(shape, None, name)
    elif dtype is None or dtype_fn is not None:  # shape (and dtype) from the arguments
        output = INFERRED
    else:
        # Constant dtype(s) beside a shape callable: kept as given; the number of
        # outputs is only known once the shape callable has run (evaluate_callables).
        dtypes = tuple(dtype) if isinstance(dtype, (tuple, list)) else (dtype,)
        output = OutputSpec(None, dtypes, len(dtypes) > 1)
    for rule in ("vjp", "jvp"):
        if options[rule] is not None and not callable(options[rule]):
            msg = (
                f"{name}: {rule}= must be a kernel (a callable), got "
                f"{type(options[rule]).__name__}; pass the function that computes it"
            )
            raise TypeError(msg)
    spec = CallSpec(
        name,
        output,
        bool(options["as_numpy"]),
        shape_fn=shape_fn,
        dtype_fn=dtype_fn,
        strict=bool(options["strict"]) or STRICT_ENV,
        vjp=options["vjp"],
        jvp=options["jvp"],
    )
    if any(options[k] is not None and options[k] is not False for k in _MODE_OPTIONS):
        from lazyapply.spec._modes import with_mode

        spec = with_mode(
            spec,
            kernel,
            options["elementwise"],  # with_mode rejects a non-bool
            options["signature"],
            options["depth"],
            options["boundary"],
        )
    else:  # issue 12: a ufunc/gufunc kernel brings its own mode
        from lazyapply.spec._infer_mode import with_inferred_mode

        spec = with_inferred_mode(spec, kernel)
    return spec


def check_names(options: Mapping[str, Any], kernel: Callable[..., Any] | None) -> None:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        where = "" if kernel is None else f" for {kernel_name(kernel)}"
        msg = (
            f"lazy: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}{where}; valid options are "
            f"{', '.join(DEFAULTS)} (keyword-only)"
        )
        raise TypeError(msg)
