"""A pytest plugin: a test that starts a process or compiles with torch is marked slow.

``python -m pytest -m "not slow"`` is the fast subset for daily work; a test belongs to
it unless it carries ``@pytest.mark.slow`` (or its module's ``pytestmark``). Rather
than timing tests, which would depend on the machine, this plugin fails an unmarked
test that does one of the things that make tests slow, found by what it did:

- it uses a fixture that starts a cluster (:data:`HEAVY_FIXTURES`): failed before the
  fixture runs;
- it started a process, counted from Python's audit events (``subprocess.Popen``,
  ``os.fork``, ``os.posix_spawn``) and from ``multiprocessing``'s process counter
  (a Dask ``processes`` scheduler, a spawn pool): each new interpreter imports NumPy,
  and often JAX or torch, for seconds;
- it compiled a frame with ``torch.compile`` (or ``torch.export``), counted by
  dynamo's own ``frames`` counter.

Work done in a test's fixtures counts for the test; a fixture shared by several tests
(module or session scope) counts for whichever runs first, so every test that uses
one that starts a process is marked (tests/test_cli.py's ``full_report``). A renamed
or new test is held to the same rule, which a list of test names kept elsewhere
could not do. Loaded by ``tests/conftest.py``; tested in ``tests/test_slow_marks.py``
with pytester.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["HEAVY_FIXTURES", "LOOKUPS", "PROCESS_EVENTS"]

#: Fixtures that start processes, with what they start.
HEAVY_FIXTURES = {
    "dask_cluster": "a dask.distributed cluster of worker processes",
    "client": "a dask.distributed cluster of worker processes",
}

#: Audit events (PEP 578) raised when a process is started.
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn"}
)


@dataclass
class _Record:
    """What one running test did, and the counters when it started."""

    processes: int
    frames: int
    started: list[str] = field(default_factory=list)


#: One record per running test; a stack, since pytester runs tests inside a test.
_RUNNING: list[_Record] = []


#: Programs that libraries run to look something up on first import (ctypes'
#: find_library runs ldconfig): whichever test imports the library first runs them.
LOOKUPS = frozenset({"ldconfig", "uname"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in PROCESS_EVENTS or not _RUNNING:
        return
    # An audit hook's exception would propagate into the Popen call itself.
    with contextlib.suppress(Exception):
        _record(event, args)


def _record(event: str, args: tuple[Any, ...]) -> None:
    what = args[1] if event == "subprocess.Popen" and len(args) > 1 else args
    if event == "subprocess.Popen":
        program = args[0] or what
        if not isinstance(program, (str, bytes, os.PathLike)):
            program = next(iter(program), "")
        if os.path.basename(os.fsdecode(program)).split(" ")[0] in LOOKUPS:
            return
    _RUNNING[-1].started.append(f"{event} {str(what)[:80]}")


sys.addaudithook(_audit)  # once per process: the module is imported once


def _processes_started() -> int:
    """How many ``multiprocessing`` processes this interpreter has made."""
    import multiprocessing.process as mp

    # An itertools.count: its repr is the one way to read it without advancing it.
    return int(repr(mp._process_counter)[len("count(") : -1])  # type: ignore[attr-defined]


def _frames_compiled() -> int:
    """Frames torch's dynamo has compiled (0 before torch.compile was imported)."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return 0
    return int(utils.counters["frames"]["total"])


def _is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def _fail(item: pytest.Item, what: str) -> None:
    msg = (
        f"{item.nodeid} {what} and is not marked slow: add @pytest.mark.slow (or a "
        "module-level pytestmark) so that the fast subset, pytest -m 'not slow', "
        "leaves it to the full run"
    )
    pytest.fail(msg, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: Any
) -> Generator[None, Any, Any]:
    _RUNNING.append(_Record(_processes_started(), _frames_compiled()))
    try:
        return (yield)
    finally:
        inner = _RUNNING.pop()
        if _RUNNING:  # a test run by pytester inside a test: its work is its own
            outer = _RUNNING[-1]
            outer.processes += _processes_started() - inner.processes
            outer.frames += _frames_compiled() - inner.frames


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _is_slow(item):
        return
    heavy = [
        HEAVY_FIXTURES[f]
        for f in getattr(item, "fixturenames", ())
        if f in HEAVY_FIXTURES
    ]
    if heavy:
        _fail(item, f"uses {heavy[0]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    result = yield
    if _is_slow(item) or not _RUNNING:
        return result
    record = _RUNNING[-1]
    if record.started:
        _fail(item, f"started a process ({record.started[0]})")
    if _processes_started() != record.processes:
        _fail(
            item, "started a multiprocessing process (a process pool, Dask's processes)"
        )
    if _frames_compiled() != record.frames:
        _fail(item, "compiled with torch.compile (dynamo compiled a frame)")
    return result
