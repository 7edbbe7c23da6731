"""Inside ``jax.jit``: a SciPy special function on the native path (issue 20).

Part of the ``native`` section. Variants, side by side per size: ``native``
(``lazy(scipy.special.erf)``: SciPy's own loop called from the XLA FFI handler),
``jax.scipy`` (``jax.scipy.special.erf``, JAX's own code), ``callback`` (the same SciPy
call as a Python kernel, which lazyapply runs as a host callback) and ``scipy eager``
(``scipy.special.erf`` on a NumPy array, outside JAX). float64 (x64 is on). Targets:
native <= 1.5x jax.scipy at 10 and 1e6 elements, <= 0.15x the callback at 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["count", "markdown", "run"]

SIZES = (10, 1_000_000)
GOALS = {10: {"jax.scipy": 1.5, "callback": 0.15}, 1_000_000: {"jax.scipy": 1.5}}
SECTION = "native-special"


def _erf_in_python(x: Any) -> Any:
    import scipy.special

    return scipy.special.erf(x)


def _variants(n: int) -> dict[str, Callable[[], object]]:
    import jax
    import jax.numpy as jnp
    import scipy.special

    import lazyapply

    x = jnp.linspace(-3, 3, n, dtype=jnp.float64)
    host = np.asarray(x)
    jitted = {
        "native": jax.jit(lazyapply.lazy(scipy.special.erf)),
        "jax.scipy": jax.jit(jax.scipy.special.erf),
        "callback": jax.jit(
            lambda a: lazyapply.lazy_apply(
                _erf_in_python, a, as_numpy=True, elementwise=True
            )
        ),
    }
    expected = scipy.special.erf(host)
    for f in jitted.values():
        np.testing.assert_allclose(np.asarray(f(x)), expected, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(np.asarray(jitted["native"](x)), expected)
    decision = lazyapply.explain_native(scipy.special.erf) or "-"
    if not decision.startswith("native"):
        msg = f"the native path was not taken: {decision}"
        raise RuntimeError(msg)
    fns: dict[str, Callable[[], object]] = {
        k: (lambda f=f: f(x).block_until_ready()) for k, f in jitted.items()
    }
    fns["scipy eager"] = lambda: scipy.special.erf(host)
    return fns


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per size."""
    if "jax" not in backends:
        return []
    try:
        import numba  # noqa: F401
        import scipy.special  # noqa: F401
    except ImportError as exc:
        print(f"native SciPy rows skipped: {exc}")
        return []
    import jax

    rows = []
    for n in SIZES:
        bar.set_description(f"native scipy.special.erf n={n:,}")
        with jax.enable_x64(True):
            times, samples = compare(_variants(n), settings)
        rows.append(
            {
                "section": SECTION,
                "backend": "jax",
                "case": "scipy.special.erf",
                "size": n,
                "times": times,
                "samples": samples,
                "goals": GOALS[n],
            }
        )
        bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this part of the native section takes."""
    return len(SIZES) if "jax" in backends else 0


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Times, ratios (native / the other variant) and the targets."""
    mine = [r for r in rows if r["section"] == SECTION]
    if not mine:
        return []
    names = ("native", "jax.scipy", "callback", "scipy eager")
    lines = [
        "## Native path: SciPy special functions under `jax.jit` (float64)",
        "",
        "Microseconds per call; ratios are native / the other variant. `scipy eager`: "
        "`scipy.special.erf` on a NumPy array, outside JAX.",
        "",
        "| function | size | " + " | ".join(names) + " | native/jax.scipy | "
        "native/callback | targets |",
        "|---|---:|" + "---:|" * (len(names) + 2) + "---|",
    ]
    for row in mine:
        t = row["times"]
        ratios = {v: t["native"] / t[v] for v in ("jax.scipy", "callback")}
        held = [
            f"{v} <= {g}: {'yes' if ratios[v] <= g else 'NO'}"
            for v, g in row["goals"].items()
        ]
        cells = [f"{t[v] * 1e6:.1f}" for v in names]
        cells += [f"{ratios[v]:.3f}" for v in ("jax.scipy", "callback")]
        lines.append(
            f"| {row['case']} | {row['size']:,} | {' | '.join(cells)} | "
            f"{'; '.join(held)} |"
        )
    lines.append("")
    return lines
