"""Compile a Numba kernel call into a registered XLA FFI target (the native path).

:func:`compile_target` writes the body of one ``cfunc`` handler (:mod:`._handler`) for
the call's layout (operands, scalar attributes, baked ``None``\\ s, keywords), by kind:

- ``@njit``: call the kernel, then copy its result(s) into XLA's buffers (one
  ``memcpy`` when C-contiguous), checking the shapes;
- ``@vectorize``: an element loop over XLA's buffers calling the scalar function (no
  temporary array), broadcasting size-1 dimensions;
- ``@guvectorize``: a loop over the loop dimensions calling the core function on
  views of XLA's buffers (outputs included), broadcasting size-1 loop dimensions.

The handler and its kernel compile as one Numba function, cached on disk
(:mod:`._cache`). A kernel that writes into an input does not compile (the inputs are
read-only); that is the user's error and is raised here, as eagerly. Other refusals are
reason strings: the caller uses the callback path. :func:`batched` gives a staged call
its ``vmap`` rule (one call of a new signature).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from lazyapply._errors import ArgumentTypeError
from lazyapply._kernels import writes_read_only
from lazyapply._readonly import writes_through_flat
from lazyapply.adapters.jax.native._bodies import Plan, plan_body

__all__ = ["batched", "compile_target"]

logger = logging.getLogger("lazyapply.native")
_COUNTER = itertools.count()


class Built:
    """A registered handler: the cfunc (keeps the machine code alive) and a note."""

    def __init__(self, handler: Any, note: str) -> None:
        self.handler = handler
        self.note = note


def compile_target(
    template: Any, args: Any, positions: Any, key: Any
) -> tuple[str, Built] | str:
    """Compile (or load) and register the FFI handler for signature ``key``.

    Returns ``(target name, Built)`` or why Numba cannot run this call natively.
    """
    import jax

    from lazyapply.adapters.jax.native import _cache
    from lazyapply.adapters.jax.native._handler import capsule, make_handler

    plan = plan_body(template, args, positions, key)
    if isinstance(plan, str):
        return plan
    entry, digest, note = _entry(plan)
    token = int(digest[:15], 16)
    plan.failure.register(token)
    committed = entry is not None and _cache.is_committed(entry, digest)
    if entry is not None and not committed:
        _cache.clear(entry)  # never trust machine code without the commit mark
    if not committed:
        logger.info("compiling native code for `%s` (%s) …", plan.name, plan.signature)
    start = time.perf_counter()
    # On disk; again on disk after clearing a damaged entry; then in memory only.
    tries = [entry, entry, None] if committed else [entry, None]
    handler: Any = None
    hit, where = False, None
    for attempt, where in enumerate(tries if entry is not None else [None]):
        try:
            handler, hit = make_handler(*plan.handler_args, token, plan.env, where)  # type: ignore[call-arg]
            break
        except Exception as exc:
            if where is None or (attempt == 0 and not committed and _numba_error(exc)):
                return _refusal(plan, exc)  # the kernel does not compile
            logger.info("native cache entry %s unusable (%s): rebuilding", where, exc)
            _cache.clear(where)
            note = f"not cached on disk: {type(exc).__name__}: {exc}"
    if where is None:
        entry = None
    else:
        note = f"cache {entry}"
    seconds = time.perf_counter() - start
    if not hit and writes_through_flat(plan.checked):
        if entry is not None:
            _cache.clear(entry)
        raise _mutation(plan, "an input through .flat")
    if entry is not None and not hit:  # compiled and checked here: commit it
        why = getattr(handler, "_uncacheable", None)
        if why:
            note = f"not cached on disk: Numba says {why}"
        else:
            _cache.mark_committed(entry, digest, {"kernel": plan.name})
    how = "loaded from the disk cache" if hit else "compiled"
    logger.log(
        logging.DEBUG if hit else logging.INFO,
        "native code for `%s` (%s) %s in %.3f s",
        plan.name,
        plan.signature,
        how,
        seconds,
    )
    target = f"lazyapply_numba_{next(_COUNTER)}_{plan.name}"[:120]
    jax.ffi.register_ffi_target(target, capsule(handler.address), platform="cpu")
    return target, Built(handler, f" ({how} in {seconds:.2f} s; {note})")


def _entry(plan: Plan) -> tuple[Any, str, str]:
    """The cache folder (``None`` when not cacheable), the digest and a note."""
    import hashlib

    from lazyapply.adapters.jax.native import _cache

    parts = (plan.name, plan.signature, plan.handler_args[:3], "\n".join(plan.body))
    try:
        identity = _cache.kernel_identity(plan.kernel)
    except _cache.Uncacheable as why:
        digest = hashlib.sha256(repr((parts, next(_COUNTER))).encode()).hexdigest()
        return None, digest, f"not cached on disk: {why}"
    entry, digest = _cache.entry_for((identity, parts, plan.extra_key))
    return entry, digest, f"cache {entry}"


def _numba_error(exc: Exception) -> bool:
    from numba.core.errors import NumbaError

    return isinstance(exc, NumbaError)


def _refusal(plan: Plan, exc: Exception) -> str:
    from lazyapply.adapters.jax.native._store import MARK

    text = str(exc)
    logger.debug("native compile of `%s` failed: %s", plan.name, text)
    if "readonly array" in text and ("setitem" in text or "Cannot modify" in text):
        raise _mutation(plan, "an input") from None
    argtypes = _kernel_types(plan)
    if argtypes is not None and writes_read_only(plan.kernel, argtypes):
        raise _mutation(plan, "an input") from None  # x += 1, x.fill(0), out=x...
    if MARK in text:
        reason = text.split(MARK, 1)[1].splitlines()[0]
        return f"{reason} (the callback checks)"
    first = (text.strip().splitlines() or [""])[0]
    return f"Numba could not compile the kernel for ({plan.signature}): {first}"


def _kernel_types(plan: Plan) -> tuple[Any, ...] | None:
    """The Numba types the handler calls an ``@njit`` kernel with (no keywords)."""
    from numba import types

    if plan.failure.keys:
        return None
    ins, scalars = plan.handler_args[0], plan.handler_args[1]
    out: list[Any] = []
    for p in plan.failure.layout:
        if p[0] == "a":
            dtype, ndim = ins[p[1]]
            out.append(types.Array(dtype, ndim, "C", readonly=True))
        else:
            out.append(scalars[p[1]] if p[0] == "s" else types.none)
    return tuple(out)


def _mutation(plan: Plan, what: str) -> ArgumentTypeError:
    where = plan.failure.template.where()
    return ArgumentTypeError(
        f"{where}: the kernel writes into {what}; JAX arrays are immutable, so its "
        "inputs reach it read-only on every path (the native path compiles it with "
        "read-only array types). Work on a copy (x = x.copy()) or write into a new "
        "array"
    )


def batched(
    stage: Callable[..., Any],
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...],
) -> Callable[..., Any]:
    """``stage`` with a vmap rule: one call of a handler compiled for rank + 1.

    ``jax.ffi.ffi_call``'s own batching would call the same handler, compiled for the
    unbatched ranks, with batched buffers; this rule stages a new signature instead.
    An unbatched operand gets a size-1 batch axis (the handler broadcasts it: no copy).
    """
    import jax

    from lazyapply.adapters.jax.native import native_stage

    staged = jax.custom_batching.custom_vmap(stage)
    top = max(loop_ndims)

    @staged.def_vmap
    def _rule(size: int, in_batched: list[bool], *ops: Any) -> Any:
        lead = [op if b else op[None] for op, b in zip(ops, in_batched, strict=True)]
        # Put the batch axis in front of the outermost loop axis of every operand,
        # as the callback's _align does, so that loop axes still broadcast.
        aligned = [
            op.reshape((op.shape[0], *(1,) * (top - n), *op.shape[1:]))
            if n < top
            else op
            for op, n in zip(lead, loop_ndims, strict=True)
        ]
        new_args = list(args)
        for i, op in zip(positions, aligned, strict=True):
            new_args[i] = op
        shapes = tuple(
            jax.ShapeDtypeStruct((size, *s.shape), s.dtype)  # type: ignore[no-untyped-call]
            for s in structs
        )
        inner = native_stage(
            template, tuple(new_args), positions, shapes, (top + 1,) * len(ops)
        )
        if isinstance(inner, str):  # one call per batch element instead
            full = [jax.numpy.broadcast_to(op, (size, *op.shape[1:])) for op in lead]
            out = jax.lax.map(lambda xs: stage(*xs), tuple(full))
        else:
            out = inner(*aligned)
        return out, ([True] * len(structs) if template.check.multi else True)

    return staged
