"""The result of :func:`~lazyapply.testing.check_kernel`: one record per run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CheckFailed", "CheckRow", "KernelReport"]

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
    message : str
        What differed, or why the run was skipped; empty when it passed.
    fix : str
        What to change (a declaration, the kernel, an option), when it is known;
        empty otherwise.
    """

    kernel: str
    backend: str
    mode: str
    outcome: Outcome
    message: str = ""
    fix: str = ""

    @property
    def detail(self) -> str:
        """The message, followed by the fix when there is one (the table's text)."""
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message

    def record(self) -> dict[str, str]:
        """The row as a plain dict (``python -m lazyapply check --json``)."""
        return dataclasses.asdict(self)


class KernelReport(list[CheckRow]):
    """The rows of one :func:`~lazyapply.testing.check_kernel` call, in run order.

    ``str(report)`` is the table that the ``AssertionError`` carries on failure;
    :meth:`records` the same rows as dicts.
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

    def records(self) -> list[dict[str, str]]:
        """The rows as dicts with the keys kernel, backend, mode, outcome, message
        and fix, ready for ``json.dumps``."""
        return [r.record() for r in self]

    def summary(self) -> str:
        """One line: the kernel and how many runs passed, failed and were skipped."""
        name = self[0].kernel if self else "?"
        counts = (
            f"{len(self.passed)} ok, {len(self.failures)} failed, "
            f"{len(self.skipped)} skipped"
        )
        verdict = "FAILED" if self.failures else "passed"
        return f"check_kernel: {name} {verdict} ({counts})"

    def table(self) -> str:
        """The rows as aligned text: kernel, backend, mode, outcome, detail.

        Returns
        -------
        str
            A header line, then one line per row; the kernel's name is on every
            line, so a line read alone (a CI log grep) says what failed. The detail
            is the message, then ``"; fix: ..."`` when a fix is known.
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


class CheckFailed(AssertionError):
    """Raised by :func:`~lazyapply.testing.check_kernel` when a run failed.

    An ``AssertionError`` (so pytest shows it as a test failure) whose message is the
    report's table; ``report`` holds the rows.
    """

    def __init__(self, report: KernelReport) -> None:
        name = report[0].kernel if report else "?"
        failed = len(report.failures)
        super().__init__(
            f"check_kernel: {name} failed {failed} of {len(report)} runs\n{report}"
        )
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (CheckFailed, (self.report,))


CheckFailed.__module__ = "lazyapply.testing"  # as tracebacks and doctests show it
