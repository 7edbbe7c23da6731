"""PyTorch autograd for kernels with a declared vjp, eager and compiled.

Eagerly, and under torch.func, a call on tensors that require grad (with grad mode
on) runs inside one autograd node (:mod:`._grad_eager` eagerly, :mod:`._node` under
torch.func): the forward is the checked eager call on detached tensors, the backward
runs the declared vjp as a checked call of the vjp kernel, itself a node when it
must be differentiable (``create_graph=True``, torch.func). The same rule is
registered on the kernel's custom op (``register_autograd``) for compiled code.

With ``as_numpy=True`` and no vjp, such a call raises
:class:`~lazyapply.NotDifferentiableError` naming the kernel (torch itself would say
only "Can't call numpy() on Tensor that requires grad"). Without ``as_numpy`` and no
vjp the kernel gets the tensors as they are, and torch differentiates its torch code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from lazyapply._caches import bounded
from lazyapply._errors import NotDifferentiableError
from lazyapply._grad import differentiable_positions
from lazyapply.spec import CallSpec, OutputSpec
from lazyapply.spec._build import rule_spec

__all__ = [
    "Prepared",
    "grad_tracked",
    "needs_grad",
    "not_differentiable",
    "refuse_dual",
    "register_op_autograd",
    "vjp_op_spec",
]


def needs_grad(args: tuple[Any, ...]) -> bool:
    """Whether autograd must see this call: a tensor requires grad, grad mode is on."""
    torch = _TORCH[0] if _TORCH else _torch()
    for a in args:  # is_tensor: traced by Dynamo (see _compiled.compiled_call)
        # (Dynamo's is_tensor is True for a NumPy scalar, its 0-d array, too.)
        if torch.is_tensor(a) and not isinstance(a, np.ndarray) and a.requires_grad:
            return bool(torch.is_grad_enabled())
    return False


def _torch() -> Any:
    # The module, without a function-level import (as costly as the test) per call.
    import torch

    _TORCH.append(torch)
    return torch


_TORCH: list[Any] = []


def grad_tracked(args: tuple[Any, ...]) -> bool:
    """Whether a torch.func grad transform tracks an argument, at any level.

    ``requires_grad`` cannot tell: a ``vmap`` wrapper around a tracked tensor says
    ``False`` (``torch.func.grad`` of ``torch.func.vmap`` of a kernel).
    """
    import torch

    func = torch._C._functorch  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    for arg in args:
        t = arg
        while isinstance(t, torch.Tensor) and func.is_functorch_wrapped_tensor(t):
            if func.is_gradtrackingtensor(t):
                return True
            t = func.get_unwrapped(t)
    return False


class Prepared:
    """What the torch adapter keeps per kernel and spec: its vjp's checked calls.

    One :class:`~lazyapply._call.KernelCall` of the vjp per argument metadata, made
    by the engine's ``make_call``: a backward pass runs it without entering the
    engine again (one engine pass per forward and backward step).
    """

    __slots__ = (
        "calls",
        "func",
        "spec",
        "steps",
        "vjp_by_forward",
        "vjp_calls",
        "vjp_steps",
    )

    def __init__(self, func: Any, spec: CallSpec) -> None:
        self.func = func
        self.spec = spec
        self.calls: dict[Any, Any] = {}
        # forward's checked call -> its EagerStep (._grad_eager)
        self.steps: dict[Any, Any] = {}
        self.vjp_calls: dict[Any, Any] = {}
        # (forward's checked call, n, multi, positions) -> the vjp's checked call
        self.vjp_by_forward: dict[Any, Any] = {}
        # (forward's checked call, n, multi, positions) -> the VjpStep of a node
        self.vjp_steps: dict[Any, Any] = {}

    def checked_call(
        self, adapter: Any, first: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The kernel's call checked against :func:`layout`, per argument metadata."""
        # Imported once (a function-level import costs twice the lookup itself).
        if not _KERNEL_CALL:
            from lazyapply.adapters.torch._fake import kernel_call

            _KERNEL_CALL.append(kernel_call)
        return _KERNEL_CALL[0](self.calls, self.func, self.spec, args, kwargs, first)

    def vjp_call(
        self,
        adapter: Any,
        first: Any,
        n: int,
        multi: bool,
        positions: tuple[int, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The checked call of the vjp for these arguments' metadata."""
        shapes = tuple(tuple(args[i].shape) for i in positions)
        dtypes = tuple(args[i].dtype for i in positions)
        key = (n, multi, positions, len(args), shapes, dtypes, first.device)
        hit = self.vjp_calls.get(key)
        if hit is None:
            hit = self.new_vjp_call(adapter, first, n, multi, positions, args, kwargs)
            if len(self.vjp_calls) > 64:
                self.vjp_calls.clear()
            self.vjp_calls[key] = hit
        return hit

    def new_vjp_call(
        self,
        adapter: Any,
        first: Any,
        n: int,
        multi: bool,
        positions: tuple[int, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        lone: bool = False,
    ) -> Any:
        """A checked call of the vjp, its cotangents declared like their arguments.

        ``lone``: one cotangent, returned as itself rather than in a 1-tuple (the
        checked call's path for one output; a plain backward, whose cotangents
        no node of a second derivative sees).
        """
        from lazyapply._check import OutputCheck
        from lazyapply._engine import make_call
        from lazyapply._grad_kernels import LoneVjpKernel, VjpKernel

        shapes = tuple(tuple(args[i].shape) for i in positions)
        dtypes = tuple(args[i].dtype for i in positions)
        spec = self.spec
        kind = LoneVjpKernel if lone and len(positions) == 1 else VjpKernel
        kernel = kind(spec.vjp, spec.name, n, multi, positions, len(args))  # type: ignore[arg-type]
        several = kind is VjpKernel
        output = OutputSpec(shapes, dtypes, several)
        vspec = rule_spec(kernel.__name__, output, spec.as_numpy)
        check = OutputCheck(shapes, dtypes, several, (True, True))
        return make_call(
            adapter, first, kernel, kwargs, vspec, check, None, deferred=True
        )


_KERNEL_CALL: list[Any] = []


def not_differentiable(name: str, backend: str) -> None:
    """Raise :class:`~lazyapply.NotDifferentiableError` for an opaque kernel."""
    msg = (
        f"{name} ({backend}): an argument requires grad, but the kernel runs on "
        "NumPy copies (as_numpy=True) and declares no vjp, so neither autograd nor "
        f"torch.compile can differentiate it; declare one with @{name}.defvjp or "
        "vjp=, or call it under torch.no_grad() or on x.detach()"
    )
    raise NotDifferentiableError(msg)


def refuse_dual(
    forward_ad: Any, name: str, backend: str, args: tuple[Any, ...]
) -> None:
    """Refuse a dual tensor of ``torch.autograd.forward_ad`` (``forward_ad``) among
    the arguments of a kernel that runs on NumPy copies: its copy has no tangent, and
    the output would come back without one, silently."""
    import torch

    unpack = forward_ad.unpack_dual
    duals = [
        i
        for i, a in enumerate(args)
        if isinstance(a, torch.Tensor) and unpack(a).tangent is not None
    ]
    if not duals:
        return
    which = ", ".join(str(i) for i in duals)
    msg = (
        f"{name} ({backend}): argument {which} is a dual tensor of "
        "torch.autograd.forward_ad, but the kernel runs on NumPy copies "
        "(as_numpy=True), which carry no tangent: its outputs would have none. "
        "Forward-mode differentiation does not go through such a kernel; use reverse "
        "mode (backward(), torch.autograd.grad, torch.func.grad, vjp or jacrev), or "
        "pass forward_ad.unpack_dual(x).primal for a call that needs no tangent"
    )
    raise NotDifferentiableError(msg)


def register_op_autograd(
    op: Any,
    spec: CallSpec,
    prepare_op: Callable[[Any, CallSpec, int], Any],
    single: bool,
) -> None:
    """Wire a kernel's custom op to its vjp, itself a custom op (traceable), made
    by ``prepare_op`` (:func:`._op.prepare_op`). ``single``: the op returns one
    tensor, not a list."""
    import torch

    from lazyapply._grad import VjpKernel
    from lazyapply.adapters.torch._sites import (
        join_site,
        operand_index,
        site_of,
        split,
    )

    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.site, ctx.n = inputs[-1], len(inputs) - 1
        outs = (output,) if single else output
        ctx.save_for_backward(*inputs[:-1], *outs)

    def backward(ctx: Any, *grads: Any) -> Any:
        saved = ctx.saved_tensors
        tensors, outs = saved[: ctx.n], saved[ctx.n :]
        if not single:
            grads = grads[0]
        # Numbers passed as tensors stay so (Scalar): no cotangent, and the vjp's
        # op gets them as its operands too.
        args, kwargs = join_site(ctx.site, tensors, "raw")
        grads_in: list[Any] = [None] * (ctx.n + 1)
        positions = differentiable_positions(args)
        if not positions:
            return tuple(grads_in)
        n = len(outs)
        multi = spec.output.multi or n > 1
        kernel = VjpKernel(spec.vjp, spec.name, n, multi, positions, len(args))  # type: ignore[arg-type]
        flat = (*grads, *outs, *args)
        operands, template, kw = split(flat, kwargs, torch.Tensor)
        vjp_op = prepare_op(kernel, spec, len(operands))
        picked = vjp_op(*operands, site_of(template, kw))
        # The op's operands: its tensor arguments and numbers, in template order.
        at = operand_index(args, torch.Tensor)
        for i, g in zip(positions, picked, strict=True):
            grads_in[at[i]] = g
        return tuple(grads_in)

    op.register_autograd(backward, setup_context=setup_context)


class _LikeArgs:
    """Shapes or dtypes of a vjp's cotangents: those of the arguments they belong to.

    A vjp op's metadata callable, equal for equal fields, so that one vjp op serves
    every size (its spec does not hold the sizes of one call).
    """

    __slots__ = ("attr", "offset", "positions")

    def __init__(self, attr: str, offset: int, positions: tuple[int, ...]) -> None:
        self.attr, self.offset, self.positions = attr, offset, positions

    def _key(self) -> tuple[Any, ...]:
        return (self.attr, self.offset, self.positions)

    __static_key__ = _key  # specs holding it are equal by value (spec._static)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LikeArgs) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def stable_identity(self) -> tuple[Any, ...]:  # names the vjp's op
        return self._key()

    def __repr__(self) -> str:
        return f"_LikeArgs{self._key()!r}"

    def __call__(self, *flat: Any, **kwargs: Any) -> list[Any]:
        return [getattr(flat[self.offset + i], self.attr) for i in self.positions]


_LIKE = bounded("torch: vjp argument views", 1024)


def _like(attr: str, offset: int, positions: tuple[int, ...]) -> _LikeArgs:
    """One object per fields: specs compare callables by identity (static_key)."""
    key = (attr, offset, positions)
    hit = _LIKE.get(key)
    if hit is None:
        hit = _LIKE.put(key, _LikeArgs(attr, offset, positions))
    return cast(_LikeArgs, hit)


def vjp_op_spec(kernel: Any, spec: CallSpec) -> CallSpec:
    """The spec of a vjp kernel's op: cotangents are like their arguments."""
    offset = 2 * kernel.n_out
    # Only what run_vjp's spec holds besides the sizes: the forward kernel's spec
    # (when pre-registering) and the vjp call's spec then give the same op.
    # No mode: run_vjp may pick another mode than the forward's (a broadcast
    # argument), and the op's name, which a cached compiled backward holds, must
    # not depend on it. (torch.func.vmap of a vjp op is therefore sequential.)
    return rule_spec(
        kernel.__name__,
        OutputSpec(None, None, True),
        spec.as_numpy,
        shape_fn=_like("shape", offset, kernel.positions),
        dtype_fn=_like("dtype", offset, kernel.positions),
    )
