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

from collections.abc import Sequence
from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._metadata import Layout, layout
from lazyapply.spec._static import Unkeyable, static_key

__all__ = ["fake_outputs", "kernel_call", "layout_of", "run_site"]

# Heads the key of a call on one tensor: no other key starts with it.
_ONE = object()


def layout_of(
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
    tensors: Any,
) -> tuple[tuple[Any, ...], tuple[Any, ...], bool]:
    """Output shapes, torch dtypes and whether the kernel returns a sequence, from
    :func:`layout` on the (fake) arguments."""
    _, got = layout_of(kernel, spec, name, args, kwargs, tensors[0])
    return got.shapes, got.dtypes, got.multi


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
    if not kwargs and len(args) == 1:  # one tensor (the common case): no static key
        a = args[0]
        key: Any = (_ONE, a.shape, a.dtype, a.device)
        hit = cache.get(key)
        if hit is None:
            hit = _checked(kernel, spec, args, kwargs, first)
            _keep(cache, key, hit)
        return hit
    tensor = _TENSOR[0] if _TENSOR else _tensor()
    try:
        key = (
            tuple(
                [
                    (a.shape, a.dtype, a.device)
                    if isinstance(a, tensor)
                    else static_key(a)
                    for a in args
                ]
            ),
            static_key(tuple(sorted(kwargs.items()))) if kwargs else (),
        )
        hit = cache.get(key)
    except (Unkeyable, TypeError):
        key, hit = None, None
    if hit is None:
        hit = _checked(kernel, spec, args, kwargs, first)
        if key is not None:
            _keep(cache, key, hit)
    return hit


def _tensor() -> Any:
    # Kept: a function-level import costs about what building the key does.
    import torch

    _TENSOR.append(torch.Tensor)
    return torch.Tensor


_TENSOR: list[Any] = []


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
    adapter, got = layout_of(kernel, spec, name, args, kwargs, first)
    check = OutputCheck(got.shapes, got.dtypes, got.multi, got.declared)
    # deferred=True: strict, every output checked (a graph relies on it).
    return make_call(
        adapter, first, kernel, kwargs, spec, check, None, deferred=True, name=name
    )


def _keep(cache: dict[Any, Any], key: Any, hit: Any) -> None:
    if len(cache) > 256:
        cache.clear()
    cache[key] = hit


class _Site:
    """The op's body for one call site and operand metadata, prepared once."""

    __slots__ = ("call", "kwargs", "plain", "site")

    def __init__(self, call: Any, site: int, plain: bool, kwargs: Any) -> None:
        self.call, self.site, self.plain, self.kwargs = call, site, plain, kwargs


def _prepare_site(
    kernel: Any, spec: CallSpec, site: int, tensors: tuple[Any, ...]
) -> _Site:
    from lazyapply.adapters.torch._sites import TENSOR, join_site, template_of

    args, kwargs = join_site(site, tensors)
    call = _checked(kernel, spec, args, kwargs, tensors[0])
    template, site_kwargs = template_of(site)
    # Only tensors, in order, and no keyword arguments: the operands are the
    # kernel's arguments as they are.
    plain = not site_kwargs and template == (TENSOR,) * len(tensors)
    return _Site(call, site, plain, kwargs)


def run_site(
    cache: dict[Any, Any],
    kernel: Any,
    spec: CallSpec,
    operands: tuple[Any, ...],
    single: bool,
) -> Any:
    """The op's real kernel: one checked kernel call against the fake's metadata.

    ``operands`` are the op's: the tensors, then the call site. A compiled graph
    relies on the fake's metadata, so a kernel that returns anything else raises
    :class:`~lazyapply.KernelOutputError`. The checked call is kept per call site
    (the static key of the other arguments, made when tracing) and the tensors'
    metadata: a compiled call builds no key from the static values.

    Outputs are contiguous, as the fake implementation's ``torch.empty`` says (a
    kernel may return ``a.T``, or SciPy's Fortran-ordered ``cholesky``); outputs
    whose memory overlaps an input's or another output's are copied (a custom op's
    outputs may not alias, and Inductor writes into them: a kernel returning a view
    of its input, ``x[1:]``, would have its caller's tensor overwritten).
    """
    tensors, site = operands[:-1], operands[-1]
    if len(tensors) == 1:  # the common case, without a comprehension
        t = tensors[0]
        key: Any = (site, t.shape, t.dtype, t.device)
    else:
        key = (site, *[(t.shape, t.dtype, t.device) for t in tensors])
    hit = cache.get(key)
    if hit is None:
        hit = _prepare_site(kernel, spec, site, tensors)
        _keep(cache, key, hit)
    call = hit.call
    if hit.plain:
        out = call.run(tensors, hit.kwargs)
    else:
        from lazyapply.adapters.torch._sites import join_site

        args, kwargs = join_site(site, tensors)
        out = call.run(args, kwargs)
    if not call.check.multi:
        return _own(out, tensors, ()) if single else [_own(out, tensors, ())]
    outs: list[Any] = []
    for o in out:
        outs.append(_own(o, tensors, outs))
    return outs


def _own(o: Any, tensors: Any, before: Sequence[Any]) -> Any:
    """``o``, copied if its memory overlaps an input's or an earlier output's, and
    contiguous."""
    storage = o.untyped_storage()
    lo = storage.data_ptr()
    hi = lo + storage.nbytes()
    for t in (*tensors, *before):
        other = t.untyped_storage()
        start = other.data_ptr()
        if start < hi and lo < start + other.nbytes():
            return o.clone(memory_format=_contiguous())
    return o if o.is_contiguous() else o.contiguous()


def _contiguous() -> Any:
    import torch

    return torch.contiguous_format
