"""The result of :func:`~lazyapply.testing.check_kernel`: one row per run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CheckRow", "KernelReport"]

Outcome = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class CheckRow:
    """One run of a kernel by :func:`~lazyapply.testing.check_kernel`.

    Attributes
    ----------
    kernel : str
        The kernel's name.
    backend : str
        The backend's name (a :class:`~lazyapply.testing.Backend` value, or
        ``"pickle"`` for the pickling round trip).
    mode : str
        How it ran: ``"eager"``, ``"as_numpy"``, ``"jit"``, ``"vmap"``, a Dask mode
        and chunking such as ``"elementwise, chunks of 1"``, ``"pickle"``...
    outcome : {"ok", "FAIL", "skip"}
        Whether the run matched the NumPy reference, did not, or could not run here.
    detail : str
        What differed, or why the run was skipped; empty when it passed.
    """

    kernel: str
    backend: str
    mode: str
    outcome: Outcome
    detail: str = ""


class KernelReport(list[CheckRow]):
    """The rows of one :func:`~lazyapply.testing.check_kernel` call, in run order.

    ``str(report)`` is the table that the ``AssertionError`` carries on failure.
    """

    @property
    def failures(self) -> list[CheckRow]:
        """The rows whose outcome is ``"FAIL"``."""
        return [r for r in self if r.outcome == "FAIL"]

    @property
    def skipped(self) -> list[CheckRow]:
        """The rows whose outcome is ``"skip"``."""
        return [r for r in self if r.outcome == "skip"]

    @property
    def passed(self) -> list[CheckRow]:
        """The rows whose outcome is ``"ok"``."""
        return [r for r in self if r.outcome == "ok"]

    def table(self) -> str:
        """The rows as aligned text: kernel, backend, mode, outcome, detail.

        Returns
        -------
        str
            A header line, then one line per row; the kernel's name is on every
            line, so a line read alone (a CI log grep) says what failed.
        """
        head = ("kernel", "backend", "mode", "outcome", "detail")
        rows = [
            head,
            *((r.kernel, r.backend, r.mode, r.outcome, r.detail) for r in self),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = (
            "  ".join(cell.ljust(w) for cell, w in zip(row, [*widths, 0], strict=True))
            for row in rows
        )
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()
