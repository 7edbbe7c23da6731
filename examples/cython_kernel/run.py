"""A Cython kernel, compiled here with pyximport, run lazily on Dask and under jax.jit.

Run: ``python examples/cython_kernel/run.py``. The first run compiles ``ffill.pyx``
(into ``examples/cython_kernel/build/``, ignored by git); later runs reuse the build.
Prints one line per backend and exits with status 1 if a check fails; skips (status 0)
with the reason when Cython or a C compiler is missing, or a backend is not installed.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lazyapply import lazy

# The shared helpers live in examples/_report.py, one folder up from this script's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import Layout, check, finish, installed, report, timed

HERE = Path(__file__).resolve().parent
# Column widths of the printed lines, and the tolerance of the checks by default.
LAYOUT = Layout(label=40, kind=20)
RTOL = 1e-6


def compile_kernel() -> Callable[..., Any]:
    """Build ``ffill.pyx`` (once) and return the compiled function."""
    if not installed("Cython"):
        print("SKIP all: Cython is not installed (pip install cython)")
        sys.exit(0)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        print(f"SKIP all: no C compiler ({compiler!r} not found on PATH)")
        sys.exit(0)
    import pyximport

    pyximport.install(build_dir=str(HERE / "build"), language_level=3, inplace=False)
    sys.path.insert(0, str(HERE))
    # The first run spends ~10-15 s in Cython and the C compiler: say so before it.
    print(
        "compiling ffill.pyx with Cython (first run only, about 10-15 s; "
        "later runs load the build)...",
        flush=True,
    )
    t0 = time.perf_counter()
    from ffill import ffill as compiled  # compiled now if the build is missing or stale

    print(f"compiled/loaded ffill.pyx in {time.perf_counter() - t0:.1f} s")
    return compiled  # type: ignore[no-any-return]


def reference(x: np.ndarray) -> np.ndarray:
    """Forward fill in NumPy: index of the last valid value, then take."""
    valid = ~np.isnan(x)
    idx = np.where(valid, np.arange(x.shape[1]), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = np.take_along_axis(x, idx, axis=1)
    out[np.cumsum(valid, axis=1) == 0] = np.nan  # no valid value yet
    return out


def main() -> int:
    ffill = lazy(compile_kernel(), as_numpy=True)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((200, 300))
    data[rng.random(data.shape) < 0.3] = np.nan
    expected = reference(data)
    print(f"ffill: {ffill!r}, input {data.shape} float64, 30% NaN")

    got, us = timed(lambda: ffill(data))
    check("numpy", got, expected, us, RTOL, equal_nan=True, layout=LAYOUT)

    if installed("dask"):
        import dask
        import dask.array as da

        computed: list[int] = []

        def counting_scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
            computed.append(1)
            return dask.get(dsk, keys, **kwargs)

        x = da.from_array(data, chunks=(50, 100))
        with dask.config.set(scheduler=counting_scheduler):
            lazy_out, us = timed(lambda: ffill(x))
            lazy_ok = not computed and isinstance(lazy_out, da.Array)
            label = "dask: graph built, nothing computed"
            report(
                lazy_ok, label, "dask.Array", us, failure="dask laziness", layout=LAYOUT
            )
            got, us = timed(lazy_out.compute, repeat=5)
        label = "dask: .compute()"
        check(label, got, expected, us, RTOL, equal_nan=True, layout=LAYOUT)
    else:
        print("SKIP dask: dask is not installed")

    if installed("jax"):
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(data)  # float32 unless jax_enable_x64: the float32 build runs
        want = reference(np.asarray(xj))
        jitted = jax.jit(ffill)
        got, us = timed(lambda: jitted(xj).block_until_ready())
        label = f"jax.jit(ffill) ({xj.dtype})"
        check(label, got, want, us, RTOL, equal_nan=True, layout=LAYOUT)

        @jax.jit
        def filled_row_means(x: Any) -> Any:
            return jnp.nanmean(ffill(x), axis=1)

        got, us = timed(lambda: filled_row_means(xj).block_until_ready())
        want_means = np.nanmean(want, axis=1)
        label = "jax.jit(nanmean(ffill(x)))"
        check(label, got, want_means, us, 1e-5, equal_nan=True, layout=LAYOUT)
    else:
        print("SKIP jax: jax is not installed")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
