"""Static checks: ``@lazy`` keeps the kernel's types where they are honest.

A lazy function takes and returns the arrays of every library (a call on a torch
tensor returns a tensor), so its call is typed ``(*Any) -> Any``: a kernel annotated
with NumPy arrays is not rejected on torch, JAX or Dask arrays. The kernel itself
keeps its types as ``.eager`` (and the class's parameters in ``LazyFunction[P, R]``).

Checked by mypy (strict) and pyright through ``tests/typing/check.sh`` (run by
``tests/test_typing.py``); never executed for values. Each line marked with both
``type: ignore[...]`` and ``pyright: ignore[...]`` is a misuse that both checkers must
reject: mypy's ``--warn-unused-ignores`` and pyright's
``reportUnnecessaryTypeIgnoreComment`` fail the check if it is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

from lazyapply import LazyFunction, lazy
from lazyapply._decorator import BoundLazyFunction

Array = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@lazy
def bare(x: Array, k: int, /) -> Array:
    return x * k


@lazy(shape=lambda x, y: (x.shape[0], y.shape[1]), dtype="float64", as_numpy=True)
def matmul(x: Array, y: Array, /) -> Array:
    return x @ y


@lazy(shape=[(3,), (3,)], dtype=("float64", "int64"))
def two(x: Array, /) -> tuple[Array, Ints]:
    return x, x.astype(np.int64)


@lazy(as_numpy=True)
def keywords(x: Array, k: int, *, scale: float = 1.0) -> Array:
    return x * k * scale


def plain(x: Array, /) -> Array:
    return x


functional = lazy(plain, as_numpy=True)


class Model:
    @lazy(as_numpy=True)
    def predict(self, x: Array, /) -> Array:
        return x


def check(x: Array) -> None:
    # Both forms keep the parameters and the return type.
    assert_type(bare, LazyFunction[[Array, int], Array])
    assert_type(matmul, LazyFunction[[Array, Array], Array])
    assert_type(two, LazyFunction[[Array], tuple[Array, Ints]])
    assert_type(functional, LazyFunction[[Array], Array])
    assert_type(bare(x, 2), Any)
    assert_type(matmul(x, x), Any)
    assert_type(two(x), Any)
    assert_type(keywords(x, 2, scale=0.5), Any)
    assert_type(bare.eager(x, 2), Array)
    # The library's purpose: other libraries' arrays are accepted.
    other: list[float] = [1.0]
    assert_type(bare(other, 2), Any)
    assert_type(bare.eager, Callable[[Array, int], Array])
    assert_type(bare.options, Mapping[str, Any])
    # As a method: the class attribute keeps self, the bound one drops it.
    assert_type(Model.predict, LazyFunction[[Model, Array], Array])
    assert_type(Model().predict, BoundLazyFunction[[Array], Array])
    assert_type(Model().predict(x), Any)
    # Usable where a plain callable of the kernel's types is expected.
    as_callable: Callable[[Array, int], Array] = bare
    assert callable(as_callable)

    # Misuse that both checkers must reject.
    bare.eager(x)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    bare.eager(x, "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    lazy(as_numpy="yes")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    lazy(shap=(3,))  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
