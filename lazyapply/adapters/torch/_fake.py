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

from collections.abc import Callable, Sequence
from typing import Any

# At module level, deliberately: the op's body runs on every compiled call, and a
# function-level import costs ~0.3 us. Only lazyapply.adapters.torch imports it,
# once torch is in use.
import torch  # noqa: TID253

from lazyapply._call import make_call
from lazyapply._check import OutputCheck
from lazyapply._detect import adapter_for
from lazyapply._errors import SpecError
from lazyapply.adapters.torch._sites import TENSOR, join_site, template_of
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._metadata import Layout, layout
from lazyapply.spec._static import Unkeyable, static_key

__all__ = ["fake_outputs", "kernel_call", "layout_of", "op_body"]

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
    tensor = torch.Tensor
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


def _checked(
    kernel: Any,
    spec: CallSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    first: Any,
) -> Any:
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

    __slots__ = ("call", "kwargs", "multi", "plain", "site")

    def __init__(self, call: Any, site: int, plain: bool, kwargs: Any) -> None:
        self.call, self.site, self.plain, self.kwargs = call, site, plain, kwargs
        self.multi = call.check.multi


def _prepare_site(
    kernel: Any, spec: CallSpec, site: int, tensors: tuple[Any, ...]
) -> _Site:
    args, kwargs = join_site(site, tensors)
    call = _checked(kernel, spec, args, kwargs, tensors[0])
    template, site_kwargs = template_of(site)
    # Only tensors, in order, and no keyword arguments: the operands are the
    # kernel's arguments as they are.
    plain = not site_kwargs and template == (TENSOR,) * len(tensors)
    return _Site(call, site, plain, kwargs)


def op_body(kernel: Any, spec: CallSpec, single: bool) -> Callable[..., Any]:
    """The op's real kernel: one checked kernel call against the fake's metadata.

    The op's operands are the tensors, then the call site. A compiled graph relies
    on the fake's metadata, so a kernel that returns anything else raises
    :class:`~lazyapply.KernelOutputError` (the call's strict check, the one every
    path has; the fake's layout is its expectation). The checked call is kept per
    call site (the static key of the other arguments, made when tracing) and the
    tensors' metadata: a compiled call builds no key from the static values.

    Outputs are contiguous, as the fake implementation's ``torch.empty`` says (a
    kernel may return ``a.T``, or SciPy's Fortran-ordered ``cholesky``); outputs
    whose memory overlaps an input's or another output's are copied (a custom op's
    outputs may not alias, and Inductor writes into them: a kernel returning a view
    of its input, ``x[1:]``, would have its caller's tensor overwritten).
    """
    cache: dict[Any, _Site] = {}

    def impl(*operands: Any) -> Any:
        if len(operands) == 2:  # one tensor (the common case): no comprehension
            t, site = operands
            tensors: tuple[Any, ...] = (t,)
            key: Any = (site, t.shape, t.dtype, t.device)
        else:
            tensors, site = operands[:-1], operands[-1]
            key = (site, *[(u.shape, u.dtype, u.device) for u in tensors])
        hit = cache.get(key)
        if hit is None:
            hit = _prepare_site(kernel, spec, site, tensors)
            _keep(cache, key, hit)
        if hit.plain:
            out = hit.call.run(tensors, hit.kwargs)
        else:
            out = hit.call.run(*join_site(site, tensors))
        if not hit.multi:
            return _own(out, tensors, ()) if single else [_own(out, tensors, ())]
        outs: list[Any] = []
        for o in out:
            outs.append(_own(o, tensors, outs))
        return outs

    return impl


def _own(o: Any, tensors: Any, before: Sequence[Any]) -> Any:
    """``o``, contiguous, and copied if its memory overlaps an input's or an
    earlier output's."""
    if not o.is_contiguous():
        return o.contiguous()  # a copy: memory of its own
    # Contiguous: its elements are the bytes from its data pointer on (what
    # Inductor may write); the others' storages are what they may read or write.
    lo = o.data_ptr()
    hi = lo + o.nbytes
    for t in (*tensors, *before):
        other = t.untyped_storage()
        start = other.data_ptr()
        if start < hi and lo < start + other.nbytes():
            return o.clone(memory_format=torch.contiguous_format)
    return o
