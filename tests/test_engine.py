"""The engine: one call site, the output policy (``strict``) and the device rule."""

from __future__ import annotations

import os
import sys as _sys
from typing import Any

import numpy as np
import pytest

from lazyapply import KernelOutputError, lazy, lazy_apply
from tests._python import run_python
from tests.conftest import Backend

CALLERS: list[str] = []


def _recording(x: Any, *rest: Any) -> Any:
    frame = _sys._getframe(1)
    CALLERS.append(f"{frame.f_code.co_filename}:{frame.f_code.co_qualname}")
    return x * 2


def _run(backend: Backend, f: Any, *args: Any) -> Any:
    """``backend.call`` and, on Dask, compute: errors of lazy backends surface here.

    Under ``jax.jit`` a kernel's error reaches the caller as JAX's runtime error with
    the original type and message in its text: it is raised again as that type.
    """
    try:
        out = backend.call(f, *args)
    except Exception as exc:
        if type(exc).__name__ == "JaxRuntimeError" and "KernelOutputError" in str(exc):
            raise KernelOutputError(str(exc)) from exc
        raise
    if backend is Backend.DASK:
        return out.persist()  # computed, still a Dask array
    return out


def _paths(backend: Backend) -> list[dict[str, Any]]:
    paths: list[dict[str, Any]] = [{}]
    if backend.converts_to_numpy:
        paths.append({"as_numpy": True})
    if backend.is_lazy:
        paths += [{"elementwise": True}, {"signature": "()->()"}]
        if backend is Backend.DASK:
            paths.append({"depth": 1})
    return paths


def test_one_call_site(backend: Backend) -> None:
    """Whatever the path, the kernel is called from KernelCall.run and nowhere else."""
    x = backend.asarray(np.arange(4.0))
    outs = []
    for options in _paths(backend):
        CALLERS.clear()
        outs.append(
            _run(backend, lambda a, o=options: lazy_apply(_recording, a, **o), x)
        )
        assert set(CALLERS) == {
            os.path.join(os.path.dirname(os.path.dirname(__file__)), "lazyapply")
            + "/_call.py:KernelCall.run"
        }, (options, CALLERS)
    for out in outs:
        np.testing.assert_array_equal(backend.values_or_skip(out), np.arange(4.0) * 2)


def test_one_call_site_under_vmap() -> None:
    jax = pytest.importorskip("jax")
    CALLERS.clear()
    x = jax.numpy.arange(6.0).reshape(2, 3)
    for options in ({}, {"elementwise": True}):
        out = jax.vmap(lambda a, o=options: lazy_apply(_recording, a, **o))(x)
        np.testing.assert_array_equal(np.asarray(out), np.arange(6.0).reshape(2, 3) * 2)
    assert {c.rsplit(":", 1)[1] for c in CALLERS} == {"KernelCall.run"}


# ----------------------------------------------------------------- output policy
def _to_bool(x: Any) -> Any:
    return x > 1


def test_strict_rejects_undeclared_dtype_everywhere(backend: Backend) -> None:
    """A kernel returning bool from floats fails on every backend, as on Dask."""
    x = backend.asarray(np.arange(4.0))
    f = lazy(_to_bool)  # strict=True is the decorator's default
    with pytest.raises(KernelOutputError, match=r"_to_bool .*dtype \S*bool.*dtype="):
        _run(backend, f, x)
    out = _run(backend, lazy(_to_bool, dtype=bool), x)
    assert out.dtype == backend.xp.bool
    np.testing.assert_array_equal(
        backend.values_or_skip(out), [False, False, True, True]
    )


def test_loose_policy_returns_what_the_kernel_returned(backend: Backend) -> None:
    """strict=False: eager backends keep the kernel's dtype; lazy ones still check."""
    x = backend.asarray(np.arange(4.0))
    if backend.is_lazy:
        with pytest.raises(KernelOutputError, match=r"_to_bool .*dtype="):
            _run(backend, lambda a: lazy_apply(_to_bool, a, dtype="float64"), x)
        return
    out = backend.call(lambda a: lazy_apply(_to_bool, a, dtype="float64"), x)
    assert out.dtype == backend.xp.bool


def test_array_likes_never_invent_values(backend: Backend) -> None:
    """Whatever the policy, 1.5 never becomes 1 and a string never becomes a float."""
    x = backend.asarray(np.arange(2.0))
    for kernel, dtype in ((lambda a: [1.5, 2.5], "int64"), (lambda a: "ab", "float64")):

        def call(a: Any, k: Any = kernel, d: str = dtype) -> Any:
            shape = (2,) if d == "int64" else ()
            return lazy_apply(k, a, shape=shape, dtype=d, strict=True)

        with pytest.raises(KernelOutputError, match="dtype"):
            _run(backend, call, x)


def test_none_output_is_an_error(backend: Backend) -> None:
    x = backend.asarray(np.arange(2.0))
    with pytest.raises(KernelOutputError, match="forget a return"):
        _run(backend, lambda a: lazy_apply(lambda u: None, a), x)


def test_a_list_of_arrays_for_one_output_names_both_fixes(backend: Backend) -> None:
    """A list meant as one array's values: np.asarray; several outputs: shape=[...]."""
    x = backend.asarray(np.arange(3.0))

    def stats(a: Any) -> Any:
        return [a[0], a[-1]]  # 0-d arrays (NumPy scalars): one array meant

    with pytest.raises(KernelOutputError, match=r"stats .*np\.asarray\(\.\.\.\)"):
        _run(backend, lambda a: lazy_apply(stats, a, shape=(2,)), x)


@pytest.mark.slow
def test_environment_turns_strict_on() -> None:
    code = (
        "import numpy as np\n"
        "from lazyapply import lazy_apply, KernelOutputError\n"
        "try:\n"
        "    lazy_apply(lambda u: u > 1, np.arange(3.0))\n"
        "except KernelOutputError as e:\n"
        "    print('raised', e)\n"
        "else:\n"
        "    print('returned')\n"
    )
    on = run_python("-c", code, env={"LAZYAPPLY_STRICT": "1"})
    assert on.stdout.startswith("raised"), on.stdout + on.stderr
    off = run_python("-c", code, env={"LAZYAPPLY_STRICT": "0"})
    assert off.stdout.strip() == "returned", off.stdout + off.stderr


# ------------------------------------------------------------------ device rule
def test_outputs_come_back_to_the_callers_device() -> None:
    """A kernel that forgets device= gets its output moved to the input's device."""
    torch = pytest.importorskip("torch")
    x = torch.ones(3, device="meta")
    out = lazy_apply(lambda a: torch.zeros(a.shape), x)
    assert out.device == x.device
    xs = pytest.importorskip("array_api_strict")
    y = xs.asarray([1.0, 2.0], device=xs.Device("device1"))
    out = lazy_apply(lambda a: xs.asarray([0.0, 0.0]), y)
    assert out.device == y.device
    np.testing.assert_array_equal(
        np.asarray(xs.asarray(out, device=xs.Device("CPU_DEVICE"))), [0.0, 0.0]
    )


def test_inputs_are_never_moved() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(3, device="meta")
    with pytest.raises(TypeError, match="meta"):
        lazy_apply(lambda a: a, x, as_numpy=True)
