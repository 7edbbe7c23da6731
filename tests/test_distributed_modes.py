"""Chunk-wise modes on a real multi-process ``dask.distributed`` cluster.

Two worker processes on loopback (no dashboard port) run elementwise, gufunc and
stencil kernels, NumPy and Numba ones, plain and ``@lazy``-decorated; every task is
pickled to a worker that imports the kernels from :mod:`tests.modes_kernels`. Results
are compared with NumPy on the whole array.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, lazy_apply

from . import modes_kernels as mk

da = pytest.importorskip("dask.array", reason="dask is not installed")
distributed = pytest.importorskip("distributed", reason="distributed is not installed")

pytestmark = pytest.mark.slow

RNG = np.random.default_rng(7)
X = RNG.standard_normal((40, 30))
W = RNG.standard_normal(30)


def _x(chunks: Any = (10, 15)) -> Any:
    return da.from_array(X, chunks=chunks)


def test_runs_on_the_worker_processes(client: Any) -> None:
    pids = lazy_apply(mk.fill_pid, _x(), elementwise=True, dtype="int64")
    seen = set(np.unique(pids.compute()).tolist())
    workers = set(client.run(os.getpid).values())
    assert seen <= workers
    assert os.getpid() not in seen


def test_elementwise(client: Any) -> None:
    out = lazy_apply(mk.scale_add, _x(), da.from_array(W, chunks=15), elementwise=True)
    assert out.chunks == ((10,) * 4, (15,) * 2)
    np.testing.assert_allclose(out.compute(), 2 * X + W)


def test_signature_one_and_two_outputs(client: Any) -> None:
    dots = lazy_apply(mk.dot_last, _x(), _x(), signature="(n),(n)->()")
    lo, hi = lazy_apply(mk.min_max, _x(), signature="(n)->(),()")
    got_dots, got_lo, got_hi = client.compute([dots, lo, hi], sync=True)
    np.testing.assert_allclose(got_dots, (X * X).sum(-1))
    np.testing.assert_allclose(got_lo, X.min(-1))
    np.testing.assert_allclose(got_hi, X.max(-1))


def test_stencil_edges_included(client: Any) -> None:
    out = lazy_apply(mk.laplace_edge, _x((8, 7)), depth=1)
    np.testing.assert_allclose(out.compute(), mk.laplace_edge(X))
    out = lazy_apply(mk.laplace_raw, _x((8, 7)), depth=1, boundary="periodic")
    expected = mk.laplace_raw(np.pad(X, 1, mode="wrap"))[1:-1, 1:-1]
    np.testing.assert_allclose(out.compute(), expected)


def test_numba_kernels(client: Any) -> None:
    pytest.importorskip("numba", reason="numba is not installed")
    poly = lazy_apply(mk.numba_poly, _x(), elementwise=True)
    norms = lazy_apply(mk.numba_norm, _x(), signature="(n)->()")
    lap = lazy_apply(mk.numba_laplace, _x((8, 7)), depth=1)
    got = client.compute([poly, norms, lap], sync=True)
    np.testing.assert_allclose(got[0], X * X - 3 * X + 1)
    np.testing.assert_allclose(got[1], np.sqrt((X * X).sum(-1)))
    np.testing.assert_allclose(got[2], mk.laplace_edge(X))


def test_decorated_kernels(client: Any) -> None:
    if mk.lazy is None:
        pytest.skip("lazyapply.lazy is not available")
    out = mk.lazy_scale_add(_x(), 1.0)
    lo, hi = mk.lazy_min_max(_x())
    got = client.compute([out, lo, hi], sync=True)
    np.testing.assert_allclose(got[0], 2 * X + 1)
    np.testing.assert_allclose(got[1], X.min(-1))
    np.testing.assert_allclose(got[2], X.max(-1))


def test_block_error_comes_back_from_the_worker(client: Any) -> None:
    out = lazy_apply(mk.block_sum_wrong, _x(), elementwise=True)
    with pytest.raises(
        KernelOutputError, match=r"block_sum_wrong \(dask, elementwise\)"
    ):
        out.compute()
