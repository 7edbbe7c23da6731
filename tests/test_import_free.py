"""``import lazyapply`` and a NumPy kernel import no other array library."""

from __future__ import annotations

import ast
import textwrap

import pytest

from tests._python import run_python

_BACKENDS = ("dask", "jax", "torch", "cupy", "sparse", "array_api_strict")

_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np

    import lazyapply
    from lazyapply import lazy_apply

    x = np.arange(6.0)
    out = lazy_apply(np.cumsum, x)
    assert out.tolist() == [0.0, 1.0, 3.0, 6.0, 10.0, 15.0], out
    out = lazy_apply(lambda a, s: a * s, x, 2, shape=(6,), dtype="float64")
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0], out
    out = lazy_apply(np.sum, x, as_numpy=True, shape=(), dtype=float)
    assert float(out) == 15.0
    try:
        lazy_apply(np.cumsum, x, "not an array")
    except TypeError:
        pass
    print(sorted({m.split(".")[0] for m in sys.modules}))
    """
)


def _imported(script: str) -> set[str]:
    """The top-level modules imported by ``script`` in a new interpreter (its last
    line prints them)."""
    proc = run_python("-c", script, timeout=120)
    modules = set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    assert "lazyapply" in modules
    return modules


@pytest.mark.slow
def test_numpy_kernel_imports_no_backend() -> None:
    modules = _imported(_SCRIPT)
    assert "numpy" in modules
    imported = sorted(modules.intersection(_BACKENDS))
    assert imported == [], f"lazyapply imported {imported}"


_TESTING_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np

    import lazyapply.testing
    from lazyapply import lazy
    from lazyapply.testing import Backend, check_kernel

    report = check_kernel(lazy(lambda a: a + 1), np.arange(3.0), backends=["numpy"])
    assert [r.outcome for r in report] == ["ok", "ok"], report
    assert Backend.TORCH.module == "torch"
    print(sorted({m.split(".")[0] for m in sys.modules}))
    """
)


@pytest.mark.slow
def test_testing_module_imports_no_backend() -> None:
    modules = _imported(_TESTING_SCRIPT)
    imported = sorted(modules.intersection((*_BACKENDS, "pytest")))
    assert imported == [], f"lazyapply.testing imported {imported}"
