# mypy: disable-error-code="no-untyped-call, arg-type, dict-item"
"""Dask chunk-wise modes: one kernel task per block, built with ``da.blockwise``.

``elementwise=True``
    Every positional argument keeps its chunks (aligned by broadcasting through
    ``blockwise``'s own ``unify_chunks``); the kernel gets whole blocks.
``signature="(n),(n)->()"``
    Loop dimensions keep their chunks; core dimensions are contracted indices of the
    ``blockwise`` call, merged inside each task (no separate rechunk layer, and no
    copy when a core dimension is one chunk already). Several outputs: one task per
    block returns all of them and one cheap ``getitem`` per output and block splits
    them (as ``dask.array.apply_gufunc`` does).
``depth=``/``boundary=``
    ``dask.array.overlap.overlap`` shares (and, with a boundary, pads) neighbouring
    values, the kernel runs on each overlapped block, ``trim_internal`` cuts the
    overlap away again: ``map_overlap``, with several outputs allowed.

The kernel tasks' keys start with the kernel's name. Every block's outputs are checked
against the block's expected shape inside the task (:class:`BlockCall`), by the
call's one output check.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

from lazyapply._errors import SpecError
from lazyapply.adapters.dask._blocks import BlockCall, kernel_token
from lazyapply.adapters.dask._keywords import check_array_keywords
from lazyapply.spec import CallSpec, Mode
from lazyapply.spec._modes import boundary_for_ndim

if TYPE_CHECKING:
    from lazyapply._call import KernelCall
    from lazyapply.spec._metadata import Layout

__all__ = ["defer_chunked"]


def defer_chunked(
    call: KernelCall,
    args: tuple[Any, ...],
    spec: CallSpec,
    layout: Layout,
    meta: Any,
) -> Any:
    """Build the chunk-wise graph for ``spec.mode``; nothing is computed."""
    import dask.array as da
    from dask.base import tokenize

    mode = spec.mode
    loop_ndims = layout.loop_ndims or ()
    _check_unknown_chunks(mode, args, loop_ndims, call.name)
    check_array_keywords(mode, args, call.kwargs, call.name, loop_ndims)
    cores = tuple(tuple(int(s) for s in c) for c in layout.cores or ())  # type: ignore[arg-type]
    token = tokenize(
        kernel_token(call.func),
        call.kwargs,
        spec.as_numpy,
        repr(mode),  # complete and deterministic; dask would pickle the dataclass
        layout.shapes,
        layout.dtypes,
        [a.name if isinstance(a, da.Array) else a for a in args],
    )
    if mode.depth is not None:
        return _overlapping(call, args, mode, layout, meta, token)
    sig_inputs = mode.signature.inputs if mode.signature is not None else None
    core_ndims = None
    if sig_inputs is not None:
        core_ndims = tuple(
            len(d) if isinstance(a, da.Array) else 0
            for a, d in zip(args, sig_inputs, strict=True)
        )
    block = BlockCall(call, loop_ndims, core_ndims)
    return _blockwise(block, args, sig_inputs, cores, layout.dtypes, meta, token)


def _check_unknown_chunks(
    mode: Mode, args: tuple[Any, ...], loop_ndims: tuple[int, ...], name: str
) -> None:
    import dask.array as da

    for i, (a, n) in enumerate(zip(args, loop_ndims, strict=True)):
        if not isinstance(a, da.Array):
            continue
        axes = range(a.ndim) if mode.depth is not None else range(n, a.ndim)
        bad = [ax for ax in axes if any(math.isnan(c) for c in a.chunks[ax])]
        if bad:
            what = (
                "the overlap of a stencil (depth=) needs"
                if mode.depth is not None
                else "core dimensions of a signature need"
            )
            msg = (
                f"{name} (dask): argument {i} has unknown chunk sizes (NaN) along axis "
                f"{', '.join(map(str, bad))}; {what} known sizes. Call "
                "x.compute_chunk_sizes() on the argument first (unknown sizes along "
                "loop dimensions are fine)"
            )
            raise SpecError(msg)


def _blockwise(
    block: BlockCall,
    args: tuple[Any, ...],
    sig_inputs: tuple[tuple[str, ...], ...] | None,
    cores: tuple[tuple[int, ...], ...],
    dtypes: tuple[Any, ...],
    meta: Any,
    token: str,
) -> Any:
    """One ``blockwise`` task per block of the loop dimensions."""
    import dask.array as da
    from dask.array.utils import meta_from_array
    from dask.highlevelgraph import HighLevelGraph

    ndim = max(block.loop_ndims, default=0)
    loop = tuple(f"l{k}" for k in range(ndim))
    argpairs: list[Any] = []
    for i, (a, n) in enumerate(zip(args, block.loop_ndims, strict=True)):
        if isinstance(a, da.Array):
            # Core dimensions: one contracted index per argument and axis; the task
            # gets their blocks as nested lists and merges them (BlockCall).
            ncore = len(sig_inputs[i]) if sig_inputs is not None else 0
            argpairs += [a, loop[ndim - n :] + tuple(f"c{i}_{k}" for k in range(ncore))]
        else:
            argpairs += [a, None]
    name = f"{block.call.name}-{token}"
    multi = block.call.check.multi
    out_ind = loop
    new_axes: dict[str, int] = {}
    if not multi:
        out_core = tuple(f"o{k}" for k in range(len(cores[0])))
        out_ind = loop + out_core
        new_axes = dict(zip(out_core, cores[0], strict=True))
    try:
        tmp = da.blockwise(
            block,
            out_ind,
            *argpairs,
            name=name,
            new_axes=new_axes,
            concatenate=False,
            meta=meta_from_array(meta, ndim=len(out_ind), dtype=dtypes[0]),
        )
    except ValueError as exc:  # chunks that cannot be aligned (unknown sizes)
        msg = (
            f"{block.call.name} (dask, {block.call.check.kind}): cannot align the "
            f"chunks: {exc}"
        )
        raise SpecError(msg) from exc
    if not multi:
        return tmp
    keys = list(_flat(tmp.__dask_keys__()))
    outs = []
    for i, (core, dtype) in enumerate(zip(cores, dtypes, strict=True)):
        leaf = f"{block.call.name}-{i}-{token}"
        tail = (0,) * len(core)
        # Graph keys are plain tuples; dask's Key type is not inferred for them.
        layer: dict[Any, Any] = {
            (leaf, *k[1:], *tail): (operator.getitem, k, i) for k in keys
        }
        graph = HighLevelGraph.from_collections(leaf, layer, dependencies=[tmp])
        chunks = tmp.chunks + tuple((c,) for c in core)
        out_meta = meta_from_array(meta, ndim=len(chunks), dtype=dtype)
        outs.append(da.Array(graph, leaf, chunks, meta=out_meta))  # type: ignore[no-untyped-call]
    return tuple(outs)


def _flat(keys: Any) -> Any:
    if isinstance(keys, list):
        for k in keys:
            yield from _flat(k)
    else:
        yield keys


def _overlapping(
    call: KernelCall,
    args: tuple[Any, ...],
    mode: Mode,
    layout: Layout,
    meta: Any,
    token: str,
) -> Any:
    """``map_overlap``: share neighbours, run the kernel per block, trim."""
    import dask.array as da
    from dask.array.core import unify_chunks
    from dask.array.overlap import overlap, trim_internal

    shape = layout.shapes[0]
    ndim = len(shape)
    depth = mode.depth.for_ndim(ndim, call.name)  # type: ignore[union-attr]
    boundary = boundary_for_ndim(mode.boundary, ndim, call.name)
    index = tuple(range(ndim))
    arrays = [
        da.broadcast_to(a, shape) if a.shape != shape else a
        for a in args
        if isinstance(a, da.Array)
    ]
    if len(arrays) > 1:
        _, arrays = unify_chunks(*(x for a in arrays for x in (a, index)))
    try:
        padded = iter([overlap(a, depth, boundary) for a in arrays])
    except ValueError as exc:
        msg = f"{call.name} (dask, stencil): cannot overlap the blocks: {exc}"
        raise SpecError(msg) from exc
    new_args = tuple(next(padded) if isinstance(a, da.Array) else a for a in args)
    loop_ndims = tuple(ndim if isinstance(a, da.Array) else 0 for a in args)
    block = BlockCall(call, loop_ndims)
    cores = ((),) * len(layout.dtypes)
    out = _blockwise(block, new_args, None, cores, layout.dtypes, meta, token)
    # The visible output is named after the kernel, not "_trim" (task names show it).
    outs = [
        _renamed(trim_internal(o, depth, boundary), f"{call.name}-trim-{token}-{i}")
        for i, o in enumerate(out if layout.multi else (out,))
    ]
    return tuple(outs) if layout.multi else outs[0]


def _same(block: Any) -> Any:
    return block


def _renamed(x: Any, name: str) -> Any:
    """``x`` under the key ``name``: one blockwise step, fused away when computed."""
    import dask.array as da

    return da.map_blocks(_same, x, name=name, dtype=x.dtype, meta=x._meta)
