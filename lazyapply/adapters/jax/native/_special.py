"""SciPy special ufuncs and Cython scalar kernels under ``jax.jit``, natively.

:func:`special_stage` is the native decision's branch for the kernels that
:func:`._capi.foreign_kind` recognises. It resolves the loop as NumPy would for the
call's dtypes and Python scalars (NEP 50), checks it against the declared outputs,
and stages one ``jax.ffi.ffi_call`` of :data:`._loops.HANDLER` (registered once)
with the loop's address as data: no per-function compile for a SciPy ufunc, one
small compile per C signature for a Cython entry. Operands are cast to the loop's
dtypes and reshaped to the result's rank (leading 1s), and Python scalars become
constants of their loop dtype, so broadcasting, 0-d and empty arrays, ``jax.vmap``
(``expand_dims``: unbatched operands broadcast in the handler) and per-shard calls
need nothing more. Every refusal is a reason string; the caller then uses the
callback, which gives the same values (SciPy's own loops) or the same error.
"""

from __future__ import annotations

import platform
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from lazyapply.adapters.jax.native import _capi

__all__ = ["special_coverage", "special_stage"]

TARGET = "lazyapply_foreign_loop"
_LOCK = threading.Lock()
_REGISTERED: list[Any] = []  # the handler, kept alive while XLA holds its address
# XLA_FFI_DataType of each NumPy kind and item size (xla/ffi/api/c_api.h).
_XLA_TYPES = {
    ("b", 1): 1, ("i", 1): 2, ("i", 2): 3, ("i", 4): 4, ("i", 8): 5,
    ("u", 1): 6, ("u", 2): 7, ("u", 4): 8, ("u", 8): 9,
    ("f", 2): 10, ("f", 4): 11, ("f", 8): 12, ("c", 8): 15, ("c", 16): 18,
}  # fmt: skip
_WEAK = (bool, int, float, complex)


def special_stage(
    kind: str,
    template: Any,
    args: tuple[Any, ...],
    positions: tuple[int, ...],
    structs: tuple[Any, ...],
) -> tuple[str, Callable[..., Any]] | str:
    """``(description, staging function of the operands)``, or why not."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (the native path compiles its handler with it)"
    import jax

    if jax.default_backend() != "cpu":
        return f"the default JAX backend is {jax.default_backend()}, not cpu"
    if template.kwargs:
        return f"keyword arguments {sorted(template.kwargs)} (only positional ones)"
    kinds = _kinds(args, positions)
    if isinstance(kinds, str):
        return kinds
    if kind == "ufunc":
        found = _ufunc_loop(template.func, kinds)
    else:
        found = _cython_loop(template.func, kinds)
    if isinstance(found, str):
        return found
    chars, fn, data, what = found
    nin = len(args)
    reason = _check(template, chars, nin, structs)
    if reason:
        return reason
    values: list[Any] = []
    for i, a in enumerate(args):
        if i in positions:
            values.append(None)
            continue
        try:  # NumPy's conversion of a (weak) scalar to its loop dtype
            values.append(np.asarray(a, dtype=chars[i]))
        except (OverflowError, ValueError) as exc:
            return f"argument {i} ({a!r}) does not fit the loop {what}: {exc}"
    target = _register()
    dts = [np.dtype(c) for c in chars]
    attrs = _attributes(dts, fn, data)
    multi = template.check.multi
    call = jax.ffi.ffi_call(
        target, structs if multi else structs[0], vmap_method="expand_dims"
    )
    rank = len(structs[0].shape)

    def stage(*operands: Any) -> Any:
        import jax.numpy as jnp

        ops = iter(operands)
        full = []
        for i, v in enumerate(values):
            x = next(ops).astype(dts[i]) if v is None else jnp.asarray(v)
            full.append(x.reshape((1,) * (rank - x.ndim) + x.shape))
        return call(*full, **attrs)

    return f"{target} ({what})", stage


def _kinds(args: tuple[Any, ...], positions: tuple[int, ...]) -> list[Any] | str:
    """What NumPy resolves a loop from: dtypes, and Python types of weak scalars."""
    kinds: list[Any] = []
    for i, a in enumerate(args):
        if i in positions:
            kinds.append(np.dtype(a.dtype))
        elif type(a) in _WEAK:
            kinds.append(type(a))
        elif isinstance(a, np.generic):
            kinds.append(a.dtype)
        else:
            return f"argument {i} is a {type(a).__name__} (only arrays and numbers)"
    return kinds


def _attributes(dts: list[np.dtype[Any]], fn: int, data: int) -> dict[str, Any]:
    """The handler's attributes: addresses, item sizes and XLA dtypes (8 bits each)."""
    return {
        "data": np.int64(data),
        "fn": np.int64(fn),
        "sizes": np.int64(sum(d.itemsize << (8 * k) for k, d in enumerate(dts))),
        "types": np.int64(
            sum(_XLA_TYPES[d.kind, d.itemsize] << (8 * k) for k, d in enumerate(dts))
        ),
    }


def _ufunc_loop(ufunc: Any, kinds: list[Any]) -> Any:
    import scipy.special as sc  # type: ignore[import-untyped]

    actions = {k: v for k, v in sc.geterr().items() if k != "memory"}
    if any(v != "ignore" for v in actions.values()):
        raised = sorted(k for k, v in actions.items() if v != "ignore")
        return (
            f"scipy.special.errstate is not 'ignore' for {', '.join(raised)}: its "
            "warnings and errors need Python (the callback keeps them)"
        )
    try:
        dtypes = ufunc.resolve_dtypes((*kinds, *(None,) * ufunc.nout))
    except (TypeError, np.exceptions.DTypePromotionError) as exc:
        return f"no loop of scipy.special.{ufunc.__name__} for these dtypes: {exc}"
    chars = "".join(d.char for d in dtypes)
    loop = f"{chars[: ufunc.nin]}->{chars[ufunc.nin :]}"
    found = _capi.ufunc_loop(ufunc, chars)
    if isinstance(found, str):
        return found
    return chars, found[0], found[1], f"scipy.special.{ufunc.__name__} loop {loop}"


def _cython_loop(func: Any, kinds: list[Any]) -> Any:
    from numba.extending import get_cython_function_address

    from lazyapply.adapters.jax.native._loops import entry_loop

    entries = _capi.cython_entries(func)
    if isinstance(entries, str):
        return entries
    entry = _capi.pick_entry(entries, kinds)
    if isinstance(entry, str):
        return f"{func.__name__}: {entry}"
    sig = entry.signature
    if ("D" in sig.args + sig.results or "F" in sig.args + sig.results) and not (
        platform.machine() in ("x86_64", "AMD64") and sys.platform != "win32"
    ):
        # LLVM passes {double, double} by value as the System V x86-64 ABI passes
        # C complex: checked there only (Windows passes it by reference).
        return f"{entry.name} takes or returns a C complex by value: not on this ABI"
    import jax

    # Buffers hold what JAX can hold (float32 without x64); the loop converts.
    canon = jax.dtypes.canonicalize_dtype
    chars = "".join(np.dtype(canon(np.dtype(c))).char for c in sig.args + sig.results)
    address = get_cython_function_address(entry.module, entry.name)
    loop = entry_loop(sig, tuple(chars))  # cached for the process: XLA keeps it
    what = f"{entry.module}.{entry.name}: {sig.text}"
    return chars, loop.address, address, what


def _check(template: Any, chars: str, nin: int, structs: tuple[Any, ...]) -> str:
    """Why the loop's results cannot fill the declared outputs ('' when they can)."""
    import jax

    outs = chars[nin:]
    if len(outs) != len(structs) or (len(outs) > 1) != template.check.multi:
        return (
            f"the kernel returns {len(outs)} output(s), {len(structs)} declared "
            "(the callback checks)"
        )
    for c in chars:
        if np.dtype(jax.dtypes.canonicalize_dtype(np.dtype(c))) != np.dtype(c):
            return f"the loop needs {np.dtype(c)} buffers: enable jax_enable_x64"
    for k, (c, s) in enumerate(zip(outs, structs, strict=True)):
        if np.dtype(c) != np.dtype(s.dtype):
            return (
                f"output {k} is {np.dtype(c)}, expected {np.dtype(s.dtype)} "
                "(the callback checks)"
            )
    if len({tuple(s.shape) for s in structs}) != 1:
        return "the outputs' shapes differ (an elementwise kernel's are equal)"
    return ""


def _register() -> str:
    import jax

    from lazyapply.adapters.jax.native._handler import capsule

    with _LOCK:
        if not _REGISTERED:
            from lazyapply.adapters.jax.native._loops import HANDLER

            handler = capsule(int(HANDLER.address))  # type: ignore[arg-type]
            jax.ffi.register_ffi_target(TARGET, handler, platform="cpu")
            _REGISTERED.append(HANDLER)
    return TARGET


def special_coverage() -> list[tuple[str, list[str], list[str]]]:
    """Which loops of each ``scipy.special`` ufunc run natively (the docs' table).

    ``(name, native loops, other loops with the reason)`` per ufunc, in name order;
    aliases (``digamma`` of ``psi``) are listed under each name. Loops whose dtypes
    JAX has no arrays for (``long double``) stay on the callback path; float64,
    int64 and complex128 loops need ``jax_enable_x64``.
    """
    import scipy.special as sc  # type: ignore[import-untyped]

    rows = []
    for name in sorted(dir(sc)):
        ufunc = getattr(sc, name)
        if not isinstance(ufunc, np.ufunc):
            continue
        native: list[str] = []
        other: list[str] = []
        for loop in ufunc.types:
            chars = loop.replace("->", "")
            if any(np.dtype(c).kind not in "biufc" or c == "g" for c in chars):
                other.append(f"{loop} (no JAX dtype for long double)")
                continue
            found = _capi.ufunc_loop(ufunc, chars)
            (other if isinstance(found, str) else native).append(
                f"{loop} ({found})" if isinstance(found, str) else loop
            )
        rows.append((name, native, other))
    return rows
