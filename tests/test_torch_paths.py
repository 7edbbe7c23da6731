"""Documented outputs and arguments under ``torch.compile``/``export``/``torch.func``.

Each case is compared with the kernel's eager NumPy result. Compiled functions use
the ``aot_eager`` backend (Dynamo and AOTAutograd with the custom op and its
registrations, without Inductor's C++ build), except the cache test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import NotDifferentiableError, SpecError, lazy, lazy_apply  # noqa: E402
from lazyapply.adapters.torch._op import TENSOR, site_of  # noqa: E402

from ._statics import VALUES  # noqa: E402


def _compile(f: Any) -> Any:
    return torch.compile(f, fullgraph=True, backend="aot_eager")


@lazy(
    as_numpy=True,
    elementwise=True,
    shape=lambda x: [x.shape] * 2,
    dtype=lambda x: [x.dtype] * 2,
)
def sin_cos(x: Any) -> Any:
    return np.sin(x), np.cos(x)


@sin_cos.defvjp
def _sin_cos_vjp(g: Any, out: Any, x: Any) -> Any:
    gs, gc = g  # a tuple: one cotangent per output
    return (gs * np.cos(x) - gc * np.sin(x),)


def _x(n: int = 5) -> Any:
    return torch.linspace(0.1, 1.3, n, dtype=torch.float64)


# ------------------------------------------------------------------ several outputs
@pytest.mark.slow
def test_callable_shapes_several_outputs_under_compile() -> None:
    x = _x()
    got = _compile(lambda t: sin_cos(t)[1])(x)
    np.testing.assert_allclose(got.numpy(), np.cos(x.numpy()))
    s, c = _compile(sin_cos)(x)
    np.testing.assert_allclose(s.numpy(), np.sin(x.numpy()))
    np.testing.assert_allclose(c.numpy(), np.cos(x.numpy()))


@pytest.mark.slow
def test_several_outputs_vjp_gets_a_tuple_under_compile() -> None:
    x = _x().requires_grad_()
    _compile(lambda t: (sin_cos(t)[0] * 2 + sin_cos(t)[1]).sum())(x).backward()
    xn = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(xn) - np.sin(xn))


@pytest.mark.slow
def test_several_outputs_under_export() -> None:
    class Model(torch.nn.Module):
        def forward(self, a: Any) -> Any:
            return sin_cos(a)[1] + 1

    x = _x()
    program = torch.export.export(Model(), (x,))
    np.testing.assert_allclose(program.module()(x).numpy(), np.cos(x.numpy()) + 1)


def test_several_outputs_under_vmap() -> None:
    m = torch.rand(3, 4, dtype=torch.float64)
    s, c = torch.func.vmap(sin_cos)(m)
    np.testing.assert_allclose(c.numpy(), np.cos(m.numpy()))
    np.testing.assert_allclose(s.numpy(), np.sin(m.numpy()))


def test_vmap_with_an_unbatched_first_argument() -> None:
    kernel = lazy(lambda a, b: np.sin(a) * b, as_numpy=True, elementwise=True)
    a = torch.rand(3, dtype=torch.float64)
    b = torch.rand(2, 3, dtype=torch.float64)
    got = torch.func.vmap(kernel, in_dims=(None, 0))(a, b)
    np.testing.assert_allclose(got.numpy(), np.sin(a.numpy()) * b.numpy())


def test_vmap_of_a_whole_array_kernel_runs_once_per_element() -> None:
    calls = []

    def centred(a: Any) -> Any:
        calls.append(a.shape)
        return a - a.mean()

    kernel = lazy(centred, as_numpy=True)
    m = torch.rand(3, 4, dtype=torch.float64)
    got = torch.func.vmap(kernel)(m)
    expected = m.numpy() - m.numpy().mean(axis=1, keepdims=True)
    np.testing.assert_allclose(got.numpy(), expected)
    assert calls == [(4,)] * 3


def test_tensor_escaped_from_a_transform_runs_now() -> None:
    # Outside every torch.func transform no argument is asked whether torch.func
    # wraps it: an escaped grad wrapper is dead, and torch treats it as the plain
    # tensor it wraps (torch.autograd.Function.apply unwraps it the same way).
    leaked: list[Any] = []

    def loss(t: Any) -> Any:
        leaked.append(t)
        return (t * 2).sum()

    x = _x()
    torch.func.grad(loss)(x)
    (dead,) = leaked
    assert not torch._C._are_functorch_transforms_active()
    for as_numpy in (False, True):
        triple = lazy(lambda a: a * 3, as_numpy=as_numpy)
        got = triple(dead)  # grad mode on: the dead wrapper requires grad
        np.testing.assert_allclose(got.detach().numpy(), x.numpy() * 3)
        with torch.no_grad():  # grad mode off: it runs now
            got = triple(dead)
        np.testing.assert_allclose(got.numpy(), x.numpy() * 3)


def _read_only(a: Any) -> Any:
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x + 1,
        lambda x: _read_only(x + 1),
        lambda x: np.array(x.sum()),
        lambda x: x[::-1],
        lambda x: np.asfortranarray(np.outer(x, x)),
        lambda x: (x + 1).astype(np.uint16),
        lambda x: [1.0, 2.0],
    ],
    ids=["plain", "read-only", "0-d", "reversed", "fortran", "uint16", "list"],
)
def test_as_numpy_outputs_convert_as_torch_asarray_does(make: Any) -> None:
    # On CPU the output goes through torch.from_numpy where that is what
    # torch.asarray does (a writeable array with dimensions), else torch.asarray:
    # same values, dtype, shape and memory sharing either way. (torch warns about a
    # read-only array once per process, so warnings are not compared.)
    x = _x()
    out = make(x.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the read-only array's
        try:
            expected = torch.asarray(out, device="cpu")
        except (TypeError, ValueError, RuntimeError):  # reversed: lazyapply copies
            expected = torch.asarray(np.ascontiguousarray(out))
        got = lazy_apply(lambda a: out, x, as_numpy=True)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    if isinstance(out, np.ndarray):
        shared = np.shares_memory(expected.numpy(), out)
        assert np.shares_memory(got.numpy(), out) == shared


# ------------------------------------------------------------ non-contiguous outputs
@lazy(as_numpy=True, shape=lambda a: (a.shape[1], a.shape[0]))
def transpose(a: Any) -> Any:
    return a.T


@pytest.mark.slow
def test_non_contiguous_outputs_under_compile() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg", reason="scipy not installed")
    cholesky = lazy(scipy_linalg.cholesky, as_numpy=True)  # Fortran order
    m = torch.rand(3, 4, dtype=torch.float64)
    got = _compile(lambda t: transpose(t) * 2)(m)
    np.testing.assert_array_equal(got.numpy(), m.numpy().T * 2)
    spd = m @ m.T + torch.eye(3, dtype=torch.float64)
    got = _compile(lambda t: cholesky(t, lower=True) + 0)(spd)
    expected = scipy_linalg.cholesky(spd.numpy(), lower=True)
    np.testing.assert_allclose(got.numpy(), expected)


@lazy(
    as_numpy=True,
    shape=lambda x: [(x.shape[0] - 1,)] * 2,
    dtype=lambda x: [x.dtype] * 2,
)
def shifted_views(x: Any) -> Any:
    return x[1:], x[:-1]  # views into the input, and into each other's memory


@pytest.mark.slow
def test_outputs_that_view_the_input_leave_it_intact_under_inductor() -> None:
    # Inductor multiplies the op's output in place (a custom op's output is its
    # own); a view of the input at an offset was not copied, so the caller's
    # tensor was overwritten: a wrong value with no error.
    x = torch.arange(5.0, dtype=torch.float64)
    f = torch.compile(lambda a: [o * 2 for o in shifted_views(a)], fullgraph=True)
    first, second = f(x)
    np.testing.assert_array_equal(x.numpy(), np.arange(5.0))
    np.testing.assert_array_equal(first.numpy(), np.arange(1.0, 5.0) * 2)
    np.testing.assert_array_equal(second.numpy(), np.arange(4.0) * 2)


# -------------------------------------------------------------------- one SpecError
@lazy(as_numpy=True, shape=lambda x: 1 // 0)
def raising_shape(x: Any) -> Any:
    return x


@lazy(as_numpy=True, shape=lambda x: (-1,))
def negative_shape(x: Any) -> Any:
    return x


@lazy(as_numpy=True, dtype=lambda x: "not a dtype")
def bad_dtype(x: Any) -> Any:
    return x


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [raising_shape, negative_shape, bad_dtype])
def test_spec_errors_are_the_same_under_compile(kernel: Any) -> None:
    x = _x()
    with pytest.raises(SpecError) as eager:
        kernel(x)
    with pytest.raises(Exception) as compiled:
        _compile(lambda t: kernel(t) + 1)(x)
    # Dynamo re-raises errors of a fake implementation as its own error: the
    # lazyapply SpecError is its cause, with the eager message.
    errors = [e for e in _chain(compiled.value) if isinstance(e, SpecError)]
    assert errors, compiled.value
    assert str(errors[0]) == str(eager.value)


# ------------------------------------------------------------------- static values
def test_call_sites_never_share_equal_but_different_values() -> None:
    values = [*VALUES, "1", None]
    sites = {site_of((TENSOR, v), {}) for v in values}
    assert len(sites) == len(values)
    kw = {site_of((TENSOR,), {"s": v}) for v in values}
    assert len(kw) == len(values)


copysign = lazy(np.copysign, as_numpy=True, elementwise=True)


# Equal-but-different values through compiled and exported calls, positional or
# keyword, with shape callables or without: tests/test_static_key.py and the path
# matrix. Here: one compiled function called with both (the graph is Dynamo's).


@pytest.mark.slow
def test_negative_zero_after_zero_in_one_compiled_function() -> None:
    # Dynamo guards float constants with == (fixed after torch 2.13,
    # pytorch/pytorch#192604): lazyapply adds a guard on the sign of a zero.
    x = torch.ones(3, dtype=torch.float64)
    torch._dynamo.reset()
    f = _compile(copysign)
    f(x, 0.0)
    np.testing.assert_array_equal(f(x, -0.0).numpy(), -np.ones(3))


# --------------------------------------------------------------------- gradients
@lazy
def torch_code(x: Any) -> Any:
    return torch.sin(x) * 2


@pytest.mark.slow
def test_torch_code_stays_differentiable_under_compile() -> None:
    x = _x().requires_grad_()
    _compile(lambda t: torch_code(t).sum())(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(x.detach().numpy()))


@lazy(as_numpy=True)
def opaque(x: Any) -> Any:
    return np.sin(x)


@pytest.mark.slow
def test_opaque_kernel_without_vjp_names_the_kernel_under_compile() -> None:
    x = _x().requires_grad_()
    f = torch.compile(lambda t: opaque(t).sum(), backend="aot_eager")
    with pytest.raises(NotDifferentiableError, match=r"opaque .*@opaque\.defvjp"):
        f(x)


# ------------------------------------------------------------------------ methods
def test_jax_jit_of_a_bound_method() -> None:
    jax = pytest.importorskip("jax", reason="jax is not installed")

    class Scaler:
        factor = 3.0

        @lazy(as_numpy=True)
        def scale(self, a: Any) -> Any:
            return a * self.factor

    got = jax.jit(Scaler().scale)(jax.numpy.arange(3.0))
    np.testing.assert_allclose(np.asarray(got), np.arange(3.0) * 3)


# -------------------------------------------------------- a cache shared by processes
_CACHE_SCRIPT = """
import sys
import numpy as np
import torch
from lazyapply import lazy

def factory(k):
    @lazy(as_numpy=True, elementwise=True)
    def kern(x):
        return x * k

    @kern.defvjp
    def kern_vjp(g, out, x):
        return (g * k,)

    return kern

order = [2.0, 3.0] if sys.argv[1] == "first" else [3.0, 2.0]
kernels = {k: factory(k) for k in order}
x = torch.ones(4, dtype=torch.float64, requires_grad=True)
f = torch.compile(lambda t: kernels[3.0](t).sum(), fullgraph=True)
f(x).backward()
print(float(x.grad[0]))
"""


@pytest.mark.slow
def test_two_processes_share_an_inductor_cache(tmp_path: Path) -> None:
    """Two kernels named ``kern`` (vjps x2 and x3), registered in opposite orders.

    The second process loads the first one's compiled graphs from the cache; each
    must run its own kernel's vjp.
    """
    root = Path(__file__).resolve().parent.parent
    script = tmp_path / "cached.py"
    script.write_text(textwrap.dedent(_CACHE_SCRIPT))
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "PYTHONPATH": str(root),
    }
    for order in ("first", "second"):
        proc = subprocess.run(
            [sys.executable, str(script), order],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == "3.0", (order, proc.stdout)
