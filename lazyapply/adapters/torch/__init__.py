"""PyTorch tensors, on any device (CPU, CUDA, ``meta``): the kernel runs now.

With ``as_numpy=True`` a tensor goes through ``np.asarray``: PyTorch itself refuses
CUDA and ``meta`` tensors and tensors that require grad, with its own error, so no
data leaves a device and no autograd graph is silently cut.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lazyapply._call import numpy_inputs
from lazyapply._errors import SpecError
from lazyapply.adapters._base import DEFER, Adapter, Target
from lazyapply.adapters.torch._compiled import compiled_call, op_call
from lazyapply.adapters.torch._grad import (
    Prepared,
    grad_tracked,
    needs_grad,
    not_differentiable,
    refuse_dual,
)
from lazyapply.adapters.torch._grad_eager import apply_with_grad
from lazyapply.adapters.torch._traced import func_grad_active
from lazyapply.spec import CallSpec

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply._engine import PendingCall
    from lazyapply.spec._metadata import Layout

__all__ = ["TorchAdapter"]


class TorchAdapter(Adapter):
    name = "torch"
    # Deferred: a custom op under torch.compile/export/torch.func, an autograd node.
    defers = True
    # Dynamo traces deferred calls and cannot trace the layout's caches or the
    # preparation lock: the op's fake implementation and the eager strategies lay out.
    lays_out = False

    def __init__(self) -> None:
        import torch

        self.native = (torch.Tensor,)
        self._torch = torch
        import array_api_compat.torch as xp

        # Set once here: Dynamo guards on adapter attributes it reads while tracing.
        self._xp = xp
        # torch.compiler.is_compiling is folded to True by Dynamo (no guard on a flag).
        self._compiling = torch.compiler.is_compiling
        # The eager check asks the same in two cheaper steps (see ``deferred``).
        self._dynamo_compiling = torch.compiler.is_dynamo_compiling
        self._compiler = torch.compiler
        self._plain = (torch.Tensor, torch.nn.Parameter)  # (a tuple: Dynamo reads it)
        self._plain_set = frozenset(self._plain)
        from lazyapply._engine import prepared

        self._ready = prepared  # the engine's preparation cache (eager calls)
        self._tensor = torch.Tensor
        self._grad_enabled = torch.is_grad_enabled
        self._forward_ad = torch.autograd.forward_ad
        self._transforms_active = torch._C._are_functorch_transforms_active  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
        # torch.func.vmap/grad/jvp wrap tensors (whose type is still torch.Tensor).
        self._wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
        # After a graph break Dynamo compiles every frame lazyapply runs eagerly, and it
        # cannot trace is_functorch_wrapped_tensor (a pybind builtin: a UserWarning, an
        # error under warnings-as-errors). Only eager calls ask it (compiled calls leave
        # defer before), so Dynamo is kept off this one frame.
        self._any_wrapped: Callable[[tuple[Any, ...]], bool] = torch.compiler.disable(  # type: ignore[no-untyped-call]
            self._scan_wrapped
        )
        # Whether the innermost torch.func transform is a grad tracking an argument.
        self._func_grad = func_grad_active()

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)

    def namespace(self, x: Any) -> Any:
        return self._xp

    def label(self, first: Any) -> str:
        return f"torch on {first.device}"

    def check_definition(self, name: str) -> None:
        if self._compiling():
            # Dynamo would trace the decoration: building the spec (frozen
            # dataclasses it cannot make as constants) and then calling an op whose
            # name it must know as a constant of the graph.
            msg = (
                f"{name} (torch.compile): @lazy applied inside the compiled function; "
                "Dynamo cannot trace the decoration itself. Decorate the kernel "
                "outside the compiled function (at module level, passing what it "
                "closed over as arguments), or call lazy_apply(kernel, *args, ...) "
                "inside it, which Dynamo traces"
            )
            raise SpecError(msg)

    # --- strategies: the engine asks ``place``, then ``defer`` ------------------
    def place(self, args: tuple[Any, ...], first: Any, spec: CallSpec | None) -> Any:
        """The device of a call that runs now, or :data:`DEFER`: the custom op, an
        autograd node or a torch.func rule must see it.

        Deferred: compiling or exporting, a tensor subclass (the fake and
        functional tensors of a trace), a torch.func wrapped tensor while a
        transform runs, and, for a kernel autograd cannot see into (``as_numpy``
        or a vjp; ``spec`` ``None`` asks for such a kernel), a tensor that
        requires grad with grad mode on. Torch code without a vjp runs now whatever
        requires grad: autograd records its own operations, as it does for the
        reference's call; ``requires_grad`` is not even read. One frame answers
        both questions (deferred? the device?) on the hot path.
        """
        # is_compiling() is the module's flag (set by export, and by a compile session
        # for code it runs untraced), behind a Python call: read straight, it costs
        # ~0.1 us less. Dynamo folds is_dynamo_compiling() to True, so it never reads
        # (nor guards on) the flag, which is True while it compiles and False after.
        if self._dynamo_compiling() or self._compiler._is_compiling_flag:
            return DEFER
        plain = self._plain
        if spec is None or spec.opaque:
            if self._forward_ad._current_level >= 0:  # inside forward_ad.dual_level()
                return DEFER  # (``defer`` refuses a dual tensor's NumPy copy)
            for a in args:
                if type(a) in plain:
                    # Grad mode is read only for a tensor that requires grad (rare).
                    if a.requires_grad and self._grad_enabled():
                        return DEFER
                elif isinstance(a, self._tensor):
                    return DEFER
        elif len(args) == 1:  # (then ``first`` is the argument)
            if type(first) not in plain:
                return DEFER  # a tensor subclass
        elif not self._plain_set.issuperset(map(type, args)):  # C-level, no loop
            tensor = self._tensor
            for a in args:
                if type(a) not in plain and isinstance(a, tensor):
                    return DEFER
        # torch.func wraps tensors only while a transform runs (the gate
        # torch.autograd.Function.apply uses): one that escaped its transform is dead,
        # and torch itself treats it as a plain tensor or refuses it (vmap's), so
        # outside transforms no argument is asked (~0.1 us per tensor saved).
        if self._transforms_active() and self._any_wrapped(args):
            return DEFER
        return first.device

    def deferred(self, args: tuple[Any, ...]) -> bool:
        """Whether a call of a kernel autograd cannot see into is deferred (the
        engine asks :meth:`place`, which knows the kernel's spec)."""
        return self.place(args, _NO_ARRAY, None) is DEFER

    def _scan_wrapped(self, args: tuple[Any, ...]) -> bool:
        tensor, wrapped = self._torch.Tensor, self._wrapped
        return any(isinstance(a, tensor) and wrapped(a) for a in args)

    def prepare(self, func: Callable[..., Any], spec: CallSpec) -> Any:
        return Prepared(func, spec)

    def defer(
        self,
        call: KernelCall | PendingCall,
        args: tuple[Any, ...],
        spec: CallSpec,
        layout: Layout | None,
        first: Any,
        prepared: Any,
    ) -> Any:
        """The custom op (compiling, exporting, a subclass, torch.func with
        ``as_numpy``), one autograd node running the vjp, or the checked call.

        ``layout`` is ``None`` and ``call`` a :class:`~lazyapply._engine.PendingCall`
        (``lays_out``): Dynamo traces this method, so the op's fake implementation
        lays out; the eager strategies lay out here.
        """
        # (Dynamo folds is_dynamo_compiling() to True, and place() read it: no
        # guard of its own.)
        compiling = self._dynamo_compiling() or self._compiling()
        if compiling or type(first) not in self._plain:
            # Traced by Dynamo: every global and attribute read costs each call of
            # the compiled function a guard, so the call goes straight there.
            return compiled_call(self, call, args, spec, first, compiling)
        ready = self._ready
        live = self._transforms_active()
        if live:
            wrapped = self._any_wrapped(args)
        else:
            # A wrapper outside transforms escaped its transform (dead). Asked here,
            # not through the Dynamo-disabled scan, whose wrapper costs as much as
            # an autograd step's forward: Dynamo never traces this loop (tracing,
            # defer leaves for the op above) nor starts a frame in it.
            wrapped = False
            tensor, is_wrapped = self._tensor, self._wrapped
            for a in args:
                if isinstance(a, tensor) and is_wrapped(a):
                    wrapped = True
                    break
        if wrapped:
            if live and spec.vjp is not None:  # torch.func: the node's grad and vmap
                prep = ready(self, call.func, spec)
                return apply_with_grad(self, None, args, spec, first, prep, call.kwargs)
            if spec.as_numpy:  # the op's vmap rule (the op unwraps a dead wrapper)
                if live and grad_tracked(args):
                    not_differentiable(call.name, self.label(first))
                return op_call(call, args, spec)

        if spec.as_numpy and self._forward_ad._current_level >= 0:
            refuse_dual(self._forward_ad, call.name, self.label(first), args)
        prep = ready(self, call.func, spec)
        checked = prep.checked_call(self, first, args, call.kwargs)
        if (spec.vjp is not None or spec.as_numpy) and needs_grad(args):
            return apply_with_grad(self, checked, args, spec, first, prep)
        # Torch code without a vjp, or under torch.func: torch sees its operations.
        return checked.run(args, call.kwargs)

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        target = super().target(first, xp, deferred=deferred)
        # Outputs go back through torch.asarray itself: array_api_compat's wrapper
        # adds about 0.3 us per output and nothing that a kernel's output needs.
        target.convert = functools.partial(_to_torch, self._torch, target.device)
        if target.device.type == "cpu":
            target.convert = functools.partial(_to_cpu, self._torch, np.ndarray)
        target.move = _move
        target.host = functools.partial(_to_numpy, self._tensor)
        return target


# ``first`` of a question without a call (``deferred``): no device to read.
_NO_ARRAY = types.SimpleNamespace(device=None)


def _to_numpy(tensor: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # np.asarray(t) of a plain tensor is t.__array__(), which is t.numpy() (torch's
    # _tensor.py): called straight, ~0.3 us less; anything else goes through asarray.
    try:
        if len(args) == 1 and type(args[0]) is tensor:
            return (args[0].numpy(),)
        for a in args:
            if type(a) is not tensor and isinstance(a, tensor):  # a subclass: asarray
                return numpy_inputs(args, (tensor,))
        return tuple([a.numpy() if type(a) is tensor else a for a in args])
    except RuntimeError:
        # Inside torch.func.grad (vjp, jacrev, jvp) torch refuses .numpy() of every
        # tensor, even one no transform tracks ("Cannot access data pointer of
        # Tensor that doesn't have storage"). A wrapped (tracked) tensor never gets
        # here (``place`` defers it), so these are constants of every transform:
        # read them with the transforms' interpreter stack set aside.
        import torch

        if not torch._C._are_functorch_transforms_active():  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
            raise
        from torch._functorch.pyfunctorch import temporarily_clear_interpreter_stack

        with temporarily_clear_interpreter_stack():
            return _to_numpy(tensor, args)


def _to_torch(torch: Any, device: Any, o: Any) -> Any:
    return torch.asarray(o, device=device)


def _to_cpu(torch: Any, ndarray: Any, o: Any) -> Any:
    # torch.from_numpy is what torch.asarray(o, device="cpu") does for a writeable
    # array with dimensions, at half the cost (same dtype, same shared memory, same
    # errors); asarray keeps the rest: its warning for a read-only array, its copy
    # of a 0-d one, lists and scalars.
    if type(o) is ndarray and o.ndim and o.flags.writeable:
        return torch.from_numpy(o)
    return torch.asarray(o, device="cpu")


def _move(o: Any, device: Any) -> Any:
    return o.to(device)
