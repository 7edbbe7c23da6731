"""The adapter base class: the questions the engine asks a backend, with defaults.

An adapter does not run a call; the engine (:mod:`lazyapply._engine`) does. An
adapter answers: its namespace, whether arguments are traced or lazy (``deferred``),
an array's device, how arrays go to the host and back (:class:`Target`), canonical
dtypes, and one deferral strategy (``defer``: a graph task, a callback). The defaults
describe an eager backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from lazyapply._caches import BoundedDict, bounded
from lazyapply._call import numpy_inputs
from lazyapply.spec import CallSpec, OutputSpec, Shape, resolve_dtype

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.spec._metadata import Layout

__all__ = ["DEFER", "Adapter", "Target"]

#: What :meth:`Adapter.place` answers for a call that must be deferred.
DEFER: Any = type("Defer", (), {"__repr__": lambda self: "DEFER"})()


class Target:
    """Where a kernel's inputs come from and its outputs go, for one call site.

    ``host`` converts the arguments with ``as_numpy=True``; ``convert`` turns an
    output that is not one of ``out_types`` into the caller's namespace and device;
    ``move(o, device)`` brings back an output made on another device (``None`` for
    single-device libraries); ``canon`` maps a dtype to the one the namespace stores;
    ``guard(func, host)``, when given, is the ``host`` for kernel ``func`` (a check
    of what that kernel does with the converted arrays).
    """

    __slots__ = (
        "canon",
        "convert",
        "device",
        "guard",
        "host",
        "move",
        "out_types",
        "refuse",
    )

    def __init__(
        self,
        *,
        host: Callable[[tuple[Any, ...]], tuple[Any, ...]],
        convert: Callable[[Any], Any],
        out_types: tuple[type, ...],
        device: Any = None,
        move: Callable[[Any, Any], Any] | None = None,
        canon: Callable[[Any], Any] | None = None,
        refuse: Callable[[str], None] | None = None,
        guard: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.host = host
        self.guard = guard
        self.convert = convert
        self.out_types = out_types
        self.device = device
        self.move = move
        self.canon = canon
        self.refuse = refuse

    def check_host(self, name: str) -> None:
        """Raise now if ``as_numpy=True`` cannot convert this call's arrays."""
        if self.refuse is not None:
            self.refuse(name)


class Adapter:
    """One backend. Subclasses override what differs; the engine never names one."""

    name: ClassVar[str] = "array"
    #: Array types of this backend (``isinstance`` checks, output fast path).
    native: tuple[type, ...] = ()
    #: Whether ``deferred`` can ever say yes (a class attribute: no call on the hot
    #: path of libraries that always run now).
    defers: ClassVar[bool] = False
    #: Whether arrays of this library live on several devices (``device`` is asked).
    devices: ClassVar[bool] = True
    #: Whether chunk-wise modes run the kernel on blocks (checked block by block).
    splits: ClassVar[bool] = False
    #: Whether the engine lays out deferred calls before ``defer`` (torch: no; Dynamo
    #: traces them, and its strategy lays out in the custom op's fake implementation;
    #: ``defer`` then gets no layout and no preparation).
    lays_out: ClassVar[bool] = True
    #: Eager strategies, cached by the engine per (kernel, spec, xp, device).
    calls: BoundedDict[Any, Any]
    #: ``defers or devices``: whether the engine asks :meth:`place` at all.
    asks: bool
    #: The adapter of any array (given by detection, for libraries that hold another
    #: library's arrays, such as Dask's chunks); adapters never import detection.
    lookup: Callable[[Any, str], Adapter]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        # Kernels made per call (lambdas) must not grow it without end.
        self.calls = bounded(f"engine: eager calls ({cls.__name__})", 256)
        # Whether the engine asks ``place`` (NumPy and sparse: never deferred, one
        # device, so nothing to ask).
        self.asks = cls.defers or cls.devices
        return self

    def namespace(self, x: Any) -> Any:
        """The array-API namespace of ``x``."""
        raise NotImplementedError

    def device(self, x: Any) -> Any:
        """The device of ``x``, where outputs go (``None``: the namespace default)."""
        return x.device

    def label(self, first: Any) -> str:
        """Backend name for messages, with the device where it matters."""
        return self.name

    def deferred(self, args: tuple[Any, ...]) -> bool:
        """Whether the call must be deferred (lazy or traced arguments)."""
        return False

    def place(self, args: tuple[Any, ...], first: Any, spec: CallSpec) -> Any:
        """Where the call runs now: the device of its outputs (``None``: the
        namespace's default), or :data:`DEFER` when it must be deferred.

        The engine's one question per eager call, asked only of adapters that
        defer or have devices; an adapter may answer it in one frame (and, knowing
        the spec, read only what that spec's deferral depends on).
        """
        if self.defers and self.deferred(args):
            return DEFER
        return self.device(first) if self.devices else None

    def canonical(self, dtype: Any) -> Any:
        """The dtype this backend stores ``dtype`` as."""
        return dtype

    def target(self, first: Any, xp: Any, *, deferred: bool) -> Target:
        """Conversions for a kernel called on this backend's arrays, now."""
        back = xp if xp is not None else self.namespace(first)
        device = self.device(first)
        asarray = back.asarray
        convert = asarray if device is None else functools.partial(_to, asarray, device)
        return Target(
            host=functools.partial(numpy_inputs, native=self.native),
            convert=convert,
            out_types=self.native,
            device=device,
            move=None if device is None else functools.partial(_move, asarray),
        )

    def check_definition(self, name: str) -> None:
        """Raise if a kernel cannot be decorated now (inside this library's trace)."""

    def prepare(self, func: Callable[..., Any], spec: CallSpec) -> Any:
        """Build once per kernel and spec what deferred calls need (``None``)."""
        return None

    def defer(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        spec: CallSpec,
        layout: Layout,
        first: Any,
        prepared: Any,
    ) -> Any:
        """Defer ``call`` (a graph task, a callback); only for ``deferred`` calls.

        ``call`` is a :class:`~lazyapply._engine.PendingCall` where ``lays_out`` is
        false (the strategy builds its own checked calls).
        """
        raise NotImplementedError

    # ---------------------------------------------------------- metadata inference
    def result_type(self, xp: Any, args: tuple[Any, ...]) -> Any:
        """The inferred output dtype: ``result_type`` of every non-None argument."""
        from lazyapply.spec import dtype_args  # sequences have no dtype of their own

        return xp.result_type(*dtype_args(args))

    def infer_output(
        self,
        output: OutputSpec,
        args: tuple[Any, ...],
        xp: Any,
        name: str,
    ) -> tuple[tuple[Shape, ...], tuple[Any, ...]]:
        """Shapes and dtypes (resolved in ``xp``), inferring what was not declared."""
        from lazyapply.spec import arg_shape, broadcast_shapes

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


def _to(asarray: Callable[..., Any], device: Any, o: Any) -> Any:
    return asarray(o, device=device)


def _move(asarray: Callable[..., Any], o: Any, device: Any) -> Any:
    # The kernel made its output elsewhere (it forgot device=): bring it back, as the
    # reference's asarray(..., device=) does. Inputs are never moved.
    return asarray(o, device=device)
