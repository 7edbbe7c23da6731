"""JAX: eager outside transformations, ``jax.pure_callback`` inside them.

Concrete arrays run the kernel now. When any argument is a tracer (``jax.jit``,
``jax.vmap``, ``jax.grad``), the kernel becomes a host callback with the declared
``ShapeDtypeStruct``\\ s. Only the array arguments are operands of the callback: Python
scalars, ``None`` and keyword arguments are baked into it, so they are never traced
and scalars keep their weak type (``float32_array * 2.0`` stays ``float32``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazyapply._call import KernelCall, numpy_inputs
from lazyapply._errors import LazyApplyError, NotDifferentiableError, SpecError
from lazyapply._spec import CallSpec, OutputSpec, kernel_name

from ._base import Adapter, output_for_call

__all__ = ["JaxAdapter"]


class JaxAdapter(Adapter):
    name = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        from jax.core import Tracer

        self.native = (jax.Array,)  # tracers are instances of jax.Array too
        self._tracer = Tracer
        self._xp = jnp

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        jax = sys.modules.get("jax")
        return jax is not None and isinstance(x, jax.Array)

    def namespace(self, x: Any) -> Any:
        return self._xp

    def device(self, x: Any) -> Any:
        # An uncommitted array lives on the default device, where ``jnp.asarray``
        # puts a result without ``device=`` (10x faster than with it), and the result
        # stays uncommitted like the input. A committed one keeps its device.
        return x.device if x.committed else None

    def label(self, first: Any) -> str:
        if isinstance(first, self._tracer):
            return "jax (traced)"
        return f"jax on {first.device}"

    def apply(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
        first: Any,
    ) -> Any:
        tracer = self._tracer
        for a in args:
            if isinstance(a, tracer):
                return self.defer(func, args, kwargs, spec, xp)
        if spec.as_numpy and first.device.platform != "cpu":
            name = spec.name or kernel_name(func)
            msg = (
                f"{name} (jax on {first.device}): as_numpy=True would copy the inputs "
                "from the device to the host; move them yourself with "
                "jax.device_put(x, jax.devices('cpu')[0]) or use as_numpy=False"
            )
            raise LazyApplyError(msg)
        return super().apply(func, args, kwargs, spec, xp, first)

    def kernel_call(self, *args: Any, **kwargs: Any) -> KernelCall:
        import jax

        call = super().kernel_call(*args, **kwargs)
        canon = jax.dtypes.canonicalize_dtype
        if call.dtypes is not None:
            call.dtypes = tuple(canon(d) for d in call.dtypes)
        call.canon = canon
        return call

    def defer(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
    ) -> Any:
        """Stage the kernel as a host callback of the current JAX trace."""
        import jax
        import numpy as np

        # lazyapply issue 10: declared derivatives stage through custom_vjp/custom_jvp,
        # whose primal comes back here with spec.vjp = spec.jvp = None.
        if spec.vjp is not None or spec.jvp is not None:
            from ._jax_grad import differentiable_call

            return differentiable_call(self, func, args, kwargs, spec, xp)

        name = spec.name or kernel_name(func)
        output = output_for_call(spec, name, args, kwargs)
        declared = (output.shapes is not None, output.dtypes is not None)
        loop_ndims: tuple[int, ...] | None = None
        if not spec.mode.is_default:
            output, loop_ndims = _mode_output(spec, output, args, name)
        shapes, dtypes = self.infer_output(output, args, xp or self._xp, name)
        if any(None in s for s in shapes):
            msg = (
                f"Output shape must be fully known when running inside jax.jit; "
                f"{name} got shape={shapes if output.multi else shapes[0]}. Declare "
                "every size in shape= (JAX traces need static shapes)"
            )
            raise SpecError(msg)
        canon = jax.dtypes.canonicalize_dtype
        np_dtypes = tuple(canon(np.dtype(d)) for d in dtypes)
        positions = tuple(i for i, a in enumerate(args) if isinstance(a, jax.Array))
        arrays = [args[i] for i in positions]
        call = KernelCall(
            func,
            kwargs,
            name=name,
            backend="jax (traced)",
            as_numpy=spec.as_numpy,
            multi=output.multi,
            shapes=shapes,
            dtypes=np_dtypes,
            declared=declared,
            back=None,
            device=None,
            native=(jax.Array, np.ndarray),
            out_types=(np.ndarray, jax.Array),
            canon=canon,
        )
        ndims = tuple(np.ndim(a) for a in arrays)
        batched = spec.mode.elementwise or spec.mode.signature is not None
        align = None
        if batched and loop_ndims is not None:
            align = tuple(loop_ndims[i] for i in positions)
        callback = _Callback(call, args, positions, ndims, align)
        structs = tuple(
            jax.ShapeDtypeStruct(s, d)  # type: ignore[no-untyped-call]
            for s, d in zip(shapes, np_dtypes, strict=True)
        )
        result_spec = structs if output.multi else structs[0]
        vmap_method = "broadcast_all" if batched else "sequential"

        @jax.custom_jvp
        def staged(*operands: Any) -> Any:
            return jax.pure_callback(
                callback, result_spec, *operands, vmap_method=vmap_method
            )

        @staged.defjvp
        def _no_derivative(primals: Any, tangents: Any) -> Any:
            msg = (  # issue 10: names the declarations that make it differentiable
                f"{name}: cannot differentiate a kernel that lazyapply runs as a host "
                "callback (jax.pure_callback has no derivative). Declare its "
                f"derivative: @{name}.defvjp (jax.grad, jax.vjp) and/or "
                f"@{name}.defjvp (jax.jvp, jax.jacfwd), or lazy(..., vjp=..., "
                "jvp=...); or apply jax.lax.stop_gradient to its inputs"
            )
            raise NotDifferentiableError(msg)

        return staged(*arrays)


class _Callback:
    """Puts the callback's operands back among the baked-in scalars and ``None``\\ s."""

    __slots__ = ("align", "args", "call", "ndims", "positions")

    def __init__(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        ndims: tuple[int, ...],
        align: tuple[int, ...] | None = None,
    ) -> None:
        self.call = call
        # Loop ranks of the operands (elementwise/gufunc kernels): a batched call
        # right-aligns them, which vmap's leading batch dimensions would break.
        self.align = align
        # Keep only the static arguments; the traced ones are replaced at each call.
        self.args = [None if i in positions else a for i, a in enumerate(args)]
        self.positions = positions
        self.ndims = ndims

    def __call__(self, *arrays: Any) -> Any:
        lead: tuple[int, ...] = ()
        if arrays and arrays[0].ndim > self.ndims[0]:  # batched by vmap in one call
            lead = tuple(arrays[0].shape[: arrays[0].ndim - self.ndims[0]])
            if self.align is not None:
                arrays = _align(arrays, lead, self.align)
        call = self.call
        if call.as_numpy:
            arrays = numpy_inputs(arrays, call.native)
        args = self.args.copy()
        for i, a in zip(self.positions, arrays, strict=True):
            args[i] = a
        out = call.func(*args, **call.kwargs)
        return call.finish(out, lead)


def _align(
    arrays: tuple[Any, ...], lead: tuple[int, ...], loop_ndims: tuple[int, ...]
) -> tuple[Any, ...]:
    """Insert size-1 loop axes after vmap's batch axes so that loop dims align.

    ``vmap_method="broadcast_all"`` puts the batch axes first in every operand; an
    operand with fewer loop dimensions than another (``x`` of shape ``(3, 4)`` with
    ``y`` of shape ``(4,)``) would then broadcast its batch axis against a loop axis.
    """
    top = max(loop_ndims)
    out = []
    for a, n in zip(arrays, loop_ndims, strict=True):
        if n < top:
            out.append(a.reshape((*lead, *(1,) * (top - n), *a.shape[len(lead) :])))
        else:
            out.append(a)
    return tuple(out)


def _mode_output(
    spec: CallSpec, output: OutputSpec, args: tuple[Any, ...], name: str
) -> tuple[OutputSpec, tuple[int, ...]]:
    """Output shapes of a chunk-wise mode (a signature's core dimensions)."""
    from lazyapply._modes import mode_output, mode_output_shapes
    from lazyapply._spec import arg_shape

    output = mode_output(spec.mode.signature, output, name)
    shapes, loop_ndims, _ = mode_output_shapes(
        spec.mode, output, [arg_shape(a) for a in args], name, "jax (traced)"
    )
    return OutputSpec(shapes, output.dtypes, output.multi), loop_ndims
