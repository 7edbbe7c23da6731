"""One autograd node per call of a kernel with a declared vjp: autograd and torch.func.

:class:`LazyKernelNode` has the form torch.func accepts (``forward`` without ``ctx``,
``setup_context``, a ``vmap`` rule; torch's ``custom_op`` autograd has not,
pytorch/pytorch#170834): it serves ``backward``, ``create_graph=True``,
``gradgradcheck`` and ``torch.func.grad``/``vjp``/``jacrev``/``vmap`` in any nesting.
A node computes a *step*, :class:`KernelStep` (the kernel) or :class:`VjpStep` (the
vjp of a step); a backward applies the vjp's step as a node again, differentiable
when the vjp declares its own vjp. ``forward`` only sees plain tensors (torch.func
unwraps one level per transform) and runs the step's checked kernel call. An eager
call outside transforms takes the node of :mod:`._grad_eager` (the same rules, with
what its checked call fixes worked out once); its differentiable backward applies
this module's node.
"""

from __future__ import annotations

from typing import Any

from lazyapply._caches import bounded
from lazyapply._errors import NotDifferentiableError
from lazyapply._grad_kernels import VjpOfVjp, own_vjp, second_order_hint
from lazyapply.adapters.torch._grad import Prepared
from lazyapply.spec import CallSpec
from lazyapply.spec._build import derive_spec

__all__ = ["KernelStep", "VjpStep", "node_class"]

_TRANSFORMS = (
    "torch.autograd.grad(create_graph=True), gradgradcheck, "
    "torch.func.grad(torch.func.grad(f))"
)


def _first_tensor(args: tuple[Any, ...]) -> Any:
    import torch

    return next(a for a in args if isinstance(a, torch.Tensor))


class _Step:
    """What one node computes; ``prepared`` is the (differentiated) kernel's."""

    __slots__ = ("adapter", "kwargs", "prepared")

    def __init__(self, adapter: Any, prepared: Any, kwargs: Any) -> None:
        self.adapter = adapter
        self.prepared = prepared
        self.kwargs = kwargs

    @property
    def spec(self) -> CallSpec:
        return self.prepared.spec  # type: ignore[no-any-return]

    def cores(self, n: int) -> list[int] | None:
        """Core dimensions of each of ``n`` operands; ``None``: not batchable."""
        mode = self.spec.mode
        if mode.elementwise:
            return [0] * n
        sig = mode.signature
        return None if sig is None else [len(dims) for dims in self._cores(sig)]

    def _cores(self, sig: Any) -> list[Any]:
        return list(sig.inputs)

    def _ready(self) -> Any:
        """The kernel's preparation for arguments with one more leading dimension."""
        from lazyapply._engine import prepared as ready
        from lazyapply.adapters.torch._vmap import batched_spec

        return ready(self.adapter, self.prepared.func, batched_spec(self.spec))


class KernelStep(_Step):
    """The kernel's checked call (``call``, or one made for the arguments' metadata)."""

    __slots__ = ("call",)

    def __init__(self, adapter: Any, prepared: Any, call: Any, kwargs: Any) -> None:
        super().__init__(adapter, prepared, kwargs)
        self.call = call

    def run(self, args: tuple[Any, ...]) -> Any:
        call = self.call
        if call is None:
            first = _first_tensor(args)
            call = self.prepared.checked_call(self.adapter, first, args, self.kwargs)
        return call.run(args, self.kwargs)

    def derivative(
        self, operands: tuple[Any, ...], n: int, multi: bool, positions: tuple[int, ...]
    ) -> VjpStep:
        call, prep = self.call, self.prepared
        if call is None or self.kwargs:
            return VjpStep(self.adapter, prep, self.kwargs, n, multi, positions)
        # One step per forward call (which holds the arguments' metadata) and
        # cotangent positions, reused by every backward of such a call: its vjp
        # call is then found without a lookup.
        steps = prep.vjp_steps
        key = (call, n, multi, positions)
        step: VjpStep | None = steps.get(key)
        if step is None:
            step = VjpStep(self.adapter, prep, self.kwargs, n, multi, positions)
            step.forward = call
            if len(steps) > 64:
                steps.clear()
            steps[key] = step
        return step

    def batched(self) -> KernelStep:
        return KernelStep(self.adapter, self._ready(), None, self.kwargs)


class VjpStep(_Step):
    """The declared vjp of a kernel, on ``(*grads, *outs, *args)``: the cotangents
    of ``positions``."""

    __slots__ = ("forward", "hit", "multi", "n", "positions")

    def __init__(
        self,
        adapter: Any,
        prepared: Any,
        kwargs: Any,
        n: int,
        multi: bool,
        positions: tuple[int, ...],
    ) -> None:
        super().__init__(adapter, prepared, kwargs)
        self.n = n
        self.multi = multi
        self.positions = positions
        # The checked call of the forward this is the vjp of (None: unknown): the
        # vjp's call is then looked up by it, not by the operands' metadata, and
        # kept (hit) once found.
        self.forward: Any = None
        self.hit: Any = None

    def _cores(self, sig: Any) -> list[Any]:  # of (*grads, *outs, *args)
        return [*sig.outputs, *sig.outputs, *sig.inputs]

    def _call(self, flat: tuple[Any, ...]) -> Any:
        """The vjp's checked call for these operands' metadata (cached)."""
        fast = self.prepared.vjp_by_forward
        key = (self.forward, self.n, self.multi, self.positions)
        if self.forward is not None:
            hit = fast.get(key)
            if hit is not None:
                return hit
        args = flat[2 * self.n :]
        first = _first_tensor(flat)
        hit = self.prepared.vjp_call(
            self.adapter, first, self.n, self.multi, self.positions, args, self.kwargs
        )
        if self.forward is not None:
            # The forward call holds the arguments' metadata (and its kwargs' static
            # key), all that the vjp's call depends on besides the key's fields.
            if len(fast) > 64:
                fast.clear()
            fast[key] = hit
        return hit

    def run(self, flat: tuple[Any, ...]) -> Any:
        call = self.hit
        if call is None:
            call = self._call(flat)
            if self.forward is not None:
                self.hit = call
        return call.run(flat, self.kwargs)

    def derivative(
        self, flat: tuple[Any, ...], n: int, multi: bool, positions: tuple[int, ...]
    ) -> VjpStep:
        """The vjp of this vjp: the rule the vjp declares for itself, or an error."""
        spec = self.spec
        if isinstance(spec.vjp, VjpOfVjp):  # this is already a vjp's vjp
            msg = (
                f"{spec.vjp.__name__}: lazyapply differentiates {spec.vjp.name} at "
                "most twice (the rule declared with .vjp.defvjp has no derivative "
                "of its own); stop at the second derivative"
            )
            raise NotDifferentiableError(msg)
        own = own_vjp(spec.vjp)
        if own is None:
            label = self.adapter.label(_first_tensor(flat))
            raise NotDifferentiableError(
                second_order_hint(spec.name, f"{label}: {_TRANSFORMS}")
            )
        call = self._call(flat)  # func: the VjpKernel, spec: its declared outputs
        key = (own, self.n, self.multi, self.positions, call)
        prep = _SECOND.get(key)
        if prep is None:
            rule = VjpOfVjp(
                own, spec.name, self.n, self.multi, self.positions, call.func.n_args
            )
            vspec = derive_spec(call.spec, vjp=rule)
            prep = _SECOND.put(key, Prepared(call.func, vspec))
        return VjpStep(self.adapter, prep, self.kwargs, n, multi, positions)

    def batched(self) -> VjpStep:
        prep = self._ready()
        return VjpStep(
            self.adapter, prep, self.kwargs, self.n, self.multi, self.positions
        )


_SECOND = bounded("torch: second-order vjp preparations", 256)
_NODE: list[Any] = []


def _detached(torch: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # Only what autograd tracks (a cotangent is not, outside create_graph): a
    # detach makes a tensor, the test does not.
    tensor = torch.Tensor
    return tuple(
        [a.detach() if isinstance(a, tensor) and a.requires_grad else a for a in args]
    )


def _forward(step: Any, *args: Any) -> Any:
    return step.run(_detached(_torch(), args))


def _torch() -> Any:
    # The module, without a function-level import (~0.3 us) on every step.
    if not _TORCH:
        import torch

        _TORCH.append(torch)
    return _TORCH[0]


_TORCH: list[Any] = []


def _setup_context(ctx: Any, inputs: Any, output: Any) -> None:
    tensor = _torch().Tensor
    step, *args = inputs
    multi = isinstance(output, tuple)
    outs = output if multi else (output,)
    # Tensor arguments, and those of them that are floating-point (by torch's own
    # dtype tests: array_namespace per argument costs more than a small vjp).
    at, floats = [], []
    template = list(args)
    for i, a in enumerate(args):
        if isinstance(a, tensor):
            at.append(i)
            template[i] = None
            if a.is_floating_point() or a.is_complex():
                floats.append(i)
    ctx.step, ctx.multi, ctx.at, ctx.floats = step, multi, at, floats
    ctx.template = template
    ctx.save_for_backward(*(args[i] for i in at), *outs)
    frozen = [o for o in outs if not (o.is_floating_point() or o.is_complex())]
    if frozen:
        ctx.mark_non_differentiable(*frozen)


def _backward(ctx: Any, *grads: Any) -> Any:
    torch = _torch()
    saved = ctx.saved_tensors
    at = ctx.at
    args = list(ctx.template)
    for i, t in zip(at, saved, strict=False):
        args[i] = t
    outs = saved[len(at) :]
    needs = ctx.needs_input_grad
    positions = tuple([i for i in ctx.floats if needs[i + 1]])
    full: list[Any] = [None] * (len(args) + 1)
    if not positions:
        return tuple(full)
    grads = zeros_for_unused(torch, grads, outs)
    flat = (*grads, *outs, *args)
    step = ctx.step.derivative(tuple(args), len(grads), ctx.multi, positions)
    if torch.is_grad_enabled() or torch._C._are_functorch_transforms_active():  # type: ignore[attr-defined]
        # create_graph=True, or a torch.func transform: the vjp is a node too,
        # differentiable when it declares its own vjp.
        picked = node_class().apply(step, *flat)
    else:
        picked = step.run(_detached(torch, flat))
    for i, g in zip(positions, picked, strict=True):
        full[i + 1] = g
    return tuple(full)


def zeros_for_unused(torch: Any, grads: tuple[Any, ...], outs: Any) -> tuple[Any, ...]:
    """``grads`` with zeros for the outputs the loss does not use (torch gives
    ``None`` for them: the vjp gets arrays)."""
    for g in grads:
        if g is None:
            return tuple(
                torch.zeros_like(o) if c is None else c
                for c, o in zip(grads, outs, strict=True)
            )
    return grads


def _jvp(ctx: Any, *tangents: Any) -> Any:
    label = ctx.step.adapter.label(_first_tensor(tangents))
    msg = (
        f"{ctx.step.spec.name} ({label}): forward-mode differentiation "
        "(torch.func.jvp, jacfwd, hessian) does not go through a declared vjp; use "
        "reverse mode: torch.func.grad, vjp or jacrev, and jacrev(jacrev(f)) for a "
        "Hessian"
    )
    raise NotDifferentiableError(msg)


def _vmap(info: Any, in_dims: Any, step: Any, *args: Any) -> Any:
    from lazyapply.adapters.torch._vmap import node_vmap

    return node_vmap(node_class(), info, in_dims[1:], step, args)


def _forward_with_ctx(ctx: Any, step: Any, *args: Any) -> Any:
    out = step.run(_detached(_torch(), args))
    _setup_context(ctx, (step, *args), out)
    return out


def node_class() -> Any:
    """The ``autograd.Function`` subclass for this call (made once per process).

    Under a torch.func transform, the form torch.func accepts (``forward`` without
    ``ctx``, ``setup_context``). Otherwise the same rules with ``ctx`` in
    ``forward``: ``Function.apply`` binds the arguments of a ``setup_context``
    function through ``inspect.signature`` on every call (about a fifth of a small
    call's forward and backward).
    """
    if not _NODE:
        import torch

        rules: dict[str, Any] = {
            "backward": staticmethod(_backward),
            "jvp": staticmethod(_jvp),
            "vmap": staticmethod(_vmap),
        }
        base = (torch.autograd.Function,)
        plain = {"forward": staticmethod(_forward_with_ctx), **rules}
        func = {
            "forward": staticmethod(_forward),
            "setup_context": staticmethod(_setup_context),
            **rules,
        }
        _NODE.append(torch._C._are_functorch_transforms_active)  # type: ignore[attr-defined]
        _NODE.append(type("LazyKernelNode", base, plain))
        _NODE.append(type("LazyKernelNode", base, func))
    return _NODE[2] if _NODE[0]() else _NODE[1]
