"""``lazyapply.testing``: the backends vocabulary and ``check_kernel``.

``check_kernel`` must pass an honest kernel on every installed backend and fail, naming
the kernel and the backend, for a lying ``dtype=``, for a kernel declared
``elementwise`` that is not, for a kernel that cannot run under ``jax.jit`` and for one
that computes while it builds a Dask graph. Each case runs on real backends.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from lazyapply import lazy
from lazyapply.testing import (
    Backend,
    CheckFailed,
    KernelReport,
    assert_lazy,
    check_kernel,
    count_dask_computes,
    installed_backends,
    to_numpy,
)

from . import modes_kernels as mk

RNG = np.random.default_rng(7)
A = RNG.standard_normal((4, 6))
B = RNG.standard_normal(6)


def _xp(a: Any) -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(a)


# Module level: pickled by reference, as dask.distributed would send them.
@lazy(elementwise=True)
def scale_add(a: Any, b: Any, factor: float = 2.0) -> Any:
    """Honest: elementwise, dtype of the inputs."""
    return a * factor + b


@lazy(dtype="float32")
def liar(a: Any) -> Any:
    """Declares float32, returns float64 for float64 inputs."""
    return a * 2


@lazy(elementwise=True)
def centre(a: Any) -> Any:
    """Declared elementwise, but every element depends on the whole array's mean."""
    return a - _xp(a).mean(a)


@lazy(shape=(None,))
def positives(a: Any) -> Any:
    """Its output size depends on the values: fine eagerly and on Dask, not in jit."""
    return a[a > 0]


@lazy(shape=lambda a: (int((a > 0).sum()),))
def positives_counted(a: Any) -> Any:
    """Its shape callable reads values: on Dask that computes while building."""
    return a[a > 0]


def _needs(*backends: Backend) -> None:
    for b in backends:
        reason = b.skip_reason()
        if reason is not None:
            pytest.skip(f"{b}: {reason}")


def _failed(err: pytest.ExceptionInfo[AssertionError]) -> set[tuple[str, str]]:
    """(backend, mode) of every FAIL line of check_kernel's message."""
    rows = set()
    for line in str(err.value).splitlines()[2:]:
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        if len(cells) >= 4 and cells[3] == "FAIL":
            rows.add((cells[1], cells[2]))
    return rows


# ------------------------------------------------------------------ the pass case
def test_honest_kernel_passes_on_each_backend(backend: Backend) -> None:
    report = check_kernel(scale_add, A, B, factor=3.0, backends=[backend])
    assert isinstance(report, KernelReport)
    assert report.failures == []
    ran = {r.backend for r in report.passed}
    assert ran == {str(backend), "pickle"}
    if backend is Backend.JAX:
        assert {r.mode for r in report} >= {"eager", "vmap, batch of 2"}
    if backend is Backend.DASK:
        modes = [r.mode for r in report if r.backend == "dask"]
        assert modes == [
            "elementwise, one chunk",
            "elementwise, chunks of 1",
            "elementwise, uneven chunks",
        ]


def test_honest_kernel_passes_on_every_installed_backend() -> None:
    report = check_kernel(scale_add, A, B)
    # The devices that test lazyapply itself are opt-in (see the test below).
    opt_in = {"array_api_strict_device1", "torch_meta"}
    installed = {str(b) for b in installed_backends()} - opt_in
    assert {r.backend for r in report.passed} == installed | {"pickle"}
    skipped = {r.backend: r.detail for r in report.skipped}
    for b in Backend:
        if str(b) not in installed | opt_in:
            assert skipped[str(b)] == b.skip_reason()
    assert not {r.backend for r in report} & opt_in
    assert all(r.kernel == "scale_add" for r in report)


@pytest.mark.parametrize(
    "kernel",
    [
        # The strict eager check of a gufunc follows its signature (a bug that
        # check_kernel found: it compared with the inputs' broadcast shape).
        pytest.param(lazy(mk.min_max, signature="(n)->(),()"), id="two-outputs"),
        pytest.param(lazy(mk.dot_last, signature="(n),(n)->()"), id="gufunc"),
        pytest.param(lazy(mk.smooth0, depth={0: 1}), id="stencil"),
    ],
)
def test_honest_chunk_mode_kernels_pass(kernel: Any) -> None:
    args = (A, B) if kernel.__name__ == "dot_last" else (A,)
    report = check_kernel(kernel, *args, backends=["numpy", "jax", "jax_jit", "dask"])
    assert report.failures == []
    assert len(report.passed) >= 2  # numpy and the pickle round trip at least


# ------------------------------------------------------------------ the failures
def test_lying_dtype_fails_on_numpy() -> None:
    with pytest.raises(AssertionError) as err:
        check_kernel(liar, A)
    failed = _failed(err)
    assert ("numpy", "eager") in failed
    assert ("pickle", "round trip") in failed
    lines = str(err.value).splitlines()
    assert lines[0].startswith("check_kernel: liar failed ")
    assert all(line.startswith("liar ") for line in lines[2:])
    assert "dtype float64, expected float32" in str(err.value)
    if Backend.DASK.skip_reason() is None:
        # The graph's metadata says float32 before anything runs: caught unrun.
        assert ("dask", "whole array, one chunk") in failed


def test_false_elementwise_fails_on_multi_chunk_dask() -> None:
    _needs(Backend.DASK)
    with pytest.raises(AssertionError) as err:
        check_kernel(centre, A, backends=["numpy", "dask"])
    # One chunk is the whole array: only the split runs see the difference.
    assert _failed(err) == {
        ("dask", "elementwise, chunks of 1"),
        ("dask", "elementwise, uneven chunks"),
    }
    assert "centre  dask" in str(err.value)
    assert "values differ from NumPy" in str(err.value)


def test_value_dependent_shape_fails_under_jit_only() -> None:
    _needs(Backend.JAX)
    with pytest.raises(AssertionError) as err:
        check_kernel(positives, A, backends=["numpy", "jax", "jax_jit", "dask"])
    assert _failed(err) == {("jax_jit", "jit"), ("jax", "vmap, batch of 2")}
    assert "positives  jax_jit" in str(err.value)


def test_inferred_dtype_that_lies_fails_under_jit_and_dask() -> None:
    _needs(Backend.JAX)

    @lazy
    def is_big(a: Any) -> Any:  # bool from float inputs, no dtype=bool declared
        return a > 0

    with pytest.raises(AssertionError) as err:
        check_kernel(is_big, A, backends=["jax", "jax_jit"])
    failed = _failed(err)
    assert ("jax_jit", "jit") in failed
    assert "dtype bool, expected float32" in str(err.value)  # the callback's error


def test_computing_while_building_the_graph_fails_on_dask() -> None:
    _needs(Backend.DASK)
    with pytest.raises(AssertionError) as err:
        check_kernel(positives_counted, A, backends=["numpy", "dask"])
    assert {b for b, _ in _failed(err)} == {"dask"}
    assert "Dask computed 1 time(s) while building the graph" in str(err.value)


def test_kernel_writing_into_its_input_fails_on_read_only_numpy() -> None:
    @lazy
    def clip_in_place(a: Any) -> Any:
        a[a < 0] = 0
        return a

    with pytest.raises(AssertionError) as err:
        check_kernel(clip_in_place, A, backends=["numpy", "numpy_readonly"])
    assert _failed(err) == {("numpy_readonly", "eager")}
    assert "read-only" in str(err.value)


def test_kernel_failing_on_numpy_is_reported() -> None:
    @lazy
    def broken(a: Any) -> Any:
        return a @ a  # (4, 6) @ (4, 6): not aligned

    with pytest.raises(AssertionError) as err:
        check_kernel(broken, A)
    lines = str(err.value).splitlines()
    assert lines[0] == "check_kernel: broken failed 1 of 1 runs"
    assert lines[2].split()[:4] == ["broken", "numpy", "reference", "FAIL"]
    assert "ValueError" in lines[2]


# NumPy ufuncs on torch tensors warn through torch's __array_wrap__ (torch's to fix).
@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_plain_numpy_kernel_passes_and_test_devices_are_opt_in() -> None:
    _needs(Backend.TORCH_META, Backend.ARRAY_API_STRICT_DEVICE1)

    @lazy
    def wave(a: Any) -> Any:  # NumPy code: fine wherever NumPy can read the input
        return np.sin(a) * 2

    with pytest.raises(CheckFailed) as caught:
        check_kernel(wave, A)
    # Except under torch.func.vmap (NumPy cannot read its batched tensors) and
    # torch.compile (which traces a kernel without as_numpy as torch code): the rows
    # say so, with the fix.
    report = caught.value.report
    assert {(r.backend, r.mode) for r in report.failures} == {
        ("torch", "vmap, batch of 2"),
        ("torch", "torch compile"),
    }
    assert all("declare as_numpy=True" in r.fix for r in report.failures)
    assert {"torch_meta", "array_api_strict_device1"}.isdisjoint(
        r.backend for r in report
    )
    with pytest.raises(CheckFailed) as err:
        check_kernel(wave, A, backends=["numpy", "torch_meta"])
    (row,) = err.value.report.failures
    assert row.backend == "torch_meta"
    assert "a device NumPy cannot read" in row.fix
    assert "leave this test backend out" in str(err.value)


@lazy(shape=lambda a: [a.shape, a.shape])
def two_as_list(a: Any) -> Any:
    """Honest: returns a list of two arrays, declared by a shape callable."""
    return [a + 1, a * 2]


@lazy(shape=[(6,), (6,)], dtype=["float64", "float64"])
def two_declared(a: Any) -> Any:
    """Honest: returns a list of two arrays, declared by constants."""
    return [a.sum(axis=0), (a * a).sum(axis=0)]


@pytest.mark.parametrize(
    "kernel",
    [
        two_as_list,
        two_declared,
    ],
    ids=lambda k: k.__name__,
)
def test_honest_kernel_returning_a_list_passes(kernel: Any) -> None:
    report = check_kernel(kernel, A, backends=["numpy", "torch", "jax_jit", "dask"])
    assert report.failures == []
    assert len(report.passed) >= 2


def test_backend_dependent_result_is_told_to_use_the_namespace() -> None:
    _needs(Backend.TORCH)

    @lazy(shape=[(6,), (6,)])
    def sum_max(a: Any) -> Any:  # torch's max(axis=) returns (values, indices)
        return [a.sum(axis=0), a.max(axis=0)]

    with pytest.raises(CheckFailed) as err:
        check_kernel(sum_max, A, backends=["numpy", "torch"])
    failures = err.value.report.failures
    assert {r.backend for r in failures} == {"torch"}  # eager, and torch compile
    (row,) = [r for r in failures if r.mode == "eager"]
    assert "another shape on this backend than on NumPy" in row.fix


def test_undeclared_list_fails_with_the_declaration_to_write() -> None:
    _needs(Backend.DASK)

    @lazy
    def two(a: Any) -> Any:
        return [a + 1, a * 2]

    with pytest.raises(CheckFailed) as err:
        check_kernel(two, A, backends=["numpy", "dask"])
    fixes = {r.fix for r in err.value.report.failures}
    assert fixes == {
        "declare one shape and dtype per output (shape=[(4, 6), (4, 6)], "
        'dtype=["float64", "float64"]) to return several'
    }


def test_dask_wrong_dtype_says_what_to_declare() -> None:
    _needs(Backend.DASK)

    @lazy
    def halve(a: Any) -> Any:  # int64 in, float64 out: result_type guesses int64
        return a / 2

    with pytest.raises(CheckFailed) as err:
        check_kernel(halve, np.arange(6), backends=["dask"])
    rows = err.value.report.failures
    assert {r.backend for r in rows} == {"dask", "pickle"}
    dask_row = rows[0]
    assert dask_row.message.startswith(
        "graph metadata: dtype int64, NumPy gives float64"
    )
    assert dask_row.fix.startswith('declare dtype="float64": with no dtype= declared')
    assert f"{dask_row.message}; fix: {dask_row.fix}" in str(err.value)
    # A declared dtype that lies: the fix names both.
    with pytest.raises(CheckFailed) as err:
        check_kernel(liar, A, backends=["dask"])
    assert "make the kernel return the declared dtype='float32'" in (
        err.value.report.failures[0].fix
    )


def test_rows_are_records_and_progress_is_reported() -> None:
    seen: list[str] = []
    report = check_kernel(
        scale_add, A, B, backends=["numpy", "numpy_readonly"], progress=seen.append
    )
    assert seen == ["numpy", "numpy_readonly", "pickle"]
    records = report.records()
    assert records[0] == {
        "kernel": "scale_add",
        "backend": "numpy",
        "mode": "eager",
        "outcome": "ok",
        "message": "",
        "fix": "",
    }
    assert (
        report.summary() == "check_kernel: scale_add passed (3 ok, 0 failed, 0 skipped)"
    )
    assert json.loads(json.dumps(records)) == records


# ------------------------------------------------------------------ rows and options
def test_as_numpy_rows_skip_libraries_that_refuse_conversion() -> None:
    _needs(Backend.SPARSE, Backend.TORCH_META)
    cumsum = lazy(np.cumsum, as_numpy=True)
    report = check_kernel(
        cumsum, A, axis=-1, backends=["numpy", "sparse", "torch_meta"]
    )
    assert [(r.backend, r.mode, r.outcome) for r in report] == [
        ("numpy", "as_numpy", "ok"),
        ("torch_meta", "-", "skip"),
        ("sparse", "-", "skip"),
        ("pickle", "round trip", "ok"),
    ]
    assert "as_numpy=True" in report.skipped[0].detail


def test_report_table() -> None:
    report = check_kernel(scale_add, A, B, backends=["numpy", "numpy_readonly"])
    lines = str(report).splitlines()
    assert lines[0].split() == ["kernel", "backend", "mode", "outcome", "detail"]
    assert len(lines) == 1 + len(report) == 4
    assert lines[1].split() == ["scale_add", "numpy", "eager", "ok"]
    # Columns line up: every outcome starts at the same offset.
    assert len({line.index("ok") for line in lines[1:]}) == 1
    assert report.passed == list(report)
    assert report.failures == report.skipped == []


def test_plain_function_is_checked_as_lazy() -> None:
    def double(a: Any) -> Any:  # local: the pickle row needs cloudpickle
        return a * 2

    report = check_kernel(double, A, backends=["numpy", "dask"])
    assert report.failures == []
    assert report[0].kernel == "double"


def test_tolerances() -> None:
    _needs(Backend.JAX)
    # JAX without x64 computes in float32: close to the float64 reference by default,
    # not equal to it.
    report = check_kernel(scale_add, A, B, backends=["jax"])
    assert report.failures == []
    with pytest.raises(AssertionError, match="values differ from NumPy") as err:
        check_kernel(scale_add, A, B, backends=["jax"], rtol=0.0, atol=0.0)
    assert ("jax", "eager") in _failed(err)


def test_jax_with_x64_keeps_float64() -> None:
    _needs(Backend.JAX)
    import jax

    # The stored dtype is asked at each check: with x64 on, float64 stays float64 and
    # JAX's results equal NumPy's exactly.
    if hasattr(jax, "enable_x64"):
        x64 = jax.enable_x64(True)
    else:  # jax < 0.7 spells it in jax.experimental
        from jax.experimental import enable_x64

        x64 = enable_x64(True)
    with x64:
        report = check_kernel(
            scale_add, A, B, backends=["jax", "jax_jit"], rtol=0.0, atol=0.0
        )
    assert report.failures == []
    assert len(report.passed) == 4


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="at least one NumPy array"):
        check_kernel(scale_add, 1.0, 2.0)
    with pytest.raises(TypeError, match="expected a @lazy kernel"):
        check_kernel(42, A)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not_a_backend"):
        check_kernel(scale_add, A, B, backends=["not_a_backend"])


# ------------------------------------------------------------------ the vocabulary
def test_backend_round_trip(backend: Backend) -> None:
    x = backend.asarray(A)
    assert tuple(x.shape) == A.shape
    np.testing.assert_allclose(backend.values_or_skip(x), A, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(x), A, rtol=1e-6)


def test_installed_backends() -> None:
    found = installed_backends()
    assert Backend.NUMPY in found
    assert all(b.skip_reason() is None for b in found)
    assert all(b.skip_reason() is not None for b in Backend if b not in found)


def test_laziness_assertions() -> None:
    _needs(Backend.DASK)
    import dask.array as da

    x = da.from_array(A, chunks=2)
    with count_dask_computes() as counter:
        y = x + 1
        assert_lazy(y)
        assert_lazy((y, y * 2))
    assert counter.count == 0
    with count_dask_computes() as counter:
        y.compute()
    assert counter.count == 1
    with pytest.raises(AssertionError, match=r"numpy\.ndarray: the kernel ran"):
        assert_lazy(A)


def test_docstring_examples_run() -> None:
    import doctest

    import lazyapply.testing._check

    result = doctest.testmod(lazyapply.testing._check, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8
    assert result.failed == 0


def test_dense_kernel_on_sparse_says_declare_as_numpy() -> None:
    _needs(Backend.SPARSE)

    @lazy
    def fill(a: Any) -> Any:  # writes into a new array: dense NumPy code
        out = np.empty_like(a)
        out[...] = a * 2
        return out

    with pytest.raises(CheckFailed) as err:
        check_kernel(fill, A, backends=["numpy", "sparse"])
    (row,) = err.value.report.failures
    assert row.backend == "sparse"
    assert row.fix.startswith("pydata/sparse arrays are immutable")
    assert "declare as_numpy=True" in row.fix


@pytest.mark.filterwarnings("error:__array_wrap__:DeprecationWarning")
def test_numpy_function_on_torch_where_warnings_are_errors() -> None:
    _needs(Backend.TORCH)

    @lazy
    def wave(a: Any) -> Any:
        return np.sin(a) * 2

    # torch 2.13 (the tested series) still goes through __array_wrap__.
    with pytest.raises(CheckFailed) as err:
        check_kernel(wave, A, backends=["torch"])
    rows = err.value.report.failures
    assert rows
    # torch.func.vmap's batched tensors are not even readable by NumPy, and
    # torch.compile cannot trace NumPy calls on tensors.
    assert any("__array_wrap__" in r.message for r in rows if r.mode == "eager")
    assert all("declare as_numpy=True" in r.fix for r in rows)


# ------------------------------------------------------------ torch.func.vmap row
# as_numpy: lazyapply batches the call itself (torch code is vmapped by torch).
@lazy(as_numpy=True, signature="(n)->()")
def total(a: Any) -> Any:
    """Honest gufunc: sums the core (last) axis only."""
    return a.sum(axis=-1)


@lazy(as_numpy=True, signature="(n)->()")
def total_of_all(a: Any) -> Any:
    """Declared a gufunc over its last axis, but sums every axis: right on a 1-D
    sample, wrong as soon as a loop dimension appears (vmap's batch)."""
    return np.asarray(a.sum())


def test_torch_vmap_row_fails_a_kernel_wrong_under_vmap_only() -> None:
    _needs(Backend.TORCH)
    with pytest.raises(CheckFailed) as err:
        check_kernel(total_of_all, B, backends=["numpy", "torch"])
    assert _failed(err) == {("torch", "vmap, batch of 2")}
    (row,) = err.value.report.failures
    assert "breaks its mode ((n)->()) under vmap" in row.fix
    report = check_kernel(total, B, backends=["numpy", "torch"])
    assert ("torch", "vmap, batch of 2", "ok") in {
        (r.backend, r.mode, r.outcome) for r in report
    }


def _sin_cos_vjp(g: Any, out: Any, x: Any) -> Any:
    gs, gc = g
    return (gs * np.cos(x) - gc * np.sin(x),)


@lazy(
    as_numpy=True,
    elementwise=True,
    shape=lambda x: [x.shape] * 2,
    dtype=lambda x: [x.dtype] * 2,
    vjp=_sin_cos_vjp,
)
def sin_cos(x: Any) -> Any:
    """Two outputs declared by callables, with a vjp: every output under vmap."""
    return np.sin(x), np.cos(x)


@pytest.mark.parametrize(
    "make",
    [
        "sin_cos",
        "scipy erf",
        "numba",
        # Compiles the Cython example with the C compiler on a fresh checkout.
        pytest.param("cython", marks=pytest.mark.slow),
    ],
)
def test_torch_vmap_row_passes_honest_kernels(make: str) -> None:
    _needs(Backend.TORCH)
    args: tuple[Any, ...] = (A,)
    if make == "sin_cos":
        kernel = sin_cos
    elif make == "scipy erf":
        special = pytest.importorskip("scipy.special", reason="scipy is not installed")
        kernel = lazy(special.erf, as_numpy=True)  # lazyapply.special's vjp
    elif make == "numba":
        numba = pytest.importorskip("numba", reason="numba is not installed")
        kernel = lazy(
            numba.vectorize(["float64(float64, float64)"])(_hypot), as_numpy=True
        )
        args = (A, B)
    else:
        from .torch_kernels import cython_ffill

        kernel = cython_ffill()  # whole array: one call per batch element
        args = (np.where(A > 1, np.nan, A),)
    report = check_kernel(kernel, *args, backends=["numpy", "torch"])
    rows = {(r.backend, r.mode): r.outcome for r in report}
    assert rows[("torch", "vmap, batch of 2")] == "ok", str(report)


def _hypot(x: float, y: float) -> float:
    return (x * x + y * y) ** 0.5
