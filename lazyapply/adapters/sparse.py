"""pydata/sparse arrays: the kernel runs now and sees sparse arrays.

With ``as_numpy=True`` sparse refuses implicit densification with its own
``RuntimeError`` (unless the user set ``SPARSE_AUTO_DENSIFY``): a sparse array is
never densified behind the caller's back.
"""

from __future__ import annotations

from typing import Any

from lazyapply.adapters._base import Adapter

__all__ = ["SparseAdapter"]


class SparseAdapter(Adapter):
    name = "sparse"
    devices = False

    def __init__(self) -> None:
        import sparse

        # The concrete formats first: outputs are matched by exact type on the hot
        # path (``type(out) in native``), and a COO is never a SparseArray exactly.
        formats = (getattr(sparse, n, None) for n in ("COO", "GCXS", "DOK"))
        self.native = (*(f for f in formats if f is not None), sparse.SparseArray)
        self._xp = sparse

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        sparse = sys.modules.get("sparse")
        return sparse is not None and isinstance(x, sparse.SparseArray)

    def namespace(self, x: Any) -> Any:
        return self._xp

    def device(self, x: Any) -> Any:
        return None  # sparse.asarray takes no device; CPU only
