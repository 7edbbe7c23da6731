"""NumPy and any other eager array-API library (array-api-strict, ...)."""

from __future__ import annotations

from typing import Any

from lazyapply.adapters._base import Adapter, Target

__all__ = ["GenericAdapter", "NumPyAdapter"]


class NumPyAdapter(Adapter):
    """NumPy arrays and NumPy scalars: the kernel runs now, on the caller's arrays."""

    name = "numpy"
    devices = False

    def __init__(self) -> None:
        import numpy as np

        # NumPy scalars are claimed as arguments (see ``claims``) but are not a
        # finished output: a kernel's ``np.float64`` becomes a 0-d array, as
        # ``asarray`` makes it in array_api_extra.lazy_apply.
        self.native = (np.ndarray,)
        self._xp: Any = None

    @staticmethod
    def claims(x: Any) -> bool:
        import numpy as np  # a hard dependency: already imported by the caller

        return isinstance(x, (np.ndarray, np.generic))

    def namespace(self, x: Any) -> Any:
        if self._xp is None:
            import array_api_compat.numpy as xp

            self._xp = xp
        return self._xp

    def device(self, x: Any) -> Any:
        return None  # one device: NumPy's asarray needs none

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        target = super().target(first, xp, deferred=deferred)
        if xp is None:
            import numpy as np

            target.convert = np.asarray  # what the compat wrapper calls, for less
        return target


class GenericAdapter(Adapter):
    """An eager library that implements the array API itself (``__array_namespace__``).

    One instance per namespace, so two different libraries are never mixed.
    """

    def __init__(self, xp: Any, array_type: type) -> None:
        self._xp = xp
        self.native = (array_type,)
        self.name = getattr(xp, "__name__", type(xp).__name__)  # type: ignore[misc]

    def namespace(self, x: Any) -> Any:
        return self._xp

    def label(self, first: Any) -> str:
        return f"{self.name} on {first.device}"

    def place(self, args: tuple[Any, ...], first: Any, spec: Any) -> Any:
        return first.device  # never deferred: the device, in one frame
