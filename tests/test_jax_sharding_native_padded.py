"""Native (Numba) kernels on shards that XLA pads, on 4 CPU devices in a subprocess.

A loop dimension the mesh does not divide (7 rows on 4 devices) leaves the last shard
padded. The kernel must see only the real elements, as it does eagerly: a Numba
kernel raising on non-positive input runs on 7 positive elements, and a probe kernel
returning its input's length sees shards of 2, 2, 2 and 1 rows. The handler of a
``@vectorize`` or ``@guvectorize`` kernel then loops within each shard's extents
(still native); an ``@njit`` kernel, given whole arrays, is called through
lazyapply's host-callback target, which slices them. Evenly divided shards stay
native (no host callback in the compiled program). Values are compared with eager
NumPy; the compiled text is checked for ``all-gather``.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from ._devices import run_on_devices

pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("numba", reason="numba is not installed")

pytestmark = pytest.mark.slow  # one subprocess on 4 CPU devices, compiles included

_SCRIPT = textwrap.dedent(
    """
    import numba

    @numba.njit
    def nb_log(x):
        out = np.empty_like(x)
        for i in range(x.size):
            if x.flat[i] <= 0:
                raise ValueError("non-positive input")
            out.flat[i] = np.log(x.flat[i])
        return out

    @numba.vectorize
    def v_log(x):
        if x <= 0:
            raise ValueError("non-positive input")
        return np.log(x)

    @numba.guvectorize(["void(float32[:], float32[:], float32[:])"], "(n),(n)->()")
    def g_dot(x, y, out):
        acc = np.float32(0)
        for i in range(x.shape[0]):
            if x[i] <= 0:
                raise ValueError("non-positive input")
            acc += np.log(x[i]) * y[i]
        out[0] = acc

    @numba.guvectorize(
        ["void(float32[:], float32[:], float32[:])"], "(n)->(),()"
    )
    def g_two(x, lo, hi):
        lo[0], hi[0] = np.inf, -np.inf
        for i in range(x.shape[0]):
            if x[i] <= 0:
                raise ValueError("non-positive input")
            lo[0], hi[0] = min(lo[0], np.log(x[i])), max(hi[0], np.log(x[i]))

    @numba.vectorize
    def v_refuse(x):
        if x > 0:
            raise ValueError("positive input")
        return x

    @numba.njit
    def both(x, y):
        if (x <= 0).any():
            raise ValueError("non-positive input")
        return np.log(x) + y, x * y

    @numba.njit
    def width(x):  # a probe: the number of rows the kernel is given
        return np.full_like(x, x.shape[0])

    def eager_dot(x, y):
        return (np.log(x) * y).sum(-1)

    ew = {"as_numpy": True, "elementwise": True}
    two = {"as_numpy": True, "signature": "(),()->(),()"}
    h = (np.arange(28, dtype=np.float32).reshape(7, 4) + 1) / 5
    hy = np.cos(h)

    def case(label, kernel, fn, ops, expected, mesh, spec):
        # The operands are laid out on the mesh inside the program (device_put
        # refuses a shape the mesh does not divide); a local slice, no collective.
        s = NamedSharding(mesh, spec)
        def body(*xs):
            xs = [jax.lax.with_sharding_constraint(x, s) for x in xs]
            return fn(*xs)
        full = jax.jit(body)
        out = full(*ops)
        outs = out if isinstance(out, tuple) else (out,)
        exps = expected if isinstance(expected, tuple) else (expected,)
        ok = all(
            o.shape == e.shape and np.allclose(np.asarray(o), e, rtol=1e-5)
            for o, e in zip(outs, exps)
        )
        # Reduced to a scalar: the program needs no gather (the full result does,
        # to be returned replicated).
        reduced = jax.jit(lambda *xs: sum(
            o.sum() for o in jax.tree.leaves(body(*xs))
        ))
        text = reduced.lower(*ops).compile().as_text()
        print(json.dumps([
            label,
            ok,
            "all-gather" in text,
            "lazyapply_host_callback" in text,
            "lazyapply_numba" in text,
            (explain_native(kernel) or "-").split(":")[0],
        ]))

    rows = P("d")
    case("njit-7", nb_log, lambda a: lazy_apply(nb_log, a, **ew),
         [h[:, 0]], np.log(h[:, 0]), line, rows)
    case("vectorize-7", v_log, lambda a: lazy_apply(v_log, a, **ew),
         [h[:, 0]], np.log(h[:, 0]), line, rows)
    case("njit-7x3-grid", nb_log, lambda a: lazy_apply(nb_log, a, **ew),
         [h[:, :3]], np.log(h[:, :3]), grid, P("a", "b"))
    case("vectorize-7x3-grid", v_log, lambda a: lazy_apply(v_log, a, **ew),
         [h[:, :3]], np.log(h[:, :3]), grid, P("a", "b"))
    case("gufunc-two-7", g_two, lambda a: lazy_apply(g_two, a, as_numpy=True),
         [h], (np.log(h).min(-1), np.log(h).max(-1)), line, rows)
    case("gufunc-7", g_dot, lambda a, b: lazy_apply(g_dot, a, b, as_numpy=True),
         [h, hy], eager_dot(h, hy), line, rows)
    case("gufunc-5", g_dot, lambda a, b: lazy_apply(g_dot, a, b, as_numpy=True),
         [h[:5], hy[:5]], eager_dot(h[:5], hy[:5]), line, rows)
    case("several-outputs-7", both, lambda a, b: lazy_apply(both, a, b, **two),
         [h[:, 0], hy[:, 0]], (np.log(h[:, 0]) + hy[:, 0], h[:, 0] * hy[:, 0]),
         line, rows)
    case("probe-7", width, lambda a: lazy_apply(width, a, **ew),
         [h[:, 0]], np.array([2, 2, 2, 2, 2, 2, 1], np.float32), line, rows)
    # Evenly divided: native on every shard.
    h8 = np.concatenate([h, h[:1]])
    hy8 = np.cos(h8)
    case("njit-8", nb_log, lambda a: lazy_apply(nb_log, a, **ew),
         [h8[:, 0]], np.log(h8[:, 0]), line, rows)
    case("vectorize-8", v_log, lambda a: lazy_apply(v_log, a, **ew),
         [h8[:, 0]], np.log(h8[:, 0]), line, rows)
    case("gufunc-8", g_dot, lambda a, b: lazy_apply(g_dot, a, b, as_numpy=True),
         [h8, hy8], eager_dot(h8, hy8), line, rows)
    case("several-outputs-8", both, lambda a, b: lazy_apply(both, a, b, **two),
         [h8[:, 0], hy8[:, 0]], (np.log(h8[:, 0]) + hy8[:, 0], h8[:, 0] * hy8[:, 0]),
         line, rows)
    case("probe-8", width, lambda a: lazy_apply(width, a, **ew),
         [h8[:, 0]], np.full(8, 2, np.float32), line, rows)
    # A real element the kernel refuses, on every shard (so no device waits for a
    # failed one at a collective): the kernel's own message, from the native re-run.
    s = NamedSharding(line, rows)
    f = jax.jit(
        lambda a: lazy_apply(v_refuse, jax.lax.with_sharding_constraint(a, s), **ew)
    )
    try:
        f(h[:, 0]).block_until_ready()
        print(json.dumps(["refused", "no error"]))
    except Exception as exc:
        print(json.dumps(["refused", str(exc)]))
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, list[object]]:
    stdout = run_on_devices(_SCRIPT)
    rows = [json.loads(line) for line in stdout.splitlines() if line[:1] == "["]
    return {row[0]: row[1:] for row in rows}


# ok, all-gather, host callback, native target, explain_native's route
_EVEN = [True, False, False, True, "native"]
_SLICED = [True, False, True, False, "callback"]  # @njit: the host callback slices


@pytest.mark.parametrize(
    "label",
    ["vectorize-7", "vectorize-7x3-grid", "gufunc-7", "gufunc-5", "gufunc-two-7"],
)
def test_native_handler_loops_over_real_elements_only(
    report: dict[str, list[object]], label: str
) -> None:
    # Each kernel raises on non-positive input; XLA's padding would trip it. The
    # 5-row case leaves one shard with no real row at all.
    assert report[label] == _EVEN


@pytest.mark.parametrize("label", ["njit-7", "njit-7x3-grid"])
def test_njit_kernel_on_padded_shards_is_sliced(
    report: dict[str, list[object]], label: str
) -> None:
    assert report[label] == _SLICED


def test_several_outputs_on_padded_shards(report: dict[str, list[object]]) -> None:
    assert report["several-outputs-7"] == _SLICED


def test_kernel_sees_shards_of_two_two_two_and_one_rows(
    report: dict[str, list[object]],
) -> None:
    # The probe returns the length it is given: 7 rows on 4 devices are shards of
    # 2, 2, 2 and 1 real rows, never the padded 2.
    assert report["probe-7"] == _SLICED
    assert report["probe-8"] == _EVEN


@pytest.mark.parametrize(
    "label", ["njit-8", "vectorize-8", "gufunc-8", "several-outputs-8"]
)
def test_evenly_divided_shards_stay_native(
    report: dict[str, list[object]], label: str
) -> None:
    assert report[label] == _EVEN


def test_error_on_a_padded_native_shard_is_the_kernels(
    report: dict[str, list[object]],
) -> None:
    (text,) = report["refused"]
    assert isinstance(text, str)
    assert "v_refuse" in text
    assert "ValueError: positive input" in text
    assert "lazyapply bug" not in text
