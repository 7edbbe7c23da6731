"""A Numba kernel with an explicit loop, written once, run on every array library.

``ema`` is an exponential moving average along the last axis: each output depends on
the previous one, so it is a loop, not a vectorised expression. Numba compiles the loop;
``@lazy(as_numpy=True)`` makes it callable on NumPy, PyTorch, Dask (lazily, until
``compute``) and JAX (eagerly, and inside ``jax.jit`` as a host callback).

Run: ``python examples/numba_kernel.py``. Prints one line per backend (result check
and time per call) and exits with status 1 if a check fails. A library that is not
installed is skipped with the reason.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from _report import check, failures, finish, installed, report, skip, timed

from lazyapply import lazy

try:
    from numba import njit
except ImportError:
    print("SKIP all: numba is not installed (pip install numba)")
    sys.exit(0)


@lazy(as_numpy=True)
@njit(cache=False)
def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average along the last axis (explicit loop)."""
    out = np.empty_like(x)
    rows = x.reshape(-1, x.shape[-1])
    res = out.reshape(-1, x.shape[-1])
    for i in range(rows.shape[0]):
        acc = rows[i, 0]
        for j in range(rows.shape[1]):
            acc = alpha * rows[i, j] + (1 - alpha) * acc
            res[i, j] = acc
    return out


def reference(x: np.ndarray, alpha: float) -> np.ndarray:
    """The same recurrence in plain NumPy, one column at a time."""
    out = np.empty_like(x)
    acc = x[..., 0]
    for j in range(x.shape[-1]):
        acc = alpha * x[..., j] + (1 - alpha) * acc
        out[..., j] = acc
    return out


ALPHA = 0.3
DATA = np.random.default_rng(0).standard_normal((64, 500))
EXPECTED = reference(DATA, ALPHA)


def main() -> int:
    print(f"ema: {ema!r}, input {DATA.shape} float64")
    print(f"{'':5}{'backend':<42} {'result type':<22} {'time/call':>12}")

    got, us = timed(lambda: ema(DATA, ALPHA))
    check("numpy", got, EXPECTED, us, 1e-12)

    if installed("torch"):
        import torch

        t = torch.asarray(DATA)
        got, us = timed(lambda: ema(t, ALPHA))
        check("torch", got, EXPECTED, us, 1e-12)
        if not isinstance(got, torch.Tensor):
            failures.append("torch result type")
    else:
        skip("torch", "torch is not installed")

    if installed("dask"):
        import dask
        import dask.array as da

        computed = []

        def counting_scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
            computed.append(1)
            return dask.get(dsk, keys, **kwargs)

        x = da.from_array(DATA, chunks=(16, 250))
        with dask.config.set(scheduler=counting_scheduler):
            lazy_out, us = timed(lambda: ema(x, ALPHA))
            lazy_ok = not computed and isinstance(lazy_out, da.Array)
            label = "dask: graph built, nothing computed"
            report(lazy_ok, label, "dask.Array", us, failure="dask laziness")
            got, us = timed(lazy_out.compute, repeat=5)
        check("dask: .compute()", got, EXPECTED, us, 1e-12)
    else:
        skip("dask", "dask is not installed")

    if installed("jax"):
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(DATA)  # float32 unless jax_enable_x64 is set
        want = reference(np.asarray(xj).astype(np.float64), ALPHA)
        got, us = timed(lambda: ema(xj, ALPHA).block_until_ready())
        check(f"jax eager ({xj.dtype})", got, want, us, 1e-4)

        jitted = jax.jit(ema, static_argnums=1)
        got, us = timed(lambda: jitted(xj, ALPHA).block_until_ready())
        check("jax.jit(ema)", got, want, us, 1e-4)

        @jax.jit
        def pipeline(x: Any) -> Any:
            """A larger jitted computation with the kernel in the middle."""
            smooth = ema(jnp.tanh(x) * 2.0, ALPHA)
            return jnp.sum(smooth**2, axis=-1)

        want_sum = np.sum(
            reference(np.tanh(np.asarray(xj, np.float64)) * 2, ALPHA) ** 2, -1
        )
        got, us = timed(lambda: pipeline(xj).block_until_ready())
        check("jax.jit(sum(ema(tanh(x) * 2) ** 2))", got, want_sum, us, 1e-4)
    else:
        skip("jax", "jax is not installed")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
