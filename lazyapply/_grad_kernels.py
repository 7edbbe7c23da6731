"""The kernels of declared derivatives: a vjp or jvp called on flattened operands.

The engine calls a kernel on positional operands and checks declared outputs. A
vjp is ``vjp(grad_out, out, *args, **kwargs)`` returning one cotangent per positional
argument, ``None`` for some: :class:`VjpKernel` takes ``(*grads, *outs, *args)`` and
returns only the cotangents of the differentiable arguments, so that their shapes
and dtypes can be declared. :class:`JvpKernel` does the same for a jvp and
:class:`VjpOfVjp` for a vjp's own vjp, over one base, ``_FlatRule``. All pickle
(Dask tasks run them on worker processes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._errors import KernelOutputError

__all__ = [
    "JvpKernel",
    "LoneVjpKernel",
    "VjpKernel",
    "VjpOfVjp",
    "eager_rule",
    "own_vjp",
    "second_order_hint",
]


def second_order_hint(name: str, transforms: str) -> str:
    """What to declare so that ``name`` can be differentiated twice (one text for
    every backend); ``transforms`` names the calls that asked, e.g.
    ``"jax.grad(jax.grad(f))"``."""
    return (
        f"{name}_vjp: the vjp of {name} has no vjp of its own, so {name} cannot be "
        f"differentiated twice ({transforms}). Declare it with @{name}.vjp.defvjp, "
        f"or give @{name}.defvjp (or vjp=) a function decorated with "
        "@lazy(vjp=...); that rule, vjp(gg, cts, g, out, *args), returns one "
        "cotangent per argument of the vjp (g, out, *args)"
    )


def own_vjp(rule: Any) -> Any:
    """The vjp declared on a vjp (a ``@lazy(vjp=...)`` function), or ``None``."""
    from lazyapply.spec import CallSpec

    spec = getattr(rule, "spec", None)
    return spec.vjp if isinstance(spec, CallSpec) else None


def eager_rule(rule: Any) -> Any:
    """The kernel of a rule given as a lazy function (called on converted arrays)."""
    from lazyapply.spec import CallSpec

    return rule.eager if isinstance(getattr(rule, "spec", None), CallSpec) else rule


class _FlatRule:
    """What the rules below share: the user's ``rule``, the kernel's ``name``, its
    number of outputs, ``multi`` (a tuple of outputs), the differentiable argument
    ``positions`` and the number of positional arguments; pickling by these fields
    (Dask tasks run the rules on worker processes) and the name of the rule.

    ``call`` is what runs: for a vjp given as a lazy function (it declares its own
    vjp, for second derivatives) its kernel, called on the converted arrays. The
    lazy function itself is kept in ``rule`` and pickled: its kernel pickles by a
    name that finds the lazy function, not the kernel.
    """

    __slots__ = ("call", "multi", "n_args", "n_out", "name", "positions", "rule")
    _suffix = "_vjp"
    _eager = True

    def __init__(
        self,
        rule: Callable[..., Any],
        name: str,
        n_out: int,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        self.rule = rule
        self.call = eager_rule(rule) if self._eager else rule
        self.name = name
        self.n_out = n_out
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.rule, self.name, self.n_out, self.multi, self.positions)
        return (type(self), (*fields, self.n_args))

    @property
    def __name__(self) -> str:  # task names and messages
        return f"{self.name}{self._suffix}"

    def _packed(self, values: tuple[Any, ...]) -> Any:
        """Outputs (or their cotangents) as the user's rule sees them."""
        return tuple(values) if self.multi else values[0]

    def _split(self, flat: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
        """``(*grads, *outs, *args)`` -> ``(g, out, args)``."""
        n = self.n_out
        return self._packed(flat[:n]), self._packed(flat[n : 2 * n]), flat[2 * n :]


class VjpKernel(_FlatRule):
    """``vjp`` called on flattened operands; returns the picked cotangents (a tuple)."""

    __slots__ = ()

    def __call__(self, *flat: Any, **kwargs: Any) -> tuple[Any, ...]:
        if self.multi:
            g, out, args = self._split(flat)
        else:  # one output (the common case): _split's work without its calls
            g, out, args = flat[0], flat[1], flat[2:]
        cts = self.call(g, out, *args, **kwargs)
        if type(cts) is not tuple and type(cts) is not list:
            if self.n_args == 1 and not isinstance(cts, (tuple, list)):
                cts = (cts,)
            elif not isinstance(cts, (tuple, list)):
                self._count_error(type(cts).__name__)
        if len(cts) != self.n_args:
            self._count_error(len(cts))
        picked = tuple([cts[i] for i in self.positions])
        for k, c in enumerate(picked):  # (``None in picked`` would compare arrays)
            if c is None:
                msg = (
                    f"{self.__name__}: the vjp returned None for argument "
                    f"{self.positions[k]} of {self.name}, which is a floating-point "
                    "array and needs a cotangent; return an array shaped like that "
                    "argument"
                )
                raise KernelOutputError(msg)
        return picked

    def _count_error(self, got: object) -> None:
        msg = (
            f"{self.__name__}: the vjp must return one cotangent per positional "
            f"argument of {self.name} ({self.n_args}), got {got}; return a tuple "
            "with None for arguments that are not differentiable"
        )
        raise KernelOutputError(msg)


class LoneVjpKernel(VjpKernel):
    """:class:`VjpKernel` with one differentiable argument: its cotangent itself,
    not a 1-tuple (a checked call of one output takes its shortest path)."""

    __slots__ = ()

    def __call__(self, *flat: Any, **kwargs: Any) -> Any:
        return VjpKernel.__call__(self, *flat, **kwargs)[0]


class JvpKernel(_FlatRule):
    """``jvp`` called on flattened operands ``(*tangents, *outs, *args)``; returns
    outputs.

    ``tangents`` holds the tangents of ``positions`` only; the kernel gets one per
    positional argument, ``None`` elsewhere.
    """

    __slots__ = ()
    _suffix = "_jvp"
    _eager = False  # a lazy jvp runs as a lazy function

    def __call__(self, *flat: Any, **kwargs: Any) -> Any:
        n = len(self.positions)
        tangents: list[Any] = [None] * self.n_args
        for i, t in zip(self.positions, flat[:n], strict=True):
            tangents[i] = t
        outs, args = flat[n : n + self.n_out], flat[n + self.n_out :]
        return self.call(tuple(tangents), self._packed(outs), *args, **kwargs)


class VjpOfVjp(_FlatRule):
    """The second-order rule of a vjp kernel, in :class:`VjpKernel`'s flat convention.

    The vjp runs as ``VjpKernel(*grads, *outs, *args) -> picked cotangents``; its own
    vjp is then called ``(gg, cts, *grads, *outs, *args)`` with ``gg`` and ``cts``
    holding the picked cotangents' cotangents and values (tuples: the vjp's outputs
    are a tuple, so its own vjp is called with ``multi=True``). The user's rule
    ``own(gg, cts, g, out, *args)`` sees them as full tuples (``None`` for arguments
    without a cotangent) and returns one cotangent per argument of the vjp,
    ``(g, out, *args)``, flattened back here (a zero for a floating-point operand
    the rule says ``None`` for).
    """

    __slots__ = ()

    def __call__(self, gg: Any, cts: Any, *flat: Any, **kwargs: Any) -> tuple[Any, ...]:
        from array_api_compat import array_namespace

        g, out, args = self._split(flat)
        full_gg: list[Any] = [None] * self.n_args
        full_ct: list[Any] = [None] * self.n_args
        for i, a, b in zip(self.positions, gg, cts, strict=True):
            full_gg[i], full_ct[i] = a, b
        got = self.call(tuple(full_gg), tuple(full_ct), g, out, *args, **kwargs)
        if not isinstance(got, (tuple, list)) or len(got) != 2 + self.n_args:
            msg = (
                f"{self.__name__}: the vjp's vjp must return one cotangent per "
                f"argument of the vjp (g, out and the {self.n_args} argument(s) of "
                f"{self.name}), got {got!r:.80}"
            )
            raise KernelOutputError(msg)
        g_ct, out_ct, *rest = got
        g_cts = tuple(g_ct) if self.multi else (g_ct,)
        out_cts = tuple(out_ct) if self.multi else (out_ct,)
        flat_cts = (*g_cts, *out_cts, *rest)
        filled = []
        for c, a in zip(flat_cts, flat, strict=True):
            zero = None
            if c is None and hasattr(a, "dtype"):
                xp = array_namespace(a)
                if xp.isdtype(a.dtype, ("real floating", "complex floating")):
                    zero = xp.zeros_like(a)
            filled.append(c if zero is None else zero)
        return tuple(filled)
