"""The kernel call: the one place where lazyapply calls a user's kernel.

:meth:`KernelCall.run` converts the inputs to NumPy when asked, calls the kernel,
checks every output with the call's :class:`~lazyapply._check.OutputCheck` and
converts the outputs to the caller's namespace and device. The same object runs
eagerly, inside a Dask task (it pickles) and inside a JAX host callback: whatever the
path, the kernel is called from :meth:`KernelCall.run` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lazyapply._check import OutputCheck
from lazyapply._errors import KernelOutputError
from lazyapply._hints import explain
from lazyapply._outputs import convert_output

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter
    from lazyapply.spec import CallSpec

__all__ = ["KernelCall", "make_call", "numpy_inputs"]


def numpy_inputs(args: Sequence[Any], native: tuple[type, ...]) -> tuple[Any, ...]:
    """Convert the array arguments (instances of ``native``) with ``np.asarray``.

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


def _ndarray() -> type:
    if not _NDARRAY:
        from numpy import ndarray

        _NDARRAY.append(ndarray)
    return _NDARRAY[0]


_NDARRAY: list[type] = []


def _numpy_asarray() -> Callable[..., Any]:
    # A function-level import costs ~0.3 us per call; this lookup costs nothing.
    from numpy import asarray

    _ASARRAY.append(asarray)
    return asarray


class KernelCall:
    """A checked call of a kernel, built once by :func:`make_call`.

    Parameters
    ----------
    func, kwargs
        The kernel and the keyword arguments that ``__call__`` passes (Dask tasks);
        :meth:`run` takes the keyword arguments of each call instead.
    spec
        The :class:`~lazyapply.spec.CallSpec` it was made for.
    name, backend
        For error messages.
    host
        Converts the positional arguments for the kernel (``as_numpy``), or ``None``.
    check
        What the outputs must be. ``strict=False`` checks only their number.
    convert
        Turns an output that is not an instance of ``out_types`` (a NumPy array of a
        non-NumPy backend, a list, a scalar) into the caller's namespace and device.
    device, move
        The caller's device; ``move(o, device)`` brings back an output the kernel made
        on another one (``None`` for single-device backends).
    canon
        Maps an output dtype to the dtype the namespace stores it as (JAX without
        x64 stores float64 as float32); such an output is cast, as ``asarray`` would.
    """

    __slots__ = (
        "backend",
        "canon",
        "check",
        "convert",
        "device",
        "expect",
        "func",
        "host",
        "kwargs",
        "move",
        "name",
        "out_types",
        "single",
        "spec",
        "strict",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        spec: Any,
        name: str,
        backend: str,
        host: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
        check: OutputCheck,
        strict: bool,
        convert: Callable[[Any], Any],
        out_types: tuple[type, ...],
        device: Any = None,
        move: Callable[[Any, Any], Any] | None = None,
        canon: Callable[[Any], Any] | None = None,
    ) -> None:
        self.func = func
        self.kwargs = kwargs
        self.spec = spec
        self.name = name
        self.backend = backend
        self.host = host
        self.check = check
        self.strict = strict
        self.convert = convert
        self.out_types = out_types
        self.device = device
        self.move = move
        self.canon = canon
        # The call's own check of one output, read on the hot path without lookups.
        self.single = not check.multi
        self.expect = (
            check.shapes[0] if self.single and check.shapes is not None else None,
            check.dtypes[0] if self.single and check.dtypes is not None else None,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        from lazyapply._pickling import kernel_reference

        state = {s: getattr(self, s) for s in self.__slots__}
        # Plain pickle: by the lazy function the module holds (see there), and its
        # spec with it (shape and dtype callables are often lambdas).
        state["func"], state["spec"] = kernel_reference(self.func, self.spec)
        return (_rebuild, (state,))

    def __repr__(self) -> str:
        return f"<lazyapply kernel call {self.name} on {self.backend}>"

    @property
    def __name__(self) -> str:  # dask uses it for task names
        return self.name

    def __call__(self, *args: Any) -> Any:
        return self.run(args, self.kwargs)

    def run(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lead: tuple[int, ...] = (),
        check: OutputCheck | None = None,
        like: Any = None,
    ) -> Any:
        """Call the kernel on ``args`` and return its checked, converted outputs.

        ``lead`` are leading batch dimensions expected before each output's shape
        (a ``vmap`` batch, a Dask block's loop dimensions); ``check`` replaces the
        call's own check for metadata inferred from this call's arguments; ``like``
        (the one array argument of a strict call that declares nothing) is what the
        output must match, checked without building a check on the hot path.
        """
        try:
            if self.host is not None:
                args = self.host(args)
            out = self.func(*args, **kwargs)  # the one call site of a user's kernel
        except Exception as exc:  # clearer errors for known mistakes, on failure only
            explain(exc, self.func, args, self.name, self.host is not None)
            raise
        # The hot path: one array of the caller's library, the call's own check.
        hot = check is None and like is None and self.single and not lead
        if hot and type(out) in self.out_types:
            if self.move is not None and out.device != self.device:
                out = self.move(out, self.device)
            if not self.strict:
                return out
            shape, dtype = self.expect
            if (shape is None or out.shape == shape) and (
                dtype is None or out.dtype == dtype
            ):
                return out
            return self._one(0, out, lead, self.check)
        placed = False  # converted here: on the caller's device by construction
        # (_NDARRAY is filled when a call is made, by make_call or unpickling.)
        if type(out) not in self.out_types and type(out) is _NDARRAY[0] and not lead:
            # A NumPy result of another library (as_numpy): converted now, on the
            # caller's device; what the library refuses takes the general path.
            try:
                out = self.convert(out)
            except (TypeError, ValueError, RuntimeError, NotImplementedError):
                pass
            else:
                placed = True
        if like is not None:  # strict, nothing declared, one array argument
            if (
                type(out) in self.out_types
                and out.shape == like.shape
                and out.dtype == like.dtype
                and (placed or self.move is None or out.device == self.device)
            ):
                return out
            like_shape = (tuple(like.shape),)
            check = OutputCheck(like_shape, (like.dtype,), False, (False, False))
        check = self.check if check is None else check
        if check.multi:
            # (A converted array is one output: the count check below refuses it.)
            return self._several(out, lead, check)
        if type(out) in self.out_types and not lead:  # the hot path: one array
            if not placed and self.move is not None and out.device != self.device:
                out = self.move(out, self.device)
            if not self.strict:
                return out
            shape = check.shapes[0] if check.shapes is not None else None
            dtype = check.dtypes[0] if check.dtypes is not None else None
            if (shape is None or out.shape == shape) and (
                dtype is None or out.dtype == dtype
            ):
                return out
        elif isinstance(out, (tuple, list)) and any(hasattr(o, "shape") for o in out):
            raise check.count_error(out, self.where())
        return self._one(0, out, lead, check)

    def where(self) -> str:
        """Kernel and backend, the start of every message."""
        kind = self.check.kind
        return f"{self.name} ({self.backend}{', ' + kind if kind else ''})"

    def _several(self, out: Any, lead: tuple[int, ...], check: OutputCheck) -> Any:
        n = len(check.shapes or check.dtypes or ()) or None
        if (
            # A tuple or list is a sequence: the abstract class's test costs more
            # than a small output's whole check.
            (
                type(out) is not tuple
                and type(out) is not list
                and (isinstance(out, (str, bytes)) or not isinstance(out, Sequence))
            )
            or (n is not None and len(out) != n)
        ):
            raise check.count_error(out, self.where())
        return tuple([self._one(i, o, lead, check) for i, o in enumerate(out)])

    def _one(self, i: int, o: Any, lead: tuple[int, ...], check: OutputCheck) -> Any:
        if o is None:
            msg = (
                f"{self.where()}: output {i} is None; the kernel must return an array "
                "(did it forget a return statement?)"
            )
            raise KernelOutputError(msg)
        # A non-array output always meets a declared dtype, as the reference's
        # asarray(out, dtype=) makes it (a string where a float is declared is an
        # error, even when not strict).
        strict = self.strict or not hasattr(o, "shape")
        dtype = check.dtypes[i] if strict and check.dtypes is not None else None
        if not isinstance(o, self.out_types):
            o = self._array(i, o, dtype, check)
        elif self.move is not None and o.device != self.device:  # type: ignore[attr-defined]
            o = self.move(o, self.device)
        if not self.strict:
            return o
        error = check.shape_error(i, tuple(o.shape), lead, self.where)
        if error is not None:
            raise error
        if dtype is not None and o.dtype != dtype:
            if _same_but_byte_order(o.dtype, dtype):
                return o
            got = (
                o.dtype
            )  # a big-endian NumPy output is its native dtype, as NumPy says
            if getattr(got, "byteorder", "=") == ">":
                got = got.newbyteorder("=")
            if self.canon is not None and self.canon(got) == dtype:
                return o.astype(dtype)  # JAX without x64: as jnp.asarray stores it
            raise check.error(i, "dtype", dtype, o.dtype, self.where())
        return o

    def _array(self, i: int, o: Any, dtype: Any, check: OutputCheck) -> Any:
        """An output that is not a caller's array: a NumPy array, a list, a scalar."""
        if dtype is None or hasattr(o, "shape"):
            return convert_output(self.convert, o, self.where, i)
        # An array-like becomes the expected dtype only where NumPy's same_kind casting
        # allows: 1.5 never becomes 1, a string never becomes a float.
        import numpy as np

        a = np.asarray(o)
        target = _numpy_dtype(dtype)
        if target is not None and a.dtype != target:
            if not np.can_cast(a.dtype, target, "same_kind"):
                got = f"{a.dtype} (from a {type(o).__name__})"
                raise check.error(i, "dtype", dtype, got, self.where())
            a = a.astype(target)
        return convert_output(self.convert, a, self.where, i)


def _numpy_dtype(dtype: Any) -> Any:
    """NumPy's counterpart of a namespace's dtype (``torch.float32`` → float32)."""
    import numpy as np

    try:
        return np.dtype(dtype)
    except TypeError:
        name = str(dtype).rsplit(".", 1)[-1]
        try:
            return np.dtype(name)
        except TypeError:
            return None


def _same_but_byte_order(got: Any, expected: Any) -> bool:
    import numpy as np

    if isinstance(got, np.dtype) and isinstance(expected, np.dtype):
        return bool(got.newbyteorder("=") == expected.newbyteorder("="))
    return False


def _rebuild(state: dict[str, Any]) -> KernelCall:
    from lazyapply._pickling import kernel_of

    _ndarray()  # read by run without a call
    call = KernelCall.__new__(KernelCall)
    for key, value in state.items():
        setattr(call, key, value)
    call.func, call.spec = kernel_of(call.func, call.spec)
    return call


def make_call(
    adapter: Adapter,
    first: Any,
    func: Callable[..., Any],
    kwargs: dict[str, Any],
    spec: CallSpec,
    check: OutputCheck,
    xp: Any,
    *,
    deferred: bool,
    name: str | None = None,
) -> KernelCall:
    """The one constructor of a :class:`KernelCall`, from the adapter's answers."""
    if not name:
        from lazyapply.spec import kernel_name

        name = spec.name or kernel_name(func)
    _ndarray()  # read by run without a call
    target = adapter.target(first, xp, deferred=deferred)
    host = target.host if spec.as_numpy else None
    if host is not None:
        target.check_host(name)
        if target.guard is not None:
            host = target.guard(func, host)
    return KernelCall(
        func,
        kwargs,
        spec=spec,
        name=name,
        backend=adapter.label(first),
        host=host,
        check=check,
        strict=deferred or spec.strict,
        convert=target.convert,
        out_types=target.out_types,
        device=target.device,
        move=target.move,
        canon=target.canon,
    )
