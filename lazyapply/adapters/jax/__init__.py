"""JAX: eager outside transformations, ``jax.pure_callback`` inside them.

Concrete arrays run the kernel now. When any argument is a tracer (``jax.jit``,
``jax.vmap``, ``jax.grad``), the kernel becomes a host callback with the declared
``ShapeDtypeStruct``\\ s. Only the array arguments are operands of the callback: Python
scalars, ``None`` and keyword arguments are baked into it, so they are never traced
and scalars keep their weak type (``float32_array * 2.0`` stays ``float32``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from lazyapply._call import numpy_inputs
from lazyapply._errors import LazyApplyError, NotDifferentiableError, SpecError
from lazyapply.adapters._base import Adapter, Target
from lazyapply.adapters.jax._callback import Callback
from lazyapply.adapters.jax._shard import per_shard, stage_on_shard
from lazyapply.adapters.jax.native import native_stage  # issue 12 (imports no backend)
from lazyapply.spec import CallSpec, kernel_name

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.spec._metadata import Layout

__all__ = ["JaxAdapter"]


class JaxAdapter(Adapter):
    name = "jax"
    defers = True

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        from jax.core import Tracer

        self.native = (jax.Array,)  # tracers are instances of jax.Array too
        self._tracer = Tracer
        self._xp = jnp
        self._canon = jax.dtypes.canonicalize_dtype

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
        # drop-in (issue 9): an array on several devices (sharded or replicated) has a
        # sharding, not a device; its results go to the default device.
        if not x.committed or len(x.devices()) > 1:
            return None
        return x.device

    def label(self, first: Any) -> str:
        if isinstance(first, self._tracer):
            return "jax (traced)"
        return f"jax on {first.device}"

    def deferred(self, args: tuple[Any, ...]) -> bool:
        tracer = self._tracer
        return any(isinstance(a, tracer) for a in args)

    def canonical(self, dtype: Any) -> Any:
        return self._canon(dtype)

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        import numpy as np

        if deferred:  # inside a host callback: NumPy in, NumPy (or JAX) out
            types = (self.native[0], np.ndarray)
            return Target(
                host=functools.partial(numpy_inputs, native=types),
                convert=np.asarray,
                out_types=types[::-1],
                canon=self._canon,
            )
        target = super().target(first, xp, deferred=False)
        target.canon = self._canon
        target.move = None  # JAX places results itself; outputs are never moved back
        # drop-in (issue 9): a sharded array has devices(), and no single .device
        off_cpu = [d for d in first.devices() if d.platform != "cpu"]
        if off_cpu:
            target.refuse = functools.partial(_refuse_device, off_cpu[0])
        return target

    def prepare(self, func: Callable[..., Any], spec: CallSpec) -> Any:
        """The staged form of ``func``: a host callback without a derivative."""
        import jax

        # lazyapply issue 10: declared derivatives get custom_vjp/custom_jvp rules.
        if spec.vjp is not None or spec.jvp is not None:
            from lazyapply.adapters.jax._grad import Differentiable

            return Differentiable(self, func, spec)
        name = spec.name or kernel_name(func)

        @functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
        def staged(callback: Any, result: Any, vmap_method: str, *operands: Any) -> Any:
            if not isinstance(callback, Callback):  # issue 12: native or per shard
                return callback(*operands)
            return jax.pure_callback(
                callback, result, *operands, vmap_method=vmap_method
            )

        @staged.defjvp
        def _no_derivative(*_: Any) -> Any:
            msg = (  # issue 10: names the declarations that make it differentiable
                f"{name}: cannot differentiate a kernel that lazyapply runs as a host "
                "callback (jax.pure_callback has no derivative). Declare its "
                f"derivative: @{name}.defvjp (jax.grad, jax.vjp) and/or "
                f"@{name}.defjvp (jax.jvp, jax.jacfwd), or lazy(..., vjp=..., "
                "jvp=...); or apply jax.lax.stop_gradient to its inputs"
            )
            raise NotDifferentiableError(msg)

        return staged

    def defer(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        spec: CallSpec,
        layout: Layout,
        first: Any,
        prepared: Any,
    ) -> Any:
        """Stage the kernel as a host callback of the current JAX trace."""
        import jax
        import numpy as np

        _no_traced_keywords(call, self._tracer)  # drop-in (issue 9)
        if spec.vjp is not None or spec.jvp is not None:  # lazyapply issue 10
            return prepared.stage(args, call.kwargs)

        shapes = layout.shapes
        if any(None in s for s in shapes):
            msg = (
                f"Output shape must be fully known when running inside jax.jit; "
                f"{call.name} got shape={shapes if layout.multi else shapes[0]}. "
                "Declare every size in shape= (JAX traces need static shapes)"
            )
            raise SpecError(msg)
        positions = tuple(i for i, a in enumerate(args) if isinstance(a, jax.Array))
        arrays = [args[i] for i in positions]
        ndims = tuple(np.ndim(a) for a in arrays)
        batched = spec.mode.elementwise or spec.mode.signature is not None
        align = None
        if batched and layout.loop_ndims is not None:
            align = tuple(layout.loop_ndims[i] for i in positions)
        callback = Callback(call, args, positions, ndims, align)
        structs = tuple(
            jax.ShapeDtypeStruct(s, d)  # type: ignore[no-untyped-call]
            for s, d in zip(shapes, layout.dtypes, strict=True)
        )
        result = structs if layout.multi else structs[0]
        vmap_method = "broadcast_all" if batched else "sequential"
        # Issue 12: native path (Numba as an XLA FFI target); per-shard calls
        loop = (align or ndims) if batched else None
        native = native_stage(call, args, positions, structs, loop, spec.as_numpy)
        local = partial(stage_on_shard, self, call.func, args, positions, call.kwargs)
        sharded = None if layout.declared[0] or loop is None else per_shard(
            partial(local, spec), arrays, loop, shapes, layout.multi, native,
        )  # fmt: skip
        direct = sharded or (None if isinstance(native, str) else native)
        return prepared(direct or callback, result, vmap_method, *arrays)


def _refuse_device(device: Any, name: str) -> None:
    msg = (
        f"{name} (jax on {device}): as_numpy=True would copy the inputs from the "
        "device to the host; move them yourself with "
        "jax.device_put(x, jax.devices('cpu')[0]) or use as_numpy=False"
    )
    raise LazyApplyError(msg)


def _no_traced_keywords(call: KernelCall, tracer: type) -> None:
    """Refuse a traced array among the keywords: they reach the kernel untraced."""
    for key, value in call.kwargs.items():
        # One level into containers (a keyword may be a self-referencing list).
        items = value.values() if isinstance(value, dict) else value
        inner = items if isinstance(items, (list, tuple)) or items is not value else ()
        if isinstance(value, tracer) or any(isinstance(v, tracer) for v in inner):
            msg = (
                f"{call.name} (jax (traced)): keyword argument {key!r} holds a traced "
                "JAX array; keywords reach the kernel as they are and cannot be "
                f"traced. Pass {key} positionally, or give it a concrete value"
            )
            raise SpecError(msg)
