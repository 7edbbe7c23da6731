"""Dask, default mode: one deferred task on the whole array.

Inputs are merged into one chunk inside the task, the kernel never runs on the 0-size
``_meta``, nothing is computed during the call, the graph key starts with the kernel's
name (through ``functools.partial`` too), chunks of another library (sparse) reach the
kernel as they are, and unknown (NaN) sizes are handled.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, lazy_apply

from .conftest import count_dask_computes

da = pytest.importorskip("dask.array", reason="dask[array] is not installed")
dask = pytest.importorskip("dask")
xpx = pytest.importorskip("array_api_extra", reason="the reference is not installed")


class Recorder:
    """A kernel that records the type and shape of every input it is called with."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[type, tuple[int, ...]]]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append([(type(a), tuple(getattr(a, "shape", ()))) for a in args])
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out


def add_offset(a: Any, offset: float) -> Any:
    return a + offset


def _lazy(*args: Any, **kwargs: Any) -> Any:
    with count_dask_computes() as counter:
        out = lazy_apply(*args, **kwargs)
    assert counter.count == 0, "lazy_apply computed the Dask graph"
    return out


def test_one_task_on_merged_inputs() -> None:
    rec = Recorder()
    x = da.from_array(np.arange(24.0).reshape(4, 6), chunks=(2, 3))
    y = da.from_array(np.ones((4, 6)), chunks=(4, 2))  # different chunking
    out = _lazy(rec, x, y)
    assert rec.calls == []  # never run on the 0-size meta, nor during the call
    assert out.numblocks == (1, 1)
    assert out.chunks == ((4,), (6,))
    # The output layer holds one kernel task, and one merge task per multi-block
    # input (separate, so the scheduler frees the blocks before the kernel runs).
    layer = dict(out.dask.layers[out.name])
    kernel_keys = [k for k in layer if k[0] == out.name]
    merge_keys = sorted(k for k in layer if "-merge-" in k[0])
    assert len(kernel_keys) == 1
    assert [k[1] for k in merge_keys] == [0, 1]  # the positions of x and y
    assert all(k[0].startswith("Recorder-merge-") for k in merge_keys)
    assert len(layer) == 3
    np.testing.assert_array_equal(out.compute(), np.arange(24.0).reshape(4, 6) + 1)
    assert rec.calls == [[(np.ndarray, (4, 6)), (np.ndarray, (4, 6))]]


def test_single_chunk_input_not_concatenated() -> None:
    rec = Recorder()
    x = da.from_array(np.arange(5.0), chunks=5)
    out = _lazy(rec, x, 1.0)
    np.testing.assert_array_equal(out.compute(), np.arange(5.0) + 1)
    assert rec.calls == [[(np.ndarray, (5,)), (float, ())]]


def test_key_prefixed_with_kernel_name() -> None:
    x = da.arange(6.0, chunks=2)
    assert _lazy(add_offset, x, 1.0).name.startswith("add_offset-")
    partial = functools.partial(functools.partial(add_offset), offset=2.0)
    out = _lazy(partial, x)
    assert out.name.startswith("add_offset-")
    np.testing.assert_array_equal(out.compute(), np.arange(6.0) + 2)


def test_reference_loses_partial_name() -> None:
    """The defect of array_api_extra 0.11.5 that the test above guards against."""
    x = da.arange(6.0, chunks=2)
    ref = xpx.lazy_apply(functools.partial(add_offset, offset=2.0), x)
    assert not ref.name.startswith("add_offset")


def test_keys_distinguish_calls() -> None:
    x = da.arange(6.0, chunks=2)
    a = _lazy(add_offset, x, 1.0)
    assert _lazy(add_offset, x, 1.0).name == a.name  # deterministic
    assert _lazy(add_offset, x, 2.0).name != a.name
    b = _lazy(add_offset, x, 1.0, dtype="float32")
    assert b.name != a.name
    with pytest.raises(KernelOutputError):  # float64 kernel output, float32 declared
        b.compute()


def test_zero_computes_and_kernel_runs_once_for_several_outputs() -> None:
    calls: list[int] = []

    def split(a: Any) -> tuple[Any, Any]:
        calls.append(a.size)
        return a[:2], a[2:]

    x = da.arange(6.0, chunks=2)
    first, rest = _lazy(split, x, shape=[(2,), (4,)], dtype=["float64", "float64"])
    assert calls == []
    assert first.name.startswith("split-")
    assert rest.name.startswith("split-")
    got = dask.compute(first, rest)
    np.testing.assert_array_equal(got[0], [0.0, 1.0])
    np.testing.assert_array_equal(got[1], [2.0, 3.0, 4.0, 5.0])
    assert calls == [6]


# --------------------------------------------------------------- unknown (NaN) sizes
def _unknown(n: int = 6) -> Any:
    x = da.arange(float(n), chunks=2)
    return x[x >= 0]  # every element kept, but Dask cannot know that


def test_two_unknown_size_inputs() -> None:
    a, b = _unknown(), _unknown()
    assert np.isnan(a.shape[0])
    out = _lazy(lambda u, v: u + v, a, b)
    assert np.isnan(out.shape[0])
    np.testing.assert_array_equal(out.compute(), 2 * np.arange(6.0))


def test_unknown_with_known_size() -> None:
    a = _unknown(3)
    b = da.ones(3, chunks=3)
    out = _lazy(lambda u, v: u + v, a, b)
    assert out.shape == (3,)  # the known size wins; the kernel's broadcast checks it
    np.testing.assert_array_equal(out.compute(), np.arange(3.0) + 1)


def test_reference_compares_unknown_sizes_by_identity() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        xpx.lazy_apply(lambda u, v: u + v, _unknown(), _unknown())
    with pytest.raises(ValueError, match="shape mismatch"):
        xpx.lazy_apply(lambda u, v: u + v, _unknown(3), da.ones(3, chunks=3))


def test_shape_with_nan_is_one_output() -> None:
    a = _unknown()
    out = _lazy(lambda u: u * 2, a, shape=a.shape)
    assert not isinstance(out, tuple)
    assert np.isnan(out.shape[0])
    np.testing.assert_array_equal(out.compute(), 2 * np.arange(6.0))
    with pytest.raises(TypeError):  # the reference reads (nan,) as several shapes
        xpx.lazy_apply(lambda u: u * 2, a, shape=a.shape)


def test_unknown_output_size_is_nan_chunk() -> None:
    x = da.arange(6.0, chunks=2)
    out = _lazy(lambda u: u[u > 2], x, shape=(None,))
    assert np.isnan(out.shape[0])
    np.testing.assert_array_equal(out.compute(), [3.0, 4.0, 5.0])


# --------------------------------------------------------------- metadata checks
def test_declared_metadata_checked_at_compute() -> None:
    x = da.arange(6.0, chunks=2)
    out = _lazy(lambda u: u, x, shape=(5,), dtype="float32")
    assert out.shape == (5,)  # the declaration, until the task runs
    with pytest.raises(
        KernelOutputError, match=r"output 0 has shape \(6,\), expected \(5,\)"
    ):
        out.compute()


def test_reference_lets_declared_metadata_lie() -> None:
    x = da.arange(6.0, chunks=2)
    ref = xpx.lazy_apply(lambda u: u, x, shape=(5,), dtype=np.float32)
    assert ref.shape == (5,)
    assert ref.dtype == np.float32
    got = ref.compute()
    assert got.shape == (6,)
    assert got.dtype == np.float64


# --------------------------------------------------------------- non-NumPy chunks
sparse = pytest.importorskip("sparse", reason="sparse is not installed")


def _sparse_dask() -> Any:
    return da.from_array(sparse.COO.from_numpy(np.eye(4)), chunks=2)


def test_sparse_chunks_keep_their_meta() -> None:
    rec = Recorder()
    x = _sparse_dask()
    out = _lazy(rec, x, x)
    assert isinstance(out._meta, sparse.COO)
    assert rec.calls == []
    got = out.compute()
    assert isinstance(got, sparse.COO)
    np.testing.assert_array_equal(got.todense(), 2 * np.eye(4))
    assert rec.calls == [[(sparse.COO, (4, 4)), (sparse.COO, (4, 4))]]


def test_sparse_chunks_refuse_as_numpy() -> None:
    rec = Recorder()
    with pytest.raises(RuntimeError, match="dense"):
        lazy_apply(rec, _sparse_dask(), as_numpy=True)
    assert rec.calls == []


# --------------------------------------------------------------- several processes
@pytest.mark.slow
def test_runs_on_worker_processes(client: Any) -> None:
    """The task (kernel, kwargs, namespace) pickles and runs in another process."""
    x = da.arange(6.0, chunks=2)
    out = lazy_apply(add_offset, x, offset=2.5, shape=(6,), dtype="float64")
    np.testing.assert_array_equal(client.compute(out).result(), np.arange(6.0) + 2.5)
    bad = lazy_apply(add_offset, x, offset=1.0, dtype="float32")
    with pytest.raises(KernelOutputError, match="add_offset"):
        client.compute(bad).result()
