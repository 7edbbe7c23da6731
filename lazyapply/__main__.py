"""``python -m lazyapply``: what is installed, and one kernel through every backend.

Prints the installed backends with their versions and devices, then runs one demo
kernel through every installed backend and mode (eager, ``as_numpy``, Dask deferred,
JAX inside ``jax.jit``) and prints a table: backend, mode, result correct, time per
call. Exits with status 1 if any installed backend fails.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import lazy_apply

BACKENDS = ("numpy", "array_api_strict", "torch", "sparse", "jax", "dask", "cupy")
_DIST = {"array_api_strict": "array-api-strict", "cupy": "cupy"}


def demo_kernel(x: Any, y: Any, *, scale: float) -> Any:
    """The demo kernel: written once, with operators every namespace supports."""
    return (x * x + y * y) * scale


def demo_kernel_numpy(x: np.ndarray, y: np.ndarray, *, scale: float) -> np.ndarray:
    """The same kernel as NumPy-only code (what ``as_numpy=True`` is for)."""
    out: np.ndarray = np.multiply(np.add(np.square(x), np.square(y)), scale)
    return out


@dataclass
class Row:
    backend: str
    mode: str
    ok: bool
    seconds: float
    note: str = ""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(_DIST.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(name)
        return str(getattr(module, "__version__", "?"))


def _devices(name: str, module: Any) -> str:
    try:
        if name == "torch":
            cuda = module.cuda.device_count() if module.cuda.is_available() else 0
            return "cpu" + (f", {cuda} cuda" if cuda else "") + ", meta"
        if name == "jax":
            return ", ".join(str(d) for d in module.devices())
        if name == "cupy":
            return f"{module.cuda.runtime.getDeviceCount()} cuda"
        if name == "array_api_strict":
            return ", ".join(
                str(d) for d in module.__array_namespace_info__().devices()
            )
        if name == "dask":
            return "cpu (chunks of any installed library)"
    except Exception as exc:  # a device query that fails is reported, not fatal
        return f"unavailable ({type(exc).__name__}: {exc})"
    return "cpu"


def installed() -> dict[str, Any]:
    """Import every backend that is installed (this job wants them all)."""
    found: dict[str, Any] = {}
    for name in BACKENDS:
        try:
            module = importlib.import_module(name)
            if name == "dask":
                importlib.import_module("dask.array")
            if name == "cupy":
                module.cuda.runtime.getDeviceCount()
        except Exception:
            continue
        found[name] = module
    return found


def _time(call: Callable[[], Any], budget: float = 0.05) -> float:
    """Median seconds per call over a few short rounds."""
    call()
    rounds = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while True:
            call()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed > budget / 5 or n >= 10_000:
                break
        rounds.append(elapsed / n)
    return float(np.median(rounds))


def _cases(
    name: str, module: Any
) -> list[tuple[str, Callable[[], Any], Callable[[Any], Any]]]:
    """(mode, call, to_numpy) for each mode that applies to this backend."""
    x_np = np.linspace(0.0, 1.0, 1000)
    y_np = np.linspace(1.0, 2.0, 1000)
    cases: list[tuple[str, Callable[[], Any], Callable[[Any], Any]]] = []

    def eager(
        x: Any, y: Any, to_np: Callable[[Any], Any], numpy_ok: bool = True
    ) -> None:
        cases.append(("eager", lambda: lazy_apply(demo_kernel, x, y, scale=2.0), to_np))
        if numpy_ok:
            cases.append(
                (
                    "as_numpy",
                    lambda: lazy_apply(
                        demo_kernel_numpy, x, y, scale=2.0, as_numpy=True
                    ),
                    to_np,
                )
            )

    if name == "numpy":
        eager(x_np, y_np, np.asarray)
    elif name == "array_api_strict":
        eager(module.asarray(x_np), module.asarray(y_np), np.asarray)
    elif name == "torch":
        eager(module.asarray(x_np), module.asarray(y_np), lambda r: r.numpy())
    elif name == "sparse":
        # sparse refuses implicit densification, so only the sparse-native kernel runs.
        eager(
            module.COO.from_numpy(x_np),
            module.COO.from_numpy(y_np),
            lambda r: r.todense(),
            numpy_ok=False,
        )
    elif name == "cupy":
        eager(
            module.asarray(x_np),
            module.asarray(y_np),
            lambda r: r.get(),
            numpy_ok=False,
        )
    elif name == "jax":
        import jax

        x, y = module.numpy.asarray(x_np), module.numpy.asarray(y_np)
        eager(x, y, np.asarray)
        jitted = jax.jit(
            lambda a, b: lazy_apply(demo_kernel_numpy, a, b, scale=2.0, as_numpy=True)
        )
        cases.append(
            ("jit as_numpy", lambda: jitted(x, y).block_until_ready(), np.asarray)
        )
    elif name == "dask":
        import dask.array as da

        # da.from_array is untyped (chunks is inferred as str from its default).
        from_array: Callable[..., Any] = da.from_array
        x, y = from_array(x_np, chunks=250), from_array(y_np, chunks=250)
        cases.append(
            (
                "deferred",
                lambda: lazy_apply(demo_kernel_numpy, x, y, scale=2.0, as_numpy=True),
                lambda r: r.compute(scheduler="sync"),
            )
        )
        cases.append(
            (
                "deferred elementwise",
                lambda: lazy_apply(
                    demo_kernel_numpy, x, y, scale=2.0, as_numpy=True, elementwise=True
                ),
                lambda r: r.compute(scheduler="sync"),
            )
        )
    return cases


def run() -> list[Row]:
    """Run the demo kernel through every installed backend and mode."""
    expected = demo_kernel_numpy(
        np.linspace(0.0, 1.0, 1000), np.linspace(1.0, 2.0, 1000), scale=2.0
    )
    rows: list[Row] = []
    for name, module in installed().items():
        for mode, call, to_np in _cases(name, module):
            try:
                result = to_np(call())
                ok = bool(np.allclose(np.asarray(result, dtype=float), expected))
                seconds = _time(call)
                rows.append(Row(name, mode, ok, seconds, "" if ok else "wrong values"))
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                rows.append(
                    Row(name, mode, False, float("nan"), f"{type(exc).__name__}")
                )
    return rows


def main() -> int:
    found = installed()
    print("lazyapply: run eager array kernels lazily on every array library\n")
    print(f"{'backend':<18} {'version':<16} devices")
    for name in BACKENDS:
        if name in found:
            print(f"{name:<18} {_version(name):<16} {_devices(name, found[name])}")
        else:
            print(f"{name:<18} {'not installed':<16} -")
    print("\ndemo kernel: (x*x + y*y) * scale on 1000 elements\n")
    rows = run()
    print(f"{'backend':<18} {'mode':<22} {'correct':<8} {'time/call':>12}  note")
    for r in rows:
        t = "-" if r.seconds != r.seconds else f"{r.seconds * 1e6:10.1f} us"
        ok = "yes" if r.ok else "NO"
        print(f"{r.backend:<18} {r.mode:<22} {ok:<8} {t:>12}  {r.note}")
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} backend modes correct")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
