"""The smallest end-to-end check on every backend: ``x + 1`` with declared metadata."""

from __future__ import annotations

import numpy as np

from lazyapply import lazy_apply

from .conftest import Backend


def _plus_one(x):
    return x + 1


def test_plus_one(backend: Backend) -> None:
    x = backend.asarray(np.arange(6.0).reshape(2, 3))
    out = backend.call(
        lambda a: lazy_apply(_plus_one, a, shape=(2, 3), dtype="float64"), x
    )
    assert type(out) is type(x) or backend is Backend.JAX_JIT
    np.testing.assert_array_equal(
        backend.values_or_skip(out), np.arange(6.0).reshape(2, 3) + 1
    )
