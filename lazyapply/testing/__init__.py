"""Test helpers for kernels that run on every array library.

Two things live here, both public:

- The backends vocabulary that lazyapply's own test suite, its examples and
  ``python -m lazyapply`` use: :class:`Backend` (one member per library and mode, with
  ``asarray``/``to_numpy``/``call``/``skip_reason``), :func:`installed_backends`,
  :func:`to_numpy`, and the laziness assertions :func:`count_dask_computes` and
  :func:`assert_lazy`.
- The path matrix :data:`PATHS`: every way lazyapply runs a kernel (eager,
  ``as_numpy``, the Dask modes, ``jax.jit`` callback and native, ``jax.vmap``, torch
  autograd, ``torch.compile``), each a :class:`Path` that knows its backends, the
  kernels it takes and how to call one; :func:`paths_for` lists a backend's.
  ``check_kernel`` and lazyapply's own behaviour tests run through this one list.
- :func:`check_kernel`, the conformance check of a ``@lazy`` kernel: it runs the kernel
  on every installed backend and mode and compares each result with NumPy, returning a
  :class:`KernelReport` or raising :class:`CheckFailed` (an ``AssertionError``) with
  the table of runs.

- :func:`clear_caches` and :func:`cache_report`: empty, and list the sizes of, every
  store lazyapply keeps (specs, eager calls, compiled rules, tokens), all made through
  ``lazyapply._caches``.

``import lazyapply.testing`` imports no array library other than NumPy, and not pytest:
each backend is imported when a check needs it.
"""

from __future__ import annotations

from lazyapply._caches import cache_report, clear_caches
from lazyapply.testing._backends import (
    Backend,
    cuda_available,
    installed_backends,
    to_numpy,
)
from lazyapply.testing._check import check_kernel
from lazyapply.testing._laziness import ComputeCounter, assert_lazy, count_dask_computes
from lazyapply.testing._paths import PATHS, Path, paths_for
from lazyapply.testing._report import CheckFailed, CheckRow, KernelReport

__all__ = [
    "PATHS",
    "Backend",
    "CheckFailed",
    "CheckRow",
    "ComputeCounter",
    "KernelReport",
    "Path",
    "assert_lazy",
    "cache_report",
    "check_kernel",
    "clear_caches",
    "count_dask_computes",
    "cuda_available",
    "installed_backends",
    "paths_for",
    "to_numpy",
]
