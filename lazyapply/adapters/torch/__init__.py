"""PyTorch tensors, on any device (CPU, CUDA, ``meta``): the kernel runs now.

With ``as_numpy=True`` a tensor goes through ``np.asarray``: PyTorch itself refuses
CUDA and ``meta`` tensors and tensors that require grad, with its own error, so no
data leaves a device and no autograd graph is silently cut.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from lazyapply.adapters._base import Adapter, Target
from lazyapply.adapters.torch._grad import apply_with_grad, needs_grad
from lazyapply.adapters.torch._op import call_op
from lazyapply.spec import CallSpec

__all__ = ["TorchAdapter"]


class TorchAdapter(Adapter):
    name = "torch"
    # Its deferral strategies (custom op, autograd node) are chosen in ``intercept``.
    defers = False

    def __init__(self) -> None:
        import torch

        self.native = (torch.Tensor,)
        self._torch = torch
        self._xp: Any = None
        # torch.compiler.is_compiling is folded to True by Dynamo (no guard on a flag).
        self._compiling = torch.compiler.is_compiling
        self._plain = (torch.Tensor, torch.nn.Parameter)
        # torch.func.vmap/grad/jvp wrap tensors (whose type is still torch.Tensor).
        self._wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)

    def namespace(self, x: Any) -> Any:
        if self._xp is None:
            import array_api_compat.torch as xp

            self._xp = xp
        return self._xp

    def label(self, first: Any) -> str:
        return f"torch on {first.device}"

    # --- hook (issues 10, 11): autograd node, custom op under compile -----------
    intercepts: ClassVar[bool] = True

    def intercept(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
        first: Any,
    ) -> Any:
        """The call's result where autograd or a compiler must see it, else ``None``.

        Compiling or exporting, a tensor subclass (the fake and functional tensors of
        a trace), a torch.func transform of an as_numpy kernel: the kernel's custom
        op. (A kernel of torch code gets torch.func's tensors as they are.) A tensor
        that requires grad: one autograd node whose backward is the vjp.
        """
        if (
            self._compiling()
            or type(first) not in self._plain
            or (spec.as_numpy and self._wrapped(first))
        ):
            return call_op(self._torch, func, spec, args, kwargs)
        # (A kernel of torch code without a vjp: torch differentiates its code.)
        if (
            (first.requires_grad or len(args) > 1)
            and (spec.vjp is not None or spec.as_numpy)
            and needs_grad(args)
        ):
            return apply_with_grad(self, func, args, kwargs, spec, xp, first)
        return None

    # --- end hook ------------------------------------------------------------

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        target = super().target(first, xp, deferred=deferred)
        # Outputs go back through torch.asarray itself: array_api_compat's wrapper
        # adds about 0.3 us per output and nothing that a kernel's output needs.
        target.convert = functools.partial(_to_torch, self._torch, target.device)
        target.move = _move
        return target


def _to_torch(torch: Any, device: Any, o: Any) -> Any:
    return torch.asarray(o, device=device)


def _move(o: Any, device: Any) -> Any:
    return o.to(device)
