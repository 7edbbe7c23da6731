"""lazyapply: run eager array kernels lazily on every array library.

``import lazyapply`` imports no backend (no dask, jax, torch, cupy or sparse).
"""

from __future__ import annotations

from lazyapply._decorator import LazyFunction, lazy
from lazyapply._errors import (
    ArgumentTypeError,
    KernelOutputError,
    LazyApplyError,
    MixedNamespaceError,
    NotDifferentiableError,
    SpecError,
)
from lazyapply._lazy_apply import lazy_apply
from lazyapply.adapters.jax.native import explain_native  # issue 12; imports no backend

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
