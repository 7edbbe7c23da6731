"""Declared derivatives: a kernel's vjp, run through the engine like the kernel.

The vjp kernel is called as ``vjp(grad_out, out, *args, **kwargs)`` and returns one
cotangent per positional argument. The engine cannot express "``None`` for some
outputs", so :class:`VjpKernel` flattens the call (``*grads, *outs, *args``) and keeps
only the cotangents of the differentiable arguments, whose shapes and dtypes are then
declared: the same output check serves every backend (eager, Dask task, jit callback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lazyapply._errors import KernelOutputError, NotDifferentiableError
from lazyapply.spec import CallSpec, parse_output

__all__ = [
    "JvpKernel",
    "VjpFunction",
    "VjpKernel",
    "differentiable_positions",
    "run_jvp",
    "run_spec",
    "run_vjp",
    "vjp_mode",
]


class VjpKernel:
    """``vjp`` called on flattened operands; returns the picked cotangents (a tuple).

    Picklable (Dask tasks run it on worker processes).
    """

    __slots__ = ("multi", "n_args", "n_out", "name", "positions", "vjp")

    def __init__(
        self,
        vjp: Callable[..., Any],
        name: str,
        n_out: int,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        # A vjp given as a lazy function (it declares its own vjp, for second
        # derivatives) is called here on the converted arrays: its kernel.
        spec = getattr(vjp, "spec", None)
        self.vjp = vjp.eager if isinstance(spec, CallSpec) else vjp  # type: ignore[attr-defined]
        self.name = name
        self.n_out = n_out
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            VjpKernel,
            (
                self.vjp,
                self.name,
                self.n_out,
                self.multi,
                self.positions,
                self.n_args,
            ),
        )

    @property
    def __name__(self) -> str:  # task names and messages
        return f"{self.name}_vjp"

    def __call__(self, *flat: Any, **kwargs: Any) -> tuple[Any, ...]:
        n = self.n_out
        grads, outs, args = flat[:n], flat[n : 2 * n], flat[2 * n :]
        g = tuple(grads) if self.multi else grads[0]
        out = tuple(outs) if self.multi else outs[0]
        cts = self.vjp(g, out, *args, **kwargs)
        if self.n_args == 1 and not isinstance(cts, (tuple, list)):
            cts = (cts,)
        if not isinstance(cts, (tuple, list)) or len(cts) != self.n_args:
            got = len(cts) if isinstance(cts, (tuple, list)) else type(cts).__name__
            msg = (
                f"{self.__name__}: the vjp must return one cotangent per positional "
                f"argument of {self.name} ({self.n_args}), got {got}; return a tuple "
                "with None for arguments that are not differentiable"
            )
            raise KernelOutputError(msg)
        picked = tuple(cts[i] for i in self.positions)
        for i, c in zip(self.positions, picked, strict=True):
            if c is None:
                msg = (
                    f"{self.__name__}: the vjp returned None for argument {i} of "
                    f"{self.name}, which is a floating-point array and needs a "
                    "cotangent; return an array shaped like that argument"
                )
                raise KernelOutputError(msg)
        return picked


def differentiable_positions(args: Sequence[Any]) -> tuple[int, ...]:
    """Positions of the real or complex floating-point array arguments."""
    from array_api_compat import array_namespace, is_array_api_obj

    out = []
    for i, a in enumerate(args):
        dtype = getattr(a, "dtype", None)
        if dtype is not None and is_array_api_obj(a):
            xp = array_namespace(a)
            if xp.isdtype(dtype, ("real floating", "complex floating")):
                out.append(i)
    return tuple(out)


def run_spec(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
) -> Any:
    """Run ``func`` with a ready ``spec`` through the arguments' adapter."""
    from lazyapply._detect import find_adapter
    from lazyapply._engine import run

    adapter, first = find_adapter(args, spec.name)
    return run(adapter, first, func, args, kwargs, spec, None)


def vjp_mode(
    spec: CallSpec,
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    positions: tuple[int, ...],
) -> dict[str, Any]:
    """The vjp's chunk mode: the kernel's, when each cotangent is one chunk's own.

    An elementwise kernel's vjp is elementwise, and a gufunc ``(n),(n)->()`` has the
    vjp ``(),(),(n),(n)->(n),(n)`` (grads, outputs, arguments -> cotangents). That
    holds only when every differentiable argument spans the whole loop (broadcast)
    shape: a broadcast argument's cotangent sums over the chunks it was broadcast to,
    which no single chunk can compute, so such a call runs on the whole array.
    """
    mode = spec.mode
    sig = mode.signature
    shape = getattr(outs[0], "shape", None) if outs else None
    if not (mode.elementwise or sig is not None) or shape is None:
        return {}  # no output passed (out=None): nothing to chunk it by
    out0 = tuple(shape)
    if sig is None:
        if all(tuple(args[i].shape) == out0 for i in positions):
            return {"elementwise": True}
        return {}
    loop = out0[: len(out0) - len(sig.outputs[0])]
    for i in positions:
        arg = tuple(args[i].shape)
        if arg[: len(arg) - len(sig.inputs[i])] != loop:
            return {}

    def side(groups: Sequence[tuple[str, ...]]) -> str:
        return ",".join(f"({','.join(dims)})" for dims in groups)

    ins = side([*sig.outputs, *sig.outputs, *sig.inputs])
    return {"signature": f"{ins}->{side([sig.inputs[i] for i in positions])}"}


def run_vjp(
    spec: CallSpec,
    grads: tuple[Any, ...],
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
    multi: bool,
) -> tuple[Any, ...]:
    """Run ``spec.vjp`` through the engine; the cotangents of ``positions``.

    Each cotangent is declared with its argument's shape and dtype, so it is checked
    on every backend. The vjp runs chunk by chunk where the kernel's mode allows
    (:func:`vjp_mode`); under ``jax.vmap`` that mode picks the callback's batching.
    Extend with keyword-only parameters only: the torch adapter calls it too.
    """

    if spec.vjp is None or not positions:
        return ()
    n = len(grads)
    shapes = [tuple(args[i].shape) for i in positions]
    dtypes = [args[i].dtype for i in positions]
    # The vjp kernel and its spec, made once per kernel spec and argument metadata:
    # a backward pass then costs about what a plain call does.
    out_shapes = tuple(tuple(getattr(o, "shape", ())) for o in outs)
    # type(d) before d: dtypes of two libraries are never compared (array-api-strict
    # warns when they are), tuples stop at the first unequal item.
    typed = tuple((type(d), d) for d in dtypes)
    key: Any = (spec, n, multi, positions, len(args), tuple(shapes), typed)
    try:
        key += (out_shapes,)
        hit = _VJP_CALLS.get(key)
    except TypeError:  # symbolic sizes (torch.compile) or an unhashable spec field
        hit, key = None, None
    if hit is None:
        kernel = VjpKernel(spec.vjp, spec.name, n, multi, positions, len(args))
        name = kernel.__name__
        vspec = CallSpec(
            name, parse_output(shapes, dtypes, name), spec.as_numpy, strict=True
        )
        mode = vjp_mode(spec, outs, args, positions)
        if mode:
            from lazyapply.spec._modes import with_mode

            vspec = with_mode(vspec, kernel, **mode)
        hit = (kernel, vspec)
        if key is not None:
            if len(_VJP_CALLS) > 256:
                _VJP_CALLS.clear()
            _VJP_CALLS[key] = hit
    return run_spec(hit[0], (*grads, *outs, *args), kwargs, hit[1])  # type: ignore[no-any-return]


_VJP_CALLS: dict[Any, tuple[VjpKernel, CallSpec]] = {}


class JvpKernel:
    """``jvp`` called on flattened operands ``(*tangents, *args)``; returns outputs.

    ``tangents`` holds the tangents of ``positions`` only; the kernel gets one per
    positional argument, ``None`` elsewhere. Picklable, like :class:`VjpKernel`.
    """

    __slots__ = ("jvp", "multi", "n_args", "name", "positions")

    def __init__(
        self,
        jvp: Callable[..., Any],
        name: str,
        multi: bool,
        positions: tuple[int, ...],
        n_args: int,
    ) -> None:
        self.jvp = jvp
        self.name = name
        self.multi = multi
        self.positions = positions
        self.n_args = n_args

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.jvp, self.name, self.multi, self.positions, self.n_args)
        return (JvpKernel, state)

    @property
    def __name__(self) -> str:  # task names and messages
        return f"{self.name}_jvp"

    def __call__(self, *flat: Any, **kwargs: Any) -> Any:
        n = len(self.positions)
        tangents: list[Any] = [None] * self.n_args
        for i, t in zip(self.positions, flat[:n], strict=True):
            tangents[i] = t
        rest = flat[n:]
        n_out = len(rest) - self.n_args
        out = tuple(rest[:n_out]) if self.multi else rest[0]
        return self.jvp(tuple(tangents), out, *rest[n_out:], **kwargs)


def run_jvp(
    spec: CallSpec,
    tangents: tuple[Any, ...],
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
    multi: bool,
) -> Any:
    """Run ``spec.jvp`` through the engine: the output tangent(s), shaped like ``outs``.

    ``tangents`` are those of ``positions``. A tangent has its output's shape, so the
    kernel's own mode (elementwise or gufunc) applies unchanged.
    """
    from lazyapply._lazy_apply import lazy_apply

    if spec.jvp is None:
        msg = f"{spec.name}: no jvp was declared; declare one with @{spec.name}.defjvp"
        raise NotDifferentiableError(msg)
    kernel = JvpKernel(spec.jvp, spec.name, multi, positions, len(args))
    shapes = [tuple(o.shape) for o in outs]
    dtypes = [o.dtype for o in outs]
    mode: dict[str, Any] = {}
    if spec.mode.elementwise:
        mode = {"elementwise": True}
    elif spec.mode.signature is not None:
        sig = spec.mode.signature
        ins = [sig.inputs[i] for i in positions] + [*sig.outputs, *sig.inputs]
        outs_text = ",".join(f"({','.join(d)})" for d in sig.outputs)
        text = ",".join(f"({','.join(d)})" for d in ins)
        mode = {"signature": f"{text}->{outs_text}"}
    return lazy_apply(
        kernel,
        *tangents,
        *outs,
        *args,
        shape=shapes if multi else shapes[0],
        dtype=dtypes if multi else dtypes[0],
        as_numpy=spec.as_numpy,
        strict=True,
        **mode,
        **kwargs,
    )


class VjpFunction:
    """``f.vjp``: the declared vjp of a lazy kernel, itself run lazily."""

    __slots__ = ("spec",)

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec

    def __call__(
        self, grad_out: Any, out: Any, *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        if self.spec.vjp is None:
            msg = (
                f"{self.spec.name}: no vjp was declared; declare one with "
                f"@{self.spec.name}.defvjp or lazy(..., vjp=...)"
            )
            raise NotDifferentiableError(msg)
        multi = isinstance(grad_out, (tuple, list))
        grads = tuple(grad_out) if multi else (grad_out,)
        outs = tuple(out) if multi else (out,)
        positions = differentiable_positions(args)
        picked = run_vjp(self.spec, grads, outs, args, kwargs, positions, multi)
        full: list[Any] = [None] * len(args)
        for i, c in zip(positions, picked, strict=True):
            full[i] = c
        return tuple(full)
