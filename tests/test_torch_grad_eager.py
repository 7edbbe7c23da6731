"""The eager autograd node of a checked call: what it keeps between calls, and traps.

One step per checked call holds what the arguments' metadata fix (tensor
positions, the vjp's checked call per set of inputs needing a gradient). Each case
here makes calls that share such a step and checks that every backward still gets
its own call's values, against NumPy: static arguments that compare equal but
differ, another set of inputs needing a gradient, several outputs (one unused, one
integer), a kernel that writes into its input, and a vjp with a wrong output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import KernelOutputError, lazy  # noqa: E402

X = np.array([0.5, 1.5, -2.0, 3.0])
Y = np.array([2.0, -1.0, 0.25, 4.0])


def _leaf(a: np.ndarray) -> Any:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def test_static_arguments_equal_but_different_reach_the_vjp() -> None:
    """0.0/-0.0 and 1/1.0/True share ``==`` (and a hash): each backward gets the
    very value its forward was called with, positional or keyword."""
    seen: list[Any] = []

    @lazy(as_numpy=True, elementwise=True)
    def signed(x: Any, s: Any, *, k: Any = 1) -> Any:
        return x * np.copysign(1.0, s) * k

    @signed.defvjp
    def _(g: Any, out: Any, x: Any, s: Any, *, k: Any = 1) -> Any:
        seen.append((s, k))
        return g * np.copysign(1.0, s) * {bool: 5, int: 7, float: 11}[type(k)], None

    for s, k in [(0.0, 1), (-0.0, 1), (0.0, 1.0), (-0.0, True), (0.0, 1), (-0.0, 1.0)]:
        x = _leaf(X)
        out = signed(x, s, k=k)
        np.testing.assert_array_equal(out.detach().numpy(), X * np.copysign(1.0, s) * k)
        out.sum().backward()
        weight = {bool: 5, int: 7, float: 11}[type(k)]
        np.testing.assert_array_equal(
            x.grad.numpy(), np.full(4, np.copysign(1.0, s) * weight)
        )
        got_s, got_k = seen[-1]
        assert type(got_s) is float
        assert np.copysign(1.0, got_s) == np.copysign(1.0, s)
        assert type(got_k) is type(k)


def test_another_set_of_inputs_needing_grad_gets_its_own_cotangents() -> None:
    """One checked call (same metadata), three sets of inputs requiring grad."""
    calls: list[int] = []

    @lazy(as_numpy=True, elementwise=True)
    def mul(x: Any, y: Any) -> Any:
        return x * y

    @mul.defvjp
    def _(g: Any, out: Any, x: Any, y: Any) -> Any:
        calls.append(1)
        return g * y, g * x

    for grad_x, grad_y in [(True, True), (True, False), (False, True), (True, True)]:
        x = torch.tensor(X, requires_grad=grad_x)
        y = torch.tensor(Y, requires_grad=grad_y)
        w = torch.arange(4.0, dtype=torch.float64)
        (mul(x, y) * w).sum().backward()
        if grad_x:
            np.testing.assert_array_equal(x.grad.numpy(), np.arange(4.0) * Y)
        else:
            assert x.grad is None
        if grad_y:
            np.testing.assert_array_equal(y.grad.numpy(), np.arange(4.0) * X)
        else:
            assert y.grad is None
    assert len(calls) == 4


def test_numbers_between_tensors_reach_the_kernel_and_the_vjp() -> None:
    @lazy(as_numpy=True, elementwise=True)
    def axpy(x: Any, a: Any, y: Any) -> Any:
        return a * x + y

    @axpy.defvjp
    def _(g: Any, out: Any, x: Any, a: Any, y: Any) -> Any:
        return g * a, None, g

    for a in (2.0, -3.0, 2):
        x, y = _leaf(X), _leaf(Y)
        out = axpy(x, a, y)
        np.testing.assert_array_equal(out.detach().numpy(), a * X + Y)
        out.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full(4, float(a)))
        np.testing.assert_array_equal(y.grad.numpy(), np.ones(4))


@lazy(
    as_numpy=True,
    shape=lambda x: [x.shape, x.shape],
    dtype=lambda x: [x.dtype, x.dtype],
)
def sin_cos(x: Any) -> Any:
    return np.sin(x), np.cos(x)


@sin_cos.defvjp
def _sin_cos_vjp(g: Any, out: Any, x: Any) -> Any:
    gs, gc = g
    return (gs * np.cos(x) - gc * np.sin(x),)


@pytest.mark.parametrize("used", ["both", "sin", "cos"])
def test_several_outputs_one_unused(used: str) -> None:
    x = _leaf(X)
    s, c = sin_cos(x)
    np.testing.assert_allclose(s.detach().numpy(), np.sin(X))
    np.testing.assert_allclose(c.detach().numpy(), np.cos(X))
    loss = {"both": s.sum() + 2 * c.sum(), "sin": s.sum(), "cos": 2 * c.sum()}[used]
    loss.backward()
    want = {
        "both": np.cos(X) - 2 * np.sin(X),
        "sin": np.cos(X),
        "cos": -2 * np.sin(X),
    }[used]
    np.testing.assert_allclose(x.grad.numpy(), want)


def test_an_integer_output_beside_a_float_one_is_not_differentiable() -> None:
    @lazy(as_numpy=True, shape=lambda x: [x.shape, x.shape], dtype=["float64", "int64"])
    def value_and_sign(x: Any) -> Any:
        return x * 3, np.sign(x).astype(np.int64)

    @value_and_sign.defvjp
    def _(g: Any, out: Any, x: Any) -> Any:
        return (g[0] * 3,)

    x = _leaf(X)
    v, sign = value_and_sign(x)
    assert not sign.requires_grad
    np.testing.assert_array_equal(sign.numpy(), np.sign(X).astype(np.int64))
    v.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(4, 3.0))


def test_a_kernel_that_writes_into_its_input() -> None:
    """As eager NumPy: the kernel's write reaches the caller's tensor (the NumPy
    array shares its memory); the value and the gradient are those of NumPy."""

    @lazy(as_numpy=True, elementwise=True)
    def bump(x: Any) -> Any:
        x += 1
        return x * 2

    @bump.defvjp
    def _(g: Any, out: Any, x: Any) -> Any:
        return (g * 2,)

    for _ in range(2):
        x = _leaf(X)
        out = bump(x)
        np.testing.assert_array_equal(out.detach().numpy(), (X + 1) * 2)
        out.sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full(4, 2.0))
        after = x.detach().numpy()
        assert np.array_equal(after, X) or np.array_equal(after, X + 1)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda g: g[:2], r"twice_vjp.*shape \(2,\), expected \(4,\)"),
        (lambda g: g.astype(np.float32), r"twice_vjp.*dtype"),
    ],
)
def test_a_wrong_vjp_output_names_the_vjp_on_every_call(bad: Any, match: str) -> None:
    @lazy(as_numpy=True, elementwise=True)
    def twice(x: Any) -> Any:
        return x * 2

    @twice.defvjp
    def _(g: Any, out: Any, x: Any) -> Any:
        return (bad(g * 2),)

    for _ in range(2):  # the first backward makes the vjp's call, the second reuses it
        with pytest.raises(KernelOutputError, match=match):
            twice(_leaf(X)).sum().backward()
