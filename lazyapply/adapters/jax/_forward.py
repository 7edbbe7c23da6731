"""Forward mode for kernels with declared derivatives: which mode traces a call,
``J t`` read off a declared vjp, and the rule of a call traced before its mode is
known (see :mod:`._grad`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lazyapply.adapters.jax._grad import _Rules

__all__ = ["either_mode", "forward_mode", "jvp_from_vjp"]


def jvp_from_vjp(
    rules: _Rules, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, Any]:
    """Forward mode from the declared vjp: ``J t`` with ``J`` read off ``J^T``.

    An elementwise kernel whose differentiable arguments span the output has a
    diagonal Jacobian per argument: one vjp call per output with a cotangent of
    ones gives its diagonals. Any other kernel's Jacobian is materialised by
    the vjp of every basis cotangent (``jax.vmap``: one batched call, or one
    call per element for a whole-array kernel). The product with the tangents
    is ``jnp`` arithmetic, linear in them, so JAX transposes it and
    differentiates it again (``jax.hessian`` = ``jacfwd(jacrev(f))``: the
    vjp's own vjp gives the next order).
    """
    out = rules.staged(*primals)  # the rules: an outer derivative uses them
    by_pos = dict(zip(rules.positions, tangents, strict=True))
    picked = tuple(by_pos[i] for i in rules.floats)
    return out, _tangents_from_vjp(rules, primals, out, picked)


def _tangents_from_vjp(
    rules: _Rules, primals: tuple[Any, ...], out: Any, picked: tuple[Any, ...]
) -> Any:
    """``J t`` for the float operands' tangents ``picked`` (:func:`jvp_from_vjp`)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    outs = out if rules.multi else (out,)
    by_pos = dict(zip(rules.floats, picked, strict=True))
    args = rules.args(primals)
    diagonal = rules.spec.mode.elementwise and all(
        args[i].shape == outs[0].shape for i in rules.floats
    )
    zeros = tuple(jnp.zeros(o.shape, o.dtype) for o in outs)
    t_outs: list[Any] = []
    for k, o in enumerate(outs):
        if not jnp.issubdtype(o.dtype, jnp.inexact):
            t_outs.append(np.zeros(o.shape, jax.dtypes.float0))
            continue

        def cts_of(g_k: Any, k: int = k) -> tuple[Any, ...]:
            gs = (*zeros[:k], g_k, *zeros[k + 1 :])
            return rules.bwd((primals, out), gs if rules.multi else gs[0])

        terms = []
        if diagonal:
            for i, d in zip(rules.positions, cts_of(jnp.ones_like(o)), strict=True):
                if d is not None and i in by_pos:
                    terms.append(d * by_pos[i])
        else:
            basis = jnp.eye(o.size, dtype=o.dtype).reshape((o.size, *o.shape))
            rows = jax.vmap(cts_of)(basis)  # row e: the gradient of o.flat[e]
            for i, jac in zip(rules.positions, rows, strict=True):
                if jac is not None and i in by_pos:
                    t = by_pos[i]
                    terms.append(jnp.tensordot(jac, t, axes=t.ndim))
        total = sum(terms[1:], terms[0]) if terms else jnp.zeros(o.size, o.dtype)
        t_outs.append(jnp.reshape(total, o.shape).astype(o.dtype))
    return tuple(t_outs) if rules.multi else t_outs[0]


def either_mode(
    rules: _Rules, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, Any]:
    """The tangent of a call whose derivative mode is not known when it is traced
    (inside ``jax.jit``): a :func:`~._linear.linear_call` whose forward map is the
    declared jvp (else ``J t`` read off the vjp) and whose transpose is the vjp.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = rules.staged(*primals)  # the rules: an outer derivative uses them
    outs = out if rules.multi else (out,)
    by_pos = dict(zip(rules.positions, tangents, strict=True))
    picked = tuple(jnp.asarray(by_pos[i]) for i in rules.floats)
    inexact = [k for k, o in enumerate(outs) if jnp.issubdtype(o.dtype, jnp.inexact)]
    n = len(primals)

    def fwd(*args: Any) -> list[Any]:
        ps, os_, ts = args[:n], args[n : n + len(outs)], args[n + len(outs) :]
        o = tuple(os_) if rules.multi else os_[0]
        if rules.spec.jvp is not None:
            t_out = rules.declared_jvp(ps, o, ts)
        else:
            t_out = _tangents_from_vjp(rules, ps, o, ts)
        t_outs = t_out if rules.multi else (t_out,)
        return [t_outs[k] for k in inexact]

    def bwd(*args: Any) -> list[Any]:
        ps, os_, cts = args[:n], args[n : n + len(outs)], args[n + len(outs) :]
        gs = [jnp.zeros(o.shape, o.dtype) for o in os_]
        for k, c in zip(inexact, cts, strict=True):
            gs[k] = c
        o = tuple(os_) if rules.multi else os_[0]
        by = dict(
            zip(
                rules.positions,
                rules.bwd((ps, o), tuple(gs) if rules.multi else gs[0]),
                strict=True,
            )
        )
        return [by.get(i) for i in rules.floats]

    from jax.core import ShapedArray

    from lazyapply.adapters.jax._linear import linear_call

    avals = tuple(ShapedArray(outs[k].shape, outs[k].dtype) for k in inexact)
    lin = linear_call(fwd, bwd, (*primals, *outs), picked, avals)
    t_outs: list[Any] = [np.zeros(o.shape, jax.dtypes.float0) for o in outs]
    for k, t in zip(inexact, lin, strict=True):
        t_outs[k] = t
    return out, tuple(t_outs) if rules.multi else t_outs[0]


def forward_mode(operands: tuple[Any, ...]) -> bool | None:
    """``True`` under forward mode, ``False`` under reverse, ``None`` if neither.

    The innermost transformation's tracer is the outermost one: walk each operand's
    tracers (a batch tracer wraps ``.val``) down to the first autodiff one. With
    JAX's direct linearize (the default since 0.7), reverse mode traces with
    ``LinearizeTracer`` whose trace says ``is_vjp``; ``jax.linearize`` with one that
    does not (its linear function is evaluated forward, which a ``custom_vjp``
    cannot be); forward mode with ``JVPTracer``. Older JAX reverse mode also uses
    ``JVPTracer``, so there nothing is decided here.
    """
    import jax
    from jax.core import Tracer
    from jax.interpreters.ad import JVPTracer

    linearize = _linearize_tracer()
    if linearize is None or not getattr(jax.config, "jax_use_direct_linearize", False):
        return None
    for x in operands:
        t = x
        while isinstance(t, Tracer):
            if isinstance(t, JVPTracer):
                return True
            if isinstance(t, linearize):
                # jax.vjp (grad, jacrev) transposes what it linearizes;
                # jax.linearize evaluates it forward, as jvp does.
                return not getattr(getattr(t, "_trace", None), "is_vjp", True)
            t = getattr(t, "primal", getattr(t, "val", None))
    return None


def _linearize_tracer() -> type | None:
    try:  # private in JAX 0.10; if it moves, no mode is decided (see above)
        from jax._src.interpreters.ad import LinearizeTracer
    except ImportError:
        return None
    return LinearizeTracer  # type: ignore[no-any-return]
