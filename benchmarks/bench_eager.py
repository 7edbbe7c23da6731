"""Eager overhead: a trivial kernel (``x + 1``) on a 10-element array, per backend.

Four ways of making the same call: the kernel called directly, the reference
``array_api_extra.lazy_apply``, ``lazyapply.lazy_apply`` and a ``@lazyapply.lazy``
kernel. Each with inferred output metadata ("plain"), with ``shape``/``dtype``
declared ("declared"), strict with metadata inferred from 16 array arguments
("strict, 16 arrays"), and with ``as_numpy=True`` (where the direct call converts in
and out by hand). Overhead is a call's time minus the direct call's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._timing import Settings, compare

__all__ = ["BACKENDS", "run"]

N = 10


def _kernel(x: Any) -> Any:
    return x + 1


def _kernel16(*xs: Any) -> Any:
    return xs[0] + 1


#: Array arguments of the strict case: its metadata is inferred from all of them.
MANY = 16


def _numpy() -> tuple[Any, Any]:
    x = np.arange(N, dtype=np.float64)
    return x, x.dtype


def _torch() -> tuple[Any, Any]:
    import torch

    x = torch.arange(N, dtype=torch.float64)
    return x, x.dtype


def _strict() -> tuple[Any, Any]:
    import array_api_strict as xp

    x = xp.asarray(np.arange(N, dtype=np.float64))
    return x, x.dtype


def _sparse() -> tuple[Any, Any]:
    import sparse

    x = sparse.COO.from_numpy(np.arange(N, dtype=np.float64))
    return x, x.dtype


def _jax() -> tuple[Any, Any]:
    import jax.numpy as jnp

    x = jnp.arange(N, dtype=jnp.float32)
    return x, x.dtype


def _to_native(backend: str) -> Callable[[Any], Any] | None:
    """The hand-written conversion of a NumPy result back to the backend (as_numpy)."""
    if backend == "numpy":
        return lambda y: y
    if backend == "torch":
        import torch

        return torch.asarray
    if backend == "array-api-strict":
        import array_api_strict as xp

        return xp.asarray
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray
    return None  # sparse refuses to densify implicitly: no as_numpy case


#: Backend name -> maker of (10-element array, its dtype in its own namespace).
BACKENDS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "numpy": _numpy,
    "torch": _torch,
    "array-api-strict": _strict,
    "sparse": _sparse,
    "jax": _jax,
}


def _decorator() -> Callable[..., Any] | None:
    try:
        from lazyapply import lazy  # type: ignore[attr-defined]
    except ImportError:
        return None
    return lazy  # type: ignore[no-any-return]


def cases(backend: str) -> Iterator[tuple[str, dict[str, Callable[[], object]]]]:
    """``(case, {variant: zero-argument call})`` for one backend."""
    import array_api_extra as xpx

    import lazyapply

    x, dtype = BACKENDS[backend]()
    k = _kernel
    ref = xpx.lazy_apply
    la = lazyapply.lazy_apply
    lazy = _decorator()
    shape = (N,)
    # The decorator's dtype is namespace-neutral, as a kernel author writes it.
    name = "float32" if backend == "jax" else "float64"

    plain: dict[str, Callable[[], object]] = {
        "direct": lambda: k(x),
        "reference": lambda: ref(k, x),
        "lazyapply": lambda: la(k, x),
    }
    declared: dict[str, Callable[[], object]] = {
        "direct": lambda: k(x),
        "reference": lambda: ref(k, x, shape=shape, dtype=dtype),
        "lazyapply": lambda: la(k, x, shape=shape, dtype=dtype),
    }
    if lazy is not None:
        bare = lazy(k)
        plain["decorated"] = lambda: bare(x)
        with_meta = lazy(shape=shape, dtype=name)(k)
        declared["decorated"] = lambda: with_meta(x)
    yield "plain", plain
    yield "declared", declared
    # Strict with inferred metadata (broadcast shape, result_type of 16 arrays): the
    # @lazy default; the reference infers the same for its lazy backends.
    xs = [x] * MANY
    k16 = _kernel16
    strict: dict[str, Callable[[], object]] = {
        "direct": lambda: k16(*xs),
        "reference": lambda: ref(k16, *xs),
        "lazyapply": lambda: la(k16, *xs, strict=True),
    }
    if lazy is not None:
        checked = lazy(k16)
        strict["decorated"] = lambda: checked(*xs)
    yield f"strict, {MANY} arrays", strict
    back = _to_native(backend)
    if back is None:
        return
    asarray = np.asarray
    # The hand-written equivalent converts in and out itself.
    as_numpy: dict[str, Callable[[], object]] = {
        "direct": lambda: back(k(asarray(x))),
        "reference": lambda: ref(k, x, as_numpy=True),
        "lazyapply": lambda: la(k, x, as_numpy=True),
    }
    if lazy is not None:
        converting = lazy(as_numpy=True)(k)
        as_numpy["decorated"] = lambda: converting(x)
    yield "as_numpy", as_numpy


def run(backends: list[str], settings: Settings, bar: Any) -> list[dict[str, Any]]:
    """Measure every selected eager backend; one row per (backend, case)."""
    rows = []
    for backend in backends:
        if backend not in BACKENDS:
            continue
        try:
            found = list(cases(backend))
        except ImportError as exc:
            bar.write(f"eager/{backend}: skipped ({exc})")
            continue
        for case, fns in found:
            bar.set_description(f"eager {backend} {case}")
            times, samples = compare(fns, settings)
            rows.append(
                {
                    "section": "eager",
                    "backend": backend,
                    "case": case,
                    "size": N,
                    "times": times,
                    "samples": samples,
                }
            )
            bar.update()
    return rows


def count(backends: list[str]) -> int:
    """Progress-bar steps this section takes."""
    return sum((3 if b == "sparse" else 4) for b in backends if b in BACKENDS)
