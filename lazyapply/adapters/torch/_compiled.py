"""A kernel call while compiling or exporting (or on a tensor subclass): traced.

The torch adapter's ``defer`` hands such a call to :func:`compiled_call`, which
Dynamo traces as bytecode: it imports nothing (an import breaks the graph), and it
reads almost nothing but the plan of :mod:`._operands` (a constant of the graph),
since each global, attribute or builtin it read would be a guard that every call of
the compiled function checks. The op's name and call site are constants too:
registering an op or a call site cannot be traced, only done.

- Torch code without a vjp: Dynamo traces the kernel itself (:mod:`._traced`), so
  autograd differentiates it; an opaque op would hide its operations.
- Anything else: the kernel's custom op (:mod:`._op`). The number of outputs is
  what the op's fake implementation (the one metadata function) made.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

# At module level, deliberately: Dynamo traces this module's code, where an import
# breaks the graph. Only lazyapply.adapters.torch imports it, once torch is in use.
import torch  # noqa: TID253

from lazyapply.adapters.torch._grad import not_differentiable
from lazyapply.adapters.torch._op import prepare_op
from lazyapply.adapters.torch._operands import Plan, operands, plan_of
from lazyapply.adapters.torch._sites import TENSOR, n_operands, site_of, template_of
from lazyapply.adapters.torch._traced import checked_call, func_grad_compiled
from lazyapply.adapters.torch._zeros import guard_zero_signs, refuse_unguarded_zeros
from lazyapply.spec import CallSpec

__all__ = ["call_op", "compiled_call", "op_call"]

# The ops' namespace, read from here: Dynamo keeps an op that a constant function
# returned only through a guarded path (its variable for a torch op needs a source
# it can guard), and this one is the shortest (one guard, and the op's own).
_OPS = torch.ops.lazyapply
_transforms_active = torch._C._are_functorch_transforms_active  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]


def compiled_call(
    adapter: Any,
    call: Any,
    args: tuple[Any, ...],
    spec: CallSpec,
    first: Any,
    compiling: bool,
) -> Any:
    """Run ``call`` (a :class:`~lazyapply._engine.PendingCall`) as a compiled graph
    needs it: the kernel's op, or its traced torch code (``compiling``:
    ``torch.compiler.is_compiling()``)."""
    kernel: Any = call.func
    kwargs = call.kwargs
    bound = type(kernel) is partial and not kernel.keywords  # obj.method
    kinds = [type(a) for a in args]
    kw_kinds = [(k, type(v)) for k, v in kwargs.items()] if kwargs else []
    plan = plan_of(None if bound else kernel, spec, kinds, kw_kinds, compiling)
    grad = False  # autograd must see the call: a tensor requires grad, grad mode on
    for i in plan.tensor_at:
        if args[i].requires_grad:
            grad = torch.is_grad_enabled()
            break
    # Dynamo shows a NumPy scalar to traced code as a 0-d ndarray
    # (pytorch/pytorch#141343): without grad, such a call of torch code goes
    # through the op, whose kernel gets the NumPy scalar, as eagerly.
    if plan.torch_code and (
        grad or not (plan.numpy_maybe and _numpy_scalars(args, kwargs))
    ):
        # Dynamo traces the kernel's own operations, checked against the layout
        # (as eagerly).
        out = checked_call(call, args, spec, plan)
        if not guard_zero_signs():  # a float zero baked in: its sign too
            refuse_unguarded_zeros(plan.name, args, kwargs)
        return out
    if grad and not plan.vjp:
        not_differentiable(plan.name, adapter.label(first))
    if _transforms_active() and adapter._func_grad(args):
        func_grad_compiled(plan.name, plan.vjp)
    name = plan.op
    if name is not None:  # the common case (a plain op: no site), inline (no guard)
        out = getattr(_OPS, name)(*args)
        if plan.single:
            return (out,) if plan.multi else out
        return tuple(out) if plan.multi or len(out) > 1 else out[0]
    return call_op(plan, kernel, spec, args, kwargs, bound)


def op_call(call: Any, args: tuple[Any, ...], spec: CallSpec) -> Any:
    """Call the kernel of ``call`` through its op, untraced (torch.func wrappers)."""
    kernel: Any = call.func
    kwargs = call.kwargs
    bound = type(kernel) is partial and not kernel.keywords  # obj.method
    kinds = [type(a) for a in args]
    kw_kinds = [(k, type(v)) for k, v in kwargs.items()]
    plan = plan_of(None if bound else kernel, spec, kinds, kw_kinds, False)
    return call_op(plan, kernel, spec, args, kwargs, bound)


def call_op(
    plan: Plan,
    kernel: Any,
    spec: CallSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    bound: bool,
) -> Any:
    """Call ``kernel`` (``bound``: a bound method's partial) through its op."""
    guarded = True
    site = plan.site
    if site is not None:  # the operands are the arguments
        tensors: Any = args
    else:
        tensors, site, guarded = operands(plan, args, kwargs)
    if bound:  # its instance passed apart: Dynamo guards its identity
        ids = (*[id(b) for b in kernel.args],)
        name = bound_op_of(kernel.func, spec, len(tensors), ids, *kernel.args)
    else:
        name = op_of(kernel, spec, len(tensors))
    out = getattr(_OPS, name)(*tensors, site)
    if not guarded:  # a float zero baked into the graph, its sign unguarded
        refuse_unguarded_zeros(plan.name, args, kwargs)
    if plan.vjp:
        n_out = 1 if plan.single else len(out)
        dtypes = [args[i].dtype for i in plan.tensor_at]
        # (A bound method's partial is no constant for Dynamo; the vjp's op needs
        # only the spec.)
        register_vjp(
            None if bound else kernel, spec, site, plan.tensor_at, dtypes, n_out
        )
    if plan.single:  # the op's schema: one output, or a list
        return (out,) if plan.multi else out
    return tuple(out) if plan.multi or len(out) > 1 else out[0]


def _numpy_scalars(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a NumPy scalar is among the arguments, as Dynamo shows it: a 0-d
    ``numpy.ndarray`` (at top level or in a tuple or list, as the op passes them)."""
    for a in (*args, *kwargs.values()):
        for b in a if type(a) is tuple or type(a) is list else (a,):
            if isinstance(b, np.ndarray) and b.ndim == 0:
                return True
    return False


def op_of(kernel: Any, spec: CallSpec, n_in: int) -> str:
    """The name (in ``torch.ops.lazyapply``) of the op of ``kernel`` and ``spec`` on
    ``n_in`` operands."""
    return str(prepare_op(kernel, spec, n_in)._name)


def bound_op_of(
    func: Any, spec: CallSpec, n_in: int, ids: tuple[int, ...], *bound: Any
) -> str:
    """:func:`op_of` a bound method ``functools.partial(func, *bound)``.

    Dynamo hands a marked-constant function an object (an ``nn.Module``) only as a
    top-level argument, never inside a partial. ``ids`` are the objects' ``id()``
    taken in the traced code: that is what makes Dynamo guard the graph on their
    identity, so another instance never runs this one's op.
    """
    if ids != tuple(map(id, bound)):
        msg = f"{spec.name}: the bound instance changed while tracing"
        raise RuntimeError(msg)
    return op_of(partial(func, *bound), spec, n_in)


def register_vjp(
    kernel: Any,
    spec: CallSpec,
    site: int,
    tensor_at: tuple[int, ...],
    dtypes: list[Any],
    n_out: int,
) -> bool:
    """Register the vjp's op and call site of a call with ``n_out`` outputs now.

    A compiled backward loaded from Inductor's cache in a new process is never
    traced, yet calls them. The vjp returns cotangents for the floating-point
    tensors among the arguments (``tensor_at``, of ``dtypes``).
    """
    positions = tuple(
        i
        for i, d in zip(tensor_at, dtypes, strict=True)
        if d.is_floating_point or d.is_complex
    )
    if spec.vjp is not None and positions:
        from lazyapply._grad import VjpKernel

        template, kwargs = template_of(site)
        multi = spec.output.multi or n_out > 1  # as the op's backward has it
        vjp = VjpKernel(spec.vjp, spec.name, n_out, multi, positions, len(template))
        flat = (TENSOR,) * (2 * n_out) + template
        prepare_op(vjp, spec, n_operands(flat, kwargs))
        site_of(flat, kwargs)
    return True


# Dynamo runs these at trace time and keeps their results as constants of the graph:
# registering an op or a call site cannot be traced, only done (as
# torch._dynamo.assume_constant_result does, without importing torch._dynamo).
op_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
bound_op_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
register_vjp._dynamo_marked_constant = True  # type: ignore[attr-defined]
