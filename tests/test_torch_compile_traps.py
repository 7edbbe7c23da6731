"""``torch.compile`` traps: values Dynamo shows otherwise than eager code sees them.

Each case is compared with eager NumPy (or eager torch) values, called one after the
other in one compiled function where Dynamo's cache could hand one value another's
graph: NumPy scalars (Dynamo shows them as 0-d arrays of unknown value), tuples of
numbers that change, ``-0.0`` after ``0.0`` (Dynamo guards floats with ``==``,
pytorch/pytorch#192604), kernels defined inside the compiled function, ``@lazy``
methods of an ``nn.Module``, and the declared metadata of kernels in torch code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import KernelOutputError, SpecError, lazy, lazy_apply  # noqa: E402

pytestmark = pytest.mark.slow  # every test compiles


def _compile(f: Any, **options: Any) -> Any:
    return torch.compile(f, fullgraph=True, backend="aot_eager", **options)


def _code(s: Any) -> float:
    """A number that tells equal-but-different values apart (type, sign of zero)."""
    if isinstance(s, (tuple, list)):
        return 100.0 * len(s) + sum(_code(v) for v in s)
    kind = {bool: 3.0, int: 1.0, float: 2.0}.get(type(s))
    if kind is None:
        kind = {"float32": 4.0, "float64": 5.0, "int64": 6.0, "bool": 7.0}[
            np.asarray(s).dtype.name
        ]
    return math.copysign(kind, float(s)) + 0.125 * abs(float(s))


def _tag(x: Any, s: Any) -> Any:
    return x * _code(s)


def _tag_vjp(g: Any, out: Any, x: Any, s: Any) -> tuple[Any, None]:
    return (g * _code(s), None)


#: Opaque (as_numpy, with and without a vjp) and torch code: every strategy.
KERNELS = {
    "as_numpy": lazy(_tag, as_numpy=True),
    "as_numpy with vjp": lazy(_tag, as_numpy=True, vjp=_tag_vjp),
    "torch code": lazy(_tag),
}
NUMPY_SCALARS = [np.float32(1), np.float64(1), np.int64(1)]
X = np.linspace(0.5, 2.0, 4)


@pytest.mark.parametrize("kind", list(KERNELS))
@pytest.mark.parametrize("how", ["positional", "keyword"])
def test_numpy_scalars_reach_the_kernel_as_numpy_scalars(kind: str, how: str) -> None:
    kernel = KERNELS[kind]
    torch._dynamo.reset()
    if how == "positional":
        # A lambda: a code object (Dynamo's cache) of this test's own.
        f = _compile(lambda t, s: kernel(t, s))  # noqa: PLW0108
    else:
        f = _compile(lambda t, s: kernel(t, s=s))
    for s in [1.0, *NUMPY_SCALARS, 1]:
        got = f(torch.asarray(X), s)
        np.testing.assert_array_equal(got.numpy(), _tag(X, s), err_msg=repr(s))


@pytest.mark.parametrize("kind", ["as_numpy", "torch code"])
def test_numpy_scalar_made_inside_the_compiled_function(kind: str) -> None:
    kernel = KERNELS[kind]
    # (A process's very first call made inside a trace: tests/test_torch_audit.py.)
    torch._dynamo.reset()
    got = _compile(lambda t: kernel(t, np.float32(1)))(torch.asarray(X))
    np.testing.assert_array_equal(got.numpy(), _tag(X, np.float32(1)))


def test_numpy_scalar_beside_a_shape_callable_is_refused() -> None:
    kernel = lazy(_tag, as_numpy=True, shape=lambda x, s: x.shape, dtype="float64")
    got = kernel(torch.asarray(X), np.float32(1)).numpy()
    np.testing.assert_array_equal(got, _tag(X, np.float32(1)))
    torch._dynamo.reset()
    f = _compile(lambda t, s: kernel(t, s))  # noqa: PLW0108
    with pytest.raises(Exception, match=r"_tag \(torch\.compile\): a NumPy scalar"):
        f(torch.asarray(X), np.float32(1))
    np.testing.assert_array_equal(f(torch.asarray(X), 1.0).numpy(), _tag(X, 1.0))


@pytest.mark.parametrize("kind", list(KERNELS))
def test_tuples_of_numbers_that_change_between_calls(kind: str) -> None:
    kernel = KERNELS[kind]
    torch._dynamo.reset()
    f = _compile(lambda t, p: kernel(t, p))  # noqa: PLW0108
    for p in [(1, 2), (3, 4), (1.0, 2.0), (5.5, 0.5), (0.0, 6.0), [7, 8.5]]:
        got = f(torch.asarray(X), p)
        np.testing.assert_array_equal(got.numpy(), _tag(X, p), err_msg=repr(p))


def test_numpy_scalar_with_grad_keeps_the_vjp() -> None:
    kernel = KERNELS["as_numpy with vjp"]
    torch._dynamo.reset()
    f = _compile(lambda t, s: kernel(t, s).sum())
    for s in NUMPY_SCALARS[:2]:
        x = torch.asarray(X).requires_grad_()
        f(x, s).backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full(4, _code(s)))


# ----------------------------------------------------------- -0.0 after 0.0
copysign = lazy(np.copysign, as_numpy=True, elementwise=True)


@lazy
def copysign_torch(x: Any, s: Any) -> Any:
    return torch.copysign(x, torch.tensor(s, dtype=x.dtype))


@pytest.mark.parametrize("kernel", [copysign, copysign_torch], ids=["numpy", "torch"])
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_signed_zeros_one_after_the_other(kernel: Any, backend: str) -> None:
    if backend == "inductor":
        pytest.importorskip("torch._inductor", reason="Inductor is not available")
    x = torch.asarray(X)
    torch._dynamo.reset()
    f = torch.compile(kernel, fullgraph=True, backend=backend)
    for s in [0.0, -0.0, 0.0, -0.0, 2.0, -0.0]:
        np.testing.assert_array_equal(f(x, s).numpy(), np.copysign(X, s), repr(s))


def test_signed_zeros_in_a_tuple_and_a_keyword() -> None:
    x = torch.asarray(X)
    torch._dynamo.reset()
    f = _compile(lambda t, p, s: KERNELS["as_numpy"](t, p) + copysign(t, s))
    for p, s in [((0.0, 1), 0.0), ((-0.0, 1), 0.0), ((-0.0, 1), -0.0)]:
        want = _tag(X, p) + np.copysign(X, s)
        np.testing.assert_array_equal(f(x, p, s).numpy(), want, f"{p!r} {s!r}")


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_negative_zero_once_the_float_is_dynamic(backend: str) -> None:
    # Dynamo makes a float that changed symbolic; torch code that makes a tensor
    # of it with scalar_tensor gets +0.0 for -0.0 (AOTAutograd's tensorify pass
    # specialises it through sympy), the op's float operand must not.
    if backend == "inductor":
        pytest.importorskip("torch._inductor", reason="Inductor is not available")
    x = torch.asarray(X)
    torch._dynamo.reset()
    f = torch.compile(copysign, fullgraph=True, backend=backend)
    for s in [2.0, 3.0, -0.0, 0.0, -0.0, 5.0, -math.inf, math.nan]:
        np.testing.assert_array_equal(f(x, s).numpy(), np.copysign(X, s), repr(s))


def test_a_zero_that_cannot_be_guarded_is_refused(monkeypatch: Any) -> None:
    """Where this torch's internals could not take the sign's guard: an error, never
    the other zero's result."""
    from lazyapply.adapters.torch import _compiled, _operands

    def cannot() -> bool:
        return False

    cannot._dynamo_marked_constant = True  # type: ignore[attr-defined]
    # (The op's call site asks, and so does a torch-code kernel's trace.)
    monkeypatch.setattr(_operands, "guard_zero_signs", cannot)
    monkeypatch.setattr(_compiled, "guard_zero_signs", cannot)
    torch._dynamo.reset()
    f = _compile(copysign)
    # (Dynamo wraps an exception raised in traced code, under fullgraph, in its own
    # type; without fullgraph it runs the frame eagerly: the eager value.)
    with pytest.raises(Exception, match=r"copysign .*torch\.compile.*192604"):
        f(torch.asarray(X), 0.0)
    np.testing.assert_array_equal(f(torch.asarray(X), 2.0).numpy(), X)


# ------------------------------------------------- kernels defined where they run
def test_lazy_apply_of_a_kernel_made_inside_the_compiled_function() -> None:
    # Its closure must hold constants: Dynamo hands the op's name lookup (run at
    # trace time) only constants, and a closed-over value that changed between
    # calls is symbolic (Dynamo's ClosureConversionError).
    def outer(t: Any) -> Any:
        a = 2.0

        def inner(u: Any) -> Any:
            return np.sin(u) * a

        return lazy_apply(inner, t, as_numpy=True)

    torch._dynamo.reset()
    f = _compile(outer)
    for n in (4, 6):
        x = np.linspace(0.1, 1.0, n)
        np.testing.assert_allclose(f(torch.asarray(x)).numpy(), np.sin(x) * 2.0)


def test_lazy_decoration_inside_the_compiled_function_is_refused() -> None:
    KERNELS["torch code"](torch.asarray(X), 1.0)  # torch's adapter is in use

    def outer(t: Any) -> Any:
        @lazy(as_numpy=True)
        def inner(u: Any) -> Any:
            return np.sin(u)

        return inner(t)

    torch._dynamo.reset()
    # Dynamo wraps an exception raised in traced code (fullgraph) in its own type.
    with pytest.raises(Exception, match=r"inner \(torch\.compile\): @lazy applied"):
        _compile(outer)(torch.asarray(X))
    # Without fullgraph Dynamo runs the frame eagerly: the eager values.
    torch._dynamo.reset()
    got = torch.compile(outer, backend="aot_eager")(torch.asarray(X))
    np.testing.assert_allclose(got.numpy(), np.sin(X))


class Scaled(torch.nn.Module):
    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = w

    @lazy(as_numpy=True)
    def opaque(self, a: Any) -> Any:
        return np.sin(a) * self.w

    @lazy
    def torch_code(self, a: Any) -> Any:
        return torch.sin(a) * self.w

    def forward(self, t: Any) -> Any:
        return self.opaque(t) + self.torch_code(t)


def test_compiled_module_calls_its_lazy_methods() -> None:
    torch._dynamo.reset()
    one, two = Scaled(3.0), Scaled(-2.0)
    for model in (one, two, one):
        got = _compile(model)(torch.asarray(X))
        np.testing.assert_allclose(got.numpy(), 2 * np.sin(X) * model.w)
    one.w = 5.0  # read by the kernel when it runs: the eager value
    np.testing.assert_allclose(
        _compile(one)(torch.asarray(X)).numpy()[:2], 2 * np.sin(X[:2]) * 5.0
    )


# --------------------------------------------------- torch code: declared metadata
@lazy(shape=(5,))
def wrong_shape(x: Any) -> Any:
    return torch.sin(x)


@lazy(dtype="float32")
def wrong_dtype(x: Any) -> Any:
    return torch.sin(x)


@lazy(shape=lambda a: [a.shape, a.shape])
def two_as_list(a: Any) -> Any:
    return [a + 1, a * 2]


@pytest.mark.parametrize(
    ("kernel", "what"),
    [(wrong_shape, r"shape \(4,\), expected \(5,\)"), (wrong_dtype, "dtype")],
)
def test_torch_code_outputs_are_checked_under_compile(kernel: Any, what: str) -> None:
    x = torch.asarray(X)
    with pytest.raises(KernelOutputError, match=what):
        kernel(x)
    torch._dynamo.reset()
    with pytest.raises(KernelOutputError, match=what):
        torch.compile(kernel, backend="aot_eager")(x)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=f"{kernel.__name__} .*{what}"):
        _compile(kernel)(x)


def test_torch_code_list_of_outputs_from_a_shape_callable() -> None:
    x = torch.asarray(X)
    torch._dynamo.reset()
    got = _compile(two_as_list)(x)
    assert isinstance(got, tuple)
    np.testing.assert_array_equal(got[0].numpy(), X + 1)
    np.testing.assert_array_equal(got[1].numpy(), X * 2)


def test_torch_code_stays_differentiable_and_dynamic() -> None:
    torch._dynamo.reset()
    f = _compile(lambda t: (KERNELS["torch code"](t, 2.0) ** 2).sum(), dynamic=True)
    c = _code(2.0)
    for n in (3, 5, 8):
        x = torch.linspace(0.1, 1.0, n, dtype=torch.float64, requires_grad=True)
        f(x).backward()
        np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy() * c**2)


def test_spec_error_of_a_shape_callable_is_the_same_compiled() -> None:
    @lazy(shape=lambda a: (a.shape[0], -1))
    def negative(a: Any) -> Any:
        return a

    x = torch.asarray(X)
    with pytest.raises(SpecError) as eager:
        negative(x)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="negative") as compiled:
        torch.compile(negative, backend="aot_eager")(x)
    assert str(eager.value).split(":")[0] in str(compiled.value)
