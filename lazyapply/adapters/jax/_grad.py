"""JAX derivatives of a lazy kernel: its declared vjp and jvp as custom rules.

A kernel with declared derivatives is staged (once per signature, see :mod:`._stage`)
as a ``jax.custom_vjp`` and/or a ``jax.custom_jvp`` of its operands. The primal is the
plain staging of the kernel (callback, native or per shard). The backward rule stages
the vjp kernel through the same adapter (:meth:`JaxAdapter.stage_kernel`: the one
metadata function and one prepared :class:`~lazyapply._call.KernelCall`, never the
engine's entry point), so it is itself a callback when traced and batched under
``vmap`` as the kernel's mode allows; it runs now on concrete values (eager
``jax.grad``).

Higher order: the vjp is a kernel too. When the vjp declares its own vjp (the
function given to ``defvjp`` is a ``@lazy(vjp=...)`` function), the vjp's staging is
differentiable again, so ``jax.grad(jax.grad(f))`` and ``jax.jacrev(jax.jacrev(f))``
work; without one, the error names the declaration to add.

JAX does not allow one function to carry both ``custom_vjp`` and ``custom_jvp``, and a
host callback has no transpose, so reverse mode cannot be derived from a declared
jvp. Forward mode can be derived from a vjp (:func:`._forward.jvp_from_vjp`: ``J t``
read off ``J^T``, in ``jnp`` arithmetic that JAX transposes and differentiates again),
which gives ``jax.jvp``, ``jax.linearize`` and, with the vjp's own vjp,
``jax.hessian``. The call picks a rule from the transformation that is tracing it
(:func:`._forward.forward_mode`): reverse mode always gets the declared vjp itself,
forward mode the declared jvp or the one read off the vjp. Inside ``jax.jit`` the
mode is not known yet (``jax.grad(jax.jit(f))``, ``jax.hessian(jax.jit(f))``): the
call is a ``custom_jvp`` whose tangent is a linear call whose transpose is the vjp
(:func:`._forward.either_mode`, :mod:`._linear`), so reverse mode still calls the
vjp once and forward mode works too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lazyapply._errors import NotDifferentiableError
from lazyapply._grad import jvp_spec, vjp_spec
from lazyapply._grad_kernels import VjpOfVjp, own_vjp, second_order_hint
from lazyapply.adapters.jax._forward import either_mode, forward_mode, jvp_from_vjp
from lazyapply.adapters.jax._stage import Decision, Route, Stager, Staging
from lazyapply.spec._build import derive_spec

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.adapters.jax import JaxAdapter
    from lazyapply.spec._metadata import Layout

__all__ = ["differentiable"]


def differentiable(
    adapter: JaxAdapter,
    stager: Stager,
    call: KernelCall,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    layout: Layout,
) -> Staging:
    """The staging of one signature of a kernel with declared derivatives."""
    rules = _Rules(adapter, stager, call, args, positions, layout)
    what = "+".join(k for k in ("vjp", "jvp") if getattr(stager.spec, k) is not None)
    return Staging(rules.staged, Decision(Route.DIFFERENTIABLE, what))


class _Rules:
    """The primal, the ``custom_vjp`` and the ``custom_jvp`` of one signature."""

    def __init__(
        self,
        adapter: JaxAdapter,
        stager: Stager,
        call: KernelCall,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        layout: Layout,
    ) -> None:
        import jax
        import jax.numpy as jnp

        self.adapter = adapter
        self.spec = spec = stager.spec
        self.name = call.name
        primal = stager.derived.get("primal")
        if primal is None:  # the kernel without rules: no recursion into this class
            plain = derive_spec(spec, vjp=None, jvp=None)
            primal = stager.derived["primal"] = Stager(stager.func, plain, stager.hint)
        self.primal_stager = primal
        self.plain = adapter.plain(primal, call, args, positions, layout)
        self.kwargs = call.kwargs
        self.statics = tuple(None if i in positions else a for i, a in enumerate(args))
        self.positions = positions
        self.floats = tuple(
            i for i in positions if jnp.issubdtype(args[i].dtype, jnp.inexact)
        )
        self.multi = layout.multi
        self.vjp_stager: Stager | None = None
        self.by_vjp: Any = None
        self.by_jvp: Any = None
        if spec.vjp is not None:
            self.by_vjp = jax.custom_vjp(self.primal)
            self.by_vjp.defvjp(self.fwd, self.bwd)
        if spec.jvp is not None:
            self.by_jvp = jax.custom_jvp(self.primal)
            self.by_jvp.defjvp(self.jvp_rule)
        elif spec.vjp is not None:  # forward mode from the vjp (jax.hessian)
            self.by_jvp = jax.custom_jvp(self.primal)
            self.by_jvp.defjvp(self.jvp_from_vjp)
        self.by_either: Any = None
        if spec.vjp is not None:  # inside jax.jit, for a mode not known yet
            self.by_either = jax.custom_jvp(self.primal)
            self.by_either.defjvp(self.either_mode)

    def args(self, operands: tuple[Any, ...]) -> tuple[Any, ...]:
        args = list(self.statics)
        for i, a in zip(self.positions, operands, strict=True):
            args[i] = a
        return tuple(args)

    def primal(self, *operands: Any) -> Any:
        """The kernel: staged when traced, run now on concrete values (eager grad)."""
        if self.adapter.deferred(operands):
            return self.plain(*operands)
        args = self.args(operands)
        return self.adapter.stage_kernel(self.primal_stager, args, self.kwargs)

    def staged(self, *operands: Any) -> Any:
        """Call the rule that the tracing transformation needs."""
        forward = forward_mode(operands)
        if forward is None:  # not known here (inside jax.jit): a rule for both modes
            return (self.by_either or self.by_jvp)(*operands)
        rule = self.by_jvp if forward else self.by_vjp
        if rule is None:  # forward mode always has a rule (from the vjp if need be)
            name = self.name
            msg = (
                f"{name} (jax (traced)): reverse-mode (jax.grad, jax.vjp, jax.jacrev) "
                f"differentiation needs a declared vjp, and {name} has only a jvp; "
                f"declare it with @{name}.defvjp or lazy(..., vjp=...)"
            )
            raise NotDifferentiableError(msg)
        return rule(*operands)

    def fwd(self, *operands: Any) -> tuple[Any, Any]:
        # The rules, not the plain staging: an outer differentiation of this forward
        # pass (grad of grad) uses them again, or says what to declare.
        out = self.staged(*operands)
        return out, (operands, out)

    def bwd(self, res: tuple[Any, Any], g: Any) -> tuple[Any, ...]:
        import jax.numpy as jnp

        operands, out = res
        outs = out if self.multi else (out,)
        gs = g if self.multi else (g,)
        # jax.vjp's caller may pass NumPy cotangents (check_grads does); an integer
        # output's cotangent is float0, which no kernel can take: zeros instead.
        grads = tuple(
            jnp.zeros(o.shape, o.dtype)
            if getattr(c, "dtype", None) == _float0() or c is None
            else jnp.asarray(c)
            for c, o in zip(gs, outs, strict=True)
        )
        if not self.floats:
            return (None,) * len(self.positions)
        args = self.args(operands)
        stager = self.vjp_stager or self._vjp_stager(outs, args)
        cts = self.adapter.stage_kernel(stager, (*grads, *outs, *args), self.kwargs)
        by_pos = dict(zip(self.floats, cts, strict=True))
        # None: a zero cotangent, which JAX turns into float0 for integer operands.
        return tuple(by_pos.get(i) for i in self.positions)

    def _vjp_stager(self, outs: tuple[Any, ...], args: tuple[Any, ...]) -> Stager:
        """The vjp kernel, its spec and stager: made once for this signature."""
        grads = outs  # only their number matters to the vjp's spec
        kernel, vspec = vjp_spec(self.spec, grads, outs, args, self.floats, self.multi)
        own = own_vjp(self.spec.vjp)
        if own is not None:  # second derivatives: the vjp's own vjp, flattened
            second = VjpOfVjp(
                own, self.name, len(outs), self.multi, self.floats, len(args)
            )
            vspec = derive_spec(vspec, vjp=second)
        stager = self.adapter.prepare(kernel, vspec)
        stager.hint = second_order_hint(self.name, "jax.grad(jax.grad(f)), jax.hessian")
        self.vjp_stager = stager
        return stager

    def jvp_rule(
        self, primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        import jax.numpy as jnp

        out = self.staged(*primals)  # the rules: an outer derivative uses them
        by_pos = dict(zip(self.positions, tangents, strict=True))
        picked = tuple(jnp.asarray(by_pos[i]) for i in self.floats)
        return out, self.declared_jvp(primals, out, picked)

    def declared_jvp(
        self, primals: tuple[Any, ...], out: Any, picked: tuple[Any, ...]
    ) -> Any:
        """The declared jvp kernel on the float operands' tangents ``picked``."""
        args = self.args(primals)
        outs = out if self.multi else (out,)
        stager = self._jvp_stager(outs, args)
        return self.adapter.stage_kernel(stager, (*picked, *outs, *args), self.kwargs)

    def jvp_from_vjp(
        self, primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        return jvp_from_vjp(self, primals, tangents)

    def either_mode(
        self, primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        return either_mode(self, primals, tangents)

    def _jvp_stager(self, outs: tuple[Any, ...], args: tuple[Any, ...]) -> Stager:
        found = getattr(self, "jvp_stager", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
        kernel, jspec = jvp_spec(self.spec, outs, args, self.floats, self.multi)
        stager = self.adapter.prepare(kernel, jspec)
        self.jvp_stager = stager
        return stager


def _float0() -> Any:
    import jax

    return jax.dtypes.float0
