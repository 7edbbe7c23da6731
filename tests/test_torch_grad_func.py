"""``torch.func`` and double backward through ``as_numpy`` kernels with a declared vjp.

``torch.func.grad``/``vjp``/``jacrev``, nested with ``vmap`` either way, over Numba,
SciPy (a vjp given, and ``lazyapply.special``'s derived one) and Cython kernels, two
outputs and a whole-array kernel; each compared with the eager NumPy gradient and
with central finite differences of the eager kernel. Second derivatives where the vjp
declares its own vjp (both spellings), with ``gradgradcheck`` in float64, and the
error that names what to declare where it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
special = pytest.importorskip("scipy.special", reason="scipy is not installed")

from lazyapply import NotDifferentiableError, lazy  # noqa: E402

from ._finite import central_differences  # noqa: E402
from .torch_kernels import cython_ffill, erf, nograd, polar, sin_scale  # noqa: E402

func = torch.func


def _x(n: int = 6, lo: float = 0.2, hi: float = 1.4) -> Any:
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def _close(got: Any, want: Any, rtol: float = 1e-7) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=rtol, atol=1e-9)


# ------------------------------------------------------------------ first order
def test_grad_vjp_and_jacrev_of_a_numba_kernel_with_a_static_keyword() -> None:
    x, y = _x(), _x(lo=-1.0, hi=2.0)
    xn, yn = x.numpy(), y.numpy()

    def loss(a: Any, b: Any) -> Any:
        return sin_scale(a, b, scale=3.0).sum()

    gx, gy = func.grad(loss, argnums=(0, 1))(x, y)
    _close(gx, 3 * np.cos(xn) * yn)
    _close(gy, 3 * np.sin(xn))
    eager = sin_scale.eager
    _close(gx, central_differences(lambda a: eager(a, yn, 3.0).sum(), xn), rtol=1e-6)
    w = torch.arange(6.0, dtype=torch.float64)
    out, pull = func.vjp(lambda a: sin_scale(a, y, scale=3.0), x)
    _close(out, eager(xn, yn, 3.0))
    (ct,) = pull(w)
    _close(ct, w.numpy() * 3 * np.cos(xn) * yn)
    jac = func.jacrev(lambda a: sin_scale(a, y, scale=3.0))(x)
    _close(jac, np.diag(3 * np.cos(xn) * yn))


@pytest.mark.parametrize(
    "kernel",
    [erf, lazy(special.erf, as_numpy=True)],
    ids=["vjp given", "lazyapply.special"],
)
def test_grad_and_jacrev_of_scipy_erf(kernel: Any) -> None:
    x = _x(lo=-1.5, hi=1.5)
    xn = x.numpy()
    want = 2 / np.sqrt(np.pi) * np.exp(-(xn**2))
    _close(func.grad(lambda a: kernel(a).sum())(x), want)
    _close(
        func.grad(lambda a: kernel(a).sum())(x),
        central_differences(lambda a: special.erf(a).sum(), xn),
        1e-6,
    )
    _close(func.jacrev(kernel)(x), np.diag(want))


def test_grad_of_two_outputs() -> None:
    x = _x()
    xn = x.numpy()

    def loss(a: Any) -> Any:
        c, s = polar(a)
        return (2 * c + s).sum()

    want = 2 * (np.cos(xn) - xn * np.sin(xn)) + np.sin(xn) + xn * np.cos(xn)
    _close(func.grad(loss)(x), want)
    eager = polar.eager
    _close(
        func.grad(loss)(x),
        central_differences(lambda a: (2 * eager(a)[0] + eager(a)[1]).sum(), xn),
        1e-6,
    )
    jc, js = func.jacrev(polar)(x)
    _close(jc, np.diag(np.cos(xn) - xn * np.sin(xn)))
    _close(js, np.diag(np.sin(xn) + xn * np.cos(xn)))


# ------------------------------------------------------------ with torch.func.vmap
CALLS = {"mul": 0, "mul_vjp": 0}


@lazy(as_numpy=True, elementwise=True)
def mul(a: Any, b: Any) -> Any:
    CALLS["mul"] += 1
    return a * np.sin(b)


@mul.defvjp
def _mul_vjp(g: Any, out: Any, a: Any, b: Any) -> Any:
    CALLS["mul_vjp"] += 1
    return g * np.sin(b), g * a * np.cos(b)


def test_vmap_of_grad_and_grad_of_vmap_make_one_batched_call() -> None:
    m = torch.rand(
        4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    b = _x()
    mn, bn = m.numpy(), b.numpy()
    before = dict(CALLS)
    got = func.vmap(func.grad(lambda a: mul(a, b).sum()))(m)
    _close(got, np.broadcast_to(np.sin(bn), mn.shape))
    # One kernel call and one vjp call for the whole batch (elementwise).
    assert CALLS["mul"] - before["mul"] == 1
    assert CALLS["mul_vjp"] - before["mul_vjp"] == 1
    got = func.grad(lambda a: func.vmap(mul, in_dims=(0, None))(a, b).sum())(m)
    _close(got, np.broadcast_to(np.sin(bn), mn.shape))


@pytest.mark.parametrize("in_dims", [(None, 0), (0, None), (1, 0)])
def test_vmap_of_grad_with_any_in_dims(in_dims: tuple[Any, ...]) -> None:
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(
        *((3, 6) if in_dims[0] == 0 else (6, 3) if in_dims[0] == 1 else (6,)),
        dtype=torch.float64,
        generator=gen,
    )
    b = torch.rand(
        *((3, 6) if in_dims[1] == 0 else (6,)), dtype=torch.float64, generator=gen
    )
    grads = func.vmap(
        func.grad(lambda p, q: mul(p, q).sum(), argnums=(0, 1)), in_dims=in_dims
    )(a, b)
    an = np.moveaxis(a.numpy(), 1, 0) if in_dims[0] == 1 else a.numpy()
    an, bn = np.broadcast_arrays(an, b.numpy())
    _close(grads[0], np.sin(bn))
    _close(grads[1], an * np.cos(bn))


@pytest.mark.slow  # compiles the Cython example with the C compiler on a fresh checkout
def test_whole_array_cython_kernel_per_batch_element() -> None:
    ffill = cython_ffill()

    def ffill_vjp(g: Any, out: Any, x: Any) -> Any:
        # out[i, j] = x[i, k] for the last valid k <= j: scatter g back to k.
        valid = ~np.isnan(x)
        idx = np.where(valid, np.arange(x.shape[1]), -1)
        last = np.maximum.accumulate(idx, axis=1)
        ct = np.zeros_like(x)
        rows, cols = np.nonzero(last >= 0)
        np.add.at(ct, (rows, last[rows, cols]), g[rows, cols])
        return (ct,)

    kernel = lazy(
        ffill.eager,
        as_numpy=True,
        shape=lambda x: x.shape,
        dtype=lambda x: x.dtype,
        vjp=ffill_vjp,
    )
    stack = torch.tensor(
        [
            [[1.0, np.nan, 3.0], [np.nan, 2.0, np.nan]],
            [[4.0, 5.0, np.nan], [6.0, np.nan, np.nan]],
        ],
        dtype=torch.float64,
    )
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    got = func.vmap(func.grad(lambda t: (kernel(t) * w).sum()))(stack)
    for s, g in zip(stack.numpy(), got, strict=True):
        fd = central_differences(lambda a: np.nansum(ffill.eager(a) * w.numpy()), s)
        _close(
            np.where(np.isnan(s), 0.0, g.numpy()), np.where(np.isnan(s), 0.0, fd), 1e-6
        )
    _close(func.vmap(kernel)(stack), np.stack([ffill.eager(s) for s in stack.numpy()]))


# ------------------------------------------------------------ second derivatives
@lazy(as_numpy=True)
def _cube_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
    (gg_x,) = gg
    return gg_x * 3 * x**2, None, gg_x * 6 * g * x


@lazy(as_numpy=True, vjp=_cube_vjp_vjp)
def _cube_vjp(g: Any, out: Any, x: Any) -> Any:
    return (3 * g * x**2,)


@lazy(as_numpy=True, elementwise=True, vjp=_cube_vjp)
def cube(x: Any) -> Any:
    return x**3


@lazy(as_numpy=True, elementwise=True)
def gammaln(x: Any) -> Any:
    return special.gammaln(x)


@gammaln.defvjp
def _gammaln_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g * special.digamma(x),)


@gammaln.vjp.defvjp
def _gammaln_vjp_vjp(gg: Any, cts: Any, g: Any, out: Any, x: Any) -> Any:
    (gg_x,) = gg
    return gg_x * special.digamma(x), None, gg_x * g * special.polygamma(1, x)


def _hessian_diag(kernel: Any) -> Callable[[np.ndarray], np.ndarray]:
    return {cube: lambda x: 6 * x, gammaln: lambda x: special.polygamma(1, x)}[kernel]


@pytest.mark.parametrize("kernel", [cube, gammaln], ids=["vjp=", "f.vjp.defvjp"])
def test_gradgradcheck_and_create_graph(kernel: Any) -> None:
    x = _x().requires_grad_()
    assert torch.autograd.gradcheck(kernel, (x,))
    assert torch.autograd.gradgradcheck(kernel, (x,))
    (g,) = torch.autograd.grad(kernel(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad((g * torch.arange(6.0, dtype=torch.float64)).sum(), x)
    _close(h, np.arange(6.0) * _hessian_diag(kernel)(x.detach().numpy()))


@pytest.mark.parametrize("kernel", [cube, gammaln], ids=["vjp=", "f.vjp.defvjp"])
def test_second_order_under_torch_func(kernel: Any) -> None:
    x = _x()
    xn = x.numpy()
    want = _hessian_diag(kernel)(xn)

    def loss(a: Any) -> Any:
        return kernel(a).sum()

    _close(func.grad(lambda a: func.grad(loss)(a).sum())(x), want)
    _close(func.jacrev(func.jacrev(loss))(x), np.diag(want))
    first = kernel.vjp  # its finite differences: the Hessian's diagonal
    fd = central_differences(
        lambda a: first(np.ones_like(a), kernel.eager(a), a)[0].sum(), xn
    )
    _close(want, fd, 1e-6)
    m = torch.stack([x, x + 0.5])
    got = func.vmap(func.jacrev(func.jacrev(loss)))(m)
    _close(got, np.stack([np.diag(_hessian_diag(kernel)(r)) for r in m.numpy()]))


def test_double_backward_without_the_vjps_own_vjp_names_what_to_declare() -> None:
    x = _x().requires_grad_()
    (g,) = torch.autograd.grad(sin_scale(x, x).sum(), x, create_graph=True)
    with pytest.raises(NotDifferentiableError) as info:
        g.sum().backward()
    text = str(info.value)
    assert text.startswith("sin_scale_vjp")
    assert "@sin_scale.vjp.defvjp" in text
    assert "torch on cpu" in text
    with pytest.raises(NotDifferentiableError, match=r"@sin_scale\.vjp\.defvjp"):
        func.grad(lambda a: func.grad(lambda b: sin_scale(b, b).sum())(a).sum())(_x())


def test_third_order_is_refused_with_the_kernels_name() -> None:
    def loss(a: Any) -> Any:
        return cube(a).sum()

    third = func.grad(lambda a: func.grad(lambda b: func.grad(loss)(b).sum())(a).sum())
    with pytest.raises(
        NotDifferentiableError,
        match="cube_vjp: lazyapply differentiates cube at most twice",
    ):
        third(_x())


def test_grad_of_an_as_numpy_kernel_without_vjp_names_it() -> None:
    with pytest.raises(NotDifferentiableError, match=r"ellipk .*@ellipk\.defvjp"):
        func.grad(lambda a: nograd(a).sum())(_x(lo=0.1, hi=0.9))
    # vmap alone needs no derivative.
    m = torch.stack([_x(lo=0.1, hi=0.9)] * 2)
    _close(func.vmap(nograd)(m), special.ellipk(m.numpy()))


# torch's forward-mode AD scripts a helper on first use (torch's own deprecation).
@pytest.mark.parametrize("how", ["jvp", "jacfwd", "hessian"])
def test_forward_mode_is_refused_with_the_kernels_name(how: str) -> None:
    x = _x()

    def loss(a: Any) -> Any:
        return cube(a).sum()

    calls = {
        "jvp": lambda: func.jvp(cube, (x,), (torch.ones_like(x),)),
        "jacfwd": lambda: func.jacfwd(cube)(x),
        "hessian": lambda: func.hessian(loss)(x),
    }
    with pytest.raises(NotDifferentiableError, match=r"^cube(_vjp)? \(torch on cpu\)"):
        calls[how]()


@lazy(
    as_numpy=True,
    elementwise=True,
    shape=lambda x: [x.shape] * 2,
    dtype=lambda x: [x.dtype, "int64"],
)
def doubled_and_flag(x: Any) -> Any:
    return x * 2, (x > 0.5).astype(np.int64)


@doubled_and_flag.defvjp
def _doubled_and_flag_vjp(g: Any, out: Any, x: Any) -> Any:
    return (g[0] * 2,)


def test_integer_output_beside_a_float_one_under_torch_func() -> None:
    x = _x()

    def loss(a: Any) -> Any:
        value, flag = doubled_and_flag(a)
        assert flag.dtype == torch.int64
        return value.sum()

    _close(func.grad(loss)(x), np.full(6, 2.0))
    _close(func.vmap(func.grad(loss))(torch.stack([x, x + 1])), np.full((2, 6), 2.0))


def test_torch_code_with_a_declared_vjp_uses_it_under_torch_func() -> None:
    # The declared rule, not torch's own derivative of the code (as eagerly).
    tripled = lazy(lambda a: a * 3, vjp=lambda g, out, a: (g * 10,))
    x = _x()
    _close(func.grad(lambda a: tripled(a).sum())(x), np.full(6, 10.0))
    leaf = x.clone().requires_grad_()
    tripled(leaf).sum().backward()
    _close(leaf.grad, np.full(6, 10.0))


def test_grad_of_vmap_of_a_kernel_without_vjp_names_it() -> None:
    # Inside vmap inside grad, requires_grad says False: the grad level is found
    # by unwrapping.
    m = torch.stack([_x(lo=0.1, hi=0.9)] * 2)
    with pytest.raises(NotDifferentiableError, match=r"^ellipk \(torch on cpu\)"):
        func.grad(lambda a: func.vmap(nograd)(a).sum())(m)
    # A constant that no grad level tracks needs no derivative.
    got = func.grad(lambda a: a.sum() + func.vmap(nograd)(m).sum())(m)
    _close(got, np.ones((2, 6)))
