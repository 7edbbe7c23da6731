"""Cython scalar kernels under ``jax.jit``: their C entry points, natively (issue 20).

A module is compiled here with ``pyximport`` (as examples/cython_kernel does). Its
``cpdef api``/``cdef api`` functions of C scalars run natively, element by element,
and equal their eager results; a fused function picks its specialisation by dtype;
functions without an exported entry, or on memoryviews, stay on the callback path and
``explain_native`` says why. SciPy's ``cython_special`` functions are Cython kernels
too.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("numba", reason="numba is not installed")
pytest.importorskip("Cython", reason="Cython is not installed")
jnp = jax.numpy

from lazyapply import SpecError, explain_native, lazy  # noqa: E402

SOURCE = """
# cython: language_level=3
from libc.math cimport exp, log1p
from cython cimport floating

cpdef double softplus(double x) noexcept nogil:
    return x + log1p(exp(-x)) if x > 0 else log1p(exp(x))

cpdef api double softplus_api(double x) noexcept nogil:
    return x + log1p(exp(-x)) if x > 0 else log1p(exp(x))

cpdef api long collatz(long n) noexcept nogil:
    cdef long k = 0
    while n > 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        k += 1
    return k

cpdef api floating halve(floating x) noexcept nogil:
    return x / 3

cpdef api double total(const double[:] x) noexcept nogil:
    cdef double t = 0
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        t += x[i]
    return t

cpdef double total_rw(double[:] x):  # not const: refuses read-only arrays
    return total(x)
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Any:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r} not found on PATH)")
    import pyximport

    folder = tmp_path_factory.mktemp("cython_native")
    (folder / "lazyapply_scalar_kernels.pyx").write_text(SOURCE)
    pyximport.install(build_dir=str(folder / "build"), language_level=3)
    sys.path.insert(0, str(folder))
    try:
        import lazyapply_scalar_kernels as module
    finally:
        sys.path.remove(str(folder))
    return module


def eager(func: Any, *args: Any) -> np.ndarray:
    """The kernel called on each element's Python scalar: its eager result."""
    return np.array([func(*(a.item() for a in xs)) for xs in zip(*args, strict=True)])


@pytest.mark.slow
def test_cpdef_api_kernels_run_natively(kernels: Any) -> None:
    with jax.enable_x64(True):
        n = np.arange(1, 40)
        got = jax.jit(lazy(kernels.collatz, elementwise=True))(jnp.asarray(n))
        np.testing.assert_array_equal(got, eager(kernels.collatz, n))
        assert "collatz: long (long" in explain_native(kernels.collatz)
        x = np.linspace(-30, 30, 13)
        f = jax.jit(lazy(kernels.softplus_api, elementwise=True))
        np.testing.assert_array_equal(f(jnp.asarray(x)), eager(kernels.softplus_api, x))
        assert explain_native(kernels.softplus_api).startswith("native")
        # vmap and broadcasting of a 0-d operand
        g = jax.vmap(lazy(kernels.softplus_api, elementwise=True))
        rows = x[:12].reshape(3, 4)
        np.testing.assert_array_equal(
            g(jnp.asarray(rows)),
            eager(kernels.softplus_api, rows.ravel()).reshape(3, 4),
        )


@pytest.mark.slow
def test_fused_kernel_picks_its_specialisation(kernels: Any) -> None:
    x = np.linspace(-1, 1, 7)
    with jax.enable_x64(True):
        f = jax.jit(lazy(kernels.halve, elementwise=True))
        got64 = f(jnp.asarray(x))
        assert "double (double" in explain_native(kernels.halve)
        np.testing.assert_array_equal(got64, x / 3)
        got32 = f(jnp.asarray(x, dtype=np.float32))
        assert got32.dtype == np.float32
        assert "float (float" in explain_native(kernels.halve)
        np.testing.assert_array_equal(got32, x.astype(np.float32) / np.float32(3))


@pytest.mark.slow
def test_unexported_and_memoryview_kernels_are_explained(kernels: Any) -> None:
    x = np.linspace(-1, 1, 5)
    with jax.enable_x64(True):
        # plain cpdef (no api, no .pxd): no C entry; the callback gets the array
        with pytest.raises(Exception, match="softplus"):
            jax.jit(lazy(kernels.softplus, elementwise=True))(jnp.asarray(x))
        assert "exports no C entry point" in explain_native(kernels.softplus)
        # a memoryview is not a C scalar: the callback runs it, with its value
        f = jax.jit(lazy(kernels.total, shape=(), dtype="float64", as_numpy=True))
        assert float(f(jnp.asarray(x))) == kernels.total(x)
        assert "__Pyx_memviewslice" in explain_native(kernels.total)


@pytest.mark.slow
def test_cython_special_functions_are_cython_kernels() -> None:
    cs = pytest.importorskip("scipy.special.cython_special")
    sc = pytest.importorskip("scipy.special")
    with jax.enable_x64(True):
        x = np.linspace(-2, 2, 9)
        z = x + 0.5j
        f = jax.jit(lazy(cs.erf, elementwise=True))
        np.testing.assert_array_equal(f(jnp.asarray(x)), sc.erf(x))
        assert "__pyx_fuse_1erf: double (double" in explain_native(cs.erf)
        np.testing.assert_array_equal(f(jnp.asarray(z)), sc.erf(z))
        assert "__pyx_t_double_complex" in explain_native(cs.erf)
        n = np.arange(6)
        g = jax.jit(lazy(cs.eval_chebyt, elementwise=True))
        np.testing.assert_array_equal(
            g(jnp.asarray(n), jnp.asarray(x[:6])), eager(cs.eval_chebyt, n, x[:6])
        )


def test_signatures_are_parsed_not_guessed() -> None:
    from lazyapply.adapters.jax.native._capi import parse

    sig = parse("double (double, long, int __pyx_skip_dispatch)")
    assert (sig.args, sig.ret, sig.skip_dispatch) == (("d", "l"), "d", True)
    sig = parse("void (double, double *, double *)")
    assert (sig.args, sig.outs, sig.ret) == (("d",), ("d", "d"), None)
    sig = parse(
        "double (Py_ssize_t, double, int __pyx_skip_dispatch, struct "
        "__pyx_opt_args_f *__pyx_optional_args)"
    )
    assert (sig.args, sig.skip_dispatch, sig.optional) == (("p", "d"), True, True)
    assert isinstance(parse("long double (long double, int __pyx_skip_dispatch)"), str)
    assert isinstance(parse("PyObject *(PyObject *, int __pyx_skip_dispatch)"), str)
    assert "memviewslice" in str(parse("double (__Pyx_memviewslice)"))


@pytest.mark.slow
def test_a_memoryview_that_is_not_const_is_explained(kernels: Any) -> None:
    """JAX arrays and Dask blocks reach kernels read-only: the fix is ``const``."""
    da = pytest.importorskip("dask.array", reason="dask[array] is not installed")
    x = np.linspace(-1, 1, 6)
    assert kernels.total_rw(x.copy()) == kernels.total(x)  # eager NumPy: writeable
    f = lazy(kernels.total_rw, shape=(), dtype="float64", as_numpy=True)
    for lazy_x in (jnp.asarray(x), da.from_array(x, chunks=3)):
        with pytest.raises(SpecError, match=r"^total_rw: .*const double\[:\] x"):
            np.asarray(f(lazy_x))
