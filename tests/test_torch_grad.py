"""PyTorch autograd through a declared vjp (issue 10, item 3), eagerly.

Numba and SciPy kernels; float64 ``gradcheck``; ``.grad`` of every differentiable
input; two outputs; ``no_grad``/``inference_mode`` take the plain path (no autograd
node). The no-vjp error and integer arguments: tests/test_behaviour_grad.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import lazy_apply  # noqa: E402

from .torch_kernels import (  # noqa: E402
    VJP_CALLS,
    erf,
    nograd,
    polar,
    sin_scale,
    sin_scale_vjp,
)


def _inputs(n: int = 6) -> tuple[object, object]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(n, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, y


def test_gradcheck_numba_with_static_keyword() -> None:
    x, y = _inputs()
    assert torch.autograd.gradcheck(lambda a, b: sin_scale(a, b, scale=3.0), (x, y))


def test_gradcheck_scipy() -> None:
    x, _ = _inputs()
    assert torch.autograd.gradcheck(erf, (x,))


def test_gradcheck_two_outputs() -> None:
    x, _ = _inputs()
    assert torch.autograd.gradcheck(polar, (x,))


def test_backward_fills_every_grad_and_runs_the_vjp_once() -> None:
    x, y = _inputs()
    before = VJP_CALLS["sin_scale"]
    out = sin_scale(x, y, scale=2.0)
    assert out.requires_grad
    assert out.grad_fn is not None
    (out * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    w = torch.arange(6.0, dtype=torch.float64)
    torch.testing.assert_close(x.grad, w * torch.cos(x) * y * 2)
    torch.testing.assert_close(y.grad, w * torch.sin(x) * 2)
    assert VJP_CALLS["sin_scale"] == before + 1


def test_only_inputs_that_require_grad_get_one() -> None:
    x, y = _inputs()
    y = y.detach()
    sin_scale(x, y).sum().backward()
    torch.testing.assert_close(x.grad, torch.cos(x) * y)
    assert y.grad is None


def test_lazy_apply_accepts_vjp() -> None:
    x, y = _inputs()
    out = lazy_apply(sin_scale.eager, x, y, as_numpy=True, vjp=sin_scale_vjp, scale=1.5)
    out.sum().backward()
    torch.testing.assert_close(y.grad, torch.sin(x) * 1.5)


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_grad_disabled_takes_the_plain_path(context: str) -> None:
    x, y = _inputs()
    before = VJP_CALLS["sin_scale"]
    with getattr(torch, context)():
        out = sin_scale(x, y)
        plain = nograd(x * 0.5)  # no vjp, but no error: nothing to differentiate
    assert out.grad_fn is None
    assert not out.requires_grad
    assert plain.grad_fn is None
    torch.testing.assert_close(out, torch.sin(x.detach()) * y.detach())
    assert VJP_CALLS["sin_scale"] == before


def test_torch_kernel_without_vjp_is_differentiated_by_torch() -> None:
    # Not as_numpy: the kernel is torch code, and torch records its own graph.
    x, _ = _inputs()
    lazy_apply(torch.sin, x).sum().backward()
    torch.testing.assert_close(x.grad, torch.cos(x))


def test_argument_order_keys_the_checked_call() -> None:
    """``f(t, 2.0)`` then ``f(2.0, t)`` with autograd: each call is checked against
    its own declared metadata (the checked call was once shared, keyed on the
    static arguments without their positions, and the second call's wrong
    declaration passed unnoticed)."""
    import numpy as np

    from lazyapply import KernelOutputError, lazy

    @lazy(as_numpy=True, shape=lambda a, b: np.shape(a))
    def first_shape(a, b):
        return a - b

    @first_shape.defvjp
    def _(g, out, a, b):
        return g, -g

    t = torch.arange(3.0, dtype=torch.float64, requires_grad=True)
    out = first_shape(t, 2.0)
    out.sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), np.arange(3.0) - 2.0)
    np.testing.assert_array_equal(t.grad.numpy(), np.ones(3))
    with pytest.raises(KernelOutputError, match=r"shape \(3,\), expected \(\)"):
        first_shape(2.0, t)  # declared () (the shape of 2.0): the kernel gives (3,)
