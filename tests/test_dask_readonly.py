"""Dask: a kernel never changes the caller's array, on every mode and scheduler.

``da.from_array(a)`` stores its blocks in the graph, and the threaded scheduler hands a
task those very arrays: a kernel writing into its input changed the caller's Dask
array for every later compute (found by the path matrix). Blocks now reach kernels
read-only: a writing kernel (NumPy index, in-place operator and ``.flat`` writes; Numba
ones, whose ``.flat`` write Numba itself lets by) fails with lazyapply's error naming
the kernel and the fix, and neither the Dask array nor its NumPy source changes.
Written once over every path in tests/test_behaviour_paths.py (eager NumPy, where the
kernel gets the caller's own array, changes it in place, as NumPy does); here what is
Dask's own: one block that is the graph's array, a ``.flat`` write in a called Numba
function or after a keyword argument, worker processes, and the fix's values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import SpecError, lazy

da = pytest.importorskip("dask.array", reason="dask[array] is not installed")
numba = pytest.importorskip("numba", reason="numba is not installed")


def write_index(x: Any) -> Any:
    x[0] = 100.0
    return x * 2


def write_inplace(x: Any) -> Any:
    x += 1
    return x * 2


def write_flat(x: Any) -> Any:
    x.flat[0] = 100.0
    return x * 2


def write_flat_keyword(x: Any, value: float = 0.0) -> Any:
    x.flat[0] = value
    return x * 2


def copies_first(x: Any) -> Any:
    x = x.copy()
    x += 1
    for i in range(x.size):
        x.flat[i] = x.flat[i] * 2
    return x


write_index_nb = numba.njit(write_index)
write_inplace_nb = numba.njit(write_inplace)
write_flat_nb = numba.njit(write_flat)
write_flat_keyword_nb = numba.njit(write_flat_keyword)
copies_first_nb = numba.njit(copies_first)


@numba.njit
def _flat_write(x: Any) -> None:
    x.flat[1] = -1.0


@numba.njit
def write_flat_in_callee_nb(x: Any) -> Any:
    _flat_write(x)
    return x * 2


WRITERS = [
    write_index,
    write_inplace,
    write_flat,
    write_index_nb,
    write_inplace_nb,
    write_flat_nb,
    write_flat_in_callee_nb,
]

#: Every Dask mode: (options, chunks of the 1-d source)
MODES = {
    "whole array, one block": ({}, 8),
    "whole array, two blocks": ({}, 4),
    "elementwise": ({"elementwise": True}, 4),
    "signature": ({"signature": "(n)->(n)"}, 8),
    "stencil": ({"depth": 1}, 4),
}

A = np.arange(8.0)


def _name(f: Any) -> str:
    return getattr(f, "__name__", "?") + ("_nb" if hasattr(f, "py_func") else "")


def _source(chunks: int) -> tuple[np.ndarray, Any]:
    a = A.copy()
    return a, da.from_array(a, chunks=chunks)


def _assert_refused(kernel: Any, scheduler: str, name: str, **kwargs: Any) -> None:
    with pytest.raises(SpecError) as info:
        kernel(**kwargs).compute(scheduler=scheduler)
    text = str(info.value)
    assert text.startswith(name), text
    assert "read-only" in text, text
    assert "x = x.copy()" in text, text


@pytest.mark.parametrize("writer", WRITERS, ids=_name)
def test_one_block_is_the_graphs_own_array(writer: Any) -> None:
    """One chunk: the block handed to the kernel is the array stored in the graph.

    (Every mode, two chunks, in place and through ``.flat``: the path matrix.)
    """
    a, x = _source(8)
    kernel = lazy(writer)
    _assert_refused(lambda: kernel(x), "threads", writer.__name__)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(x.compute(), A)


@pytest.mark.parametrize(
    "writer", [write_flat_keyword, write_flat_keyword_nb], ids=_name
)
def test_a_keyword_argument_does_not_hide_a_flat_write(writer: Any) -> None:
    a, x = _source(4)
    kernel = lazy(writer, elementwise=True)
    _assert_refused(lambda: kernel(x, value=7.0), "threads", writer.__name__)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(x.compute(), A)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kernel", [copies_first, copies_first_nb], ids=_name)
def test_the_fix_gives_eager_numpys_values(kernel: Any, mode: str) -> None:
    """``x = x.copy()`` first: the values of eager NumPy, block by block."""
    options, chunks = MODES[mode]
    a, x = _source(chunks)
    got = lazy(kernel, **options)(x).compute()
    np.testing.assert_array_equal(got, copies_first(A))
    np.testing.assert_array_equal(a, A)


@pytest.mark.slow  # a pool of worker processes
@pytest.mark.parametrize("writer", [write_inplace, write_flat_nb], ids=_name)
def test_refused_on_worker_processes(writer: Any) -> None:
    a, x = _source(4)
    kernel = lazy(writer, elementwise=True)
    _assert_refused(lambda: kernel(x), "processes", writer.__name__)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(x.compute(), A)


@pytest.mark.slow
def test_refused_on_a_distributed_cluster(client: Any) -> None:
    a, x = _source(4)
    out = lazy(write_flat, elementwise=True)(x)
    with pytest.raises(SpecError, match=r"^write_flat: .*x = x\.copy\(\)"):
        client.compute(out).result()
    np.testing.assert_array_equal(client.compute(x).result(), A)
    np.testing.assert_array_equal(a, A)
