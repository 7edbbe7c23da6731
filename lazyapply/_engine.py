"""The engine: it owns the sequence of every call, whatever the backend.

entry (``@lazy``, ``lazy_apply``) → spec (:mod:`lazyapply.spec._build`) → adapter
(:func:`lazyapply._detect.find_adapter`) → :func:`run`:

1. The adapter says (``place``, one question) whether the call runs now, and on
   which device, or must be deferred (a Dask graph, a JAX trace, a torch compile).
2. Eager calls: one strategy per (kernel, spec, namespace, device), cached on the
   adapter (:class:`~lazyapply._eager.Eager`); the output metadata a strict call
   checks comes from the one metadata function
   (:func:`lazyapply.spec._metadata.layout`) and is cached per argument signature
   (shapes, dtypes), so strict and inferred costs what declared costs.
3. Deferred calls: :func:`~lazyapply.spec._metadata.layout`, then what the adapter
   prepared once per kernel and spec (:func:`prepared`), then ``adapter.defer``.
4. One :class:`~lazyapply._call.KernelCall`, built by :func:`make_call` and nowhere
   else, runs the kernel: now, inside a Dask task or inside a JAX host callback.

:func:`run` is the only entry point, called by ``@lazy`` and ``lazy_apply`` (and by
``f.vjp``, itself an entry point). Adapters never call it: code below the engine
that needs a kernel run (a gradient rule, a custom op) asks for a prepared call:

``prepare_call(adapter, first, func, args, kwargs, spec, xp, deferred=...)``
    A :class:`PreparedCall` for one call: ``.run()`` runs it now (eager arrays),
    ``.defer()`` hands it to the adapter's deferral (traced or lazy arrays).
``lazyapply._grad.vjp_spec(...)``, ``jvp_spec(...)``
    The kernel and spec of a declared vjp (cotangents of ``positions``, declared
    with their arguments' shapes and dtypes) or jvp, which the adapter prepares.

The engine never names a backend: everything backend-specific is an adapter's answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from lazyapply._caches import BoundedDict, Slot, slots, weak
from lazyapply._call import KernelCall, make_call
from lazyapply._check import OutputCheck
from lazyapply._eager import Eager
from lazyapply.adapters._base import DEFER
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._metadata import Layout, layout

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter

__all__ = [
    "SLOTS",
    "PendingCall",
    "PreparedCall",
    "make_call",
    "prepare_call",
    "prepared",
    "run",
]

_LOCK = threading.Lock()
#: The last-call slots of ``@lazy`` functions (one each: see :func:`run`).
SLOTS = slots("engine: last eager call of each @lazy function")


def run(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
    slot: Slot | None = None,
) -> Any:
    """Run ``func`` as ``spec`` says: now, or deferred by the arguments' adapter.

    ``slot``: the caller's own last-call slot (a ``@lazy`` function's), so that
    kernels called in turn each find their strategy without a lookup; without
    one, the adapter's slot (the last eager call of any kernel) serves.
    """
    if adapter.asks:  # deferred, or on which device: one question
        device = adapter.place(args, first, spec)
        if device is DEFER:
            return _defer(adapter, first, func, args, kwargs, spec, xp)
    else:
        device = None
    # The same kernel (an owner's slot: the same adapter), spec and namespace as the
    # slot's last eager call (a loop): matched by identity (the slot holds them, so
    # none can be another object at the same address), the device by equality; no
    # key to build and hash.
    holder: Slot | BoundedDict[Any, Any]
    key: object
    if slot is None:
        holder, key = adapter.calls, func
    else:
        holder, key = slot, adapter
    last = holder.last
    if last[0] is key and last[1] is spec and last[2] is xp and last[3] == device:
        eager = last[4]
    else:
        eager = _eager(adapter, first, func, spec, xp, device)
        holder.last = (key, spec, xp, device, eager)  # one tuple: replaced whole
    call = eager.call
    if eager.plain:
        return call.run(args, kwargs)
    if eager.like and len(args) == 1:
        return call.run(args, kwargs, (), None, first)  # the output keeps its metadata
    return call.run(args, kwargs, (), eager.check(adapter, first, args, kwargs))


def _eager(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    spec: CallSpec,
    xp: Any,
    device: Any,
) -> Eager:
    """The strategy of (kernel, spec, namespace, device): cached, made once."""
    calls = adapter.calls
    # Keyed by the spec's precomputed hash (a Python-level __hash__ call costs more
    # than the rest of the lookup); the spec itself is confirmed below.
    key = (func, spec._hash, xp, device)
    try:
        eager = calls[key]
        if eager.spec is not spec and eager.spec != spec:
            raise KeyError(key)  # two specs with one hash: rebuild, never mix them
    except KeyError:
        return calls.put(key, Eager(adapter, first, func, spec, xp))  # type: ignore[no-any-return]
    except TypeError:  # an unhashable kernel or namespace: no cache
        return Eager(adapter, first, func, spec, xp)
    return eager  # type: ignore[no-any-return]


def _defer(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
) -> Any:
    if not adapter.lays_out:
        # Such an adapter's deferral is traced as bytecode (torch.compile's Dynamo),
        # and every call of the compiled function checks a guard for each frame,
        # global and attribute read on the way: it gets the call's parts straight.
        name = spec.name or kernel_name(func)
        pending = PendingCall(adapter, first, func, kwargs, spec, xp, name)
        return adapter.defer(pending, args, spec, None, first, None)  # type: ignore[arg-type]
    return prepare_call(
        adapter, first, func, args, kwargs, spec, xp, deferred=True
    ).defer()


class PendingCall:
    """A kernel call not yet made: what an adapter that lays out itself gets.

    ``func``, ``kwargs`` and ``name`` as a :class:`KernelCall` has them;
    :meth:`build` makes the :class:`KernelCall` (by :func:`make_call`, checking the
    number of outputs) where the strategy runs the kernel in traced code.
    """

    __slots__ = ("adapter", "first", "func", "kwargs", "name", "spec", "xp")

    def __init__(
        self,
        adapter: Adapter,
        first: Any,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
        name: str,
    ) -> None:
        self.adapter = adapter
        self.first = first
        self.func = func
        self.kwargs = kwargs
        self.spec = spec
        self.xp = xp
        self.name = name

    def build(self, check: OutputCheck | None = None) -> KernelCall:
        """The :class:`KernelCall` of this call, checking ``check`` (default: the
        number of outputs only)."""
        if check is None:
            check = OutputCheck(None, None, self.spec.output.multi, (False, False))
        return make_call(
            self.adapter,
            self.first,
            self.func,
            self.kwargs,
            self.spec,
            check,
            self.xp,
            deferred=True,
            name=self.name,
        )


class PreparedCall:
    """A kernel call made ready for one set of arguments, by :func:`prepare_call`.

    Attributes
    ----------
    call : KernelCall or PendingCall
        The one call of the kernel, with the check of these arguments' outputs (a
        :class:`PendingCall` for adapters that lay out themselves).
    args, kwargs
        The operands it is made for.
    layout : Layout or None
        The outputs' metadata (deferred calls only).
    """

    __slots__ = (
        "adapter",
        "args",
        "call",
        "check",
        "first",
        "kwargs",
        "layout",
        "spec",
    )

    def __init__(
        self,
        adapter: Adapter,
        first: Any,
        call: KernelCall | PendingCall,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        layout: Layout | None,
        check: OutputCheck | None,
    ) -> None:
        self.adapter = adapter
        self.first = first
        self.call = call
        self.args = args
        self.kwargs = kwargs
        self.spec = spec
        self.layout = layout
        self.check = check

    def run(self) -> Any:
        """Call the kernel now (concrete arrays) and return its checked outputs."""
        call = cast("KernelCall", self.call)  # pending only where deferred
        return call.run(self.args, self.kwargs, check=self.check)

    def defer(self) -> Any:
        """Hand the call to its adapter's deferral (a graph task, a callback)."""
        adapter = self.adapter
        if self.layout is None and adapter.lays_out:
            msg = "a call prepared with deferred=False runs now: call .run()"
            raise TypeError(msg)
        lay = cast("Layout", self.layout)  # None only where lays_out is False
        if not adapter.lays_out:  # the strategy lays out itself (torch's custom op)
            # A PendingCall: such an adapter's defer takes one (torch's does).
            call = cast("KernelCall", self.call)
            return adapter.defer(call, self.args, self.spec, lay, self.first, None)
        call = cast("KernelCall", self.call)
        ready = prepared(adapter, call.func, self.spec)
        return adapter.defer(call, self.args, self.spec, lay, self.first, ready)


def prepare_call(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any = None,
    *,
    deferred: bool,
) -> PreparedCall:
    """A :class:`PreparedCall` of ``func`` on ``args``, without entering :func:`run`.

    For code below the engine (gradient rules, custom ops): ``deferred=False`` for
    concrete arrays (``.run()``), ``True`` for traced or lazy ones (``.defer()``).
    The outputs are checked as :func:`run` checks them.
    """
    name = spec.name or kernel_name(func)
    if not deferred:
        eager = Eager(adapter, first, func, spec, xp)
        check = None if eager.plain else eager.check(adapter, first, args, kwargs)
        return PreparedCall(adapter, first, eager.call, args, kwargs, spec, None, check)
    if not adapter.lays_out:
        # Dynamo traces torch's deferred calls as bytecode and cannot trace the
        # layout's caches: the strategy lays out where the outputs are made (the custom
        # op's fake implementation, on fake tensors), with the same function, and keeps
        # its own checked calls. It gets the call's parts; building a KernelCall here
        # would cost every autograd step (and every compiled trace's guards) a target.
        pending = PendingCall(adapter, first, func, kwargs, spec, xp, name)
        return PreparedCall(adapter, first, pending, args, kwargs, spec, None, None)
    lay = layout(adapter, first, func, args, kwargs, spec, xp, name)
    mode = spec.mode
    kind = (
        ""
        if mode.is_default or not adapter.splits
        else "elementwise"
        if mode.elementwise
        else "stencil"
        if mode.depth is not None
        else f"signature {mode.signature}"
    )
    # Calls on blocks (Dask) check each block's core shape after its loop dimensions.
    shapes = lay.cores if kind else lay.shapes
    check = OutputCheck(shapes, lay.dtypes, lay.multi, lay.declared, kind)
    call = make_call(
        adapter, first, func, kwargs, spec, check, xp, deferred=True, name=name
    )
    return PreparedCall(adapter, first, call, args, kwargs, spec, lay, None)


_PREPARED = weak("engine: adapter preparations per kernel")


def prepared(adapter: Adapter, func: Callable[..., Any], spec: CallSpec) -> Any:
    """What ``adapter`` built once for ``func`` and ``spec`` (``None``: nothing).

    Cached on the kernel (weakly: a kernel that goes away takes its preparations
    along), per adapter and spec; built under a lock, so threads that make their
    first call at once share one preparation.
    """
    key = (adapter.name, spec)
    try:
        per_kernel = _PREPARED.get(func)
    except TypeError:  # not weak-referenceable: prepare every time
        return adapter.prepare(func, spec)
    if per_kernel is not None and key in per_kernel:
        return per_kernel[key]
    with _LOCK:
        per_kernel = _PREPARED.setdefault(func, {})
        if key not in per_kernel:
            if len(per_kernel) > 64:  # specs made per call for one kernel
                per_kernel.clear()
            per_kernel[key] = adapter.prepare(func, spec)
        return per_kernel[key]
