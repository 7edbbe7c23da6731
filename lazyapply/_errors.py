"""The library's exceptions.

One base class, :class:`LazyApplyError`; each subclass also derives from the builtin
exception that the reference (``array_api_extra.lazy_apply``) raises in the same
situation, so ``except ValueError`` written against the reference keeps working.
"""

from __future__ import annotations

__all__ = [
    "ArgumentTypeError",
    "KernelOutputError",
    "LazyApplyError",
    "MixedNamespaceError",
    "NotDifferentiableError",
    "SpecError",
]


class LazyApplyError(Exception):
    """Base class of every error raised by lazyapply itself (not by a kernel)."""


class SpecError(LazyApplyError, ValueError):
    """The call's ``shape``/``dtype``/mode declaration is malformed or impossible."""


class MixedNamespaceError(LazyApplyError, TypeError):
    """The arguments belong to several array libraries."""


class ArgumentTypeError(LazyApplyError, TypeError):
    """A positional argument lazyapply cannot pass to a kernel: not an array, a Python
    scalar, ``None`` or a sequence of numbers (e.g. a list that holds arrays)."""


class KernelOutputError(LazyApplyError, ValueError):
    """A kernel returned something that does not match what was declared or inferred."""


class NotDifferentiableError(LazyApplyError, TypeError):
    """A kernel run through a host callback was asked for a derivative."""
