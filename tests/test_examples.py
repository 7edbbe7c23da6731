"""The examples run as a user runs them: a subprocess each, exit status 0, every check.

Each example prints ``OK   <label>`` per passing check, ``FAIL`` per failing one and
``SKIP <label> <reason>`` where a library is missing. A check whose library is
installed here must print ``OK``.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests._python import ROOT, run_python

EXAMPLES = ROOT / "examples"

# example -> (module it needs as a whole, [(label printed, module that label needs)])
CASES = {
    "numba_kernel.py": (
        "numba",
        [
            ("numpy", "numpy"),
            ("torch", "torch"),
            ("dask: graph built, nothing computed", "dask"),
            ("dask: .compute()", "dask"),
            ("jax eager", "jax"),
            ("jax.jit(ema)", "jax"),
            ("jax.jit(sum(ema(tanh(x) * 2) ** 2))", "jax"),
        ],
    ),
    "fit_with_gradients.py": (
        "numba",
        [
            ("numpy: damped.vjp vs finite diffs", "numpy"),
            ("jax.jit(jax.grad(loss)) vs finite diffs", "jax"),
            ("jax: Adam, 400 steps, recovers (a, k, w)", "jax"),
            # The torch half prints "SKIP torch <reason>" until lazy kernels get
            # torch autograd (branch torchop); then add its two labels here:
            # "torch: loss.backward() vs finite diffs" and
            # "torch.optim.Adam, 400 steps, recovers (a, k, w)".
        ],
    ),
    "cython_kernel/run.py": (
        "Cython",
        [
            ("numpy", "numpy"),
            ("dask: graph built, nothing computed", "dask"),
            ("dask: .compute()", "dask"),
            ("jax.jit(ffill)", "jax"),
            ("jax.jit(nanmean(ffill(x)))", "jax"),
        ],
    ),
    "torch_compile_training.py": (
        "torch",
        [
            ("loss decreases", "numba"),
            ("one graph, no graph break", "numba"),
            ("compiled matches eager", "numba"),
            ("gradcheck of the kernel", "numba"),
        ],
    ),
    "scipy_for_jax_and_dask.py": (
        "scipy",
        [
            *(
                (f"{routine}: {where}", module)
                for routine in ("ellipk", "pdist(cityblock)", "ellipj (4 outputs)")
                for where, module in (
                    ("numpy", "numpy"),
                    ("jax.jit", "jax"),
                    ("dask", "dask"),
                )
            ),
            ("ellipk: jax.jit(sum(sqrt(vmap(ellipk(m)))))", "jax"),
        ],
    ),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
@pytest.mark.parametrize("example", list(CASES))
def test_example(example: str) -> None:
    needs, checks = CASES[example]
    proc = run_python(str(EXAMPLES / example), ok=False)
    out = proc.stdout
    report = f"stdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report
    if not _installed(needs):
        assert "SKIP all:" in out, report
        pytest.skip(f"{example}: {needs} is not installed (the example skipped itself)")
    assert "FAIL" not in out, report
    assert "all checks passed" in out, report
    for label, module in checks:
        # A missing library's skip line names the library.
        line = f"OK   {label}" if _installed(module) else f"SKIP {module}"
        assert re.search(rf"^{re.escape(line)}", out, re.MULTILINE), (
            f"no '{line}' line\n{report}"
        )
