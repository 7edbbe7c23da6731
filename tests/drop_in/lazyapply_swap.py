"""A pytest plugin that swaps lazyapply's ``lazy_apply`` into another project's suite.

Loaded with ``-p lazyapply_swap`` (this folder on ``PYTHONPATH``) by the drop-in
tests, which run array-api-extra's and SciPy's own test files unchanged in a
subprocess. At start-up, before any test module imports the reference, it replaces
``lazy_apply`` wherever the project under test looks it up:

- ``LAZYAPPLY_SWAP=array_api_extra``: ``array_api_extra.lazy_apply`` and
  ``array_api_extra._lazy.lazy_apply``;
- ``LAZYAPPLY_SWAP=scipy``: SciPy's vendored copy, ``scipy._lib.array_api_extra``
  and its ``_lib._lazy`` module (``scipy.cluster.hierarchy`` and
  ``scipy.spatial.distance`` look it up there as ``xpx.lazy_apply`` at each call);
- ``LAZYAPPLY_SWAP=none``: nothing is swapped (the baseline run), calls still counted.

Every call routed through the replacement is counted; at the end each process writes
its count to ``$LAZYAPPLY_SWAP_COUNT_DIR/<pid>.count`` (xdist workers included), so the
driving test proves that the swap was live, and the node ids of its failed tests to
``<pid>.failed``, so that they can be run again with the project's own copy.

``LAZYAPPLY_SWAP_XFAIL`` lists node-id suffixes (``;``-separated) of tests that
differ on purpose; they are marked ``xfail(strict=True)``, so they must still fail.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_CALLS = [0]

#: Modules that hold a ``lazy_apply`` name to replace, per project.
_TARGETS: dict[str, tuple[str, ...]] = {
    "array_api_extra": ("array_api_extra", "array_api_extra._lazy"),
    "scipy": ("scipy._lib.array_api_extra", "scipy._lib.array_api_extra._lib._lazy"),
    "none": (),
}


def _counting(target: Callable[..., Any]) -> Callable[..., Any]:
    # A fresh function, not lazyapply's own: the suites tag it (lazy_xp_function sets
    # attributes on it), which must not leak into lazyapply.
    @functools.wraps(target)
    def lazy_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        _CALLS[0] += 1
        return target(func, *args, **kwargs)

    del lazy_apply.__wrapped__  # inspect.signature must not look through to target
    return lazy_apply


def _swap(project: str) -> None:
    if project == "none":
        return
    import lazyapply

    replacement = _counting(lazyapply.lazy_apply)
    for modname in _TARGETS[project]:
        module = importlib.import_module(modname)
        if not hasattr(module, "lazy_apply"):
            msg = f"lazyapply_swap: {modname} has no lazy_apply to replace"
            raise RuntimeError(msg)
        module.lazy_apply = replacement  # type: ignore[attr-defined]


def _count_baseline(project: str) -> None:
    # The baseline run counts calls of the project's own copy the same way.
    original = importlib.import_module(_TARGETS[project][0]).lazy_apply
    counting = _counting(original)
    for modname in _TARGETS[project]:
        importlib.import_module(modname).lazy_apply = counting


def pytest_configure(config: pytest.Config) -> None:
    # Marks that SciPy's conftest uses at import time and registers only in its own
    # pytest.ini (not shipped in the wheel).
    for mark in ("array_api_backends", "thread_unsafe"):
        config.addinivalue_line("markers", f"{mark}: used by SciPy's conftest")
    project = os.environ.get("LAZYAPPLY_SWAP", "none")
    baseline = os.environ.get("LAZYAPPLY_SWAP_BASELINE")
    if project == "none" and baseline:
        _count_baseline(baseline)
    else:
        _swap(project)


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    suffixes = [s for s in os.environ.get("LAZYAPPLY_SWAP_XFAIL", "").split(";") if s]
    for item in items:
        for suffix in suffixes:
            if item.nodeid.endswith(suffix):
                item.add_marker(
                    pytest.mark.xfail(
                        reason="deliberate difference of lazyapply", strict=True
                    )
                )


_FAILED: list[str] = []
_ROOT: list[Path] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _ROOT.append(session.config.rootpath)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and not hasattr(report, "wasxfail"):
        # Absolute, so that the ids can be passed back to pytest from anywhere.
        path, _, rest = report.nodeid.partition("::")
        _FAILED.append(f"{(_ROOT[0] / path).resolve()}::{rest}")


def pytest_unconfigure(config: pytest.Config) -> None:
    out = os.environ.get("LAZYAPPLY_SWAP_COUNT_DIR")
    if out:
        Path(out, f"{os.getpid()}.count").write_text(str(_CALLS[0]))
        Path(out, f"{os.getpid()}.failed").write_text("\n".join(_FAILED))
