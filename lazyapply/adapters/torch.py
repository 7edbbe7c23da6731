"""PyTorch tensors, on any device (CPU, CUDA, ``meta``): the kernel runs now.

With ``as_numpy=True`` a tensor goes through ``np.asarray``: PyTorch itself refuses
CUDA and ``meta`` tensors and tensors that require grad, with its own error, so no
data leaves a device and no autograd graph is silently cut.
"""

from __future__ import annotations

import functools
from typing import Any

from ._base import Adapter, Target

__all__ = ["TorchAdapter"]


class TorchAdapter(Adapter):
    name = "torch"
    defers = True

    def __init__(self) -> None:
        import torch

        self.native = (torch.Tensor,)
        self._torch = torch
        self._xp: Any = None

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
