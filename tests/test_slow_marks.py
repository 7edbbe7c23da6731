"""The check of ``tests/_slow.py``: a test that starts a process is marked slow.

pytester runs a small suite in this process, with the plugin loaded, and exactly the
unmarked tests that start a process (or use a cluster fixture) must fail, with the
fix in the message. (The torch.compile rule reads dynamo's counter the same way; a
compile here would cost more than the rest of this file.)
"""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest

pytest_plugins = ["tests._slow"]


@pytest.fixture
def client():
    return "a cluster"
"""

SUITE = """
import multiprocessing
import subprocess
import sys

import pytest


def test_quiet():
    assert sum([1, 2]) == 3


def test_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.slow
def test_subprocess_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_multiprocessing():
    # forkserver: the server forks the child, so no audit event is raised here
    p = multiprocessing.get_context("forkserver").Process(target=int)
    p.start()
    p.join()


def test_cluster(client):
    assert client


@pytest.mark.slow
def test_cluster_marked(client):
    assert client
"""


def test_unmarked_tests_that_start_processes_fail(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    pytester.syspathinsert(str(pytester.path))
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:xdist", "-rA"
    )
    result.assert_outcomes(passed=3, failed=2, errors=1)  # the cluster: at set-up
    out = result.stdout.str()
    for name in ("test_quiet", "test_subprocess_marked", "test_cluster_marked"):
        assert f"PASSED test_suite.py::{name}" in out, out
    for name, why in [
        ("test_subprocess", "started a process (subprocess.Popen"),
        ("test_multiprocessing", "started a multiprocessing process"),
        ("test_cluster", "uses a dask.distributed cluster"),
    ]:
        assert f"test_suite.py::{name} {why}" in out, out
    assert "add @pytest.mark.slow" in out
