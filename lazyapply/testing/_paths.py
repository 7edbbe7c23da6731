"""The path matrix: every way lazyapply runs a kernel, and the backends each takes.

One list, :data:`PATHS`, serves :func:`~lazyapply.testing.check_kernel` (and so
``python -m lazyapply check``) and lazyapply's own behaviour tests: a new path is
added here once and every kernel check and every behaviour test runs through it.

A :class:`Path` knows which backends it applies to, which kernels take it (a Dask
mode takes the kernels declared in that mode; the native path takes Numba kernels
with ``as_numpy=True``...), how to make its arrays from NumPy sample arguments, and
how to call a kernel through it the way its users would, asserting laziness where
the path is lazy (Dask computes nothing during the call; under ``jax.jit`` the
result is a tracer).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lazyapply._decorator import LazyFunction, lazy
from lazyapply.testing import _calls as calls
from lazyapply.testing._backends import Backend

__all__ = ["PATHS", "Path", "paths_for"]

Kernel = LazyFunction[..., Any]

_EAGER = tuple(b for b in Backend if not b.is_lazy)
_TORCH = (Backend.TORCH, Backend.TORCH_CUDA)


@dataclass(frozen=True)
class Path:
    """One way of running a kernel: its backends, the kernels it takes, its call.

    Attributes
    ----------
    name : str
        Short and unique, e.g. ``"dask elementwise"`` or ``"jax jit native"``.
    backends : tuple of Backend
        The backends whose arrays the path takes.
    summary : str
        What the path does, one line.
    options : mapping
        The ``@lazy`` options a kernel declares to take this path (an elementwise
        test kernel takes every path once these are added: see :meth:`declare`).
    lazy : bool
        The kernel runs after the call (Dask) or inside a trace (``jax.jit``).
    slow : bool
        The path compiles (``torch.compile``): seconds per kernel.
    batch : int
        The path maps the kernel over a batch of this many copies of the arguments,
        stacked on a new leading axis (``jax.vmap``); 0 otherwise.
    variants : tuple of str
        Ways of making the arrays, each run by ``check_kernel`` (Dask: one chunk,
        chunks of one element, uneven chunks).
    needs : tuple of str
        Modules the path needs beyond the backend's own.
    """

    name: str
    backends: tuple[Backend, ...]
    summary: str
    run: Callable[[Path, Kernel, Backend, tuple[Any, ...], dict[str, Any]], Any] = (
        field(repr=False)
    )
    takes: Callable[[Kernel], str | None] = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    lazy: bool = False
    slow: bool = False
    batch: int = 0
    variants: tuple[str, ...] = ("",)
    needs: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------ applicability
    def skip_reason(self, backend: Backend, kernel: Kernel | None = None) -> str | None:
        """Why ``kernel`` cannot run through this path on ``backend`` here, or ``None``.

        Parameters
        ----------
        backend : Backend
            Where to run.
        kernel : LazyFunction, optional
            The kernel as declared; ``None``: only the backend and modules count.
        """
        if backend not in self.backends:
            return f"the {self.name} path does not take {backend} arrays"
        reason = backend.skip_reason()
        if reason is not None:
            return f"{backend}: {reason}"
        for module in self.needs:
            if importlib.util.find_spec(module) is None:
                return f"{self.name}: {module} is not installed"
        if kernel is None:
            return None
        if kernel.spec.as_numpy and not backend.converts_to_numpy:
            return (
                f"as_numpy=True: {backend} arrays do not convert to NumPy implicitly "
                "(lazyapply never copies them to the host behind your back)"
            )
        return self.takes(kernel)

    def declare(self, f: Callable[..., Any], /, **options: Any) -> Kernel:
        """``lazy(f, **options)`` with the options this path needs added.

        An option given here wins over the path's own (a ``signature`` for the
        kernel's number of arguments, say).
        """
        return lazy(f, **{**self.options, **options})

    # ------------------------------------------------------------ running
    def arrays(
        self, backend: Backend, args: tuple[Any, ...], variant: str = ""
    ) -> tuple[Any, ...]:
        """The sample arguments as this path's arrays (other arguments as they are)."""
        if self.name.startswith("dask") and variant:
            import dask.array as da

            chunking = calls.CHUNKINGS[variant]
            return tuple(
                da.from_array(a.copy(), chunks=chunking(a.shape))  # type: ignore[no-untyped-call]
                if isinstance(a, np.ndarray)
                else a
                for a in args
            )
        made = tuple(
            backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args
        )
        if self.name == "torch autograd":
            made = tuple(
                m.requires_grad_()
                if isinstance(a, np.ndarray) and a.dtype.kind in "fc"
                else m
                for m, a in zip(made, args, strict=True)
            )
        return made

    def call(self, kernel: Kernel, backend: Backend, *args: Any, **kwargs: Any) -> Any:
        """Run ``kernel(*args, **kwargs)`` through this path, as its users would.

        ``args`` are this path's arrays (:meth:`arrays`). Lazy paths assert that the
        call was lazy: Dask computed nothing, ``jax.jit`` traced a callback. Returns
        the result (lazy for Dask; batched for ``vmap``).

        Raises
        ------
        AssertionError
            A lazy path ran the kernel during the call.
        """
        with calls.quiet_callbacks():
            return self.run(self, kernel, backend, args, kwargs)

    def expected(self, reference: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The NumPy reference as this path returns it (stacked for a batch)."""
        if not self.batch:
            return reference
        return tuple(np.stack([r] * self.batch) for r in reference)

    def taken(self, kernel: Kernel) -> str | None:
        """After a call: ``None`` if the kernel took this path, else what it took."""
        if self.name != "jax jit native":
            return None
        from lazyapply import explain_native

        decision = explain_native(kernel) or "never staged under jax.jit"
        return None if decision.startswith("native") else decision

    def label(self, kernel: Kernel, variant: str = "") -> str:
        """The mode column of a ``check_kernel`` row."""
        if self.name.startswith("dask"):
            return f"{_mode_name(kernel)}, {variant}" if variant else _mode_name(kernel)
        return _LABELS.get(self.name, self.name)


# ---------------------------------------------------------------- which kernels
def _mode(kind: str) -> Callable[[Kernel], str | None]:
    def takes(kernel: Kernel) -> str | None:
        got = _mode_kind(kernel)
        return None if got == kind else f"the kernel's mode is {got}, not {kind}"

    return takes


def _mode_kind(kernel: Kernel) -> str:
    mode = kernel.spec.mode
    if mode.elementwise:
        return "elementwise"
    if mode.signature is not None:
        return "signature"
    if mode.depth is not None:
        return "stencil"
    return "whole array"


def _mode_name(kernel: Kernel) -> str:
    kind = _mode_kind(kernel)
    if kind == "signature":
        return f"signature {kernel.spec.mode.signature}"
    if kind == "stencil":
        return f"overlap depth={kernel.options['depth']!r}"
    return kind


def _any(kernel: Kernel) -> str | None:
    return None


def _not_as_numpy(kernel: Kernel) -> str | None:
    return "as_numpy=True: the as_numpy path" if kernel.spec.as_numpy else None


def _as_numpy(kernel: Kernel) -> str | None:
    return None if kernel.spec.as_numpy else "the kernel is not declared as_numpy"


def _callback(kernel: Kernel) -> str | None:
    if _native(kernel) is None:
        return "a Numba kernel with as_numpy=True takes the native path"
    return None


def _native(kernel: Kernel) -> str | None:
    from lazyapply.adapters.jax.native import kernel_kind

    if not kernel.spec.as_numpy:
        return "the native path needs as_numpy=True"
    if kernel_kind(kernel.eager) is None:
        return "the native path takes Numba kernels (@njit, @vectorize, @guvectorize)"
    return None


def _batched(kernel: Kernel) -> str | None:
    return None


def _differentiable(kernel: Kernel) -> str | None:
    # A kernel of torch operations without a vjp is differentiated by torch itself:
    # nothing of lazyapply's to check, and a NumPy kernel would refuse such tensors.
    if kernel.spec.vjp is None:
        return "no vjp declared (f.defvjp): torch autograd does not go through it"
    return None


_LABELS = {
    "jax jit callback": "jit",
    "jax jit native": "jit, native",
    "jax vmap": "vmap, batch of 2",
    "torch vmap": "vmap, batch of 2",
}


def _dask_path(kind: str, options: Mapping[str, Any]) -> Path:
    name = "dask" if kind == "whole array" else f"dask {kind}"
    return Path(
        name,
        (Backend.DASK,),
        f"a Dask graph, {kind}: nothing computed in the call",
        calls.dask,
        _mode(kind),
        options=options,
        lazy=True,
        variants=tuple(calls.CHUNKINGS),
    )


#: Every path, in the order ``check_kernel`` runs them. Add a path here, once.
PATHS: tuple[Path, ...] = (
    Path(
        "eager",
        _EAGER,
        "the kernel runs now, on the caller's arrays",
        calls.direct,
        _not_as_numpy,
    ),
    Path(
        "as_numpy",
        _EAGER,
        "the kernel runs now, on NumPy views; results go back to the caller's library",
        calls.direct,
        _as_numpy,
        options={"as_numpy": True},
    ),
    _dask_path("whole array", {}),
    _dask_path("elementwise", {"elementwise": True}),
    _dask_path("signature", {"signature": "(n)->(n)"}),
    _dask_path("stencil", {"depth": 1}),
    Path(
        "jax jit callback",
        (Backend.JAX_JIT,),
        "inside jax.jit, a host callback (pure_callback semantics)",
        calls.jit,
        _callback,
        lazy=True,
    ),
    Path(
        "jax jit native",
        (Backend.JAX_JIT,),
        "inside jax.jit, a Numba kernel as an XLA FFI call (no Python)",
        calls.jit,
        _native,
        options={"as_numpy": True},
        lazy=True,
        needs=("numba",),
    ),
    Path(
        "jax vmap",
        (Backend.JAX,),
        "jax.vmap over a batch of two copies",
        calls.vmap,
        _batched,
        batch=2,
    ),
    Path(
        "torch autograd",
        _TORCH,
        "tensors that require grad: one autograd node running the vjp",
        calls.autograd,
        _differentiable,
    ),
    Path(
        "torch vmap",
        _TORCH,
        "torch.func.vmap over a batch of two copies (batch axis first, or last)",
        calls.torch_vmap,
        _batched,
        batch=2,
    ),
    Path(
        "torch compile",
        _TORCH,
        "torch.compile(fullgraph=True): the kernel as a custom op",
        calls.compiled,
        _any,
        slow=True,
    ),
)


def paths_for(backend: Backend) -> list[Path]:
    """The paths that take ``backend``'s arrays, in :data:`PATHS` order."""
    return [p for p in PATHS if backend in p.backends]
