"""Keyword arguments of chunk-wise Dask calls: the arrays that cannot be split."""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import Mode

__all__ = ["check_array_keywords"]


def check_array_keywords(
    mode: Mode,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
    loop_ndims: tuple[int, ...] = (),
) -> None:
    """Refuse a keyword array that lines up with a split axis of the chunked arrays.

    Only positional arrays are split into blocks: such a keyword would reach every
    block whole (a broadcast error at compute time, or wrong values). A lookup
    table or a stencil's weights, which do not line up, are fine; so is an array
    that lines up with a signature's core dimensions only (they are never split).
    """
    import dask.array as da

    # The axes that are split, per positional array: all of them (elementwise,
    # depth), or a signature's loop axes (the leading ``loop_ndims``).
    split_axes = []
    for i, a in enumerate(args):
        if isinstance(a, da.Array):
            n = a.ndim if mode.signature is None else loop_ndims[i]
            split_axes.append((a, range(n)))
    for key, value in kwargs.items():
        shape = getattr(value, "shape", None)
        if shape is None or not hasattr(value, "dtype"):
            continue
        split = any(
            a.ndim - len(shape) <= ax
            and shape[ax - a.ndim] not in (1, None)
            and shape[ax - a.ndim] == a.shape[ax]
            and len(a.chunks[ax]) > 1
            for a, axes in split_axes
            for ax in axes
        )
        if not split:
            continue
        how, option = (
            ("elementwise=True", "elementwise")
            if mode.elementwise
            else ("depth=", "depth")
            if mode.depth is not None
            else (f"signature={str(mode.signature)!r}", "signature")
        )
        msg = (
            f"{name} (dask): keyword argument {key}= is an array of shape "
            f"{tuple(shape)} that lines up with the chunked arrays; with {how} only "
            f"positional arrays are split into chunks, so every block would get the "
            f"whole {key}. Pass it positionally ({name}(x, {key}), the kernel's "
            f"parameter in that place), or drop {option}= to run the kernel on the "
            "whole array"
        )
        raise SpecError(msg)
