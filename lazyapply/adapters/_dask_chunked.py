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
against the block's expected shape inside the task (:class:`BlockCall`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from lazyapply._call import KernelCall, numpy_inputs
from lazyapply._errors import KernelOutputError, SpecError
from lazyapply._modes import boundary_for_ndim, mode_output, mode_output_shapes
from lazyapply._spec import CallSpec, Mode, OutputSpec, arg_shape, kernel_name
from lazyapply.adapters._base import output_for_call
from lazyapply.adapters.dask import DaskAdapter, kernel_token

__all__ = ["BlockCall", "defer_chunked"]


class BlockCall:
    """Runs a kernel on one block and checks each output against the block's shape.

    The expected shape of an output block is the broadcast of the input blocks' loop
    dimensions followed by the output's core shape (``()`` for elementwise and stencil
    kernels). Picklable: tasks run on ``dask.distributed`` worker processes.
    """

    __slots__ = ("call", "core_ndims", "cores", "kind", "loop_ndims")

    def __init__(
        self,
        call: KernelCall,
        loop_ndims: tuple[int, ...],
        cores: tuple[tuple[int, ...], ...],
        kind: str,
        core_ndims: tuple[int, ...] | None = None,
    ) -> None:
        self.call = call
        self.loop_ndims = loop_ndims
        self.cores = cores
        self.kind = kind
        # Per argument, its number of core dimensions: blockwise hands them over as
        # nested lists of blocks, merged here (a single block is not copied).
        self.core_ndims = core_ndims

    def __reduce__(self) -> tuple[Any, ...]:
        state = (self.call, self.loop_ndims, self.cores, self.kind, self.core_ndims)
        return (BlockCall, state)

    @property
    def __name__(self) -> str:  # dask's funcname, for task names
        return self.call.name

    def __repr__(self) -> str:
        return f"<lazyapply block call {self.call.name} ({self.kind})>"

    def __call__(self, *blocks: Any) -> Any:
        import numpy as np

        call = self.call
        if self.core_ndims is not None:
            blocks = tuple(
                _merge(b, n) if n else b
                for b, n in zip(blocks, self.core_ndims, strict=True)
            )
        lead = np.broadcast_shapes(
            *(
                tuple(getattr(b, "shape", ()))[:n]
                for b, n in zip(blocks, self.loop_ndims, strict=True)
            )
        )
        args = numpy_inputs(blocks, call.native) if call.as_numpy else blocks
        out = call.finish(call.func(*args, **call.kwargs))
        outs = out if call.multi else (out,)
        if len(outs) != len(self.cores):
            msg = (
                f"{call.name} (dask, {self.kind}): the kernel was declared with "
                f"{len(self.cores)} outputs but returned {len(outs)} on a block; "
                "return one array per output"
            )
            raise KernelOutputError(msg)
        for i, (o, core) in enumerate(zip(outs, self.cores, strict=True)):
            expected = (*lead, *core)
            if tuple(o.shape) != expected:
                raise KernelOutputError(self._message(i, expected, tuple(o.shape)))
        return out

    def _message(self, i: int, expected: Any, got: Any) -> str:
        hint = {
            "elementwise": (
                "an elementwise kernel returns one value per element of its "
                "(broadcast) input block; if it needs the whole array, drop "
                "elementwise=True"
            ),
            "stencil": (
                "a stencil kernel (depth=) returns an array shaped like its overlapped "
                "input block; if it changes the shape, drop depth="
            ),
        }.get(
            self.kind,
            f"a kernel with {self.kind} keeps its inputs' loop dimensions and returns "
            "the declared core dimensions; fix the kernel, the signature or shape=",
        )
        return (
            f"{self.call.name} (dask, {self.kind}): output {i} of a block has shape "
            f"{got}, expected {expected}; {hint}"
        )


def _merge(blocks: Any, n: int) -> Any:
    """Merge the nested lists of blocks along the last ``n`` (core) axes."""
    inner = blocks
    for _ in range(n):
        if len(inner) != 1:
            break
        inner = inner[0]
    else:
        return inner  # one block: no copy
    from dask.array.core import concatenate_axes

    first = blocks
    while isinstance(first, list):
        first = first[0]
    return concatenate_axes(blocks, list(range(first.ndim - n, first.ndim)))


def defer_chunked(
    adapter: DaskAdapter,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: CallSpec,
    xp: Any,
    first: Any,
) -> Any:
    """Build the chunk-wise graph for ``spec.mode``; nothing is computed."""
    import dask.array as da
    import numpy as np
    from dask.base import tokenize

    name = spec.name or kernel_name(func)
    mode = spec.mode
    output = mode_output(
        mode.signature, output_for_call(spec, name, args, kwargs), name
    )
    shapes, loop_ndims, cores = mode_output_shapes(
        mode, output, [arg_shape(a) for a in args], name, "dask"
    )
    _, dtypes = adapter.infer_output(
        OutputSpec(shapes, output.dtypes, output.multi),
        args,
        xp or adapter.namespace(first),
        name,
    )
    np_dtypes = tuple(np.dtype(d) for d in dtypes)
    _check_unknown_chunks(mode, args, loop_ndims, name)
    meta = first._meta
    # BlockCall checks each block against its own shape: no whole-array shapes here.
    call = adapter.chunk_call(func, kwargs, spec, output, name, None, np_dtypes, first)
    known_cores = tuple(tuple(int(s) for s in c) for c in cores)  # type: ignore[arg-type]
    kind = (
        "elementwise"
        if mode.elementwise
        else "stencil"
        if mode.depth is not None
        else f"signature {mode.signature}"
    )
    token = tokenize(
        kernel_token(func),
        kwargs,
        spec.as_numpy,
        repr(mode),  # complete and deterministic; dask would pickle the dataclass
        shapes,
        np_dtypes,
        [a.name if isinstance(a, da.Array) else a for a in args],
    )
    if mode.depth is not None:
        return _overlapping(call, args, mode, shapes, np_dtypes, meta, token)
    sig_inputs = mode.signature.inputs if mode.signature is not None else None
    core_ndims = None
    if sig_inputs is not None:
        core_ndims = tuple(
            len(d) if isinstance(a, da.Array) else 0
            for a, d in zip(args, sig_inputs, strict=True)
        )
    block = BlockCall(call, loop_ndims, known_cores, kind, core_ndims)
    return _blockwise(block, args, sig_inputs, known_cores, np_dtypes, meta, token)


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
    multi = block.call.multi
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
        msg = f"{block.call.name} (dask, {block.kind}): cannot align the chunks: {exc}"
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
    shapes: tuple[tuple[int | None, ...], ...],
    dtypes: tuple[Any, ...],
    meta: Any,
    token: str,
) -> Any:
    """``map_overlap``: share neighbours, run the kernel per block, trim."""
    import dask.array as da
    from dask.array.overlap import overlap, trim_internal

    shape = shapes[0]
    ndim = len(shape)
    depth = mode.depth.for_ndim(ndim, call.name)  # type: ignore[union-attr]
    from dask.array.core import unify_chunks

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
    block = BlockCall(call, loop_ndims, ((),) * len(dtypes), "stencil")
    out = _blockwise(block, new_args, None, block.cores, dtypes, meta, token)
    # drop-in (issue 9): the visible output is named after the kernel, not "_trim".
    outs = [
        _renamed(trim_internal(o, depth, boundary), f"{call.name}-trim-{token}-{i}")
        for i, o in enumerate(out if call.multi else (out,))
    ]
    return tuple(outs) if call.multi else outs[0]


def _same(block: Any) -> Any:
    return block


def _renamed(x: Any, name: str) -> Any:
    """``x`` under the key ``name``: one blockwise step, fused away when computed."""
    import dask.array as da

    return da.map_blocks(_same, x, name=name, dtype=x.dtype, meta=x._meta)
