"""What a compiled call hands its kernel's op: a plan per argument kinds, the
operands and the call site.

Dynamo traces a call made under ``torch.compile`` as bytecode, and every later call
of the compiled function checks a guard for each global, attribute and builtin the
traced code read (~0.3 us each, the largest cost of a compiled call). So the traced
code reads as little as it can: the arguments' types go to :func:`plan_of`, which
Dynamo runs at trace time and keeps as a constant of the graph (as
``torch._dynamo.assume_constant_result`` does; a constant and what is read from it
carry no guard), and the rest comes from the plan. A call on tensors only, without
keyword arguments (the common case), takes its op and call site from the plan as
they are.

Python floats and ints, and NumPy scalars, go to the op as 0-d tensors (a marker in
the call site's template) unless a shape or dtype callable may read their value:
Dynamo makes a number that changes between calls symbolic, and a call site (a
constant of the graph) cannot hold one.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

# At module level, deliberately: Dynamo traces this module's code, where an import
# breaks the graph. Only lazyapply.adapters.torch imports it, once torch is in use.
import torch  # noqa: TID253

from lazyapply._caches import bounded
from lazyapply._errors import SpecError
from lazyapply.adapters.torch._op import prepare_op, single_output
from lazyapply.adapters.torch._sites import FLOAT, INT, NUMPY, TENSOR, site_of
from lazyapply.adapters.torch._zeros import guard_zero_signs
from lazyapply.spec import CallSpec, kernel_name

__all__ = ["Plan", "call_site", "operands", "plan_of"]

_LOCK = threading.Lock()
_PLANS = bounded("torch: compiled-call plans by kernel, spec and argument kinds", 256)


# What each argument is, by its type: the codes of ``Plan.hows``. The traced code
# compares them as literals, since a global it read would be a guard.
_TENSOR, _FLOAT, _INT, _NUMPY, _REFUSED, _STATIC, _ITEMS = range(7)


class Plan:
    """How a compiled call of one kernel and spec passes arguments of given kinds.

    Plain data only: Dynamo keeps a function or a torch object that a constant
    holds only through a path it can guard. ``hows``/``kw_hows``: per argument,
    its code (``_TENSOR``...); ``items``: the code set of a tuple's or list's items
    (numbers, or refused NumPy scalars). ``op`` (its name in
    ``torch.ops.lazyapply``) and ``site``: set when the operands are the arguments
    (tensors only, no keywords), ``op`` for a kernel that is not a bound method
    (whose op :func:`._compiled.call_op` finds apart).
    """

    __slots__ = (
        "first",
        "hows",
        "items",
        "kw_hows",
        "multi",
        "name",
        "numpy_maybe",
        "op",
        "single",
        "site",
        "tensor_at",
        "torch_code",
        "vjp",
    )
    first: int | None  # the first tensor's position (the device of numbers)
    hows: tuple[int, ...]
    items: tuple[int, int, int]  # codes of a float, an int, an ndarray item
    kw_hows: dict[str, int]
    multi: bool  # the spec says: a sequence of outputs
    name: str
    numpy_maybe: bool  # an ndarray, tuple or list among the arguments' types
    op: str | None
    single: bool  # the op's schema returns one tensor
    site: int | None
    tensor_at: tuple[int, ...]  # the tensors' positions
    torch_code: bool  # neither as_numpy nor a vjp: Dynamo may trace the kernel
    vjp: bool


def plan_of(
    kernel: Any,
    spec: CallSpec,
    kinds: list[type],
    kw_kinds: list[tuple[str, type]],
    compiling: bool,
) -> Plan:
    """The plan of a call of ``kernel`` (``None``: a bound method) as ``spec``
    says, on positional arguments of types ``kinds`` and keywords ``kw_kinds``.

    Run at trace time (a constant of the graph); cached for untraced calls (a
    tensor subclass, a torch.func transform).
    """
    key: Any = (kernel, spec, tuple(kinds), tuple(kw_kinds), compiling)
    try:
        plan = _PLANS.get(key)
    except TypeError:  # an unhashable kernel: no cache
        return _plan(kernel, spec, kinds, kw_kinds, compiling)
    if plan is None:
        with _LOCK:
            plan = _PLANS.get(key)
            if plan is None:
                plan = _PLANS.put(key, _plan(kernel, spec, kinds, kw_kinds, compiling))
    return plan  # type: ignore[no-any-return]


def _plan(
    kernel: Any,
    spec: CallSpec,
    kinds: list[type],
    kw_kinds: list[tuple[str, type]],
    compiling: bool,
) -> Plan:
    # Numbers go as tensors unless a shape or dtype callable may read their value:
    # then they stay static (a value Dynamo made symbolic cannot: a known limit).
    numbers = spec.shape_fn is None and spec.dtype_fn is None
    plan = Plan()

    def how(kind: type) -> int:
        if issubclass(kind, torch.Tensor) and not issubclass(kind, np.ndarray):
            return _TENSOR
        if kind is tuple or kind is list:
            return _ITEMS if numbers or compiling else _STATIC
        if numbers:
            return {float: _FLOAT, int: _INT, np.ndarray: _NUMPY}.get(kind, _STATIC)
        return _REFUSED if compiling and kind is np.ndarray else _STATIC

    plan.hows = tuple(how(k) for k in kinds)
    # (A tensor keyword argument stays static, as eagerly: the op passes only
    # positional tensors.)
    plan.kw_hows = {k: _STATIC if how(t) == _TENSOR else how(t) for k, t in kw_kinds}
    plan.items = (_FLOAT, _INT, _NUMPY) if numbers else (_STATIC, _STATIC, _REFUSED)
    plan.tensor_at = tuple(i for i, h in enumerate(plan.hows) if h == _TENSOR)
    plan.first = plan.tensor_at[0] if plan.tensor_at else None
    plan.numpy_maybe = any(
        k is np.ndarray or k is tuple or k is list
        for k in (*kinds, *(t for _, t in kw_kinds))
    )
    plan.name = spec.name or (kernel_name(kernel) if kernel is not None else "kernel")
    plan.multi = spec.output.multi
    plan.single = single_output(spec)
    plan.vjp = spec.vjp is not None
    plan.torch_code = not spec.as_numpy and spec.vjp is None
    plan.site = plan.op = None
    n = len(kinds)
    if not kw_kinds and len(plan.tensor_at) == n:  # the operands are the arguments
        plan.site = site_of((TENSOR,) * n, {})
        if kernel is not None and not plan.vjp:
            # Its op without a site operand (whose dispatch costs ~3 us).
            plan.op = str(prepare_op(kernel, spec, n, plain=True)._name)
    return plan


def operands(plan: Plan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The op's tensors and call site (traced).

    Returns ``(tensors, site, zeros_guarded)``: ``zeros_guarded`` is ``False`` where
    the signs of float zeros baked into the graph could not be guarded (then the
    caller refuses them).
    """
    tensors: list[Any] = []
    device = None if plan.first is None else args[plan.first].device
    hows = plan.hows
    parts = []
    i = 0
    for a in args:  # (no enumerate or zip: a builtin read is a guard)
        parts.append(_part(plan, hows[i], a, tensors, device))
        i += 1  # noqa: SIM113
    if kwargs:
        kw_hows = plan.kw_hows
        kwargs = {
            k: _part(plan, kw_hows[k], v, tensors, device) for k, v in kwargs.items()
        }
    site, guarded = call_site((*parts,), kwargs)
    return tensors, site, guarded


def _part(plan: Plan, how: int, a: Any, tensors: list[Any], device: Any) -> Any:
    """``a``'s part of the template; its operands appended to ``tensors``."""
    if how == 0:  # _TENSOR
        tensors.append(a)
        return TENSOR
    if how == 1:  # _FLOAT: float64 keeps the value and its sign (-0.0)
        # A product, not scalar_tensor(a): Dynamo makes a float that changed between
        # calls symbolic, and the tensorify pass cannot keep scalar_tensor of one
        # symbolic: it specialises the value (pytorch/pytorch#138868), so every new
        # value recompiled (FailOnRecompileLimitHit under fullgraph at the ninth),
        # and through SymPy, which has no -0.0 (the op got +0.0). The pass keeps a
        # product symbolic; 1.0 * a is exact for every float, NaN and -0.0 too.
        tensors.append(torch.ones((), dtype=torch.float64, device=device) * a)
        return FLOAT
    if how == 2:  # _INT, where int64 holds it (a larger int stays static)
        if -(2**63) <= a < 2**63:
            tensors.append(torch.scalar_tensor(a, dtype=torch.int64, device=device))
            return INT
        return a
    if how == 3 and a.ndim == 0:  # _NUMPY
        # Dynamo shows a NumPy scalar as a 0-d ndarray of unknown value
        # (pytorch/pytorch#141343), which a call site (a constant) cannot hold: it
        # goes as a 0-d tensor of its dtype, and the kernel gets the NumPy scalar
        # back (an eager 0-d array is a scalar of the call too).
        t = torch.as_tensor(a)
        tensors.append(t.to(device) if device is not None else t)
        return NUMPY + str(t.dtype).removeprefix("torch.")
    if how == 4 and a.ndim == 0:  # _REFUSED
        msg = (
            f"{plan.name} (torch.compile): a NumPy scalar argument beside a shape= or "
            "dtype= callable; Dynamo shows NumPy scalars to compiled code as 0-d "
            "arrays whose value it does not know while tracing "
            "(pytorch/pytorch#141343), and the callable may read it. Pass a Python "
            "number (float(s), int(s)), or declare shape= and dtype= without callables"
        )
        raise SpecError(msg)
    if how == 6:  # _ITEMS: numbers and NumPy scalars in a tuple or list (one level)
        parts = [_part(plan, _item(plan, b), b, tensors, device) for b in a]
        return (*parts,) if type(a) is tuple else parts
    return a


def _item(plan: Plan, b: Any) -> int:
    # type(), not isinstance: bool stays static (its type is part of the call);
    # Dynamo answers float/int for a symbolic number too.
    t = type(b)
    if t is float:
        return plan.items[0]
    if t is int:
        return plan.items[1]
    return plan.items[2] if t is np.ndarray else 5  # _STATIC


def call_site(template: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, bool]:
    """:func:`site_of` the template and keywords, and the signs of float zeros
    guarded (run at trace time): whether that could be done."""
    return site_of(template, kwargs), guard_zero_signs()


# Dynamo runs these at trace time and keeps their results as constants of the graph
# (as torch._dynamo.assume_constant_result does, without importing torch._dynamo).
plan_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
call_site._dynamo_marked_constant = True  # type: ignore[attr-defined]
