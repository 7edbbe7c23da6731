"""An automatic ``torch.library.custom_op`` per kernel and spec, for compiled code.

``torch.compile`` cannot trace a Numba, Cython or SciPy kernel, and ``torch.export``
cannot either; both can call an opaque custom op whose output metadata is known. A
call made while compiling or exporting (``torch.compiler.is_compiling()``) goes through
:func:`prepare_op`'s op (:mod:`._compiled` makes the call, with the operands and call
site of :mod:`._operands`); eager calls never do (the op dispatcher costs tens of us).

The op, ``lazyapply::<module>__<qualname>_<digest>_<n><t|l>[p]``, has the schema
``(Tensor t0, ..., Tensor t<n-1>, int site) -> Tensor`` (``p`` ops, for calls on
tensors alone, take no ``site``) (``-> Tensor[]`` where the
spec does not fix one output): the tensor arguments in order, and a *call site*. A
call site is an entry of a process-wide table that holds everything the schema cannot
express: the positions of the tensors among the positional arguments,
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

import functools
import re
import threading
from typing import Any

from lazyapply._caches import pinned
from lazyapply._errors import SpecError
from lazyapply.adapters.torch._fake import fake_outputs, op_body
from lazyapply.adapters.torch._identity import op_digest
from lazyapply.adapters.torch._sites import TENSOR, TOKEN, join_site, site_of
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._build import derive_spec

__all__ = ["TENSOR", "join_site", "op_name_of", "prepare_op", "site_of"]

_LOCK = threading.Lock()
# Pinned (never dropped): compiled graphs name the registered ops.
# op name -> (kernel, spec, op): the kernel is held so that its name stays its own.
_OPS: dict[str, tuple[Any, CallSpec, Any]] = pinned("torch: custom ops by name")
# (kernel key, spec) -> op name (the hot lookup)
_NAMED: dict[Any, str] = pinned("torch: op names by kernel and spec")


def _schema(n_in: int, single: bool, plain: bool) -> str:
    # One op per number of operands, so the graph passes them one by one: a
    # Tensor[] argument or result costs a compiled call as much as the rest of the
    # dispatch (boxing, the graph's list). A plain op (tensors only, no keyword
    # arguments) takes no site: an int operand costs its Python dispatch ~3 us.
    tensors = ", ".join(f"Tensor t{i}" for i in range(n_in))
    site = "" if plain else ", int site"
    return f"({tensors}{site}) -> {'Tensor' if single else 'Tensor[]'}"


def single_output(spec: CallSpec) -> bool:
    """Whether ``spec`` fixes one output (not a sequence) without calling anything.

    A constant shape or dtype beside a callable fixes the count (several outputs
    need several of each); the fake implementation checks the layout's count
    against it, so a spec read wrongly here fails loudly, never silently.
    """
    out = spec.output
    if out.multi:
        return False
    sig = spec.mode.signature
    if sig is not None:
        return len(sig.outputs) == 1
    if spec.shape_fn is None and spec.dtype_fn is None:
        return True  # declared or inferred, and not several
    return (spec.shape_fn is None and out.shapes is not None) or (
        spec.dtype_fn is None and out.dtypes is not None
    )


# ----------------------------------------------------------------------------- op
def _kernel_key(kernel: Any) -> Any:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):  # made per backward call: key on its fields
        return ("vjp", *kernel.__reduce__()[1])
    if type(kernel) is functools.partial:
        # A bound @lazy method, made per attribute access: its function and the
        # instance's identity (the op holds the partial, so the id stays its own).
        return ("partial", kernel.func, *map(id, kernel.args), *kernel.keywords)
    return kernel


def prepare_op(kernel: Any, spec: CallSpec, n_in: int, plain: bool = False) -> Any:
    """The custom op of ``kernel`` called as ``spec`` says on ``n_in`` operands
    (tensors, and numbers passed as tensors), then a call site; registered once.

    ``plain``: the op of a call on ``n_in`` tensors only, without keyword arguments,
    whose call site it knows: it takes the tensors alone (no vjp: the autograd and
    torch.func rules pass sites).
    """
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        from lazyapply.adapters.torch._grad import vjp_op_spec

        spec = vjp_op_spec(kernel, spec)
    key: Any = (_kernel_key(kernel), spec, n_in, plain)
    name = _NAMED.get(key)
    if name is not None:
        return _OPS[name][2]
    with _LOCK:
        name = _NAMED.get(key)
        if name is None:
            name = _op_name(kernel, spec, n_in, plain)
            if name not in _OPS:
                op = _register(kernel, spec, name, n_in, plain)
                _OPS[name] = (kernel, spec, op)
            _NAMED[key] = name
    return _OPS[name][2]


def _op_name(kernel: Any, spec: CallSpec, n_in: int, plain: bool) -> str:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        base = f"{getattr(kernel.rule, '__module__', '')}.{kernel.name}_vjp"
    else:
        module = getattr(kernel, "__module__", None) or type(kernel).__module__
        qualname = getattr(kernel, "__qualname__", None) or kernel_name(kernel)
        base = f"{module}.{qualname}"
    base = re.sub(r"\W+", "_", base.replace(".", "__")).strip("_") or "kernel"
    # A digest of the kernel's code, closure and defaults, its vjp's and its spec's,
    # not a counter: a graph that Inductor cached in another process names the op,
    # and must find exactly this code under that name. The schema (operands, one
    # output or a list) ends the name.
    digest = op_digest(kernel, spec)
    arity = f"{n_in}{'t' if single_output(spec) else 'l'}{'p' if plain else ''}"
    name = f"{base}_{digest}" if digest is not None else f"{base}_p{TOKEN}"
    name = f"{name}_{arity}"
    n = 1
    # (The arity is part of every name the loop tries: a name checked without it
    # would never be found taken, and two kernels without a stable identity, say
    # one method bound to two instances, would share the first one's op.)
    while name in _OPS and not _same(_OPS[name], kernel, spec):
        # Another kernel object with the same identity (equal code and closure made
        # twice), or one without a stable identity: a name of this process only.
        n += 1
        name = f"{base}_p{TOKEN}_{n}_{arity}"
    return name


def _same(hit: tuple[Any, CallSpec, Any], kernel: Any, spec: CallSpec) -> bool:
    return _kernel_key(hit[0]) == _kernel_key(kernel) and hit[1] == spec


def _register(kernel: Any, spec: CallSpec, name: str, n_in: int, plain: bool) -> Any:
    import torch

    from lazyapply.adapters.torch import _grad as _torch_grad

    label = spec.name or kernel_name(kernel)
    single = single_output(spec)
    # A plain op's site: its tensors, in order (the same number in every process).
    fixed = site_of((TENSOR,) * n_in, {}) if plain else None
    impl = op_body(kernel, derive_spec(spec, vjp=None), single, fixed)

    def fake(*operands: Any) -> Any:
        if fixed is None:
            tensors, site = operands[:-1], operands[-1]
        else:
            tensors, site = operands, fixed
        args, kwargs = join_site(site, tensors, "placeholder")
        shapes, dtypes, multi = fake_outputs(kernel, spec, label, args, kwargs, tensors)
        if single and (multi or len(shapes) != 1):
            msg = (
                f"{label} (torch.compile/export): the spec fixes one output, but the "
                f"layout has {len(shapes)}{' (a sequence)' if multi else ''}; this is "
                "a bug of lazyapply: please report it with the kernel's shape= and "
                "dtype="
            )
            raise SpecError(msg)
        device = tensors[0].device
        outs = [
            torch.empty(s, dtype=d, device=device)
            for s, d in zip(shapes, dtypes, strict=True)
        ]
        return outs[0] if single else outs

    op = torch.library.custom_op(
        f"lazyapply::{name}",
        impl,
        mutates_args=(),
        schema=_schema(n_in, single, plain),
    )
    op.register_fake(fake)
    if spec.vjp is not None:
        _torch_grad.register_op_autograd(op, spec, prepare_op, single)
    from lazyapply.adapters.torch._vmap import register_op_vmap

    # The rules make ops of their own (the vjp's, the batched call's) with
    # prepare_op, handed to them: neither imports this module. A plain op's rule
    # is a site-taking op's, given its site.
    register_op_vmap(
        op if fixed is None else _WithSite(op, fixed), kernel, spec, prepare_op, single
    )
    return op


class _WithSite:
    """A plain op seen as one that takes its site: for the torch.func.vmap rule."""

    def __init__(self, op: Any, site: int) -> None:
        self.op, self.site = op, site

    def __call__(self, *operands: Any) -> Any:
        return self.op(*operands[:-1])

    def register_vmap(self, rule: Any) -> None:
        site = self.site

        def plain_rule(info: Any, in_dims: Any, *tensors: Any) -> Any:
            return rule(info, (*in_dims, None), *tensors, site)

        self.op.register_vmap(plain_rule)


def op_name_of(kernel: Any, spec: CallSpec, n_in: int) -> str:
    """The name (in ``torch.ops.lazyapply``) of the op of ``kernel`` and ``spec``."""
    return str(prepare_op(kernel, spec, n_in)._name)


# Dynamo runs it at trace time and keeps the name as a constant of the graph:
# registering an op cannot be traced, only done (as
# torch._dynamo.assume_constant_result does, without importing torch._dynamo).
op_name_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
