"""The native path: Numba kernels under ``jax.jit`` as XLA FFI targets (issue 12).

Every kernel is compiled once at module level (Numba compiles are the slow part); each
test compares the native result with NumPy and, where it matters, with the callback
path, and checks which path ran with :func:`explain_native`.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import numpy as np
import pytest

from lazyapply import (
    ArgumentTypeError,
    KernelOutputError,
    NotDifferentiableError,
    SpecError,
    lazy,
    lazy_apply,
)
from lazyapply.adapters.jax.native import explain_native

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")
numba = pytest.importorskip("numba", reason="numba is not installed")


@numba.njit
def sin_scaled(x: Any, s: Any) -> Any:
    if s < 0:
        raise ValueError("scale must be >= 0")
    return np.sin(x) * s


@numba.njit
def reversed_copy(x: Any) -> Any:
    return x[::-1].copy()


@numba.njit
def sum_and_diff(x: Any, y: Any) -> Any:
    return x + y, x - y


@numba.njit
def maybe_offset(x: Any, offset: Any, flip: Any) -> Any:
    y = x.astype(np.float64)  # one result type for both branches
    out = y * 2.0 if offset is None else y + offset
    return -out if flip else out


@numba.njit
def outer_add(x: Any, y: Any) -> Any:
    return x + y  # (3, 1) + (4,) broadcasts to (3, 4)


@numba.njit
def diffs(x: Any) -> Any:
    return x[1:] - x[:-1]


@numba.njit
def total(x: Any) -> Any:
    return x.sum()  # a scalar for a 0-d output


@numba.njit
def wrong_length(x: Any) -> Any:
    return x[:-1].copy()


@numba.njit(cache=True)
def cached_square(x: Any) -> Any:
    return x * x


@numba.vectorize
def vhypot(a: Any, b: Any) -> Any:
    return (a * a + b * b) ** 0.5


@numba.guvectorize(
    ["void(float32[:], float32[:])", "void(float64[:], float64[:])"], "(n)->(n)"
)
def gcumsum(x: Any, out: Any) -> None:  # pragma: no cover - runs as machine code
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
        out[i] = acc


@numba.jit(forceobj=True)
def object_mode(x: Any) -> Any:
    return np.asarray(x) + 1


def _custom_calls(f: Any, *args: Any) -> set[str]:
    """The custom-call targets of the compiled program (after XLA's passes)."""
    text = f.lower(*args).compile().as_text()
    return set(re.findall(r'custom_call_target="([^"]+)"', text))


def _native(kernel: Any) -> str:
    decision = explain_native(kernel)
    assert decision is not None
    return decision


def test_jit_runs_ffi_target_without_python_callback() -> None:
    f = jax.jit(lambda a: lazy_apply(sin_scaled, a, 2.0, as_numpy=True))
    x = jnp.linspace(0, 1, 7, dtype=jnp.float32)
    np.testing.assert_allclose(f(x), np.sin(np.asarray(x)) * 2, rtol=1e-6)
    assert _native(sin_scaled).startswith("native: lazyapply_numba_")
    targets = _custom_calls(f, x)
    assert targets == {_native(sin_scaled).removeprefix("native: ").split(" (")[0]}
    # The callback path, for contrast, compiles to a Python callback.
    g = jax.jit(lambda a: lazy_apply(lambda b: np.sin(b) * 2, a, as_numpy=True))
    assert any("callback" in t for t in _custom_calls(g, x))


def test_python_scalars_are_attributes_not_recompiles() -> None:
    x = jnp.arange(4, dtype=jnp.float32)
    outs, targets = [], set()
    for s in (0.5, 3.0):
        outs.append(
            jax.jit(lambda a, s=s: lazy_apply(sin_scaled, a, s, as_numpy=True))(x)
        )
        targets.add(_native(sin_scaled))
    assert len(targets) == 1  # one handler for every value of the scalar
    np.testing.assert_allclose(outs[1], np.sin(np.arange(4.0)) * 3.0, rtol=1e-6)
    np.testing.assert_allclose(outs[0], np.sin(np.arange(4.0)) * 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    ("offset", "flip", "expected"),
    [(None, False, [0, 2, 4]), (1, True, [-1, -2, -3]), (0.5, False, [0.5, 1.5, 2.5])],
)
def test_none_int_bool_float_arguments(offset: Any, flip: bool, expected: Any) -> None:
    x = jnp.arange(3, dtype=jnp.float32)
    f = jax.jit(lambda a: lazy_apply(maybe_offset, a, offset, flip, as_numpy=True))
    np.testing.assert_allclose(f(x), expected)
    assert _native(maybe_offset).startswith("native")


# One handler compile per dtype: three run always, the rest are marked slow.
_SLOW = pytest.mark.slow
DTYPES = [
    "bool",
    "int64",
    "complex64",
    *(
        pytest.param(d, marks=_SLOW)
        for d in (
            "int8",
            "uint16",
            "int32",
            "uint64",
            "float32",
            "float64",
            "complex128",
        )
    ),
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_numeric_dtype(dtype: str) -> None:
    with jax.enable_x64(True):
        host = (np.arange(5) % 3).astype(dtype)
        f = jax.jit(lambda a: lazy_apply(reversed_copy, a, as_numpy=True))
        out = f(jnp.asarray(host))
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, host[::-1])
    assert explain_native(reversed_copy) is not None


def test_float16_falls_back_with_reason() -> None:
    # Numba has no float16 arrays: the callback path runs the kernel, and Numba's own
    # error reaches the caller exactly as it would without the native path.
    f = jax.jit(lambda a: lazy_apply(reversed_copy, a, as_numpy=True))
    with pytest.raises(jax.errors.JaxRuntimeError, match="float16"):
        f(jnp.ones(3, dtype=jnp.float16)).block_until_ready()
    assert "float16" in _native(reversed_copy)


def test_several_inputs_and_outputs() -> None:
    x, y = jnp.arange(4.0), jnp.ones(4)
    f = jax.jit(
        lambda a, b: lazy_apply(sum_and_diff, a, b, shape=[(4,), (4,)], as_numpy=True)
    )
    s, d = f(x, y)
    np.testing.assert_array_equal(s, np.arange(4.0) + 1)
    np.testing.assert_array_equal(d, np.arange(4.0) - 1)
    assert _native(sum_and_diff).startswith("native")


def test_broadcast_shape_declared_shape_and_zero_d() -> None:
    x, y = jnp.arange(3.0).reshape(3, 1), jnp.arange(4.0)
    out = jax.jit(lambda a, b: lazy_apply(outer_add, a, b, as_numpy=True))(x, y)
    np.testing.assert_array_equal(out, np.arange(3.0)[:, None] + np.arange(4.0))
    d = jax.jit(lambda a: lazy_apply(diffs, a, shape=(4,), as_numpy=True))(
        jnp.asarray([1.0, 4.0, 9.0, 16.0, 25.0])
    )
    np.testing.assert_array_equal(d, [3, 5, 7, 9])
    t = jax.jit(lambda a: lazy_apply(total, a, shape=(), as_numpy=True))(jnp.ones(5))
    assert t.shape == ()
    assert float(t) == 5.0
    z = jax.jit(lambda a: lazy_apply(reversed_copy, a[None], as_numpy=True))
    np.testing.assert_array_equal(z(jnp.float32(2.0)), [2.0])
    zero_d = jax.jit(lambda a: lazy_apply(sin_scaled, a, 1.0, as_numpy=True))
    np.testing.assert_allclose(zero_d(jnp.float32(0.5)), np.sin(0.5), rtol=1e-6)
    assert _native(sin_scaled).startswith("native")


def _ffi_calls(jaxpr: Any) -> list[Any]:
    """Every ffi_call equation of a jaxpr, with the primitives enclosing it."""
    found = []

    def walk(jp: Any, inside: tuple[str, ...]) -> None:
        for eqn in jp.eqns:
            if eqn.primitive.name == "ffi_call":
                found.append((eqn, inside))
            for v in eqn.params.values():
                for j in v if isinstance(v, (tuple, list)) else (v,):
                    inner = getattr(j, "jaxpr", j)
                    if hasattr(inner, "eqns"):
                        walk(inner, (*inside, eqn.primitive.name))

    walk(jaxpr.jaxpr, ())
    return found


def test_vmap_batches_elementwise_kernel_into_one_call() -> None:
    x, y = jnp.ones((5, 3)), jnp.full((3,), 2.0)
    f = jax.vmap(lambda a: lazy_apply(vhypot, a, y, as_numpy=True, elementwise=True))
    np.testing.assert_allclose(jax.jit(f)(x), np.full((5, 3), 5.0**0.5), rtol=1e-6)
    calls = _ffi_calls(jax.make_jaxpr(f)(x))
    batched = [e for e, _ in calls if e.params["result_avals"][0].shape == (5, 3)]
    assert len(batched) == 1
    assert not any("while" in inside for e, inside in calls if e in batched)


def test_vmap_of_whole_array_kernel_is_sequential() -> None:
    x = jnp.arange(12.0).reshape(3, 4)
    f = jax.vmap(lambda a: lazy_apply(reversed_copy, a, as_numpy=True))
    np.testing.assert_array_equal(jax.jit(f)(x), np.asarray(x)[:, ::-1])
    ((eqn, _),) = _ffi_calls(jax.make_jaxpr(f)(x))
    assert eqn.params["vmap_method"] == "sequential"
    assert eqn.params["result_avals"][0].shape == (4,)  # one element per call


def test_gufunc_kernel_under_jit_and_vmap() -> None:
    x = jnp.arange(12.0).reshape(3, 4)
    f = jax.jit(lambda a: lazy_apply(gcumsum, a, as_numpy=True, signature="(n)->(n)"))
    np.testing.assert_array_equal(f(x), np.cumsum(np.asarray(x), axis=-1))
    v = jax.jit(jax.vmap(f))
    np.testing.assert_array_equal(v(x[None]), np.cumsum(np.asarray(x), axis=-1)[None])
    assert _native(gcumsum).startswith("native")


def test_inside_scan_and_while_loop() -> None:
    def body(c: Any, _: Any) -> Any:
        return lazy_apply(sin_scaled, c, 1.0, as_numpy=True), None

    x = jnp.full(3, 0.5, dtype=jnp.float32)
    out, _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=3))(x)
    expected = np.full(3, 0.5, np.float32)
    for _ in range(3):
        expected = np.sin(expected)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    w = jax.jit(
        lambda c: jax.lax.while_loop(
            lambda s: s[0] < 3, lambda s: (s[0] + 1, body(s[1], None)[0]), (0, c)
        )
    )
    np.testing.assert_allclose(w(x)[1], expected, rtol=1e-6)


def test_kernel_exception_names_kernel_and_message() -> None:
    f = jax.jit(lambda a: lazy_apply(sin_scaled, a, -1.0, as_numpy=True))
    with pytest.raises(jax.errors.JaxRuntimeError) as info:
        f(jnp.ones(3)).block_until_ready()
    assert "sin_scaled" in str(info.value)
    assert "ValueError: scale must be >= 0" in str(info.value)
    assert _native(sin_scaled).startswith("native")
    # Eagerly, on a read-only view: the kernel's own error, not "writes into".
    with pytest.raises(ValueError, match="scale must be >= 0") as eager:
        lazy_apply(sin_scaled, jnp.ones(3), -1.0, as_numpy=True)
    assert "writes into" not in str(eager.value)


def test_wrong_output_shape_gives_the_callback_message() -> None:
    x = jnp.ones(4)
    native = jax.jit(lambda a: lazy_apply(wrong_length, a, as_numpy=True))
    with pytest.raises(jax.errors.JaxRuntimeError) as info:
        native(x).block_until_ready()
    assert _native(wrong_length).startswith("native")
    callback = jax.jit(lambda a: lazy_apply(lambda b: b[:-1].copy(), a, as_numpy=True))
    with pytest.raises(jax.errors.JaxRuntimeError) as ref:
        callback(x).block_until_ready()
    expected = "output 0 has shape (3,), expected (4,)"
    assert expected in str(info.value)
    assert expected in str(ref.value)
    assert "wrong_length (jax (traced))" in str(info.value)


def test_wrong_output_dtype_falls_back_and_raises_kernel_output_error() -> None:
    f = jax.jit(lambda a: lazy_apply(sin_scaled, a, 1.0, dtype="int32", as_numpy=True))
    with pytest.raises(jax.errors.JaxRuntimeError, match="KernelOutputError"):
        f(jnp.ones(3)).block_until_ready()
    assert "callback: the kernel returns array(float64" in _native(sin_scaled)
    assert issubclass(KernelOutputError, ValueError)


def test_fallbacks_give_identical_results(caplog: pytest.LogCaptureFixture) -> None:
    x = jnp.arange(5.0)
    native = jax.jit(lambda a: lazy_apply(cached_square, a, as_numpy=True))(x)
    assert _native(cached_square).startswith("native")  # cache=True works

    def plain(a: Any) -> Any:
        return a * a

    with caplog.at_level(logging.DEBUG, logger="lazyapply.native"):
        outs = [
            jax.jit(lambda a: lazy_apply(plain, a, as_numpy=True))(x),
            jax.jit(lambda a: lazy_apply(object_mode, a, as_numpy=True))(x)
            - x
            - 1
            + x * x,
        ]
    for out in outs:
        np.testing.assert_array_equal(out, native)
    assert "is not a Numba dispatcher" in explain_native(plain)
    assert "object mode" in _native(object_mode)
    assert any("object mode" in r.getMessage() for r in caplog.records)


def test_unsupported_static_argument_falls_back() -> None:
    f = jax.jit(lambda a: lazy_apply(outer_add, a, 1j, as_numpy=True))
    np.testing.assert_allclose(f(jnp.arange(3.0)), np.arange(3.0) + 1j)
    assert "argument 1 is a complex" in _native(outer_add)


def test_decorated_kernel_and_gradient_refused() -> None:
    scaled = lazy(sin_scaled, as_numpy=True)
    x = jnp.arange(3.0)
    np.testing.assert_allclose(jax.jit(lambda a: scaled(a, 2.0))(x), np.sin(x) * 2)
    with pytest.raises(NotDifferentiableError, match="sin_scaled"):
        jax.grad(lambda a: scaled(a, 2.0).sum())(x)


def test_threads_tracing_at_once_share_one_handler() -> None:
    x = jnp.arange(6.0).reshape(2, 3)
    results: list[Any] = []

    def trace() -> None:
        f = jax.jit(lambda a: lazy_apply(outer_add, a, a, as_numpy=True))
        results.append((np.asarray(f(x)), explain_native(outer_add)))

    threads = [threading.Thread(target=trace) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({d for _, d in results}) == 1
    for out, _ in results:
        np.testing.assert_array_equal(out, 2 * np.asarray(x))


# Issue 18/19: inputs are read-only on the native path; gufuncs broadcast loop dims.
@numba.njit
def relu_inplace(x: Any) -> Any:
    for i in range(x.shape[0]):
        if x[i] < 0:
            x[i] = 0.0
    return x


@numba.njit
def zero_through_flat(x: Any) -> Any:
    for i in range(x.size):
        x.flat[i] = 0.0
    return x


@numba.njit
def bump_inplace(x: Any) -> Any:
    x += 1  # Numba's refusal: AttributeError "'NoneType' ... 'args'" in its typing
    return x


@numba.njit
def add_into(x: Any) -> Any:
    np.add(x, 1.0, x)
    return x


@numba.njit
def fill_zero(x: Any) -> Any:
    x.fill(0.0)
    return x


@numba.guvectorize(["void(float32[:], float32[:])"], "(n)->(n)")
def gclip_inplace(x: Any, out: Any) -> None:  # pragma: no cover - machine code
    for i in range(x.shape[0]):
        x[i] = max(x[i], 0.0)
        out[i] = x[i]


@pytest.mark.parametrize(
    ("kernel", "options"),
    [
        (relu_inplace, {}),
        (zero_through_flat, {}),
        (bump_inplace, {}),
        (add_into, {}),
        (fill_zero, {}),
        (gclip_inplace, {"signature": "(n)->(n)"}),
    ],
)
def test_kernel_writing_its_input_is_refused(kernel: Any, options: Any) -> None:
    a = jnp.asarray([-1.0, 2.0, -3.0], dtype=jnp.float32)
    before = np.asarray(a).copy()
    f = jax.jit(lambda v: lazy_apply(kernel, v, as_numpy=True, **options))
    with pytest.raises(ArgumentTypeError, match=r"x = x\.copy\(\)") as info:
        f(a)
    assert str(info.value).startswith(f"{kernel.__name__} (jax (traced)): ")
    assert "read-only" in str(info.value)
    np.testing.assert_array_equal(np.asarray(a), before)  # the caller's array
    np.testing.assert_array_equal(a, before)
    if kernel is not gclip_inplace:  # eagerly: lazyapply's error too, same fix
        with pytest.raises(SpecError, match=r"read-only.*x = x\.copy\(\)"):
            lazy_apply(kernel, a, as_numpy=True)
        np.testing.assert_array_equal(a, before)


@numba.guvectorize(
    [
        "void(float32[:], float32[:], float32[:])",
        "void(float64[:], float64[:], float64[:])",
    ],
    "(n),(n)->()",
)
def gdot(x: Any, y: Any, out: Any) -> None:  # pragma: no cover - machine code
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i]
    out[0] = acc


@numba.guvectorize(["void(float32[:], float32[:], float32[:])"], "(n)->(),()")
def gminmax(x: Any, lo: Any, hi: Any) -> None:  # pragma: no cover - machine code
    lo[0] = x.min()
    hi[0] = x.max()


def test_gufunc_broadcasts_size_one_loop_dimensions() -> None:
    x = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    y = np.arange(4.0, dtype=np.float32).reshape(1, 4)
    f = jax.jit(
        lambda a, b: lazy_apply(gdot, a, b, signature="(n),(n)->()", as_numpy=True)
    )
    np.testing.assert_allclose(f(jnp.asarray(x), jnp.asarray(y)), gdot(x, y))
    np.testing.assert_allclose(f(jnp.ones((3, 4)), jnp.ones((1, 4))), [4.0] * 3)
    assert _native(gdot).startswith("native")
    # vmap with an unbatched operand: one batched call, y broadcast by the loop
    xs = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    v = jax.jit(jax.vmap(f, in_axes=(0, None)))
    np.testing.assert_allclose(v(jnp.asarray(xs), jnp.asarray(y)), gdot(xs, y))
    assert _native(gdot).startswith("native")


def test_gufunc_with_several_outputs() -> None:
    x = np.asarray([[3.0, -1.0, 2.0], [0.5, 4.0, -2.0]], dtype=np.float32)
    f = jax.jit(lambda a: lazy_apply(gminmax, a, signature="(n)->(),()", as_numpy=True))
    lo, hi = f(jnp.asarray(x))
    np.testing.assert_array_equal(lo, x.min(axis=1))
    np.testing.assert_array_equal(hi, x.max(axis=1))
    assert _native(gminmax).startswith("native")


def test_ufunc_broadcasts_and_takes_scalars() -> None:
    a = np.arange(2.0, dtype=np.float32).reshape(2, 1)
    b = np.full((3,), 2.0, dtype=np.float32)
    f = jax.jit(lambda p, q: lazy_apply(vhypot, p, q, as_numpy=True, elementwise=True))
    np.testing.assert_allclose(f(jnp.asarray(a), jnp.asarray(b)), vhypot(a, b))
    g = jax.jit(lambda p: lazy_apply(vhypot, p, 3.0, as_numpy=True, elementwise=True))
    np.testing.assert_allclose(g(jnp.asarray(b)), np.hypot(b, 3.0), rtol=1e-6)
    assert _native(vhypot).startswith("native")


FROZEN = True  # Numba freezes a global's value into the machine code


@numba.njit
def frozen_flag(x: Any) -> Any:
    if FROZEN and x.size > 0:  # not a constant condition: the branch stays
        raise ValueError("frozen")
    return x * 2.0


def test_native_failure_python_cannot_reproduce_is_a_lazyapply_bug() -> None:
    x = jnp.arange(3.0)
    compiled = jax.jit(lambda a: lazy_apply(frozen_flag, a, as_numpy=True))
    runnable = compiled.lower(x).compile()  # native code with FROZEN = True
    globals()["FROZEN"] = False
    frozen_flag.recompile()  # the Python re-run runs code compiled with False
    try:
        with pytest.raises(jax.errors.JaxRuntimeError) as info:
            runnable(x).block_until_ready()
    finally:
        globals()["FROZEN"] = True
        frozen_flag.recompile()
    text = str(info.value)
    assert "lazyapply bug" in text
    assert "frozen_flag" in text
    assert "float32[:] -> float32[:]" in text  # the signature
