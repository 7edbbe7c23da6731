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

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import Layout, check, failures, finish, installed, timed

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


# Column widths of the printed lines, and the timed calls per check.
LAYOUT = Layout(label=44, time=10)
REPEAT = 10


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
        got, us = timed(
            lambda fn=fn, args=args, kwargs=kwargs: fn(*args, **kwargs), repeat=REPEAT
        )
        check(f"{name}: numpy", got, expected, us, 1e-12, layout=LAYOUT)

    if installed("jax"):
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
                lambda jitted=jitted, jargs=jargs: jax.block_until_ready(
                    jitted(*jargs)
                ),
                repeat=REPEAT,
            )
            check(f"{name}: jax.jit", got, want, us, 1e-4, layout=LAYOUT)

        @jax.jit
        def energy(m: Any) -> Any:
            """ellipk inside a larger jitted computation, also under vmap."""
            rows = jax.vmap(ellipk)(m.reshape(10, -1))
            return jnp.sum(jnp.sqrt(rows), axis=1)

        mj = jnp.asarray(m)
        want = np.sum(
            np.sqrt(scipy.special.ellipk(np.asarray(mj))).reshape(10, -1), axis=1
        )
        got, us = timed(lambda: energy(mj).block_until_ready(), repeat=REPEAT)
        label = "ellipk: jax.jit(sum(sqrt(vmap(ellipk(m)))))"
        check(label, got, want, us, 1e-4, layout=LAYOUT)
    else:
        print("SKIP jax: jax is not installed")

    if installed("dask"):
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
                    lambda fn=fn, dargs=dargs, kwargs=kwargs: fn(*dargs, **kwargs),
                    repeat=REPEAT,
                )
                if computed:
                    failures.append(f"{name}: dask computed while building the graph")
                    print(f"FAIL {name}: dask computed {len(computed)}x in the call")
                got, us = timed(
                    lambda lazy_out=lazy_out: dask.compute(lazy_out)[0], repeat=3
                )
            label = f"{name}: dask (graph {us_graph:.0f} µs)"
            check(label, got, expected, us, 1e-12, layout=LAYOUT)
    else:
        print("SKIP dask: dask is not installed")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
