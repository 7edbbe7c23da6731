"""An automatic ``torch.library.custom_op`` per kernel and spec, for compiled code.

``torch.compile`` cannot trace a Numba, Cython or SciPy kernel, and ``torch.export``
cannot either; both can call an opaque custom op whose output metadata is known. A
call made while compiling or exporting (``torch.compiler.is_compiling()``) goes through
:func:`prepare_op`'s op; eager calls never do (the op dispatcher costs tens of us).

The op, ``lazyapply::<module>__<qualname>[_<n>]``, has the schema
``(Tensor[] tensors, int site) -> Tensor[]``: the tensor arguments in order, and a
*call site*. A call site is an entry of a process-wide table that holds everything the
schema cannot express: the positions of the tensors among the positional arguments,
the other positional arguments (Python scalars, ``None``) and the keyword arguments,
all passed to the kernel unchanged. Equal sites share one integer, a constant of the
graph, so a compiled function is compiled once per set of static values. Exported
programs therefore run in the process that exported them.

- fake: the declared ``shape``/``dtype`` or their callables, evaluated on fake tensors
  (symbolic sizes stay symbolic: ``dynamic=True`` compiles once); an unknown size
  raises :class:`~lazyapply.SpecError` naming the kernel.
- autograd: the declared vjp through :func:`lazyapply._grad.run_vjp` (while compiling,
  the vjp kernel is itself such an op).
- vmap: elementwise and gufunc kernels make one batched call (:mod:`._vmap`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from typing import Any

from lazyapply.adapters.torch._fake import fake_outputs, run_checked
from lazyapply.spec import CallSpec, kernel_name

__all__ = ["call_op", "join_site", "prepare_op", "site_of"]

_LOCK = threading.Lock()
# (kernel key, spec) -> (kernel, spec, op): the kernel is held so its id stays unique.
_OPS: dict[Any, tuple[Any, CallSpec, Any]] = {}
_NAMES: set[str] = set()
# Call sites: static part -> int, and back. The int is derived from the static
# values' repr, so a graph that Inductor cached in another process finds its sites.
_SITE_IDS: dict[Any, int] = {}
_SITES: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
_SCHEMA = "(Tensor[] tensors, int site) -> Tensor[]"
# Marks a tensor's place among the positional arguments: a string, because Dynamo
# traces the code that builds templates and compares only constants it knows.
_TENSOR = "<lazyapply tensor argument>"


# --------------------------------------------------------------------- call sites
def site_of(template: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The call site of a template (tensors replaced by ``_TENSOR``) and kwargs."""
    try:
        key: Any = (template, tuple(sorted(kwargs.items())))
        hash(key)
    except TypeError:  # an unhashable keyword argument: one site per value object
        key = (template, tuple(kwargs), tuple(map(id, kwargs.values())))
    site = _SITE_IDS.get(key)
    if site is None:
        with _LOCK:
            site = _SITE_IDS.get(key)
            if site is None:
                digest = hashlib.blake2b(repr(key).encode(), digest_size=7).digest()
                site = int.from_bytes(digest, "big")
                while site in _SITES:  # a collision (or an id-keyed site): next one
                    site += 1
                _SITES[site] = (template, dict(kwargs))
                _SITE_IDS[key] = site
    return site


def join_site(site: int, tensors: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The kernel's positional and keyword arguments, from the op's operands."""
    template, kwargs = _SITES[site]
    it = iter(tensors)
    return tuple(next(it) if a == _TENSOR else a for a in template), kwargs


# ----------------------------------------------------------------------------- op
def _kernel_key(kernel: Any) -> Any:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):  # made per backward call: key on its fields
        return ("vjp", *kernel.__reduce__()[1])
    return kernel


def prepare_op(kernel: Any, spec: CallSpec) -> Any:
    """The custom op of ``kernel`` called as ``spec`` says; registered once."""
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        from lazyapply.adapters.torch._grad import vjp_op_spec

        spec = vjp_op_spec(kernel, spec)
    try:
        key: Any = (_kernel_key(kernel), spec)
        hash(key)
    except TypeError:  # an unhashable spec field (a dtype object): key on identity
        key = (_kernel_key(kernel), id(spec))
    hit = _OPS.get(key)
    if hit is not None:
        return hit[2]
    with _LOCK:
        hit = _OPS.get(key)
        if hit is None:
            op = _register(kernel, spec)
            hit = _OPS[key] = (kernel, spec, op)
    return hit[2]


def _op_name(kernel: Any, spec: CallSpec) -> str:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        base = f"{getattr(kernel.vjp, '__module__', '')}.{kernel.name}_vjp"
    else:
        module = getattr(kernel, "__module__", None) or type(kernel).__module__
        qualname = getattr(kernel, "__qualname__", None) or kernel_name(kernel)
        base = f"{module}.{qualname}"
    base = re.sub(r"\W+", "_", base.replace(".", "__")).strip("_") or "kernel"
    # The spec's digest, not a counter: a graph that Inductor cached in another process
    # names the op, so the name must not depend on the order of registration.
    name = digest = f"{base}_{_digest(spec)}"
    n = 1
    while name in _NAMES:  # two specs that print alike (lambdas): rare
        n += 1
        name = f"{digest}_{n}"
    _NAMES.add(name)
    return f"lazyapply::{name}"


def _digest(spec: CallSpec) -> str:
    """A short digest of what the spec says, stable across processes."""
    import hashlib

    fns = (spec.shape_fn, spec.dtype_fn, spec.vjp, spec.jvp)
    fields = (spec.output, spec.as_numpy, spec.mode, spec.strict, *map(_where, fns))
    return hashlib.sha1(repr(fields).encode(), usedforsecurity=False).hexdigest()[:8]


def _where(fn: Any) -> str | None:
    if fn is None or not hasattr(fn, "__qualname__"):
        return None if fn is None else repr(fn)  # lazyapply's objects: no address
    return f"{getattr(fn, '__module__', '')}.{fn.__qualname__}"


def _register(kernel: Any, spec: CallSpec) -> Any:
    import torch

    from lazyapply.adapters.torch import _grad as _torch_grad

    name = spec.name or kernel_name(kernel)
    plain = dataclasses.replace(spec, vjp=None)
    calls: dict[Any, Any] = {}  # checked kernel calls, per argument metadata

    def impl(tensors: list[torch.Tensor], site: int) -> list[torch.Tensor]:
        args, kwargs = join_site(site, tensors)
        return run_checked(calls, kernel, plain, name, args, kwargs, tensors)

    def fake(tensors: list[torch.Tensor], site: int) -> list[torch.Tensor]:
        args, kwargs = join_site(site, tensors)
        shapes, dtypes = fake_outputs(spec, name, args, kwargs)
        device = tensors[0].device
        return [
            torch.empty(s, dtype=d, device=device)
            for s, d in zip(shapes, dtypes, strict=True)
        ]

    op = torch.library.custom_op(
        _op_name(kernel, spec), impl, mutates_args=(), schema=_SCHEMA
    )
    op.register_fake(fake)
    if spec.vjp is not None:
        _torch_grad.register_op_autograd(op, spec)
    if spec.mode.elementwise or spec.mode.signature is not None:
        from lazyapply.adapters.torch._vmap import register_op_vmap

        register_op_vmap(op, kernel, spec)
    return op


def op_name_of(
    kernel: Any,
    spec: CallSpec,
    template: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
) -> str:
    """The name (in ``torch.ops.lazyapply``) of the op of ``kernel`` and ``spec``.

    A kernel with a vjp registers its vjp's op and call site now, too: a compiled
    backward loaded from Inductor's cache in a new process is never traced, yet
    calls them.
    """
    op = prepare_op(kernel, spec)
    n_args = len(template)
    if spec.vjp is not None and positions:
        from lazyapply._grad import VjpKernel

        n_out = (
            len(spec.output.shapes) if spec.output.multi and spec.output.shapes else 1
        )
        vjp = VjpKernel(
            spec.vjp, spec.name, n_out, spec.output.multi, positions, n_args
        )
        prepare_op(vjp, spec)
        site_of((_TENSOR,) * (2 * n_out) + template, kwargs)
    return str(op._name)


# Dynamo runs these two at trace time and keeps their results as constants of the
# graph: registering an op or a call site cannot be traced, only done. This is what
# torch._dynamo.assume_constant_result does; set here so that torch._dynamo is not
# imported with this module.
op_name_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
site_of._dynamo_marked_constant = True  # type: ignore[attr-defined]


def call_op(
    torch: Any, kernel: Any, spec: CallSpec, args: tuple[Any, ...], kwargs: Any
) -> Any:
    """Call ``kernel`` through its custom op (while compiling or exporting).

    Dynamo traces this function: it imports nothing (an import breaks the graph).
    """
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    template = tuple(_TENSOR if isinstance(a, torch.Tensor) else a for a in args)
    # Floating-point tensors: the arguments a vjp returns cotangents for.
    positions = tuple(
        i
        for i, a in enumerate(args)
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex())
    )
    name = op_name_of(kernel, spec, template, kwargs, positions)
    op = getattr(torch.ops.lazyapply, name)
    outs = op(tensors, site_of(template, kwargs))
    if spec.output.multi or (
        spec.output.shapes is None
        and spec.mode.signature is not None
        and len(spec.mode.signature.outputs) > 1
    ):
        return tuple(outs)
    return outs[0]
