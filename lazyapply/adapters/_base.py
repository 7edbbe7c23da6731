"""The adapter base class: everything an eager backend needs, with safe defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .._call import KernelCall
from .._spec import INFERRED, CallSpec, OutputSpec, resolve_dtype

__all__ = ["Adapter", "output_for_call"]


def output_for_call(
    spec: CallSpec, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> OutputSpec:
    """The call's :class:`OutputSpec`, evaluating shape/dtype callables if any."""
    if spec.shape_fn is None and spec.dtype_fn is None:
        return spec.output
    from .._callables import evaluate_callables

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
        output = spec.output
        if output is INFERRED and not spec.as_numpy and spec.shape_fn is None:
            if spec.dtype_fn is None:
                out = func(*args, **kwargs)
                if isinstance(out, self.native):
                    return out
                return self.kernel_call(func, kwargs, spec, output, xp, first).finish(out)
        name = spec.name or _name(func)
        output = output_for_call(spec, name, args, kwargs)
        return self.kernel_call(func, kwargs, spec, output, xp, first)(*args)

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
    def infer_output(
        self,
        output: OutputSpec,
        args: tuple[Any, ...],
        xp: Any,
        name: str,
        shape_of: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Shapes and dtypes (resolved in ``xp``) for a lazy backend, inferring gaps."""
        from .._spec import broadcast_shapes

        arrays = [a for a in args if isinstance(a, self.native)]
        shapes = output.shapes
        if shapes is None:
            get = shape_of or _shape
            shapes = (broadcast_shapes([get(a) for a in arrays], name),)
        if output.dtypes is None:
            inferred = xp.result_type(*(a for a in args if a is not None))
            dtypes = (inferred,) * len(shapes)
        else:
            dtypes = tuple(resolve_dtype(d, xp, name) for d in output.dtypes)
        return shapes, dtypes


def _shape(x: Any) -> tuple[Any, ...]:
    return tuple(x.shape)


def _name(func: Callable[..., Any]) -> str:
    from .._spec import kernel_name

    return kernel_name(func)

