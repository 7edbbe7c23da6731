"""SciPy's special ufuncs under ``jax.jit``: native, with SciPy's own values (issue 20).

The sweep runs every ufunc of ``scipy.special`` that ``cython_special`` exports an
entry for, under ``jax.jit`` with x64 (in a subprocess), and asserts bit-identical
values, a compiled program without a Python callback, and at least 200 native
functions. The other tests check the traps: float32 loops that SciPy computes in
single precision, integer (C long) loops, several outputs, broadcasting, Python
scalars, 0-d and empty arrays, ``jax.vmap``, fallbacks and their reasons, and
sharding on 4 CPU devices.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import pytest

from ._devices import run_on_devices

jax = pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("numba", reason="numba is not installed")
sc = pytest.importorskip("scipy.special", reason="scipy is not installed")
jnp = jax.numpy

from lazyapply import explain_native, lazy, lazy_apply  # noqa: E402

CALLBACKS = (
    "xla_python_cpu_callback",
    "xla_ffi_python_cpu_callback",
    "lazyapply_host_callback",
)


def custom_calls(lowered_text: str) -> set[str]:
    """The custom-call targets of a lowered (StableHLO) program."""
    return set(re.findall(r"custom_call @([\w.]+)", lowered_text))


def kernel_for(ufunc: Any, loop: str | None = None, **options: Any) -> Any:
    """``lazy(ufunc)``; several outputs are declared with a signature of scalars.

    With ``loop`` (``"f->FFFF"``), the outputs' dtypes are declared from it: lazyapply
    infers one output of the inputs' result type otherwise.
    """
    if loop is not None:
        outs = {np.dtype(c).name for c in loop.split("->")[1]}
        assert len(outs) == 1  # every SciPy loop's outputs share one dtype
        options.setdefault("dtype", outs.pop())
    if ufunc.nout > 1:
        ins = ",".join(["()"] * ufunc.nin)
        outs = ",".join(["()"] * ufunc.nout)
        options.setdefault("signature", f"{ins}->{outs}")
    return lazy(ufunc, **options)


def sample(chars: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs for a loop's input type chars: a mix of small, unit and larger values."""
    out = []
    for c in chars:
        mix = np.where(
            rng.random(n) < 0.5, rng.uniform(0.05, 0.95, n), rng.uniform(-3.0, 6.0, n)
        )
        if c in "lqip":
            out.append(rng.integers(0, 6, n).astype(np.dtype(c)))
        elif c in "FD":
            out.append((mix + 1j * rng.uniform(-1, 1, n)).astype(np.dtype(c)))
        else:
            out.append(mix.astype(np.dtype(c)))
    return out


def assert_same(got: Any, expected: Any, label: str) -> None:
    """Bit-identical (NaNs where SciPy has NaNs), else at most 1 ulp apart."""
    for item, e in zip(got, expected, strict=True):
        g = np.asarray(item)
        assert g.dtype == e.dtype, label
        if np.array_equal(g, e, equal_nan=True):
            continue
        assert np.array_equal(np.isnan(g), np.isnan(e)), label
        real = g.view(g.real.dtype) if g.dtype.kind == "c" else g
        ref = e.view(e.real.dtype) if e.dtype.kind == "c" else e
        ok = np.isfinite(ref)
        np.testing.assert_array_max_ulp(real[ok], ref[ok], maxulp=1)


def _sweep() -> None:  # run in a subprocess with JAX_ENABLE_X64=1
    import scipy.special.cython_special as cs

    assert jax.config.jax_enable_x64
    warnings.simplefilter("ignore")
    bases = {re.sub(r"^__pyx_fuse_\d+(?:_\d+)*", "", k) for k in cs.__pyx_capi__}
    ufuncs = {id(u): u for n in dir(sc) if isinstance(u := getattr(sc, n), np.ufunc)}
    rng = np.random.default_rng(20)
    native, fallback, loops = [], [], 0
    for ufunc in sorted(ufuncs.values(), key=lambda u: u.__name__):
        if ufunc.__name__ not in bases:
            continue
        reasons = []
        for loop in ufunc.types:
            ins = loop.split("->")[0]
            if "g" in loop or "e" in loop:
                continue
            kernel = kernel_for(ufunc, loop)
            args = sample(ins, 24, rng)
            expected = ufunc(*args)
            expected = expected if ufunc.nout > 1 else (expected,)
            f = jax.jit(kernel)
            got = f(*map(jnp.asarray, args))
            decision = explain_native(ufunc) or "-"
            if not decision.startswith("native"):
                reasons.append(f"{loop}: {decision}")
            else:
                targets = custom_calls(f.lower(*map(jnp.asarray, args)).as_text())
                assert not targets & set(CALLBACKS), (ufunc.__name__, targets)
                loops += 1
            assert_same(got if ufunc.nout > 1 else (got,), expected, ufunc.__name__)
        (fallback if reasons else native).append((ufunc.__name__, reasons))
    print(f"native functions: {len(native)} (every loop; {loops} loops in all)")
    for name, reasons in fallback:
        print(f"fallback {name}: {'; '.join(reasons)}")
    print(f"COUNT {len(native)}")


@pytest.mark.slow
def test_sweep_every_special_ufunc_native_and_bit_identical() -> None:
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    code = "from tests.test_scipy_special import _sweep; _sweep()"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    count = int(re.findall(r"COUNT (\d+)", proc.stdout)[-1])
    assert count >= 200, proc.stdout


# -- in-process checks (float32 everywhere; float64 with jax.enable_x64) --------------


@pytest.mark.parametrize("name", ["bei", "expit", "xlogy", "betainc", "erf", "kelvin"])
def test_float32_loops_are_scipys_own(name: str) -> None:
    """float32 loops that SciPy computes in single precision give SciPy's bits."""
    ufunc = getattr(sc, name)
    loop = next(t for t in ufunc.types if t.split("->")[0] == "f" * ufunc.nin)
    args = sample("f" * ufunc.nin, 50, np.random.default_rng(1))
    expected = ufunc(*args)
    expected = expected if ufunc.nout > 1 else (expected,)
    got = jax.jit(kernel_for(ufunc, loop))(*map(jnp.asarray, args))
    assert explain_native(ufunc).startswith("native"), explain_native(ufunc)
    assert_same(got if ufunc.nout > 1 else (got,), expected, name)


def test_integer_loop_broadcasting_and_python_scalars() -> None:
    with jax.enable_x64(True):
        n = np.arange(5)[:, None]
        x = np.linspace(-1, 1, 7)
        f = jax.jit(lazy(sc.eval_chebyt))
        np.testing.assert_array_equal(
            f(jnp.asarray(n), jnp.asarray(x)), sc.eval_chebyt(n, x)
        )
        assert "loop ld->d" in explain_native(sc.eval_chebyt)
        # a weak Python int picks the C long loop, as NumPy does (NEP 50)
        g = jax.jit(lambda a: lazy_apply(sc.eval_chebyt, 3, a))
        np.testing.assert_array_equal(g(jnp.asarray(x)), sc.eval_chebyt(3, x))
        assert "loop ld->d" in explain_native(sc.eval_chebyt)
        h = jax.jit(lambda a: lazy_apply(sc.jv, 2.5, a))
        np.testing.assert_array_equal(h(jnp.asarray(x)), sc.jv(2.5, x))


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (1,), (4, 3)])
def test_zero_d_empty_and_nd(shape: tuple[int, ...]) -> None:
    with jax.enable_x64(True):
        x = np.random.default_rng(2).uniform(0, 1, shape)
        got = jax.jit(lazy(sc.ellipk))(jnp.asarray(x))
        assert got.shape == shape
        np.testing.assert_array_equal(got, sc.ellipk(x))
        assert explain_native(sc.ellipk).startswith("native")


def test_several_outputs_and_signed_zero() -> None:
    with jax.enable_x64(True):
        u = np.array([0.0, -0.0, 0.5, 2.0])
        m = np.array([[0.0], [0.3], [0.9]])
        got = jax.jit(kernel_for(sc.ellipj))(jnp.asarray(u), jnp.asarray(m))
        assert_same(got, sc.ellipj(u, m), "ellipj")
        # sn(-0.0) is -0.0: the sign of zero survives the native call
        assert np.signbit(np.asarray(got[0])[0, 1])
        x = np.array([-0.0, 0.1, 3.0])
        for ufunc in (sc.sici, sc.fresnel):
            got = jax.jit(kernel_for(ufunc))(jnp.asarray(x))
            assert_same(got, ufunc(x), ufunc.__name__)


def test_complex_loop() -> None:
    with jax.enable_x64(True):
        z = np.linspace(-2, 2, 9) + 0.7j
        got = jax.jit(lazy(sc.wofz))(jnp.asarray(z))
        np.testing.assert_array_equal(got, sc.wofz(z))
        assert "loop D->D" in explain_native(sc.wofz)
        z64 = z.astype(np.complex64)
        got = jax.jit(lazy(sc.erf))(jnp.asarray(z64))
        np.testing.assert_array_equal(got, sc.erf(z64))
        assert "loop F->F" in explain_native(sc.erf)


def test_vmap_one_batched_call() -> None:
    with jax.enable_x64(True):
        v = np.arange(4.0)
        x = np.linspace(0.1, 5, 6)
        f = jax.jit(jax.vmap(lazy(sc.jv), in_axes=(0, None)))
        text = f.lower(jnp.asarray(v), jnp.asarray(x)).as_text()
        assert custom_calls(text) == {"lazyapply_foreign_loop"}
        assert text.count("custom_call @lazyapply_foreign_loop") == 1
        np.testing.assert_array_equal(
            f(jnp.asarray(v), jnp.asarray(x)), sc.jv(v[:, None], x)
        )
        g = jax.vmap(jax.vmap(lazy(sc.gammaln)))
        y = np.linspace(0.5, 9, 12).reshape(3, 4)
        np.testing.assert_array_equal(g(jnp.asarray(y)), sc.gammaln(y))


def test_fallbacks_are_explained_with_identical_results() -> None:
    x = np.linspace(0.1, 0.9, 5).astype(np.float32)
    # a keyword of the ufunc: the callback runs it
    f = jax.jit(lambda a: lazy_apply(sc.ndtr, a, dtype="float32"))
    np.testing.assert_array_equal(f(jnp.asarray(x)), sc.ndtr(x))
    # errstate other than 'ignore': SciPy's warnings need Python
    with sc.errstate(domain="warn"):
        g = jax.jit(lazy(sc.gammaln))
        np.testing.assert_array_equal(g(jnp.asarray(x)), sc.gammaln(x))
    assert "errstate" in explain_native(sc.gammaln)
    # float64 buffers without x64: int inputs resolve to the double loop
    with jax.enable_x64(False):
        h = jax.jit(lazy(sc.erf, dtype="float32"))
        got = h(jnp.arange(3, dtype=jnp.int32))
        np.testing.assert_array_equal(got, sc.erf(np.arange(3)).astype(np.float32))
        assert "enable jax_enable_x64" in explain_native(sc.erf)
    # a declared dtype the loop does not return: the callback's check speaks
    with jax.enable_x64(True):
        k = jax.jit(lazy(sc.erf))
        with pytest.raises(Exception, match="dtype float64, expected int64"):
            k(jnp.arange(3)).block_until_ready()
        assert "expected int64" in explain_native(sc.erf)


_SHARDED = textwrap.dedent(
    """
    import scipy.special as sc
    jax.config.update("jax_enable_x64", True)
    host = np.linspace(0.05, 0.95, 32).reshape(8, 4)
    x = put(host, jax.make_mesh((4,), ("d",)), P("d"))
    for ufunc in (sc.ellipk, sc.erfinv, sc.gammaln):
        f = jax.jit(lazy(ufunc))
        out = f(x)
        np.testing.assert_array_equal(np.asarray(out), ufunc(host))
        hlo = f.lower(x).compile().as_text()
        kept = out.sharding.is_equivalent_to(x.sharding, out.ndim)
        print(ufunc.__name__, kept, "all-gather" in hlo, explain_native(ufunc))
    """
)


@pytest.mark.slow
def test_sharded_per_shard() -> None:
    lines = run_on_devices(_SHARDED).strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        _, kept, gathered, decision = line.split(" ", 3)
        assert (kept, gathered) == ("True", "False"), line
        assert decision.startswith("native"), line


# -- declared derivatives ------------------------------------------------------------


def _registered() -> list[str]:
    from lazyapply import special

    return sorted(special._BY_NAME)


@pytest.mark.parametrize("name", _registered())
def test_declared_derivatives_match_finite_differences(name: str) -> None:
    """Every registered partial (NaN ones excepted) against central differences."""
    ufunc = getattr(sc, name)
    rng = np.random.default_rng(3)
    base = rng.uniform(0.15, 0.85, (ufunc.nin, 6))
    if name in ("beta", "betaln", "poch", "gammainc", "gammaincc"):
        base = base + 0.5  # a, b, z > 0 and away from the poles
    kernel = lazy(ufunc)
    with jax.enable_x64(True):
        args = tuple(map(jnp.asarray, base))
        grads = []
        for i in range(ufunc.nin):
            grad = jax.jit(jax.grad(lambda *a: kernel(*a).sum(), argnums=i))(*args)
            grad = np.asarray(grad)
            grads.append(grad)
            if np.all(np.isnan(grad)):  # no closed form (an order): declared NaN
                continue
            h = 1e-6
            up, down = base.copy(), base.copy()
            up[i] += h
            down[i] -= h
            fd = (ufunc(*up) - ufunc(*down)) / (2 * h)
            np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7, err_msg=name)
        # forward mode from the same partials: the primal, and the tangent of
        # the first argument (elementwise, so the gradient of the sum)
        primal, tangent = jax.jvp(
            lambda a: kernel(a, *args[1:]), (args[0],), (jnp.ones(6),)
        )
        np.testing.assert_array_equal(primal, ufunc(*base))
        np.testing.assert_allclose(tangent, grads[0], rtol=1e-12, err_msg=name)
    assert explain_native(ufunc).startswith("native")


def test_derivative_broadcasting_vmap_and_user_override() -> None:
    with jax.enable_x64(True):
        x, y = jnp.linspace(0.5, 2, 4), jnp.asarray([1.5])
        gx, gy = jax.grad(lambda a, b: lazy(sc.xlogy)(a, b).sum(), argnums=(0, 1))(x, y)
        np.testing.assert_allclose(gx, np.log(1.5))
        assert gy.shape == (1,)
        np.testing.assert_allclose(gy, [np.sum(np.asarray(x)) / 1.5])
        per_row = jax.vmap(jax.grad(lambda a: lazy(sc.erf)(a).sum()))
        rows = jnp.linspace(-1, 1, 6).reshape(2, 3)
        np.testing.assert_allclose(
            per_row(rows), 2 / np.sqrt(np.pi) * np.exp(-(np.asarray(rows) ** 2))
        )
        mine = lazy(sc.erf)

        @mine.defvjp
        def _twice(g: Any, out: Any, a: Any) -> tuple[Any, ...]:
            return (2 * g * np.ones_like(a),)

        np.testing.assert_array_equal(jax.grad(lambda a: mine(a).sum())(x), 2.0)
        # the registry is untouched by one kernel's override
        assert jax.grad(lambda a: lazy(sc.erf)(a).sum())(x)[0] != 2.0
