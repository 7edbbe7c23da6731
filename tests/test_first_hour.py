"""What a new user meets in the first hour: errors that name the kernel and the fix.

Array keyword arguments of chunk-wise Dask calls (refused at the call, not a NumPy
broadcast error at compute time), float16 arrays into a Numba kernel (Numba has no
float16), and the documentation promises that the code keeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, SpecError, lazy, lazy_apply


def add(x: Any, y: Any = None) -> Any:
    return x + y


def lookup(i: Any, table: Any = None) -> Any:
    return table[i]


# ------------------------------------------------------------ Dask keyword arrays
@pytest.mark.parametrize(
    "mode", [{"elementwise": True}, {"depth": 1}], ids=["elementwise", "depth"]
)
def test_keyword_array_on_split_dask_is_refused_at_the_call(
    mode: dict[str, Any],
) -> None:
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.arange(6.0), chunks=3)
    option = next(iter(mode))
    with pytest.raises(SpecError) as err:
        lazy_apply(add, x, y=np.ones(6), **mode)
    text = str(err.value)
    assert text.startswith("add (dask): keyword argument y= is an array of shape (6,)")
    assert "Pass it positionally (add(x, y)" in text
    assert f"drop {option}=" in text
    # The fix works: positionally, the values are NumPy's.
    y = da.from_array(np.ones(6), chunks=3)
    np.testing.assert_array_equal(
        lazy_apply(add, x, y, **mode).compute(), np.arange(6.0) + 1
    )


def test_keyword_arrays_that_do_not_line_up_still_work() -> None:
    da = pytest.importorskip("dask.array")
    table = np.arange(10.0) * 10
    i = da.from_array(np.arange(6), chunks=2)
    # A lookup table does not line up with the chunks: every block needs all of it.
    out = lazy_apply(lookup, i, table=table, elementwise=True, dtype="float64")
    np.testing.assert_array_equal(out.compute(), table[np.arange(6)])
    # One chunk along the axis: the whole keyword array is the block's.
    one = da.from_array(np.arange(6.0), chunks=6)
    np.testing.assert_array_equal(
        lazy_apply(add, one, y=np.ones(6), elementwise=True).compute(),
        np.arange(6.0) + 1,
    )
    # 0-d and scalar keywords, and the whole-array mode, are unaffected.
    x = da.from_array(np.arange(6.0), chunks=3)
    np.testing.assert_array_equal(
        lazy_apply(add, x, y=np.float64(2.0), elementwise=True).compute(),
        np.arange(6.0) + 2,
    )
    np.testing.assert_array_equal(
        lazy_apply(add, x, y=np.ones(6)).compute(), np.arange(6.0) + 1
    )


def wsum(x: Any, w: Any = None) -> Any:
    return (x * w).sum(axis=-1)


def test_signature_keyword_array_on_loop_axes_is_refused() -> None:
    da = pytest.importorskip("dask.array")
    a = np.arange(24.0).reshape(4, 6)
    x = da.from_array(a, chunks=(2, 3))
    # Weights along the core dimension (never split): fine, NumPy's values.
    w = np.arange(6.0)
    out = lazy_apply(wsum, x, w=w, signature="(n)->()")
    np.testing.assert_array_equal(out.compute(), wsum(a, w))
    # Lined up with the loop axis, which is split in two: every block would get all.
    with pytest.raises(
        SpecError, match=r"wsum \(dask\): keyword argument w= .*signature"
    ):
        lazy_apply(wsum, x, w=np.ones((4, 6)), signature="(n)->()")


# ------------------------------------------------------------ float16 into Numba
def _numba_double() -> Any:
    numba = pytest.importorskip("numba")

    @numba.njit
    def double(x: Any) -> Any:
        return x * 2

    return double


def test_float16_into_a_numba_kernel_names_the_kernel_and_the_fix() -> None:
    double = _numba_double()
    x = np.ones(3, dtype=np.float16)
    for call in (
        lambda: lazy_apply(double, x),
        lambda: lazy(double, as_numpy=True)(x),
    ):
        with pytest.raises(SpecError) as err:
            call()
        text = str(err.value)
        assert text.startswith("double: a Numba kernel cannot take float16 arrays")
        assert "Numba has no float16" in text
        assert "x.astype(np.float32)" in text
        assert isinstance(err.value.__cause__, NotImplementedError)
    # The fix: cast first; float32 works.
    np.testing.assert_array_equal(lazy_apply(double, x.astype(np.float32)), [2, 2, 2])


def test_float16_through_torch_as_numpy() -> None:
    double = _numba_double()
    torch = pytest.importorskip("torch")
    with pytest.raises(SpecError, match="double: a Numba kernel cannot take float16"):
        lazy(double, as_numpy=True)(torch.ones(3, dtype=torch.float16))


# ------------------------------------------------------------ what the docs promise
ROOT = Path(__file__).resolve().parents[1]


@lazy(as_numpy=True, elementwise=True)
def wave(x: Any) -> Any:
    return np.sin(x)


@pytest.mark.slow
def test_torch_op_name_is_the_documented_one() -> None:
    torch = pytest.importorskip("torch")
    graphs: list[Any] = []

    def capture(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm

    compiled = torch.compile(lambda a: wave(a) * 2, backend=capture, fullgraph=True)
    a = torch.rand(3, dtype=torch.float64)
    torch.testing.assert_close(compiled(a), torch.sin(a) * 2)
    (gm,) = graphs
    names = [
        str(getattr(n.target, "_qualified_op_name", ""))
        for n in gm.graph.nodes
        if n.op == "call_function"
    ]
    ops = [n for n in names if n.startswith("lazyapply::")]
    assert len(ops) == 1, names
    # One tensor operand, one output, tensors alone: "_1tp" after the digest.
    want = r"lazyapply::tests__test_first_hour__wave_[0-9a-f]{8}_1tp"
    assert re.fullmatch(want, ops[0]), ops[0]
    documented = "lazyapply::<module>__<qualname>_<digest>_<n><t|l>[p]"
    assert documented in (ROOT / "README.md").read_text()
    assert documented in (ROOT / "docs/user_guide/pytorch.rst").read_text()


def test_lazy_apply_docstring_matches_the_output_policy() -> None:
    # strict=False (lazy_apply's default) returns an eager kernel's output unchecked;
    # strict=True checks it; the docstring says both, in its Raises section.
    x = np.ones(3)
    out = lazy_apply(lambda a: a * 2, x, dtype="float32")
    assert out.dtype == np.float64
    with pytest.raises(KernelOutputError, match="dtype float64, expected float32"):
        lazy_apply(lambda a: a * 2, x, dtype="float32", strict=True)
    doc = " ".join((lazy_apply.__doc__ or "").split())
    assert "declared metadata is checked" not in doc
    assert (
        "on eager backends only with ``strict=True`` (with the default "
        "``strict=False`` they return the kernel's output unchecked)"
    ) in doc


def test_torch_extra_is_a_range_that_keeps_the_installed_torch() -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11")
    requirements = pytest.importorskip("packaging.requirements")
    version = pytest.importorskip("packaging.version")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (spec,) = project["optional-dependencies"]["torch"]
    req = requirements.Requirement(spec)
    assert req.name == "torch"
    assert not any(s.operator in ("==", "===") for s in req.specifier), spec
    assert "torch" in project["optional-dependencies"]["all"][0]
    # The tested series is admitted, the next minor release is not (a clean install
    # gets what CI tests); an older supported release is admitted too.
    assert req.specifier.contains("2.13.0")
    assert req.specifier.contains("2.5.0")
    assert not req.specifier.contains("2.14.0")
    torch = pytest.importorskip("torch")
    installed = version.Version(torch.__version__).base_version
    assert req.specifier.contains(installed), (spec, torch.__version__)


def test_numpy_functions_on_tensors_warn_unless_as_numpy() -> None:
    """README and docs/user_guide/pytorch.rst: declare NumPy kernels as_numpy=True."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    import warnings

    def sine(x: Any) -> Any:
        return np.sin(x) * 2

    t = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="__array_wrap__"):
        lazy(sine)(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = lazy(sine, as_numpy=True)(t)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), np.sin(t.numpy()) * 2)


def test_a_ufuncs_own_signature_keyword_reaches_the_ufunc() -> None:
    """lazy_apply's docstring: ``signature=`` of a ufunc is the ufunc's loop types."""
    x = np.arange(3.0)
    want = np.add(x, x, signature="ff->f")
    got = lazy_apply(np.add, x, x, signature="ff->f", dtype="float32", strict=True)
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
