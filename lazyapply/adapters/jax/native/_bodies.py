"""Handler bodies for the three kinds of Numba kernel (see :mod:`._build`).

:func:`plan_body` returns a :class:`Plan`: the arguments of
:func:`._handler.make_handler` (operand, scalar and result types and the body's
source lines), the globals the body needs, and what the error path and the cache
need. Bodies follow :mod:`._handler`'s contract: they read ``x*``/``s*``, write
``o*``, set ``ok`` and never raise.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Plan", "plan_body"]

_LOCK = threading.Lock()
_ELEMENT: dict[int, tuple[Any, Any]] = {}  # id(ufunc) -> (ufunc, njit of its py_func)


class Plan:
    """One handler to build: what :func:`._handler.make_handler` and the cache need."""

    def __init__(self, **fields: Any) -> None:
        self.kernel: Any = fields["kernel"]
        self.name: str = fields["name"]
        self.signature: str = fields["signature"]
        self.handler_args: tuple[Any, ...] = fields["handler_args"]
        self.body: list[str] = fields["handler_args"][3]
        self.env: dict[str, Any] = fields["env"]
        self.failure: Any = fields["failure"]
        self.checked: tuple[Any, ...] = fields["checked"]
        self.extra_key: tuple[Any, ...] = fields["extra_key"]


def _type_name(nbtype: Any, ndim: int) -> str:
    return f"{nbtype}[{', '.join(':' * ndim)}]" if ndim else str(nbtype)


def _signature(ins: Any, scalars: Any, outs: Any) -> str:
    """``float64[:], float64 -> float64[:]``: for logs and error messages."""
    args = [_type_name(dt, nd) for dt, nd in ins] + [str(s) for s in scalars]
    return ", ".join(args) + " -> " + ", ".join(_type_name(dt, nd) for dt, nd in outs)


def plan_body(template: Any, args: Any, positions: Any, key: Any) -> Plan | str:
    """The handler for signature ``key`` (see ``native._target``), or a refusal."""
    import jax
    import numba
    import numpy as np

    from lazyapply.adapters.jax.native import kernel_kind
    from lazyapply.adapters.jax.native._failure import FailureInfo

    kind = kernel_kind(template.func)
    padded = key[8]  # a padded shard's loop rank: its extents are one more operand
    if padded and kind == "jit":
        return "a padded shard of an @njit kernel (the host callback slices it)"
    ins = tuple((numba.from_dtype(dt), nd) for dt, nd in key[4])
    outs = tuple((numba.from_dtype(dt), nd) for dt, nd in key[7])
    layout, found_scalars, names = _layout(args, positions, template.kwargs)
    scalars = tuple(found_scalars)
    keys = tuple(template.kwargs)
    kinds = tuple(_kind(str(t)) for t in scalars)
    sig = _signature(ins, scalars, outs)
    failure = FailureInfo(
        template, tuple(layout), keys, tuple(np.dtype(d) for d, _ in key[4]), kinds, sig
    )
    failure.padded = padded
    n = len(args)
    env: dict[str, Any] = {}
    if kind == "jit":
        body, wrapper = _jit_body(names, keys, n, outs, template.check.multi)
        env.update(_jit_env(template.func, wrapper))
        checked = (template.func,)
    else:
        if keys:
            return f"keyword arguments to a Numba {kind}: {', '.join(keys)}"
        if any(p[0] == "n" for p in layout):
            return f"None among the arguments of a Numba {kind}"
        env["element"] = _element_function(template.func)
        checked = (env["element"],)
        found = _element_body(template.func, kind, layout, ins, outs, padded)
        if isinstance(found, str):
            return found
        body = found
    from lazyapply.adapters.jax.native import _store

    env.update(
        check_store=_store.check_store,
        as_scalar=_store.as_scalar,
        check_element=_store.check_element,
    )
    if kind == "jit" and template.check.multi:
        env["expect_tuple"] = _store.expect_tuple(len(outs))
    x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]
    return Plan(
        kernel=template.func,
        name=template.name,
        signature=sig,
        # A padded shard's extents follow the operands.
        handler_args=(ins + ((numba.int32, 1),) * bool(padded), scalars, outs, body),
        env=env,
        failure=failure,
        checked=checked,
        extra_key=(kind, x64, getattr(template.func, "signature", None)),
    )


def _kind(name: str) -> type:
    """The type a static argument of Numba type ``name`` is read back as (a failed
    call runs the callback path on it): a Python scalar's, or a NumPy scalar's."""
    import numpy as np

    found = {"bool": bool, "int64": int, "float64": float}.get(name)
    return found if found is not None else np.dtype(name).type


def _element_body(
    func: Any, kind: str | None, layout: Any, ins: Any, outs: Any, padded: int
) -> list[str] | str:
    if kind == "ufunc":
        return _ufunc_body(layout, ins, outs, padded)
    return _gufunc_body(func, layout, ins, outs, padded)


def _layout(
    args: tuple[Any, ...], positions: tuple[int, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], list[Any], list[str]]:
    """Each argument's role, the scalars' Numba types, and its name in the handler."""
    from numba import types

    from lazyapply.adapters.jax.native import scalar_type

    layout: list[Any] = []
    scalars: list[Any] = []
    names: list[str] = []
    for i, value in enumerate((*args, *kwargs.values())):
        if i < len(args) and i in positions:
            layout.append(("a", positions.index(i)))
            names.append(f"x{positions.index(i)}")
        elif value is None:
            layout.append(("n",))
            names.append("None")
        else:
            layout.append(("s", len(scalars)))
            names.append(f"s{len(scalars)}")
            kind = scalar_type(value).replace("bool", "boolean")
            scalars.append(getattr(types, kind))
    return layout, scalars, names


def _jit_body(
    names: list[str], keys: tuple[str, ...], n: int, outs: Any, multi: bool
) -> tuple[list[str], str]:
    """Call the kernel; copy its result(s) into the buffers (shapes checked).

    Returns the lines and, for a call with keywords, the source of a ``kcall``
    wrapper taking everything positionally (:func:`._handler.guarded` takes a tuple).
    """
    from lazyapply.adapters.jax.native._store import store_lines

    args = "".join(f"{a}, " for a in names[:n])
    if keys:  # keywords go through a small wrapper (an intrinsic takes a tuple)
        call = [*names[:n], *(f"{k}={v}" for k, v in zip(keys, names[n:], strict=True))]
        params = sorted({a for a in names if a != "None"})
        args = "".join(f"{a}, " for a in params)
        lines = [f"    got = guarded(kcall, ({args}))"]
        wrapper = (
            f"def kcall({', '.join(params)}):\n    return kernel({', '.join(call)})\n"
        )
    else:
        lines = [f"    got = guarded(kernel, ({args}))"]
        wrapper = ""
    lines += ["    ok = got[0]", "    if ok:", "        res = got[1]"]
    if multi:
        lines.append("        expect_tuple(res)")
    for k, (dtype, ndim) in enumerate(outs):
        got = "res"
        if multi:  # a name: Numba types res[k] once
            lines.append(f"        r{k} = res[{k}]")
            got = f"r{k}"
        lines += store_lines(k, got, dtype, ndim, "        ")
    return lines, wrapper


def _jit_env(kernel: Any, wrapper: str) -> dict[str, Any]:
    """The kernel, and the keyword wrapper compiled from ``wrapper`` (if any)."""
    import numba

    env = {"kernel": kernel}
    if wrapper:
        namespace: dict[str, Any] = {}
        exec(wrapper, {"kernel": kernel}, namespace)
        env["kcall"] = numba.njit(namespace["kcall"])
    return env


def _element_function(func: Any) -> Any:
    """A plain ``njit`` dispatcher of a ufunc's (or gufunc's) Python function."""
    import numba

    with _LOCK:
        found = _ELEMENT.get(id(func))
        if found is None or found[0] is not func:
            inner = func._dispatcher
            options = {
                k: v
                for k, v in inner.targetoptions.items()
                if k in ("fastmath", "boundscheck", "error_model")
            }
            options.setdefault("error_model", "numpy")  # ufunc semantics: no raise
            found = (func, numba.njit(**options)(inner.py_func))
            _ELEMENT[id(func)] = found
        return found[1]


def _loops(
    out_shape: list[str],
    operands: list[tuple[str, list[str]]],
    indent: int,
    bounds: list[str] | None = None,
) -> tuple[list[str], dict[str, str], str]:
    """Nested loops over ``out_shape`` and each operand's flat offset, broadcasting.

    ``operands``: (name, dims) with dims right-aligned to ``out_shape``; a dimension
    of size 1 has stride 0. ``bounds``: how far each loop runs, when not the whole
    ``out_shape`` (a padded shard). Returns the lines opening the loops (the body goes
    at the returned indentation), each operand's offset expression, and the
    indentation.
    """
    lines: list[str] = []
    offsets: dict[str, str] = {}
    pad = "    " * indent
    rank = len(out_shape)
    for name, dims in operands:
        terms = []
        stride = "1"
        for d in reversed(range(len(dims))):
            pos = rank - len(dims) + d
            lines += [
                f"{pad}b_{name}_{d} = 0 if {dims[d]} == 1 else {stride}",
                f"{pad}if {dims[d]} != 1 and {dims[d]} != {out_shape[pos]}:",
                f"{pad}    ok = False",
            ]
            terms.append(f"i{pos} * b_{name}_{d}")
            stride = f"{stride} * {dims[d]}"
        offsets[name] = " + ".join(terms) or "0"
    lines.append(f"{pad}if ok:")
    depth = indent + 1
    for d, size in enumerate(bounds or out_shape):
        lines.append("    " * depth + f"for i{d} in range({size}):")
        depth += 1
    return lines, offsets, "    " * depth


def _extents(shape: list[str], n: int, padded: int) -> tuple[list[str], list[str]]:
    """A padded shard's loop bounds: the lines reading its extents (operand ``n``,
    int32, after the real operands) and each loop's bound, ``shape`` past them."""
    lines = [f"    e{d} = min(int(x{n}[{d}]), {shape[d]})" for d in range(padded)]
    return lines, [f"e{d}" for d in range(padded)] + shape[padded:]


def _ufunc_body(layout: list[Any], ins: Any, outs: Any, padded: int) -> list[str]:
    """One element loop over XLA's buffers; a flat loop when no operand broadcasts
    (never on a padded shard: only the real elements, those within the extents)."""
    if len(outs) != 1 or padded > outs[0][1]:
        return ["    ok = False"]
    rank = outs[0][1]
    flat = [f"xf{i} = V_x{i}(x{i}_a, (x{i}_n,))" for i in range(len(ins))]
    same = " and ".join(f"x{i}_n == o0_n" for i in range(len(ins))) or "True"
    if padded:
        same = "False"
    fast = [f"xf{p[1]}[j]" if p[0] == "a" else f"s{p[1]}" for p in layout]
    lines = [
        "    of0 = V_o0(o0_a, (o0_n,))",
        *(f"    {f}" for f in flat),
        f"    if {same}:",
        "        for j in range(o0_n):",
        *_element_call(fast, "j", "            "),
        "    else:",
        "        j = 0",
    ]
    shape = [f"o0_s{d}" for d in range(rank)]
    ops = [
        (f"x{i}", [f"x{i}_s{d}" for d in range(nd)]) for i, (_, nd) in enumerate(ins)
    ]
    bounds = None
    if padded:  # the output's offset: it is walked within the extents only
        ops.append(("o0", shape))
        found, bounds = _extents(shape, len(ins), padded)
        lines += [f"    {line}" for line in found]
    opened, offsets, pad = _loops(shape, ops, 2, bounds)
    slow = [
        f"xf{p[1]}[{offsets[f'x{p[1]}']}]" if p[0] == "a" else f"s{p[1]}"
        for p in layout
    ]
    lines += opened
    if padded:
        return [*lines, *_element_call(slow, offsets["o0"], pad)]
    lines += [*_element_call(slow, "j", pad), f"{pad}j += 1"]
    return lines


def _element_call(args: list[str], j: str, pad: str) -> list[str]:
    """Call the element function; store its value, or note the failure."""
    return [
        f"{pad}got = guarded(element, ({''.join(a + ', ' for a in args)}))",
        f"{pad}if got[0]:",
        f"{pad}    check_element(of0, got[1])",
        f"{pad}    of0[{j}] = got[1]",
        f"{pad}else:",
        f"{pad}    ok = False",
    ]


def _gufunc_body(
    func: Any, layout: list[Any], ins: Any, outs: Any, padded: int
) -> list[str] | str:
    """A loop over the loop dimensions calling the core function on buffer views."""
    from numba import types
    from numba.np.ufunc.sigparse import parse_signature

    in_cores, out_cores = parse_signature(func.signature)  # type: ignore[no-untyped-call]
    if len(in_cores) != len(layout) or len(out_cores) != len(outs):
        return f"the gufunc signature {func.signature} does not match the call"
    declared = [s.args for s in func._dispatcher.overloads]  # scalar or 1-elem array
    lines: list[str] = []
    loop_rank = outs[0][1] - len(out_cores[0])
    if padded > loop_rank:
        return f"a padded shard of {padded} loop dimensions, {loop_rank} in the call"
    shape = [f"o0_s{d}" for d in range(loop_rank)]
    ops, call = [], []
    for pos, (p, core) in enumerate(zip(layout, in_cores, strict=True)):
        if p[0] == "s":
            if core:
                return f"a Python scalar for the core dimensions {core}"
            call.append(f"s{p[1]}")
            continue
        i, nd = p[1], ins[p[1]][1]
        lead = nd - len(core)
        if lead < 0:
            return f"operand {i} has fewer dimensions than its core {core}"
        dims = [f"x{i}_s{d}" for d in range(nd)]
        scalar = not core and (
            not declared or not isinstance(declared[0][pos], types.Array)
        )
        view = ", ".join(dims[lead:]) if core else ("" if scalar else "1")
        size = " * ".join(dims[:lead]) or "1"
        lines.append(f"    v{i} = V_x{i}(x{i}_a, ({size}, {view}))")
        ops.append((f"x{i}", dims[:lead]))
        call.append(f"v{i}[{{x{i}}}]")
    for k, (_, nd) in enumerate(outs):
        core = out_cores[k]
        dims = [f"o{k}_s{d}" for d in range(nd)]
        view = ", ".join(dims[loop_rank:]) or "1"
        size = " * ".join(dims[:loop_rank]) or "1"
        lines.append(f"    w{k} = V_o{k}(o{k}_a, ({size}, {view}))")
        call.append(f"w{k}[{{o0}}]" if padded else f"w{k}[j]")
    lines.append("    j = 0")
    bounds = None
    if padded:  # the outputs' offset: they are walked within the extents only
        ops.append(("o0", shape))
        found, bounds = _extents(shape, len(ins), padded)
        lines += found
    opened, offsets, pad = _loops(shape, ops, 1, bounds)
    lines += opened
    args = "".join(c.format(**offsets) + ", " for c in call)
    lines += [
        f"{pad}if not guarded(element, ({args}))[0]:",
        f"{pad}    ok = False",
        f"{pad}j += 1",
    ]
    return lines
