"""``@lazy``: decorate an eager kernel once; call it on any array library.

Everything that does not depend on a call's arguments (the kernel's name, the parsed
``shape``/``dtype``, the execution mode) is normalised into one frozen
:class:`~lazyapply.spec.CallSpec` when the decorator is applied. A call then does
exactly what ``lazy_apply(kernel, *args, ...)`` does after its own parsing: find the
arguments' adapter and hand it the kernel, the arguments and that spec.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    overload,
)

from lazyapply._detect import _TYPES, check_definition, find_adapter
from lazyapply._engine import SLOTS, run
from lazyapply._errors import ArgumentTypeError, SpecError
from lazyapply._pickling import by_value, from_main, lookup
from lazyapply.spec import CallSpec, Shape
from lazyapply.spec._build import DEFAULTS, build_spec, derive_spec
from lazyapply.spec._keywords import check_names

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BoundLazyFunction", "LazyFunction", "lazy"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")


def _is_array(x: object) -> bool:
    try:
        find_adapter((x,), "kernel")
    except (ArgumentTypeError, SpecError):
        return False
    return True


class LazyFunction(Generic[P, R]):
    """An eager kernel that runs lazily on lazy backends; made by :func:`lazy`.

    Calling it is ``lazy_apply(kernel, *args, **kwargs, **options)`` with the options
    given to :func:`lazy`, which were validated once when it was made.

    Attributes
    ----------
    eager : callable
        The undecorated kernel (also ``__wrapped__``).
    options : mapping
        Every option (read-only), including defaults: ``lazy(**f.options)(g)`` makes
        a twin of ``f`` for ``g``.
    spec : CallSpec
        The normalised call specification.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_in_class",
        "_kernel",
        "_name",
        "_options",
        "_slot",
        "_spec",
        "_xp",
    )

    # Set per instance from the kernel (instance __dict__), as functools.wraps does.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(self, kernel: Callable[P, R], /, **options: Any) -> None:
        if not callable(kernel):
            msg = (
                f"lazy: expected a function to decorate, got {type(kernel).__name__} "
                f"{kernel!r}; use @lazy or @lazy(...) directly above a def"
            )
            raise TypeError(msg)
        check_names(options, kernel)
        check_definition(getattr(kernel, "__name__", "kernel"))  # not in a trace
        full = {**DEFAULTS, **options}
        spec = build_spec(kernel, full)  # raises before anything is stored
        self._kernel = kernel
        self._spec = spec
        self._name = spec.name
        self._xp = full["xp"]
        self._options = types.MappingProxyType(full)
        self._slot = SLOTS.new()  # its last eager call's strategy (see run)
        # functools.update_wrapper would also copy a Numba dispatcher's whole
        # __dict__ (compiler state); take the identity attributes only.
        if isinstance(kernel, types.FunctionType):
            self.__dict__.update(kernel.__dict__)
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(kernel, attr, None)
            if value is None and attr != "__doc__":
                value = self._name if attr != "__module__" else type(kernel).__module__
            setattr(self, attr, value)
        self.__wrapped__ = kernel
        # Defined in a class body (``Class.method``, not ``func.<locals>.inner``)?
        parts = self.__qualname__.split(".")
        self._in_class = len(parts) > 1 and parts[-2] != "<locals>"

    # Arguments and result are typed Any on purpose: the kernel's annotations describe
    # NumPy arrays, while the point of a lazy function is to take (and return) torch
    # tensors, JAX tracers, Dask arrays... ``.eager`` keeps the kernel's own types.
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # One array of a known type (the common case): no find_adapter frame.
        adapter = _TYPES.get(type(args[0])) if len(args) == 1 else None
        if adapter is None:
            try:
                adapter, first = find_adapter(args, self._name)
            except ArgumentTypeError:
                # ``Class.method(instance, x)``: bind the instance (as ``obj.method``).
                if not self._in_class or not args or _is_array(args[0]):
                    raise
                return BoundLazyFunction(self, args[0])(*args[1:], **kwargs)
        else:
            first = args[0]
        spec, xp = self._spec, self._xp
        return run(adapter, first, self._kernel, args, kwargs, spec, xp, self._slot)

    # ------------------------------------------------------------ introspection
    @property
    def eager(self) -> Callable[P, R]:
        """The undecorated kernel."""
        return self._kernel

    @property
    def options(self) -> Mapping[str, Any]:
        """The decorator's options (read-only), defaults included."""
        return self._options

    @property
    def spec(self) -> CallSpec:
        """The call specification built when the decorator was applied."""
        return self._spec

    def defvjp(self, vjp: Callable[..., Any], /) -> Callable[..., Any]:
        """Declare the kernel's vector-Jacobian product; usable as a decorator.

        ``vjp(grad_out, out, *args, **kwargs)`` is an eager kernel with the same
        conversions as this one (NumPy arrays with ``as_numpy=True``); it returns one
        cotangent per positional argument (``None`` where an argument is not
        differentiable). With several outputs ``grad_out`` and ``out`` are tuples.
        Returns ``vjp`` unchanged.
        """
        self._declare("vjp", vjp)
        return vjp

    def defjvp(self, jvp: Callable[..., Any], /) -> Callable[..., Any]:
        """Declare the kernel's Jacobian-vector product (forward mode under JAX).

        ``jvp(tangents, out, *args, **kwargs)`` returns the output tangent(s);
        ``tangents`` holds one tangent per positional argument (``None`` for
        arguments that are not differentiable). Returns ``jvp`` unchanged.
        """
        self._declare("jvp", jvp)
        return jvp

    def _declare(self, rule: str, fn: Callable[..., Any]) -> None:
        options = {**self._options, rule: fn}
        self._spec = build_spec(self._kernel, options)  # validates fn
        self._options = types.MappingProxyType(options)

    @property
    def vjp(self) -> Callable[..., Any]:
        """The declared vjp as a lazy function: ``f.vjp(grad_out, out, *args)``.

        Runs through the engine like the kernel (so on Dask it is a task, chunk by
        chunk where the kernel's mode allows) and returns one cotangent per
        positional argument (``None`` for arguments that are not differentiable).
        ``@f.vjp.defvjp`` declares the vjp's own vjp (second derivatives).
        """
        from lazyapply._vjp_of import VjpOf

        return VjpOf(self)

    def __repr__(self) -> str:
        given = ", ".join(
            f"{k}={_short(v)}" for k, v in self._options.items() if v is not DEFAULTS[k]
        )
        where = f"{self.__module__}.{self.__qualname__}"
        return f"<lazy kernel {where}{f' ({given})' if given else ''}>"

    # ------------------------------------------------------------ methods
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(
        self: LazyFunction[Concatenate[S, P2], R],
        instance: S,
        owner: type[Any] | None = None,
    ) -> BoundLazyFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        return BoundLazyFunction(self, instance)

    # ------------------------------------------------------------ pickling
    def __reduce__(self) -> str | tuple[Any, ...]:
        # By reference when the module attribute is this object: workers and
        # ``multiprocessing`` children import the module and find the same object.
        qualname: str = self.__qualname__
        if lookup(self.__module__, qualname) is not self:
            # A local kernel: by value, which cloudpickle can do (plain pickle cannot).
            return (_rebuild, (self._kernel, dict(self._options)))
        if self.__module__ != "__main__":
            return qualname
        # Defined in a script or notebook (``__main__``): plain pickle must work
        # (``multiprocessing`` spawn re-imports the script, joblib, user caches), but a
        # ``dask worker`` started from the command line has another ``__main__``.
        # So: by reference, with a cloudpickle copy (bytes, which any pickler carries)
        # for a process whose ``__main__`` lacks it, as Numba pickles its dispatchers.
        return (from_main, (qualname, by_value(self), type(self)))


class BoundLazyFunction(Generic[P, R]):
    """A :class:`LazyFunction` bound to an instance (``obj.method``).

    The kernel receives the instance first (through ``functools.partial``), so only the
    call's own arguments are scanned for arrays: ``self`` need not be an array. Shape
    and dtype callables receive the instance too, like the kernel.
    """

    __slots__ = (
        "__func__",
        "__self__",
        "__weakref__",
        "_kernel",
        "_name",
        "_spec",
        "_xp",
    )

    def __init__(self, func: LazyFunction[Any, R], instance: object) -> None:
        spec = func.spec
        if spec.shape_fn is not None or spec.dtype_fn is not None:
            spec = derive_spec(
                spec,
                shape_fn=_bind(spec.shape_fn, instance),
                dtype_fn=_bind(spec.dtype_fn, instance),
            )
        self.__func__ = func
        self.__self__ = instance
        self._kernel = functools.partial(func.eager, instance)
        self._spec = spec
        self._name = spec.name
        self._xp = func.options["xp"]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        adapter, first = find_adapter(args, self._name)
        return run(adapter, first, self._kernel, args, kwargs, self._spec, self._xp)

    @property
    def __signature__(self) -> inspect.Signature:
        # The kernel's signature without its first parameter (the instance).
        sig = inspect.signature(self.__func__.eager)
        return sig.replace(parameters=tuple(sig.parameters.values())[1:])

    def __getattr__(self, name: str) -> Any:  # __name__, __doc__, eager, options ...
        if name in _BOUND_SLOTS:  # unset slot (Dynamo builds a copy): no recursion
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (self.__self__, self.__func__.__name__))


def _bind(fn: Callable[..., Any] | None, instance: object) -> Callable[..., Any] | None:
    return None if fn is None else functools.partial(fn, instance)


def _rebuild(
    kernel: Callable[..., Any], options: dict[str, Any]
) -> LazyFunction[Any, Any]:
    return LazyFunction(kernel, **options)


def _short(value: Any) -> str:
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__name__", None) or repr(value)
    return repr(value)


ShapeOption = Shape | Sequence[Shape] | Callable[..., Any] | None


# The overloads repeat the options on purpose: a type checker reads each whole.
@overload
def lazy(
    func: Callable[P, R],
    /,
    *,
    shape: ShapeOption = None,
    dtype: Any = None,
    as_numpy: bool = False,
    xp: Any = None,
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
    strict: bool = True,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
) -> LazyFunction[P, R]: ...
@overload
def lazy(
    *,
    shape: ShapeOption = None,
    dtype: Any = None,
    as_numpy: bool = False,
    xp: Any = None,
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
    strict: bool = True,
    vjp: Callable[..., Any] | None = None,
    jvp: Callable[..., Any] | None = None,
) -> Callable[[Callable[P, R]], LazyFunction[P, R]]: ...
def lazy(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make an eager kernel callable on every array library, lazily where it can be.

    Usable bare (``@lazy``) or with options (``@lazy(shape=..., as_numpy=True)``).
    Calling the result is ``lazy_apply(kernel, *args, **kwargs, **options)``.

    Parameters
    ----------
    func : callable
        The kernel (a Python function, a Numba dispatcher, a Cython or SciPy
        function, a ``functools.partial``...). Omit it to get a decorator.
    shape : tuple, sequence of tuples, or callable, optional
        As in :func:`~lazyapply.lazy_apply`, or a callable of the call's arguments that
        returns the shape(s): ``shape=lambda x, y: (x.shape[0], y.shape[1])``. It sees
        the caller's arrays (static shapes inside ``jax.jit``; on Dask a NaN size
        becomes ``None``, an unknown size).
    dtype : dtype, name, Python type, sequence of them, or callable, optional
        As in :func:`~lazyapply.lazy_apply` (mapped to the caller's namespace at each
        call), or a callable of the call's arguments: ``dtype=lambda x: x.dtype``.
    as_numpy, xp, elementwise, signature, depth, boundary : optional
        As in :func:`~lazyapply.lazy_apply`.
    strict : bool, optional
        The output policy (default ``True``): check on every backend what Dask and
        ``jax.jit`` must check, so a kernel that passes its NumPy tests works lazily.
    vjp, jvp : callable, optional
        Declared derivatives (see :meth:`LazyFunction.defvjp`,
        :meth:`LazyFunction.defjvp`).

    Returns
    -------
    LazyFunction, or a decorator that makes one
        Keeps the kernel's ``__name__``, ``__qualname__``, ``__module__``, ``__doc__``
        and signature; ``.eager`` is the kernel; it binds as a method and pickles by
        reference when defined at module level.

    Raises
    ------
    TypeError
        ``func`` is not callable; an unknown option (the message lists valid ones).
    SpecError
        A malformed constant ``shape``/``dtype`` or mode, or an unknown dtype name,
        when the decorator is applied; a shape/dtype callable that raises or returns
        something invalid, when called. Messages name the kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from lazyapply import lazy
    >>> @lazy(shape=lambda x: (x.shape[0] - 1,), as_numpy=True)
    ... def steps(x):
    ...     return np.diff(x)
    >>> steps(np.asarray([1, 4, 9]))
    array([3, 5])
    """
    if func is None:
        # Names are checked now; values when the kernel arrives (messages name it).
        check_names(options, None)
        return functools.partial(LazyFunction, **options)
    return LazyFunction(func, **options)


_BOUND_SLOTS = frozenset(BoundLazyFunction.__slots__)
