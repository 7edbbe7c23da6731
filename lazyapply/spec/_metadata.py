"""The one metadata function: a call's output shapes and dtypes, concrete or symbolic.

Eager strict checks, Dask's meta, JAX's ``ShapeDtypeStruct`` and torch's fake
implementation all ask :func:`layout`, so a bad ``shape=``/``dtype=`` or a raising
shape callable gives the same :class:`~lazyapply.SpecError` on every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazyapply.spec import CallSpec, OutputSpec, Shape, arg_shape

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter

__all__ = ["Layout", "layout", "output_for_call"]


def output_for_call(
    spec: CallSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> OutputSpec:
    """The call's :class:`OutputSpec`, evaluating shape/dtype callables if any."""
    if spec.shape_fn is None and spec.dtype_fn is None:
        return spec.output
    from lazyapply.spec._callables import evaluate_callables

    return evaluate_callables(spec, name, args, kwargs)


@dataclass(frozen=True)
class Layout:
    """A deferred call's outputs: full shapes, dtypes, and its chunk-wise geometry.

    ``loop_ndims`` (each argument's number of loop dimensions) and ``cores`` (each
    output's core shape) are set for chunk-wise modes only.
    """

    shapes: tuple[Shape, ...]
    dtypes: tuple[Any, ...]
    multi: bool
    declared: tuple[bool, bool]
    loop_ndims: tuple[int, ...] | None = None
    cores: tuple[Shape, ...] | None = None


def layout(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
    name: str,
) -> Layout:
    ns = xp if xp is not None else adapter.namespace(first)
    output = output_for_call(spec, name, args, kwargs)
    declared = (output.shapes is not None, output.dtypes is not None)
    loop_ndims = cores = None
    if not spec.mode.is_default:
        from lazyapply.spec._modes import mode_output, mode_output_shapes

        output = mode_output(spec.mode.signature, output, name)
        shapes, loop_ndims, cores = mode_output_shapes(
            spec.mode,
            output,
            [arg_shape(a) for a in args],
            name,
            adapter.label(first),
        )
        output = OutputSpec(shapes, output.dtypes, output.multi)
    shapes, dtypes = adapter.infer_output(output, args, ns, name)
    dtypes = tuple(adapter.canonical(d) for d in dtypes)
    return Layout(shapes, dtypes, output.multi, declared, loop_ndims, cores)
