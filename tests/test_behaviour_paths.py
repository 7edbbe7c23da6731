"""Behaviours written once, run through every path of the matrix on every backend.

``path`` (tests/conftest.py) is one of ``lazyapply.testing.PATHS`` on one backend it
takes: eager and ``as_numpy`` on every eager library, the four Dask modes, ``jax.jit``
through a callback and natively (Numba twins of the kernels), ``jax.vmap``, torch
autograd (kernels with a vjp) and ``torch.compile``. Every result is compared with
eager NumPy: values, dtype, number of outputs; lazy paths assert that nothing ran
during the call (``Path.call``).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

from lazyapply.testing import PATHS, Backend
from tests._path_case import PathCase, assert_close
from tests._statics import PYTHON_VALUES, VALUES, code

numba = pytest.importorskip("numba", reason="numba is not installed")
njit = numba.njit

RNG = np.random.default_rng(3)
X = RNG.standard_normal((2, 3))
Y = RNG.standard_normal((2, 3))


# ------------------------------------------------------------------ kernels
def affine(x: Any, y: Any) -> Any:
    return x * 2.0 + y


affine_nb = njit(affine)


def affine_vjp(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, Any]:
    return g * 2.0, g


def test_values_dtype_and_namespace(path: PathCase) -> None:
    kernel = path.declare(affine, numba=affine_nb, vjp=affine_vjp, inputs=2)
    out = path.run(kernel, X, Y)
    expected_ns = path.backend.xp
    assert array_api_compat.array_namespace(out) is expected_ns
    path.expect(out, affine(X, Y))


def _to_float32(x: Any) -> Any:
    xp = array_api_compat.array_namespace(x)
    return xp.astype(x * 2, xp.float32)


@njit
def _to_float32_nb(x: Any) -> Any:
    return (x * 2).astype(np.float32)


def _to_float32_vjp(g: Any, out: Any, x: Any) -> tuple[Any]:
    xp = array_api_compat.array_namespace(g)
    return (xp.astype(g, x.dtype) * 2,)


def test_declared_dtype(path: PathCase) -> None:
    kernel = path.declare(
        _to_float32, numba=_to_float32_nb, vjp=_to_float32_vjp, dtype="float32"
    )
    out = path.run(kernel, X)
    path.expect(out, (X * 2).astype(np.float32))


# ------------------------------------------------------------------ several outputs
def two(x: Any) -> tuple[Any, Any]:
    return x + 1, x * 2


two_nb = njit(two)


def two_vjp(g: Any, out: Any, x: Any) -> tuple[Any]:
    return (g[0] + 2 * g[1],)


DECLARATIONS = {
    "callables": {
        "shape": lambda x: [x.shape, x.shape],
        "dtype": lambda x: [x.dtype, x.dtype],
    },
    "constants": {"shape": [(2, 3), (2, 3)], "dtype": ["float64", "float64"]},
}


@pytest.mark.parametrize("declared", list(DECLARATIONS))
def test_several_outputs(path: PathCase, declared: str) -> None:
    if path.path.batch and declared == "constants":
        pytest.skip(f"{path}: constant shapes are those of one batch element")
    kernel = path.declare(
        two, numba=two_nb, vjp=two_vjp, outputs=2, **DECLARATIONS[declared]
    )
    out = path.run(kernel, X)
    assert isinstance(out, (tuple, list))
    path.expect(out, *two(X))


# ------------------------------------------------------------------ static arguments
def tagged(x: Any, *, s: Any) -> Any:
    return x * code(s)


@njit
def tagged_nb(x: Any, s: Any) -> Any:
    return x * np.copysign(1.0, s)  # Numba cannot ask type(): the sign of zero


def tagged_vjp(g: Any, out: Any, x: Any, *, s: Any) -> tuple[Any]:
    return (g * code(s),)


def _statics(path: PathCase) -> list[Any]:
    if path.path.name == "jax jit native":
        # The native path takes Python bool/int/float statics; the others take the
        # callback path, documented, and are covered there.
        return [s for s in VALUES if type(s) in (bool, int, float)]
    if path.path.name == "torch compile":
        return PYTHON_VALUES  # NumPy scalars: the strict xfail below
    return VALUES


def test_equal_but_different_static_arguments(path: PathCase) -> None:
    """Every value gives its own result, called one after the other (caches warm)."""
    native = path.path.name == "jax jit native"
    kernel = path.declare(tagged, numba=tagged_nb, vjp=tagged_vjp)
    values = _statics(path)
    outs = [path.run(kernel, X, s=s) for s in values]
    eager = tagged_nb.py_func if native else tagged
    expected = [path.path.expected((eager(X, s=s),))[0] for s in values]
    for out, want in zip(outs, expected, strict=True):
        assert tuple(out.shape) == want.shape
    if path.backend is Backend.DASK:
        import dask

        outs = list(dask.compute(*outs))  # one graph: equal keys would merge them
    for s, out, want in zip(values, outs, expected, strict=True):
        got = path.backend.values_or_skip(out)
        assert_close(got, want, f"{path}, s={s!r}")


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="torch compile: a NumPy scalar static (np.float32(1)) after Python numbers "
    "breaks the graph (Dynamo passes it as a tensor of unknown value: "
    "assume_constant_result argument conversion failed); Python numbers pass as 0-d "
    "operands now",
)
def test_numpy_scalar_statics_under_torch_compile() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    import torch

    path = PathCase(next(p for p in PATHS if p.name == "torch compile"), Backend.TORCH)
    kernel = path.declare(tagged, vjp=tagged_vjp)
    try:
        for s in (1.0, np.float32(1), np.float64(1)):
            (got,) = path.values(path.run(kernel, X, s=s))
            assert_close(got, tagged(X, s=s), f"{path}, s={s!r}")
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------------ errors
def fails(x: Any) -> Any:
    msg = "bad input 42"
    raise ValueError(msg)


@njit
def fails_nb(x: Any) -> Any:
    raise ValueError("bad input 42")


def _text(exc: BaseException) -> str:
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_kernel_error_reaches_the_caller(path: PathCase) -> None:
    """The kernel's own error and message, at the call or where the result is read."""
    kernel = path.declare(
        fails, numba=fails_nb, vjp=affine_vjp, shape=lambda x: x.shape
    )
    with pytest.raises(Exception) as info:
        path.values(path.run(kernel, X))
    if info.type is pytest.skip.Exception:
        raise info.value
    assert "bad input 42" in _text(info.value)


# ------------------------------------------------------------------ laziness
CALLS: list[int] = []


def counted(x: Any) -> Any:
    CALLS.append(1)
    return x * 3


def counted_vjp(g: Any, out: Any, x: Any) -> tuple[Any]:
    return (g * 3,)


def test_the_kernel_runs_when_the_path_says(path: PathCase) -> None:
    """Eager paths run the kernel in the call; Dask only at compute; jit inside."""
    kernel = path.declare(counted, vjp=counted_vjp)
    CALLS.clear()
    out = path.run(kernel, X)
    if path.backend is Backend.DASK:
        assert CALLS == []  # Path.call also counted zero Dask computes
    else:
        assert CALLS, f"{path}: the kernel did not run"
    path.expect(out, X * 3)
    assert CALLS


# ------------------------------------------------------------------ mutation
def bump(x: Any) -> Any:
    x += 1
    return x * 2


bump_nb = njit(bump)


def bump_flat(x: Any) -> Any:
    for i in range(x.size):  # Numba lets .flat write into a read-only array
        x.flat[i] += 1
    return x * 2


bump_flat_nb = njit(bump_flat)

#: Kernels that write into their input: in place, and through ``.flat`` (NumPy's,
#: so the NumPy arrays of ``as_numpy``), each with its Numba twin.
WRITERS = {
    "in place": (bump, bump_nb, {}),
    ".flat": (bump_flat, bump_flat_nb, {"as_numpy": True}),
}

#: Libraries whose arrays a kernel may change in place, as eager NumPy lets it:
#: on the paths that hand the kernel the caller's array, the change is the caller's.
MUTABLE = {
    Backend.NUMPY,
    Backend.ARRAY_API_STRICT,
    Backend.ARRAY_API_STRICT_DEVICE1,
    Backend.TORCH,
    Backend.TORCH_CUDA,
    Backend.SPARSE,
    Backend.CUPY,
}


@pytest.mark.parametrize("writes", list(WRITERS))
def test_a_kernel_that_writes_into_its_input(path: PathCase, writes: str) -> None:
    """The caller's array is unchanged, or the error says why (read-only input)."""
    f, f_nb, options = WRITERS[writes]
    kernel = path.declare(f, numba=f_nb, **options)
    args = path.path.arrays(path.backend, (X,))
    try:
        out = path.path.call(kernel, path.backend, *args)
        got = path.values(out)[0]
    except Exception as exc:  # the error must say why
        text = _text(exc)
        if "in-place operation" in text:  # torch autograd's own refusal
            return
        # lazyapply's: inputs are read-only (JAX, Dask), the kernel and the fix named
        assert "read-only" in text, text
        assert f.__name__ in text, text
        assert "x = x.copy()" in text, text
        return
    expected = path.path.expected(((X + 1) * 2,))[0]
    assert_close(got, expected, str(path))
    after = path.backend.values_or_skip(args[0])
    if path.backend in MUTABLE and not path.path.lazy:
        # As in eager NumPy: changed in place, or untouched where the path copied.
        assert np.array_equal(after, X) or np.array_equal(after, X + 1), str(path)
    else:
        np.testing.assert_array_equal(after, X.astype(after.dtype), err_msg=str(path))
