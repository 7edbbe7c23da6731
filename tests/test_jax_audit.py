"""JAX cases found by trying documented spellings as a user would.

NumPy scalars as static arguments of a Numba kernel on the native path (they keep
their own type: a ``np.float32`` computes in float32, as eagerly), and what a kernel
without ``as_numpy`` receives when it runs per shard on an Auto mesh (JAX arrays of
its shard, as ``jax.pure_callback`` hands them). Values are compared with eager
NumPy.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import numpy as np
import pytest

from lazyapply import lazy
from lazyapply.adapters.jax.native import explain_native

from ._devices import run_on_devices

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
numba = pytest.importorskip("numba", reason="numba is not installed")


@lazy(as_numpy=True, dtype="float64")
@numba.njit
def _third(x: Any, s: Any) -> Any:
    # s / float32(3) is float32 arithmetic for a float32 s (a rounded third), and
    # float64 for a float64 s: the result tells the static's type apart.
    out = np.empty(x.shape, np.float64)
    out[:] = x + s / np.float32(3.0)
    return out


@lazy(as_numpy=True, dtype="float64")
@numba.njit
def _refuses_big(x: Any, s: Any) -> Any:
    if s > 1:
        raise ValueError("s is too big")
    out = np.empty(x.shape, np.float64)
    out[:] = x * s
    return out


STATICS = [
    np.float32(1),
    np.float64(1),
    1.0,
    np.float32(-0.0),
    np.int32(7),
    np.uint8(250),
    np.int64(-3),
    np.bool_(True),
]


@pytest.mark.parametrize("s", STATICS, ids=lambda s: f"{type(s).__name__}({s})")
def test_numpy_scalar_static_keeps_its_type_on_the_native_path(s: Any) -> None:
    x = np.linspace(0.0, 1.0, 4)
    want = _third(x, s)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(lambda a: _third(a, s))(jnp.asarray(x)))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    assert (explain_native(_third) or "").startswith("native"), explain_native(_third)


def test_numpy_scalar_static_reaches_the_failure_report() -> None:
    x = jnp.linspace(0.0, 1.0, 4)
    f = jax.jit(lambda a: _refuses_big(a, np.float32(2)))
    with pytest.raises(jax.errors.JaxRuntimeError, match="s is too big"):
        f(x).block_until_ready()
    assert (explain_native(_refuses_big) or "").startswith("native")
    np.testing.assert_array_equal(
        jax.jit(lambda a: _refuses_big(a, np.float32(0.5)))(x), np.asarray(x) * 0.5
    )


_SHARDS = textwrap.dedent(
    """
    seen = []

    def sin(x):
        seen.append([type(x).__module__.split(".")[0], list(x.shape)])
        xp = x.__array_namespace__()  # the kernel's arguments' own namespace
        return xp.sin(x)

    h = np.arange(32, dtype=np.float32).reshape(8, 4) / 7
    meshes = {
        "Mesh": line,
        "make_mesh": jax.make_mesh((4,), ("d",), axis_types=(AxisType.Auto,)),
    }
    out = {}
    for name, mesh in meshes.items():
        for as_numpy in (False, True):
            seen.clear()
            x = put(h, mesh, P("d"))
            opts = {"elementwise": True, "as_numpy": as_numpy}
            f = jax.jit(lambda a: lazy_apply(sin, a, **opts))
            got = jax.block_until_ready(f(x))
            ok = bool(np.allclose(np.asarray(got), np.sin(h), rtol=1e-6))
            spec = str(tuple(got.sharding.spec))
            out[f"{name} {as_numpy}"] = [ok, sorted(seen), spec]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_kernel_namespace_per_shard_on_auto_meshes() -> None:
    report = json.loads(run_on_devices(_SHARDS).strip().splitlines()[-1])
    for name in ("Mesh", "make_mesh"):
        for as_numpy, module in ((False, "jaxlib"), (True, "numpy")):
            ok, seen, spec = report[f"{name} {as_numpy}"]
            assert ok, (name, as_numpy)
            # One call per shard (2 rows each), each on its library's arrays.
            assert seen == [[module, [2, 4]]] * 4, (name, as_numpy, seen)
            assert spec == "('d',)", (name, as_numpy, spec)
