"""``f.vjp``: a lazy kernel's declared vjp, callable, and a place to declare its vjp.

``@f.vjp.defvjp`` gives the vjp a vjp of its own (second derivatives: ``jax.grad``
of ``jax.grad``, ``jax.jacrev`` of ``jax.jacrev``): the kernel's vjp is re-declared
as ``lazy(vjp_kernel, as_numpy=..., vjp=rule)``, the same as passing such a lazy
function to ``defvjp`` or ``vjp=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lazyapply._decorator import LazyFunction

__all__ = ["VjpOf"]


class VjpOf:
    """``f.vjp``: the declared vjp, callable, with ``defvjp`` for its own vjp."""

    __slots__ = ("owner",)

    def __init__(self, owner: LazyFunction[Any, Any]) -> None:
        self.owner = owner

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        from lazyapply._grad import VjpFunction

        return VjpFunction(self.owner.spec)(*args, **kwargs)

    def defvjp(self, rule: Callable[..., Any], /) -> Callable[..., Any]:
        """Declare the vjp's vjp, ``rule(gg, cts, g, out, *args)``; returns ``rule``.

        ``gg`` and ``cts`` are tuples with one entry per argument of the kernel
        (``None`` where there is no cotangent); ``rule`` returns one cotangent per
        argument of the vjp, ``(g, out, *args)`` (``None`` where it does not depend).
        """
        from lazyapply._errors import NotDifferentiableError

        owner, vjp = self.owner, self.owner.spec.vjp
        name = owner.__name__
        if vjp is None:
            msg = f"{name}: declare its vjp first (@{name}.defvjp), then the vjp's vjp"
            raise NotDifferentiableError(msg)
        lazy_function = type(owner)  # the owner's class makes the vjp's lazy function
        kernel = vjp.eager if isinstance(vjp, lazy_function) else vjp
        as_numpy = owner.spec.as_numpy
        owner._declare("vjp", lazy_function(kernel, as_numpy=as_numpy, vjp=rule))
        return rule
