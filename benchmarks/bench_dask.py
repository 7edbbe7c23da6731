"""Dask graph construction: the time to build (not compute) the output array.

Hand-written baselines, each given the output dtype and ``meta`` so that Dask runs
nothing to infer them:

- default mode (one task on the whole array): ``x.rechunk(-1).map_blocks(kernel)``;
  the reference's own pattern, ``da.from_delayed(dask.delayed(kernel)(x))``, is timed
  beside it as ``delayed``;
- elementwise mode (one task per chunk): ``x.map_blocks(kernel)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._timing import Settings, compare

__all__ = ["run"]

INPUTS = {"1 chunk": ((10,), -1), "100 chunks": ((1000, 1000), (100, 100))}


def _kernel(x: Any) -> Any:
    return x + 1


def _has_elementwise() -> bool:
    import importlib.util

    return (
        importlib.util.find_spec("lazyapply.spec._modes") is not None
        and importlib.util.find_spec("lazyapply.adapters.dask._chunked") is not None
    )


def _variants(label: str, mode: str) -> dict[str, Callable[[], object]]:
    import array_api_extra as xpx
    import dask
    import dask.array as da

    import lazyapply

    from .bench_eager import _decorator

    shape, chunks = INPUTS[label]
    x = da.ones(shape, chunks=chunks, dtype="float64")
    meta = x._meta
    k = _kernel
    la = lazyapply.lazy_apply
    lazy = _decorator()
    fns: dict[str, Callable[[], object]]
    if mode == "default":
        fns = {
            "hand-written": lambda: x.rechunk(-1).map_blocks(
                k, dtype=x.dtype, meta=meta
            ),
            "delayed": lambda: da.from_delayed(
                dask.delayed(k, pure=True)(x), shape, dtype=x.dtype, meta=meta
            ),
            "reference": lambda: xpx.lazy_apply(k, x),
            "lazyapply": lambda: la(k, x),
        }
        if lazy is not None:
            bare = lazy(k)
            fns["decorated"] = lambda: bare(x)
    else:
        fns = {
            "hand-written": lambda: x.map_blocks(k, dtype=x.dtype, meta=meta),
            "lazyapply": lambda: la(k, x, elementwise=True),
        }
        try:
            elementwise = None if lazy is None else lazy(elementwise=True)(k)
        except TypeError:  # a decorator without chunk-wise modes: leave it out
            elementwise = None
        if elementwise is not None:
            fns["decorated"] = lambda: elementwise(x)
    return fns


def _modes() -> list[str]:
    return ["default", "elementwise"] if _has_elementwise() else ["default"]


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """One row per (input chunking, mode)."""
    if "dask" not in backends:
        return []
    rows = []
    for label in INPUTS:
        for mode in _modes():
            bar.set_description(f"dask {label} {mode}")
            times, samples = compare(_variants(label, mode), settings)
            rows.append(
                {
                    "section": "dask",
                    "backend": "dask",
                    "case": f"{mode}, {label}",
                    "size": INPUTS[label][0],
                    "times": times,
                    "samples": samples,
                }
            )
            bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return len(INPUTS) * len(_modes()) if "dask" in backends else 0
