"""The adapter base class: everything an eager backend needs, with safe defaults."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

from lazyapply._call import KernelCall, numpy_inputs
from lazyapply._errors import KernelOutputError, SpecError
from lazyapply._spec import INFERRED, CallSpec, OutputSpec, resolve_dtype

__all__ = ["Adapter", "output_for_call"]


def output_for_call(
    spec: CallSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> OutputSpec:
    """The call's :class:`OutputSpec`, evaluating shape/dtype callables if any."""
    if spec.shape_fn is None and spec.dtype_fn is None:
        return spec.output
    from lazyapply._callables import evaluate_callables

    return evaluate_callables(spec, name, args, kwargs)


class Adapter:
    """One backend. Subclasses override what differs; the engine never names one.

    The default implementation is an eager backend: the kernel runs now, on the
    caller's arrays (or NumPy copies of them with ``as_numpy=True``).
    """

    name: ClassVar[str] = "array"
    #: Array types of this backend (``isinstance`` checks, output fast path).
    native: tuple[type, ...] = ()
    lazy: ClassVar[bool] = False
    #: Eager checks resolved once per call spec (by ``id``); made on first use.
    _plans: dict[int, _Plan]

    def namespace(self, x: Any) -> Any:
        """The array-API namespace of ``x``."""
        raise NotImplementedError

    def device(self, x: Any) -> Any:
        """The device of ``x`` (passed to ``asarray`` when converting back)."""
        return x.device

    def label(self, first: Any) -> str:
        """Backend name for messages, with the device where it matters."""
        return self.name

    # ----------------------------------------------------------------- eager path
    def apply(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
        first: Any,
    ) -> Any:
        """Run ``func`` now and return its outputs in the caller's namespace."""
        if spec.mode.signature is not None:
            # A plain call here, but core dimensions that do not match the arguments
            # are an error on every backend, and shape= may give only core sizes.
            from lazyapply._modes import eager_signature_spec

            spec = eager_signature_spec(spec, func, args, self.label(first))
        output = spec.output
        if spec.shape_fn is not None or spec.dtype_fn is not None:
            name = spec.name or _name(func)
            output = output_for_call(spec, name, args, kwargs)
            return self.kernel_call(func, kwargs, spec, output, xp, first)(*args)
        if output is INFERRED and not spec.as_numpy:
            out = func(*args, **kwargs)
            if isinstance(out, self.native):
                return out
            return self.kernel_call(func, kwargs, spec, output, xp, first).finish(out)
        # Constant metadata: check it against what was resolved for this spec once.
        try:
            plan = self._plans[id(spec)]
        except (AttributeError, KeyError):
            plan = self._plan(spec, xp, first, func)
        if plan.spec is not spec or plan.xp is not xp:
            plan = self._plan(spec, xp, first, func)
        if spec.as_numpy:
            args = numpy_inputs(args, self.native)
        out = func(*args, **kwargs)
        if plan.inline:
            if (
                type(out) is plan.ndarray
                and plan.convert is not None
                and self.device(first) == plan.device
            ):
                # drop-in (issue 9): on failure KernelCall.finish copies as needed.
                with contextlib.suppress(TypeError, ValueError):
                    out = plan.convert(out)  # a NumPy result, as KernelCall does
            native: Any = self.native  # (typed Any: mypy would narrow out to object)
            if isinstance(out, native):
                shape = plan.shape
                if shape is None or out.shape == shape:
                    dtype = out.dtype
                    if plan.dtype is None or dtype is plan.seen:
                        return out
                    if dtype == plan.dtype:
                        plan.seen = dtype  # identity is cheaper than equality next
                        return out
        if self.device(first) == plan.device:  # conversions go to the right device
            try:
                return plan.call.finish(out)
            except KernelOutputError:
                pass  # raise again below, with the kernel's name in the message
        return self.kernel_call(func, kwargs, spec, output, xp, first).finish(out)

    def _plan(
        self, spec: CallSpec, xp: Any, first: Any, func: Callable[..., Any]
    ) -> _Plan:
        plans: dict[int, _Plan] = self.__dict__.setdefault("_plans", {})
        if len(plans) > 256:  # specs made per call (unhashable shapes): stay bounded
            plans.clear()
        try:
            call = self.kernel_call(_no_kernel, {}, spec, spec.output, xp, first)
        except SpecError:
            # A dtype this namespace lacks: raise it again naming the user's kernel.
            self.kernel_call(func, {}, spec, spec.output, xp, first)
            raise
        plan = _Plan(spec, xp, call, self.device(first))
        plans[id(spec)] = plan
        return plan

    def kernel_call(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        spec: CallSpec,
        output: OutputSpec,
        xp: Any,
        first: Any,
    ) -> KernelCall:
        """A checked call for an eager backend: only declared metadata is checked."""
        name = spec.name or _name(func)
        back = xp if xp is not None else self.namespace(first)
        dtypes = None
        if output.dtypes is not None:
            dtypes = tuple(resolve_dtype(d, back, name) for d in output.dtypes)
        return KernelCall(
            func,
            kwargs,
            name=name,
            backend=self.label(first),
            as_numpy=spec.as_numpy,
            multi=output.multi,
            shapes=output.shapes,
            dtypes=dtypes,
            declared=(output.shapes is not None, output.dtypes is not None),
            back=back,
            device=self.device(first),
            native=self.native,
            out_types=self.native,
        )

    # ---------------------------------------------------------- shared by lazy paths
    def result_type(self, xp: Any, args: tuple[Any, ...]) -> Any:
        """The inferred output dtype: ``result_type`` of every non-None argument."""
        from lazyapply._detect import dtype_args  # drop-in (issue 9): no sequences

        return xp.result_type(*dtype_args(args))

    def infer_output(
        self,
        output: OutputSpec,
        args: tuple[Any, ...],
        xp: Any,
        name: str,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Shapes and dtypes (resolved in ``xp``) for a lazy backend, inferring gaps."""
        from lazyapply._spec import arg_shape, broadcast_shapes

        arrays = [a for a in args if isinstance(a, self.native)]
        shapes = output.shapes
        if shapes is None:
            shapes = (broadcast_shapes([arg_shape(a) for a in arrays], name),)
        if output.dtypes is None:
            inferred = self.result_type(xp, args)
            dtypes = (inferred,) * len(shapes)
        else:
            dtypes = tuple(resolve_dtype(d, xp, name) for d in output.dtypes)
        return shapes, dtypes


class _Plan:
    """What the eager calls of one spec check, resolved once (the hot path's cache).

    Holds the spec itself, so that its ``id`` (the cache key) is not reused while
    the plan lives. ``call`` is a kernel call without a kernel, used to convert and
    check outputs (its messages name no kernel: a failing check is redone with one).
    """

    __slots__ = (
        "call",
        "convert",
        "device",
        "dtype",
        "inline",
        "ndarray",
        "seen",
        "shape",
        "spec",
        "xp",
    )

    def __init__(self, spec: CallSpec, xp: Any, call: KernelCall, device: Any) -> None:
        self.spec = spec
        self.xp = xp
        self.call = call
        self.device = device
        shapes, dtypes = call.shapes, call.dtypes
        # A single output whose shape has no unknown size is checked inline.
        self.inline = not call.multi and (shapes is None or None not in shapes[0])
        self.shape = None if shapes is None else tuple(shapes[0])
        self.dtype = None if dtypes is None else dtypes[0]
        self.seen: Any = None
        import numpy as np

        self.ndarray = np.ndarray
        # NumPy outputs of a non-NumPy backend are converted here as KernelCall does.
        back, dev = call.back, call.device
        self.convert: Callable[[Any], Any] | None = None
        if back is not None and not isinstance(np.empty(0), call.out_types):
            asarray = back.asarray
            self.convert = (
                asarray if dev is None else (lambda o: asarray(o, device=dev))
            )


def _no_kernel(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
    raise NotImplementedError


def _name(func: Callable[..., Any]) -> str:
    from lazyapply._spec import kernel_name

    return kernel_name(func)
