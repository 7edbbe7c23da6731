"""The autograd node of an eager call whose checked call is made (nothing to decide).

A call on tensors that require grad, outside torch.func transforms and compilers,
has its checked call (:meth:`~._grad.Prepared.checked_call`, one per argument
metadata). What that metadata fixes is worked out once, on one :class:`EagerStep`
per checked call: which arguments are tensors, which of them are floating-point,
whether the outputs are a tuple, and, per set of inputs that need a gradient, the
vjp's step (with its own checked call once the first backward made it). The forward
then runs the checked call and saves tensors; the backward finds its vjp step with
one dict lookup and runs the vjp's checked call (``KernelCall.run``, as every kernel
call). A backward that must itself be differentiable (``create_graph=True``) applies
the vjp's step as a :mod:`._node` node, the same as the general node does.
"""

from __future__ import annotations

from typing import Any, cast

from lazyapply.adapters.torch._grad import Prepared, not_differentiable
from lazyapply.adapters.torch._node import (
    KernelStep,
    _detached,
    _jvp,
    _vmap,
    node_class,
    zeros_for_unused,
)
from lazyapply.spec import CallSpec

__all__ = ["EagerStep", "apply_with_grad"]


class EagerStep(KernelStep):
    """The step of one checked call, with what its arguments' metadata fix.

    ``at``: positions of the tensor arguments; ``floats``: those that are
    floating-point or complex (the ones a cotangent is asked for); ``others``:
    positions of the other arguments (kept per call: the vjp gets the very
    objects); ``multi``: the checked call returns a tuple (its check says so);
    ``backs``: ``(needs_input_grad, number of outputs)`` -> :class:`_Back`;
    ``frozen``: whether some output is not floating-point (then not
    differentiable; ``None``: the check does not know every dtype, ask each call).
    """

    __slots__ = (
        "at",
        "backs",
        "floats",
        "frozen",
        "multi",
        "n_args",
        "others",
        "single",
    )

    def __init__(
        self, adapter: Any, prepared: Any, call: Any, args: tuple[Any, ...]
    ) -> None:
        super().__init__(adapter, prepared, call, call.kwargs)
        import torch

        tensor = torch.Tensor
        at, floats, others = [], [], []
        for i, a in enumerate(args):
            if isinstance(a, tensor):
                at.append(i)
                if a.is_floating_point() or a.is_complex():
                    floats.append(i)
            else:
                others.append(i)
        self.at = tuple(at)
        self.floats = tuple(floats)
        self.others = tuple(others)
        self.n_args = len(args)
        self.single = self.n_args == 1 and not others
        self.multi = bool(call.check.multi)
        self.backs: dict[Any, _Back] = {}
        # The checked call refuses an output of another dtype than its check's.
        dtypes = call.check.dtypes
        self.frozen: bool | None = None
        if dtypes is not None and all(isinstance(d, torch.dtype) for d in dtypes):
            self.frozen = not all(d.is_floating_point or d.is_complex for d in dtypes)

    def back(self, needs: tuple[bool, ...], n: int) -> _Back:
        """What a backward with these inputs needing a gradient runs."""
        key = (needs, n)
        hit = self.backs.get(key)
        if hit is None:
            positions = tuple([i for i in self.floats if needs[i + 1]])
            hit = _Back(positions)
            if len(self.backs) > 16:
                self.backs.clear()
            self.backs[key] = hit
        return hit


class _Back:
    """A backward of one step: the cotangent ``positions``; ``plain``, the vjp's
    checked call when the backward is not differentiated (made by the first such
    backward, with the arguments' metadata); ``lone``: ``plain`` returns the one
    cotangent itself."""

    __slots__ = ("lone", "plain", "positions")

    def __init__(self, positions: tuple[int, ...]) -> None:
        self.positions = positions
        self.lone = len(positions) == 1
        self.plain: Any = None


def apply_with_grad(
    adapter: Any,
    call: Any,
    args: tuple[Any, ...],
    spec: CallSpec,
    first: Any,
    prepared: Prepared,
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """The call, recorded as one autograd node whose backward is the vjp.

    ``call`` is the kernel's checked call for these arguments (``None`` under
    torch.func: the node makes it for the plain tensors it gets).
    """
    if spec.vjp is None:  # as_numpy (the adapter passes torch code on as it is)
        not_differentiable(spec.name, adapter.label(first))
    if not _NODE:
        _make()
    if call is None or _NODE[1]():
        # torch.func: the general node, in the form torch.func accepts.
        kw = cast(Any, call).kwargs if kwargs is None else kwargs
        return node_class().apply(KernelStep(adapter, prepared, call, kw), *args)
    # Eager, no transform, no torch.func wrapper among the arguments (the adapter
    # asked): this checked call's step, on torch's own apply (C), below the Python
    # Function.apply.
    steps = prepared.steps
    eager = steps.get(call)
    if eager is None:
        eager = EagerStep(adapter, prepared, call, args)
        if len(steps) > 64:
            steps.clear()
        steps[call] = eager
    return _NODE[0](eager, *args)


_NODE: list[Any] = []  # torch's own apply (C) of the eager node class
_TORCH: list[Any] = []


def _forward(ctx: Any, step: EagerStep, *args: Any) -> Any:
    if step.single:
        out = step.call.run((args[0].detach(),), step.kwargs)
    else:
        out = step.call.run(_detached(_TORCH[0], args), step.kwargs)
    ctx.step = step
    outs = out if step.multi else (out,)
    if step.others:
        ctx.rest = tuple([args[i] for i in step.others])
        ctx.save_for_backward(*[args[i] for i in step.at], *outs)
    else:
        ctx.save_for_backward(*args, *outs)
    if step.frozen is not False:
        frozen = [o for o in outs if not (o.is_floating_point() or o.is_complex())]
        if frozen:
            ctx.mark_non_differentiable(*frozen)
    return out


def _backward(ctx: Any, *grads: Any) -> Any:
    step: EagerStep = ctx.step
    saved = ctx.saved_tensors
    n = len(grads)
    needs = ctx.needs_input_grad
    back = step.backs.get((needs, n)) or step.back(needs, n)
    positions = back.positions
    if not positions:
        return (None,) * (step.n_args + 1)
    k = len(step.at)
    outs = saved[k:]
    if step.others:
        filled: list[Any] = [None] * step.n_args
        for i, t in zip(step.at, saved, strict=False):
            filled[i] = t
        for i, v in zip(step.others, ctx.rest, strict=True):
            filled[i] = v
        args = tuple(filled)
    else:
        args = saved[:k]
    torch = _TORCH[0]
    grads = zeros_for_unused(torch, grads, outs)
    flat = (*grads, *outs, *args)
    if torch.is_grad_enabled() or _NODE[1]():
        # create_graph=True (or a transform around the backward): the vjp is a
        # node too, differentiable when it declares its own vjp.
        vjp = step.derivative(args, n, step.multi, positions)
        picked = node_class().apply(vjp, *flat)
    else:
        call = back.plain
        if call is None:
            call = back.plain = step.prepared.new_vjp_call(
                step.adapter,
                grads[0],
                n,
                step.multi,
                positions,
                args,
                step.kwargs,
                lone=True,
            )
        if step.others:
            flat = _detached(torch, flat)
        else:  # tensors only (a cotangent does not require grad here)
            flat = tuple([t.detach() if t.requires_grad else t for t in flat])
        picked = call.run(flat, step.kwargs)
        if back.lone:
            if step.single:
                return (None, picked)
            picked = (picked,)
    full: list[Any] = [None] * (step.n_args + 1)
    for i, g in zip(positions, picked, strict=True):
        full[i + 1] = g
    return tuple(full)


def _make() -> None:
    import torch

    rules: dict[str, Any] = {
        "forward": staticmethod(_forward),
        "backward": staticmethod(_backward),
        "jvp": staticmethod(_jvp),
        "vmap": staticmethod(_vmap),
    }
    node = type("LazyKernelNode", (torch.autograd.Function,), rules)
    _TORCH.append(torch)
    _NODE.append(super(torch.autograd.Function, cast(Any, node)).apply)  # pyright: ignore[reportAttributeAccessIssue]
    _NODE.append(torch._C._are_functorch_transforms_active)  # type: ignore[attr-defined]
