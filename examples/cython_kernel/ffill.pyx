# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Forward fill: replace each NaN by the last valid value before it in its row.

A loop with a carried value, compiled by Cython. ``const`` memoryviews accept read-only
buffers (JAX hands its host callbacks read-only arrays); the fused type ``floating``
compiles one version for float32 and one for float64.
"""

import numpy as np

from cython cimport floating
from libc.math cimport NAN


def ffill(const floating[:, :] x):
    """Forward-fill NaNs along the last axis of a 2-D float32/float64 array."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t m = x.shape[1]
    cdef floating last
    result = np.empty((n, m), dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, :] out = result
    with nogil:
        for i in range(n):
            last = NAN
            for j in range(m):
                if x[i, j] == x[i, j]:  # false only for NaN
                    last = x[i, j]
                out[i, j] = last
    return result
