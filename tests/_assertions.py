"""A pytest plugin: a test over a backend that ran no assertion fails.

A behaviour written once over ``backend`` (or ``path``) runs on a dozen libraries and
modes. Where one of them cannot check anything (torch's ``meta`` device holds no
values), a guard such as ``if backend.has_values:`` would let the test pass having
checked nothing. This plugin counts, per test, every passing ``assert`` statement
(pytest's ``pytest_assertion_pass`` hook, enabled by ``enable_assertion_pass_hook``)
and every call of ``numpy.testing.assert_*``, ``torch.testing.assert_close``,
``pytest.raises`` and ``pytest.warns``. A test that uses the ``backend`` or ``path``
fixture, passed, and counted none fails with a message saying so. Where nothing can
be checked, the test says why with ``pytest.skip(reason)``
(``Backend.values_or_skip`` does that for values).

Loaded by ``tests/conftest.py`` (``pytest_plugins``); tested in
``tests/test_assertion_check.py`` with pytester.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pytest

__all__ = ["FIXTURES", "count"]

#: The fixtures whose tests must assert: the ones that run a behaviour per backend.
FIXTURES = frozenset({"backend", "path"})

_count = [0]


def count() -> int:
    """Assertions counted since the current test started."""
    return _count[0]


def _counting(f: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(f, "_lazyapply_counted", False):
        return f

    @functools.wraps(f)
    def counted(*args: Any, **kwargs: Any) -> Any:
        _count[0] += 1
        return f(*args, **kwargs)

    counted._lazyapply_counted = True  # type: ignore[attr-defined]
    return counted


def _wrap_module(module: Any, names: list[str]) -> None:
    for name in names:
        original = getattr(module, name, None)
        if callable(original):
            setattr(module, name, _counting(original))


# Looked up as attributes at each call (``np.testing.assert_allclose(...)``), so
# wrapping the module's attributes sees every call, whenever the test module was
# imported.
_wrap_module(np.testing, [n for n in dir(np.testing) if n.startswith("assert_")])
_wrap_module(pytest, ["raises", "warns"])


def pytest_assertion_pass(item: pytest.Item, lineno: int, orig: str, expl: str) -> None:
    _count[0] += 1


def _applies(item: pytest.Item) -> bool:
    return bool(FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    torch_testing = sys.modules.get("torch.testing")
    if torch_testing is not None:  # imported by a test module, not by this plugin
        _wrap_module(torch_testing, ["assert_close"])
    _count[0] = 0
    result = yield
    if _applies(item) and _count[0] == 0:
        msg = (
            f"{item.nodeid} passed without running a single assertion: assert "
            "something about the result on this backend, or pytest.skip(reason) "
            "where nothing can be checked (Backend.values_or_skip for values)"
        )
        pytest.fail(msg, pytrace=False)
    return result
