"""JAX derivatives of a lazy kernel: its declared vjp and jvp as custom rules.

A kernel with a declared vjp becomes one ``jax.custom_vjp`` of its array operands,
built once per kernel, spec and static arguments (:func:`build_differentiable`). Its
primal is the plain staging (a host callback under a trace); its backward calls
:func:`lazyapply._grad.run_vjp` on the residuals, which is again a callback when
traced, batched under ``vmap`` as the kernel's mode allows.

JAX does not allow one function to carry both ``custom_vjp`` and ``custom_jvp``, and a
``pure_callback`` has no transpose, so reverse mode cannot be derived from a declared
jvp (nor forward mode from a vjp). Both rules are therefore built, and the call picks
one from the transformation that is tracing it: a forward-mode tracer (``jax.jvp``,
``jacfwd``) gets the ``custom_jvp``, anything else the ``custom_vjp``. A mode whose rule
is missing raises :class:`~lazyapply.NotDifferentiableError` naming the kernel and the
``def*`` to add. The choice sees only the operands: forward mode applied *outside* a
``jax.jit`` (``jax.jvp(jax.jit(f))``) reaches the jitted ``custom_vjp`` and gets JAX's
own error; put ``jit`` outside ``jvp`` instead.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._errors import NotDifferentiableError
from lazyapply._grad import run_jvp, run_vjp
from lazyapply.spec import CallSpec

if TYPE_CHECKING:
    from lazyapply.adapters.jax import JaxAdapter

__all__ = ["Differentiable", "build_differentiable"]


class Differentiable:
    """A kernel's preparation (``JaxAdapter.prepare``) when it declares derivatives.

    Made once per kernel and spec by the engine; holds the rules built for each set
    of static arguments (Python scalars, ``None``, keyword arguments), which are baked
    into the rules as they are into the plain callback.
    """

    def __init__(self, adapter: JaxAdapter, kernel: Callable[..., Any], spec: CallSpec):
        self.adapter = adapter
        self.kernel = kernel
        self.spec = spec
        self.built: dict[Any, Callable[..., Any]] = {}

    def stage(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Stage ``kernel(*args, **kwargs)`` with its rules (some args are traced)."""
        import jax

        positions = tuple(i for i, a in enumerate(args) if isinstance(a, jax.Array))
        statics = tuple(None if i in positions else a for i, a in enumerate(args))
        staged = build_differentiable(self, statics, positions, kwargs)
        return staged(*(args[i] for i in positions))


def build_differentiable(
    prepared: Differentiable,
    statics: tuple[Any, ...],
    positions: tuple[int, ...],
    kwargs: dict[str, Any],
) -> Callable[..., Any]:
    """The kernel as a differentiable JAX function of its array operands.

    Cached on the kernel's preparation, per ``(statics, positions, kwargs)``:
    ``statics`` are the positional arguments with ``None`` at the operands'
    ``positions``. Unhashable static values build a fresh function (only slower).
    """
    rules = functools.partial(_Rules, prepared, statics, positions, kwargs)
    try:
        key = (
            tuple((type(a), a) for a in statics),
            positions,
            tuple(sorted((k, type(v), v) for k, v in kwargs.items())),
        )
        staged = prepared.built.get(key)
    except TypeError:
        return rules().staged
    if staged is None:
        staged = rules().staged
        if len(prepared.built) > 256:  # bounded; a rebuild is only microseconds
            prepared.built.clear()
        prepared.built[key] = staged
    return staged


class _Rules:
    """The primal, the ``custom_vjp`` and the ``custom_jvp`` of one kernel call."""

    def __init__(
        self,
        prepared: Differentiable,
        statics: tuple[Any, ...],
        positions: tuple[int, ...],
        kwargs: dict[str, Any],
    ) -> None:
        import jax

        self.adapter = prepared.adapter
        self.kernel = prepared.kernel
        self.spec = spec = prepared.spec
        # The primal runs the plain kernel: without rules, so no recursion here.
        self.plain = dataclasses.replace(spec, vjp=None, jvp=None)
        self.statics = statics
        self.positions = positions
        self.kwargs = kwargs
        self.by_vjp: Any = None
        self.by_jvp: Any = None
        if spec.vjp is not None:
            self.by_vjp = jax.custom_vjp(self.primal)
            self.by_vjp.defvjp(self.fwd, self.bwd)
        if spec.jvp is not None:
            self.by_jvp = jax.custom_jvp(self.primal)
            self.by_jvp.defjvp(self.jvp_rule)

    def asarray(self, a: Any) -> Any:
        import jax

        return a if isinstance(a, jax.Array) else jax.numpy.asarray(a)

    def args(self, operands: tuple[Any, ...]) -> tuple[Any, ...]:
        args = list(self.statics)
        for i, a in zip(self.positions, operands, strict=True):
            args[i] = a
        return tuple(args)

    def primal(self, *operands: Any) -> Any:
        from lazyapply._engine import run

        # Through the engine: a callback when traced, the kernel now when concrete
        # (eager jax.grad calls the forward rule with concrete arrays).
        args = self.args(operands)
        return run(
            self.adapter, operands[0], self.kernel, args, self.kwargs, self.plain, None
        )

    def staged(self, *operands: Any) -> Any:
        """Call the rule that the tracing transformation needs."""
        forward = _forward_mode(operands)
        if forward is None:  # no derivative asked for here: either rule will do
            return (self.by_vjp or self.by_jvp)(*operands)
        rule = self.by_jvp if forward else self.by_vjp
        if rule is None:
            name = self.spec.name
            how, what = (
                ("jvp", "forward-mode (jax.jvp, jax.jacfwd)")
                if forward
                else ("vjp", "reverse-mode (jax.grad, jax.vjp, jax.jacrev)")
            )
            msg = (
                f"{name} (jax (traced)): {what} differentiation needs a declared "
                f"{how}, and {name} has none; declare it with @{name}.def{how} or "
                f"lazy(..., {how}=...)"
            )
            raise NotDifferentiableError(msg)
        return rule(*operands)

    def fwd(self, *operands: Any) -> tuple[Any, Any]:
        out = self.primal(*operands)
        return out, (operands, out)

    def bwd(self, res: tuple[Any, Any], g: Any) -> tuple[Any, ...]:
        operands, out = res
        args = self.args(operands)
        multi = isinstance(out, tuple)
        # jax.vjp's caller may pass NumPy cotangents (check_grads does).
        grads = tuple(map(self.asarray, g if multi else (g,)))
        outs = out if multi else (out,)
        floats = _float_positions(args, self.positions)
        cts = run_vjp(self.spec, grads, outs, args, self.kwargs, floats, multi)
        by_pos = dict(zip(floats, cts, strict=True))
        # None: a zero cotangent, which JAX turns into float0 for integer operands.
        return tuple(by_pos.get(i) for i in self.positions)

    def jvp_rule(
        self, primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        out = self.primal(*primals)
        args = self.args(primals)
        multi = isinstance(out, tuple)
        floats = _float_positions(args, self.positions)
        by_pos = dict(zip(self.positions, tangents, strict=True))
        picked = tuple(self.asarray(by_pos[i]) for i in floats)
        outs = out if multi else (out,)
        t_out = run_jvp(self.spec, picked, outs, args, self.kwargs, floats, multi)
        return out, t_out


def _float_positions(
    args: tuple[Any, ...], positions: tuple[int, ...]
) -> tuple[int, ...]:
    import jax.numpy as jnp

    return tuple(i for i in positions if jnp.issubdtype(args[i].dtype, jnp.inexact))


def _forward_mode(operands: tuple[Any, ...]) -> bool | None:
    """``True`` under forward mode, ``False`` under reverse, ``None`` if neither.

    The innermost transformation's tracer is the outermost one: walk each operand's
    tracers (a batch tracer wraps ``.val``) down to the first autodiff one. With
    JAX's direct linearize (the default since 0.7), reverse mode traces with
    ``LinearizeTracer``; forward mode with ``JVPTracer``. Older JAX reverse mode also
    uses ``JVPTracer``, so there nothing is decided here.
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
                return False
            t = getattr(t, "primal", getattr(t, "val", None))
    return None


def _linearize_tracer() -> type | None:
    try:  # private in JAX 0.10; if it moves, no mode is decided (see above)
        from jax._src.interpreters.ad import LinearizeTracer
    except ImportError:
        return None
    return LinearizeTracer  # type: ignore[no-any-return]
