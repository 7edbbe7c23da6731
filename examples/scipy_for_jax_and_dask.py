"""SciPy routines that JAX and Dask lack, used inside ``jax.jit`` and on Dask via @lazy.

Three kinds of routine:

1. ``scipy.special.ellipk``: elementwise. ``elementwise=True`` lets Dask run it chunk
   by chunk and JAX's ``vmap`` batch it in one callback.
2. ``scipy.spatial.distance.pdist``: the output's shape differs from the input's,
   (n, d) -> (n (n - 1) / 2,), so it is declared with a shape callable.
3. ``scipy.special.ellipj``: four outputs (sn, cn, dn, ph), declared as a list of
   shapes and dtypes computed from the arguments.

Run: ``python examples/scipy_for_jax_and_dask.py``. Prints one line per routine and
backend (result check, time per call) and exits with status 1 if a check fails; a
library that is not installed is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyapply import lazy

try:
    import scipy.spatial.distance
    import scipy.special
except ImportError:
    print("SKIP all: scipy is not installed (pip install scipy)")
    sys.exit(0)


@lazy(as_numpy=True, elementwise=True)
def ellipk(m: np.ndarray) -> np.ndarray:
    """Complete elliptic integral of the first kind (elementwise)."""
    return scipy.special.ellipk(m)  # type: ignore[no-any-return]


@lazy(
    shape=lambda x, **kw: (x.shape[0] * (x.shape[0] - 1) // 2,),
    dtype="float64",
    as_numpy=True,
)
def pdist(x: np.ndarray, *, metric: str = "euclidean") -> np.ndarray:
    """Condensed pairwise distances between the rows of ``x``."""
    return scipy.spatial.distance.pdist(x, metric=metric)


@lazy(
    shape=lambda u, m: [u.shape] * 4,
    dtype=lambda u, m: [u.dtype] * 4,
    as_numpy=True,
)
def ellipj(u: np.ndarray, m: float) -> tuple[np.ndarray, ...]:
    """Jacobi elliptic functions sn, cn, dn and the amplitude ph."""
    return tuple(scipy.special.ellipj(u, m))


failures: list[str] = []


def timed(fn: Callable[[], Any], repeat: int = 10) -> tuple[Any, float]:
    """The result of ``fn()`` and the median time of ``repeat`` calls, in µs."""
    out = fn()  # warm-up: jax.jit compiles outside the timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)) * 1e6


def check(label: str, got: Any, expected: Any, us: float, rtol: float) -> None:
    """Compare one output, or a tuple of outputs, with SciPy's own NumPy result."""
    pairs = (
        zip(got, expected, strict=True) if isinstance(got, tuple) else [(got, expected)]
    )
    kind = type(got[0] if isinstance(got, tuple) else got)
    name = f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    if isinstance(got, tuple):
        name = f"{len(got)} x {name}"
    ok = all(np.allclose(np.asarray(g), e, rtol=rtol, atol=rtol) for g, e in pairs)
    print(f"{'OK  ' if ok else 'FAIL'} {label:<44} {name:<22} {us:10.1f} µs")
    if not ok:
        failures.append(label)


def main() -> int:
    rng = np.random.default_rng(0)
    m = rng.uniform(0.0, 0.99, size=(1000,))
    points = rng.standard_normal((300, 3))
    u = np.linspace(-3.0, 3.0, 2000)
    cases: list[
        tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]
    ] = [
        ("ellipk", ellipk, (m,), {}, scipy.special.ellipk(m)),
        (
            "pdist(cityblock)",
            pdist,
            (points,),
            {"metric": "cityblock"},
            scipy.spatial.distance.pdist(points, "cityblock"),
        ),
        ("ellipj (4 outputs)", ellipj, (u, 0.5), {}, scipy.special.ellipj(u, 0.5)),
    ]
    print(f"{'':5}{'routine / backend':<44} {'result type':<22} {'time/call':>13}")

    for name, fn, args, kwargs, expected in cases:
        got, us = timed(lambda fn=fn, args=args, kwargs=kwargs: fn(*args, **kwargs))
        check(f"{name}: numpy", got, expected, us, 1e-12)

    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        for name, fn, args, kwargs, _ in cases:
            jargs = tuple(
                jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args
            )
            # JAX computes in float32 unless jax_enable_x64: compare with SciPy on the
            # same float32 inputs.
            nargs = tuple(
                np.asarray(a) if isinstance(a, jax.Array) else a for a in jargs
            )
            want = fn.eager(*nargs, **kwargs)
            jitted = jax.jit(lambda *a, fn=fn, kwargs=kwargs: fn(*a, **kwargs))
            got, us = timed(
                lambda jitted=jitted, jargs=jargs: jax.block_until_ready(jitted(*jargs))
            )
            check(f"{name}: jax.jit", got, want, us, 1e-4)

        @jax.jit
        def energy(m: Any) -> Any:
            """ellipk inside a larger jitted computation, also under vmap."""
            rows = jax.vmap(ellipk)(m.reshape(10, -1))
            return jnp.sum(jnp.sqrt(rows), axis=1)

        mj = jnp.asarray(m)
        want = np.sum(
            np.sqrt(scipy.special.ellipk(np.asarray(mj))).reshape(10, -1), axis=1
        )
        got, us = timed(lambda: energy(mj).block_until_ready())
        check("ellipk: jax.jit(sum(sqrt(vmap(ellipk(m)))))", got, want, us, 1e-4)
    else:
        print("SKIP jax: jax is not installed")

    if importlib.util.find_spec("dask") is not None:
        import dask
        import dask.array as da

        computed: list[int] = []

        def counting_scheduler(dsk: Any, keys: Any, **kwargs: Any) -> Any:
            computed.append(1)
            return dask.get(dsk, keys, **kwargs)

        for name, fn, args, kwargs, expected in cases:
            dargs = tuple(
                da.from_array(a, chunks=tuple(max(1, s // 4) for s in a.shape))
                if isinstance(a, np.ndarray)
                else a
                for a in args
            )
            with dask.config.set(scheduler=counting_scheduler):
                computed.clear()
                lazy_out, us_graph = timed(
                    lambda fn=fn, dargs=dargs, kwargs=kwargs: fn(*dargs, **kwargs)
                )
                if computed:
                    failures.append(f"{name}: dask computed while building the graph")
                    print(f"FAIL {name}: dask computed {len(computed)}x in the call")
                got, us = timed(
                    lambda lazy_out=lazy_out: dask.compute(lazy_out)[0], repeat=3
                )
            check(f"{name}: dask (graph {us_graph:.0f} µs)", got, expected, us, 1e-12)
    else:
        print("SKIP dask: dask is not installed")

    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
