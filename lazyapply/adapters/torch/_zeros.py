"""The sign of a zero that torch.compile baked into a graph: a guard Dynamo lacks.

Dynamo specialises a Python float argument on its first compile and guards the
cached graph with ``==`` (``EQUALS_MATCH``), so a later ``-0.0`` passes the guard of
``0.0`` and reuses a graph with ``0.0`` baked in: ``copysign``, ``atan2`` or ``1/x``
in a kernel silently give the other sign's result. Fixed upstream after torch 2.13
(pytorch/pytorch#192604: a bitwise float ``EQUALS_MATCH``; pytorch/pytorch#192608:
the same for guard snapshots and subgraph reuse).

Until then, a call of a lazy kernel made while Dynamo traces adds, beside each
``==`` guard on a float (or complex) zero that the frame holds so far, a guard on
its sign: ``-0.0`` recompiles instead. :func:`guard_zero_signs` runs at trace time
(Dynamo keeps its result as a constant). If the torch in use lacks the internals it
needs, it says so, and :func:`refuse_unguarded_zeros` refuses a zero argument
loudly rather than let a graph return the other sign's result.
"""

from __future__ import annotations

import math
from typing import Any

from lazyapply._errors import LazyApplyError

__all__ = ["guard_zero_signs", "refuse_unguarded_zeros"]


def _signs(value: Any) -> tuple[float, ...] | None:
    """The signs of a float's (or complex's parts') zeros; ``None`` if no zero."""
    if type(value) is float:
        parts: tuple[float, ...] = (value,)
    elif type(value) is complex:
        parts = (value.real, value.imag)
    else:
        return None
    if all(p != 0.0 for p in parts):
        return None
    return tuple(math.copysign(1.0, p) for p in parts)


def _same_signs(want: tuple[float, ...], value: Any) -> bool:
    # Only the sign: Dynamo's own == guard beside this one checks type and value.
    got = _signs(value)
    return got is None or got == want


def _zero_sign_match(builder: Any, guard: Any) -> None:
    """A guard builder's method: the guarded zero keeps its sign."""
    want = _signs(builder.get(guard))
    if want is None:
        return
    from torch._dynamo.guards import get_verbose_code_parts

    def check(value: Any) -> bool:
        return _same_signs(want, value)

    code = f"__lazyapply_zero_sign_{'_'.join('n' if s < 0 else 'p' for s in want)}"
    builder.get_guard_manager(guard).add_lambda_guard(
        check, get_verbose_code_parts(code, guard), guard.user_stack
    )


def guard_zero_signs() -> bool:
    """Guard the sign of every float zero the traced frame guards by ``==``.

    Returns ``True`` when done (or not tracing), ``False`` when the torch in use
    lacks the internals it needs (then :func:`refuse_unguarded_zeros`).
    """
    try:
        from torch._dynamo.guards import GuardBuilder
        from torch._guards import Guard, TracingContext

        context = TracingContext.try_get()
        if context is None:
            return True
        guards = context.guards_context.dynamo_guards
        matches = (GuardBuilder.CONSTANT_MATCH, GuardBuilder.EQUALS_MATCH)
        for guard in list(guards):
            if guard.inner_create_fn() in matches:
                # One per source: the guard set drops an equal one.
                guards.add(Guard(guard.originating_source, _zero_sign_match))
    except (ImportError, AttributeError, TypeError):
        return False
    return True


def refuse_unguarded_zeros(name: str, args: Any, kwargs: Any) -> None:
    """Refuse a float zero argument where :func:`guard_zero_signs` could not
    guard its sign (traced code: no import, no ``math``)."""
    for a in (*args, *kwargs.values()):
        for b in a if type(a) is tuple or type(a) is list else (a,):
            if type(b) is float and b == 0.0:
                msg = (
                    f"{name} (torch.compile): a Python float zero among the "
                    "arguments, and this torch's Dynamo guards it with ==, so a "
                    "later call with the other zero (0.0/-0.0) would reuse this "
                    "graph and return that zero's result (pytorch/pytorch#192604); "
                    "lazyapply could not add a guard on the sign here. Pass the "
                    "value as a tensor (torch.tensor(0.0)), or compile with "
                    "dynamic=True"
                )
                raise LazyApplyError(msg)


# Dynamo runs it at trace time (it cannot trace guard construction, only do it) and
# keeps the result as a constant, as torch._dynamo.assume_constant_result does.
guard_zero_signs._dynamo_marked_constant = True  # type: ignore[attr-defined]
