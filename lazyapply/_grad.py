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

from lazyapply._caches import bounded
from lazyapply._errors import NotDifferentiableError
from lazyapply._grad_kernels import JvpKernel, VjpKernel
from lazyapply.spec import CallSpec, parse_output

__all__ = [
    "JvpKernel",
    "VjpFunction",
    "VjpKernel",
    "differentiable_positions",
    "jvp_spec",
    "run_spec",
    "run_vjp",
    "vjp_mode",
    "vjp_spec",
]


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


def vjp_spec(
    spec: CallSpec,
    grads: tuple[Any, ...],
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    multi: bool,
) -> tuple[VjpKernel, CallSpec]:
    """The vjp kernel of ``spec`` and its spec, for these operands (cached).

    Each cotangent is declared with its argument's shape and dtype, so it is checked
    on every backend. The vjp runs chunk by chunk where the kernel's mode allows
    (:func:`vjp_mode`); under ``jax.vmap`` that mode picks the callback's batching.
    """
    assert spec.vjp is not None
    n = len(grads)
    shapes = [tuple(args[i].shape) for i in positions]
    dtypes = [args[i].dtype for i in positions]
    # Made once per kernel spec and argument metadata: a backward pass then costs
    # about what a plain call does.
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
        from lazyapply.spec._build import rule_spec, with_mode

        vspec = rule_spec(name, parse_output(shapes, dtypes, name), spec.as_numpy)
        mode = vjp_mode(spec, outs, args, positions)
        if mode:
            vspec = with_mode(vspec, kernel, **mode)
        hit = (kernel, vspec)
        if key is not None:
            _VJP_CALLS.put(key, hit)
    return hit


def run_vjp(
    spec: CallSpec,
    grads: tuple[Any, ...],
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
    multi: bool,
) -> tuple[Any, ...]:
    """Run ``spec.vjp`` through the engine's entry point; the cotangents of
    ``positions``.

    For ``f.vjp`` (an entry point). Code below the engine (gradient rules) takes
    :func:`vjp_spec`'s kernel and spec to its adapter's ``prepare`` instead. Extend
    with keyword-only parameters only.
    """
    if spec.vjp is None or not positions:
        return ()
    kernel, vspec = vjp_spec(spec, grads, outs, args, positions, multi)
    return run_spec(kernel, (*grads, *outs, *args), kwargs, vspec)  # type: ignore[no-any-return]


_VJP_CALLS = bounded("grad: vjp kernels and specs", 256)


def jvp_spec(
    spec: CallSpec,
    outs: tuple[Any, ...],
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    multi: bool,
) -> tuple[JvpKernel, CallSpec]:
    """The jvp kernel of ``spec`` and its spec: outputs shaped like ``outs``.

    A tangent has its output's shape, so the kernel's own mode (elementwise or
    gufunc) applies, with the tangents' core dimensions first.
    """
    if spec.jvp is None:
        msg = f"{spec.name}: no jvp was declared; declare one with @{spec.name}.defjvp"
        raise NotDifferentiableError(msg)
    from lazyapply.spec._build import APPLY_DEFAULTS, build_spec

    shapes = [tuple(o.shape) for o in outs]
    dtypes = [o.dtype for o in outs]
    key: Any = (spec, multi, positions, len(args), tuple(shapes))
    try:
        key += (tuple((type(d), d) for d in dtypes),)
        hit = _JVP_CALLS.get(key)
    except TypeError:  # symbolic sizes or an unhashable spec field
        hit, key = None, None
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    kernel = JvpKernel(spec.jvp, spec.name, len(outs), multi, positions, len(args))
    options = {
        **APPLY_DEFAULTS,
        "shape": shapes if multi else shapes[0],
        "dtype": dtypes if multi else dtypes[0],
        "as_numpy": spec.as_numpy,
        "strict": True,
    }
    if spec.mode.elementwise:
        options["elementwise"] = True
    elif spec.mode.signature is not None:
        sig = spec.mode.signature
        ins = [sig.inputs[i] for i in positions] + [*sig.outputs, *sig.inputs]
        outs_text = ",".join(f"({','.join(d)})" for d in sig.outputs)
        text = ",".join(f"({','.join(d)})" for d in ins)
        options["signature"] = f"{text}->{outs_text}"
    hit = (kernel, build_spec(kernel, options))
    if key is not None:
        _JVP_CALLS.put(key, hit)
    return hit


_JVP_CALLS = bounded("grad: jvp kernels and specs", 256)


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
