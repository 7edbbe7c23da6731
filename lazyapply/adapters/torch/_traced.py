"""Kernels in plain torch code under torch.compile, checked as they are eagerly.

Dynamo traces such a kernel's own operations (autograd differentiates them), so no
custom op hides them; their outputs are still checked against the one metadata
function. A *layout op* per kernel and spec, whose fake implementation is
:func:`~lazyapply.spec._metadata.layout` on the traced arguments, returns one
0-stride tensor per output (its shape and dtype, no data) and one more whose shape
carries ``(multi, shape declared, dtype declared)``. The traced code checks the
kernel's outputs against them with the eager :class:`~lazyapply._check.OutputCheck`,
while tracing: a wrong ``shape=`` or ``dtype=`` raises the same
:class:`~lazyapply.KernelOutputError` as eagerly, and a shape callable that gives
several outputs is a tuple of outputs, as eagerly. The layout op's outputs are read
only for their metadata, so AOTAutograd drops it from the compiled graph.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, cast

# At module level, deliberately: Dynamo traces this module's code, where an import
# breaks the graph. Only lazyapply.adapters.torch imports it, once torch is in use.
import torch  # noqa: TID253

from lazyapply._caches import pinned
from lazyapply._check import OutputCheck
from lazyapply.adapters.torch._fake import layout_of
from lazyapply.adapters.torch._op import op_name_of
from lazyapply.adapters.torch._operands import operands
from lazyapply.adapters.torch._sites import join_site
from lazyapply.spec import CallSpec, kernel_name

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply._engine import PendingCall
    from lazyapply.adapters.torch._operands import Plan

__all__ = ["checked_call", "func_grad_active", "func_grad_compiled"]

_OPS = torch.ops.lazyapply  # (read from here: see _compiled)

_LOCK = threading.Lock()
# Pinned: compiled graphs name the registered ops.
_LAYOUT_OPS: dict[str, Any] = pinned("torch: layout ops of torch-code kernels")


def layout_op_name(
    kernel: Any, spec: CallSpec, n_in: int, ids: tuple[int, ...] = (), *bound: Any
) -> str:
    """The layout op of ``kernel`` (bound to ``bound``, whose ``id()`` are ``ids``,
    for a method) on ``n_in`` operands; registered once, under the kernel op's name
    (its stable identity)."""
    if bound:
        if ids != tuple(map(id, bound)):
            msg = f"{spec.name}: the bound instance changed while tracing"
            raise RuntimeError(msg)
        kernel = functools.partial(kernel, *bound)
    name = f"{op_name_of(kernel, spec, n_in)}_layout"
    if name not in _LAYOUT_OPS:
        with _LOCK:
            if name not in _LAYOUT_OPS:
                _LAYOUT_OPS[name] = _register(kernel, spec, name)
    return name


def _register(kernel: Any, spec: CallSpec, name: str) -> Any:
    label = spec.name or kernel_name(kernel)

    def metas(
        tensors: list[torch.Tensor], site: int, numbers: str
    ) -> list[torch.Tensor]:
        args, kwargs = join_site(site, tensors, numbers)
        _, got = layout_of(kernel, spec, label, args, kwargs, tensors[0])
        device = tensors[0].device
        out = [
            # (layout_of refused unknown sizes: every size is known here)
            torch.zeros((), dtype=d, device=device).expand(cast("tuple[int, ...]", s))
            for s, d in zip(got.shapes, got.dtypes, strict=True)
        ]
        flags = (int(got.multi), *map(int, got.declared))
        return [*out, torch.zeros((), device=device).expand(flags)]

    def impl(tensors: list[torch.Tensor], site: int) -> list[torch.Tensor]:
        return metas(tensors, site, "value")

    def fake(tensors: list[torch.Tensor], site: int) -> list[torch.Tensor]:
        return metas(tensors, site, "placeholder")

    op = torch.library.custom_op(
        f"lazyapply::{name}",
        impl,
        mutates_args=(),
        schema="(Tensor[] tensors, int site) -> Tensor[]",
    )
    op.register_fake(fake)
    return op


# Dynamo runs it at trace time and keeps the name as a constant of the graph.
layout_op_name._dynamo_marked_constant = True  # type: ignore[attr-defined]


def checked_call(
    call: PendingCall, args: tuple[Any, ...], spec: CallSpec, plan: Plan
) -> Any:
    """Run the torch-code kernel of ``call`` (traced by Dynamo), its outputs checked
    against the layout op's metadata. Traced: it imports nothing, and reads the
    plan of :mod:`._operands` (a constant) rather than globals."""
    site = plan.site
    if site is not None:  # the operands are the arguments
        tensors: Any = args
    else:
        # (The caller guards the signs of float zeros after the kernel's trace.)
        tensors, site, _ = operands(plan, args, call.kwargs)
    func: Any = call.func
    if type(func) is functools.partial and not func.keywords:  # obj.method
        # id(): Dynamo guards the graph on the instance's identity.
        ids = tuple(id(b) for b in func.args)
        name = layout_op_name(func.func, spec, len(tensors), ids, *func.args)
    else:
        name = layout_op_name(func, spec, len(tensors))
    *metas, flags = getattr(_OPS, name)([*tensors], site)
    multi, shape_declared, dtype_declared = (bool(n) for n in flags.shape)
    check = OutputCheck(
        tuple(tuple(m.shape) for m in metas),
        tuple(m.dtype for m in metas),
        multi,
        (shape_declared, dtype_declared),
    )
    kernel_call: KernelCall = call.build(check)
    return kernel_call.run(args, call.kwargs)


def func_grad_active() -> Any:
    """A function of the call's arguments, traceable by Dynamo: whether the
    innermost torch.func transform is ``grad`` (``vjp``, ``jacrev``) and tracks one
    of them.

    A tensor the transform does not track (a constant the function closes over)
    reaches the op as itself, which then runs as it does eagerly. Traced, Dynamo
    shows a tracked tensor with ``requires_grad`` False, so the question is asked
    as functorch answers it: whether unwrapping at the transform's level gives
    another tensor (``_unwrap_for_grad`` is in Dynamo's graph, and its example
    value is the same object for a tensor that level does not wrap).
    """
    import torch
    from torch._C._functorch import TransformType  # type: ignore[import-not-found]  # pyright: ignore[reportMissingModuleSource]
    from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

    grad, tensor = TransformType.Grad, torch.Tensor
    unwrap = torch._C._functorch._unwrap_for_grad  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]

    def active(args: tuple[Any, ...]) -> bool:
        interpreter = retrieve_current_functorch_interpreter()
        if interpreter.key() != grad:
            return False
        level = interpreter.level()
        return any(isinstance(a, tensor) and unwrap(a, level) is not a for a in args)

    return active


def func_grad_compiled(name: str, has_vjp: bool) -> None:
    """Refuse ``torch.func.grad``/``vjp``/``jacrev`` of an opaque kernel traced by
    ``torch.compile``, with the kernel's name (torch's own error spoke of an
    autograd.Function's ``setup_context``). Raised while tracing: without
    ``fullgraph=True`` Dynamo runs the frame eagerly, where lazyapply's autograd
    node differentiates the kernel with its vjp."""
    from lazyapply._errors import NotDifferentiableError

    if not has_vjp:
        msg = (
            f"{name} (torch.compile): torch.func.grad, vjp or jacrev of a kernel "
            "that runs on NumPy copies (as_numpy=True) and declares no vjp; declare "
            f"one with @{name}.defvjp or vjp="
        )
        raise NotDifferentiableError(msg)
    msg = (
        f"{name} (torch.compile): torch.func.grad, vjp or jacrev of an opaque kernel "
        "inside a compiled function; torch 2.13 cannot compile a torch.func "
        "transform of a custom op's autograd (its autograd.Function has no "
        "setup_context, pytorch/pytorch#168393), nor trace one that has "
        "(pytorch/pytorch#118397). Compile without fullgraph=True (Dynamo then runs "
        "this frame eagerly, with the vjp), apply torch.func.grad outside "
        "torch.compile, or differentiate with torch.autograd.grad or .backward() "
        "inside it"
    )
    raise NotDifferentiableError(msg)
