"""Decorated module-level kernels computed by worker processes of a real LocalCluster.

The workers import ``tests.kernels`` to unpickle what they are sent: the graph's
kernel calls, and decorated kernels themselves (pickled by reference).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from . import kernels

da = pytest.importorskip("dask.array", reason="dask is not installed")
distributed = pytest.importorskip("distributed", reason="distributed is not installed")

pytestmark = pytest.mark.slow


def _worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def test_graph_runs_in_worker_processes(client: Any) -> None:
    x = da.from_array(np.arange(6.0), chunks=3)
    pids = kernels.worker_pid(x).compute()  # the client is the default scheduler
    assert set(np.unique(pids)) <= _worker_pids(client)
    assert os.getpid() not in set(pids)


def test_module_level_kernels(client: Any) -> None:
    a = np.arange(8.0)
    x = da.from_array(a, chunks=3)
    total = kernels.scaled_sum(x, x, scale=0.5)
    diffs = kernels.steps(x[x > 2.5])  # unknown size: NaN chunks
    doubled = kernels.Scaler(2.0).apply(x)
    got = client.compute([total, diffs, doubled], sync=True)
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], np.diff(a[a > 2.5]))
    np.testing.assert_array_equal(got[2], a * 2)


def test_numba_kernel(client: Any) -> None:
    if kernels.running_max is None:
        pytest.skip("numba is not installed")
    a = np.asarray([[3.0, 1.0, 4.0, 1.0, 5.0], [9.0, 2.0, 6.0, 5.0, 3.0]])
    x = da.from_array(a, chunks=(1, 2))
    out = client.compute(kernels.running_max(x), sync=True)
    np.testing.assert_array_equal(out, np.maximum.accumulate(a, axis=1))


def test_decorated_kernel_sent_to_workers(client: Any) -> None:
    # The LazyFunction itself travels (by reference) and runs eagerly on NumPy there.
    future = client.submit(kernels.scaled_sum, np.arange(3.0), np.ones(3), scale=2.0)
    np.testing.assert_array_equal(future.result(), [2.0, 4.0, 6.0])
    future = client.submit(kernels.worker_pid, np.zeros(2))
    assert set(future.result()) <= _worker_pids(client)
