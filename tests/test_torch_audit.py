"""Cases found by trying every documented spelling as a user would, on torch paths.

Each is compared with eager NumPy values: several outputs declared with constant
shapes under ``torch.func.vmap`` (with and without a vjp), a float argument made
dynamic by Dynamo that turns ``-0.0``, and the very first call of a process made
inside a compiled function with a NumPy scalar.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import lazy, lazy_apply  # noqa: E402

from ._python import run_python  # noqa: E402

X = np.linspace(0.1, 0.9, 4)
BATCH = np.stack([X, 2 * X, 3 * X])


def _sin_cos(x: Any) -> Any:
    return np.sin(x), np.cos(x)


def _sin_cos_vjp(g: Any, out: Any, x: Any) -> Any:
    gs, gc = g
    return (gs * np.cos(x) - gc * np.sin(x),)


#: Two outputs declared with constant shapes (the README's ``shape=[(n,), (m,)]``),
#: with and without dtypes, with and without a vjp (the autograd node's vmap rule).
SIN_COS = {
    "shapes": lazy(_sin_cos, as_numpy=True, elementwise=True, shape=[(4,), (4,)]),
    "shapes and dtypes": lazy(
        _sin_cos,
        as_numpy=True,
        elementwise=True,
        shape=[(4,), (4,)],
        dtype=["float64", "float64"],
    ),
    "with a vjp": lazy(
        _sin_cos,
        as_numpy=True,
        elementwise=True,
        shape=[(4,), (4,)],
        vjp=_sin_cos_vjp,
    ),
}


@pytest.mark.parametrize("kind", list(SIN_COS))
def test_vmap_of_two_outputs_declared_with_constant_shapes(kind: str) -> None:
    kernel = SIN_COS[kind]
    s, c = kernel(torch.asarray(X))  # eagerly: two tensors
    np.testing.assert_array_equal(c.numpy(), np.cos(X))
    s, c = torch.func.vmap(kernel)(torch.asarray(BATCH))
    np.testing.assert_array_equal(s.numpy(), np.sin(BATCH))
    np.testing.assert_array_equal(c.numpy(), np.cos(BATCH))


def test_grad_of_vmap_of_two_outputs_declared_with_constant_shapes() -> None:
    kernel = SIN_COS["with a vjp"]

    def loss(b: Any) -> Any:
        s, c = torch.func.vmap(kernel)(b)
        return (s + 2 * c).sum()

    got = torch.func.grad(loss)(torch.asarray(BATCH))
    np.testing.assert_allclose(got.numpy(), np.cos(BATCH) - 2 * np.sin(BATCH))


@pytest.mark.slow
def test_first_call_of_a_process_inside_a_compiled_function_with_a_numpy_scalar() -> (
    None
):
    # A fresh process: lazyapply has learnt no array type when Dynamo starts tracing
    # (and sees the NumPy scalar as a 0-d ndarray, pytorch/pytorch#141343).
    script = textwrap.dedent(
        """
        import numpy as np, torch
        from lazyapply import lazy

        @lazy(as_numpy=True)
        def tagged(x, s):
            return x * s * (2.0 if type(s) is np.float32 else 3.0)

        @lazy
        def torch_code(x, s):
            return x * float(s)

        x = np.linspace(0.5, 2.0, 4)
        f = torch.compile(
            lambda t: tagged(t, np.float32(2)) + torch_code(t, np.float32(3)),
            fullgraph=True, backend="aot_eager",
        )
        got = f(torch.asarray(x)).numpy()
        want = tagged(x, np.float32(2)) + torch_code(x, np.float32(3))
        np.testing.assert_array_equal(got, want)
        g = torch.compile(
            lambda t: tagged(np.float32(2), t), fullgraph=True, backend="aot_eager"
        )
        want = tagged(np.float32(2), x)
        np.testing.assert_array_equal(g(torch.asarray(x)).numpy(), want)
        print("ok")
        """
    )
    assert run_python("-c", script).stdout.strip() == "ok"


@lazy(as_numpy=True, elementwise=True)
def _cube(x: Any) -> Any:
    return x**3


@_cube.defvjp
def _cube_vjp(g: Any, out: Any, x: Any) -> Any:
    return (3 * g * x**2,)


@pytest.mark.slow
def test_compiled_torch_func_grad_names_the_kernel_and_the_fix() -> None:
    # torch's own error spoke of an autograd.Function's setup_context; with
    # fullgraph=True the refusal names the kernel and the fixes, without it Dynamo
    # runs the frame eagerly: the vjp's values.
    grad = torch.func.grad(lambda a: _cube(a).sum())
    x = torch.asarray(X)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"_cube \(torch\.compile\): torch\.func\.grad"):
        torch.compile(grad, fullgraph=True, backend="aot_eager")(x)
    torch._dynamo.reset()
    got = torch.compile(grad, backend="aot_eager")(x)
    np.testing.assert_allclose(got.numpy(), 3 * X**2)
    # torch.func.vmap under compile (no grad) still goes through the op.
    torch._dynamo.reset()
    batched = torch.compile(torch.func.vmap(_cube), fullgraph=True, backend="aot_eager")
    np.testing.assert_allclose(batched(torch.asarray(BATCH)).numpy(), BATCH**3)


@lazy(as_numpy=True, elementwise=True)
def _sin_no_vjp(x: Any) -> Any:
    return np.sin(x)


#: An opaque kernel applied to a tensor no transform tracks (a constant the
#: differentiated function closes over): torch refuses ``.numpy()`` of every
#: tensor inside torch.func.grad, tracked or not.
CONSTANT_KERNELS = {
    "with a vjp": _cube,
    "without a vjp": lambda c: _sin_no_vjp(c) ** 3,
    "lazy_apply": lambda c: lazy_apply(lambda a: a**3, c, as_numpy=True),
}


def _constant_cases(kernel: Any, c: Any) -> dict[str, Any]:
    func = torch.func
    f = lambda a: (kernel(c) * a * a).sum()  # noqa: E731
    x = torch.asarray(X)
    return {
        "grad": lambda: func.grad(f)(x),
        "jacrev": lambda: func.jacrev(lambda a: kernel(c) * a)(x).sum(0),
        "vjp": lambda: func.vjp(lambda a: kernel(c) * a, x)[1](torch.ones(4))[0],
        "jvp": lambda: func.jvp(lambda a: kernel(c) * a, (x,), (torch.ones(4),))[1],
        "grad of grad": lambda: func.grad(lambda a: func.grad(f)(a).sum())(x),
    }


@pytest.mark.parametrize("kind", list(CONSTANT_KERNELS))
def test_torch_func_of_an_opaque_kernel_on_a_constant(kind: str) -> None:
    # Each was "Cannot access data pointer of Tensor that doesn't have storage".
    c = torch.asarray(BATCH[1])
    k = (np.sin(BATCH[1]) ** 3) if kind == "without a vjp" else BATCH[1] ** 3
    want = {
        "grad": 2 * k * X,
        "jacrev": k,
        "vjp": k,
        "jvp": k,
        "grad of grad": 2 * k,
    }
    for name, case in _constant_cases(CONSTANT_KERNELS[kind], c).items():
        np.testing.assert_allclose(case().numpy(), want[name], err_msg=name)


@pytest.mark.slow
def test_compiled_torch_func_grad_of_an_opaque_kernel_on_a_constant() -> None:
    # The refusal above is for a tensor the grad tracks: a constant reaches the op
    # as itself, which runs, with fullgraph=True.
    c = torch.asarray(BATCH[1])
    grad = torch.func.grad(lambda a: (_cube(c) * a * a).sum())
    torch._dynamo.reset()
    got = torch.compile(grad, fullgraph=True, backend="aot_eager")(torch.asarray(X))
    np.testing.assert_allclose(got.numpy(), 2 * BATCH[1] ** 3 * X)


@pytest.mark.slow
def test_kernel_made_inside_takes_a_changing_number_as_an_argument() -> None:
    # The documented way round Dynamo's ClosureConversionError (a closed-over
    # number that changes is symbolic): the number is an argument, passed as data.
    def outer(a: Any, k: float) -> Any:
        def inner(u: Any, k: float) -> Any:
            return np.sin(u) * k

        return lazy_apply(inner, a, k, as_numpy=True)

    torch._dynamo.reset()
    f = torch.compile(outer, fullgraph=True, backend="aot_eager")
    for k in [2.0, 3.0, 4.0, -0.0]:
        got = f(torch.asarray(X), k).numpy()
        np.testing.assert_array_equal(got, np.sin(X) * k)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(np.sin(X) * k))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["as_numpy", "with a vjp"])
def test_a_float_that_changes_twenty_times_compiles_two_graphs(kind: str) -> None:
    # Each new value used to be specialised (scalar_tensor of a symbolic float):
    # a graph per value, and under fullgraph=True FailOnRecompileLimitHit at the
    # ninth.
    from torch._dynamo.utils import counters

    def mul_vjp(g: Any, out: Any, x: Any, s: float) -> Any:
        return (g * s, None)

    kernel = lazy(
        lambda x, s: x * s,
        as_numpy=True,
        elementwise=True,
        vjp=mul_vjp if kind == "with a vjp" else None,
    )
    torch._dynamo.reset()
    counters.clear()
    f = torch.compile(lambda a, s: kernel(a, s), fullgraph=True, backend="aot_eager")  # noqa: PLW0108
    for i in range(20):
        s = 1.0 + i / 7
        x = torch.asarray(X).requires_grad_(kind == "with a vjp")
        out = f(x, s)
        np.testing.assert_array_equal(out.detach().numpy(), X * s)
        if kind == "with a vjp":
            out.sum().backward()
            np.testing.assert_array_equal(x.grad.numpy(), np.full(4, s))
    assert counters["stats"]["unique_graphs"] <= 2


@lazy(elementwise=True)
def _sin_torch(x: Any) -> Any:
    return torch.sin(x)


@pytest.mark.parametrize("kind", list(CONSTANT_KERNELS))
def test_a_dual_tensor_of_forward_ad_is_refused_by_a_numpy_kernel(kind: str) -> None:
    # Its NumPy copy has no tangent: the output came back with tangent None, silently.
    from lazyapply import NotDifferentiableError

    fw = torch.autograd.forward_ad
    kernel = CONSTANT_KERNELS[kind]
    x = torch.asarray(X)
    with fw.dual_level():
        dual = fw.make_dual(x, torch.ones(4))
        with pytest.raises(
            NotDifferentiableError, match=r"argument 0 is a dual tensor"
        ):
            kernel(dual)
        # A tensor without a tangent inside the dual level is no dual: it runs.
        got = kernel(x)
    want = np.sin(X) ** 3 if kind == "without a vjp" else X**3
    np.testing.assert_allclose(got.numpy(), want)


def test_a_dual_tensor_through_torch_code_keeps_its_tangent() -> None:
    fw = torch.autograd.forward_ad
    x = torch.asarray(X)
    with fw.dual_level():
        out = _sin_torch(fw.make_dual(x, torch.ones(4)))
        primal, tangent = fw.unpack_dual(out)
    np.testing.assert_allclose(primal.numpy(), np.sin(X))
    np.testing.assert_allclose(tangent.numpy(), np.cos(X))
