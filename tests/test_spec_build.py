"""One spec builder for ``@lazy`` and ``lazy_apply``: same validation, same errors.

Also the keywords ``lazy_apply`` must hand to the kernel (a kernel parameter named
``depth`` wins over the option), two-output declarations by signature, and a spec
cache that never confuses ``(True,)`` with ``(1,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import SpecError, lazy, lazy_apply
from lazyapply.spec._keywords import KERNEL_FIRST


def my_kernel(x: Any, **kwargs: Any) -> Any:
    return x


BAD_OPTIONS = [
    {"vjp": 3},
    {"jvp": "no"},
    {"shape": "abc"},
    {"shape": (True,)},
    {"shape": (np.True_, 2)},
    {"shape": (-1,)},
    {"dtype": "float99"},
    {"dtype": ["float64", lambda x: x.dtype]},
    {"signature": "(n->()"},
    {"signature": "(n)->(),()", "shape": (3,)},
    {"depth": -1},
    {"depth": 1, "boundary": "mirror"},
    {"boundary": "reflect"},
    {"elementwise": 1},
    {"elementwise": True, "depth": 1},
    {"shape": [(3,), (3,)], "dtype": "float64"},
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=",".join)
def test_same_error_for_the_same_bad_option(options: dict[str, Any]) -> None:
    x = np.ones(3)
    with pytest.raises((SpecError, TypeError)) as by_decorator:
        lazy(my_kernel, **options)
    with pytest.raises((SpecError, TypeError)) as by_apply:
        lazy_apply(my_kernel, x, **options)
    assert type(by_apply.value) is type(by_decorator.value)
    assert str(by_apply.value) == str(by_decorator.value)
    assert "my_kernel" in str(by_apply.value)


@pytest.mark.parametrize("first", [(1,), (True,)])
def test_bool_size_refused_whatever_came_before(first: tuple[Any, ...]) -> None:
    """``(True,) == (1,)``: a spec cache keyed by ``==`` answered by history."""
    x = np.ones(1)
    if first == (1,) and type(first[0]) is int:
        assert lazy_apply(my_kernel, x, shape=first, dtype="float64").shape == (1,)
    for shape in [(True,), (np.True_,), (False,)]:
        with pytest.raises(SpecError, match="shape must be a tuple of sizes"):
            lazy_apply(my_kernel, x, shape=shape, dtype="float64")
    assert lazy_apply(my_kernel, x, shape=(1,), dtype="float64").shape == (1,)


def test_bool_size_refused_after_int_size_in_one_tuple_object() -> None:
    x = np.ones(1)
    shapes = [(1,), (True,)]
    assert lazy_apply(my_kernel, x, shape=shapes[0], dtype="float64").shape == (1,)
    with pytest.raises(SpecError):
        lazy_apply(my_kernel, x, shape=shapes[1], dtype="float64")


# ------------------------------------------------------------ kernel keywords first
def _named(param: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def kernel(x, {param}):\n    return x * 0 + len(repr({param}))", namespace)
    return namespace["kernel"]


@pytest.mark.parametrize("param", sorted(KERNEL_FIRST))
def test_kernel_parameter_wins_over_the_option(param: str) -> None:
    """``lazy_apply(f, x, depth=3)`` passes ``depth=3`` when ``f`` takes ``depth``."""
    import array_api_extra as xpx

    kernel = _named(param)
    x = np.arange(4.0)
    value = "a value only the kernel reads"  # no valid option value: never parsed
    got = lazy_apply(kernel, x, **{param: value})
    expected = kernel(x, **{param: value})
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(xpx.lazy_apply(kernel, x, **{param: value}), expected)


def test_depth_keyword_goes_to_the_kernel() -> None:
    def tree_weight(x: Any, depth: int) -> Any:
        return x * depth

    x = np.arange(3.0)
    np.testing.assert_array_equal(lazy_apply(tree_weight, x, depth=3), x * 3)
    da = pytest.importorskip("dask.array")
    y = lazy_apply(tree_weight, da.from_array(x, chunks=1), depth=3)
    np.testing.assert_array_equal(y.compute(), x * 3)


def test_var_keyword_kernel_reads_the_option() -> None:
    seen: dict[str, Any] = {}

    def kernel(x: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return x

    lazy_apply(kernel, np.ones(3), depth=1, scale=2)
    assert seen == {"scale": 2}  # depth= was the stencil option
    with pytest.raises(SpecError, match="depth must be"):
        lazy_apply(kernel, np.ones(3), depth="deep")


def test_kernel_keyword_and_other_options_together() -> None:
    def kernel(x: Any, strict: bool) -> Any:
        return x + (10 if strict else 0)

    x = np.arange(3.0)
    got = lazy_apply(kernel, x, strict=True, shape=(3,), dtype="float64")
    np.testing.assert_array_equal(got, x + 10)


# ------------------------------------------------------------ two-output declarations
def _sum_argmax(x: Any) -> tuple[Any, Any]:
    return x.sum(axis=-1), np.argmax(x, axis=-1)


def test_signature_gives_the_output_count() -> None:
    x = np.arange(6.0).reshape(2, 3)
    options = {"signature": "(n)->(),()", "dtype": ["float64", "int64"]}
    s, i = lazy_apply(_sum_argmax, x, strict=True, **options)
    np.testing.assert_array_equal(s, x.sum(-1))
    assert i.dtype == np.int64
    f = lazy(**options)(_sum_argmax)
    s2, i2 = f(x)
    np.testing.assert_array_equal(s2, x.sum(-1))
    np.testing.assert_array_equal(i2, np.argmax(x, -1))
    da = pytest.importorskip("dask.array")
    s3, i3 = f(da.from_array(x, chunks=1))
    assert i3.dtype == np.int64
    np.testing.assert_array_equal(s3.compute(), x.sum(-1))
    np.testing.assert_array_equal(i3.compute(), np.argmax(x, -1))


def test_signature_dtype_count_mismatch() -> None:
    with pytest.raises(SpecError, match="has 2 outputs but dtype= declares 3"):
        lazy(_sum_argmax, signature="(n)->(),()", dtype=["f8", "i8", "i8"])
    with pytest.raises(SpecError, match="has 1 output but dtype= declares 2"):
        lazy(_sum_argmax, signature="(n)->()", dtype=["float64", "int64"])


def test_dtype_list_without_shape_or_signature() -> None:
    with pytest.raises(SpecError, match=r"^Got single shape but multiple dtypes"):
        lazy(_sum_argmax, dtype=["float64", "int64"])


def test_callable_returning_dtypes_per_call() -> None:
    f = lazy(signature="(n)->(),()", dtype=lambda x: (x.dtype, "int64"))(_sum_argmax)
    s, i = f(np.ones((2, 3), dtype=np.float32))
    assert s.dtype == np.float32
    assert i.dtype == np.int64
