"""Gufunc signatures: parsing, matching arguments, and the output shapes they give.

A :class:`Signature` is parsed once (``parse_mode``); per call,
:func:`mode_output_shapes` derives every chunk-wise call's output shapes (loop
dimensions, then core dimensions) from the arguments' shapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lazyapply._errors import SpecError
from lazyapply.spec import Mode, OutputSpec, Shape

__all__ = [
    "SIGNATURE_FORMS",
    "Signature",
    "check_signature_args",
    "mode_output",
    "mode_output_shapes",
]

SIGNATURE_FORMS = (
    "a string in NumPy gufunc syntax: comma-separated parenthesised core dimensions "
    "on each side of '->', named or fixed sizes, e.g. '(n),(n)->()', "
    "'(m,n),(n,p)->(m,p)', '(3)->()' or '(n)->(),()' (two outputs)"
)

_DIM = r"\s*(?:[A-Za-z_]\w*|\d+)\s*"
_TUPLE = rf"\(\s*(?:{_DIM}(?:,{_DIM})*)?,?\s*\)"
_SIDE = rf"{_TUPLE}(?:\s*,\s*{_TUPLE})*"
_SIGNATURE = re.compile(rf"^\s*(?P<ins>{_SIDE})\s*->\s*(?P<outs>{_SIDE})\s*$")
_DIMS = re.compile(r"\(([^()]*)\)")


# --------------------------------------------------------------------------- signature
@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed NumPy generalised-ufunc signature such as ``"(m,n),(n,p)->(m,p)"``.

    ``inputs``/``outputs`` hold the core dimension names of each argument/output; a
    name made of digits is a fixed size (``"()->(3)"``).
    """

    text: str
    inputs: tuple[tuple[str, ...], ...]
    outputs: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: object, name: str) -> Signature:
        if not isinstance(text, str):
            msg = f"{name}: signature must be {SIGNATURE_FORMS}; got {text!r}"
            raise SpecError(msg)
        if "?" in text:
            msg = (
                f"{name}: signature {text!r} uses optional core dimensions ('?'), "
                "which are not supported; write one signature per case"
            )
            raise SpecError(msg)
        match = _SIGNATURE.match(text)
        if match is None:
            msg = f"{name}: malformed signature {text!r}; expected {SIGNATURE_FORMS}"
            raise SpecError(msg)
        inputs = _side(match["ins"])
        outputs = _side(match["outs"])
        return cls(text.strip(), inputs, outputs)

    @property
    def new_dims(self) -> frozenset[str]:
        """Output core dimensions found in no input (their sizes come from shape=)."""
        known = {d for dims in self.inputs for d in dims}
        return frozenset(
            d
            for dims in self.outputs
            for d in dims
            if d not in known and not d.isdigit()
        )

    def __str__(self) -> str:
        return self.text


def _side(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(d.strip() for d in group.split(",") if d.strip())
        for group in _DIMS.findall(text)
    )


def check_signature_args(
    sig: Signature, shapes: Sequence[Shape], name: str, backend: str
) -> tuple[dict[str, int | None], tuple[int, ...]]:
    """Match the arguments' shapes to ``sig``: core sizes and each loop rank.

    Raises :class:`SpecError` when the number of arguments, a rank or a core size does
    not match the signature.
    """
    where = f"{name} ({backend}): signature {sig.text!r}"
    if len(shapes) != len(sig.inputs):
        msg = (
            f"{where} has {len(sig.inputs)} input(s) but the kernel got {len(shapes)} "
            "positional argument(s); the signature lists every positional argument "
            "(write '()' for a scalar one)"
        )
        raise SpecError(msg)
    sizes: dict[str, int | None] = {}
    seen: dict[str, int] = {}
    loop_ndims = []
    for i, (shape, dims) in enumerate(zip(shapes, sig.inputs, strict=True)):
        if len(shape) < len(dims):
            msg = (
                f"{where}: argument {i} has shape {tuple(shape)}, expected at "
                f"least {len(dims)} dimension(s) for its core dimensions "
                f"({', '.join(dims)}); fix the signature or the argument"
            )
            raise SpecError(msg)
        core = shape[len(shape) - len(dims) :]
        for d, size in zip(dims, core, strict=True):
            if d.isdigit():
                if size is not None and size != int(d):
                    msg = (
                        f"{where}: argument {i} has shape {tuple(shape)}; its core "
                        f"dimension of fixed size {d} is {size}"
                    )
                    raise SpecError(msg)
                continue
            prev = sizes.get(d)
            if prev is not None and size is not None and prev != size:
                msg = (
                    f"{where}: core dimension {d!r} is {size} in argument {i} "
                    f"(shape {tuple(shape)}) but {prev} in argument {seen[d]}; core "
                    "dimensions with one name must have one size"
                )
                raise SpecError(msg)
            if prev is None:
                sizes[d] = size
                seen.setdefault(d, i)
        loop_ndims.append(len(shape) - len(dims))
    return sizes, tuple(loop_ndims)


def mode_output(sig: Signature | None, output: OutputSpec, name: str) -> OutputSpec:
    """Reconcile declared outputs with a signature's number of outputs."""
    if sig is None:
        return output
    nout = len(sig.outputs)
    if output.shapes is not None:
        if len(output.shapes) != nout:
            msg = (
                f"{name}: signature {sig.text!r} has {nout} output(s) but shape= "
                f"declares {len(output.shapes)}; declare one shape per output"
            )
            raise SpecError(msg)
        return output
    dtypes = output.dtypes
    if nout == 1:
        if dtypes is not None and len(dtypes) != 1:
            msg = (
                f"{name}: signature {sig.text!r} has 1 output but dtype= declares "
                f"{len(dtypes)}; declare one dtype"
            )
            raise SpecError(msg)
        return OutputSpec(None, dtypes, False) if output.multi else output
    if dtypes is not None and len(dtypes) == 1:
        dtypes = dtypes * nout  # one dtype for every output
    if dtypes is not None and len(dtypes) != nout:
        msg = (
            f"{name}: signature {sig.text!r} has {nout} outputs but dtype= declares "
            f"{len(dtypes)}; declare one dtype, or one per output"
        )
        raise SpecError(msg)
    return OutputSpec(None, dtypes, True)


def mode_output_shapes(
    mode: Mode,
    output: OutputSpec,
    shapes: Sequence[Shape],
    name: str,
    backend: str,
) -> tuple[tuple[Shape, ...], tuple[int, ...], tuple[Shape, ...]]:
    """Output shapes of a chunk-wise call, from the arguments' shapes.

    ``shapes`` has one entry per positional argument (``()`` for a scalar or
    ``None``). Returns ``(output_shapes, loop_ndims, core_shapes)``: the full output
    shapes, each argument's number of loop dimensions, and each output's core shape
    (``()`` for elementwise and stencil kernels).
    """
    from lazyapply.spec import broadcast_shapes

    sig: Signature | None = mode.signature
    output = mode_output(sig, output, name)
    if sig is None:
        loop_ndims = tuple(len(s) for s in shapes)
        sizes: dict[str, int | None] = {}
        out_dims: tuple[tuple[str, ...], ...] = ((),) * (
            len(output.shapes) if output.shapes is not None else 1
        )
    else:
        sizes, loop_ndims = check_signature_args(sig, shapes, name, backend)
        out_dims = sig.outputs
    loops = [tuple(s[:n]) for s, n in zip(shapes, loop_ndims, strict=True)]
    try:
        loop = broadcast_shapes(loops, name) if loops else ()
    except SpecError:
        what = "loop dimensions" if sig is not None else "input shapes"
        msg = (
            f"{name} ({backend}): the {what} {', '.join(map(str, loops))} cannot be "
            "broadcast together"
        )
        raise SpecError(msg) from None
    out: list[Shape] = []
    for i, dims in enumerate(out_dims):
        declared = output.shapes[i] if output.shapes is not None else None
        out.append(_output_shape(i, dims, declared, sizes, loop, mode, name, backend))
    return tuple(out), loop_ndims, tuple(o[len(loop) :] for o in out)


def _output_shape(
    i: int,
    dims: tuple[str, ...],
    declared: Shape | None,
    sizes: dict[str, int | None],
    loop: Shape,
    mode: Mode,
    name: str,
    backend: str,
) -> Shape:
    """Output ``i``'s full shape: loop dimensions, then its core dimensions."""
    sig: Signature | None = mode.signature
    new_dims = sig.new_dims if sig is not None else frozenset()
    if declared is not None and sig is not None and len(declared) == len(dims):
        declared = loop + tuple(declared)  # only the core dimensions were given
    core = [int(d) if d.isdigit() else sizes.get(d) for d in dims]
    if declared is not None and len(declared) == len(loop) + len(dims):
        given = declared[len(loop) :]
        core = [g if c is None else c for c, g in zip(core, given, strict=True)]
    for d, size in zip(dims, core, strict=True):
        if size is None and d in new_dims:
            msg = (
                f"{name} ({backend}): signature {mode.signature}: output core "
                f"dimension {d!r} appears in no input; declare its size with "
                "shape= (the output's full shape, or only its core dimensions)"
            )
            raise SpecError(msg)
    expected = loop + tuple(core)
    if declared is None:
        return expected
    if not _compatible(declared, expected):
        kind = (
            f"signature {sig.text!r} and the arguments"
            if sig is not None
            else "the broadcast of the inputs (an elementwise or stencil "
            "kernel returns one value per input element)"
        )
        msg = (
            f"{name} ({backend}): declared output {i} shape {tuple(declared)} "
            f"does not match {expected} given by {kind}; fix shape= or drop it"
        )
        raise SpecError(msg)
    return tuple(g if e is None else e for e, g in zip(expected, declared, strict=True))


def _compatible(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )
