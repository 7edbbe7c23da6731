"""CuPy arrays: the kernel runs now, on the GPU.

With ``as_numpy=True`` CuPy refuses the implicit device-to-host copy with its own
``TypeError``; lazyapply does not work around it (call ``.get()`` yourself if a copy
to the host is what you want).
"""

from __future__ import annotations

from typing import Any

from lazyapply.adapters._base import Adapter

__all__ = ["CuPyAdapter"]


class CuPyAdapter(Adapter):
    name = "cupy"

    def __init__(self) -> None:
        import cupy

        # Where CuPy is not installed, pyright resolves "cupy" to this module.
        self.native = (cupy.ndarray,)  # pyright: ignore[reportAttributeAccessIssue]
        self._xp: Any = None

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        cupy = sys.modules.get("cupy")
        return cupy is not None and isinstance(x, cupy.ndarray)

    def namespace(self, x: Any) -> Any:
        if self._xp is None:
            import array_api_compat.cupy as xp

            self._xp = xp
        return self._xp

    def label(self, first: Any) -> str:
        return f"cupy on {first.device}"
