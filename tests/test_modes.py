"""Chunk-wise modes: ``elementwise``, ``signature``, ``depth``/``boundary``.

Every mode runs on every installed backend and must equal NumPy on the whole array
(edges included for stencils). On Dask the tests also assert the graph: nothing is
computed during the call, chunks are kept, one kernel task per block, keys named after
the kernel. Inside ``jax.vmap`` elementwise and gufunc kernels take a whole batch in one
host callback. Every error names the kernel.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, SpecError, lazy_apply

from . import modes_kernels as mk
from .conftest import Backend

RNG = np.random.default_rng(42)
A = RNG.standard_normal((4, 6))
B = RNG.standard_normal(6)
S = RNG.standard_normal((6, 4))


def _close(backend: Backend, out: Any, expected: np.ndarray) -> None:
    assert tuple(out.shape) == expected.shape
    got = backend.values_or_skip(out)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class Counted:
    """Wraps a kernel and records the shape of every call's first argument."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.__name__ = func.__name__
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.shapes.append(tuple(args[0].shape))
        return self.func(*args, **kwargs)


def _kernel_keys(x: Any, name: str) -> int:
    """Number of kernel tasks (not the per-output ``getitem``\\ s) named ``name``."""
    from dask.utils import key_split

    from lazyapply.adapters.dask._blocks import BlockCall

    return sum(
        1
        for k, task in dict(x.__dask_graph__()).items()
        if key_split(k) == name and isinstance(getattr(task, "func", None), BlockCall)
    )


def _blocks(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    import itertools

    return [tuple(c) for c in itertools.product(*chunks)]


# ------------------------------------------------------------------ every backend
def test_elementwise(backend: Backend) -> None:
    a, b = backend.asarray(A), backend.asarray(B)
    kernel = Counted(mk.scale_add)
    out = backend.call(lambda x, y: lazy_apply(kernel, x, y, elementwise=True), a, b)
    if backend is Backend.DASK:
        assert out.chunks == a.chunks  # kept, not merged
        assert _kernel_keys(out, "scale_add") == math.prod(a.numblocks)
        assert kernel.shapes == []  # nothing ran while the graph was built
    _close(backend, out, 2 * A + B)
    if backend is Backend.DASK:
        # One call per block, each on a whole block.
        assert sorted(kernel.shapes) == sorted(_blocks(a.chunks))


def test_signature_inner_product(backend: Backend) -> None:
    a, b = backend.asarray(A), backend.asarray(B)
    out = backend.call(
        lambda x, y: lazy_apply(mk.dot_last, x, y, signature="(n),(n)->()"), a, b
    )
    if backend is Backend.DASK:
        assert out.chunks == a.chunks[:1]  # loop chunks kept
        assert _kernel_keys(out, "dot_last") == a.numblocks[0]
    _close(backend, out, A @ B)


def test_signature_two_outputs(backend: Backend) -> None:
    a = backend.asarray(A)
    kernel = Counted(mk.min_max)
    lo, hi = backend.call(lambda x: lazy_apply(kernel, x, signature="(n)->(),()"), a)
    if backend is Backend.DASK:
        assert lo.chunks == hi.chunks == a.chunks[:1]
        assert lo.name.startswith("min_max-")
        assert hi.name.startswith("min_max-")
        assert lo.name != hi.name
    assert tuple(hi.shape) == A.shape[:-1]  # before _close may skip (no values)
    _close(backend, lo, A.min(-1))
    _close(backend, hi, A.max(-1))
    if backend is Backend.DASK:
        # Computed together: one kernel call per loop block for both outputs, each
        # with its core dimension whole.
        import dask

        kernel.shapes.clear()
        dask.compute(lo, hi, scheduler="sync")
        assert kernel.shapes == [(2, 6)] * a.numblocks[0]


@pytest.mark.parametrize("shape", [(2,), (4, 2)], ids=["core-only", "full"])
def test_signature_new_core_dim(backend: Backend, shape: tuple[int, ...]) -> None:
    a = backend.asarray(A)
    out = backend.call(
        lambda x: lazy_apply(
            mk.min_max_stacked, x, signature="(n)->(k)", shape=shape, dtype="float64"
        ),
        a,
    )
    if backend is Backend.DASK:
        assert out.chunks == (a.chunks[0], (2,))
    _close(backend, out, np.stack([A.min(-1), A.max(-1)], -1))


@pytest.mark.parametrize("depth", [1, (1, 0), {0: 1}, {-2: 2}], ids=str)
def test_stencil_equals_eager_edges_included(backend: Backend, depth: Any) -> None:
    s = backend.asarray(S)
    out = backend.call(lambda x: lazy_apply(mk.smooth0, x, depth=depth), s)
    if backend is Backend.DASK:
        assert out.chunks == s.chunks
        assert _kernel_keys(out, "smooth0") == math.prod(s.numblocks)
    _close(backend, out, mk.smooth0(S))


def test_core_dims_that_do_not_match(backend: Backend) -> None:
    a, b = backend.asarray(A), backend.asarray(B[:5])
    with pytest.raises(SpecError, match=r"dot_last .*core dimension 'n' is 5"):
        backend.call(
            lambda x, y: lazy_apply(mk.dot_last, x, y, signature="(n),(n)->()"), a, b
        )


def test_too_few_dims_for_the_core(backend: Backend) -> None:
    b = backend.asarray(B)
    with pytest.raises(SpecError, match=r"dot_last .*at least 2 dimension"):
        backend.call(
            lambda y: lazy_apply(mk.dot_last, y, y, signature="(m,n),(n)->()"), b
        )


# ------------------------------------------------------------------ Dask graphs
def _dask(x: np.ndarray, chunks: Any) -> Any:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    return da.from_array(x, chunks=chunks)


def test_elementwise_aligns_unequal_chunks_without_merging() -> None:
    a = _dask(A, (3, 4))
    b = _dask(B, 5)
    out = Backend.DASK.call(
        lambda x, y: lazy_apply(mk.scale_add, x, y, elementwise=True), a, b
    )
    assert out.chunks == ((3, 1), (4, 1, 1))  # the common refinement, not one chunk
    np.testing.assert_allclose(out.compute(), 2 * A + B)


def test_elementwise_size_one_broadcast_and_scalar() -> None:
    a = _dask(A, (2, 3))
    col = _dask(A[:, :1], (2, 1))
    out = lazy_apply(mk.scale_add, a, col, elementwise=True)
    assert out.chunks == a.chunks
    np.testing.assert_allclose(out.compute(), 2 * A + A[:, :1])
    out = lazy_apply(mk.scale_add, a, 1.5, elementwise=True)
    np.testing.assert_allclose(out.compute(), 2 * A + 1.5)


def test_signature_merges_only_core_dims() -> None:
    x = RNG.standard_normal((4, 6, 8))
    a = _dask(x, (2, 3, 4))  # the core axis has two chunks
    out = lazy_apply(mk.dot_last, a, a, signature="(n),(n)->()")
    assert out.chunks == a.chunks[:2]
    assert _kernel_keys(out, "dot_last") == 4
    layers = dict(out.__dask_graph__().layers)
    assert not any(k.startswith("rechunk") for k in layers)  # merged inside the task
    np.testing.assert_allclose(out.compute(), (x * x).sum(-1))


def test_single_chunk_core_dims_are_not_copied() -> None:
    from lazyapply.adapters.dask._blocks import _merge

    block = np.ones((2, 3))
    assert _merge([[block]], 2) is block
    merged = _merge([block, block], 1)
    np.testing.assert_array_equal(merged, np.ones((2, 6)))


def test_signature_matrix_product_and_scalar_argument() -> None:
    m = RNG.standard_normal((3, 4, 5))
    n = RNG.standard_normal((5, 2))
    out = lazy_apply(
        lambda x, y, c: c * (x @ y),
        _dask(m, (1, 2, 5)),
        _dask(n, (3, 1)),
        2.0,
        signature="(m,n),(n,p),()->(m,p)",
    )
    assert out.chunks == ((1, 1, 1), (4,), (2,))
    np.testing.assert_allclose(out.compute(), 2.0 * (m @ n))


def test_unknown_chunk_sizes_along_loop_dims_are_kept() -> None:
    a = _dask(A, (2, 3))
    rows = a[a[:, 0] > -100]  # every row, chunk sizes unknown
    assert math.isnan(rows.chunks[0][0])
    out = lazy_apply(mk.scale_add, rows, 1.0, elementwise=True)
    assert math.isnan(out.chunks[0][0])
    assert out.chunks[1] == (3, 3)
    np.testing.assert_allclose(out.compute(), 2 * A + 1)
    dots = lazy_apply(mk.dot_last, rows, rows, signature="(n),(n)->()")
    assert math.isnan(dots.chunks[0][0])
    np.testing.assert_allclose(dots.compute(), (A * A).sum(-1))


def test_unknown_chunk_sizes_along_core_dims_are_refused() -> None:
    a = _dask(A, (2, 3))
    rows = a[a[:, 0] > -100]
    with pytest.raises(SpecError, match=r"dot_last \(dask\).*compute_chunk_sizes\(\)"):
        lazy_apply(mk.dot_last, rows.T, rows.T, signature="(n),(n)->()")
    with pytest.raises(SpecError, match=r"smooth0 \(dask\).*compute_chunk_sizes\(\)"):
        lazy_apply(mk.smooth0, rows, depth=1)


@pytest.mark.parametrize(
    ("boundary", "pad"),
    [
        ("periodic", {"mode": "wrap"}),
        ("reflect", {"mode": "symmetric"}),
        ("nearest", {"mode": "edge"}),
        (0.5, {"mode": "constant", "constant_values": 0.5}),
    ],
    ids=str,
)
def test_boundary_pads_like_numpy(boundary: Any, pad: dict[str, Any]) -> None:
    x = RNG.standard_normal((7, 9))
    out = Backend.DASK.call(
        lambda a: lazy_apply(mk.laplace_raw, a, depth=1, boundary=boundary),
        _dask(x, (3, 4)),
    )
    expected = mk.laplace_raw(np.pad(x, 1, **pad))[1:-1, 1:-1]
    np.testing.assert_allclose(out.compute(), expected)
    # Eager backends ignore the mode: a plain call (a documented difference).
    np.testing.assert_allclose(
        lazy_apply(mk.laplace_raw, x, depth=1, boundary=boundary), mk.laplace_raw(x)
    )


def test_boundary_per_axis() -> None:
    x = RNG.standard_normal((6, 8))
    out = lazy_apply(
        mk.laplace_raw, _dask(x, 3), depth=1, boundary={0: "periodic", 1: "nearest"}
    )
    p = np.pad(np.pad(x, ((1, 1), (0, 0)), mode="wrap"), ((0, 0), (1, 1)), mode="edge")
    np.testing.assert_allclose(out.compute(), mk.laplace_raw(p)[1:-1, 1:-1])


def test_stencil_depth_larger_than_chunks_and_two_outputs() -> None:
    x = RNG.standard_normal((10, 12))
    out = lazy_apply(mk.laplace_edge, _dask(x, 2), depth=3)
    np.testing.assert_allclose(out.compute(), mk.laplace_edge(x))
    g0, g1 = lazy_apply(
        mk.grad_pair, _dask(x, (4, 5)), depth=1, shape=[x.shape, x.shape]
    )
    assert g0.chunks == ((4, 4, 2), (5, 5, 2))
    e0, e1 = np.gradient(x)
    np.testing.assert_allclose(g0.compute(), e0)
    np.testing.assert_allclose(g1.compute(), e1)
    assert _kernel_keys(g0, "grad_pair") == 9  # one kernel task per block for both


def test_stencil_broadcasts_its_arguments() -> None:
    x = RNG.standard_normal((6, 8))
    w = RNG.standard_normal(8)
    out = lazy_apply(
        lambda a, b: mk.laplace_edge(a * b), _dask(x, 3), _dask(w, 4), depth=1
    )
    np.testing.assert_allclose(out.compute(), mk.laplace_edge(x * w))


def test_as_numpy_and_declared_dtype() -> None:
    out = lazy_apply(
        mk.scale_add,
        _dask(A, 2),
        _dask(B, 3),
        elementwise=True,
        as_numpy=True,
        dtype="float64",
    )
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.compute(), 2 * A + B)


def test_block_call_pickles_and_runs() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    out = lazy_apply(mk.scale_add, _dask(A, 2), _dask(B, 3), elementwise=True)
    graph = dict(out.__dask_graph__())
    restored = pickle.loads(pickle.dumps(graph))
    assert set(restored) == set(graph)
    again = da.Array(restored, out.name, out.chunks, meta=out._meta)
    np.testing.assert_allclose(again.compute(scheduler="sync"), 2 * A + B)


# ------------------------------------------------------------------ errors inside tasks
def test_elementwise_block_of_the_wrong_shape() -> None:
    out = lazy_apply(mk.block_sum_wrong, _dask(A, (2, 3)), elementwise=True)
    with pytest.raises(
        KernelOutputError,
        match=r"block_sum_wrong \(dask, elementwise\): output 0 of a block has shape "
        r"\(1, 3\), expected \(2, 3\); an elementwise kernel",
    ):
        out.compute(scheduler="sync")


def test_signature_block_of_the_wrong_shape() -> None:
    out = lazy_apply(lambda x: x, _dask(A, 2), signature="(n)->()")
    with pytest.raises(
        KernelOutputError,
        match=r"lambda \(dask, signature \(n\)->\(\)\).*expected \(2,\)",
    ):
        out.compute(scheduler="sync")


def test_stencil_block_of_the_wrong_shape() -> None:
    out = lazy_apply(lambda x: x[1:], _dask(S, 3), depth=1)
    with pytest.raises(KernelOutputError, match=r"lambda \(dask, stencil\).*depth="):
        out.compute(scheduler="sync")


def test_wrong_number_of_outputs_and_wrong_dtype() -> None:
    lo = lazy_apply(lambda x: (x.min(-1),), _dask(A, 2), signature="(n)->(),()")[0]
    with pytest.raises(
        KernelOutputError, match="declared with 2 outputs but returned 1"
    ):
        lo.compute(scheduler="sync")
    out = lazy_apply(mk.scale_add, _dask(A, 2), 1.0, elementwise=True, dtype="float32")
    with pytest.raises(
        KernelOutputError, match=r"scale_add \(dask, elementwise\).*dtype float64"
    ):
        out.compute(scheduler="sync")


# ------------------------------------------------------------------ JAX batching
@pytest.fixture
def jax() -> Any:
    return pytest.importorskip("jax", reason="jax is not installed")


@pytest.fixture
def jnp(jax: Any) -> Any:
    return jax.numpy


def _np_scale_add(a: Any, b: Any) -> Any:
    return np.asarray(a) * 2 + np.asarray(b)


def _np_dot(a: Any, b: Any) -> Any:
    return (np.asarray(a) * np.asarray(b)).sum(-1)


def _np_min_max(a: Any) -> Any:
    a = np.asarray(a)
    return a.min(-1), a.max(-1)


@pytest.mark.parametrize("jit", [False, True], ids=["vmap", "jit-vmap"])
def test_vmap_elementwise_one_callback(jax: Any, jnp: Any, jit: bool) -> None:
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    y = RNG.standard_normal(4).astype(np.float32)
    kernel = Counted(_np_scale_add)

    def f(a: Any, b: Any) -> Any:
        return lazy_apply(kernel, a, b, elementwise=True)

    g = jax.vmap(f, in_axes=(0, None))
    out = (jax.jit(g) if jit else g)(jnp.asarray(x), jnp.asarray(y))
    assert kernel.shapes == [(5, 3, 4)]
    np.testing.assert_allclose(np.asarray(out), 2 * x + y, rtol=1e-6)
    # The batched operand of lower rank is aligned with the other's loop axes.
    kernel.shapes.clear()
    rows = RNG.standard_normal((5, 4)).astype(np.float32)
    g = jax.vmap(f, in_axes=(None, 0))
    out = (jax.jit(g) if jit else g)(jnp.asarray(x[0]), jnp.asarray(rows))
    assert len(kernel.shapes) == 1
    np.testing.assert_allclose(np.asarray(out), 2 * x[0] + rows[:, None], rtol=1e-6)


def test_vmap_nested_signature_one_callback(jax: Any, jnp: Any) -> None:
    x = RNG.standard_normal((2, 5, 3, 4)).astype(np.float32)
    y = RNG.standard_normal(4).astype(np.float32)
    kernel = Counted(_np_dot)

    def f(a: Any, b: Any) -> Any:
        return lazy_apply(kernel, a, b, signature="(n),(n)->()")

    g = jax.jit(jax.vmap(jax.vmap(f, in_axes=(0, None)), in_axes=(0, None)))
    out = g(jnp.asarray(x), jnp.asarray(y))
    assert kernel.shapes == [(2, 5, 3, 4)]
    np.testing.assert_allclose(np.asarray(out), x @ y, rtol=1e-5)


def test_vmap_two_outputs_one_callback(jax: Any, jnp: Any) -> None:
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    kernel = Counted(_np_min_max)
    f = jax.jit(jax.vmap(lambda a: lazy_apply(kernel, a, signature="(n)->(),()")))
    lo, hi = f(jnp.asarray(x))
    assert kernel.shapes == [(5, 3, 4)]
    np.testing.assert_allclose(np.asarray(lo), x.min(-1))
    np.testing.assert_allclose(np.asarray(hi), x.max(-1))


@pytest.mark.parametrize("mode", [{}, {"depth": 1}], ids=["default", "stencil"])
def test_vmap_other_kernels_one_callback_per_element(
    jax: Any, jnp: Any, mode: dict[str, Any]
) -> None:
    x = RNG.standard_normal((5, 6, 4)).astype(np.float32)
    kernel = Counted(lambda a: mk.smooth0(np.asarray(a)))
    kernel.__name__ = "smooth0"
    f = jax.jit(jax.vmap(lambda a: lazy_apply(kernel, a, **mode)))
    out = f(jnp.asarray(x))
    assert kernel.shapes == [(6, 4)] * 5  # sequential: a plain kernel sees one element
    np.testing.assert_allclose(np.asarray(out), np.stack([mk.smooth0(e) for e in x]))


# ------------------------------------------------------------------ spec errors
def _noop(*args: Any) -> Any:
    return args[0]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"elementwise": True, "signature": "(n)->()"}, "contradict"),
        ({"elementwise": True, "depth": 1}, "contradict"),
        ({"signature": "(n)->()", "depth": 1}, "contradict"),
        ({"boundary": "reflect"}, "without depth="),
        ({"elementwise": "yes"}, "True or False"),
        ({"signature": 3}, "must be a string"),
        ({"signature": "(n?)->()"}, "optional core dimensions"),
        ({"depth": -1}, "depth must be >= 0"),
        ({"depth": 1.5}, "depth must be an int"),
        ({"depth": {0: -2}}, "depth must be >= 0"),
        ({"depth": {"x": 1}}, "axis must be an int"),
        ({"depth": 1, "boundary": "wrap"}, "unknown boundary 'wrap'"),
        ({"depth": 1, "boundary": object()}, "boundary must be None"),
        ({"depth": 1, "boundary": {0: "mirror"}}, "unknown boundary 'mirror'"),
        ({"signature": "(n)->(),()", "shape": (4,)}, "2 output"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_spec_errors_name_the_kernel(options: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        lazy_apply(_noop, A, **options)
    assert str(info.value).startswith("_noop")


@pytest.mark.parametrize(
    "signature",
    ["(n)", "(n)->", "->()", "n->()", "(n)->()x", "((n))->()", "(n),->()", "(n-1)->()"],
)
def test_malformed_signature(signature: str) -> None:
    with pytest.raises(SpecError, match=r"_noop: malformed signature"):
        lazy_apply(_noop, A, signature=signature)


def test_call_time_errors() -> None:
    a = _dask(A, 2)
    with pytest.raises(
        SpecError, match=r"dot_last \(dask\).*1 input\(s\) but the kernel got 2"
    ):
        lazy_apply(mk.dot_last, a, a, signature="(n)->()")
    with pytest.raises(
        SpecError, match=r"core dimension 'k' appears in no input.*shape="
    ):
        lazy_apply(mk.min_max_stacked, a, signature="(n)->(k)")
    with pytest.raises(
        SpecError, match=r"declared output 0 shape \(3, 3\) does not match"
    ):
        lazy_apply(mk.scale_add, a, 1.0, elementwise=True, shape=(3, 3))
    with pytest.raises(SpecError, match=r"smooth0: depth=\(1, 1, 1\) gives 3 axes"):
        lazy_apply(mk.smooth0, a, depth=(1, 1, 1))
    with pytest.raises(SpecError, match=r"smooth0: depth names axis 5"):
        lazy_apply(mk.smooth0, a, depth={5: 1})
    with pytest.raises(SpecError, match=r"smooth0: boundary names axis -3 .* 2 dim"):
        lazy_apply(mk.smooth0, a, depth=1, boundary={-3: 0.0})
    with pytest.raises(SpecError, match=r"core dimension of fixed size 3 is 6"):
        lazy_apply(mk.dot_last, a, a, signature="(3),(3)->()")


def test_mode_is_parsed_once_and_immutable() -> None:
    from lazyapply.spec import CallSpec
    from lazyapply.spec._build import with_mode
    from lazyapply.spec._modes import Depth, Signature

    spec = with_mode(CallSpec("k"), _noop, signature=" (m, n), (n,p) -> (m,p) ")
    sig = spec.mode.signature
    assert isinstance(sig, Signature)
    assert sig.inputs == (("m", "n"), ("n", "p"))
    assert sig.outputs == (("m", "p"),)
    assert with_mode(CallSpec("k"), _noop, depth={1: 2}).mode.depth == Depth(
        by_axis=((1, 2),)
    )
    with pytest.raises(AttributeError):
        sig.text = "x"  # type: ignore[misc]
