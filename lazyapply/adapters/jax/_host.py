"""A host callback that XLA can partition: our own FFI target calling back into Python.

``jax.pure_callback`` cannot be lowered inside ``custom_partitioning`` on JAX 0.10:
the partition's per-shard function is lowered into a module of its own
(``mlir.build_mlir_module_helper``), whose list of host callbacks is dropped, so the
compiled program's ``xla_ffi_python_cpu_callback`` looks up a callback index that
does not exist and the process crashes when it runs (jax-ml/jax#23620: the host
callbacks would have to reach ``backend.compile`` before SPMD partitioning has made
them). This module stands in for it on CPU: ``lazyapply_host_callback`` is an XLA
FFI target (typed API, as in :mod:`.native`) whose handler is a ``ctypes`` function,
which takes the GIL and calls the staging's :class:`~._callback.Callback` on read-only
NumPy views of the operands, then writes the results into XLA's buffers. The one
attribute, ``key``, selects the :class:`HostEntry`: a random 63-bit number (not a
counter), so that a program compiled in another process (a persistent compilation
cache) finds no entry and fails loudly rather than calling another kernel.

An entry lives as long as the staging that made it or the partitioned program that
uses it (the partition rule keeps it, and JAX keeps the rule with the executable).

When one shard is padded (a loop dimension that the mesh does not divide), the staging
passes one more operand: the shard's valid extent of every loop dimension. The
kernel then sees only the real elements, and only they are written.
"""

from __future__ import annotations

import ctypes
import secrets
import threading
import weakref
from typing import TYPE_CHECKING, Any

from lazyapply._check import OutputCheck
from lazyapply._errors import KernelOutputError, LazyApplyError
from lazyapply.adapters.jax._callback import error_text

if TYPE_CHECKING:
    from lazyapply.adapters.jax._callback import Callback

__all__ = ["TARGET", "HostEntry", "host_call", "register_target"]

TARGET = "lazyapply_host_callback"
_FFI_API_VERSION = (0, 3)  # XLA_FFI_API_MAJOR / MINOR of jaxlib 0.10's c_api.h
_ENTRIES: weakref.WeakValueDictionary[int, HostEntry] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()
_REGISTERED: list[Any] = []  # the ctypes function and its capsule, kept alive


class HostEntry:
    """One staging's callback, its operand and result types, and its key."""

    __slots__ = (
        "__weakref__",
        "as_jax",
        "callback",
        "in_dtypes",
        "key",
        "multi",
        "outs",
    )

    def __init__(
        self,
        callback: Callback,
        in_dtypes: tuple[Any, ...],
        outs: tuple[Any, ...],
        multi: bool,
    ) -> None:
        import jax

        struct: Any = jax.ShapeDtypeStruct  # untyped in jax's stubs
        self.callback = callback
        # A kernel without as_numpy gets JAX arrays, as jax.pure_callback gives
        # them (and array_api_extra's lazy_apply promises): the namespace of its
        # arguments is jax.numpy.
        spec = callback.call.spec
        self.as_jax = spec is not None and not spec.as_numpy
        self.in_dtypes = in_dtypes
        # The (padded) shard's results, in the dtypes XLA stores (x64 off: float32).
        self.outs = tuple(struct(s.shape, _canonical(s.dtype)) for s in outs)
        self.multi = multi
        with _LOCK:
            key = secrets.randbits(63)
            while key in _ENTRIES:
                key = secrets.randbits(63)
            self.key = key
            _ENTRIES[key] = self

    def __repr__(self) -> str:  # how jaxprs print it
        return f"<lazyapply host callback of {self.callback.call.name}>"

    def run(self, frame: int) -> None:
        """Call the kernel on the frame's operands; write its results."""
        import numpy as np

        n = len(self.in_dtypes)
        if _i64(frame + 56) not in (n, n + 1) or _i64(frame + 96) != len(self.outs):
            msg = "lazyapply bug: unexpected operands in a host callback's frame"
            raise LazyApplyError(msg)
        args, rets = _i64(frame + 72), _i64(frame + 112)
        ins = [_view(_i64(args + 8 * i), dt) for i, dt in enumerate(self.in_dtypes)]
        outs = [_view(_i64(rets + 8 * k), s.dtype) for k, s in enumerate(self.outs)]
        check = None
        if _i64(frame + 56) == n + 1:  # a padded shard: its valid loop extents
            extents = tuple(int(e) for e in _view(_i64(args + 8 * n), np.int32))
            if 0 in extents:
                return  # a shard of padding only: nothing to compute
            cut = tuple(slice(0, e) for e in extents)
            ins = [a[cut] for a in ins]
            outs = [o[cut] for o in outs]
            old = self.callback.call.check
            check = OutputCheck(
                tuple(o.shape for o in outs), old.dtypes, old.multi, old.declared
            )
        for a in ins:
            a.flags.writeable = False
        if self.as_jax:
            ins = jax_arrays(ins)
        value = self.callback(*ins, check=check)
        for out, v in zip(outs, self.checked(value, outs), strict=True):
            np.copyto(out, v, casting="unsafe")  # only canonical casts get here

    def checked(self, value: Any, outs: Any) -> list[Any]:
        """The kernel's results as NumPy arrays with the shapes and (canonical)
        dtypes of ``outs``, else :class:`~lazyapply.KernelOutputError`."""
        import numpy as np

        values = tuple(value) if self.multi else (value,)
        where = self.callback.call.where()
        if len(values) != len(outs):
            msg = f"{where}: returned {len(values)} outputs, expected {len(outs)}"
            raise KernelOutputError(msg)
        arrays = []
        for k, (out, given) in enumerate(zip(outs, values, strict=True)):
            v = np.asarray(given)
            if v.shape != out.shape or _canonical(v.dtype) != out.dtype:
                msg = (
                    f"{where}: output {k} is {v.dtype}{list(v.shape)}, expected "
                    f"{out.dtype}{list(out.shape)}"
                )
                raise KernelOutputError(msg)
            arrays.append(v)
        return arrays


def jax_arrays(arrays: Any) -> list[Any]:
    """JAX arrays (copies) of a host callback's NumPy operands."""
    import jax.numpy as jnp

    return [jnp.asarray(a) for a in arrays]


def host_call(entry: HostEntry, extents: Any, *ops: Any) -> Any:
    """Stage ``entry``'s callback on ``ops`` (and a padded shard's ``extents``)."""
    import jax
    import numpy as np

    register_target()
    call = jax.ffi.ffi_call(
        TARGET,
        entry.outs if entry.multi else entry.outs[0],
        has_side_effect=False,
    )
    extra = () if extents is None else (extents,)
    return call(*ops, *extra, key=np.int64(entry.key))


def register_target() -> None:
    """Register the FFI target with XLA's CPU platform (once per process).

    Called when a call is staged, before XLA compiles (and partitions) it.
    """
    if _REGISTERED:
        return
    with _LOCK:
        if _REGISTERED:
            return
        import jax

        handler = _HANDLER_TYPE(_handle)
        address = ctypes.cast(handler, ctypes.c_void_p).value
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        capsule = new(address, b"xla._CUSTOM_CALL_TARGET", None)
        jax.ffi.register_ffi_target(TARGET, capsule, platform="cpu")
        _REGISTERED.extend((handler, capsule))


def _handle(frame: int) -> int:
    """The FFI handler: 0 on success, else an ``XLA_FFI_Error*``. Never raises."""
    try:
        ext = _i64(frame + 8)
        if ext and ctypes.c_int32.from_address(ext + 8).value == 1:
            meta = _i64(ext + 24)  # XLA_FFI_Extension_Metadata: the API version
            ctypes.c_int32.from_address(meta + 24).value = _FFI_API_VERSION[0]
            ctypes.c_int32.from_address(meta + 28).value = _FFI_API_VERSION[1]
            return 0
        if ctypes.c_int32.from_address(frame + 32).value != 3:  # only EXECUTE
            return 0
        try:
            _entry(frame).run(frame)
        except LazyApplyError as exc:
            return _error(frame, error_text(exc))
        except BaseException as exc:
            return _error(frame, f"{type(exc).__name__}: {exc}")
        return 0
    except BaseException:  # pragma: no cover - nothing sane is left to report
        return 0


def _entry(frame: int) -> HostEntry:
    # XLA_FFI_Attrs at byte 120: size 136, types 144, names 152, attrs 160.
    kinds = _i64(frame + 144)
    if _i64(frame + 136) != 1 or ctypes.c_int32.from_address(kinds).value != 3:
        msg = "lazyapply bug: a host callback without its key attribute"
        raise LazyApplyError(msg)
    key = _i64(_i64(_i64(_i64(frame + 160)) + 8))  # XLA_FFI_Scalar: dtype, value*
    entry = _ENTRIES.get(key)
    if entry is None:
        msg = (
            "lazyapply: this compiled program calls a host callback that no longer "
            "exists (its staging was released, or the program was compiled in "
            "another process and loaded from a compilation cache). Call the jitted "
            "function again after jax.clear_caches()"
        )
        raise LazyApplyError(msg)
    return entry


def _view(buf: int, dtype: Any) -> Any:
    """A NumPy view of an XLA_FFI_Buffer (data* at 24, rank at 32, dims* at 40)."""
    import numpy as np

    dims = _i64(buf + 40)
    shape = tuple(_i64(dims + 8 * k) for k in range(_i64(buf + 32)))
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    if size == 0:
        return np.empty(shape, dtype)
    raw = (ctypes.c_char * size).from_address(_i64(buf + 24))
    return np.frombuffer(memoryview(raw), dtype).reshape(shape)


def _canonical(dtype: Any) -> Any:
    import jax

    return jax.dtypes.canonicalize_dtype(dtype)


def _i64(address: int) -> int:
    return ctypes.c_int64.from_address(address).value


class _ErrorArgs(ctypes.Structure):
    _fields_ = (  # XLA_FFI_Error_Create_Args
        ("struct_size", ctypes.c_size_t),
        ("extension_start", ctypes.c_void_p),
        ("message", ctypes.c_char_p),
        ("errc", ctypes.c_int32),
    )


_CREATE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(_ErrorArgs))
_HANDLER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)


def _error(frame: int, text: str) -> int:
    """``api->XLA_FFI_Error_Create`` (at byte 48 of XLA_FFI_Api) with ``text``."""
    create = _CREATE(_i64(_i64(frame + 16) + 48))
    args = _ErrorArgs(32, None, text.encode("utf-8", "replace"), 2)  # UNKNOWN
    return int(create(ctypes.byref(args)) or 0)
