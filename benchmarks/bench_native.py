"""Inside ``jax.jit``: a Numba kernel on the native path (an XLA FFI target).

Variants, side by side per size: ``native`` (``lazy_apply`` of an ``@njit`` kernel with
``as_numpy=True``), ``pure_callback`` (hand-written, the same NumPy code), ``lazyapply
callback`` (``lazy_apply`` of the NumPy kernel) and ``jnp`` (the same maths in
``jax.numpy``). The kernel is ``sin(x) * 2 + 1`` on float64 (x64 is on for this
section). ``first call`` is the time of the first jitted call of a fresh kernel:
tracing, the Numba compiles (kernel and FFI handler) and XLA's compile. Targets (issue
12): at 10 elements native <= 0.15x pure_callback and <= 1.5x jnp; at 1e6 native <=
1.5x jnp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["count", "markdown", "run"]

SIZES = (10, 1_000, 1_000_000)
TARGETS = {10: {"pure_callback": 0.15, "jnp": 1.5}, 1_000_000: {"jnp": 1.5}}


def _numpy_kernel(x: Any) -> Any:
    return np.sin(x) * 2.0 + 1.0


def _fresh_numba_kernel() -> Any:
    import numba

    @numba.njit
    def sin2p1(x: Any) -> Any:
        return np.sin(x) * 2.0 + 1.0

    return sin2p1


def _variants(n: int) -> tuple[dict[str, Callable[[], object]], dict[str, float]]:
    import jax
    import jax.numpy as jnp

    import lazyapply

    x = jnp.linspace(0, 1, n, dtype=jnp.float64)
    struct = jax.ShapeDtypeStruct(x.shape, x.dtype)
    kernel = _fresh_numba_kernel()
    jitted = {
        "native": jax.jit(lambda a: lazyapply.lazy_apply(kernel, a, as_numpy=True)),
        "pure_callback": jax.jit(lambda a: jax.pure_callback(_numpy_kernel, struct, a)),
        "lazyapply callback": jax.jit(
            lambda a: lazyapply.lazy_apply(_numpy_kernel, a, as_numpy=True)
        ),
        "jnp": jax.jit(lambda a: jnp.sin(a) * 2 + 1),
    }
    first = {}
    expected = _numpy_kernel(np.asarray(x))
    for name, f in jitted.items():
        start = time.perf_counter()
        out = f(x).block_until_ready()
        first[name] = time.perf_counter() - start
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)
    decision = lazyapply.adapters.jax.native.explain_native(kernel)
    if decision is None or not decision.startswith("native"):
        msg = f"the native path was not taken: {decision}"
        raise RuntimeError(msg)
    fns = {k: (lambda f=f: f(x).block_until_ready()) for k, f in jitted.items()}
    return fns, first


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per size."""
    if "jax" not in backends:
        return []
    try:
        import numba  # noqa: F401
    except ImportError:
        print("native section skipped: numba is not installed")
        return []
    import jax

    import lazyapply.adapters.jax.native  # noqa: F401

    rows = []
    for n in SIZES:
        bar.set_description(f"native n={n:,}")
        with jax.enable_x64(True):
            fns, first = _variants(n)
            times, samples = compare(fns, settings)
        rows.append(
            {
                "section": "native",
                "backend": "jax",
                "case": "sin(x) * 2 + 1",
                "size": n,
                "times": times,
                "samples": samples,
                "first": first,
            }
        )
        bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return len(SIZES) if "jax" in backends else 0


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The section's table: times, ratios, first-call times and the targets."""
    mine = [r for r in rows if r["section"] == "native"]
    if not mine:
        return []
    names = ("native", "pure_callback", "lazyapply callback", "jnp")
    lines = [
        "## Native path: Numba kernel under `jax.jit` (float64, `sin(x) * 2 + 1`)",
        "",
        "Microseconds per jitted call; ratios are native / the other variant; "
        "first call (ms) includes tracing and every compile.",
        "",
        "| size | " + " | ".join(names) + " | native/pure_callback | native/jnp | "
        "first call native (ms) | first call pure_callback (ms) | targets |",
        "|---|" + "---:|" * (len(names) + 4) + "---|",
    ]
    for row in mine:
        t, n = row["times"], row["size"]
        ratios = {b: t["native"] / t[b] for b in ("pure_callback", "jnp")}
        goals = TARGETS.get(n, {})
        held = [
            f"{b} <= {g}: {'yes' if ratios[b] <= g else 'NO'}" for b, g in goals.items()
        ]
        lines.append(
            f"| {n:,} | "
            + " | ".join(f"{t[v] * 1e6:.1f}" for v in names)
            + f" | {ratios['pure_callback']:.3f} | {ratios['jnp']:.2f} | "
            f"{row['first']['native'] * 1e3:.0f} | "
            f"{row['first']['pure_callback'] * 1e3:.0f} | "
            + ("; ".join(held) or "—")
            + " |"
        )
    lines.append("")
    return lines
