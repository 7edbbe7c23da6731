"""The check of ``tests/_assertions.py``: a test over a backend must assert something.

A pytest run in a subprocess (pytester) loads the plugin on a small suite of its own
and must fail exactly the tests over ``backend`` that passed without an assertion.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
import pytest

pytest_plugins = ["tests._assertions"]


@pytest.fixture(params=["numpy", "meta"])
def backend(request):
    return request.param
"""

SUITE = """
import numpy as np
import pytest


def test_asserts(backend):
    assert backend


def test_guarded_assert(backend):
    if backend == "numpy":  # what `if backend.has_values:` did on torch's meta device
        assert backend


def test_nothing(backend):
    str(backend)


def test_numpy_testing(backend):
    np.testing.assert_array_equal(np.arange(2), [0, 1])


def test_raises(backend):
    with pytest.raises(ZeroDivisionError):
        1 / 0


def test_warns(backend):
    with pytest.warns(UserWarning):
        import warnings

        warnings.warn("w", UserWarning, stacklevel=1)


def test_skip_with_reason(backend):
    if backend == "meta":
        pytest.skip("meta: no values")
    assert backend


def test_without_backend_is_not_checked():
    str("no backend fixture: out of the check's scope")


@pytest.mark.parametrize("path", ["eager"])
def test_path_is_checked(path):
    str(path)
"""


@pytest.mark.slow
def test_a_test_over_a_backend_without_assertion_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    pytester.makeini("[pytest]\nenable_assertion_pass_hook = true\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=11, failed=4, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"test_suite.py::{name} passed without running a single assertion: *"
            for name in (
                "test_guarded_assert[[]meta[]]",
                "test_nothing[[]numpy[]]",
                "test_nothing[[]meta[]]",
                "test_path_is_checked[[]eager[]]",
            )
        ],
        consecutive=False,
    )
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert len(failed) == 4
    assert not [line for line in failed if "test_asserts" in line]


def test_the_suite_enables_the_hook(pytestconfig: pytest.Config) -> None:
    # Without it pytest never calls pytest_assertion_pass: every test would fail.
    assert pytestconfig.getini("enable_assertion_pass_hook") is True
