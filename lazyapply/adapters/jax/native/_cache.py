"""The native path's disk cache: generated handlers and Numba's machine code for them.

One entry is one folder ``<root>/native/<digest>/``: ``handler.py`` (the generated
source; Numba's cache locates its files by it), ``__pycache__/`` (Numba's index and
machine code, written by Numba's own cache with atomic renames) and ``ok.json``, the
commit mark written last, once the compiled handler passed every check. ``<root>`` is
``$LAZYAPPLY_CACHE_DIR``, else ``$NUMBA_CACHE_DIR/lazyapply``, else the platform's user
cache folder.

The digest covers everything the machine code depends on: the kernel's identity and
code (:func:`kernel_identity`: its bytecode, constants, defaults and the globals it
reads, recursively through the Numba functions it calls), the call's signature, the
versions of Python, NumPy, Numba, llvmlite, JAX and lazyapply, and the source of
this package (:func:`code_digest`). Nothing is trusted
that does not match: a source file that differs from the generated one, an entry
without its commit mark, or machine code Numba cannot load is removed and rebuilt.
Processes that start at once each compile and write the same files; renames make the
last writer win without a reader ever seeing half a file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import types as pytypes
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "cache_root",
    "cached_cfunc",
    "entry_for",
    "is_committed",
    "kernel_identity",
    "mark_committed",
    "write_source",
]

_SOURCE = "handler.py"
_MARK = "ok.json"


def cache_root() -> Path:
    """Where native entries live (see the module docstring)."""
    own = os.environ.get("LAZYAPPLY_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return Path(numba_dir).expanduser() / "lazyapply"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lazyapply"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "lazyapply" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "lazyapply"


def _versions() -> tuple[str, ...]:
    import jax
    import llvmlite  # type: ignore[import-untyped]
    import numba
    import numpy as np

    import lazyapply

    return (
        sys.version,
        np.__version__,
        numba.__version__,
        llvmlite.__version__,  # type: ignore[attr-defined]
        jax.__version__,
        getattr(lazyapply, "__version__", "0"),
        code_digest(Path(__file__).parent),
    )


@functools.cache
def code_digest(folder: Path) -> str:
    """A digest of the sources that generate the machine code (this package).

    Two installations of one lazyapply version whose native code differs (a
    development checkout beside a release, two branches sharing a cache folder)
    must not load each other's handlers: the generated source is checked, but not
    the intrinsics and helpers it calls, nor what Numba writes beside it while
    another process is between its own check and load.
    """
    hasher = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        hasher.update(path.name.encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]


class Uncacheable(Exception):
    """Why a kernel's native code cannot be cached (the message)."""


def kernel_identity(func: Any) -> str:
    """A digest of ``func``'s code and of every global value it reads.

    Raises :class:`Uncacheable` for a closure or a global whose value cannot be part
    of a key (Numba freezes globals into the machine code, so they must be).
    """
    hasher = hashlib.sha256()
    _feed(hasher, func, set(), depth=0)
    return hasher.hexdigest()


def _py_func(obj: Any) -> Any:
    """The Python function behind a Numba dispatcher, ufunc or gufunc, else None."""
    inner = getattr(obj, "_dispatcher", obj)
    return getattr(inner, "py_func", None)


def _feed(hasher: Any, obj: Any, seen: set[int], depth: int) -> None:
    py = _py_func(obj)
    if py is None and isinstance(obj, pytypes.FunctionType):
        py = obj
    if py is None:
        hasher.update(_value_bytes(obj, "the kernel"))
        return
    if id(py) in seen or depth > 20:
        hasher.update(b"seen" + py.__qualname__.encode())
        return
    seen.add(id(py))
    name = f"{py.__module__}.{py.__qualname__}"
    if py.__closure__:
        cells = ", ".join(py.__code__.co_freevars)
        msg = f"{name} is a closure (over {cells}): its captured values are not keyed"
        raise Uncacheable(msg)
    hasher.update(name.encode())
    hasher.update(repr(getattr(obj, "targetoptions", None)).encode())
    hasher.update(repr(getattr(obj, "signature", None)).encode())
    _feed_code(hasher, py.__code__)
    hasher.update(_value_bytes(py.__defaults__, f"{name}'s defaults"))
    names = sorted(_global_names(py.__code__))
    for global_name in names:
        if global_name not in py.__globals__:
            continue  # a builtin (range, len...) or an attribute name
        value = py.__globals__[global_name]
        hasher.update(global_name.encode())
        if _py_func(value) is not None or isinstance(value, pytypes.FunctionType):
            _feed(hasher, value, seen, depth + 1)
        else:
            hasher.update(_value_bytes(value, f"global {global_name!r} of {name}"))
        if isinstance(value, pytypes.ModuleType):
            # helpers.f(x): the Numba functions the kernel may reach through a module
            for attr in names:
                found = getattr(value, attr, None)
                if _py_func(found) is not None:
                    hasher.update(f"{global_name}.{attr}".encode())
                    _feed(hasher, found, seen, depth + 1)


def _feed_code(hasher: Any, code: pytypes.CodeType) -> None:
    hasher.update(code.co_code)
    hasher.update(repr(code.co_names).encode())
    hasher.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, pytypes.CodeType):
            _feed_code(hasher, const)
        else:
            hasher.update(repr((type(const).__name__, const)).encode())


def _global_names(code: pytypes.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, pytypes.CodeType):
            names |= _global_names(const)
    return names


def _value_bytes(value: Any, what: str) -> bytes:
    import numpy as np

    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr((type(value).__name__, value)).encode()
    if isinstance(value, tuple):
        return b"(" + b",".join(_value_bytes(v, what) for v in value) + b")"
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        head = repr((arr.dtype.str, arr.shape)).encode()
        return head + hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest()
    if isinstance(value, pytypes.ModuleType):
        return f"module {value.__name__}".encode()
    if isinstance(value, (np.ufunc, np.dtype, type)) or callable(value):
        # numpy functions, types and dtypes, Numba intrinsics: by their full name
        module = getattr(value, "__module__", None) or type(value).__module__
        qual = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if qual is not None:
            return f"{module}.{qual}".encode()
        if isinstance(value, np.dtype):
            return f"dtype {value.str}".encode()
    msg = f"{what} is a {type(value).__name__}, whose value is not keyed"
    raise Uncacheable(msg)


def entry_for(parts: tuple[Any, ...]) -> tuple[Path, str]:
    """The entry folder and digest for a call (``parts``: its signature and code)."""
    text = repr((_versions(), parts))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return cache_root() / "native" / digest[:40], digest


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_source(entry: Path, src: str) -> Path:
    """``entry/handler.py`` holding ``src``; an entry whose source differs is reset."""
    path = entry / _SOURCE
    data = src.encode()
    try:
        if path.read_bytes() == data:
            return path
        clear(entry)  # a foreign or damaged entry: nothing in it is trusted
    except FileNotFoundError:
        pass
    entry.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    return path


def clear(entry: Path) -> None:
    """Remove an entry's commit mark and machine code (keep the folder)."""
    with contextlib.suppress(FileNotFoundError):
        (entry / _MARK).unlink()
    shutil.rmtree(entry / "__pycache__", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (entry / _SOURCE).unlink()


def is_committed(entry: Path, digest: str) -> bool:
    """Whether the entry was completed and checked by some process."""
    try:
        mark = json.loads((entry / _MARK).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(mark, dict) and mark.get("digest") == digest


def mark_committed(entry: Path, digest: str, info: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        data = json.dumps({"digest": digest, **info}).encode()
        _atomic_write(entry / _MARK, data)


def cached_cfunc(pyfunc: Any, sig: Any) -> tuple[Any, bool]:
    """A Numba ``cfunc`` whose machine code Numba caches beside the source file.

    Numba's ``cache=True`` would follow ``$NUMBA_CACHE_DIR``; the entry keeps its
    files together so that it is checked and removed as one. Returns the cfunc and
    whether it was loaded from disk. Raises :class:`Uncacheable` when Numba refuses
    to save it (its warning is the reason).
    """
    from numba.core import sigutils
    from numba.core.caching import (
        CompileResultCacheImpl,
        FunctionCache,
        InTreeCacheLocator,
    )
    from numba.core.ccallback import CFunc

    class _Impl(CompileResultCacheImpl):  # type: ignore[misc]
        _locator_classes = (InTreeCacheLocator,)  # type: ignore[assignment]

    class _Cache(FunctionCache):  # type: ignore[misc]
        _impl_class = _Impl

    sig = sigutils.normalize_signature(sig)  # type: ignore[no-untyped-call]
    cf: Any = CFunc(pyfunc, sig, locals={}, options={})
    cf._cache = _Cache(pyfunc)  # type: ignore[no-untyped-call]
    if _load_quickly(cf):
        return cf, True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf.compile()
    hit = bool(cf.cache_hits)
    refused = [str(w.message) for w in caught if "Cannot cache" in str(w.message)]
    if refused and not hit:
        cf._uncacheable = refused[0]
    return cf, hit


def _load_quickly(cf: Any) -> bool:
    """Load ``cf`` from its cache without ``target_context.refresh()``.

    Numba's ``load_overload`` first imports every lowering registry (a second or so
    in a fresh process: most of the time of a cache hit); machine code that is
    already compiled needs none of them, only the symbols it links against (the NRT
    and the hash secrets; the others are registered when Numba initialises). Same
    steps as ``CFunc.compile`` otherwise.
    """
    import numba.cpython.hashing  # noqa: F401 - its import registers hash secrets
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import rtsys  # type: ignore[attr-defined]

    ctx = cf._targetdescr.target_context
    with global_compiler_lock:
        rtsys.initialize(ctx)  # the NRT symbols the machine code calls
        try:
            cres = cf._cache._load_overload(cf._sig, ctx)
        except AttributeError:  # another Numba's internals: the ordinary route
            return False
        if cres is None:
            return False
        cf._library = cres.library
        cf._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
        cf._wrapper_address = cf._library.get_pointer_to_function(cf._wrapper_name)
        cf._cache_hits += 1
    return True
