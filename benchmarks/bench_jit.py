"""Inside ``jax.jit``: a kernel staged as a host callback, per jitted call.

The hand-written baseline is ``jax.pure_callback`` with the same ``ShapeDtypeStruct``;
with ``as_numpy`` its callback passes ``np.asarray`` of its operand to the kernel (a
zero-copy view of a CPU buffer) and returns the kernel's NumPy array as it is. Every
call blocks on its result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["run"]

SIZES = (10, 1_000_000)


def _kernel(x: Any) -> Any:
    return x + 1


def _variants(n: int, as_numpy: bool) -> dict[str, Callable[[], object]]:
    import array_api_extra as xpx
    import jax
    import jax.numpy as jnp

    import lazyapply

    from .bench_eager import _decorator

    x = jnp.arange(n, dtype=jnp.float32)
    struct = jax.ShapeDtypeStruct(x.shape, x.dtype)

    if as_numpy:

        def callback(a: Any) -> Any:
            return _kernel(np.asarray(a))
    else:
        callback = _kernel

    @jax.jit
    def hand(a: Any) -> Any:
        return jax.pure_callback(callback, struct, a)

    @jax.jit
    def reference(a: Any) -> Any:
        return xpx.lazy_apply(_kernel, a, as_numpy=as_numpy)

    @jax.jit
    def ours(a: Any) -> Any:
        return lazyapply.lazy_apply(_kernel, a, as_numpy=as_numpy)

    fns: dict[str, Callable[[], object]] = {
        "hand-written": lambda: hand(x).block_until_ready(),
        "reference": lambda: reference(x).block_until_ready(),
        "lazyapply": lambda: ours(x).block_until_ready(),
    }
    lazy = _decorator()
    if lazy is not None:
        kernel = lazy(shape=(n,), dtype="float32", as_numpy=as_numpy)(_kernel)
        decorated = jax.jit(kernel)
        fns["decorated"] = lambda: decorated(x).block_until_ready()
    for fn in fns.values():  # compile, and check that every variant computes the same
        np.testing.assert_allclose(np.asarray(fn()), np.arange(n, dtype=np.float32) + 1)
    return fns


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per (size, as_numpy)."""
    if "jax" not in backends:
        return []
    rows = []
    for n in SIZES:
        for as_numpy in (False, True):
            case = f"as_numpy={as_numpy}"
            bar.set_description(f"jax.jit n={n:,} {case}")
            times, samples = compare(_variants(n, as_numpy), settings)
            rows.append(
                {
                    "section": "jit",
                    "backend": "jax",
                    "case": case,
                    "size": n,
                    "times": times,
                    "samples": samples,
                }
            )
            bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return 2 * len(SIZES) if "jax" in backends else 0
