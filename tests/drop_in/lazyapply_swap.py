"""A pytest plugin that swaps lazyapply's ``lazy_apply`` into another project's suite.

Loaded with ``-p lazyapply_swap`` (this folder on ``PYTHONPATH``) by the drop-in
tests, which run array-api-extra's and SciPy's own test files unchanged in a
subprocess. At start-up, before any test module imports the reference, it replaces
``lazy_apply`` wherever the project under test looks it up:

- ``LAZYAPPLY_SWAP=array_api_extra``: ``array_api_extra.lazy_apply`` and
  ``array_api_extra._lazy.lazy_apply``;
- ``LAZYAPPLY_SWAP=scipy``: SciPy's vendored copy, ``scipy._lib.array_api_extra``
  (with its ``_lazy`` module) and the name re-exported by ``scipy._lib._array_api``,
  plus the modules that imported it by name (``scipy.cluster.hierarchy``,
  ``scipy.spatial.distance``);
- ``LAZYAPPLY_SWAP=none``: nothing is swapped (the baseline run), calls still counted.

Every call routed through the replacement is counted; at the end each process writes
its count to ``$LAZYAPPLY_SWAP_COUNT_DIR/<pid>.count`` (xdist workers included), so the
driving test proves that the swap was live.

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
    "scipy": (
        "scipy._lib.array_api_extra",
        "scipy._lib.array_api_extra._lazy",
        "scipy._lib._array_api",
        "scipy.cluster.hierarchy",
        "scipy.spatial.distance",
    ),
    "none": (),
}
_ORIGINAL: dict[str, tuple[str, ...]] = {
    "array_api_extra": ("array_api_extra", "lazy_apply"),
    "scipy": ("scipy._lib.array_api_extra", "lazy_apply"),
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
    modname, attr = _ORIGINAL[project]
    for target in _TARGETS[project]:
        module = importlib.import_module(target)
        if hasattr(module, attr):
            module.lazy_apply = _counting(getattr(module, attr))  # type: ignore[attr-defined]
    del modname


def pytest_configure(config: pytest.Config) -> None:
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


def pytest_unconfigure(config: pytest.Config) -> None:
    out = os.environ.get("LAZYAPPLY_SWAP_COUNT_DIR")
    if out:
        Path(out, f"{os.getpid()}.count").write_text(str(_CALLS[0]))
