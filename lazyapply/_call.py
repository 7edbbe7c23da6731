"""The kernel call: the one object that runs a user kernel, wherever it runs.

A :class:`KernelCall` converts the inputs to NumPy when asked, calls the kernel, turns
array-likes into arrays of the expected dtype, checks every output against the
declared (or, on lazy backends, inferred) shape and dtype, and converts the outputs
back to the caller's namespace and device. The same object runs eagerly, inside a Dask
task (so it pickles, namespaces by module name) and inside a JAX host callback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from ._errors import KernelOutputError

__all__ = ["KernelCall", "numpy_inputs"]


def numpy_inputs(args: Sequence[Any], native: tuple[type, ...]) -> tuple[Any, ...]:
    """Convert the array arguments to NumPy with ``np.asarray``.

    Backends that refuse an implicit conversion (sparse densification, a CUDA or
    ``meta`` tensor, CuPy, a non-CPU array-api-strict device) raise their own error
    here: nothing is densified or moved off a device behind the caller's back.
    """
    asarray = _ASARRAY[0] if _ASARRAY else _numpy_asarray()
    if len(args) == 1:  # the common case, without a comprehension (hot path)
        a = args[0]
        return (asarray(a),) if isinstance(a, native) else tuple(args)
    return tuple([asarray(a) if isinstance(a, native) else a for a in args])


_ASARRAY: list[Callable[..., Any]] = []  # np.asarray, once NumPy is first needed


def _numpy_asarray() -> Callable[..., Any]:
    # A function-level import costs ~0.3 us per call; this lookup costs nothing.
    from numpy import asarray

    _ASARRAY.append(asarray)
    return asarray


def _import_namespace(name: str) -> Any:
    return importlib.import_module(name)


class KernelCall:
    """A picklable, checked call of ``func(*args, **kwargs)``.

    Parameters
    ----------
    func, kwargs
        The kernel and its keyword arguments (never traced, never scanned for keys).
    name, backend
        For error messages.
    as_numpy
        Convert array arguments (instances of ``native``) to NumPy first.
    multi
        The kernel returns a sequence of outputs.
    shapes, dtypes
        Expected shape and dtype per output; ``None`` (whole or per size) is unchecked.
    declared
        ``(shape_declared, dtype_declared)``: chooses the hint in error messages.
    back, device
        Namespace and device to convert the outputs to; ``back=None`` keeps them as the
        kernel returned them (a JAX host callback accepts NumPy arrays as they are).
    out_types
        Types that need no conversion.
    canon
        Maps an output dtype to the dtype the namespace stores it as (JAX without
        x64 stores float64 as float32); such an output is cast, as ``asarray`` would.
    """

    __slots__ = (
        "as_numpy",
        "back",
        "backend",
        "canon",
        "declared",
        "device",
        "dtypes",
        "func",
        "kwargs",
        "multi",
        "name",
        "native",
        "out_types",
        "shapes",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        name: str,
        backend: str,
        as_numpy: bool,
        multi: bool,
        shapes: tuple[Any, ...] | None,
        dtypes: tuple[Any, ...] | None,
        declared: tuple[bool, bool],
        back: Any,
        device: Any,
        native: tuple[type, ...],
        out_types: tuple[type, ...],
        canon: Callable[[Any], Any] | None = None,
    ) -> None:
        self.func = func
        self.kwargs = kwargs
        self.name = name
        self.backend = backend
        self.as_numpy = as_numpy
        self.multi = multi
        self.shapes = shapes
        self.dtypes = dtypes
        self.declared = declared
        self.back = back
        self.device = device
        self.native = native
        self.out_types = out_types
        self.canon = canon

    def __reduce__(self) -> tuple[Any, ...]:
        # Namespaces are modules, which do not pickle: send their import name.
        back = None if self.back is None else self.back.__name__
        state = {s: getattr(self, s) for s in self.__slots__ if s != "back"}
        return (_rebuild, (back, state))

    def __repr__(self) -> str:
        return f"<lazyapply kernel call {self.name} on {self.backend}>"

    @property
    def __name__(self) -> str:  # dask uses it for task names
        return self.name

    def __call__(self, *args: Any) -> Any:
        if self.as_numpy:
            args = numpy_inputs(args, self.native)
        out = self.func(*args, **self.kwargs)
        return self.finish(out)

    def finish(self, out: Any, lead: tuple[int, ...] = ()) -> Any:
        """Normalise and check the kernel's return value ``out``.

        ``lead`` are extra leading (batch) dimensions expected before each declared
        shape, when a JAX callback is batched by ``vmap``.
        """
        if not self.multi:
            return self._one(0, out, lead)
        if isinstance(out, (str, bytes)) or not isinstance(out, Sequence):
            n = len(self.shapes) if self.shapes is not None else "several"
            msg = (
                f"{self.name} ({self.backend}): the kernel was declared with {n} "
                f"outputs but returned {type(out).__name__}; return a tuple of arrays"
            )
            raise KernelOutputError(msg)
        if self.shapes is not None and len(out) != len(self.shapes):
            msg = (
                f"{self.name} ({self.backend}): the kernel was declared with "
                f"{len(self.shapes)} outputs but returned {len(out)}; return one array "
                "per declared shape, or fix shape="
            )
            raise KernelOutputError(msg)
        return tuple(self._one(i, o, lead) for i, o in enumerate(out))

    def _one(self, i: int, o: Any, lead: tuple[int, ...]) -> Any:
        dtype = self.dtypes[i] if self.dtypes is not None else None
        if not isinstance(o, self.out_types):
            o = self._convert(o, dtype, i)
        if self.shapes is not None:
            expected = self.shapes[i]
            got = tuple(o.shape)
            # got == expected is the common case: no loop over the sizes.
            if (lead or got != tuple(expected)) and (
                len(got) != len(lead) + len(expected)
                or any(
                    e is not None and e != g
                    for e, g in zip(lead + tuple(expected), got, strict=True)
                )
            ):
                self._raise(i, "shape", lead + tuple(expected), got, 0)
        if dtype is not None and o.dtype != dtype:
            from ._outputs import native_order  # drop-in (issue 9): ">f8" is float64

            got = native_order(o.dtype)
            if got == dtype:  # a host callback hands JAX the native order
                return o if self.back is not None else o.astype(got)
            if self.canon is not None and self.canon(got) == dtype:
                # JAX without x64: float64 is stored as float32, as jnp.asarray does.
                return o.astype(dtype)
            self._raise(i, "dtype", dtype, o.dtype, 1)
        return o

    def _convert(self, o: Any, dtype: Any, i: int = 0) -> Any:
        # drop-in (issue 9): conversion retries and messages live in _outputs.
        from ._outputs import convert_output

        kw: dict[str, Any] = {}
        if dtype is not None and not hasattr(o, "shape"):
            kw["dtype"] = dtype
        if self.back is None:
            import numpy as np

            return convert_output(np.asarray, o, kw, self._where(), i, dtype)
        if self.device is not None:
            kw["device"] = self.device
        return convert_output(self.back.asarray, o, kw, self._where(), i, dtype)

    def _where(self) -> str:
        return f"{self.name} ({self.backend})"

    def _raise(self, i: int, what: str, expected: Any, got: Any, which: int) -> None:
        if self.declared[which]:
            hint = f"fix the kernel or the declared {what}="
        else:
            hint = (
                f"the {what} was inferred from the inputs "
                f"({'their broadcast shape' if which == 0 else 'their result_type'}); "
                f"declare {what}= with what the kernel returns"
            )
        msg = (
            f"{self.name} ({self.backend}): output {i} has {what} {_show(got)}, "
            f"expected {_show(expected)}; {hint}"
        )
        raise KernelOutputError(msg)


def _show(value: Any) -> str:
    # NumPy's namespaces hold scalar types (np.float32), which print as classes.
    if isinstance(value, type) and hasattr(value, "dtype"):
        import numpy as np

        if issubclass(value, np.generic):
            return np.dtype(value).name
    return str(value)


def _rebuild(back: str | None, state: dict[str, Any]) -> KernelCall:
    call = KernelCall.__new__(KernelCall)
    for key, value in state.items():
        setattr(call, key, value)
    call.back = None if back is None else _import_namespace(back)
    return call
