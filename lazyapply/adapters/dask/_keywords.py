"""Keyword arguments of chunk-wise Dask calls: the arrays that cannot be split."""

from __future__ import annotations

from typing import Any

from lazyapply._errors import SpecError
from lazyapply.spec import Mode

__all__ = ["check_array_keywords"]


def check_array_keywords(
    mode: Mode, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> None:
    """Refuse a keyword array that lines up with a split axis of the chunked arrays.

    Only positional arrays are split into blocks: such a keyword would reach every
    block whole (a broadcast error at compute time, or wrong values). A lookup
    table or a stencil's weights, which do not line up, are fine.
    """
    if not (mode.elementwise or mode.depth is not None):
        return
    import dask.array as da

    arrays = [a for a in args if isinstance(a, da.Array)]
    for key, value in kwargs.items():
        shape = getattr(value, "shape", None)
        if shape is None or not hasattr(value, "dtype"):
            continue
        split = any(
            shape[-i] != 1 and shape[-i] == a.shape[-i] and len(a.chunks[-i]) > 1
            for a in arrays
            for i in range(1, min(len(shape), a.ndim) + 1)
        )
        if not split:
            continue
        how, option = (
            ("elementwise=True", "elementwise")
            if mode.elementwise
            else ("depth=", "depth")
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
