"""Eager calls: how one kernel runs now, prepared once per kernel, spec and device.

The engine caches one :class:`Eager` per (kernel, spec, namespace, device) on the
adapter. It holds the :class:`~lazyapply._call.KernelCall` and says what a call must
check: nothing more than the call's own check (``plain``), the one array argument's
metadata (``like``), or metadata from :func:`lazyapply.spec._metadata.layout`,
cached per argument signature (shapes and dtypes), so that strict calls with inferred
metadata cost what declared ones do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lazyapply._call import make_call
from lazyapply._check import OutputCheck
from lazyapply.spec import INFERRED, CallSpec, OutputSpec, kernel_name, resolve_dtype
from lazyapply.spec._metadata import layout, output_for_call

if TYPE_CHECKING:
    from lazyapply.adapters._base import Adapter

__all__ = ["Eager"]

_SHAPE = operator.attrgetter("shape")
_DTYPE = operator.attrgetter("dtype")


class Eager:
    """How one kernel runs now for one spec, namespace and device: made once.

    ``plain``: the call's own check serves every call. ``like``: strict, nothing
    declared, one array argument: the output must match it. Otherwise the check
    depends on the arguments: from :func:`layout` (strict) or the signature's core
    dimensions (not strict), cached per argument signature; shape and dtype
    callables are evaluated at every call.
    """

    __slots__ = ("call", "checks", "last", "like", "plain", "spec", "xp")

    def __init__(
        self,
        adapter: Adapter,
        first: Any,
        func: Callable[..., Any],
        spec: CallSpec,
        xp: Any,
    ) -> None:
        name = spec.name or kernel_name(func)
        check = _declared(adapter, first, spec.output, xp, name)
        self.call = make_call(adapter, first, func, {}, spec, check, xp, deferred=False)
        self.spec = spec
        self.xp = xp
        callables = spec.shape_fn is not None or spec.dtype_fn is not None
        signature = spec.mode.signature is not None
        self.plain = not (spec.infer or signature or callables)
        # (With as_numpy too: KernelCall.run converts a NumPy output first.)
        self.like = (
            spec.infer and spec.output is INFERRED and not (signature or callables)
        )
        self.checks: dict[Any, OutputCheck] | None = None if callables else {}
        # (shapes, dtypes, check) of the last call: compared, not hashed (16 shapes
        # and dtypes hash in ~0.4 us). Shapes are a tuple: never equal to None.
        self.last: tuple[Any, Any, Any] = (None, None, None)

    def check(
        self,
        adapter: Adapter,
        first: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> OutputCheck:
        """The check of this call's outputs (cached per argument signature)."""
        checks = self.checks
        if checks is None:  # shape/dtype callables: evaluated at every call
            return self._check(adapter, first, args, kwargs)
        # Shapes and dtypes decide the inferred metadata (Python scalars are weak:
        # their type counts, never their value). The device is in the call's key.
        # Arrays only: two C-level maps (no Python loop, no pair per argument); the
        # dtypes are compared first (identical objects, as a rule: no item compared).
        try:
            shapes: Any = tuple(map(_SHAPE, args))
            dtypes: Any = tuple(map(_DTYPE, args))
        except AttributeError:
            shapes = tuple(
                [(a.shape, a.dtype) if hasattr(a, "dtype") else type(a) for a in args]
            )
            dtypes = None  # (never equal to a tuple of dtypes: no signature mix-up)
        last = self.last  # one read: another thread replaces it whole, never half
        if dtypes == last[1] and shapes == last[0]:  # the previous call's: no hash
            return last[2]  # type: ignore[no-any-return]
        sig = (shapes, dtypes)
        try:
            check = checks[sig]
        except KeyError:
            if len(checks) >= 64:
                checks.clear()
            check = checks[sig] = self._check(adapter, first, args, kwargs)
        except TypeError:  # an unhashable argument or dtype: no cache
            return self._check(adapter, first, args, kwargs)
        self.last = (shapes, dtypes, check)
        return check

    def _check(
        self,
        adapter: Adapter,
        first: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> OutputCheck:
        spec, call = self.spec, self.call
        if spec.strict:
            lay = layout(
                adapter, first, call.func, args, kwargs, spec, self.xp, call.name
            )
            return OutputCheck(lay.shapes, lay.dtypes, lay.multi, lay.declared)
        # Not strict: the outputs are returned as made, but a signature that does
        # not match the arguments, or a shape callable that fails, is an error on
        # every backend.
        output = output_for_call(spec, call.name, args, kwargs)
        sig = spec.mode.signature
        if sig is not None:
            from lazyapply.spec import arg_shape
            from lazyapply.spec._signature import check_signature_args

            shapes = [arg_shape(a) for a in args]
            check_signature_args(sig, shapes, call.name, adapter.label(first))
        if output is spec.output:
            return call.check
        return _declared(adapter, first, output, self.xp, call.name)


def _declared(
    adapter: Adapter, first: Any, output: OutputSpec, xp: Any, name: str
) -> OutputCheck:
    """The declared metadata, dtypes in the caller's namespace (nothing inferred)."""
    shapes, dtypes = output.shapes, output.dtypes
    declared = (shapes is not None, dtypes is not None)
    if dtypes is not None:
        ns = xp if xp is not None else adapter.namespace(first)
        dtypes = tuple(adapter.canonical(resolve_dtype(d, ns, name)) for d in dtypes)
    return OutputCheck(shapes, dtypes, output.multi, declared)
