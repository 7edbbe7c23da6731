"""Sharded JAX arrays under ``jax.jit`` (issue 12), on 4 CPU devices in a subprocess.

An elementwise or gufunc kernel runs once per shard and its output keeps the input's
sharding, with no all-gather in the compiled program: on the native path (Numba, any
mesh, through ``custom_partitioning``) and on the callback path (meshes with explicit
axes through ``shard_map``, Auto axes through ``custom_partitioning``). A whole-array
kernel gathers, runs once on the whole array, and its result is re-sharded as the
program asks.
"""

from __future__ import annotations

import textwrap

import pytest

from ._devices import run_on_devices

pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("numba", reason="numba is not installed")

pytestmark = pytest.mark.slow  # one subprocess on 4 CPU devices, compiles included

_SCRIPT = textwrap.dedent(
    """
    import numba

    seen = []

    def np_sin(x):
        seen.append(x.shape)
        return np.sin(x)

    def np_add(x, y):
        seen.append(x.shape)
        return x + y

    @numba.vectorize
    def nb_sin(x):
        return np.sin(x)

    @numba.guvectorize(["void(float32[:], float32[:])"], "(n)->(n)")
    def nb_cumsum(x, out):
        acc = np.float32(0)
        for i in range(x.shape[0]):
            acc += x[i]
            out[i] = acc

    host = np.arange(16, dtype=np.float32).reshape(8, 2)

    def check(kernel, mesh, opts, expected, label):
        x = put(host, mesh, P("d"))
        f = jax.jit(lambda a: lazy_apply(kernel, a, as_numpy=True, **opts))
        out = f(x)
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
        kept = out.sharding.is_equivalent_to(x.sharding, out.ndim)
        hlo = f.lower(x).compile().as_text()
        print(label, kept, "all-gather" in hlo, explain_native(kernel) or "-")

    for axis in (AxisType.Explicit, AxisType.Auto):
        mesh = meshes_auto = jax.make_mesh((4,), ("d",), axis_types=(axis,))
        name = axis.name
        check(nb_sin, mesh, {}, np.sin(host), f"native-elementwise-{name}")
        check(nb_cumsum, mesh, {}, np.cumsum(host, axis=-1), f"native-gufunc-{name}")
        seen.clear()
        check(np_sin, mesh, {"elementwise": True}, np.sin(host), f"callback-{name}")
        print(f"callback-{name}-calls", sorted(set(seen)))
        seen.clear()
        check(np_sin, mesh, {}, np.sin(host), f"whole-{name}")
        print(f"whole-{name}-calls", sorted(set(seen)))

    # A replicated row beside a sharded operand, first (Explicit mesh): broadcast,
    # then one call per shard; the row's replicated sharding does not decide.
    mesh = jax.make_mesh((4,), ("d",), axis_types=(AxisType.Explicit,))
    x, row = put(host, mesh, P("d")), put(host[0], mesh, P())
    seen.clear()
    f = jax.jit(lambda r, a: lazy_apply(np_add, r, a, as_numpy=True, elementwise=True))
    np.testing.assert_allclose(np.asarray(f(row, x)), host[0] + host, rtol=1e-6)
    gathered = "all-gather" in f.lower(row, x).compile().as_text()
    print("explicit-broadcast", gathered, sorted(set(seen)))

    # A gufunc whose core dimension is sharded too (Explicit 2x2 mesh): the core
    # axis is resharded whole, the loop axis stays sharded, one call per shard.
    def np_norm(x):
        seen.append(x.shape)
        return np.sqrt((x * x).sum(-1))

    mesh2 = jax.make_mesh((2, 2), ("a", "b"), axis_types=(AxisType.Explicit,) * 2)
    wide = np.arange(32, dtype=np.float32).reshape(8, 4)
    x = put(wide, mesh2, P("a", "b"))
    seen.clear()
    f = jax.jit(lambda a: lazy_apply(np_norm, a, as_numpy=True, signature="(n)->()"))
    out = f(x)
    np.testing.assert_allclose(np.asarray(out), np_norm(wide), rtol=1e-6)
    print("core-sharded", tuple(out.sharding.spec), sorted(set(seen))[0])

    # vmap of a partitioned native call (custom_partitioning has no batching rule of
    # its own: the batch is one more loop dimension, partitioned anew).
    x = put(host, meshes_auto, P("d"))
    f = jax.jit(jax.vmap(lambda a: lazy_apply(nb_sin, a, as_numpy=True)))
    np.testing.assert_allclose(np.asarray(f(x)), np.sin(host), rtol=1e-6)
    print("native-vmap", "all-gather" in f.lower(x).compile().as_text())

    # Eager: a NumPy result shaped like a sharded input keeps its sharding.
    x = put(host, line, P("d"))
    out = lazy_apply(np.sin, x, as_numpy=True)
    np.testing.assert_allclose(np.asarray(out), np.sin(host), rtol=1e-6)
    print("eager-kept", out.sharding.is_equivalent_to(x.sharding, out.ndim))
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, str]:
    stdout = run_on_devices(_SCRIPT)
    lines = [line.split(" ", 1) for line in stdout.splitlines() if " " in line]
    return dict(lines)


@pytest.mark.parametrize("axis", ["Explicit", "Auto"])
@pytest.mark.parametrize("kind", ["elementwise", "gufunc"])
def test_native_runs_per_shard_and_keeps_sharding(
    report: dict[str, str], kind: str, axis: str
) -> None:
    kept, gathered, decision = report[f"native-{kind}-{axis}"].split(" ", 2)
    assert (kept, gathered) == ("True", "False")
    assert decision.startswith("native")


def test_callback_runs_per_shard_on_explicit_meshes(report: dict[str, str]) -> None:
    kept, gathered, _ = report["callback-Explicit"].split(" ", 2)
    assert (kept, gathered) == ("True", "False")
    assert report["callback-Explicit-calls"] == "[(2, 2)]"  # one call per shard


def test_callback_runs_per_shard_on_auto_meshes(report: dict[str, str]) -> None:
    # custom_partitioning with lazyapply's host-callback FFI target (_host.py);
    # the cases of Auto meshes are in test_jax_sharding_auto.py.
    kept, gathered, _ = report["callback-Auto"].split(" ", 2)
    assert (kept, gathered) == ("True", "False")
    assert report["callback-Auto-calls"] == "[(2, 2)]"


@pytest.mark.parametrize("axis", ["Explicit", "Auto"])
def test_whole_array_kernel_gathers_runs_once(
    report: dict[str, str], axis: str
) -> None:
    assert report[f"whole-{axis}-calls"] == "[(8, 2)]"
    _, gathered, _ = report[f"whole-{axis}"].split(" ", 2)
    assert gathered == "True"  # documented: the whole array reaches the kernel


def test_broadcast_operand_on_an_explicit_mesh(report: dict[str, str]) -> None:
    assert report["explicit-broadcast"] == "False [(2, 2)]"


def test_signature_reshards_a_sharded_core_dimension(report: dict[str, str]) -> None:
    spec, shard = report["core-sharded"].split(" ", 1)
    assert spec == "('a',)"  # the loop axis keeps its sharding
    assert shard == "(4, 4)"  # each call: half the loop, the whole core


def test_native_call_under_vmap_stays_partitioned(report: dict[str, str]) -> None:
    assert report["native-vmap"] == "False"


def test_eager_call_keeps_the_input_sharding(report: dict[str, str]) -> None:
    assert report["eager-kept"] == "True"
