"""The path matrix (``lazyapply.testing.PATHS``): one list, check_kernel and tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import lazy
from lazyapply.testing import PATHS, Backend, check_kernel, paths_for


def test_every_backend_has_a_path_and_names_are_unique() -> None:
    assert len({p.name for p in PATHS}) == len(PATHS)
    for backend in Backend:
        assert paths_for(backend), backend
    assert {p.name for p in PATHS} >= {
        "eager",
        "as_numpy",
        "dask",
        "dask elementwise",
        "dask signature",
        "dask stencil",
        "jax jit callback",
        "jax jit native",
        "jax vmap",
        "torch autograd",
        "torch vmap",
        "torch compile",
    }


def test_a_kernel_takes_one_dask_mode_and_one_jit_path() -> None:
    pytest.importorskip("numba", reason="numba is not installed")
    from numba import vectorize

    @vectorize(["float64(float64)"])
    def twice(x: float) -> float:
        return 2 * x

    for f, dask, jit in (
        (lazy(np.negative), "dask elementwise", "jax jit callback"),
        (lazy(lambda x: x[::-1]), "dask", "jax jit callback"),
        (lazy(twice, as_numpy=True), "dask elementwise", "jax jit native"),
    ):
        taken = {p.name for p in PATHS if p.takes(f) is None}
        assert taken & {p.name for p in paths_for(Backend.DASK)} == {dask}
        assert taken & {p.name for p in paths_for(Backend.JAX_JIT)} == {jit}


def _scale(x: Any, factor: float) -> Any:
    return x * factor


def _scale_vjp(g: Any, out: Any, x: Any, factor: float) -> tuple[Any, None]:
    return g * factor, None


def test_check_kernel_runs_the_matrix() -> None:
    """check_kernel's rows are the matrix's paths that take the kernel."""
    kernel = lazy(_scale, as_numpy=True, elementwise=True, vjp=_scale_vjp)
    names = ["numpy", "dask", "jax", "jax_jit", "torch"]
    if Backend.TORCH.skip_reason() is None:
        import torch

        torch._dynamo.reset()  # see test_a_compile_breaks_the_next_kernels_compile
    report = check_kernel(kernel, np.arange(4.0), 3.0, backends=names)
    ran = {(r.backend, r.mode) for r in report if r.outcome == "ok"}
    expected = {("pickle", "round trip")}
    for backend in map(Backend, names):
        if backend.skip_reason() is not None:
            continue
        for path in paths_for(backend):
            if path.takes(kernel) is None:
                expected |= {
                    (backend.value, path.label(kernel, v)) for v in path.variants
                }
    assert ran == expected
    assert ("torch", "torch compile") in ran or Backend.TORCH.skip_reason()
    assert ("jax_jit", "jit") in ran or Backend.JAX_JIT.skip_reason()


def _affine(x: Any, y: Any) -> Any:
    return x * 2.0 + y


def _affine_vjp(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, Any]:
    return g * 2.0, g


def test_a_compile_breaks_the_next_kernels_compile() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    import torch

    (compiled,) = [p for p in PATHS if p.name == "torch compile"]
    torch._dynamo.reset()
    first = compiled.declare(_affine, vjp=_affine_vjp)
    x = np.arange(4.0)
    out = compiled.call(first, Backend.TORCH, *compiled.arrays(Backend.TORCH, (x, x)))
    np.testing.assert_array_equal(out.detach().numpy(), x * 3)
    kernel = lazy(_scale, as_numpy=True, elementwise=True, vjp=_scale_vjp)
    try:
        report = check_kernel(kernel, x, 3.0, backends=["torch"])
    finally:
        torch._dynamo.reset()
    assert ("torch", "torch compile") in {(r.backend, r.mode) for r in report}
