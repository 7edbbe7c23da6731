"""lazyapply: run eager array kernels lazily on every array library.

``import lazyapply`` imports no backend (no dask, jax, torch, cupy or sparse).
"""

from __future__ import annotations

from ._decorator import LazyFunction, lazy
from ._errors import (
    ArgumentTypeError,
    KernelOutputError,
    LazyApplyError,
    MixedNamespaceError,
    NotDifferentiableError,
    SpecError,
)
from ._lazy_apply import lazy_apply
from .adapters._jax_native import explain_native  # issue 12; imports no backend

__all__ = [
    "ArgumentTypeError",
    "KernelOutputError",
    "LazyApplyError",
    "LazyFunction",
    "MixedNamespaceError",
    "NotDifferentiableError",
    "SpecError",
    "explain_native",
    "lazy",
    "lazy_apply",
]

__version__ = "0.1.0"
