"""The output check: one small, pure object that every path shares.

:class:`OutputCheck` holds what a call's outputs must be (a shape and a dtype per
output, declared or inferred) and answers with a :class:`KernelOutputError` or
``None``. The eager fast path, the JAX host callback and every Dask block use it, so
each message is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._errors import KernelOutputError

__all__ = ["OutputCheck"]

_KIND_HINTS = {
    "elementwise": (
        "an elementwise kernel returns one value per element of its (broadcast) input "
        "block; if it needs the whole array, drop elementwise=True"
    ),
    "stencil": (
        "a stencil kernel (depth=) returns an array shaped like its overlapped input "
        "block; if it changes the shape, drop depth="
    ),
}


class OutputCheck:
    """Expected shapes and dtypes of a call's outputs.

    Parameters
    ----------
    shapes, dtypes
        One entry per output; ``None`` (whole, or per size) is not checked.
    multi
        The kernel returns a sequence of outputs.
    declared
        ``(shape_declared, dtype_declared)``: chooses the hint of a message.
    kind
        The chunk-wise mode (``"elementwise"``, ``"stencil"``, ``"signature ..."``),
        whose blocks are checked, or ``""`` for whole arrays.
    """

    __slots__ = ("declared", "dtypes", "kind", "multi", "shapes")

    def __init__(
        self,
        shapes: tuple[Any, ...] | None,
        dtypes: tuple[Any, ...] | None,
        multi: bool,
        declared: tuple[bool, bool] = (True, True),
        kind: str = "",
    ) -> None:
        self.shapes = shapes
        self.dtypes = dtypes
        self.multi = multi
        self.declared = declared
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.shapes, self.dtypes, self.multi, self.declared, self.kind)
        return (OutputCheck, state)

    def shape_error(
        self,
        i: int,
        got: tuple[int, ...],
        lead: tuple[int, ...],
        where: str | Callable[[], str],
    ) -> KernelOutputError | None:
        """A mismatch of output ``i``'s shape, after ``lead`` batch dimensions.

        ``where`` may be a callable, so a successful check formats no text.
        """
        if self.shapes is None:
            return None
        expected = self.shapes[i]
        if not lead and got == expected:
            return None
        full = (*lead, *expected)
        if len(got) == len(full) and all(
            e is None or e == g for e, g in zip(full, got, strict=True)
        ):
            return None
        return self.error(i, "shape", full, got, where() if callable(where) else where)

    def error(
        self, i: int, what: str, expected: Any, got: Any, where: str
    ) -> KernelOutputError:
        """The one message of a mismatch: kernel and backend, expected, got, fix."""
        if self.kind and what == "shape":
            hint = _KIND_HINTS.get(
                self.kind,
                f"a kernel with {self.kind} keeps its inputs' loop dimensions and "
                "returns the declared core dimensions; fix the kernel, the signature "
                "or shape=",
            )
            block = " of a block"
        else:
            block = ""
            hint = _hint(what, self.declared[what == "dtype"])
        msg = (
            f"{where}: output {i}{block} has {what} {show(got)}, expected "
            f"{show(expected)}; {hint}"
        )
        return KernelOutputError(msg)

    def count_error(self, got: Any, where: str) -> KernelOutputError:
        """The kernel returned the wrong number (or kind) of outputs."""
        n = len(self.shapes or self.dtypes or ()) or "several"
        if not self.multi:
            msg = (
                f"{where}: the kernel returned a {type(got).__name__} of "
                f"{len(got)} items where one array was expected; if they are the "
                "values of one array, return np.asarray(...) of them (np.stack for "
                "arrays); to return several outputs, declare one shape per output "
                "(shape=[(...), (...)])"
            )
        elif isinstance(got, (str, bytes)) or not hasattr(got, "__len__"):
            msg = (
                f"{where}: the kernel was declared with {n} outputs but returned "
                f"{type(got).__name__}; return a tuple of arrays"
            )
        else:
            msg = (
                f"{where}: the kernel was declared with {n} outputs but returned "
                f"{len(got)}; return one array per declared shape, or fix shape="
            )
        return KernelOutputError(msg)


def _hint(what: str, declared: bool) -> str:
    if declared:
        return f"fix the kernel or the declared {what}="
    source = "their broadcast shape" if what == "shape" else "their result_type"
    return (
        f"the {what} was inferred from the inputs ({source}); declare {what}= with "
        "what the kernel returns"
    )


def show(value: Any) -> str:
    """A dtype or shape as a reader expects it (NumPy scalar types by name)."""
    if isinstance(value, type) and hasattr(value, "dtype"):
        import numpy as np

        if issubclass(value, np.generic):
            return np.dtype(value).name
    return str(value)
