"""The engine: it owns the sequence of every call, whatever the backend.

1. The arguments' adapter (found by :func:`lazyapply._detect.find_adapter`) says
   whether the call can run now or must be deferred (a Dask graph, a JAX trace).
2. Once per kernel, backend and spec, the adapter may prepare what it needs
   (:func:`prepared`): a ``jax.custom_jvp`` wrapper, a custom op, an FFI target.
3. One :class:`~lazyapply._call.KernelCall`, built by :func:`make_call` and nowhere
   else, runs the kernel: now (eager backends, cached per spec), inside a Dask task,
   or inside a JAX host callback.

The engine never names a backend: everything backend-specific is an adapter's answer.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._call import KernelCall
from lazyapply._check import OutputCheck
from lazyapply.spec import (
    INFERRED,
    CallSpec,
    OutputSpec,
    kernel_name,
    resolve_dtype,
)
from lazyapply.spec._metadata import layout as output_layout
from lazyapply.spec._metadata import output_for_call

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter

__all__ = ["make_call", "prepared", "run"]

_LOCK = threading.Lock()


def run(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
) -> Any:
    """Run ``func`` as ``spec`` says: now, or deferred by the arguments' adapter."""
    if adapter.defers and adapter.deferred(args):
        return _defer(adapter, first, func, args, kwargs, spec, xp)
    if spec.mode.signature is not None:
        # A plain call here, but core dimensions that do not match the arguments are
        # an error on every backend, and shape= may give only core sizes.
        from lazyapply.spec._modes import eager_signature_spec

        spec = eager_signature_spec(spec, func, args, adapter.label(first))
    device = adapter.device(first) if adapter.devices else None
    # Keyed by the spec's value through its precomputed hash (a Python-level
    # __hash__ call costs more than the rest of the lookup); a hit is confirmed below.
    key = (func, spec._hash, xp, device)
    calls = adapter.calls
    try:
        call = calls[key]
        if call.spec is not spec and call.spec != spec:
            raise KeyError(key)  # two specs with one hash: rebuild, never mix them
    except KeyError:
        call = _eager_call(adapter, first, func, spec, xp)
        if len(calls) > 256:  # kernels made per call (lambdas): stay bounded
            calls.clear()
        calls[key] = call
    except TypeError:  # an unhashable kernel or namespace: no cache
        call = _eager_call(adapter, first, func, spec, xp)
    if spec.infer and spec.mode.signature is not None:
        # Strict gufunc calls check what Dask and jit infer from the signature.
        layout = output_layout(adapter, first, func, args, kwargs, spec, xp, call.name)
        check = OutputCheck(layout.shapes, layout.dtypes, layout.multi, layout.declared)
        return call.run(args, kwargs, check=check)
    if spec.shape_fn is not None or spec.dtype_fn is not None:
        output = output_for_call(spec, call.name, args, kwargs)
        check = _check(adapter, first, output, args, xp, call.name, spec.strict)
        return call.run(args, kwargs, check=check)
    if spec.infer:
        if len(args) == 1 and spec.output is INFERRED:
            return call.run(args, kwargs, like=first)  # the output keeps its metadata
        return call.run(args, kwargs, check=_inferred(adapter, call, args, xp, first))
    return call.run(args, kwargs)


def _eager_call(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    spec: CallSpec,
    xp: Any,
) -> KernelCall:
    name = spec.name or kernel_name(func)
    check = _check(adapter, first, spec.output, (), xp, name, strict=False)
    return make_call(adapter, first, func, {}, spec, check, xp, deferred=False)


def _check(
    adapter: Adapter,
    first: Any,
    output: OutputSpec,
    args: tuple[Any, ...],
    xp: Any,
    name: str,
    strict: bool,
) -> OutputCheck:
    """Declared metadata, completed from ``args`` where ``strict`` needs it."""
    ns = xp if xp is not None else adapter.namespace(first)
    shapes, dtypes = output.shapes, output.dtypes
    declared = (shapes is not None, dtypes is not None)
    if strict and not output.declared:
        shapes, dtypes = adapter.infer_output(output, args, ns, name)
    elif dtypes is not None:
        dtypes = tuple(resolve_dtype(d, ns, name) for d in dtypes)
    if dtypes is not None:
        dtypes = tuple(adapter.canonical(d) for d in dtypes)
    return OutputCheck(shapes, dtypes, output.multi, declared)


def _inferred(
    adapter: Adapter, call: KernelCall, args: tuple[Any, ...], xp: Any, first: Any
) -> OutputCheck:
    """Strict eager calls without declarations: what Dask and jit would infer."""
    declared = call.check
    output = OutputSpec(declared.shapes, declared.dtypes, declared.multi)
    return _check(adapter, first, output, args, xp, call.name, strict=True)


def make_call(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    kwargs: dict[str, Any],
    spec: CallSpec,
    check: OutputCheck,
    xp: Any,
    *,
    deferred: bool,
    name: str | None = None,
) -> KernelCall:
    """The one constructor of a :class:`KernelCall`, from the adapter's answers."""
    name = name or spec.name or kernel_name(func)
    target = adapter.target(first, xp, deferred=deferred)
    if spec.as_numpy:
        target.check_host(name)
    return KernelCall(
        func,
        kwargs,
        spec=spec,
        name=name,
        backend=adapter.label(first),
        host=target.host if spec.as_numpy else None,
        check=check,
        strict=deferred or spec.strict,
        convert=target.convert,
        out_types=target.out_types,
        device=target.device,
        move=target.move,
        canon=target.canon,
    )


def _defer(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
) -> Any:
    name = spec.name or kernel_name(func)
    if not adapter.lays_out:
        # Dynamo traces torch's deferred calls as bytecode and cannot trace the
        # layout's caches: the strategy lays out where the outputs are made (the custom
        # op's fake implementation, on fake tensors), with the same function.
        check = OutputCheck(None, None, spec.output.multi, (False, False))
        call = make_call(
            adapter, first, func, kwargs, spec, check, xp, deferred=True, name=name
        )
        return adapter.defer(call, args, spec, None, first, None)  # type: ignore[arg-type]
    layout = output_layout(adapter, first, func, args, kwargs, spec, xp, name)
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
    shapes = layout.cores if kind else layout.shapes
    check = OutputCheck(shapes, layout.dtypes, layout.multi, layout.declared, kind)
    call = make_call(
        adapter, first, func, kwargs, spec, check, xp, deferred=True, name=name
    )
    return adapter.defer(call, args, spec, layout, first, prepared(adapter, func, spec))


_PREPARED: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def prepared(adapter: Adapter, func: Callable[..., Any], spec: CallSpec) -> Any:
    """What ``adapter`` built once for ``func`` and ``spec`` (``None``: nothing).

    Cached on the kernel (weakly: a kernel that goes away takes its preparations
    along), per adapter and spec; built under a lock, so threads that make their
    first call at once share one preparation.
    """
    key = (adapter.name, spec)
    try:
        per_kernel = _PREPARED[func]
    except KeyError:
        per_kernel = None
    except TypeError:  # not weak-referenceable: prepare every time
        return adapter.prepare(func, spec)
    if per_kernel is not None and key in per_kernel:
        return per_kernel[key]
    with _LOCK:
        per_kernel = _PREPARED.setdefault(func, {})
        if key not in per_kernel:
            per_kernel[key] = adapter.prepare(func, spec)
        return per_kernel[key]
