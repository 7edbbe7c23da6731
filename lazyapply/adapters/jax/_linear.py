"""A linear map with a custom transpose: the tangent of a kernel whose derivative
mode is not known when it is traced.

Inside ``jax.jit`` a lazy call sees only the jit's tracers, not the differentiation
that will come (``jax.grad(jax.jit(f))``, ``jax.hessian(jax.jit(f))``): the jaxpr
must serve forward and reverse mode alike. ``jax.custom_vjp`` refuses forward mode,
and a ``jax.custom_jvp`` whose tangent is plain ``jnp`` arithmetic would make reverse
mode transpose a Jacobian materialised from the vjp. So the staging is a
``custom_jvp`` whose tangent is :func:`linear_call`: ``fwd(*res, *t)``, linear in
``t`` (the declared jvp, or ``J t`` read off the vjp), whose transpose is
``bwd(*res, *ct)`` (the declared vjp). Reverse mode then calls the vjp kernel once,
as with ``custom_vjp``; forward mode evaluates ``fwd``.

``jax.custom_derivatives.linear_call`` does the same but refuses a tangent on its
residuals (``jax.hessian`` differentiates them) and cannot be batched (``jacfwd``,
``jacrev``); this primitive differentiates ``fwd`` in its residuals with ``jax.jvp``
and batches both functions with ``jax.vmap``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["linear_call"]

_PRIMITIVE: list[Any] = []
_LOCK = threading.Lock()


def linear_call(
    fwd: Callable[..., Any],
    bwd: Callable[..., Any],
    res: tuple[Any, ...],
    lin: tuple[Any, ...],
    out_avals: tuple[Any, ...],
) -> list[Any]:
    """``fwd(*res, *lin)`` (a list of arrays of ``out_avals``), linear in ``lin``;
    its transpose is ``bwd(*res, *cts)``, one cotangent (or ``None``) per ``lin``."""
    prim = _primitive()
    return list(
        prim.bind(*res, *lin, fwd=fwd, bwd=bwd, n_res=len(res), out_avals=out_avals)
    )


def _primitive() -> Any:
    if not _PRIMITIVE:
        with _LOCK:
            if not _PRIMITIVE:
                _PRIMITIVE.append(_make())
    return _PRIMITIVE[0]


def _make() -> Any:
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching, mlir

    prim: Any = Primitive("lazyapply_linear_call")  # untyped in jax's stubs
    prim.multiple_results = True
    prim.def_impl(lambda *args, fwd, **_: list(fwd(*args)))
    prim.def_abstract_eval(lambda *_, out_avals, **__: out_avals)
    mlir.register_lowering(prim, _lower, cacheable=False)
    ad.primitive_jvps[prim] = functools.partial(_jvp, prim)
    ad.primitive_transposes[prim] = _transpose
    batching.primitive_batchers[prim] = functools.partial(_batch, prim)
    return prim


def _lower(ctx: Any, *args: Any, fwd: Callable[..., Any], **_: Any) -> Any:
    from jax.interpreters import mlir

    return mlir.lower_fun(lambda *a: list(fwd(*a)), multiple_results=True)(ctx, *args)


def _jvp(prim: Any, primals: Any, tangents: Any, **params: Any) -> Any:
    """Linear in ``lin`` (the same call on their tangents), plus ``fwd``'s
    derivative in its residuals (``jax.jvp``, with ``lin`` held fixed)."""
    import jax
    from jax.interpreters import ad as jax_ad

    ad: Any = jax_ad  # untyped in jax's stubs
    n = params["n_res"]
    fwd = params["fwd"]
    out = prim.bind(*primals, **params)
    res, lin = tuple(primals[:n]), tuple(primals[n:])
    d_res, d_lin = tangents[:n], tangents[n:]
    terms = []
    if any(type(t) is not ad.Zero for t in d_lin):
        dl = tuple(ad.instantiate_zeros(t) for t in d_lin)
        terms.append(prim.bind(*res, *dl, **params))
    if any(type(t) is not ad.Zero for t in d_res):
        dr = tuple(ad.instantiate_zeros(t) for t in d_res)
        terms.append(jax.jvp(lambda *r: list(fwd(*r, *lin)), res, dr)[1])
    if not terms:
        return out, [ad.Zero(a.to_tangent_aval()) for a in params["out_avals"]]
    total = [sum(parts[1:], parts[0]) for parts in zip(*terms, strict=True)]
    return out, total


def _transpose(cts: Any, *args: Any, bwd: Callable[..., Any], **params: Any) -> Any:
    from jax.interpreters import ad as jax_ad

    ad: Any = jax_ad  # untyped in jax's stubs
    n = params["n_res"]
    res = args[:n]
    if any(ad.is_undefined_primal(r) for r in res):  # pragma: no cover - a bug
        msg = "lazyapply bug: a residual of a linear call is itself linear"
        raise AssertionError(msg)
    cts = [ad.instantiate_zeros(c) if type(c) is ad.Zero else c for c in cts]
    return [None] * n + list(bwd(*res, *cts))


def _batch(prim: Any, args: Any, dims: Any, **params: Any) -> Any:
    """Batch ``fwd`` and ``bwd`` with ``jax.vmap``; every ``lin`` and every output
    gets the batch axis first (an unbatched ``lin`` is broadcast)."""
    import jax
    import jax.numpy as jnp

    n, fwd, bwd = params["n_res"], params["fwd"], params["bwd"]
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    moved = [
        a if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims, strict=True)
    ]
    res, lin = moved[:n], moved[n:]
    lin = [
        a if d is not None else jnp.broadcast_to(a, (size, *a.shape))
        for a, d in zip(lin, dims[n:], strict=True)
    ]
    res_axes = tuple(None if d is None else 0 for d in dims[:n])
    axes = (*res_axes, *(0,) * len(lin))
    new_fwd = jax.vmap(lambda *a: list(fwd(*a)), in_axes=axes)
    new_bwd = jax.vmap(lambda *a: list(bwd(*a)), in_axes=axes)
    avals = tuple(a.update(shape=(size, *a.shape)) for a in params["out_avals"])
    outs = prim.bind(*res, *lin, fwd=new_fwd, bwd=new_bwd, n_res=n, out_avals=avals)
    return list(outs), [0] * len(outs)
