"""An automatic ``torch.library.custom_op`` per kernel and spec, for compiled code.

``torch.compile`` cannot trace a Numba, Cython or SciPy kernel, and ``torch.export``
cannot either; both can call an opaque custom op whose output metadata is known. A
call made while compiling or exporting (``torch.compiler.is_compiling()``) goes through
:func:`prepare_op`'s op; eager calls never do (the op dispatcher costs tens of us).

The op, ``lazyapply::<module>__<qualname>_<digest>_<n><t|l>``, has the schema
``(Tensor t0, ..., Tensor t<n-1>, int site) -> Tensor`` (``-> Tensor[]`` where the
spec does not fix one output): the tensor arguments in order, and a *call site*. A
call site is an entry of a process-wide table that holds everything the schema cannot
express: the positions of the tensors among the positional arguments,
the other positional arguments (Python scalars, ``None``) and the keyword arguments,
all passed to the kernel unchanged. Equal sites share one integer, a constant of the
graph, so a compiled function is compiled once per set of static values. Exported
programs therefore run in the process that exported them.

- fake: the declared ``shape``/``dtype`` or their callables, evaluated on fake tensors
  (symbolic sizes stay symbolic: ``dynamic=True`` compiles once); an unknown size
  raises :class:`~lazyapply.SpecError` naming the kernel.
- autograd: the declared vjp through :func:`lazyapply._grad.run_vjp` (while compiling,
  the vjp kernel is itself such an op).
- vmap: elementwise and gufunc kernels make one batched call (:mod:`._vmap`).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

import numpy as np

from lazyapply._caches import pinned
from lazyapply._errors import SpecError
from lazyapply.adapters.torch._fake import fake_outputs, run_site
from lazyapply.adapters.torch._identity import op_digest
from lazyapply.adapters.torch._sites import (
    FLOAT,
    INT,
    NUMPY,
    TENSOR,
    TOKEN,
    join_site,
    n_operands,
    site_of,
)
from lazyapply.adapters.torch._zeros import guard_zero_signs, refuse_unguarded_zeros
from lazyapply.spec import CallSpec, kernel_name
from lazyapply.spec._build import derive_spec

__all__ = ["TENSOR", "call_op", "join_site", "prepare_op", "site_of"]

_LOCK = threading.Lock()
# Pinned (never dropped): compiled graphs name the registered ops.
# op name -> (kernel, spec, op): the kernel is held so that its name stays its own.
_OPS: dict[str, tuple[Any, CallSpec, Any]] = pinned("torch: custom ops by name")
# (kernel key, spec) -> op name (the hot lookup)
_NAMED: dict[Any, str] = pinned("torch: op names by kernel and spec")


def _schema(n_in: int, single: bool) -> str:
    # One op per number of operands, so the graph passes them one by one: a
    # Tensor[] argument or result costs a compiled call as much as the rest of the
    # dispatch (boxing, the graph's list).
    tensors = ", ".join(f"Tensor t{i}" for i in range(n_in))
    return f"({tensors}, int site) -> {'Tensor' if single else 'Tensor[]'}"


def single_output(spec: CallSpec) -> bool:
    """Whether ``spec`` fixes one output (not a sequence) without calling anything.

    A constant shape or dtype beside a callable fixes the count (several outputs
    need several of each); the fake implementation checks the layout's count
    against it, so a spec read wrongly here fails loudly, never silently.
    """
    out = spec.output
    if out.multi:
        return False
    sig = spec.mode.signature
    if sig is not None:
        return len(sig.outputs) == 1
    if spec.shape_fn is None and spec.dtype_fn is None:
        return True  # declared or inferred, and not several
    return (spec.shape_fn is None and out.shapes is not None) or (
        spec.dtype_fn is None and out.dtypes is not None
    )


# ----------------------------------------------------------------------------- op
def _kernel_key(kernel: Any) -> Any:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):  # made per backward call: key on its fields
        return ("vjp", *kernel.__reduce__()[1])
    if type(kernel) is functools.partial:
        # A bound @lazy method, made per attribute access: its function and the
        # instance's identity (the op holds the partial, so the id stays its own).
        return ("partial", kernel.func, *map(id, kernel.args), *kernel.keywords)
    return kernel


def prepare_op(kernel: Any, spec: CallSpec, n_in: int) -> Any:
    """The custom op of ``kernel`` called as ``spec`` says on ``n_in`` operands
    (tensors, and numbers passed as tensors); registered once."""
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        from lazyapply.adapters.torch._grad import vjp_op_spec

        spec = vjp_op_spec(kernel, spec)
    key: Any = (_kernel_key(kernel), spec, n_in)
    name = _NAMED.get(key)
    if name is not None:
        return _OPS[name][2]
    with _LOCK:
        name = _NAMED.get(key)
        if name is None:
            name = _op_name(kernel, spec, n_in)
            if name not in _OPS:
                _OPS[name] = (kernel, spec, _register(kernel, spec, name, n_in))
            _NAMED[key] = name
    return _OPS[name][2]


def _op_name(kernel: Any, spec: CallSpec, n_in: int) -> str:
    from lazyapply._grad import VjpKernel

    if isinstance(kernel, VjpKernel):
        base = f"{getattr(kernel.rule, '__module__', '')}.{kernel.name}_vjp"
    else:
        module = getattr(kernel, "__module__", None) or type(kernel).__module__
        qualname = getattr(kernel, "__qualname__", None) or kernel_name(kernel)
        base = f"{module}.{qualname}"
    base = re.sub(r"\W+", "_", base.replace(".", "__")).strip("_") or "kernel"
    # A digest of the kernel's code, closure and defaults, its vjp's and its spec's,
    # not a counter: a graph that Inductor cached in another process names the op,
    # and must find exactly this code under that name. The schema (operands, one
    # output or a list) ends the name.
    digest = op_digest(kernel, spec)
    arity = f"{n_in}{'t' if single_output(spec) else 'l'}"
    name = f"{base}_{digest}" if digest is not None else f"{base}_p{TOKEN}"
    name = f"{name}_{arity}"
    n = 1
    # (The arity is part of every name the loop tries: a name checked without it
    # would never be found taken, and two kernels without a stable identity, say
    # one method bound to two instances, would share the first one's op.)
    while name in _OPS and not _same(_OPS[name], kernel, spec):
        # Another kernel object with the same identity (equal code and closure made
        # twice), or one without a stable identity: a name of this process only.
        n += 1
        name = f"{base}_p{TOKEN}_{n}_{arity}"
    return name


def _same(hit: tuple[Any, CallSpec, Any], kernel: Any, spec: CallSpec) -> bool:
    return _kernel_key(hit[0]) == _kernel_key(kernel) and hit[1] == spec


def _register(kernel: Any, spec: CallSpec, name: str, n_in: int) -> Any:
    import torch

    from lazyapply.adapters.torch import _grad as _torch_grad

    label = spec.name or kernel_name(kernel)
    plain = derive_spec(spec, vjp=None)
    single = single_output(spec)
    sites: dict[Any, Any] = {}  # the prepared body per call site and metadata

    def impl(*operands: Any) -> Any:
        return run_site(sites, kernel, plain, operands, single)

    def fake(*operands: Any) -> Any:
        tensors, site = operands[:-1], operands[-1]
        args, kwargs = join_site(site, tensors, "placeholder")
        shapes, dtypes, multi = fake_outputs(kernel, spec, label, args, kwargs, tensors)
        if single and (multi or len(shapes) != 1):
            msg = (
                f"{label} (torch.compile/export): the spec fixes one output, but the "
                f"layout has {len(shapes)}{' (a sequence)' if multi else ''}; this is "
                "a bug of lazyapply: please report it with the kernel's shape= and "
                "dtype="
            )
            raise SpecError(msg)
        device = tensors[0].device
        outs = [
            torch.empty(s, dtype=d, device=device)
            for s, d in zip(shapes, dtypes, strict=True)
        ]
        return outs[0] if single else outs

    op = torch.library.custom_op(
        f"lazyapply::{name}", impl, mutates_args=(), schema=_schema(n_in, single)
    )
    op.register_fake(fake)
    if spec.vjp is not None:
        _torch_grad.register_op_autograd(op, spec, prepare_op, single)
    from lazyapply.adapters.torch._vmap import register_op_vmap

    # The rules make ops of their own (the vjp's, the batched call's) with
    # prepare_op, handed to them: neither imports this module.
    register_op_vmap(op, kernel, spec, prepare_op, single)
    return op


def op_name_of(kernel: Any, spec: CallSpec, n_in: int) -> str:
    """The name (in ``torch.ops.lazyapply``) of the op of ``kernel`` and ``spec``."""
    return str(prepare_op(kernel, spec, n_in)._name)


def bound_op_name_of(
    func: Any, spec: CallSpec, n_in: int, ids: tuple[int, ...], *bound: Any
) -> str:
    """:func:`op_name_of` a bound method ``functools.partial(func, *bound)``.

    Dynamo hands a marked-constant function an object (an ``nn.Module``) only as a
    top-level argument, never inside a partial. ``ids`` are the objects' ``id()``
    taken in the traced code: that is what makes Dynamo guard the graph on their
    identity, so another instance never runs this one's op.
    """
    if ids != tuple(map(id, bound)):
        msg = f"{spec.name}: the bound instance changed while tracing"
        raise RuntimeError(msg)
    return op_name_of(functools.partial(func, *bound), spec, n_in)


def register_vjp(
    kernel: Any,
    spec: CallSpec,
    template: tuple[Any, ...],
    kwargs: dict[str, Any],
    positions: tuple[int, ...],
    n_out: int,
) -> bool:
    """Register the vjp's op and call site of a call with ``n_out`` outputs now.

    A compiled backward loaded from Inductor's cache in a new process is never
    traced, yet calls them.
    """
    if spec.vjp is not None and positions:
        from lazyapply._grad import VjpKernel

        multi = spec.output.multi or n_out > 1  # as the op's backward has it
        vjp = VjpKernel(spec.vjp, spec.name, n_out, multi, positions, len(template))
        flat = (TENSOR,) * (2 * n_out) + template
        prepare_op(vjp, spec, n_operands(flat, kwargs))
        site_of(flat, kwargs)
    return True


# Dynamo runs these at trace time and keeps their results as constants of the graph:
# registering an op or a call site cannot be traced, only done. This is what
# torch._dynamo.assume_constant_result does; set here so that torch._dynamo is not
# imported with this module.
op_name_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
bound_op_name_of._dynamo_marked_constant = True  # type: ignore[attr-defined]
register_vjp._dynamo_marked_constant = True  # type: ignore[attr-defined]


def call_op(
    torch: Any, kernel: Any, spec: CallSpec, args: tuple[Any, ...], kwargs: Any
) -> Any:
    """Call ``kernel`` through its custom op (while compiling or exporting).

    Dynamo traces this function: it imports nothing (an import breaks the graph),
    and it asks ``torch.is_tensor``, not ``isinstance(a, torch.Tensor)``: Dynamo
    reaches ``torch.Tensor`` through ``type(a)`` too (the engine's adapter lookup),
    and guards that two paths to one class still agree in Python, on every call.
    The number of outputs is what the op's fake implementation (the one metadata
    function) made.
    """
    tensors, template, kwargs = operands(torch, spec, args, kwargs)
    bound = type(kernel) is functools.partial and not kernel.keywords  # obj.method
    name = traced_op_name(kernel, spec, len(tensors))
    out = getattr(torch.ops.lazyapply, name)(*tensors, site_of(template, kwargs))
    if not guard_zero_signs():  # a float zero baked into the graph: its sign too
        refuse_unguarded_zeros(spec.name or kernel_name(kernel), args, kwargs)
    single = type(out) is not list  # the op's schema: one output, or a list
    if spec.vjp is not None:
        # Floating-point tensors: the arguments a vjp returns cotangents for.
        positions = tuple(
            i
            for i, a in enumerate(args)
            if _tensor(torch, a) and (a.is_floating_point() or a.is_complex())
        )
        n_out = 1 if single else len(out)
        # (A bound method's partial is no constant for Dynamo; the vjp's op needs
        # only the spec.)
        register_vjp(
            None if bound else kernel, spec, template, kwargs, positions, n_out
        )
    if single:
        return (out,) if spec.output.multi else out
    return tuple(out) if spec.output.multi or len(out) > 1 else out[0]


def traced_op_name(kernel: Any, spec: CallSpec, n_in: int) -> str:
    """The op's name, from traced code (a bound method: its instance passed apart)."""
    if type(kernel) is functools.partial and not kernel.keywords:  # obj.method
        ids = tuple(id(b) for b in kernel.args)  # Dynamo guards their identity
        return bound_op_name_of(kernel.func, spec, n_in, ids, *kernel.args)
    return op_name_of(kernel, spec, n_in)


def operands(
    torch: Any, spec: CallSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], tuple[Any, ...], dict[str, Any]]:
    """The op's tensors, and the template and keywords of its call site."""
    tensors: list[Any] = []
    parts: list[Any] = []
    # Python floats and ints, and NumPy scalars, go as 0-d tensors (markers in the
    # template), unless a shape or dtype callable may read their value: then they
    # stay static (a value Dynamo made symbolic cannot be: a known limit).
    numbers = spec.shape_fn is None and spec.dtype_fn is None
    device = None
    for a in args:
        if _tensor(torch, a):
            device = a.device
            break
    for a in args:
        if _tensor(torch, a):
            tensors.append(a)
            parts.append(TENSOR)
        elif numbers:
            parts.append(_numbers(torch, a, tensors, device))
        else:
            parts.append(a)
    if not numbers and torch.compiler.is_compiling():
        _refuse_traced_numpy_scalars(spec, (*parts, *kwargs.values()))
    if numbers:
        kwargs = {k: _numbers(torch, v, tensors, device) for k, v in kwargs.items()}
    return tensors, tuple(parts), kwargs


def _tensor(torch: Any, a: Any) -> bool:
    # Dynamo answers torch.is_tensor True for a NumPy scalar too (its 0-d array is
    # a tensor variable): that one is a scalar of the call.
    return bool(torch.is_tensor(a)) and not isinstance(a, np.ndarray)


def _refuse_traced_numpy_scalars(spec: CallSpec, values: tuple[Any, ...]) -> None:
    for a in values:
        for b in a if type(a) is tuple or type(a) is list else (a,):
            if isinstance(b, np.ndarray) and b.ndim == 0:
                msg = (
                    f"{spec.name or 'kernel'} (torch.compile): a NumPy scalar argument "
                    "beside a shape= or dtype= callable; Dynamo shows NumPy scalars "
                    "to compiled code as 0-d arrays whose value it does not know "
                    "while tracing (pytorch/pytorch#185815), and the callable may "
                    "read it. Pass a Python number (float(s), int(s)), or declare "
                    "shape= and dtype= without callables"
                )
                raise SpecError(msg)


def _is_number(a: Any) -> bool:
    # type(), not isinstance: bool and NumPy scalars stay static (their type is
    # part of the call); Dynamo answers float/int for a symbolic number too.
    return type(a) is float or (type(a) is int and -(2**63) <= a < 2**63)


def _numbers(torch: Any, a: Any, tensors: list[Any], device: Any) -> Any:
    """``a``, its Python numbers and NumPy scalars (at top level or in a tuple or
    list) appended to ``tensors`` as 0-d tensors and replaced by their markers."""
    if type(a) is tuple or type(a) is list:
        parts = [_number(torch, b, tensors, device) for b in a]
        return tuple(parts) if type(a) is tuple else parts
    return _number(torch, a, tensors, device)


def _number(torch: Any, a: Any, tensors: list[Any], device: Any) -> Any:
    if _is_number(a):
        tensors.append(_as_tensor(torch, a, device))
        return FLOAT if type(a) is float else INT
    if isinstance(a, np.ndarray) and a.ndim == 0:
        # Dynamo shows a NumPy scalar as a 0-d ndarray of unknown value
        # (pytorch/pytorch#185815), which a call site (a constant) cannot hold:
        # it goes as a 0-d tensor of its dtype, and the kernel gets the NumPy
        # scalar back (an eager 0-d array is a scalar of the call too).
        t = torch.as_tensor(a)
        tensors.append(t.to(device) if device is not None else t)
        return NUMPY + str(t.dtype).removeprefix("torch.")
    return a


def _as_tensor(torch: Any, a: Any, device: Any) -> Any:
    if type(a) is float:
        # A product, not scalar_tensor(a): Dynamo makes a float that changed between
        # calls symbolic, and the tensorify pass cannot keep scalar_tensor of one
        # symbolic: it specialises the value (pytorch/pytorch#138868), so every new
        # value recompiled (FailOnRecompileLimitHit under fullgraph at the ninth),
        # and through SymPy, which has no -0.0 (the op got +0.0). The pass keeps a
        # product symbolic; 1.0 * a is exact for every float, NaN and -0.0 too.
        return torch.ones((), dtype=torch.float64, device=device) * a
    return torch.scalar_tensor(a, dtype=torch.int64, device=device)
