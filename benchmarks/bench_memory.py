"""Peak memory: does any path make an extra full-size copy of the inputs or outputs?

Each (path, variant) runs in its own subprocess: a large input is allocated, every
variant is warmed up on a small array, then the large call runs once. The figure is the
rise of the peak resident set size during that call, in units of the array's size. A
kernel ``x + 1`` must allocate its output (1.0); anything above the hand-written
variant is a copy the wrapper made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["run"]

PATHS = (
    "numpy",
    "numpy as_numpy",
    "jax eager as_numpy",
    "jax.jit",
    "jax.jit as_numpy",
)
VARIANTS = ("hand-written", "reference", "lazyapply")


def _kernel(x: Any) -> Any:
    return x + 1


def _make(path: str, variant: str) -> tuple[Callable[[int], Any], Callable[[Any], Any]]:
    """``(make_input(n), call(x))`` for one path and variant."""
    import array_api_extra as xpx

    import lazyapply

    as_numpy = path.endswith("as_numpy")
    k = _kernel
    if path.startswith("numpy"):

        def make(n: int) -> Any:
            return np.ones(n, dtype=np.float64)

        if variant == "hand-written":
            return make, (lambda x: k(np.asarray(x))) if as_numpy else k
        if variant == "reference":
            return make, lambda x: xpx.lazy_apply(k, x, as_numpy=as_numpy)
        return make, lambda x: lazyapply.lazy_apply(k, x, as_numpy=as_numpy)

    import jax
    import jax.numpy as jnp

    def make_jax(n: int) -> Any:
        return jnp.ones(n, dtype=jnp.float32).block_until_ready()

    if path == "jax eager as_numpy":
        if variant == "hand-written":
            return make_jax, lambda x: jnp.asarray(k(np.asarray(x)))
        if variant == "reference":
            return make_jax, lambda x: xpx.lazy_apply(k, x, as_numpy=True)
        return make_jax, lambda x: lazyapply.lazy_apply(k, x, as_numpy=True)

    def callback(a: Any) -> Any:
        return k(np.asarray(a)) if as_numpy else k(a)

    if variant == "hand-written":

        def staged(a: Any) -> Any:
            return jax.pure_callback(
                callback, jax.ShapeDtypeStruct(a.shape, a.dtype), a
            )
    elif variant == "reference":

        def staged(a: Any) -> Any:
            return xpx.lazy_apply(k, a, as_numpy=as_numpy)
    else:

        def staged(a: Any) -> Any:
            return lazyapply.lazy_apply(k, a, as_numpy=as_numpy)

    jitted = jax.jit(staged)
    return make_jax, lambda x: jitted(x).block_until_ready()


def _status(field: str) -> int:
    # /proc/self/status, not getrusage: ru_maxrss survives exec, so a child would
    # report its parent's peak. VmHWM belongs to this process image alone.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    msg = f"{field} not in /proc/self/status (this benchmark needs Linux)"
    raise RuntimeError(msg)


def _reset_peak() -> None:
    try:  # Linux >= 4.0: "5" resets the peak RSS to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child(path: str, variant: str, megabytes: int) -> dict[str, Any]:
    """Run in the subprocess: measure one large call."""
    import gc

    make, call = _make(path, variant)
    call(make(1000))  # imports, caches (the large call still compiles its own shape)
    itemsize = 8 if path.startswith("numpy") else 4
    x = make(megabytes * 2**20 // itemsize)
    nbytes = x.nbytes
    gc.collect()
    _reset_peak()
    before = _status("VmRSS")
    out = call(x)
    rise = _status("VmHWM") - before
    del out
    return {"rise": rise / nbytes, "nbytes": nbytes}


def run(backends: list[str], megabytes: int, bar: Any) -> list[dict[str, Any]]:
    """One row per path; each variant measured in a fresh subprocess."""
    paths = [p for p in PATHS if ("jax" in p) <= ("jax" in backends)]
    if "numpy" not in backends:
        paths = [p for p in paths if not p.startswith("numpy")]
    rows = []
    for path in paths:
        rises = {}
        for variant in VARIANTS:
            bar.set_description(f"memory {path} {variant}")
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_memory",
                    path,
                    variant,
                    str(megabytes),
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            if proc.returncode != 0:
                bar.write(f"memory/{path}/{variant} failed:\n{proc.stderr[-2000:]}")
                continue
            rises[variant] = json.loads(proc.stdout.strip().splitlines()[-1])["rise"]
            bar.update()
        rows.append(
            {
                "section": "memory",
                "backend": path.split()[0],
                "case": path,
                "size": megabytes,
                "rises": rises,
            }
        )
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    n = sum(("jax" in p) <= ("jax" in backends) for p in PATHS)
    if "numpy" not in backends:
        n -= sum(p.startswith("numpy") for p in PATHS)
    return n * len(VARIANTS)


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
