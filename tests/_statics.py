"""Static arguments that compare equal yet differ, and a number that tells them apart.

``0.0 == -0.0``, ``1 == 1.0 == True``, ``(1, 2) == (1.0, 2.0)`` and
``np.float32(1) == np.float64(1)``, yet a kernel can tell each pair apart: a cache
keyed by ``==`` hands one value the other's result. The path matrix
(tests/test_behaviour_paths.py) and the paths outside it (tests/test_static_key.py)
call kernels with these values, one after the other, and compare with eager NumPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["PYTHON_VALUES", "VALUES", "code"]

#: Pairs (and more) that ``==`` confuses; every one must give its own result.
VALUES: list[Any] = [
    0.0,
    -0.0,
    1,
    1.0,
    True,
    math.nan,
    (1, 2),
    (1.0, 2.0),
    np.float32(1),
    np.float64(1),
]
#: Without NumPy scalars (torch.compile's fullgraph path cannot take them yet).
PYTHON_VALUES = [v for v in VALUES if not isinstance(v, np.generic)]
_TYPE_CODES = {"int": 1, "float": 2, "bool": 3, "float32": 4, "float64": 5}


def code(s: Any) -> float:
    """A number that differs for every value of :data:`VALUES` (types, signs, NaN)."""
    items = s if isinstance(s, tuple) else (s,)
    c = 100.0 * len(items) + (50.0 if isinstance(s, tuple) else 0.0)
    for v in items:
        c = 10 * c + _TYPE_CODES[type(v).__name__]
        c += 0.5 if math.copysign(1.0, float(v)) < 0 else 0.0
        c += 0.25 if math.isnan(float(v)) else 0.0625 * abs(float(v))
    return c
