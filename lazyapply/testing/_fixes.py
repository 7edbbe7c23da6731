"""The fix of a failed ``check_kernel`` run: what to change, in one sentence.

Each rule reads the run's message (and the kernel's declaration, and the NumPy
reference) and says which declaration, option or line of the kernel to change. A
failure no rule recognises gets no fix rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FIXTURE_BACKENDS", "fix_for"]

#: Backends that exist to test lazyapply itself (a second array-api-strict device,
#: torch's ``meta`` device): opt-in in ``check_kernel``, since a plain NumPy kernel
#: cannot run there and need not.
FIXTURE_BACKENDS = ("array_api_strict_device1", "torch_meta")

_CONVERSION_WORDS = ("convert", "to numpy", "numpy array", "__array__", "meta")


def _declared(options: Any, reference: Sequence[np.ndarray]) -> tuple[str, str]:
    """``dtype=...`` and ``shape=...`` as the user would write them from NumPy."""
    dtypes = [str(r.dtype) for r in reference]
    shapes = [tuple(r.shape) for r in reference]
    if len(reference) == 1:
        return f'dtype="{dtypes[0]}"', f"shape={shapes[0]}"
    names = ", ".join(f'"{d}"' for d in dtypes)
    return f"dtype=[{names}]", f"shape={shapes}"


def fix_for(
    backend: str,
    mode: str,
    message: str,
    options: Any,
    reference: Sequence[np.ndarray],
) -> str:
    """The fix of a failed run, or ``""`` when no rule recognises the failure.

    Parameters
    ----------
    backend, mode : str
        The run (a :class:`~lazyapply.testing.Backend` value and its mode).
    message : str
        What differed, or the error the run raised.
    options : mapping
        The ``@lazy`` options of the kernel under check.
    reference : sequence of numpy.ndarray
        The kernel's own outputs on NumPy (empty when the kernel fails there).
    """
    text = message.lower()
    if mode == "reference":
        return (
            "the kernel fails on the NumPy sample arguments themselves: check the "
            "arguments (--args/--kwarg) or the kernel"
        )
    if backend in FIXTURE_BACKENDS and any(w in text for w in _CONVERSION_WORDS):
        return (
            f"{backend} is a device NumPy cannot read: a kernel that calls NumPy on "
            "its input cannot run there; leave this test backend out, or write the "
            "kernel with the array's namespace (array_api_compat.array_namespace(x))"
        )
    if fix := _transform_fix(backend, mode, text, options):
        return fix
    if "__array_wrap__" in text:
        return (
            "NumPy functions on torch tensors go through torch's deprecated "
            "__array_wrap__ (an error where warnings are errors, as in many test "
            "suites): declare as_numpy=True so the kernel receives NumPy arrays, or "
            "write it with torch operations"
        )
    if "read-only" in text:
        return (
            "the kernel writes into its input: work on a copy (x = x.copy()) or "
            "write into a new array"
        )
    if "dask computed" in text:
        return (
            "something computed a Dask array while the graph was built "
            "(float(x.sum()), np.asarray(x), a shape= or dtype= callable that reads "
            "values): derive "
            "shape/dtype from shapes only, or declare shape=(None,) for a size that "
            "depends on the data"
        )
    if reference:
        fix = _metadata_fix(text, options, reference)
        if fix:
            return fix
    if "values differ" in text and backend == "dask" and "one chunk" not in mode:
        option = mode.split(",", maxsplit=1)[0]
        return (
            f"the kernel breaks its mode ({option}): its result depends on other "
            "chunks; "
            "declare the mode it has (signature=, depth=), or drop the option to run "
            "it on the whole array"
        )
    if backend == "sparse" and not options.get("as_numpy"):
        return (
            "pydata/sparse arrays are immutable and never densified implicitly: "
            "declare as_numpy=True if the kernel needs dense NumPy arrays (sparse "
            "callers are then refused at the call), or write it with operations "
            "that sparse supports"
        )
    if backend == "pickle":
        return (
            "define the kernel at module level in an importable module, so it "
            "pickles by reference (or install cloudpickle)"
        )
    return ""


def _transform_fix(backend: str, mode: str, text: str, options: Any) -> str:
    """Fixes of the vmap and torch.compile rows."""
    if mode == "torch compile" and "ndarray" in text and not options.get("as_numpy"):
        return (
            "torch.compile traces a kernel without as_numpy as torch code, and NumPy "
            "calls on its tensors cannot be traced: declare as_numpy=True (the kernel "
            "then runs as an opaque op on NumPy arrays), or write it with torch "
            "operations"
        )
    return _vmap_fix(backend, text, options) if mode.startswith("vmap") else ""


def _vmap_fix(backend: str, text: str, options: Any) -> str:
    if backend.startswith("torch") and "data pointer" in text:
        return (
            "under torch.func.vmap the kernel receives torch.func's batched tensors, "
            "which NumPy cannot read: declare as_numpy=True (lazyapply then batches "
            "the call itself), or write the kernel with torch operations"
        )
    mode = "elementwise" if options.get("elementwise") else options.get("signature")
    if mode and ("values differ" in text or "shape" in text):
        return (
            f"the kernel breaks its mode ({mode}) under vmap, where the batch is one "
            "more leading loop dimension: work on the core (last) axes only "
            "(axis=-1, x[..., i]), or drop the option so that vmap calls the "
            "kernel once per batch element"
        )
    return ""


def _matches(declared: Any, reference: Sequence[np.ndarray], what: str) -> bool:
    """Whether a constant ``shape=``/``dtype=`` is what the kernel gives on NumPy."""
    if declared is None or callable(declared):
        return False
    many = declared if len(reference) > 1 else [declared]
    try:
        if what == "shape":
            return [tuple(d) for d in many] == [r.shape for r in reference]
        return [np.dtype(d) for d in many] == [r.dtype for r in reference]
    except (TypeError, ValueError):
        return False


def _metadata_fix(text: str, options: Any, reference: Sequence[np.ndarray]) -> str:
    dtype_decl, shape_decl = _declared(options, reference)
    for what in ("dtype", "shape"):
        if what in text and _matches(options.get(what), reference, what):
            return (
                f"the kernel gives another {what} on this backend than on NumPy: "
                "write it with the array's namespace "
                "(array_api_compat.array_namespace(x)), or declare as_numpy=True so "
                "that it always receives NumPy arrays"
            )
    if ("one array was expected" in text) or ("output(s)" in text):
        return (
            f"declare one shape and dtype per output ({shape_decl}, {dtype_decl}) to "
            "return several"
        )
    if "dtype" in text:
        if options.get("dtype") is None:
            return (
                f"declare {dtype_decl}: with no dtype= declared, lazyapply infers the "
                "inputs' result_type, which Dask and jax.jit need before the kernel "
                "runs"
            )
        return (
            f"declare {dtype_decl} (what the kernel returns on NumPy), or make the "
            f"kernel return the declared dtype={options.get('dtype')!r}"
        )
    if "shape" in text:
        if options.get("shape") is None:
            return (
                f"declare {shape_decl}, or a callable of the arguments "
                "(shape=lambda x: ...): with no shape= declared, lazyapply expects the "
                "broadcast of the array arguments"
            )
        return (
            f"declare {shape_decl} for these arguments (or a callable "
            "shape=lambda x: ...), or make the kernel return the declared shape"
        )
    return ""
