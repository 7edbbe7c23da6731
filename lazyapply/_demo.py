"""The demo of ``python -m lazyapply``: one kernel through every installed backend.

:func:`installed` imports the backends that are installed (this job wants them all;
``import lazyapply`` itself imports none); :func:`run` calls the demo kernel through
every backend and mode that applies and returns one :class:`Row` per case, with a
note that says what came back (library, device, Dask graph size).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazyapply import lazy_apply

__all__ = ["BACKENDS", "Row", "devices", "installed", "run", "version"]

BACKENDS = ("numpy", "array_api_strict", "torch", "sparse", "jax", "dask", "cupy")
_DIST = {"array_api_strict": "array-api-strict"}
SIZE = 1000


def demo_kernel(x: Any, y: Any, *, scale: float) -> Any:
    """The demo kernel: written once, with operators every namespace supports."""
    return (x * x + y * y) * scale


def demo_kernel_numpy(x: np.ndarray, y: np.ndarray, *, scale: float) -> np.ndarray:
    """The same kernel as NumPy-only code (what ``as_numpy=True`` is for)."""
    out: np.ndarray = np.multiply(np.add(np.square(x), np.square(y)), scale)
    return out


@dataclass
class Row:
    """One demo case: backend, mode, whether the values were right, time, a note."""

    backend: str
    mode: str
    ok: bool
    seconds: float
    note: str = ""


@dataclass
class Case:
    mode: str
    call: Callable[[], Any]
    to_numpy: Callable[[Any], Any]
    note: str = ""  # what the row shows beyond the result's type and device
    wait: str = ""  # a progress line before a first call that takes seconds


def _quiet(_: str) -> None:
    """The default progress callback: print nothing."""


def version(name: str) -> str:
    """The installed version of backend ``name``."""
    try:
        return importlib.metadata.version(_DIST.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(sys.modules.get(name), "__version__", "?"))


def _short(device: Any) -> str:
    # array-api-strict's repr is "array_api_strict.Device('CPU_DEVICE')": keep the name.
    match = re.search(r"\('([^']*)'\)", repr(device))
    return match[1] if match else str(device)


def devices(name: str, module: Any) -> str:
    """A short, comma-separated list of the devices backend ``name`` offers."""
    try:
        if name == "torch":
            cuda = module.cuda.device_count() if module.cuda.is_available() else 0
            return "cpu" + (f", {cuda} cuda" if cuda else "") + ", meta"
        if name == "jax":
            return ", ".join(str(d) for d in module.devices())
        if name == "cupy":
            return f"{module.cuda.runtime.getDeviceCount()} cuda"
        if name == "array_api_strict":
            found = module.__array_namespace_info__().devices()
            return ", ".join(_short(d) for d in found)
        if name == "dask":
            return "cpu (chunks of any installed library)"
    except Exception as exc:  # a device query that fails is reported, not fatal
        return f"unavailable ({type(exc).__name__}: {exc})"
    return "cpu"


def installed(
    names: tuple[str, ...] = BACKENDS, progress: Callable[[str], None] = _quiet
) -> dict[str, Any]:
    """Import every backend of ``names`` that is installed and usable here."""
    found: dict[str, Any] = {}
    for name in names:
        if importlib.util.find_spec(name) is None:
            continue
        progress(f"importing {name}")
        try:
            module = importlib.import_module(name)
            if name == "dask":
                importlib.import_module("dask.array")
            if name == "cupy":
                module.cuda.runtime.getDeviceCount()
        except Exception:  # not installed, or installed without a usable device
            continue
        found[name] = module
    return found


def _time(call: Callable[[], Any], budget: float = 0.05) -> float:
    """Median seconds per call over five short rounds."""
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


def describe(result: Any) -> str:
    """What came back: its library, its device, and for Dask the graph's size."""
    kind = type(result)
    library = kind.__module__.split(".")[0]
    text = "jax.Array" if library == "jaxlib" else f"{library}.{kind.__name__}"
    if hasattr(result, "__dask_graph__"):
        graph = result.__dask_graph__()
        blocks = result.npartitions
        return f"{text} of {blocks} block(s), {len(graph)} tasks, not computed"
    device = getattr(result, "device", None)
    if device is not None and not callable(device):
        text += f" on {_short(device)}"
    return text


def _eager_cases(
    x: Any, y: Any, to_np: Callable[[Any], Any], *, numpy_ok: bool = True
) -> list[Case]:
    cases = [Case("eager", lambda: lazy_apply(demo_kernel, x, y, scale=2.0), to_np)]
    if numpy_ok:
        call = lambda: lazy_apply(demo_kernel_numpy, x, y, scale=2.0, as_numpy=True)  # noqa: E731
        cases.append(Case("as_numpy", call, to_np, "kernel saw NumPy"))
    return cases


def _jax_cases(
    module: Any, x_np: np.ndarray, y_np: np.ndarray, progress: Callable[[str], None]
) -> list[Case]:
    import jax

    x, y = module.numpy.asarray(x_np), module.numpy.asarray(y_np)
    cases = _eager_cases(x, y, np.asarray)
    for as_numpy, kernel in ((False, demo_kernel), (True, demo_kernel_numpy)):
        cases.append(
            Case(
                "jit as_numpy" if as_numpy else "jit",
                _jitted(jax, kernel, as_numpy, x, y),
                np.asarray,
                "host callback in the compiled program",
            )
        )
    native = _native_case(jax, x, y, progress)
    if native is not None:
        cases.append(native)
    return cases


def _native_case(
    jax: Any, x: Any, y: Any, progress: Callable[[str], None]
) -> Case | None:
    """A Numba kernel under jit: the native XLA FFI path, its first compile timed."""
    if importlib.util.find_spec("numba") is None:
        return None
    import numba

    from lazyapply import explain_native, lazy

    @lazy(as_numpy=True)
    @numba.njit
    def demo_numba(a: Any, b: Any, scale: float) -> Any:
        return (a * a + b * b) * scale

    jitted = jax.jit(lambda a, b: demo_numba(a, b, 2.0))
    progress(
        "jax: compiling a Numba kernel as an XLA FFI target (jax.jit's native path; "
        "the first call of a signature takes seconds)"
    )
    start = time.perf_counter()
    jitted(x, y).block_until_ready()  # the first call compiles the FFI handler
    first = time.perf_counter() - start
    how = (explain_native(demo_numba) or "?").split(":")[0]
    note = f"Numba kernel; path: {how}; first call (compile) {first:.1f} s"
    return Case(
        "jit as_numpy, Numba",
        lambda: jitted(x, y).block_until_ready(),
        np.asarray,
        note,
    )


def _jitted(
    jax: Any, kernel: Callable[..., Any], as_numpy: bool, x: Any, y: Any
) -> Callable[[], Any]:
    jitted = jax.jit(
        lambda a, b: lazy_apply(kernel, a, b, scale=2.0, as_numpy=as_numpy)
    )
    return lambda: jitted(x, y).block_until_ready()


def _dask_cases(x_np: np.ndarray, y_np: np.ndarray, cluster: Any | None) -> list[Case]:
    import dask.array as da

    from_array: Callable[..., Any] = da.from_array  # untyped: chunks reads as str
    x, y = from_array(x_np, chunks=250), from_array(y_np, chunks=250)
    sync = lambda r: r.compute(scheduler="sync")  # noqa: E731
    built = "time: graph build only; "

    def call(kernel: Any, **options: Any) -> Callable[[], Any]:
        return lambda: lazy_apply(kernel, x, y, scale=2.0, **options)

    cases = [
        Case(
            "deferred",
            call(demo_kernel),
            sync,
            built + "kernel: 1 task on merged input",
        ),
        Case(
            "deferred as_numpy",
            call(demo_kernel_numpy, as_numpy=True),
            sync,
            built + "kernel: 1 task on merged input",
        ),
        Case(
            "elementwise as_numpy",
            call(demo_kernel_numpy, as_numpy=True, elementwise=True),
            sync,
            built + "kernel: 1 task per block",
        ),
    ]
    if cluster is not None:
        import distributed

        client: Any = distributed.Client(  # type: ignore[no-untyped-call]
            cluster, set_as_default=False
        )
        lazy_call = call(demo_kernel_numpy, as_numpy=True, elementwise=True)
        workers = len(cluster.workers)
        cases.append(
            Case(
                "distributed elementwise",
                lambda: client.compute(lazy_call()).result(),
                np.asarray,
                f"computed on {workers} local worker processes; time: build + compute",
                "dask: computing on the local cluster (its workers import the "
                "kernel's modules on their first task)",
            )
        )
    return cases


@contextlib.contextmanager
def local_cluster(wanted: bool) -> Iterator[Any | None]:
    """A small loopback ``dask.distributed`` cluster, or None if not installed."""
    if not wanted:
        yield None
        return
    try:
        import distributed
    except ImportError:
        yield None
        return
    with warnings.catch_warnings():
        # The scheduler's HTTP server binds 8787 first even with the dashboard off.
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        # Typed as Any: its stubs say dashboard_address is a str, but None turns the
        # dashboard off (distributed's documented spelling).
        local_cluster_class: Any = distributed.LocalCluster
        cluster = local_cluster_class(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        )
    try:
        yield cluster
    finally:
        cluster.close()


def cases(
    name: str,
    module: Any,
    cluster: Any | None = None,
    progress: Callable[[str], None] = _quiet,
) -> list[Case]:
    """Every case that applies to backend ``name``."""
    x_np = np.linspace(0.0, 1.0, SIZE)
    y_np = np.linspace(1.0, 2.0, SIZE)
    if name in ("numpy", "array_api_strict", "torch"):
        xp = np if name == "numpy" else module
        return _eager_cases(xp.asarray(x_np), xp.asarray(y_np), np.asarray)
    if name == "sparse":  # sparse refuses to densify: only the sparse-native kernel
        x, y = module.COO.from_numpy(x_np), module.COO.from_numpy(y_np)
        return _eager_cases(x, y, lambda r: r.todense(), numpy_ok=False)
    if name == "cupy":  # CuPy refuses an implicit device-to-host copy
        x, y = module.asarray(x_np), module.asarray(y_np)
        return _eager_cases(x, y, lambda r: r.get(), numpy_ok=False)
    if name == "jax":
        return _jax_cases(module, x_np, y_np, progress)
    if name == "dask":
        return _dask_cases(x_np, y_np, cluster)
    return []


def run(
    found: dict[str, Any],
    *,
    cluster: Any | None = None,
    progress: Callable[[str], None] = _quiet,
    on_row: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """Run the demo kernel through every backend of ``found`` and every mode.

    ``progress`` receives a line before each slow step (a backend's first calls
    compile); ``on_row`` each row as soon as it is measured.
    """
    expected = demo_kernel_numpy(
        np.linspace(0.0, 1.0, SIZE), np.linspace(1.0, 2.0, SIZE), scale=2.0
    )
    rows: list[Row] = []
    for name, module in found.items():
        progress(f"{name}: running the demo kernel in every mode")
        for case in cases(name, module, cluster, progress):
            if case.wait:
                progress(case.wait)
            try:
                result = case.call()
                values = np.asarray(case.to_numpy(result), dtype=float)
                ok = values.shape == expected.shape and bool(
                    np.allclose(values, expected)
                )
                note = "; ".join(filter(None, [describe(result), case.note]))
                rows.append(
                    Row(name, case.mode, ok, _time(case.call), note)
                    if ok
                    else Row(name, case.mode, ok, float("nan"), "WRONG VALUES; " + note)
                )
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                note = f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
                rows.append(Row(name, case.mode, False, float("nan"), note))
            on_row(rows[-1])
    return rows
