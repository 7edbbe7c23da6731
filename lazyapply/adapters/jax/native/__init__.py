"""The native path: a Numba kernel under ``jax.jit`` as an XLA FFI target, no Python.

:func:`native_stage` turns one traced call of a Numba dispatcher (``@njit``,
``@vectorize``, ``@guvectorize``) into a function of the traced operands that stages
``jax.ffi.ffi_call``. The handler (:mod:`._handler`) is compiled and registered once
per signature: operand dtypes and ranks, the types of the Python scalars (passed as FFI
attributes, so a new value neither recompiles nor retraces the handler), the positions
of ``None`` arguments, result dtypes and ranks. When the path cannot apply,
:func:`native_stage` returns the reason and the caller uses its ``pure_callback``. Every
decision is logged on the ``lazyapply.native`` logger at DEBUG and kept for
:func:`explain_native`.

Nothing here imports jax or numba at import time.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from lazyapply._caches import BoundedDict, bounded

__all__ = ["explain_native", "native_decision", "native_stage"]

logger = logging.getLogger("lazyapply.native")

_LOCK = threading.Lock()
# Handlers are never evicted: XLA keeps their addresses for the life of the process.
_TARGETS: BoundedDict[tuple[Any, ...], tuple[str, Any] | str] = bounded(
    "jax native: FFI targets per signature", 512
)
_DECISIONS = bounded("jax native: last decision per kernel", 1024)
_SCALARS = (bool, int, float)


def explain_native(kernel: Any) -> str | None:
    """Why the last traced call of ``kernel`` did or did not take the native path.

    Returns ``"native: <FFI target>"``, ``"callback: <reason>"``, or ``None`` when
    ``kernel`` was never staged under a JAX transformation with ``as_numpy=True``.
    """
    # The kernel itself first: a Numba dispatcher's __wrapped__ is its Python
    # function, which may have been staged on its own (the callback path).
    found = _DECISIONS.get(kernel)
    return found or _DECISIONS.get(getattr(kernel, "__wrapped__", None))


def _decide(kernel: Any, name: str, decision: str) -> None:
    _DECISIONS.put(kernel, decision)
    logger.debug("%s: %s", name, decision)


def kernel_kind(func: Any) -> str | None:
    """'jit', 'ufunc' or 'gufunc' for a Numba dispatcher; ``None`` otherwise."""
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    from numba.core.dispatcher import Dispatcher
    from numba.np.ufunc.dufunc import DUFunc
    from numba.np.ufunc.gufunc import GUFunc

    if isinstance(func, Dispatcher):
        return "jit"
    if isinstance(func, DUFunc):
        return "ufunc"
    return "gufunc" if isinstance(func, GUFunc) else None


def native_stage(
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...] | None,
    as_numpy: bool = True,
    padded: int = 0,
) -> Callable[..., Any] | str:
    """A function of the operands ``args[i] for i in positions`` staging the kernel.

    Parameters
    ----------
    template
        The callback path's :class:`~lazyapply._call.KernelCall` (kernel, kwargs, name,
        multi, declared): its checks and messages are reused on the error path.
    args, positions
        The call's positional arguments and which of them are traced operands.
    structs
        ``jax.ShapeDtypeStruct`` per output.
    loop_ndims
        Loop ranks of the operands for an elementwise/gufunc kernel (``vmap`` batches
        them into one call); ``None`` for a whole-array kernel (one call per element).
    as_numpy
        The call's option; the native path needs NumPy inputs (``True``).
    padded
        For one shard that XLA pads (see :mod:`.._shard`): its loop rank. The staging
        then takes the shard's valid extents (int32) after the operands, and the
        handler loops over those elements only.

    Returns
    -------
    callable or str
        The staging function, or why the native path does not apply.
    """
    func, name = template.func, template.name
    from lazyapply.adapters.jax.native._capi import foreign_kind  # lazyapply issue 20

    kind = foreign_kind(func)  # a SciPy ufunc or a Cython function: its C loop
    if kind is not None and padded:
        return "a padded shard of a foreign loop (the host callback slices it)"
    if kind is not None:
        from lazyapply.adapters.jax.native._special import special_stage

        staged = special_stage(kind, template, args, positions, structs)
        if isinstance(staged, str):
            _decide(func, name, f"callback: {staged}")
            return staged
        _decide(func, name, f"native: {staged[0]}")
        return staged[1]
    if not as_numpy:
        return "as_numpy=False: the kernel takes JAX arrays"
    dtypes = [args[i].dtype for i in positions] + [s.dtype for s in structs]
    built: tuple[str, Any] | str | None = _refusal(
        func, args, positions, template.kwargs, dtypes
    )
    if built is None:
        built = _target(template, args, positions, structs, padded)
    if isinstance(built, str):
        _decide(func, name, f"callback: {built}")
        return built
    target = built[0]
    _decide(func, name, f"native: {target}{getattr(built[1], 'note', '')}")
    loops = None if padded else loop_ndims  # a shard is never batched
    return _stager(target, template, args, positions, structs, loops)


def native_decision(
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...] | None,
    as_numpy: bool = True,
) -> tuple[Any, Callable[..., Any] | None]:
    """:func:`native_stage` as a decision: ``(Decision, staging or None)``.

    The route is ``native`` (the reason names the FFI target) with the staging
    function, or ``callback`` (the reason says why not) with ``None``.
    """
    from lazyapply.adapters.jax._stage import Decision, Route

    staged = native_stage(template, args, positions, structs, loop_ndims, as_numpy)
    if isinstance(staged, str):
        return Decision(Route.CALLBACK, staged), None
    target = explain_native(template.func) or ""
    return Decision(Route.NATIVE, target.removeprefix("native: ")), staged


def _refusal(
    func: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    kwargs: dict[str, Any],
    dtypes: list[Any],
) -> str | None:
    import jax
    import numpy as np

    kind = kernel_kind(func)
    if kind is None:
        return f"{type(func).__name__} is not a Numba dispatcher"
    if kind == "jit" and func.targetoptions.get("forceobj"):
        return "the Numba kernel is compiled in object mode"
    if jax.default_backend() != "cpu":
        return f"the default JAX backend is {jax.default_backend()}, not cpu"
    for dt in map(np.dtype, dtypes):
        # Numba's array types: bool, integers, float32/64, complex64/128.
        if dt.kind not in "biufc" or dt == np.float16:
            return f"Numba has no {dt} arrays"
    only = "only bool/int/float/None and NumPy bool/integer/float32/float64 scalars"
    for i, a in enumerate(args):
        if i not in positions and a is not None and not _attribute(a):
            return f"argument {i} is a {type(a).__name__} ({only})"
    for key, v in kwargs.items():
        if v is not None and not _attribute(v):
            return f"keyword {key!r} is a {type(v).__name__} ({only})"
    big = [
        v for v in (*args, *kwargs.values()) if type(v) is int and v.bit_length() > 63
    ]
    if big:
        return f"the Python int {big[0]} does not fit in int64"
    return None


def _attribute(v: Any) -> bool:
    """Whether ``v`` travels as an FFI attribute of its own type: a Python bool, int
    or float, or a NumPy scalar Numba types as itself (bool, integers, float32,
    float64), so that a kernel given ``np.float32(s)`` computes in float32, as
    eagerly (float16 and complex: no Numba scalar or no FFI attribute)."""
    if type(v) in _SCALARS:
        return True
    numpy = sys.modules.get("numpy")
    if numpy is None or not isinstance(v, numpy.generic):
        return False
    dt = numpy.dtype(type(v))
    return (dt.kind in "biu" and dt.itemsize <= 8) or dt.name in ("float32", "float64")


def scalar_type(v: Any) -> str:
    """The Numba type name of a static argument (a NumPy scalar: its own dtype's)."""
    t = type(v)
    if t is bool:
        return "bool"
    if t is int:
        return "int64"
    if t is float:
        return "float64"
    import numpy as np

    return np.dtype(t).name


def _target(
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: Any,
    padded: int,
) -> tuple[str, Any] | str:
    """The registered FFI target for this signature (compiled once, thread-safely)."""
    import numpy as np

    kw = template.kwargs
    statics = [(i, args[i]) for i in range(len(args)) if i not in positions]
    key = (
        template.func,
        template.name,
        template.check.declared,
        template.check.multi,
        tuple((np.dtype(args[i].dtype), args[i].ndim) for i in positions),
        tuple((i, None if v is None else scalar_type(v)) for i, v in statics),
        tuple((k, None if v is None else scalar_type(v)) for k, v in kw.items()),
        tuple((np.dtype(s.dtype), len(s.shape)) for s in structs),
        padded,
    )
    from lazyapply.adapters.jax.native._build import compile_target

    with _LOCK:  # one compile per signature, even when threads trace at once
        found = _TARGETS.get(key)
        if found is None:
            found = _TARGETS.put(key, compile_target(template, args, positions, key))
    return found


def _stager(
    target: str,
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
    loop_ndims: tuple[int, ...] | None,
) -> Callable[..., Any]:
    import jax
    import numpy as np

    values = [a for i, a in enumerate(args) if i not in positions and a is not None]
    values += [v for v in template.kwargs.values() if v is not None]
    # Attributes of the handler's types: a NumPy scalar keeps its own dtype.
    attrs = {
        f"s{j:03d}": np.bool_(v)
        if type(v) is bool
        else np.int64(v)
        if type(v) is int
        else np.float64(v)
        if type(v) is float
        else v
        for j, v in enumerate(values)
    }
    result = structs if template.check.multi else structs[0]
    method = None if loop_ndims is not None else "sequential"
    call = jax.ffi.ffi_call(target, result, vmap_method=method)

    def stage(*operands: Any) -> Any:
        return call(*operands, **attrs)

    if loop_ndims is None:
        return stage
    from lazyapply.adapters.jax.native._build import batched

    return batched(stage, template, args, positions, structs, loop_ndims)
