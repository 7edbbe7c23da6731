"""Output metadata of a kernel's custom op: the fake implementation, and its check.

:func:`fake_outputs` evaluates the declared ``shape``/``dtype`` (or their callables)
on the op's arguments, fake or real, without ``int()`` on a size, so symbolic sizes
stay symbolic. :func:`run_checked` runs the kernel (the plain eager path) and checks
every output against that metadata: a compiled graph relies on it, so a mismatch is a
:class:`~lazyapply.KernelOutputError`, never a silently wrong tensor.
"""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import CallSpec, resolve_dtype

__all__ = ["fake_outputs", "run_checked"]


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
        from lazyapply.spec._modes import mode_output_shapes

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


def _kernel_call(
    cache: dict[Any, Any],
    kernel: Any,
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> Any:
    """The checked kernel call for these arguments' metadata (made once per op, key).

    Shape and dtype callables cost more than the call they describe: their answer is
    kept per (static arguments, tensor shapes, dtypes and devices).
    """
    try:
        key: Any = (
            tuple(a for a in args if not hasattr(a, "shape")),
            tuple(sorted(kwargs.items())),
            tuple((t.shape, t.dtype, t.device) for t in tensors),
        )
        hit = cache.get(key)
    except TypeError:
        key, hit = None, None
    if hit is None:
        from lazyapply._check import OutputCheck
        from lazyapply._detect import adapter_for
        from lazyapply._engine import make_call

        shapes, dtypes = fake_outputs(spec, name, args, kwargs)
        declared = (
            spec.output.shapes is not None or spec.shape_fn is not None,
            spec.output.dtypes is not None or spec.dtype_fn is not None,
        )
        multi = spec.output.multi or len(shapes) > 1
        check = OutputCheck(
            tuple(tuple(s) for s in shapes), tuple(dtypes), multi, declared
        )
        first = tensors[0]
        # deferred=True: strict, every output checked (the graph relies on it).
        hit = make_call(
            adapter_for(first, name),
            first,
            kernel,
            kwargs,
            spec,
            check,
            None,
            deferred=True,
            name=name,
        )
        if key is not None:
            if len(cache) > 256:
                cache.clear()
            cache[key] = hit
    return hit


def run_checked(
    cache: dict[Any, Any],
    kernel: Any,
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> list[Any]:
    """The op's real kernel: one checked kernel call against the fake's metadata.

    A compiled graph relies on that metadata, so a kernel that returns anything else
    raises :class:`~lazyapply.KernelOutputError`. Outputs that alias an input or
    each other are copied (a custom op's outputs may not alias).
    """
    call = _kernel_call(cache, kernel, spec, name, args, kwargs, tensors)
    out = call(*args)
    outs = list(out) if call.check.multi else [out]
    taken = {t.untyped_storage().data_ptr() for t in tensors}
    for i, o in enumerate(outs):
        ptr = o.untyped_storage().data_ptr()
        if ptr in taken:
            outs[i] = o.clone()
        taken.add(ptr)
    return outs
