"""``lazy_apply``: the drop-in for ``array_api_extra.lazy_apply``.

It parses the call's options into a :class:`~lazyapply.spec.CallSpec` (cached by
value) and hands the call to the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import FunctionType
from typing import Any, ParamSpec, overload

from lazyapply._detect import find_adapter
from lazyapply._engine import run
from lazyapply.spec import STRICT_ENV, CallSpec, kernel_name, parse_output
from lazyapply.spec._infer_mode import with_inferred_mode

__all__ = ["lazy_apply"]

P = ParamSpec("P")

_PLAIN = (
    CallSpec("", strict=STRICT_ENV),
    CallSpec("", as_numpy=True, strict=STRICT_ENV),
)
_SPECS: dict[tuple[Any, Any, Any, bool], CallSpec] = {}
# (shape, dtype, as_numpy, spec) of the last cached lookup, matched by identity.
_LAST: list[tuple[Any, Any, Any, CallSpec]] = [(None, None, None, _PLAIN[0])]


def _spec(func: Callable[..., Any], shape: Any, dtype: Any, as_numpy: bool) -> CallSpec:
    if shape is None and dtype is None:
        return _PLAIN[bool(as_numpy)]
    last = _LAST[0]  # one read: another thread may replace it, never half-written
    if shape is last[0] and dtype is last[1] and as_numpy is last[2]:
        return last[3]  # the same call site again: no hashing
    # type(dtype) first: tuples compare item by item, so dtypes of different
    # libraries are never compared (array-api-strict warns when they are).
    # drop-in (issue 9): a tuple of dtypes is keyed by its items' types too.
    kinds = tuple(map(type, dtype)) if isinstance(dtype, tuple) else type(dtype)
    key = (shape, kinds, dtype, bool(as_numpy))
    try:
        spec = _SPECS[key]
    except KeyError:
        pass
    except TypeError:  # unhashable (a list of shapes): parse every time
        return CallSpec(
            "",
            parse_output(shape, dtype, kernel_name(func)),
            bool(as_numpy),
            strict=STRICT_ENV,
        )
    else:
        _LAST[0] = (shape, dtype, as_numpy, spec)  # hashable, so immutable
        return spec
    spec = CallSpec(
        "",
        parse_output(shape, dtype, kernel_name(func)),
        bool(as_numpy),
        strict=STRICT_ENV,
    )
    if len(_SPECS) > 512:
        _SPECS.clear()
    _SPECS[key] = spec
    return spec


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
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
    strict: bool | None = None,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
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

        These four names are reserved: they are not passed to ``func``. Eager
        backends call the kernel once on the whole arrays whatever they say.
    **kwargs
        Passed to ``func`` verbatim; never traced, never converted.

    Returns
    -------
    array or tuple of arrays
        In the arguments' namespace, on the first array argument's device.

    Raises
    ------
    ValueError
        No array argument; a malformed ``shape``/``dtype``; an unknown size inside
        ``jax.jit``; an output that does not match its declared (or, on lazy backends,
        inferred) shape or dtype (:class:`~lazyapply.KernelOutputError`).
    TypeError
        Arguments from several array libraries.
    RuntimeError, TypeError (backend's own)
        ``as_numpy=True`` on data that its library will not convert implicitly:
        sparse arrays, CUDA or ``meta`` tensors, CuPy arrays.

    Notes
    -----
    NumPy, array-api-strict, PyTorch, CuPy, sparse, JAX outside transformations
        ``func`` runs now. Without declared ``shape``/``dtype`` the output is returned
        as the kernel made it (converted to the caller's namespace if it is not
        already there); declared metadata is checked.
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
    adapter, first = find_adapter(args, func)
    if shape is None and dtype is None:  # inline: the hot path skips a call
        spec = _PLAIN[1 if as_numpy else 0]
    else:
        spec = _spec(func, shape, dtype, as_numpy)
    if (
        elementwise
        or signature is not None
        or depth is not None
        or boundary is not None
    ):
        from lazyapply.spec._modes import with_mode

        spec = with_mode(spec, func, elementwise, signature, depth, boundary)
    elif type(func) is not FunctionType:  # a ufunc/gufunc kernel brings its mode
        spec = with_inferred_mode(spec, func)
    if strict or vjp is not None or jvp is not None:
        import dataclasses

        spec = dataclasses.replace(
            spec, strict=bool(strict) or STRICT_ENV, vjp=vjp, jvp=jvp
        )
    return run(adapter, first, func, args, kwargs, spec, xp)
