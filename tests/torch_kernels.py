"""Kernels shared by the torch autograd and torch.compile tests (compiled once).

A Numba ``@njit`` kernel with a vjp (two arguments, a scalar keyword), a SciPy
kernel with a vjp, a two-output kernel, a Cython kernel (``examples/cython_kernel``,
built by pyximport into its git-ignored build folder) and a kernel whose output size
depends on the data. Each vjp counts its calls, so tests can see which rule ran.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lazyapply import lazy

numba = pytest.importorskip("numba", reason="numba is not installed")
special = pytest.importorskip("scipy.special", reason="scipy is not installed")

VJP_CALLS = {"sin_scale": 0, "erf": 0, "polar": 0}


@numba.njit(cache=False)
def _sin_scale(x: Any, y: Any, scale: float) -> Any:
    return np.sin(x) * y * scale


@numba.njit(cache=False)
def _sin_scale_grads(g: Any, x: Any, y: Any, scale: float) -> Any:
    return g * np.cos(x) * y * scale, g * np.sin(x) * scale


@lazy(as_numpy=True, elementwise=True)
def sin_scale(x: Any, y: Any, scale: float = 1.0) -> Any:
    """``sin(x) * y * scale`` by a Numba kernel; ``scale`` is a static keyword."""
    return _sin_scale(x, y, scale)


@sin_scale.defvjp
def sin_scale_vjp(g: Any, out: Any, x: Any, y: Any, scale: float = 1.0) -> Any:
    VJP_CALLS["sin_scale"] += 1
    return _sin_scale_grads(g, x, y, scale)


def _erf_vjp(g: Any, out: Any, x: Any) -> Any:
    VJP_CALLS["erf"] += 1
    return (g * 2 / np.sqrt(np.pi) * np.exp(-(x**2)),)


erf = lazy(special.erf, as_numpy=True, elementwise=True, vjp=_erf_vjp)


@lazy(as_numpy=True, shape=lambda x: [x.shape, x.shape], dtype=["float64", "float64"])
def polar(x: Any) -> Any:
    """Two outputs: ``(x cos x, x sin x)``."""
    return x * np.cos(x), x * np.sin(x)


@polar.defvjp
def polar_vjp(g: Any, out: Any, x: Any) -> Any:
    VJP_CALLS["polar"] += 1
    gc, gs = g
    return (gc * (np.cos(x) - x * np.sin(x)) + gs * (np.sin(x) + x * np.cos(x)),)


@lazy(as_numpy=True)
def positives(x: Any) -> Any:
    """Data-dependent output size: no shape can be declared."""
    return x[x > 0]


unknown_size = lazy(positives.eager, as_numpy=True, shape=(None,))


def ellipk(m: Any) -> Any:
    """A SciPy call inside a Python function: no declared derivative applies."""
    return special.ellipk(m)


# (lazy(special.ellipk) itself gets lazyapply.special's derived vjp.)
nograd = lazy(ellipk, as_numpy=True)


def cython_ffill() -> Any:
    """The example's compiled Cython ``ffill``, as a lazy kernel; skips without a C
    compiler or Cython."""
    pytest.importorskip("Cython", reason="Cython is not installed")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r} not found)")
    import pyximport

    here = Path(__file__).resolve().parents[1] / "examples" / "cython_kernel"
    build = here / "build" / "tests"  # apart from the example's own run.py
    build.mkdir(parents=True, exist_ok=True)
    pyximport.install(build_dir=str(build), language_level=3, inplace=False)
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    # pytest-xdist workers share this build folder: one compiles while the others
    # wait, then they load its module (else one reads a half-written library).
    import fcntl

    with open(build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        from ffill import ffill

    return lazy(ffill, as_numpy=True, shape=lambda x: x.shape, dtype=lambda x: x.dtype)
