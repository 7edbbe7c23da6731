"""Kernels inside ``torch.compile``, ``torch.export`` and ``torch.func`` (issue 11).

Every kernel call made while compiling goes through the kernel's automatic custom op.
Compiled functions use the ``aot_eager`` backend (Dynamo + AOTAutograd, the custom op
and its registrations, without Inductor's C++ build), except one test with Inductor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from lazyapply import lazy  # noqa: E402
from lazyapply.adapters.torch._op import prepare_op, site_of  # noqa: E402

from .torch_kernels import (  # noqa: E402
    VJP_CALLS,
    cython_ffill,
    erf,
    polar,
    positives,
    sin_scale,
    unknown_size,
)


def _model(a: Any, b: Any) -> Any:
    return torch.tanh(sin_scale(a, b, scale=2.0)) + erf(a) + polar(b)[1]


def _xy(n: int = 8) -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(1)
    return (
        torch.rand(n, dtype=torch.float64, generator=gen),
        torch.rand(n, dtype=torch.float64, generator=gen),
    )


COMPILED = torch.compile(_model, fullgraph=True, backend="aot_eager")


@pytest.mark.slow
def test_numba_scipy_two_outputs_one_graph() -> None:
    x, y = _xy()
    explained = torch._dynamo.explain(_model)(x, y)
    assert explained.graph_break_count == 0
    assert explained.graph_count == 1
    torch.testing.assert_close(COMPILED(x, y), _model(x, y))


@pytest.mark.slow
def test_cython_kernel_one_graph() -> None:
    ffill = cython_ffill()

    def f(a: Any) -> Any:
        return ffill(a * 2) + 1

    x = torch.tensor([[1.0, float("nan"), 3.0], [float("nan"), 2.0, float("nan")]])
    assert torch._dynamo.explain(f)(x).graph_break_count == 0
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(x)
    expected = torch.tensor([[3.0, 3.0, 7.0], [float("nan"), 5.0, 5.0]])
    torch.testing.assert_close(got, expected, equal_nan=True)


def test_compiled_backward_uses_the_vjp() -> None:
    x, y = (t.requires_grad_() for t in _xy())
    before = dict(VJP_CALLS)
    COMPILED(x, y).sum().backward()
    assert VJP_CALLS["sin_scale"] == before["sin_scale"] + 1
    assert VJP_CALLS["erf"] == before["erf"] + 1
    assert VJP_CALLS["polar"] == before["polar"] + 1
    gx, gy = x.grad, y.grad
    x2, y2 = (t.detach().requires_grad_() for t in (x, y))
    _model(x2, y2).sum().backward()
    torch.testing.assert_close(gx, x2.grad)
    torch.testing.assert_close(gy, y2.grad)


def test_dynamic_compiles_once_for_several_sizes() -> None:
    graphs = []

    def backend(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    f = torch.compile(
        lambda a, b: sin_scale(a, b) * 2, backend=backend, dynamic=True, fullgraph=True
    )
    for n in (5, 9, 17):
        x, y = _xy(n)
        torch.testing.assert_close(f(x, y), torch.sin(x) * y * 2)
    assert len(graphs) == 1


def test_export_module() -> None:
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(
                torch.linspace(0.5, 1.5, 8, dtype=torch.float64)
            )

        def forward(self, a: Any) -> Any:
            return erf(sin_scale(a, self.w, scale=0.5)).sum()

    model = Model()
    x, _ = _xy()
    program = torch.export.export(model, (x,))
    names = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(name.startswith("lazyapply.") for name in names), names
    torch.testing.assert_close(program.module()(x), model(x))


def test_opcheck_generated_op() -> None:
    x, y = _xy()
    op = prepare_op(sin_scale.eager, sin_scale.spec, 2)
    site = site_of(("<lazyapply tensor argument>",) * 2, {"scale": 3.0})
    torch.library.opcheck(op, (x, y.requires_grad_(), site))
    assert op._qualname.startswith("lazyapply::")


def test_op_names_are_unique_per_kernel_and_spec() -> None:
    a = prepare_op(positives.eager, positives.spec, 1)
    b = prepare_op(unknown_size.eager, unknown_size.spec, 1)
    assert a is prepare_op(positives.eager, positives.spec, 1)
    assert a is not prepare_op(positives.eager, positives.spec, 2)
    assert a._qualname != b._qualname
    assert "positives" in a._qualname


def test_data_dependent_size_needs_a_shape_under_compile() -> None:
    x = torch.tensor([1.0, -2.0, 3.0])
    torch.testing.assert_close(unknown_size(x), torch.tensor([1.0, 3.0]))  # eagerly
    f = torch.compile(lambda a: unknown_size(a) + 1, fullgraph=True, backend="eager")
    # Dynamo re-raises the fake implementation's SpecError as its own error type.
    with pytest.raises(Exception, match=r"positives .*unknown size.*declare shape="):
        f(x)


def test_vmap_makes_one_batched_call() -> None:
    calls = []

    def kernel(a: Any, b: Any) -> Any:
        calls.append(a.shape)
        return np.sin(a) * b

    from lazyapply import lazy

    f = lazy(kernel, as_numpy=True, elementwise=True)
    x = torch.rand(4, 3, dtype=torch.float64)
    y = torch.rand(3, dtype=torch.float64)
    got = torch.func.vmap(f, in_dims=(0, None))(x, y)
    torch.testing.assert_close(got, torch.sin(x) * y)
    assert calls == [(4, 3)]


@pytest.mark.slow
def test_inductor_matches_eager() -> None:
    x, y = _xy()
    compiled = torch.compile(_model, fullgraph=True)
    torch.testing.assert_close(compiled(x, y), _model(x, y))


@pytest.mark.slow
def test_cached_compiled_graphs_find_their_ops_in_a_new_process(tmp_path: Any) -> None:
    """Op names follow the kernel and spec, not the order of registration.

    A graph that Inductor cached on disk names the ops it calls; a second process that
    loads it (same cache directory) must have registered the same names, the vjp's op
    included. It failed when names took a counter suffix in registration order.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "PYTHONPATH": str(root),
    }
    script = [sys.executable, str(root / "examples" / "torch_compile_training.py")]
    for run in (1, 2):
        proc = subprocess.run(
            script, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, (run, proc.stdout[-2000:], proc.stderr[-3000:])


def _typed(x: Any, a: Any, *, pair: Any = (0, 0)) -> Any:
    # The value and the type of each number: a float passed as a float64 operand
    # must come back a float, an int an int, a bool a bool.
    tag = sum(10.0**k for k, v in enumerate((a, *pair)) if type(v) is float)
    return (x * a + pair[0] - pair[1] + tag + 1000 * (type(a) is bool)).astype(x.dtype)


def _mul_vjp(g: Any, out: Any, x: Any, a: Any) -> tuple[Any, None]:
    return g * a, None


typed = lazy(_typed, as_numpy=True, elementwise=True)


def _mul(x: Any, a: Any) -> Any:
    return x * a


mul = lazy(_mul, as_numpy=True, elementwise=True, vjp=_mul_vjp)


@pytest.mark.slow
@pytest.mark.parametrize("fullgraph", [True, False])
def test_numbers_that_change_between_calls_give_eager_values(fullgraph: bool) -> None:
    # Dynamo makes a number that changed since the last compile symbolic: it is the
    # op's data then, not a constant of the graph.
    torch._dynamo.reset()
    f = torch.compile(
        lambda t, a, p: typed(t, a, pair=p), fullgraph=fullgraph, backend="aot_eager"
    )
    x = torch.arange(4.0, dtype=torch.float64)
    values = [
        (2.0, (1, 2)),
        (3.0, (1.0, 2.0)),
        (-4.5, (3, 4)),
        (0.0, (5.5, 6.0)),
        (1, (7, 8)),
        (True, (1, 2)),
        (5, (2.0, 1.0)),
    ]
    for a, p in values:
        got = f(x, a, p).numpy()
        np.testing.assert_array_equal(got, _typed(x.numpy(), a, pair=p))


@pytest.mark.slow
def test_a_float_that_changes_keeps_its_vjp_under_compile() -> None:
    torch._dynamo.reset()
    f = torch.compile(lambda t, a: mul(t, a).sum(), fullgraph=True, backend="aot_eager")
    for a in (2.0, 3.0, -0.5):
        x = torch.arange(4.0, dtype=torch.float64, requires_grad=True)
        f(x, a).backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full(4, a))


_SIN = lazy(np.sin, as_numpy=True, elementwise=True)
_CENTER = lazy(lambda x: x - x.mean(), as_numpy=True)
_SIN_COS = lazy(
    lambda x: (np.sin(x), np.cos(x)),
    as_numpy=True,
    elementwise=True,
    shape=lambda x: [x.shape] * 2,
    dtype=lambda x: [x.dtype] * 2,
)


@pytest.mark.parametrize("kind", ["elementwise", "whole-array", "two outputs"])
def test_vmap_inside_compile_of_an_op_without_a_site(kind: str) -> None:
    """A call on tensors alone goes through an op without a site operand; its
    torch.func.vmap rule is the site-taking op's, given the site."""
    x = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)
    a = x.numpy()
    if kind == "elementwise":
        f, want = torch.func.vmap(_SIN), np.sin(a)
    elif kind == "whole-array":
        f, want = torch.func.vmap(_CENTER), a - a.mean(1, keepdims=True)
    else:
        f, want = (lambda t: torch.func.vmap(_SIN_COS)(t)[1]), np.cos(a)
    torch._dynamo.reset()
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(x)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
