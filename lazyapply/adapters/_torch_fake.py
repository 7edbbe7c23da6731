"""Output metadata of a kernel's custom op: the fake implementation, and its check.

:func:`fake_outputs` evaluates the declared ``shape``/``dtype`` (or their callables)
on the op's arguments, fake or real, without ``int()`` on a size, so symbolic sizes
stay symbolic. :func:`run_checked` runs the kernel (the plain eager path) and checks
every output against that metadata: a compiled graph relies on it, so a mismatch is a
:class:`~lazyapply.KernelOutputError`, never a silently wrong tensor.
"""

from __future__ import annotations

from typing import Any

from lazyapply._errors import KernelOutputError, SpecError
from lazyapply._spec import CallSpec, resolve_dtype

__all__ = ["fake_outputs", "run_checked"]

# (spec, site arguments' metadata) -> expected (shapes, dtypes) of real calls.
_EXPECTED: dict[Any, tuple[list[Any], list[Any]]] = {}


def fake_outputs(
    spec: CallSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[Any]]:
    """Output shapes and torch dtypes, from the declaration and the (fake) arguments.

    Sizes stay symbolic (no ``int()``): the shape callables see the fake tensors.
    """
    import array_api_compat.torch as xp
    import torch

    output = spec.output
    shapes: Any = output.shapes
    dtypes: Any = output.dtypes
    if spec.shape_fn is not None:
        shape = spec.shape_fn(*args, **kwargs)
        one = all(d is None or hasattr(d, "__index__") for d in shape)
        shapes = [tuple(shape)] if one else [tuple(s) for s in shape]
    if spec.dtype_fn is not None:
        dtype = spec.dtype_fn(*args, **kwargs)
        dtypes = list(dtype) if isinstance(dtype, (tuple, list)) else [dtype]
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if spec.mode.signature is not None:
        from lazyapply._modes import mode_output_shapes

        arg_shapes = [tuple(getattr(a, "shape", ())) for a in args]
        shapes, _, _ = mode_output_shapes(
            spec.mode, spec.output, arg_shapes, name, "torch"
        )
    elif shapes is None:
        shapes = [tuple(torch.broadcast_shapes(*(t.shape for t in tensors)))]  # type: ignore[no-untyped-call]
    for shape in shapes:
        if any(d is None for d in shape):
            msg = (
                f"{name} (torch.compile/export): output shape {tuple(shape)} has an "
                "unknown size, so the compiled graph cannot describe the output "
                "without running the kernel; declare shape= (sizes, or a callable of "
                "the arguments) or call the kernel outside torch.compile"
            )
            raise SpecError(msg)
    if dtypes is None:
        dtypes = [xp.result_type(*(a for a in args if a is not None))] * len(shapes)
    dtypes = [resolve_dtype(d, xp, name) for d in dtypes]
    return list(shapes), dtypes


def _expected(
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> tuple[list[Any], list[Any]]:
    # Shape and dtype callables cost more than the call they describe: remember
    # their answer per (spec, static arguments, tensor shapes and dtypes).
    try:
        key: Any = (
            spec,
            tuple(a for a in args if not hasattr(a, "shape")),
            tuple(sorted(kwargs.items())),
            tuple((t.shape, t.dtype) for t in tensors),
        )
        hit = _EXPECTED.get(key)
    except TypeError:
        return fake_outputs(spec, name, args, kwargs)
    if hit is None:
        hit = fake_outputs(spec, name, args, kwargs)
        if len(_EXPECTED) > 1024:
            _EXPECTED.clear()
        _EXPECTED[key] = hit
    return hit


def run_checked(
    kernel: Any,
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> list[Any]:
    """The op's real kernel: the eager path, checked against the fake's metadata."""
    from lazyapply._detect import adapter_for

    from ._base import Adapter

    adapter = adapter_for(tensors[0], name)
    out = Adapter.apply(adapter, kernel, args, kwargs, spec, None, tensors[0])
    outs = list(out) if spec.output.multi else [out]
    shapes, dtypes = _expected(spec, name, args, kwargs, tensors)
    if len(outs) != len(shapes):
        msg = (
            f"{name} (torch custom op): the kernel returned {len(outs)} outputs, "
            f"expected {len(shapes)}; fix the kernel or the declared shape="
        )
        raise KernelOutputError(msg)
    taken = {t.untyped_storage().data_ptr() for t in tensors}
    for i, (o, s, d) in enumerate(zip(outs, shapes, dtypes, strict=True)):
        if tuple(o.shape) != tuple(s) or o.dtype != d:
            msg = (
                f"{name} (torch custom op): output {i} is {tuple(o.shape)} {o.dtype}, "
                f"expected {tuple(s)} {d} (declared, or inferred from the inputs); a "
                "compiled graph relies on it: declare shape=/dtype= as the kernel "
                "returns them"
            )
            raise KernelOutputError(msg)
        ptr = o.untyped_storage().data_ptr()
        if ptr in taken:  # a custom op's outputs may not alias its inputs or each other
            outs[i] = o.clone()
        taken.add(ptr)
    return outs
