"""Chunk-wise modes: ``elementwise``, a gufunc ``signature``, ``depth``/``boundary``.

A mode tells lazy backends how a kernel may be split; eager backends ignore it (the
kernel runs once on the whole arrays). Everything a mode needs is parsed and validated
once, in :func:`parse_mode` (at decoration time for ``@lazy``, once per ``lazy_apply``
call otherwise); the per-call work is :func:`mode_output_shapes`, which derives the
output shapes from the arguments' shapes and checks the signature's core dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lazyapply._errors import SpecError
from lazyapply._kernels import implied_mode as infer_mode
from lazyapply.spec import CallSpec, Mode, OutputSpec, kernel_name
from lazyapply.spec._signature import (
    SIGNATURE_FORMS,
    Signature,
    check_signature_args,
    mode_output,
    mode_output_shapes,
)

__all__ = [
    "BOUNDARY_KINDS",
    "SIGNATURE_FORMS",
    "Depth",
    "Signature",
    "check_signature_args",
    "infer_mode",
    "mode_output",
    "mode_output_shapes",
    "parse_mode",
]

BOUNDARY_KINDS = ("none", "reflect", "periodic", "nearest")
# Every accepted form, spelled once, so each error message can teach all of them.
DEPTH_FORMS = (
    "an int >= 0 (the same depth on every axis, e.g. depth=1), a tuple with one "
    "depth per axis (e.g. depth=(1, 0)) or a dict {axis: depth} (e.g. depth={-1: 2}; "
    "other axes get 0)"
)
BOUNDARY_FORMS = (
    "None (no padding: the kernel's own edge handling), one of 'reflect', "
    "'periodic', 'nearest', a constant number (e.g. boundary=0.0) or a dict "
    "{axis: boundary} (e.g. boundary={0: 'periodic'}; other axes get None)"
)


@dataclass(frozen=True, slots=True)
class Depth:
    """An overlap depth: one for every axis, one per axis, or some axes by number."""

    every: int = 0
    per_axis: tuple[int, ...] | None = None
    by_axis: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def parse(cls, depth: object, name: str) -> Depth:
        if isinstance(depth, Mapping):
            pairs = tuple(
                sorted(
                    (_int(k, "axis", name), _depth(v, name)) for k, v in depth.items()
                )
            )
            return cls(by_axis=pairs)
        if isinstance(depth, (tuple, list)):
            return cls(per_axis=tuple(_depth(d, name) for d in depth))
        return cls(every=_depth(depth, name))

    def for_ndim(self, ndim: int, name: str) -> dict[int, int]:
        """The depth of every axis of an ``ndim``-dimensional array (Dask's form)."""
        if self.per_axis is not None:
            if len(self.per_axis) != ndim:
                msg = (
                    f"{name}: depth={self.per_axis} gives {len(self.per_axis)} axes "
                    f"but the arrays have {ndim}; depth must be {DEPTH_FORMS}"
                )
                raise SpecError(msg)
            return dict(enumerate(self.per_axis))
        out = dict.fromkeys(range(ndim), self.every)
        for axis, d in self.by_axis or ():
            out[_axis(axis, ndim, "depth", name)] = d
        return out


def _axis(axis: int, ndim: int, option: str, name: str) -> int:
    """``axis`` of an ``option`` dict (depth, boundary) as an index below ``ndim``."""
    if not -ndim <= axis < ndim:
        msg = (
            f"{name}: {option} names axis {axis} but the arrays have {ndim} "
            f"dimension(s); use an axis in [{-ndim}, {ndim - 1}]"
        )
        raise SpecError(msg)
    return axis % ndim


def _int(value: object, what: str, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        msg = f"{name}: {what} must be an int; got {value!r}"
        if what == "depth":  # teach every form, not just the one that was nearest
            msg = f"{name}: depth must be {DEPTH_FORMS}; got {value!r}"
        raise SpecError(msg)
    return int(value)  # type: ignore[call-overload]


def _depth(value: object, name: str) -> int:
    d = _int(value, "depth", name)
    if d < 0:
        msg = f"{name}: depth must be >= 0, got {value!r}; accepted: {DEPTH_FORMS}"
        raise SpecError(msg)
    return d


def _boundary_value(value: object, name: str) -> Any:
    if value is None:
        return "none"
    if isinstance(value, str):
        if value not in BOUNDARY_KINDS:
            msg = (
                f"{name}: unknown boundary {value!r}; boundary must be {BOUNDARY_FORMS}"
            )
            raise SpecError(msg)
        return value
    if isinstance(value, (int, float, complex)) or _is_number(value):
        return value
    msg = f"{name}: boundary must be {BOUNDARY_FORMS}; got {value!r}"
    raise SpecError(msg)


def _is_number(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.number | np.bool_)


def boundary_for_ndim(boundary: Any, ndim: int, name: str) -> dict[int, Any]:
    """Dask's per-axis boundary dict from a normalised ``Mode.boundary``."""
    if isinstance(boundary, tuple):  # ((axis, value), ...) from a dict
        out: dict[int, Any] = dict.fromkeys(range(ndim), "none")
        for axis, value in boundary:
            out[_axis(axis, ndim, "boundary", name)] = value
        return out
    return dict.fromkeys(range(ndim), "none" if boundary is None else boundary)


# -------------------------------------------------------------------------- parse_mode
def parse_mode(
    spec: CallSpec,
    func: Callable[..., Any],
    elementwise: bool = False,
    signature: str | None = None,
    depth: Any = None,
    boundary: Any = None,
) -> tuple[Mode, OutputSpec]:
    """The execution mode of these options, validated, and ``spec``'s outputs under
    it (the spec itself is made by :func:`lazyapply.spec._build.with_mode`).

    Raises
    ------
    SpecError
        Contradicting options (``elementwise`` with ``signature`` or ``depth``,
        ``signature`` with ``depth``, ``boundary`` without ``depth``), a malformed
        signature, a bad depth or boundary, or declared outputs that do not match the
        signature's outputs. Every message names the kernel.
    """
    name = spec.name or kernel_name(func)
    if not isinstance(elementwise, bool):
        msg = f"{name}: elementwise must be True or False; got {elementwise!r}"
        raise SpecError(msg)
    given = [
        opt
        for opt, on in (
            ("elementwise=True", elementwise),
            ("signature=", signature is not None),
            ("depth=", depth is not None),
        )
        if on
    ]
    if len(given) > 1:
        msg = (
            f"{name}: {' and '.join(given)} contradict each other: an elementwise "
            "kernel needs neither core dimensions nor neighbours, a gufunc's core "
            "dimensions are whole, a stencil (depth=) sees overlapping blocks; "
            "declare one of them"
        )
        raise SpecError(msg)
    if boundary is not None and depth is None:
        msg = (
            f"{name}: boundary={boundary!r} without depth=; boundary pads the overlap "
            "of a stencil kernel, so declare depth= as well (or drop boundary=)"
        )
        raise SpecError(msg)
    sig = Signature.parse(signature, name) if signature is not None else None
    norm_depth = Depth.parse(depth, name) if depth is not None else None
    norm_boundary: Any = None
    if isinstance(boundary, Mapping):
        norm_boundary = tuple(
            sorted(
                (_int(k, "boundary axis", name), _boundary_value(v, name))
                for k, v in boundary.items()
            )
        )
    elif boundary is not None:
        norm_boundary = _boundary_value(boundary, name)
        if norm_boundary == "none":
            norm_boundary = None
    output = mode_output(sig, spec.output, name)
    return Mode(elementwise, sig, norm_depth, norm_boundary), output
