"""Modes from the kernel (issue 12): ufuncs are elementwise, gufuncs bring a signature.

``lazy(vhypot)`` keeps Dask's chunks and ``lazy(gcumsum)`` runs per block without any
option; inside ``jax.vmap`` such kernels take the whole batch in one call. An explicit
option wins; a kernel that implies nothing stays a whole-array kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import lazy, lazy_apply
from lazyapply.spec._modes import infer_mode

numba = pytest.importorskip("numba", reason="numba is not installed")


@numba.vectorize
def vhypot(a: Any, b: Any) -> Any:
    return (a * a + b * b) ** 0.5


@numba.guvectorize(["void(float64[:], float64[:])"], "(n)->(n)")
def gcumsum(x: Any, out: Any) -> None:  # pragma: no cover - runs as machine code
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
        out[i] = acc


A = np.arange(24.0).reshape(6, 4)
vhypot(A, A)  # compile the DUFunc's loop once, before Dask's threads call it


def test_infer_mode_per_kernel_type() -> None:
    assert infer_mode(np.hypot) == (True, None)
    assert infer_mode(vhypot) == (True, None)
    assert infer_mode(gcumsum) == (False, "(n)->(n)")
    assert infer_mode(np.vecdot) == (False, "(n),(n)->()")
    assert infer_mode(np.matmul) is None  # optional core dimensions imply nothing
    assert infer_mode(np.cumsum) is None
    assert infer_mode(lambda x: x) is None


def _kernel_tasks(x: Any, name: str) -> int:
    from dask.utils import key_split

    return sum(1 for k in dict(x.__dask_graph__()) if key_split(k) == name)


def test_dask_keeps_chunks_without_options() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    a = da.from_array(A, chunks=(3, 2))
    for out, name in (
        (lazy(vhypot)(a, a), "vhypot"),
        (lazy_apply(np.hypot, a, a), "hypot"),
    ):
        assert out.chunks == a.chunks
        assert _kernel_tasks(out, name) == a.npartitions
        np.testing.assert_allclose(out.compute(), np.hypot(A, A))
    rows = da.from_array(A, chunks=(2, 4))
    out = lazy(gcumsum)(rows)
    assert out.chunks == rows.chunks
    assert _kernel_tasks(out, "gcumsum") == rows.npartitions
    np.testing.assert_array_equal(out.compute(), np.cumsum(A, axis=-1))


def test_explicit_option_wins() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    a = da.from_array(A, chunks=(3, 2))
    # A signature that reads whole rows overrides the kernel's elementwise mode.
    out = lazy_apply(vhypot, a, a, signature="(n),(n)->(n)")
    assert out.chunks == ((3, 3), (4,))
    np.testing.assert_allclose(out.compute(), np.hypot(A, A))


def test_jax_vmap_batches_inferred_modes() -> None:
    jax = pytest.importorskip("jax", reason="jax is not installed")
    jnp = pytest.importorskip("jax.numpy")
    x = jnp.asarray(A, dtype=jnp.float32)
    f = jax.vmap(lambda r: lazy_apply(np.hypot, r, r, as_numpy=True))
    text = str(jax.make_jaxpr(f)(x))
    # One callback for the whole batch: its result has the batch axis.
    assert text.count("lazyapply_host_call[") == 1
    assert "vmap_method=broadcast_all" in text
    assert "f32[6,4] = lazyapply_host_call" in text
    np.testing.assert_allclose(jax.jit(f)(x), np.hypot(A, A), rtol=1e-6)
    g = jax.jit(jax.vmap(lazy(gcumsum, as_numpy=True)))
    np.testing.assert_allclose(g(jnp.asarray(A)), np.cumsum(A, axis=-1), rtol=1e-6)
