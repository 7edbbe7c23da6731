"""Inside ``jax.jit``: Numba kernels on the native path (XLA FFI targets).

One process, interleaved rounds (float64, x64 on for this section):

- ``@njit`` ``sin(x) * 2 + 1`` returning a new array (one copy into XLA's buffer):
  ``native`` against ``pure_callback`` (hand-written, NumPy) and ``jnp``, at 10 and
  1e6 elements;
- the same maths as a ``@vectorize`` ufunc (writes into XLA's buffer), at 1e6 and
  1e7 elements, against ``jnp``;
- a ``@guvectorize`` running sum ``(n)->(n)`` on 1000 x 1000, against
  ``jnp.cumsum(axis=-1)``.

Then the cold start, each number from a fresh process: the kernel's own Numba compile
(its first eager call on NumPy), the first jitted call with an empty cache folder, and
the first jitted call of a second process on that folder (1-D, 2-D and a kernel with
two outputs). Targets (issue 19): vectorize <= 1.0x jnp at 1e6 and 1e7, guvectorize <=
1.0x jnp.cumsum, njit <= 1.25x jnp at 1e6; first call <= 2x the kernel's compile and
second process <= 0.5x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["count", "markdown", "run"]

# (case, size, {variant: target ratio of native to it})
CASES: tuple[tuple[str, int, dict[str, float]], ...] = (
    ("njit", 10, {"pure_callback": 0.15, "jnp": 1.5}),
    ("njit", 1_000_000, {"jnp": 1.25}),
    ("vectorize", 1_000_000, {"jnp": 1.0}),
    ("vectorize", 10_000_000, {"jnp": 1.0}),
    ("guvectorize cumsum", 1_000_000, {"jnp": 1.0}),
)
COLD = ("1-D", "2-D", "two outputs")


def _kernels() -> dict[str, Any]:
    import numba

    @numba.njit
    def sin2p1(x: Any) -> Any:
        return np.sin(x) * 2.0 + 1.0

    @numba.vectorize
    def vsin2p1(x: Any) -> Any:
        return np.sin(x) * 2.0 + 1.0

    @numba.guvectorize(["void(float64[:], float64[:])"], "(n)->(n)")
    def running_sum(x: Any, out: Any) -> None:
        acc = 0.0
        for i in range(x.shape[0]):
            acc += x[i]
            out[i] = acc

    return {"njit": sin2p1, "vectorize": vsin2p1, "guvectorize cumsum": running_sum}


def _variants(case: str, n: int) -> dict[str, Callable[[], object]]:
    import jax
    import jax.numpy as jnp

    import lazyapply

    kernel = _kernels()[case]
    eager: dict[str, Callable[[], object]] = {}
    if case.startswith("guvectorize"):
        side = round(n**0.5)
        x = jnp.linspace(0, 1, side * side, dtype=jnp.float64).reshape(side, side)
        native = jax.jit(
            lambda a: lazyapply.lazy_apply(
                kernel, a, signature="(n)->(n)", as_numpy=True
            )
        )
        jitted = {"native": native, "jnp": jax.jit(lambda a: jnp.cumsum(a, axis=-1))}
        expected = np.cumsum(np.asarray(x), axis=-1)
    else:
        x = jnp.linspace(0, 1, n, dtype=jnp.float64)
        opts = {"elementwise": True} if case == "vectorize" else {}
        jitted = {
            "native": jax.jit(
                lambda a: lazyapply.lazy_apply(kernel, a, as_numpy=True, **opts)
            ),
            "jnp": jax.jit(lambda a: jnp.sin(a) * 2 + 1),
        }
        if n <= 1_000_000:
            struct = jax.ShapeDtypeStruct(x.shape, x.dtype)
            numpy_kernel = lambda b: np.sin(b) * 2.0 + 1.0  # noqa: E731
            jitted["pure_callback"] = jax.jit(
                lambda a: jax.pure_callback(numpy_kernel, struct, a)
            )
        expected = np.sin(np.asarray(x)) * 2.0 + 1.0
        if case == "njit":  # the kernel alone, eagerly: what native cannot beat
            host = np.asarray(x)
            kernel(host)
            eager = {"numba eager": lambda: kernel(host)}
    for f in jitted.values():
        np.testing.assert_allclose(np.asarray(f(x)), expected, rtol=1e-9, atol=1e-9)
    decision = lazyapply.explain_native(kernel)
    if decision is None or not decision.startswith("native"):
        msg = f"the native path was not taken: {decision}"
        raise RuntimeError(msg)
    fns = {k: (lambda f=f: f(x).block_until_ready()) for k, f in jitted.items()}
    return {**fns, **eager}


_COLD_SCRIPT = """
import json, sys, time
import numpy as np, numba, jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from lazyapply import explain_native, lazy_apply
case, what = sys.argv[1], sys.argv[2]
if case == "two outputs":
    @numba.njit
    def k(x, y):
        return np.sin(x) + y, np.cos(x) - y
    args, shape = (jnp.linspace(0, 1, 1000), jnp.ones(1000)), [(1000,), (1000,)]
else:
    @numba.njit
    def k(x):
        return np.sin(x) * 2.0 + 1.0
    args = (jnp.linspace(0, 1, 1000).reshape((1000,) if case == "1-D" else (25, 40)),)
    shape = None
start = time.perf_counter()
if what == "kernel":
    k(*[np.asarray(a) for a in args])
else:
    f = jax.jit(lambda *a: lazy_apply(k, *a, shape=shape, as_numpy=True))
    jax.block_until_ready(f(*args))
seconds = time.perf_counter() - start
note = "" if what == "kernel" else explain_native(k)
print(json.dumps({"seconds": seconds, "note": note}))
"""


def _cold(case: str, what: str, cache: str) -> float:
    import lazyapply

    root = str(Path(lazyapply.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(LAZYAPPLY_CACHE_DIR=cache, PYTHONPATH=root, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", _COLD_SCRIPT, case, what],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if what != "kernel" and not result["note"].startswith("native"):
        msg = f"cold start {case}: the native path was not taken: {result['note']}"
        raise RuntimeError(msg)
    return float(result["seconds"])


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per case and size, then one cold-start row per kernel shape."""
    if "jax" not in backends:
        return []
    try:
        import numba  # noqa: F401
    except ImportError:
        print("native section skipped: numba is not installed")
        return []
    import jax

    rows: list[dict[str, Any]] = []
    for case, n, goals in CASES:
        bar.set_description(f"native {case} n={n:,}")
        with jax.enable_x64(True):
            times, samples = compare(_variants(case, n), settings)
        rows.append(
            {
                "section": "native",
                "backend": "jax",
                "case": case,
                "size": n,
                "times": times,
                "samples": samples,
                "goals": goals,
            }
        )
        bar.update()
    for case in COLD:
        bar.set_description(f"native cold start {case}")
        with tempfile.TemporaryDirectory() as cache:
            cold = {
                "kernel compile": _cold(case, "kernel", cache),
                "first call": _cold(case, "jit", cache),
                "second process": _cold(case, "jit", cache),
            }
        rows.append({"section": "native", "backend": "jax", "case": case, "cold": cold})
        bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return len(CASES) + len(COLD) if "jax" in backends else 0


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The section's tables: times and ratios with targets, then the cold start."""
    mine = [r for r in rows if r["section"] == "native" and "times" in r]
    cold = [r for r in rows if r["section"] == "native" and "cold" in r]
    if not mine and not cold:
        return []
    lines = [
        "## Native path: Numba kernels under `jax.jit` (float64)",
        "",
        "Microseconds per jitted call; ratios are native / the other variant. "
        "`numba eager`: the `@njit` kernel alone on a NumPy array (its own speed).",
        "",
        "| kernel | size | native | jnp | pure_callback | numba eager | native/jnp | "
        "native/pure_callback | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in mine:
        t = row["times"]
        ratios = {v: t["native"] / t[v] for v in ("jnp", "pure_callback") if v in t}
        held = [
            f"{v} <= {g}: {'yes' if ratios[v] <= g else 'NO'}"
            for v, g in row.get("goals", {}).items()
            if v in ratios
        ]
        cells = [f"{t[v] * 1e6:.1f}" if v in t else "—" for v in ("native", "jnp")]
        cells += [
            f"{t[v] * 1e6:.1f}" if v in t else "—"
            for v in ("pure_callback", "numba eager")
        ]
        cells += [f"{ratios[v]:.3f}" if v in ratios else "—" for v in ratios]
        cells += ["—"] * (2 - len(ratios))
        lines.append(
            f"| {row['case']} | {row['size']:,} | "
            + " | ".join(cells)
            + f" | {'; '.join(held) or '—'} |"
        )
    if cold:
        lines += [
            "",
            "Cold start, seconds, each from a fresh process (1000 elements): the "
            "kernel's own Numba compile, the first jitted call on an empty cache "
            "folder, the first jitted call of a second process.",
            "",
            "| kernel | kernel compile | first call | second process | first/compile "
            "| second/compile | targets |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in cold:
            c = row["cold"]
            first = c["first call"] / c["kernel compile"]
            second = c["second process"] / c["kernel compile"]
            held = (
                f"first <= 2: {'yes' if first <= 2 else 'NO'}; "
                f"second <= 0.5: {'yes' if second <= 0.5 else 'NO'}"
            )
            lines.append(
                f"| {row['case']} | {c['kernel compile']:.2f} | {c['first call']:.2f} "
                f"| {c['second process']:.2f} | {first:.2f} | {second:.2f} | {held} |"
            )
    lines.append("")
    return lines
