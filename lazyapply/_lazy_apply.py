"""``lazy_apply``: the drop-in for ``array_api_extra.lazy_apply``.

The call's options become a :class:`~lazyapply.spec.CallSpec` through the one spec
builder (:func:`lazyapply.spec._build.apply_spec`, cached by the options' static
key; the call without options takes a precomputed spec, and the same call as the
last one its spec by identity) and the call goes to the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import is_
from types import FunctionType
from typing import Any, ParamSpec, overload

from lazyapply._detect import _TYPES, find_adapter
from lazyapply._engine import run
from lazyapply.spec._build import PLAIN_SPECS, SPECS, apply_spec
from lazyapply.spec._keywords import KERNEL_FIRST

__all__ = ["lazy_apply"]

P = ParamSpec("P")


# The overloads repeat the options on purpose: a type checker reads each whole.
@overload
def lazy_apply(
    func: Callable[..., Any],
    *args: Any,
    shape: tuple[int | None, ...] | None = None,
    dtype: Any = None,
    as_numpy: bool = False,
    xp: Any = None,
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
    strict: bool | None = None,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> Any: ...
@overload
def lazy_apply(
    func: Callable[..., Any],
    *args: Any,
    shape: Sequence[tuple[int | None, ...]],
    dtype: Sequence[Any] | None = None,
    as_numpy: bool = False,
    xp: Any = None,
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
    strict: bool | None = None,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, ...]: ...
def lazy_apply(
    func: Callable[..., Any],
    *args: Any,
    shape: Any = None,
    dtype: Any = None,
    as_numpy: bool = False,
    xp: Any = None,
    **kwargs: Any,
) -> Any:
    """Apply an eager function lazily.

    If the arguments' backend is lazy (Dask, or JAX inside ``jax.jit``/``jax.vmap``),
    the call is deferred until the graph is materialised; if it is eager, ``func``
    runs now. A drop-in for ``array_api_extra.lazy_apply``.

    Parameters
    ----------
    func : callable
        The kernel. It takes the positional arguments (arrays of the caller's
        namespace, or NumPy arrays with ``as_numpy=True``) and the keyword arguments,
        and returns one array-like, or a sequence of them when several shapes are
        declared. It must be pure: a backend may run it more than once, or never.
    *args : array, Python scalar or None
        At least one array; all arrays from one library.
    shape : tuple of int or None, or a sequence of such tuples, optional
        The output shape, or one shape per output (the result is then a tuple).
        ``None`` in a shape is an unknown size (Dask: NaN chunks); sizes may be any
        integer-like. Default: the broadcast of the array arguments' shapes.
    dtype : dtype, dtype name, Python type, or a sequence of them, optional
        The output dtype(s). Names (``"float32"``), NumPy dtypes and Python types are
        mapped to the caller's namespace. Default: ``result_type`` of every non-None
        argument (Python scalars are weak).
    as_numpy : bool, optional
        Convert the array arguments to NumPy before calling ``func`` and the outputs
        back to the caller's namespace and device afterwards.
    xp : array namespace, optional
        The arguments' namespace. Default: inferred.
    strict : bool, optional
        The output policy. ``False`` (the default here, as in the reference): eager
        backends return what the kernel returned. ``True``: every backend checks what
        Dask and ``jax.jit`` must check (declared or inferred shape and dtype). The
        environment variable ``LAZYAPPLY_STRICT=1`` turns it on everywhere.
    vjp, jvp : callable, optional
        Declared derivatives, as for :func:`~lazyapply.lazy`.
    elementwise : bool, optional
        Each output element depends only on the matching (broadcast) input elements.
        Dask runs the kernel once per block, never merging chunks; under
        ``jax.vmap`` one batched call is made.
    signature : str, optional
        A NumPy gufunc signature: comma-separated parenthesised core dimensions on
        each side of ``->``, named or fixed sizes, e.g. ``"(n),(n)->()"``,
        ``"(m,n),(n,p)->(m,p)"``, ``"(3)->()"`` or ``"(n)->(),()"`` (two outputs).
        Dask merges only the core dimensions; the loop dimensions keep their chunks.
        The kernel must accept extra leading (loop) dimensions, as a gufunc does:
        Dask blocks and ``jax.vmap`` batches reach it with them.
    depth : int, tuple of int or dict, optional
        A stencil's overlap: Dask runs the kernel on blocks that overlap by
        ``depth`` elements and trims the overlap afterwards. One of: an int >= 0 (the
        same depth on every axis, ``depth=1``); a tuple with one depth per axis
        (``depth=(1, 0)``); a dict ``{axis: depth}`` (``depth={-1: 2}``; other axes
        get 0).
    boundary : None, str, number or dict, optional
        What Dask pads the array's outer edges with before the overlap (needs
        ``depth``): ``None`` (no padding: the kernel's own edge handling, so the
        result equals the eager one), ``"reflect"``, ``"periodic"``, ``"nearest"``,
        a constant number (``boundary=0.0``), or a dict ``{axis: boundary}``.
        Eager backends ignore it: with a padding other than ``None`` the Dask result
        differs from the eager one at the edges.

        Eager backends call the kernel once on the whole arrays whatever the mode.
    **kwargs
        Passed to ``func`` verbatim; never traced, never converted. A keyword named
        like one of the options ``elementwise``, ``signature``, ``depth``,
        ``boundary``, ``strict``, ``vjp`` or ``jvp`` goes to ``func`` when ``func``
        has a parameter of that name (as ``array_api_extra.lazy_apply`` passes it):
        ``lazy_apply(tree_weight, x, depth=3)`` calls ``tree_weight(x, depth=3)``
        and sets no stencil. Only for a kernel without such a parameter (one that
        takes ``**kwargs``, say) is the keyword read as the option; to pass both, use
        :func:`~lazyapply.lazy` (its options are fixed at decoration) or a
        ``functools.partial``. A NumPy ufunc takes ``signature`` (its loop types,
        ``np.add(x, y, signature="ff->f")``), so that keyword reaches the ufunc;
        declare the dtype it makes (``dtype="float32"``).

    Returns
    -------
    array or tuple of arrays
        In the arguments' namespace, on the first array argument's device.

    Raises
    ------
    ValueError
        No array argument; a malformed ``shape``/``dtype``; an unknown size inside
        ``jax.jit``; an output that does not match its declared or inferred shape or
        dtype where outputs are checked: on Dask and inside ``jax.jit`` always, on
        eager backends only with ``strict=True`` (with the default ``strict=False``
        they return the kernel's output unchecked)
        (:class:`~lazyapply.KernelOutputError`).
    TypeError
        Arguments from several array libraries.
    RuntimeError, TypeError (backend's own)
        ``as_numpy=True`` on data that its library will not convert implicitly:
        sparse arrays, CUDA or ``meta`` tensors, CuPy arrays.

    Notes
    -----
    NumPy, array-api-strict, PyTorch, CuPy, sparse, JAX outside transformations
        ``func`` runs now. The output is returned as the kernel made it (converted
        to the caller's namespace if it is not already there): with the default
        ``strict=False`` only the number of outputs is checked (and the dtype of a
        non-array output); ``strict=True`` checks declared or inferred metadata.
    JAX inside ``jax.jit``, ``jax.vmap``
        ``func`` becomes a ``jax.pure_callback``; every output size must be known.
        Under ``vmap`` the kernel is called once per batch element, unless it was
        declared ``elementwise`` or with a ``signature``: then it is called once
        with the batch as extra leading dimensions, so a ``signature`` kernel must
        accept them (write it with ``...`` indexing, as a gufunc).
        With ``vjp=`` (``jvp=``) ``jax.grad`` (``jax.jvp``) works; without it, it
        raises :class:`~lazyapply.NotDifferentiableError`.
    Dask
        Nothing is computed. By default one task runs ``func`` on the whole array
        (every input merged into one chunk); its key starts with the kernel's name.
        Chunks of another library (sparse, CuPy) reach ``func`` as they are unless
        ``as_numpy=True``. Outputs are checked against shape and dtype when the task
        runs.

    Examples
    --------
    >>> import numpy as np
    >>> from lazyapply import lazy_apply
    >>> lazy_apply(np.cumsum, np.asarray([1, 2, 3]), dtype="int64")
    array([1, 3, 6])
    """
    # One array of a known type (the common case): find_adapter's first step,
    # without its frame.
    adapter = _TYPES.get(type(args[0])) if len(args) == 1 else None
    if adapter is not None:
        first = args[0]
    else:
        adapter, first = find_adapter(args, func)
    options = kwargs and not KERNEL_FIRST.isdisjoint(kwargs)  # (or kernel keywords)
    if not options and shape is None and dtype is None and type(func) is FunctionType:
        # The hot path: a precomputed spec (a Python function implies no mode).
        spec = PLAIN_SPECS[1 if as_numpy else 0]
        return run(adapter, first, func, args, kwargs, spec, xp)
    last = SPECS.last  # one read: another thread replaces it whole
    if (
        func is last[0]
        and shape is last[1]
        and dtype is last[2]
        and as_numpy is last[3]
    ):  # the last call's kernel and metadata (a loop): matched by identity
        if not options:
            if not last[4]:
                return run(adapter, first, func, args, kwargs, last[6], xp)
        elif tuple(kwargs) == last[4] and all(map(is_, kwargs.values(), last[5])):
            # Its options too, and no keyword for the kernel.
            return run(adapter, first, func, args, {}, last[6], xp)
    spec, rest = apply_spec(func, shape, dtype, as_numpy, kwargs)
    return run(adapter, first, func, args, rest, spec, xp)
