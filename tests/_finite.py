"""Central finite differences of NumPy functions: the reference for derivatives.

One helper for every test that checks a gradient, a Jacobian or a Hessian against the
eager kernel, so that the step and the layout are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["central_differences"]


def central_differences(
    f: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
    """The derivative of ``f`` at ``x`` by central differences, element by element.

    ``f`` maps an array shaped like ``x`` to a scalar (the result is the gradient,
    shaped like ``x``) or to an array (the Jacobian, shaped ``f(x).shape + x.shape``:
    entry ``[j, i]`` is ``d f_j / d x_i``; of a gradient, the Hessian). Use float64.
    """
    x = np.asarray(x)
    cols = []
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        cols.append((np.asarray(f(up)) - np.asarray(f(down))) / (2 * eps))
    jac = np.stack(cols, axis=-1)
    return jac.reshape(jac.shape[:-1] + x.shape)
