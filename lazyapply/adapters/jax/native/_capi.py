"""C entry points of compiled scalar kernels: SciPy's special ufuncs and Cython.

Two kinds of foreign kernels can run natively under ``jax.jit`` without Numba
compiling the kernel itself:

- a ufunc of ``scipy.special``: its own one-dimensional inner loops (the
  ``functions``/``data`` arrays of NumPy's ``PyUFuncObject``, public in
  ``numpy/ufuncobject.h``), so every loop, float32 and complex64 included, computes
  exactly what SciPy computes (:func:`ufunc_loop`);
- a Cython function whose C entry point, exported in its module's ``__pyx_capi__``,
  takes and returns C numeric scalars (``cpdef double f(double x) noexcept nogil``,
  ``cdef api``...). A capsule's name is the entry's C signature, e.g.
  ``"double (double, int __pyx_skip_dispatch)"``; it is parsed (:func:`parse`), never
  guessed. Fused functions export one entry per specialisation,
  ``__pyx_fuse_<k>name``; :func:`cython_entries` lists them and
  :func:`pick_entry` picks one by the arguments' dtypes.

Nothing here imports jax, numba or scipy; :func:`foreign_kind` is cheap enough for
the native decision's hot path.
"""

from __future__ import annotations

import ctypes
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CSignature",
    "Entry",
    "cython_entries",
    "foreign_kind",
    "parse",
    "pick_entry",
    "ufunc_loop",
]

# C scalar types an entry may take or return, and the NumPy dtype holding each.
# ``long`` is NumPy's "l" (int64 on LP64 platforms, int32 on Windows).
C_TYPES = {
    "double": "d",
    "float": "f",
    "long": "l",
    "int": "i",
    "short": "h",
    "char": "b",
    "signed char": "b",
    "unsigned char": "B",
    "unsigned int": "I",
    "unsigned long": "L",
    "long long": "q",
    "unsigned long long": "Q",
    "Py_ssize_t": "p",
    "npy_intp": "p",
    "size_t": "P",
    "__pyx_t_double_complex": "D",
    "__pyx_t_float_complex": "F",
    "double complex": "D",
    "float complex": "F",
}
_SKIP = "int __pyx_skip_dispatch"
_FUSED = re.compile(r"__pyx_fuse_\d+(?:_\d+)*")


@dataclass(frozen=True)
class CSignature:
    """A parsed C signature of scalars: NumPy type chars for arguments and results.

    ``ret`` is the returned type's char, or ``None`` for ``void``; ``outs`` are the
    chars of the trailing pointer arguments a ``void`` entry writes its results to.
    ``skip_dispatch``: a ``cpdef`` entry's trailing ``int __pyx_skip_dispatch``
    (passed 0); ``optional``: a trailing struct pointer of optional arguments
    (passed NULL: their defaults).
    """

    text: str
    args: tuple[str, ...]
    ret: str | None
    outs: tuple[str, ...]
    skip_dispatch: bool
    optional: bool

    @property
    def results(self) -> tuple[str, ...]:
        return (self.ret,) if self.ret is not None else self.outs


@dataclass(frozen=True)
class Entry:
    """One exported C entry point: its module, capsule name and parsed signature."""

    module: str
    name: str
    signature: CSignature


def parse(text: str) -> CSignature | str:
    """Parse a capsule's C signature; the reason when it is not one of scalars.

    Examples
    --------
    >>> parse("double (double, long, int __pyx_skip_dispatch)").args
    ('d', 'l')
    >>> parse("void (double, double *, double *)").outs
    ('d', 'd')
    >>> parse("double (__Pyx_memviewslice, int __pyx_skip_dispatch)")
    "the C entry 'double (__Pyx_memviewslice, int __pyx_skip_dispatch)' takes a \
__Pyx_memviewslice (only C numeric scalars run natively)"
    """
    m = re.fullmatch(r"\s*([^()]*?)\s*\((.*)\)\s*", text)
    if m is None:
        return f"cannot read the C signature {text!r}"
    ret_text = " ".join(m.group(1).split())
    params = [" ".join(p.split()) for p in m.group(2).split(",") if p.strip()]
    # Cython appends the optional-arguments struct after __pyx_skip_dispatch.
    optional = bool(params) and "__pyx_optional_args" in params[-1]
    params = params[:-1] if optional else params
    skip = bool(params) and params[-1] == _SKIP
    params = params[:-1] if skip else params
    if ret_text.endswith("(") or "(" in ret_text:
        return f"the C entry {text!r} returns a function pointer"
    ret: str | None = None
    if ret_text != "void":
        ret = C_TYPES.get(ret_text)
        if ret is None:
            return f"the C entry {text!r} returns a {ret_text} (only C numeric scalars)"
    args: list[str] = []
    outs: list[str] = []
    for p in params:
        base = p.rstrip("*").strip()
        stars = len(p) - len(p.rstrip("*"))
        char = C_TYPES.get(base)
        if char is None:
            return (
                f"the C entry {text!r} takes a {p} (only C numeric scalars run "
                "natively)"
            )
        if stars == 0 and not outs:
            args.append(char)
        elif stars == 1 and ret is None:
            outs.append(char)  # a void entry's results, after its arguments
        else:
            return f"the C entry {text!r} takes a pointer {p!r} among its arguments"
    if ret is None and not outs:
        return f"the C entry {text!r} returns nothing"
    return CSignature(text, tuple(args), ret, tuple(outs), skip, optional)


def _capsule_name(capsule: object) -> str:
    get = ctypes.pythonapi.PyCapsule_GetName
    get.restype = ctypes.c_char_p
    get.argtypes = [ctypes.py_object]
    return (get(capsule) or b"").decode()


def cython_entries(func: Any) -> list[Entry] | str:
    """The C entries exported for the Cython function ``func`` (fused: several)."""
    module_name = getattr(func, "__module__", None)
    name = getattr(func, "__name__", None)
    module = sys.modules.get(module_name or "")
    if module is None or not name:
        return f"{type(func).__name__} has no importable module"
    capi = getattr(module, "__pyx_capi__", None) or {}
    found = []
    for key, capsule in capi.items():
        if key == name or (key.endswith(name) and _FUSED.fullmatch(key[: -len(name)])):
            sig = parse(_capsule_name(capsule))
            found.append((key, sig))
    if not found:
        return (
            f"{module_name}.{name} is a Cython function that exports no C entry "
            "point (only functions of C scalars declared cpdef api / cdef api, or "
            "cpdef in a .pxd, are in __pyx_capi__ and run natively)"
        )
    good = [
        Entry(module_name, key, sig)  # type: ignore[arg-type]
        for key, sig in found
        if isinstance(sig, CSignature)
    ]
    if not good:
        return str(found[0][1])
    return good


def pick_entry(entries: list[Entry], kinds: list[Any]) -> Entry | str:
    """The entry for arguments of NumPy dtypes (or weak Python types) ``kinds``.

    An exact match of every argument wins; otherwise the entry every argument casts
    to safely with the least promotion (float32 -> double before complex).
    """
    import numpy as np

    def cost(sig: CSignature) -> int | None:
        if len(sig.args) != len(kinds):
            return None
        total = 0
        for char, kind in zip(sig.args, kinds, strict=True):
            want = np.dtype(char)
            if isinstance(kind, type):  # a Python scalar: its natural C type
                have = np.dtype({bool: "?", int: "l", float: "d"}.get(kind, "D"))
            else:
                have = np.dtype(kind)
            if have == want:
                continue
            if not np.can_cast(have, want, "safe"):
                return None
            total += 1 + 4 * (want.kind == "c" and have.kind != "c") + want.itemsize
        return total

    costs = [(cost(e.signature), i, e) for i, e in enumerate(entries)]
    scored = [(c, i, e) for c, i, e in costs if c is not None]
    if not scored:
        have = ", ".join(getattr(k, "__name__", str(k)) for k in kinds)
        sigs = "; ".join(e.signature.text for e in entries)
        return f"no C entry takes ({have}): the entries are {sigs}"
    return min(scored, key=lambda t: (t[0], t[1]))[2]


def foreign_kind(func: Any) -> str | None:
    """``"ufunc"`` for a ufunc of ``scipy.special``, ``"cython"`` for a Cython function.

    ``None`` for anything else (the Numba path decides). Import-free: it looks only
    at modules already imported.
    """
    cls = type(func)
    if cls.__name__ == "ufunc" and cls.__module__ == "numpy":
        special = sys.modules.get("scipy.special")
        name = getattr(func, "__name__", "")
        ours = special is not None and getattr(special, name, None) is func
        return "ufunc" if ours else None
    if "cython" in cls.__name__ and "function" in cls.__name__:
        return "cython"
    return None


# PyUFuncObject (numpy/ufuncobject.h) after PyObject_HEAD: int nin, nout, nargs,
# identity; then PyUFuncGenericFunction *functions, void **data, int ntypes,
# reserved1, const char *name, const char *types.
_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)


def ufunc_loop(ufunc: Any, chars: str) -> tuple[int, int] | str:
    """``(loop function, data)`` addresses of ``ufunc``'s loop for type chars ``chars``.

    The struct is read with ``ctypes`` and checked against what Python reports (the
    counts, the name, every loop's types), so a NumPy whose layout differs makes
    this a reason string, never a wrong address.
    """
    import numpy as np

    p = ctypes.c_void_p
    base = id(ufunc)
    ints = (ctypes.c_int * 4).from_address(base + _HEAD)
    nin, nout, nargs = ints[0], ints[1], ints[2]
    ptr = _HEAD + 16
    functions = p.from_address(base + ptr).value
    data = p.from_address(base + ptr + 8).value
    ntypes = ctypes.c_int.from_address(base + ptr + 16).value
    name = ctypes.c_char_p.from_address(base + ptr + 24).value
    types = p.from_address(base + ptr + 32).value
    if (
        (nin, nout, nargs, ntypes) != (ufunc.nin, ufunc.nout, ufunc.nargs, ufunc.ntypes)
        or name is None
        or name.decode() != ufunc.__name__
        or not functions
        or not data
        or not types
    ):
        return f"{ufunc.__name__}: NumPy's ufunc struct is not laid out as expected"
    nums = (ctypes.c_char * (nargs * ntypes)).from_address(types).raw
    wanted = [np.dtype(c).num for c in chars]
    for i, loop in enumerate(ufunc.types):
        got = list(nums[i * nargs : (i + 1) * nargs])
        if got != [np.dtype(c).num for c in loop.replace("->", "")]:
            return f"{ufunc.__name__}: NumPy's ufunc struct lists other loop types"
        if got == wanted:
            fn = p.from_address(functions + 8 * i).value
            arg = p.from_address(data + 8 * i).value
            if not fn:
                return f"{ufunc.__name__}: loop {loop} has no function"
            return fn, arg or 0
    return f"{ufunc.__name__} has no loop for {chars}"
