"""Dask arrays: the kernel becomes tasks of the array's graph; nothing is computed.

Default mode: one task on the whole array. Each input is merged into one chunk inside
that same task (no separate rechunk layer), the kernel runs once, and its output is a
single-chunk array. The task key is prefixed with the kernel's name. The kernel never
runs on the zero-size ``_meta``: the output meta is built from the declared dtype.
Chunk-wise modes (``elementwise``, ``signature``, ``depth``) live in
:mod:`lazyapply.adapters._dask_chunked`.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable
from typing import Any

from lazyapply._call import KernelCall, numpy_inputs
from lazyapply._detect import adapter_for
from lazyapply._spec import CallSpec, OutputSpec, kernel_name

from ._base import Adapter, output_for_call

__all__ = ["DaskAdapter"]


class DaskAdapter(Adapter):
    name = "dask"
    lazy = True

    def __init__(self) -> None:
        import dask.array as da

        self.native = (da.Array,)
        self._xp: Any = None

    @staticmethod
    def claims(x: Any) -> bool:
        import sys

        da = sys.modules.get("dask.array")
        return da is not None and isinstance(x, da.Array)

    def namespace(self, x: Any) -> Any:
        if self._xp is None:
            import array_api_compat.dask.array as xp

            self._xp = xp
        return self._xp

    def device(self, x: Any) -> Any:
        return None

    def result_type(self, xp: Any, args: tuple[Any, ...]) -> Any:
        if xp is not self._xp:
            return super().result_type(xp, args)
        import numpy as np

        # Dask dtypes are NumPy dtypes: NumPy's result_type on them (Python scalars
        # weak, NEP 50) is what array_api_compat's gives, ~40x faster (graph build).
        native: Any = self.native  # (typed Any: mypy would narrow a to object)
        from lazyapply._detect import dtype_args  # drop-in (issue 9): no sequences

        return np.result_type(
            *(a.dtype if isinstance(a, native) else a for a in dtype_args(args))
        )

    def apply(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: CallSpec,
        xp: Any,
        first: Any,
    ) -> Any:
        import numpy as np

        if not spec.mode.is_default:
            from ._dask_chunked import defer_chunked

            return defer_chunked(self, func, args, kwargs, spec, xp, first)
        name = spec.name or kernel_name(func)
        output = output_for_call(spec, name, args, kwargs)
        shapes, dtypes = self.infer_output(
            output, args, xp or self.namespace(first), name
        )
        np_dtypes = tuple(np.dtype(d) for d in dtypes)
        call = self.chunk_call(
            func, kwargs, spec, output, name, shapes, np_dtypes, first
        )
        meta = first._meta
        return self.defer_whole(call, args, shapes, np_dtypes, meta)

    def chunk_call(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        spec: CallSpec,
        output: OutputSpec,
        name: str,
        shapes: tuple[tuple[int | None, ...], ...] | None,
        np_dtypes: tuple[Any, ...],
        first: Any,
    ) -> KernelCall:
        """The checked call that runs on chunks of ``first``'s chunk library.

        Chunks reach the kernel in their own library (sparse, CuPy, ...) and outputs
        go back to it. With ``as_numpy=True`` that library is asked to convert its
        zero-size meta now, so a refusal (sparse densification, a CuPy device copy)
        comes at the call rather than at compute time.
        """
        import numpy as np

        meta = first._meta
        chunk = adapter_for(meta, name)
        if spec.as_numpy and not isinstance(meta, np.ndarray):
            numpy_inputs((meta,), chunk.native)
        return KernelCall(
            func,
            kwargs,
            name=name,
            backend="dask",
            as_numpy=spec.as_numpy,
            multi=output.multi,
            shapes=shapes,
            dtypes=np_dtypes,
            declared=(output.shapes is not None, output.dtypes is not None),
            back=chunk.namespace(meta),
            device=None,
            native=chunk.native,
            out_types=chunk.native,
        )

    def defer_whole(
        self,
        call: KernelCall,
        args: tuple[Any, ...],
        shapes: tuple[tuple[int | None, ...], ...],
        dtypes: tuple[Any, ...],
        meta: Any,
    ) -> Any:
        """One kernel task on each input merged into one chunk."""
        import dask.array as da
        from dask.array.core import concatenate3
        from dask.array.utils import meta_from_array
        from dask.base import tokenize
        from dask.highlevelgraph import HighLevelGraph

        # dask.array.Array is not a DaskCollection to the type checkers, and its
        # constructor and graph keys are untyped: the graph is built with Any.
        deps: list[Any] = []
        token = tokenize(
            kernel_token(call.func),
            call.kwargs,
            call.as_numpy,
            shapes,
            dtypes,
            [a.name if isinstance(a, da.Array) else a for a in args],
        )
        # A multi-block input is merged by a task of its own, so that the scheduler
        # can release its blocks before the kernel runs (a merge inside the kernel's
        # task would keep them alive: one extra input-sized copy at the peak).
        merges: dict[Any, Any] = {}
        exprs: list[Any] = []
        for j, a in enumerate(args):
            if isinstance(a, da.Array):
                deps.append(a)
                if math.prod(a.numblocks) == 1:  # one block (npartitions)
                    exprs.append((a.name, *(0,) * a.ndim))
                else:
                    merge_key = (f"{call.name}-merge-{token}", j)
                    merges[merge_key] = (concatenate3, a.__dask_keys__())
                    exprs.append(merge_key)
            else:
                exprs.append(a)
        task = (call, *exprs)
        outs = []
        if not call.multi:
            out_name = f"{call.name}-{token}"
            key = (out_name, *(0,) * len(shapes[0]))
            graphs: list[tuple[str, dict[Any, Any]]] = [
                (out_name, {key: task, **merges})
            ]
        else:
            kernel_key = f"{call.name}-{token}"
            graphs = []
            for i, shape in enumerate(shapes):
                out_name = f"{call.name}-{i}-{token}"
                key = (out_name, *(0,) * len(shape))
                graphs.append(
                    (
                        out_name,
                        {
                            key: (operator.getitem, kernel_key, i),
                            kernel_key: task,
                            **merges,
                        },
                    )
                )
        for (out_name, layer), shape, dtype in zip(graphs, shapes, dtypes, strict=True):
            graph = HighLevelGraph.from_collections(out_name, layer, dependencies=deps)
            chunks = tuple((math.nan if s is None else s,) for s in shape)
            out_meta = meta_from_array(meta, ndim=len(shape), dtype=dtype)  # type: ignore[no-untyped-call]
            outs.append(da.Array(graph, out_name, chunks, meta=out_meta))  # type: ignore[no-untyped-call]
        return tuple(outs) if call.multi else outs[0]


_FUNC_TOKENS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _immutable(func: Any) -> bool:
    """Kernels whose token cannot change: plain functions, ufuncs, Numba dispatchers.

    A ``functools.partial`` (its arguments may be arrays changed in place), a callable
    object (its attributes) or a bound method (its ``self``) is tokenized at every
    call, as ``dask.array.map_blocks`` does, so a new state gets a new key.
    """
    import types

    if isinstance(func, (types.FunctionType, types.BuiltinFunctionType)):
        return True
    cls = type(func)
    if cls.__name__ == "ufunc" and cls.__module__ == "numpy":
        return True
    return cls.__module__.startswith("numba.") and hasattr(func, "py_func")


def kernel_token(func: Any) -> Any:
    """Dask's token of a kernel; computed once per kernel object if it is immutable.

    Tokenizing a function pickles it; for a Numba dispatcher or a function whose module
    attribute is a ``@lazy`` wrapper that costs hundreds of microseconds per call.
    Dask caches function tokens by identity in the same way.
    """
    from dask.base import tokenize

    if not _immutable(func):  # drop-in (issue 9): keys follow the kernel's state
        return tokenize(func)
    try:
        return _FUNC_TOKENS[func]
    except KeyError:
        token = _FUNC_TOKENS[func] = tokenize(func)
        return token
    except TypeError:  # not weak-referenceable (e.g. a builtin): no cache
        return func
