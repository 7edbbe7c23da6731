"""The one spec builder, for ``@lazy`` and ``lazy_apply`` alike.

:func:`build_spec` validates a full set of options and makes the frozen
:class:`CallSpec`: ``@lazy`` calls it once, when the decorator is applied;
``lazy_apply`` calls :func:`apply_spec`, which splits its keywords into options and
the kernel's, and caches the spec by the
:func:`~lazyapply.spec._static.static_key` of its options (so ``shape=(True,)`` is
refused whatever was called before, and ``boundary=0.0``/``-0.0`` never share a
spec). Both give the same errors for the same bad options. The mode a ufunc or gufunc
kernel implies is added per kernel by :func:`with_implied_mode`.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from lazyapply._caches import bounded, weak
from lazyapply._errors import SpecError
from lazyapply._kernels import implied_mode
from lazyapply.spec import (
    INFERRED,
    STRICT_ENV,
    CallSpec,
    OutputSpec,
    check_dtype_name,
    kernel_name,
    parse_output,
)
from lazyapply.spec._keywords import DEFAULTS, KERNEL_FIRST, kernel_keywords
from lazyapply.spec._static import Unkeyable, static_key

__all__ = [
    "APPLY_DEFAULTS",
    "DEFAULTS",
    "PLAIN_SPECS",
    "SPECS",
    "apply_spec",
    "build_spec",
    "derive_spec",
    "immutable",
    "rule_spec",
    "with_implied_mode",
    "with_mode",
]

#: ``lazy_apply``'s defaults: not strict, as the reference.
APPLY_DEFAULTS: Mapping[str, Any] = types.MappingProxyType(
    {**DEFAULTS, "strict": False}
)
_MODE_OPTIONS = ("elementwise", "signature", "depth", "boundary")


def _is_dtype_callable(dtype: object) -> bool:
    # NumPy scalar types are classes and jnp.float32 & co. carry a ``.dtype``: both are
    # callable, yet they are dtypes, not "dtype of the arguments" functions.
    return (
        callable(dtype) and not isinstance(dtype, type) and not hasattr(dtype, "dtype")
    )


def _check_dtypes(dtype: object, name: str) -> None:
    many = isinstance(dtype, (tuple, list))
    for i, d in enumerate(cast("Sequence[Any]", dtype) if many else (dtype,)):
        if _is_dtype_callable(d):
            msg = (
                f"{name}: dtype= lists a callable ({getattr(d, '__name__', d)!r}) at "
                f"position {i}; a list holds dtypes only. Give one callable that "
                "returns every output's dtype, e.g. dtype=lambda x: (x.dtype, "
                "'int64')"
            )
            raise SpecError(msg)
        check_dtype_name(d, name)


def _signature_outputs(signature: object) -> int | None:
    """The number of outputs a signature string declares (``None``: no signature)."""
    if not isinstance(signature, str) or "->" not in signature:
        return None
    return max(signature.split("->", 1)[1].count("("), 1)


def build_spec(
    kernel: Callable[..., Any], options: Mapping[str, Any], *, name: str | None = None
) -> CallSpec:
    """Validate ``options`` (every key of :data:`DEFAULTS`) and build the spec.

    ``name`` is the spec's name (``@lazy``: the kernel's; ``lazy_apply``: ``""``,
    named at each call); messages always name the kernel.

    Raises
    ------
    SpecError
        A malformed shape or mode, an unknown dtype name, a callable inside a list
        of dtypes.
    TypeError
        A vjp/jvp that is not callable.
    """
    spec = _build(kernel, options, kernel_name(kernel) if name is None else name)
    return with_implied_mode(spec, kernel)


def _build(
    kernel: Callable[..., Any], options: Mapping[str, Any], name: str
) -> CallSpec:
    """The kernel-independent part of the spec (``kernel`` names errors only)."""
    where = name or kernel_name(kernel)
    shape, dtype = options["shape"], options["dtype"]
    shape_fn = shape if callable(shape) else None
    dtype_fn = dtype if _is_dtype_callable(dtype) else None
    if dtype is not None and dtype_fn is None:
        _check_dtypes(dtype, where)
    nout = _signature_outputs(options["signature"])
    output: OutputSpec
    if shape_fn is None and dtype_fn is None:
        output = parse_output(shape, dtype, where, nout=nout)
    elif shape_fn is None:  # constant shape, dtype from the arguments
        output = parse_output(shape, None, where, nout=nout)
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
                f"{where}: {rule}= must be a kernel (a callable), got "
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
        spec = with_mode(
            spec,
            kernel,
            options["elementwise"],  # with_mode rejects a non-bool
            options["signature"],
            options["depth"],
            options["boundary"],
        )
    return spec


# ------------------------------------------------------------------ lazy_apply
_PLAIN = (
    CallSpec("", strict=STRICT_ENV),
    CallSpec("", as_numpy=True, strict=STRICT_ENV),
)
#: The specs of ``lazy_apply`` calls without options (``[as_numpy]``), for a Python
#: function (no mode to imply): read straight on the hot path.
PLAIN_SPECS = _PLAIN
#: Specs by the static key of their options. Its ``last`` slot holds the last
#: call's ``(func, shape, dtype, as_numpy, option names, option values, spec)``,
#: matched by identity on ``lazy_apply``'s hot path (see :func:`apply_spec`).
SPECS = bounded("spec: lazy_apply specs by option key", 512)
_IMMUTABLE = (type(None), int, str)


def immutable(value: Any) -> bool:
    """A value that cannot change behind an identity match: ``None``, a name, a flat
    tuple of sizes or names, a dtype object of any library, a number, a function;
    never a list, a dict, a set, an array or an object keyed by its fields.

    Called when a spec is stored for identity matching (off the hot path): the
    object's :func:`~lazyapply.spec._static.static_key` decides, so that any value
    keyed by identity (array-api-strict's dtypes, say) or by an immutable value
    (NumPy dtypes and scalars) qualifies.
    """
    t = type(value)
    if t is tuple:
        return all(type(v) in _IMMUTABLE for v in value)
    if (
        isinstance(value, (tuple, list, dict, set))
        or hasattr(t, "__dataclass_fields__")
        or hasattr(t, "__static_key__")
    ):
        return False  # keyed by contents that may change
    try:
        static_key(value)
    except (Unkeyable, RecursionError):  # an array
        return False
    return True


def apply_spec(
    func: Callable[..., Any],
    shape: Any,
    dtype: Any,
    as_numpy: bool,
    kwargs: dict[str, Any],
) -> tuple[CallSpec, dict[str, Any]]:
    """The spec of a ``lazy_apply`` call and the keywords its kernel gets.

    ``kwargs`` are the call's other keywords: the options among them (see
    :func:`~lazyapply.spec._keywords.kernel_keywords`) go into the spec, cached by
    their static key, and the rest to the kernel. The call is remembered in
    ``SPECS.last`` when every value in it can be matched by identity (immutable, never
    equal across types), so the same call again skips this function; the kernel is
    part of that match (its parameters decide which keywords are options, and a
    ufunc or gufunc implies a mode). Errors are those of :func:`build_spec`.
    """
    options: dict[str, Any] = {}
    rest = kwargs
    if kwargs and not KERNEL_FIRST.isdisjoint(kwargs):
        options, rest = kernel_keywords(func, kwargs)
    values = tuple(options.values())
    last = SPECS.last  # (the caller matched it on its keywords, unsplit)
    if (
        func is last[0]
        and shape is last[1]
        and dtype is last[2]
        and as_numpy is last[3]
        and tuple(options) == last[4]
        and all(map(operator.is_, values, last[5]))
    ):  # options and keywords for the kernel: the same options as the last call
        return last[6], rest
    if not options and shape is None and dtype is None:
        spec = _PLAIN[1 if as_numpy else 0]  # no option at all: no key to build
    else:
        spec = _cached(func, shape, dtype, as_numpy, options)
    if type(func) is not types.FunctionType:
        spec = with_implied_mode(spec, func)
    if immutable(shape) and immutable(dtype) and all(map(immutable, values)):
        SPECS.last = (func, shape, dtype, as_numpy, tuple(options), values, spec)
    return spec, rest


def _cached(
    func: Callable[..., Any],
    shape: Any,
    dtype: Any,
    as_numpy: bool,
    options: dict[str, Any],
) -> CallSpec:
    full = {**APPLY_DEFAULTS, **options, "shape": shape, "dtype": dtype}
    full["as_numpy"] = as_numpy
    if full["strict"] is None:
        full["strict"] = False
    try:
        key = static_key(tuple(full.values()))
    except (Unkeyable, RecursionError):  # an array among the options: no cache
        return _build(func, full, "")
    spec = SPECS.get(key)
    if spec is None:
        spec = SPECS.put(key, _build(func, full, ""))
    return cast(CallSpec, spec)


# ------------------------------------------------------------ per kernel
_IMPLIED = weak("spec: mode implied by a ufunc/gufunc kernel")
_IMPLIED_STRONG = bounded("spec: mode implied (kernels without weakref)", 256)


def with_implied_mode(spec: CallSpec, kernel: Callable[..., Any]) -> CallSpec:
    """``spec`` with the mode ``kernel`` implies (a ufunc, a gufunc), if none given.

    Inference is a default, never an error: if the implied mode contradicts the
    declared outputs (``shape=`` unlike a gufunc's), the whole-array mode is kept.
    """
    if type(kernel) is types.FunctionType or not spec.mode.is_default:
        return spec
    mode = implied_mode(kernel)
    if mode is None:
        return spec
    try:
        per_kernel = _IMPLIED.get(kernel)
        store: Any = _IMPLIED
    except TypeError:  # NumPy ufuncs cannot be weakly referenced; they live forever
        per_kernel, store = _IMPLIED_STRONG.get(kernel), None
    if per_kernel is not None and spec in per_kernel:
        return per_kernel[spec]  # type: ignore[no-any-return]
    try:
        out = with_mode(spec, kernel, mode[0], mode[1])
    except SpecError:
        out = spec
    # SciPy's special functions come with derivatives (only once SciPy is in play).
    if {"scipy.special", "lazyapply.special"} & sys.modules.keys():
        from lazyapply.special import declared_rules

        declared = out.vjp is not None or out.jvp is not None
        rules = None if declared else declared_rules(kernel)
        if rules is not None:
            out = derive_spec(out, **rules)
    if per_kernel is None:
        per_kernel = {}
        if store is None:
            _IMPLIED_STRONG.put(kernel, per_kernel)
        else:
            store[kernel] = per_kernel
    if len(per_kernel) > 64:
        per_kernel.clear()
    per_kernel[spec] = out
    return out


# ------------------------------------------------------ specs made from other specs
def derive_spec(spec: CallSpec, **changes: Any) -> CallSpec:
    """``spec`` with some fields changed: the one way a spec is made from another.

    A bound method's shape/dtype callables, a kernel without its rules (the primal
    of a custom derivative), a vjp's own vjp, a batched op's outputs, a mode. A
    changed rule is checked as :func:`build_spec` checks the option.
    """
    for rule in ("vjp", "jvp"):
        value = changes.get(rule)
        if value is not None and not callable(value):
            msg = f"{spec.name or 'kernel'}: {rule}= must be a callable, got {value!r}"
            raise TypeError(msg)
    return dataclasses.replace(spec, **changes)


def rule_spec(
    name: str,
    output: OutputSpec,
    as_numpy: bool,
    *,
    shape_fn: Callable[..., Any] | None = None,
    dtype_fn: Callable[..., Any] | None = None,
) -> CallSpec:
    """The spec of a derivative kernel (a vjp call, a vjp op): strict, whole-array,
    with the conversions of the kernel it differentiates (``as_numpy``)."""
    return CallSpec(
        name, output, as_numpy, shape_fn=shape_fn, dtype_fn=dtype_fn, strict=True
    )


def with_mode(
    spec: CallSpec,
    kernel: Callable[..., Any],
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
) -> CallSpec:
    """``spec`` with its execution mode set, after validating the options.

    Raises
    ------
    SpecError
        As :func:`lazyapply.spec._modes.parse_mode`: contradicting or malformed
        modes, declared outputs unlike the signature's. Messages name the kernel.
    """
    from lazyapply.spec._modes import parse_mode

    mode, output = parse_mode(spec, kernel, elementwise, signature, depth, boundary)
    return derive_spec(spec, mode=mode, output=output)
