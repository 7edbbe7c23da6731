"""The static-argument key: values that compare equal but differ never share a cache.

``0.0 == -0.0``, ``1 == 1.0 == True``, ``(1, 2) == (1.0, 2.0)`` and
``np.float32(1) == np.float64(1)``, yet a kernel can tell each pair apart. Every path
through lazyapply that caches something per call site (specs, Dask tokens, torch
call sites and ops, JAX rules and native attributes) must give, for each value, what
eager NumPy gives. The values are called one after the other in one process, so a
cache keyed by ``==`` hands one value the other's result.

Each path is one :class:`Path` in :data:`PATHS`; add a path there (a runner that
takes the lazy function, a NumPy array and the value, and returns a NumPy result).
The paths of ``lazyapply.testing.PATHS`` take the same values in the path matrix
(tests/test_behaviour_paths.py); this file holds the ways of calling they lack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from lazyapply import lazy
from lazyapply.spec._static import Unkeyable, static_key

from ._statics import PYTHON_VALUES, VALUES, code


def tag(x: Any, s: Any = 0.0) -> Any:
    """``x`` times a code of ``s`` that a cache keyed by ``==`` would confuse."""
    return x * code(s)


def tag_vjp(g: Any, out: Any, x: Any, *positional: Any, s: Any = 0.0) -> Any:
    """The gradient of :func:`tag`; ``s`` passed positionally gets no cotangent."""
    return (g * code(positional[0] if positional else s), *[None] * len(positional))


def expected(s: Any) -> np.ndarray:
    return tag(np.ones(4), s=s)


@dataclass(frozen=True)
class Path:
    """One way of calling a lazy kernel; ``run(values)`` returns one result each."""

    name: str
    run: Callable[[list[Any]], list[np.ndarray]]
    values: list[Any] = field(default_factory=lambda: list(VALUES))
    marks: tuple[Any, ...] = ()


def _dask_positional(values: list[Any]) -> list[np.ndarray]:
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    f = lazy(tag)
    x = da.from_array(np.ones(4), chunks=2)
    return [np.asarray(r) for r in dask.compute(*[f(x, s) for s in values])]


def _jax_positional(values: list[Any]) -> list[np.ndarray]:
    jax = pytest.importorskip("jax")
    f = lazy(tag, as_numpy=True, elementwise=True)
    x = jax.numpy.ones(4)
    return [np.asarray(jax.jit(lambda a, s=s: f(a, s))(x)) for s in values]


def _jax_grad_positional(jit: bool) -> Callable[[list[Any]], list[np.ndarray]]:
    def run(values: list[Any]) -> list[np.ndarray]:
        jax = pytest.importorskip("jax")
        f = lazy(tag, as_numpy=True, elementwise=True, vjp=tag_vjp)
        x = jax.numpy.ones(4)
        out = []
        for s in values:
            grad = jax.grad(lambda a, s=s: f(a, s).sum())
            out.append(np.asarray((jax.jit(grad) if jit else grad)(x)))
        return out

    return run


def _jit_vjp(values: list[Any]) -> list[np.ndarray]:
    jax = pytest.importorskip("jax")
    f = lazy(tag, vjp=tag_vjp)
    x = jax.numpy.ones(4)
    out = []
    for s in values:
        grad = jax.jit(jax.grad(lambda a, s=s: f(a, s=s).sum()))(x)
        out.append(np.asarray(grad) * np.ones(4))  # d/dx of sum(x * c) is c
    return out


def _native_kernel() -> Any:
    numba = pytest.importorskip("numba")

    @numba.njit
    def signed(x: Any, s: Any) -> Any:
        return x * np.copysign(1.0, s) * (1.0 + s)

    return signed


# Python scalars: NumPy scalars beside a traced array are a mixed call for now
# (detection, the JAX helper's part).
_NUMBA_VALUES = [0.0, -0.0, 1, 1.0, True, -1, -1.0]


def _jit_native(values: list[Any]) -> list[np.ndarray]:
    jax = pytest.importorskip("jax")
    kernel = _native_kernel()
    f = lazy(kernel, as_numpy=True)
    x = jax.numpy.ones(4, dtype=jax.numpy.float64 if _x64() else jax.numpy.float32)
    return [np.asarray(jax.jit(lambda a, s=s: f(a, s))(x)) for s in values]


def _x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def _call(f: Any, positional: bool) -> Callable[..., Any]:
    """``f`` with ``s`` as its second positional argument or as a keyword."""
    return lambda t, s: f(t, s) if positional else f(t, s=s)


def _torch_compile(
    *, positional: bool = False, fullgraph: bool = False, **options: Any
) -> Callable[[list[Any]], list[np.ndarray]]:
    def run(values: list[Any]) -> list[np.ndarray]:
        torch = pytest.importorskip("torch")
        call = _call(lazy(tag, **options), positional)
        x = torch.ones(4, dtype=torch.float64)
        # A whole graph traces the op's fake implementation and autograd rule as
        # Inductor would (aot_eager); the other way breaks the graph at the call.
        backend = "aot_eager" if fullgraph else "eager"
        out = []
        for s in values:
            # Dynamo's own cache guards a float default by ==, so that -0.0 would
            # reuse the graph of 0.0 before lazyapply is even asked: start it afresh
            # (lazyapply's own call sites and ops stay, and are what this checks).
            torch._dynamo.reset()
            compiled = torch.compile(
                lambda t, s=s: call(t, s), fullgraph=fullgraph, backend=backend
            )
            out.append(compiled(x).numpy())
        return out

    return run


def _torch_export(
    *, positional: bool = False, **options: Any
) -> Callable[[list[Any]], list[np.ndarray]]:
    def run(values: list[Any]) -> list[np.ndarray]:
        torch = pytest.importorskip("torch")
        call = _call(lazy(tag, **options), positional)
        x = torch.ones(4, dtype=torch.float64)
        out = []
        for s in values:

            class M(torch.nn.Module):
                def forward(self, t: Any, s: Any = s) -> Any:
                    return call(t, s)

            out.append(torch.export.export(M(), (x,)).module()(x).numpy())
        return out

    return run


def _torch_grad(values: list[Any]) -> list[np.ndarray]:
    torch = pytest.importorskip("torch")
    f = lazy(tag, vjp=tag_vjp)
    out = []
    for s in values:
        x = torch.ones(4, dtype=torch.float64, requires_grad=True)
        f(x, s=s).sum().backward()
        out.append(x.grad.numpy() * np.ones(4))
    return out


_ELEMENTWISE = {"as_numpy": True, "elementwise": True}
_CALLABLES = {"as_numpy": True, "shape": lambda x, s: x.shape, "dtype": "float64"}


# Eager calls, every Dask mode, jax.jit's callback and native paths, jax.vmap,
# torch autograd's forward, torch.vmap and torch.compile with these values as keywords:
# the path matrix (test_equal_but_different_static_arguments in
# tests/test_behaviour_paths.py). Here: the paths and ways of passing it lacks.
PATHS = [
    Path("dask positional", _dask_positional),
    Path("jax.jit positional", _jax_positional),
    Path("jax.grad under jit", _jit_vjp),
    Path("jax.grad positional", _jax_grad_positional(jit=False)),
    Path("jax.grad positional under jit", _jax_grad_positional(jit=True)),
    Path(
        "jax.jit native",
        _jit_native,
        values=_NUMBA_VALUES,
        marks=(pytest.mark.slow,),
    ),
    Path("torch autograd", _torch_grad),
    Path("torch.compile", _torch_compile(), marks=(pytest.mark.slow,)),
    Path("torch.export", _torch_export(), marks=(pytest.mark.slow,)),
    # Positional, whole graph: Python numbers reach the op as 0-d operands. (A
    # NumPy scalar breaks such a graph: test_numpy_scalar_statics_under_torch_compile
    # in tests/test_behaviour_paths.py, a strict xfail.)
    Path(
        "torch.compile positional",
        _torch_compile(positional=True, fullgraph=True, **_ELEMENTWISE),
        values=PYTHON_VALUES,
        marks=(pytest.mark.slow,),
    ),
    # Shape and dtype callables keep the numbers static (in the op's call site).
    Path(
        "torch.compile positional, callables",
        _torch_compile(positional=True, fullgraph=True, **_CALLABLES),
        values=PYTHON_VALUES,
        marks=(pytest.mark.slow,),
    ),
    Path(
        "torch.export positional, callables",
        _torch_export(positional=True, **_CALLABLES),
        marks=(pytest.mark.slow,),
    ),
]


def _expected(path: Path, s: Any) -> np.ndarray:
    if path.run is _jit_native:
        kernel = _native_kernel()
        return np.asarray(kernel.py_func(np.ones(4), s))
    return expected(s)


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.name, marks=p.marks) for p in PATHS]
)
def test_equal_but_different_values_give_their_own_result(path: Path) -> None:
    got = path.run(path.values)
    assert len(got) == len(path.values)
    for s, result in zip(path.values, got, strict=True):
        want = _expected(path, s)
        np.testing.assert_allclose(
            result, want, rtol=1e-6, err_msg=f"{path.name}: s={s!r}"
        )


def test_codes_tell_every_value_apart() -> None:
    codes = [code(s) for s in VALUES]
    assert len(set(codes)) == len(codes)


# ------------------------------------------------------------ the key itself
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0.0, -0.0),
        (1, 1.0),
        (1, True),
        (1.0, True),
        ((1, 2), (1.0, 2.0)),
        ([1, 2], (1, 2)),
        (np.float32(1), np.float64(1)),
        (np.float64(1), 1.0),
        ({"s": 0.0}, {"s": -0.0}),
        (np.dtype("float32"), np.dtype("float64")),
        (np.dtype(">f8"), np.dtype("<f8")),
        (complex(0.0, 0.0), complex(0.0, -0.0)),
    ],
)
def test_static_key_tells_apart(a: Any, b: Any) -> None:
    assert static_key(a) != static_key(b)
    hash(static_key(a))


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        (1, (2.0, [3])),
        {"a": [1, 2]},
        np.float32(2),
        "s",
        None,
        frozenset({1}),
    ],
)
def test_static_key_equal_for_one_value(value: Any) -> None:
    assert static_key(value) == static_key(value)
    import copy

    assert static_key(copy.deepcopy(value)) == static_key(value)


def test_static_key_refuses_arrays() -> None:
    with pytest.raises(Unkeyable, match="pass it as data"):
        static_key((1, np.ones(2)))


def test_dask_tokenize_tells_apart() -> None:
    """The Dask token of a call's keywords: dask's own ``tokenize`` (checked here)."""
    pytest.importorskip("dask")
    from dask.base import tokenize

    for a, b in [(0.0, -0.0), (1, 1.0), (1, True), ((1, 2), (1.0, 2.0))]:
        assert tokenize({"s": a}) != tokenize({"s": b})
    assert tokenize({"s": np.float32(1)}) != tokenize({"s": np.float64(1)})
