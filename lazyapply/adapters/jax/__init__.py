"""JAX: eager outside transformations, a staged call inside them.

Concrete arrays run the kernel now. When any argument is a tracer (``jax.jit``,
``jax.vmap``, ``jax.grad``), the call is staged: one :class:`~._stage.Staging` per
kernel, spec and argument signature, chosen once (host callback, native FFI target,
per shard, or with the declared derivatives; see :mod:`._stage`). Only the array
arguments are operands; Python and NumPy scalars, ``None`` and keyword arguments are
baked into the staging, so they are never traced and Python scalars keep their weak
type (``float32_array * 2.0`` stays ``float32``). A NumPy array beside JAX arrays is
an operand, as ``jnp`` treats it. Every path hands the kernel read-only inputs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._errors import LazyApplyError, SpecError
from lazyapply.adapters._base import DEFER, Adapter, Target
from lazyapply.adapters.jax._callback import guard_flat_writes, readonly_inputs
from lazyapply.adapters.jax._shard import in_shard
from lazyapply.adapters.jax._stage import Stager, Staging, signature
from lazyapply.spec import CallSpec, OutputSpec, Shape, kernel_name

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.spec._metadata import Layout

__all__ = ["JaxAdapter"]


class JaxAdapter(Adapter):
    name = "jax"
    defers = True
    #: A NumPy array beside JAX arrays is taken as a JAX array (as jnp does).
    adopts_numpy = True

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        import numpy as np
        from jax.core import Tracer

        self.native = (jax.Array,)  # tracers are instances of jax.Array too
        self._operand_types = (jax.Array, np.ndarray)
        self._tracer = Tracer
        self._xp = jnp
        self._canon = jax.dtypes.canonicalize_dtype

    @staticmethod
    def claims(x: Any) -> bool:
        jax = sys.modules.get("jax")
        return jax is not None and isinstance(x, jax.Array)

    def namespace(self, x: Any) -> Any:
        return self._xp

    def device(self, x: Any) -> Any:
        # An uncommitted array lives on the default device, where ``jnp.asarray``
        # puts a result without ``device=`` (10x faster than with it), and the result
        # stays uncommitted like the input. A committed one keeps its device. An
        # array on several devices has a sharding, not a device (see target). A
        # NumPy value that JAX hands to a rule (eager jax.grad) has neither.
        if not getattr(x, "committed", False) or len(x.devices()) > 1:
            return None
        return x.device

    def label(self, first: Any) -> str:
        if isinstance(first, self._tracer):
            return "jax (traced)"
        return f"jax on {getattr(first, 'device', 'cpu')}"

    def deferred(self, args: tuple[Any, ...]) -> bool:
        tracer = self._tracer
        return any(isinstance(a, tracer) for a in args)

    def place(self, args: tuple[Any, ...], first: Any, spec: CallSpec) -> Any:
        tracer = self._tracer
        for a in args:
            if isinstance(a, tracer):
                return DEFER
        return self.device(first)

    def canonical(self, dtype: Any) -> Any:
        return self._canon(dtype)

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        import numpy as np

        host = functools.partial(readonly_inputs, types=self._operand_types)
        if deferred:  # inside a host callback: NumPy in, NumPy (or JAX) out
            types = (self.native[0], np.ndarray)
            return Target(
                host=host,
                convert=np.asarray,
                out_types=types[::-1],
                canon=self._canon,
                guard=guard_flat_writes,
            )
        target = super().target(first, xp, deferred=False)
        target.host = host
        target.guard = guard_flat_writes
        target.canon = self._canon
        target.move = None  # JAX places results itself; outputs are never moved back
        devices = first.devices() if hasattr(first, "devices") else ()
        if len(devices) > 1:  # sharded: a result shaped like the input keeps it
            target.convert = functools.partial(_like, first.sharding, first.shape)
        off_cpu = [d for d in devices if d.platform != "cpu"]
        if off_cpu:
            target.refuse = functools.partial(_refuse_device, off_cpu[0])
        return target

    def infer_output(
        self, output: OutputSpec, args: tuple[Any, ...], xp: Any, name: str
    ) -> tuple[tuple[Shape, ...], tuple[Any, ...]]:
        np = sys.modules["numpy"]
        if any(type(a) is np.ndarray for a in args):  # NumPy beside JAX: as jnp
            args = tuple(
                self._xp.asarray(a) if type(a) is np.ndarray else a for a in args
            )
        return super().infer_output(output, args, xp, name)

    def prepare(self, func: Callable[..., Any], spec: CallSpec) -> Stager:
        """The kernel's stager: its stagings, one per argument signature."""
        name = spec.name or kernel_name(func)
        hint = (
            f"{name}: JAX cannot differentiate a kernel that lazyapply runs as a "
            "host callback. Declare its "
            f"derivative: @{name}.defvjp (jax.grad, jax.vjp) and/or @{name}.defjvp "
            "(jax.jvp, jax.jacfwd), or lazy(..., vjp=..., jvp=...); or apply "
            "jax.lax.stop_gradient to its inputs"
        )
        return Stager(func, spec, hint)

    def defer(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        spec: CallSpec,
        layout: Layout,
        first: Any,
        prepared: Any,
    ) -> Any:
        """Stage the call in the current JAX trace (built once per signature)."""
        _no_traced_keywords(call, self._tracer)
        args, positions = self.operands(args)
        key = signature(args, positions, call.kwargs, in_shard())
        staging = prepared.get(
            key, lambda: self.build(prepared, call, args, positions, layout)
        )
        return staging(*(args[i] for i in positions))

    def operands(
        self, args: tuple[Any, ...]
    ) -> tuple[tuple[Any, ...], tuple[int, ...]]:
        """The arguments with NumPy arrays as JAX values; the operands' positions."""
        types = self._operand_types
        ndarray = types[1]
        positions = tuple(i for i, a in enumerate(args) if isinstance(a, types))
        # NumPy arrays (and the NumPy values JAX hands to rules in eager jax.grad,
        # which also claim to be jax.Arrays) become JAX values, as jnp takes them.
        if any(isinstance(args[i], ndarray) for i in positions):
            asarray = self._xp.asarray
            args = tuple(asarray(a) if isinstance(a, ndarray) else a for a in args)
        return args, positions

    def build(
        self,
        stager: Stager,
        call: KernelCall,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        layout: Layout,
    ) -> Staging:
        """Choose and build the staging of one signature (see :mod:`._stage`)."""
        spec = stager.spec
        if spec.vjp is not None or spec.jvp is not None:
            from lazyapply.adapters.jax._grad import differentiable

            return differentiable(self, stager, call, args, positions, layout)
        return self.plain(stager, call, args, positions, layout)

    def plain(
        self,
        stager: Stager,
        call: KernelCall,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        layout: Layout,
    ) -> Staging:
        """A callback, native or per-shard staging, without derivatives."""
        from lazyapply.adapters.jax._route import plain_staging

        return plain_staging(self, stager, call, args, positions, layout)

    def stage_local(
        self,
        stager: Stager,
        args: tuple[Any, ...],
        positions: tuple[int, ...],
        kwargs: dict[str, Any],
        *operands: Any,
    ) -> Any:
        """Stage ``stager``'s kernel with new operands (one shard's, a vjp's)."""
        local = list(args)
        for i, a in zip(positions, operands, strict=True):
            local[i] = a
        return self.stage_kernel(stager, tuple(local), kwargs)

    def stage_kernel(
        self, stager: Stager, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Stage a kernel that the adapter calls itself (a vjp, one shard's call).

        The engine's sequence for a deferred call: the one metadata function, the one
        :class:`~lazyapply._call.KernelCall` constructor, then :meth:`defer`.
        """
        from lazyapply._check import OutputCheck
        from lazyapply._engine import make_call
        from lazyapply.spec._metadata import layout as output_layout

        args, positions = self.operands(args)
        func, spec = stager.func, stager.spec
        first = args[positions[0]]
        name = spec.name or kernel_name(func)
        lay = output_layout(self, first, func, args, kwargs, spec, None, name)
        check = OutputCheck(lay.shapes, lay.dtypes, lay.multi, lay.declared)
        traced = self.deferred(args)
        call = make_call(
            self, first, func, kwargs, spec, check, None, deferred=traced, name=name
        )
        if not traced:  # concrete values (eager jax.grad): the kernel runs now
            return call.run(args, kwargs)
        return self.defer(call, args, spec, lay, first, stager)


def _like(sharding: Any, shape: tuple[int, ...], o: Any) -> Any:
    """A kernel's NumPy result, on the input's sharding when shaped like the input."""
    import jax

    if getattr(o, "shape", None) == shape:
        return jax.device_put(o, sharding)
    return jax.numpy.asarray(o)


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
