"""The callback path on meshes with Auto axes, under ``jax.jit``, on 4 CPU devices.

Inputs sharded with ``jax.device_put`` onto ``Mesh(devices, names)`` (or
``jax.make_mesh`` with Auto axes): the trace does not see their sharding, so an
elementwise or gufunc kernel is wrapped in ``custom_partitioning`` and each device
calls the kernel on its own shard through lazyapply's host-callback FFI target
(``jax.pure_callback`` crashes there on JAX 0.10; see ``adapters/jax/_host.py``).
Every value is compared with eager NumPy; the compiled text is checked for
``all-gather`` where the program needs none.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from ._devices import run_on_devices

pytest.importorskip("jax", reason="jax is not installed")

pytestmark = pytest.mark.slow  # one subprocess on 4 CPU devices, compiles included

_SCRIPT = textwrap.dedent(
    """
    seen = []

    def rec(kernel):
        def wrapper(*args, **kwargs):
            seen.append([list(a.shape) for a in args if hasattr(a, "shape")])
            return kernel(*args, **kwargs)
        wrapper.__name__ = kernel.__name__
        return wrapper

    def sin(x): return np.sin(x)
    def axpy(x, y): return 2 * x + y
    def both(x, y): return x + y, (x * y).astype(np.float64)
    def norm(x): return np.sqrt((x * x).sum(-1))
    def dot(x, y): return (x * y).sum(-1)
    def cumsum(x): return np.cumsum(x, -1)
    def signed(x, s): return np.copysign(np.ones_like(x), s) * x

    def fails(x):
        raise ValueError("kernel says no")

    def writes(x):
        x[0] = 1.0
        return x

    meshes = {
        "Mesh": line,
        "make_mesh": jax.make_mesh((4,), ("d",), axis_types=(AxisType.Auto,)),
    }
    h = np.arange(32, dtype=np.float32).reshape(8, 4) / 7
    hy = np.cos(h)
    ew = {"as_numpy": True, "elementwise": True}

    def case(label, fn, ops, expected):
        seen.clear()
        f = jax.jit(fn)
        out = jax.block_until_ready(f(*ops))  # every replica's call is done
        outs = out if isinstance(out, tuple) else (out,)
        exps = expected if isinstance(expected, tuple) else (expected,)
        ok = all(
            o.shape == e.shape and np.allclose(np.asarray(o), e, rtol=1e-6)
            for o, e in zip(outs, exps)
        )
        gather = "all-gather" in f.lower(*ops).compile().as_text()
        specs = [str(tuple(getattr(o.sharding, "spec", ()))) for o in outs]
        print(json.dumps([label, ok, gather, sorted(seen), specs]))

    for name, mesh in meshes.items():
        x = put(h, mesh, P("d"))
        case(f"1d-{name}", lambda a: lazy_apply(rec(sin), a, **ew), [x], np.sin(h))
    for spec in [P("a", "b"), P("b", "a"), P(("a", "b")), P(None, "b")]:
        x = put(h, grid, spec)
        case(f"2d-{spec}", lambda a: lazy_apply(rec(sin), a, **ew), [x], np.sin(h))
    case(
        "replicated",
        lambda a: lazy_apply(rec(sin), a, **ew),
        [put(h, meshes["Mesh"], P())],
        np.sin(h),
    )
    case(
        "two-shardings",
        lambda a, b: lazy_apply(rec(axpy), a, b, **ew),
        [put(h, grid, P("a", None)), put(hy, grid, P(None, "b"))],
        axpy(h, hy),
    )
    case(
        "replicated-and-sharded",
        lambda a, b: lazy_apply(rec(axpy), a, b, **ew),
        [put(h, meshes["Mesh"], P()), put(hy, meshes["Mesh"], P("d"))],
        axpy(h, hy),
    )
    # Loop shapes that broadcast (a parameter beside a sharded array): broadcast
    # first, each device holding its own part; never gathered.
    row, col = put(hy[0], grid, P()), put(hy[:, :1], grid, P())
    for label, a, b in [
        ("row", put(h, grid, P(("a", "b"))), row),
        ("column", put(h, grid, P("a", "b")), col),
        ("scalar", put(h, grid, P(("a", "b"))), jnp.float32(3)),
    ]:
        expected = axpy(h, np.asarray(b))
        case(f"broadcast-{label}", lambda a, b: lazy_apply(rec(axpy), a, b, **ew),
             [a, b], expected)
        case(f"broadcast-{label}-first", lambda b, a: lazy_apply(rec(axpy), b, a, **ew),
             [b, a], axpy(np.asarray(b), h))
    case(
        "broadcast-signature",
        lambda a, b: lazy_apply(rec(dot), a, b, as_numpy=True, signature="(n),(n)->()"),
        [put(h, grid, P(("a", "b"))), row],
        dot(h, hy[0]),
    )
    two = {"signature": "(),()->(),()", "dtype": [np.float32, np.float64]}
    case(
        "several-outputs",
        lambda a, b: lazy_apply(rec(both), a, b, as_numpy=True, **two),
        [put(h, meshes["Mesh"], P("d")), put(hy, meshes["Mesh"], P("d"))],
        tuple(o.astype(np.float32) for o in both(h, hy)),
    )
    case(
        "signature-loop",
        lambda a: lazy_apply(rec(norm), a, as_numpy=True, signature="(n)->()"),
        [put(h, meshes["Mesh"], P("d"))],
        norm(h),
    )
    case(
        "signature-core",
        lambda a: lazy_apply(rec(cumsum), a, as_numpy=True, signature="(n)->(n)"),
        [put(h, grid, P("a", "b"))],
        cumsum(h),
    )
    # Shapes the mesh does not divide (inside the program: device_put refuses them).
    case(
        "uneven-rows",
        lambda a: lazy_apply(rec(sin), a[:7] + 1, **ew),
        [put(h, meshes["Mesh"], P("d"))],
        np.sin(h[:7] + 1),
    )
    case(
        "uneven-2d",
        lambda a: lazy_apply(rec(sin), a[:7, :3], **ew),
        [put(h, grid, P("a", "b"))],
        np.sin(h[:7, :3]),
    )
    case(
        "uneven-signature",
        lambda a: lazy_apply(rec(norm), a[:5], as_numpy=True, signature="(n)->()"),
        [put(h, meshes["Mesh"], P("d"))],
        norm(h[:5]),
    )
    case(
        "vmap",
        jax.vmap(lambda a, b: lazy_apply(rec(axpy), a, b, **ew), in_axes=(0, None)),
        [put(h, meshes["Mesh"], P("d")), put(hy[0], meshes["Mesh"], P())],
        axpy(h, hy[0]),
    )
    x = put(h, meshes["Mesh"], P("d"))
    for s in (0.0, -0.0):  # equal static arguments that differ: one staging each
        case(
            f"static-{s}",
            lambda a, s=s: lazy_apply(rec(signed), a, s, **ew),
            [x],
            signed(h, s),
        )
    case(
        "one-device",
        lambda a: lazy_apply(rec(sin), a, **ew),
        [jnp.asarray(h)],
        np.sin(h),
    )

    def error(label, kernel, run=None):
        f = jax.jit(lambda a: lazy_apply(kernel, a, **ew))
        try:
            (run or f)(x).block_until_ready()
            print(json.dumps([label, "no error"]))
        except Exception as exc:
            print(json.dumps([label, type(exc).__name__, str(exc).splitlines()[0]]))

    error("fails", fails)
    error("writes", writes)
    error("grad", sin, jax.grad(lambda a: lazy_apply(sin, a, **ew).sum()))
    # A compiled program whose host callback is gone fails loudly, never calls
    # another kernel (what a program loaded from another process would meet).
    from lazyapply.adapters.jax import _host

    compiled = jax.jit(lambda a: lazy_apply(np.tanh, a, **ew)).lower(x).compile()
    _host._ENTRIES.clear()
    error("released", np.tanh, compiled)
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, list[object]]:
    stdout = run_on_devices(_SCRIPT)
    rows = [json.loads(line) for line in stdout.splitlines() if line[:1] == "["]
    return {row[0]: row[1:] for row in rows}


def _calls(n: int, *shape: int) -> list[list[list[int]]]:
    return [[list(shape)]] * n


@pytest.mark.parametrize("mesh", ["Mesh", "make_mesh"])
def test_one_call_per_shard_no_all_gather(
    report: dict[str, list[object]], mesh: str
) -> None:
    assert report[f"1d-{mesh}"] == [True, False, _calls(4, 2, 4), ["('d',)"]]


@pytest.mark.parametrize(
    ("spec", "shard", "out"),
    [
        ("P('a', 'b')", (4, 2), "('a', 'b')"),
        ("P('b', 'a')", (4, 2), "('b', 'a')"),
        ("P(('a', 'b'),)", (2, 4), "(('a', 'b'),)"),
        # Sharded along 'b' only: the devices along 'a' compute the same shard, as
        # XLA's own elementwise ops would, and no all-gather is needed.
        ("P(None, 'b')", (8, 2), "(None, 'b')"),
    ],
)
def test_two_dimensional_mesh_layouts(
    report: dict[str, list[object]], spec: str, shard: tuple[int, int], out: str
) -> None:
    assert report[f"2d-{spec}"] == [True, False, _calls(4, *shard), [out]]


def test_replicated_input_is_split_once_over_the_devices(
    report: dict[str, list[object]],
) -> None:
    # Each device computes a quarter once (rather than each the whole); the
    # program wants a replicated result, so XLA gathers it afterwards.
    ok, _, calls, _ = report["replicated"]
    assert ok
    assert calls == _calls(4, 2, 4)


def test_two_inputs_with_different_shardings(report: dict[str, list[object]]) -> None:
    ok, gather, calls, specs = report["two-shardings"]
    assert (ok, gather, specs) == (True, False, ["('a', 'b')"])
    assert calls == [[[4, 2], [4, 2]]] * 4
    ok, gather, calls, specs = report["replicated-and-sharded"]
    assert (ok, gather, specs) == (True, False, ["('d',)"])
    assert calls == [[[2, 4], [2, 4]]] * 4


@pytest.mark.parametrize(
    ("label", "shard", "out"),
    [
        ("row", (2, 4), "(('a', 'b'),)"),
        ("row-first", (2, 4), "(('a', 'b'),)"),
        ("column", (4, 2), "('a', 'b')"),
        ("column-first", (4, 2), "('a', 'b')"),
        ("scalar", (2, 4), "(('a', 'b'),)"),
        ("scalar-first", (2, 4), "(('a', 'b'),)"),
        ("signature", (2, 4), "(('a', 'b'),)"),
    ],
)
def test_broadcast_operands_are_not_gathered(
    report: dict[str, list[object]], label: str, shard: tuple[int, int], out: str
) -> None:
    ok, gather, calls, specs = report[f"broadcast-{label}"]
    assert (ok, gather, specs) == (True, False, [out])
    assert calls == [[list(shard), list(shard)]] * 4


def test_several_outputs_keep_the_sharding(report: dict[str, list[object]]) -> None:
    ok, gather, calls, specs = report["several-outputs"]
    assert (ok, gather, specs) == (True, False, ["('d',)", "('d',)"])
    assert calls == [[[2, 4], [2, 4]]] * 4


def test_signature_kernels(report: dict[str, list[object]]) -> None:
    assert report["signature-loop"] == [True, False, _calls(4, 2, 4), ["('d',)"]]
    # A sharded core dimension is made whole (that gather is the kernel's need);
    # the loop dimension stays sharded.
    ok, _, calls, specs = report["signature-core"]
    assert (ok, specs) == (True, ["('a',)"])
    assert calls == _calls(4, 4, 4)  # half the loop, the whole core, on each device


def test_uneven_shards_show_the_kernel_only_real_elements(
    report: dict[str, list[object]],
) -> None:
    # 7 rows on 4 devices: XLA pads the last shard; the kernel never sees padding.
    ok, _, calls, _ = report["uneven-rows"]
    assert ok
    assert calls == [[[1, 4]], [[2, 4]], [[2, 4]], [[2, 4]]]
    ok, _, calls, _ = report["uneven-2d"]
    assert ok
    assert calls == [[[3, 1]], [[3, 2]], [[4, 1]], [[4, 2]]]
    ok, _, calls, _ = report["uneven-signature"]  # 5 rows: one device has none
    assert ok
    assert calls == [[[1, 4]], [[2, 4]], [[2, 4]]]


def test_vmap_with_an_unbatched_operand(report: dict[str, list[object]]) -> None:
    ok, gather, calls, _ = report["vmap"]
    assert (ok, gather) == (True, False)
    assert calls == [[[2, 4], [2, 4]]] * 4


def test_equal_static_arguments_that_differ(report: dict[str, list[object]]) -> None:
    assert report["static-0.0"][:2] == [True, False]
    assert report["static--0.0"][:2] == [True, False]


def test_unsharded_call_in_a_multi_device_process(
    report: dict[str, list[object]],
) -> None:
    assert report["one-device"][0] is True
    assert report["one-device"][2] == _calls(1, 8, 4)


def test_kernel_error_leads_with_the_kernel_and_its_message(
    report: dict[str, list[object]],
) -> None:
    kind, first = report["fails"]
    assert kind == "JaxRuntimeError"
    assert "fails (jax (traced)): the kernel raised ValueError: kernel says no" in first


def test_writing_kernel_is_refused(report: dict[str, list[object]]) -> None:
    _, first = report["writes"]
    assert "writes" in str(first)
    assert "read-only" in str(first)


def test_gradient_still_asks_for_a_declared_vjp(
    report: dict[str, list[object]],
) -> None:
    kind, first = report["grad"]
    assert kind == "NotDifferentiableError"
    assert "defvjp" in str(first)


def test_released_callback_fails_loudly(report: dict[str, list[object]]) -> None:
    kind, first = report["released"]
    assert kind == "JaxRuntimeError"
    assert "host callback that no longer exists" in str(first)


_CACHED = textwrap.dedent(
    """
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    h = np.arange(8, dtype=np.float32)
    x = put(h, line, P("d"))
    kernel = {"sin": np.sin, "cos": np.cos}[sys.argv[2]]
    f = jax.jit(lambda a: lazy_apply(kernel, a, as_numpy=True, elementwise=True))
    try:
        print("ok" if np.allclose(np.asarray(f(x)), kernel(h)) else "WRONG")
    except Exception as exc:  # a loud failure is acceptable, a wrong value is not
        print("error", "no longer exists" in str(exc))
    """
)


def test_second_process_on_a_compilation_cache(tmp_path: Any) -> None:
    # Three processes share JAX's persistent cache: the second runs the same
    # program, the third another kernel of the same shape. A program with a host
    # callback key from another process must never call the wrong kernel.
    got = []
    for kernel in ("sin", "sin", "cos"):
        out = run_on_devices(_CACHED, str(tmp_path), kernel, timeout=300).split()
        got.append(out[0] if out else "")
    assert any(tmp_path.iterdir()), "the processes wrote no compilation cache"
    assert set(got) <= {"ok", "error"}  # never "WRONG", never a crash
    assert got[0] == "ok"
