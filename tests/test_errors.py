"""Every error of issue 2: its type (the reference's builtin type, and lazyapply's own
class) and its message (the reference's words, plus the kernel's name and the fix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import (
    ArgumentTypeError,
    KernelOutputError,
    LazyApplyError,
    MixedNamespaceError,
    NotDifferentiableError,
    SpecError,
    lazy_apply,
)

from .conftest import Backend

xpx = pytest.importorskip("array_api_extra", reason="the reference is not installed")


def my_kernel(*args: Any, **kwargs: Any) -> Any:
    return args[0]


def test_exception_hierarchy() -> None:
    for cls, builtin in (
        (SpecError, ValueError),
        (KernelOutputError, ValueError),
        (MixedNamespaceError, TypeError),
        (ArgumentTypeError, TypeError),
        (NotDifferentiableError, TypeError),
    ):
        assert issubclass(cls, LazyApplyError)
        assert issubclass(cls, builtin)


# ------------------------------------------------------------ at least one array
@pytest.mark.parametrize(
    "args",
    [(), (1,), (None,), (1.5, None, True, 2j)],
    ids=["none", "int", "None", "mix"],
)
def test_at_least_one_array(backend: Backend, args: tuple[Any, ...]) -> None:
    for xp in (None, backend.xp):
        with pytest.raises(
            ValueError, match=r"^Must have at least one argument array"
        ) as info:
            lazy_apply(my_kernel, *args, xp=xp)
        assert isinstance(info.value, SpecError)
        assert "my_kernel" in str(info.value)
    # The reference raises the same type and message.
    with pytest.raises(ValueError, match=r"^Must have at least one argument array"):
        xpx.lazy_apply(my_kernel, *args, xp=backend.xp)


# ------------------------------------------------------------ mixed namespaces
def _mixed_pairs() -> list[Any]:
    pairs = []
    for a, b in (
        (Backend.NUMPY, Backend.TORCH),
        # NumPy beside JAX or Dask is adopted by that library, as jnp and dask.array
        # do (tests/test_jax_surprises.py); it stays an error beside the others.
        (Backend.NUMPY, Backend.ARRAY_API_STRICT),
        (Backend.NUMPY, Backend.SPARSE),
        (Backend.TORCH, Backend.JAX),
        (Backend.DASK, Backend.SPARSE),
    ):
        reason = a.skip_reason() or b.skip_reason()
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        pairs.append(pytest.param(a, b, id=f"{a}+{b}", marks=marks))
    return pairs


@pytest.mark.parametrize(("first", "second"), _mixed_pairs())
def test_mixed_namespaces(first: Backend, second: Backend) -> None:
    x = first.asarray(np.ones(3))
    y = second.asarray(np.ones(3))
    for args in ((x, y), (x, 1.0, None, y), (y, x)):
        with pytest.raises(TypeError) as info:
            lazy_apply(my_kernel, *args)
        assert isinstance(info.value, MixedNamespaceError)
        text = str(info.value)
        assert text.startswith("my_kernel: arguments mix array libraries")
        assert first.module.split("_")[0] in text
        assert second.module.split("_")[0] in text
        assert "convert them to one library" in text
    with pytest.raises(TypeError):  # the reference agrees on the type
        xpx.lazy_apply(my_kernel, x, y)


# Fixed ids: repr(object()) holds an address, which differs between xdist workers.
# Lists and tuples of numbers pass to the kernel (test_drop_in_defects.py).
@pytest.mark.parametrize("bad", ["text", object()], ids=["str", "object"])
def test_unsupported_argument(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^my_kernel: got an argument of type") as info:
        lazy_apply(my_kernel, np.ones(2), bad)
    # Not a mix of libraries: its own class (still a TypeError, as the reference's).
    assert isinstance(info.value, ArgumentTypeError)
    assert not isinstance(info.value, MixedNamespaceError)
    assert "keyword argument" in str(info.value)  # the fix


@pytest.mark.parametrize(
    "args",
    [([1, 2], [np.ones(2)]), ((1, 2), (np.ones(2),)), ([1, 2], [[np.ones(2)]])],
    ids=["lists", "tuples", "nested"],
)
def test_every_sequence_argument_is_checked(args: tuple[Any, ...]) -> None:
    # Detection looks up a repeated argument type once; lists and tuples are never
    # cached, so the second one is checked too (an array in it is refused).
    with pytest.raises(ArgumentTypeError, match=r"^my_kernel: a (list|tuple) among"):
        lazy_apply(my_kernel, np.ones(2), *args)


# ------------------------------------------------------------ shape / dtype counts
def test_multiple_shapes_one_dtype(backend: Backend) -> None:
    x = backend.asarray(np.ones(3))
    with pytest.raises(
        ValueError, match=r"^Got multiple shapes but only one dtype"
    ) as info:
        lazy_apply(my_kernel, x, shape=[(3,), (3,)], dtype="float32")
    assert isinstance(info.value, SpecError)
    assert "my_kernel" in str(info.value)
    with pytest.raises(ValueError, match=r"^Got multiple shapes but only one dtype"):
        xpx.lazy_apply(my_kernel, x, shape=[(3,), (3,)], dtype=backend.xp.float32)


def test_single_shape_multiple_dtypes(backend: Backend) -> None:
    x = backend.asarray(np.ones(3))
    float32 = backend.xp.float32
    for shape in ((3,), None):
        with pytest.raises(
            ValueError, match=r"^Got single shape but multiple dtypes"
        ) as info:
            lazy_apply(my_kernel, x, shape=shape, dtype=[float32, float32])
        assert isinstance(info.value, SpecError)
        assert "my_kernel" in str(info.value)
    with pytest.raises(ValueError, match=r"^Got single shape but multiple dtypes"):
        xpx.lazy_apply(my_kernel, x, shape=(3,), dtype=[float32, float32])


@pytest.mark.parametrize(("n", "m"), [(2, 1), (2, 3), (1, 2), (3, 0)])
def test_n_shapes_m_dtypes(backend: Backend, n: int, m: int) -> None:
    x = backend.asarray(np.ones(3))
    shapes = [(3,)] * n
    dtypes = [backend.xp.float32] * m
    with pytest.raises(ValueError, match=f"^Got {n} shapes and {m} dtypes") as info:
        lazy_apply(my_kernel, x, shape=shapes, dtype=dtypes)
    assert isinstance(info.value, SpecError)
    assert "my_kernel" in str(info.value)
    with pytest.raises(ValueError, match=f"^Got {n} shapes and {m} dtypes"):
        xpx.lazy_apply(my_kernel, x, shape=shapes, dtype=dtypes)


# ------------------------------------------------------------ malformed shape / dtype
@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ("ab", "shape must be a tuple of sizes"),
        (3, "shape must be a tuple of sizes"),
        ((1.5,), "shape must be a tuple of sizes"),
        ((True,), "shape must be a tuple of sizes"),
        (((2,), 3), "shape must be a tuple of sizes"),
        ((-1,), "output sizes must be >= 0 or None"),
        ([(2,), (-3,)], "output sizes must be >= 0 or None"),
    ],
    ids=repr,
)
def test_malformed_shape(shape: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=f"^my_kernel: {fragment}") as info:
        lazy_apply(my_kernel, np.ones(2), shape=shape)
    assert isinstance(info.value, SpecError)


def test_unknown_dtype_name(backend: Backend) -> None:
    x = backend.asarray(np.ones(3))
    with pytest.raises(
        ValueError, match=r"^my_kernel: unknown dtype 'float99'"
    ) as info:
        backend.call(lambda a: lazy_apply(my_kernel, a, shape=(3,), dtype="float99"), x)
    assert isinstance(info.value, SpecError)


def test_dtype_without_counterpart() -> None:
    with pytest.raises(
        ValueError,
        match=r"^my_kernel: dtype 'bfloat16' has no counterpart in namespace",
    ):
        lazy_apply(my_kernel, np.ones(2), dtype="bfloat16")


# ------------------------------------------------------------ backend-specific
def test_output_shape_must_be_fully_known_inside_jit() -> None:
    jax = pytest.importorskip("jax")
    f = jax.jit(lambda a: lazy_apply(my_kernel, a, shape=(None,), dtype="float32"))
    with pytest.raises(ValueError, match=r"^Output shape must be fully known") as info:
        f(jax.numpy.ones(2))
    assert isinstance(info.value, SpecError)
    assert "my_kernel" in str(info.value)


def test_sparse_refuses_densification() -> None:
    sparse = pytest.importorskip("sparse")
    with pytest.raises(RuntimeError, match="Cannot convert a sparse array to dense"):
        lazy_apply(my_kernel, sparse.COO.from_numpy(np.eye(2)), as_numpy=True)


def test_torch_meta_refuses_conversion() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="meta"):
        lazy_apply(my_kernel, torch.ones(2, device="meta"), as_numpy=True)


def test_array_api_strict_other_device_refuses_conversion() -> None:
    xs = pytest.importorskip("array_api_strict")
    x = xs.asarray([1.0, 2.0], device=xs.Device("device1"))
    with pytest.raises(RuntimeError, match="device1"):
        lazy_apply(my_kernel, x, as_numpy=True)


def test_kernel_output_error_names_everything() -> None:
    with pytest.raises(KernelOutputError) as info:
        lazy_apply(
            lambda a: (a, a[:1]),
            np.ones(2),
            shape=[(2,), (2,)],
            dtype=[float] * 2,
            strict=True,
        )
    assert str(info.value) == (
        "lambda (numpy): output 1 has shape (1,), expected (2,); fix the kernel or the "
        "declared shape="
    )
    assert isinstance(info.value, ValueError)


def test_not_a_sequence_of_outputs() -> None:
    with pytest.raises(KernelOutputError, match="declared with 2 outputs but returned"):
        lazy_apply(my_kernel, np.ones(2), shape=[(2,), (2,)], dtype=[float] * 2)
