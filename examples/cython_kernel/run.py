"""A Cython kernel, compiled here with pyximport, run lazily on Dask and under jax.jit.

Run: ``python examples/cython_kernel/run.py``. The first run compiles ``ffill.pyx``
(into ``examples/cython_kernel/build/``, ignored by git); later runs reuse the build.
Prints one line per backend and exits with status 1 if a check fails; skips (status 0)
with the reason when Cython or a C compiler is missing, or a backend is not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lazyapply import lazy

HERE = Path(__file__).resolve().parent


def compile_kernel() -> Callable[..., Any]:
    """Build ``ffill.pyx`` (once) and return the compiled function."""
    if importlib.util.find_spec("Cython") is None:
        print("SKIP all: Cython is not installed (pip install cython)")
        sys.exit(0)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        print(f"SKIP all: no C compiler ({compiler!r} not found on PATH)")
        sys.exit(0)
    import pyximport

    pyximport.install(build_dir=str(HERE / "build"), language_level=3, inplace=False)
    sys.path.insert(0, str(HERE))
    t0 = time.perf_counter()
    from ffill import ffill as compiled  # compiled now if the build is missing or stale

    print(f"compiled/loaded ffill.pyx in {time.perf_counter() - t0:.1f} s")
    return compiled  # type: ignore[no-any-return]


failures: list[str] = []


def timed(fn: Callable[[], Any], repeat: int = 20) -> tuple[Any, float]:
    """The result of ``fn()`` and the median time of ``repeat`` calls, in µs."""
    out = fn()  # warm-up: jax.jit compiles outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)) * 1e6


def check(
    label: str, got: Any, expected: np.ndarray, us: float, rtol: float = 1e-6
) -> None:
    kind = f"{type(got).__module__.split('.')[0]}.{type(got).__name__}"
    ok = np.allclose(np.asarray(got), expected, rtol=rtol, atol=rtol, equal_nan=True)
    print(f"{'OK  ' if ok else 'FAIL'} {label:<40} {kind:<20} {us:9.1f} µs")
    if not ok:
        failures.append(label)


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
    check("numpy", got, expected, us)

    if importlib.util.find_spec("dask") is not None:
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
            status = "OK  " if lazy_ok else "FAIL"
            label = "dask: graph built, nothing computed"
            print(f"{status} {label:<40} {'dask.Array':<20} {us:9.1f} µs")
            if not lazy_ok:
                failures.append("dask laziness")
            got, us = timed(lazy_out.compute, repeat=5)
        check("dask: .compute()", got, expected, us)
    else:
        print("SKIP dask: dask is not installed")

    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(data)  # float32 unless jax_enable_x64: the float32 build runs
        want = reference(np.asarray(xj))
        jitted = jax.jit(ffill)
        got, us = timed(lambda: jitted(xj).block_until_ready())
        check(f"jax.jit(ffill) ({xj.dtype})", got, want, us)

        @jax.jit
        def filled_row_means(x: Any) -> Any:
            return jnp.nanmean(ffill(x), axis=1)

        got, us = timed(lambda: filled_row_means(xj).block_until_ready())
        check("jax.jit(nanmean(ffill(x)))", got, np.nanmean(want, axis=1), us, 1e-5)
    else:
        print("SKIP jax: jax is not installed")

    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
