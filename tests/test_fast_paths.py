"""The identity fast paths of the hot path never hand one call another's strategy.

``lazy_apply`` remembers its last call's spec (matched by identity), each ``@lazy``
function its last eager strategy (matched by adapter, spec and device), and torch
decides in one question whether a call is deferred. Each test makes the call that a
stale match would answer wrongly right after the one it could be confused with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, SpecError, lazy, lazy_apply
from lazyapply._caches import cache_report, clear_caches


def _to_bool(x: Any) -> Any:
    return x > 1


def test_option_values_that_compare_equal_get_their_own_spec() -> None:
    x = np.arange(3.0)
    # The same kernel and option names: only the values' identity tells them apart.
    with pytest.raises(KernelOutputError, match="dtype"):
        lazy_apply(_to_bool, x, strict=True)
    assert lazy_apply(_to_bool, x, strict=False).dtype == np.bool_
    with pytest.raises(KernelOutputError, match="dtype"):
        lazy_apply(_to_bool, x, strict=True)
    assert lazy_apply(_to_bool, x, elementwise=True).dtype == np.bool_
    with pytest.raises(SpecError, match="elementwise"):
        lazy_apply(_to_bool, x, elementwise=1)  # 1 == True, yet refused
    for size in (3, True, 3):  # equal sizes in new tuples: (True,) is refused
        shape = (size,)
        if type(size) is int:
            out = lazy_apply(np.negative, x, shape=shape, dtype="float64")
            assert out.shape == (3,)
        else:
            with pytest.raises(SpecError, match="tuple of sizes"):
                lazy_apply(np.negative, x, shape=shape, dtype="float64")


def test_kernel_keywords_beside_a_remembered_spec() -> None:
    def scaled(x: Any, scale: float) -> Any:
        return x * scale

    x = np.arange(3.0)
    for scale in (2.0, -0.0, 3):  # the keywords change, the spec does not
        got = lazy_apply(scaled, x, shape=(3,), dtype="float64", scale=scale)
        np.testing.assert_array_equal(got, x * scale)
        assert np.signbit(got).tolist() == np.signbit(x * scale).tolist()
    got = lazy_apply(scaled, x, strict=True, scale=2.0)  # an option and a keyword
    np.testing.assert_array_equal(got, x * 2.0)
    got = lazy_apply(scaled, x, strict=True, scale=5.0)
    np.testing.assert_array_equal(got, x * 5.0)


def test_declared_dtype_objects_of_array_api_strict() -> None:
    """Its dtypes are keyed by identity: a remembered float64 is never float32."""
    xs = pytest.importorskip("array_api_strict")
    x = xs.asarray([1.0, 2.0], dtype=xs.float64)
    out = lazy_apply(xs.negative, x, shape=(2,), dtype=xs.float64, strict=True)
    assert out.dtype == xs.float64
    with pytest.raises(KernelOutputError, match="dtype"):
        lazy_apply(xs.negative, x, shape=(2,), dtype=xs.float32, strict=True)
    out = lazy_apply(xs.negative, x, shape=(2,), dtype=xs.float64, strict=True)
    assert out.dtype == xs.float64


def test_lazy_functions_called_in_turn_and_on_two_libraries() -> None:
    """Each @lazy function's own slot: per adapter and device, never per kernel only."""
    sparse = pytest.importorskip("sparse")
    double = lazy(lambda a: a * 2)
    negate = lazy(lambda a: -a)
    x = np.arange(4.0)
    s = sparse.COO.from_numpy(x)
    for _ in range(2):
        np.testing.assert_array_equal(double(x), x * 2)
        np.testing.assert_array_equal(negate(x), -x)
        # NumPy and sparse both answer "no device": the adapter tells them apart.
        out = double(s)
        assert isinstance(out, sparse.SparseArray)
        np.testing.assert_array_equal(out.todense(), x * 2)


def test_clear_caches_empties_the_slots_of_lazy_functions() -> None:
    double = lazy(lambda a: a * 2)
    double(np.ones(2))
    name = "engine: last eager call of each @lazy function"
    assert cache_report()[name]["size"] >= 1
    clear_caches()
    assert cache_report()[name]["size"] == 0
    np.testing.assert_array_equal(double(np.ones(2)), [2.0, 2.0])


# ------------------------------------------------------------------------ torch
def test_torch_code_runs_now_whatever_requires_grad() -> None:
    """Autograd records torch code itself: with grad or without, the same call, and
    the loose policy returns what the kernel returned (a sum, not the inferred
    broadcast shape)."""
    torch = pytest.importorskip("torch")
    x = torch.arange(3.0, dtype=torch.float64, requires_grad=True)
    out = lazy_apply(lambda a: (a * a).sum(), x)
    assert out.shape == ()
    out.backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())
    with pytest.raises(KernelOutputError, match="shape"):
        lazy_apply(lambda a: a.sum(), x, strict=True)
    with pytest.raises(KernelOutputError, match="shape"):
        lazy_apply(lambda a: a.sum(), x.detach(), strict=True)


def test_torch_opaque_kernel_still_sees_requires_grad() -> None:
    """As_numpy: deferred (refused without a vjp) only where grad is on."""
    torch = pytest.importorskip("torch")
    from lazyapply import NotDifferentiableError

    opaque = lazy(as_numpy=True)(np.sin)
    x = torch.arange(3.0, dtype=torch.float64)
    np.testing.assert_allclose(opaque(x).numpy(), np.sin(x.numpy()))
    with pytest.raises(NotDifferentiableError, match="defvjp"):
        opaque(x.clone().requires_grad_())
    with torch.no_grad():
        got = opaque(x.clone().requires_grad_())
    np.testing.assert_allclose(got.numpy(), np.sin(x.numpy()))


def test_torch_subclass_among_many_arguments_is_deferred() -> None:
    """A tensor subclass anywhere (not only first) takes torch's deferred path."""
    torch = pytest.importorskip("torch")

    class Tagged(torch.Tensor):
        pass

    seen: list[type] = []

    def kernel(*xs: Any) -> Any:
        seen.extend(type(a) for a in xs)
        return xs[0] + xs[1]

    a = torch.ones(3)
    b = torch.ones(3).as_subclass(Tagged)
    out = lazy_apply(kernel, a, b, a, strict=True)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), torch.full((3,), 2.0))
    assert Tagged in seen
