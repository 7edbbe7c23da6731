"""One metadata function, one error: a bad ``shape=``/``dtype=`` fails alike everywhere.

A raising shape callable, ``shape=lambda x: (-1,)`` and an unknown dtype give the
same :class:`~lazyapply.SpecError` (same message) on eager NumPy and torch, on Dask
(when the graph is built, nothing computed) and under ``jax.jit``: each path asks
:func:`lazyapply.spec._metadata.layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lazyapply import SpecError, lazy


def _boom(x: Any) -> Any:
    msg = "no shape today"
    raise RuntimeError(msg)


def _kernel(x: Any) -> Any:
    return x


BAD = {
    "raising shape callable": {"shape": _boom},
    "negative size": {"shape": lambda x: (-1,)},
    "unknown dtype from a callable": {"dtype": lambda x: "floot32"},
    "raising dtype callable": {"dtype": _boom},
}


def _numpy(f: Callable[..., Any], a: np.ndarray) -> Any:
    return f(a)


def _torch(f: Callable[..., Any], a: np.ndarray) -> Any:
    torch = pytest.importorskip("torch")
    return f(torch.asarray(a))


def _dask(f: Callable[..., Any], a: np.ndarray) -> Any:
    da = pytest.importorskip("dask.array")
    from lazyapply.testing import count_dask_computes

    with count_dask_computes() as counter:
        out = f(da.from_array(a, chunks=2))
    assert counter.count == 0
    return out


def _jit(f: Callable[..., Any], a: np.ndarray) -> Any:
    jax = pytest.importorskip("jax")
    return jax.jit(f)(jax.numpy.asarray(a))


PATHS = {"numpy": _numpy, "torch": _torch, "dask": _dask, "jax.jit": _jit}


@pytest.mark.parametrize("what", list(BAD))
def test_same_error_on_every_path(what: str) -> None:
    a = np.arange(4.0)
    messages = {}
    for path, call in PATHS.items():
        f = lazy(_kernel, **BAD[what])
        with pytest.raises(SpecError) as info:
            call(f, a)
        messages[path] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    assert "_kernel" in messages["numpy"]


@pytest.mark.parametrize("strict", [True, False])
def test_not_strict_eager_still_validates_callables(strict: bool) -> None:
    f = lazy(_kernel, shape=lambda x: (-1,), strict=strict)
    with pytest.raises(SpecError, match="output sizes must be >= 0"):
        f(np.arange(3.0))


def test_strict_inferred_metadata_cached_per_argument_signature() -> None:
    """The cached check follows shapes and dtypes: a new signature, a new check."""
    from lazyapply import KernelOutputError

    @lazy
    def first_plus(x: Any, y: Any) -> Any:
        return x + 0 * y[..., :1] if x.shape[-1] == 3 else x[..., :1]

    a, b = np.ones((2, 3)), np.ones((2, 3))
    np.testing.assert_array_equal(first_plus(a, b), a)
    with pytest.raises(
        KernelOutputError, match=r"has shape \(2, 1\), expected \(2, 4\)"
    ):
        first_plus(np.ones((2, 4)), np.ones((2, 4)))

    @lazy
    def keep_x(x: Any, y: Any) -> Any:
        return x

    assert keep_x(a, b).dtype == np.float64
    with pytest.raises(KernelOutputError, match="has dtype float32, expected float64"):
        keep_x(np.ones((2, 3), np.float32), b)  # result_type is float64
    assert keep_x(np.ones((2, 3), np.float32), b.astype(np.float32)).dtype == np.float32
    with pytest.raises(KernelOutputError, match="has dtype float32, expected float64"):
        keep_x(np.ones((2, 3), np.float32), 1.0 + b)  # the cached check still holds
