"""Output metadata of a kernel's custom op: the fake implementation, and its check.

Both ask the one metadata function, :func:`lazyapply.spec._metadata.layout`, on the
op's arguments (fake tensors while tracing, real ones in the op's implementation),
so a bad ``shape=``/``dtype=`` or a raising shape callable gives the same
:class:`~lazyapply.SpecError` under ``torch.compile`` as eagerly. :func:`run_checked`
runs the kernel through one checked :class:`~lazyapply._call.KernelCall` against
that metadata: a compiled graph relies on it, so a mismatch is a
:class:`~lazyapply.KernelOutputError`, never a silently wrong tensor.
"""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._metadata import Layout, layout
from lazyapply.spec._static import Unkeyable, static_key

__all__ = ["fake_outputs", "kernel_call", "run_checked"]


def _layout(
    kernel: Any,
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    first: Any,
) -> tuple[Any, Layout]:
    from lazyapply._detect import adapter_for

    adapter = adapter_for(first, name)
    got = layout(adapter, first, kernel, args, kwargs, spec, None, name)
    for shape in got.shapes:
        if any(d is None for d in shape):
            msg = (
                f"{name} (torch.compile/export): output shape {tuple(shape)} has an "
                "unknown size, so the compiled graph cannot describe the output "
                "without running the kernel; declare shape= (sizes, or a callable of "
                "the arguments) or call the kernel outside torch.compile"
            )
            raise SpecError(msg)
    return adapter, got


def fake_outputs(
    kernel: Any,
    spec: CallSpec,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Output shapes and torch dtypes, from :func:`layout` on the (fake) arguments."""
    _, got = _layout(kernel, spec, name, args, kwargs, tensors[0])
    return got.shapes, got.dtypes


def kernel_call(
    cache: dict[Any, Any],
    kernel: Any,
    spec: CallSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    first: Any,
) -> Any:
    """The checked kernel call for these arguments' metadata (made once per key).

    Shape and dtype callables cost more than the call they describe: their answer is
    kept per argument, in order (a tensor's shape, dtype and device; the static key of
    anything else), and the static key of the keywords. In order: ``f(t, 2.0)`` and
    ``f(2.0, t)`` describe different outputs.
    """
    tensor = _tensor()
    try:
        key: Any = (
            tuple(
                (a.shape, a.dtype, a.device) if isinstance(a, tensor) else static_key(a)
                for a in args
            ),
            static_key(tuple(sorted(kwargs.items()))),
        )
        hit = cache.get(key)
    except (Unkeyable, TypeError):
        key, hit = None, None
    if hit is None:
        hit = _checked(kernel, spec, args, kwargs, first)
        if key is not None:
            _keep(cache, key, hit)
    return hit


def _tensor() -> type:
    import torch

    return torch.Tensor


def _checked(
    kernel: Any,
    spec: CallSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    first: Any,
) -> Any:
    from lazyapply._check import OutputCheck
    from lazyapply._engine import make_call

    name = spec.name or kernel_name(kernel)
    adapter, got = _layout(kernel, spec, name, args, kwargs, first)
    check = OutputCheck(got.shapes, got.dtypes, got.multi, got.declared)
    # deferred=True: strict, every output checked (a graph relies on it).
    return make_call(
        adapter, first, kernel, kwargs, spec, check, None, deferred=True, name=name
    )


def _keep(cache: dict[Any, Any], key: Any, hit: Any) -> None:
    if len(cache) > 256:
        cache.clear()
    cache[key] = hit


def run_checked(
    cache: dict[Any, Any],
    kernel: Any,
    spec: CallSpec,
    site: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tensors: list[Any],
) -> list[Any]:
    """The op's real kernel: one checked kernel call against the fake's metadata.

    A compiled graph relies on that metadata, so a kernel that returns anything else
    raises :class:`~lazyapply.KernelOutputError`. The checked call is kept per call
    site (the static key of the other arguments, made when tracing) and the tensors'
    metadata: a compiled call builds no key from the static values.

    Outputs are contiguous, as the fake implementation's ``torch.empty`` says (a
    kernel may return ``a.T``, or SciPy's Fortran-ordered ``cholesky``); outputs that
    alias an input or each other are copied (a custom op's outputs may not alias).
    """
    key = (site, *[(t.shape, t.dtype, t.device) for t in tensors])
    call = cache.get(key)
    if call is None:
        call = _checked(kernel, spec, args, kwargs, tensors[0])
        _keep(cache, key, call)
    out = call.run(args, kwargs)
    outs = list(out) if call.check.multi else [out]
    taken = {t.untyped_storage().data_ptr() for t in tensors}
    for i, o in enumerate(outs):
        ptr = o.untyped_storage().data_ptr()
        if ptr in taken:
            outs[i] = o.clone(memory_format=_contiguous())
        elif not o.is_contiguous():
            outs[i] = o.contiguous()
        taken.add(ptr)
    return outs


def _contiguous() -> Any:
    import torch

    return torch.contiguous_format
