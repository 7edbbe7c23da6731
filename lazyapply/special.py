"""Declared derivatives of SciPy's special functions: ``jax.grad`` out of the box.

Each entry gives the partial derivatives of a ``scipy.special`` ufunc, written with
other special functions, as ``partials(out, *args)``; lazyapply turns them into the
kernel's vjp (``g * d``, summed over broadcast axes) and jvp (``sum(t * d)``), so
``lazy(scipy.special.erf)`` is differentiable under ``jax.grad``, ``jax.jvp`` and torch
autograd, with no declaration. A partial that SciPy has no closed form for (the
order of a Bessel function, ``a`` of ``gammainc``) is NaN: such a gradient is visibly
not a number, never a wrong one. A user's own ``defvjp``/``defjvp`` (or ``vjp=``)
replaces the entry; :func:`register` adds one for any ufunc.

Importing this module imports neither SciPy nor NumPy: the formulas import them when
they run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lazyapply._caches import pinned

__all__ = ["declared", "declared_rules", "register"]

Partials = Callable[..., tuple[Any, ...]]
# Registrations (SciPy's formulas, the user's own), not caches: never dropped.
_BY_NAME: dict[str, Partials] = pinned("special: partials of SciPy ufuncs by name")
_BY_UFUNC: dict[Any, Partials] = pinned("special: partials registered per ufunc")


def register(ufunc: Any, partials: Partials) -> None:
    """Declare ``partials(out, *args) -> (d out / d arg, ...)`` for ``ufunc``.

    A partial may be ``None`` for an argument that is not differentiable (an
    integer order). Every ``lazy(ufunc)`` and ``lazy_apply(ufunc, ...)`` made later
    gets the derived vjp and jvp.
    """
    _BY_UFUNC[ufunc] = partials


def declared(ufunc: Any) -> Partials | None:
    """The partials registered for ``ufunc`` (by object, or SciPy's by name)."""
    found = _BY_UFUNC.get(ufunc)
    if found is not None:
        return found
    import sys

    special = sys.modules.get("scipy.special")
    name = getattr(ufunc, "__name__", "")
    if special is not None and getattr(special, name, None) is ufunc:
        return _BY_NAME.get(name)
    return None


def declared_rules(kernel: Any) -> dict[str, Any] | None:
    """The vjp and jvp of ``kernel``'s declared partials (``None``: none declared),
    as the spec builder's changes (:func:`lazyapply.spec._build.derive_spec`)."""
    partials = declared(kernel)
    if partials is None:
        return None
    return {"vjp": _Vjp(partials), "jvp": _Jvp(partials)}


def _unbroadcast(ct: Any, like: Any) -> Any:
    """``ct`` summed down to ``like``'s shape and cast to its dtype."""
    import numpy as np

    ct = np.asarray(ct)
    shape = np.shape(like)
    while ct.ndim > len(shape):
        ct = ct.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and ct.shape[axis] != 1:
            ct = ct.sum(axis=axis, keepdims=True)
    if ct.shape != tuple(shape):
        # A copy: broadcast_to's view is read-only, and torch warns on (and cannot
        # write into) a tensor made from a read-only array.
        ct = np.broadcast_to(ct, shape).copy()
    return np.asarray(ct, dtype=like.dtype)


def _host(a: Any) -> Any:
    """NumPy arrays (the kernel may run with ``as_numpy=False``); scalars as given."""
    import numpy as np

    return np.asarray(a) if hasattr(a, "dtype") else a


def _differentiable(a: Any) -> bool:
    import numpy as np

    return hasattr(a, "dtype") and np.dtype(a.dtype).kind in "fc"


class _Vjp:
    """``vjp(g, out, *args)`` from partials (picklable: Dask may ship it)."""

    def __init__(self, partials: Partials) -> None:
        self.partials = partials

    def __call__(self, g: Any, out: Any, *args: Any) -> tuple[Any, ...]:
        g, out, args = _host(g), _host(out), tuple(map(_host, args))
        d = self.partials(out, *args)
        return tuple(
            _unbroadcast(g * p, a) if p is not None and _differentiable(a) else None
            for p, a in zip(d, args, strict=True)
        )


class _Jvp:
    """``jvp(tangents, out, *args)`` from partials."""

    def __init__(self, partials: Partials) -> None:
        self.partials = partials

    def __call__(self, tangents: Any, out: Any, *args: Any) -> Any:
        import numpy as np

        out, args = _host(out), tuple(map(_host, args))
        d = self.partials(out, *args)
        total: Any = np.zeros_like(out)
        for t, p in zip(tangents, d, strict=True):
            if t is not None and p is not None:
                total = total + _host(t) * p
        return np.asarray(total, dtype=out.dtype)


def _entry(name: str) -> Callable[[Partials], Partials]:
    def add(partials: Partials) -> Partials:
        _BY_NAME[name] = partials
        return partials

    return add


def _sc() -> Any:
    import scipy.special  # type: ignore[import-untyped]

    return scipy.special


def _np() -> Any:
    import numpy

    return numpy


_R2PI = 1 / math.sqrt(2 * math.pi)
_2RPI = 2 / math.sqrt(math.pi)
_RPI2 = math.sqrt(math.pi) / 2


def _x_over(value: Any, x: Any, at_zero: float) -> Any:
    """``value / x``, and ``at_zero`` where ``x == 0`` (the limit of the formula)."""
    np = _np()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, at_zero, value / np.where(x == 0, 1, x))


def _i1_prime(o: Any, x: Any) -> Any:
    # I1'(x) = I0(x) - I1(x)/x, with the limit 1/2 at x = 0
    return _np().where(x == 0, 0.5, _sc().i0(x) - _x_over(o, x, 0.0))


def _i1e_prime(o: Any, x: Any) -> Any:
    # d/dx [exp(-|x|) I1(x)] = I0e(x) - I1e(x) (sign(x) + 1/x), 1/2 at x = 0
    np = _np()
    return np.where(x == 0, 0.5, _sc().i0e(x) - np.sign(x) * o - _x_over(o, x, 0.0))


# fmt: off
_ONE_ARG: dict[str, Callable[[Any, Any], Any]] = {
    "erf": lambda o, x: _2RPI * _np().exp(-x * x),
    "erfc": lambda o, x: -_2RPI * _np().exp(-x * x),
    "erfcx": lambda o, x: 2 * x * o - _2RPI,
    "erfi": lambda o, x: _2RPI * _np().exp(x * x),
    "dawsn": lambda o, x: 1 - 2 * x * o,
    "erfinv": lambda o, x: _RPI2 * _np().exp(o * o),
    "erfcinv": lambda o, x: -_RPI2 * _np().exp(o * o),
    "ndtr": lambda o, x: _R2PI * _np().exp(-x * x / 2),
    "log_ndtr": lambda o, x: _R2PI * _np().exp(-x * x / 2 - o),
    "ndtri": lambda o, x: _np().exp(o * o / 2) / _R2PI,
    "gammaln": lambda o, x: _sc().psi(x),
    "loggamma": lambda o, x: _sc().psi(x),
    "gamma": lambda o, x: o * _sc().psi(x),
    "rgamma": lambda o, x: -o * _sc().psi(x),
    "psi": lambda o, x: _sc().polygamma(1, x),
    "expit": lambda o, x: o * (1 - o),
    "logit": lambda o, x: 1 / (x * (1 - x)),
    "log_expit": lambda o, x: _sc().expit(-x),
    "expm1": lambda o, x: o + 1,
    "log1p": lambda o, x: 1 / (1 + x),
    "exp2": lambda o, x: math.log(2) * o,
    "exp10": lambda o, x: math.log(10) * o,
    "cbrt": lambda o, x: 1 / (3 * o * o),
    "entr": lambda o, x: -_np().log(x) - 1,
    "i0": lambda o, x: _sc().i1(x),
    "i0e": lambda o, x: _sc().i1e(x) - _np().sign(x) * o,
    "i1": _i1_prime,
    "i1e": _i1e_prime,
    "j0": lambda o, x: -_sc().j1(x),
    "j1": lambda o, x: _np().where(x == 0, 0.5, _sc().j0(x) - _x_over(o, x, 0.0)),
    "y0": lambda o, x: -_sc().y1(x),
    "y1": lambda o, x: _sc().y0(x) - o / x,
    "k0": lambda o, x: -_sc().k1(x),
    "k0e": lambda o, x: o - _sc().k1e(x),
    "k1": lambda o, x: -_sc().k0(x) - o / x,
    "k1e": lambda o, x: o * (1 - 1 / x) - _sc().k0e(x),
    "ellipk": lambda o, m: _np().where(
        m == 0, math.pi / 8,
        (_sc().ellipe(m) - (1 - m) * o) / _np().where(m == 0, 1, 2 * m * (1 - m)),
    ),
    "ellipe": lambda o, m: _np().where(
        m == 0, -math.pi / 8, (o - _sc().ellipk(m)) / _np().where(m == 0, 1, 2 * m)
    ),
    "expi": lambda o, x: _np().exp(x) / x,
    "exp1": lambda o, x: -_np().exp(-x) / x,
    "sindg": lambda o, x: math.pi / 180 * _sc().cosdg(x),
    "cosdg": lambda o, x: -math.pi / 180 * _sc().sindg(x),
}
# fmt: on


for _name, _f in _ONE_ARG.items():
    _entry(_name)(lambda o, x, _f=_f: (_f(o, x),))


@_entry("xlogy")
def _xlogy(o: Any, x: Any, y: Any) -> tuple[Any, ...]:
    np = _np()
    return np.log(y) + 0 * x, x / y


@_entry("xlog1py")
def _xlog1py(o: Any, x: Any, y: Any) -> tuple[Any, ...]:
    np = _np()
    return np.log1p(y) + 0 * x, x / (1 + y)


@_entry("rel_entr")
def _rel_entr(o: Any, x: Any, y: Any) -> tuple[Any, ...]:
    np = _np()
    return np.log(x / y) + 1, -x / y


@_entry("kl_div")
def _kl_div(o: Any, x: Any, y: Any) -> tuple[Any, ...]:
    np = _np()
    return np.log(x / y), 1 - x / y


@_entry("betaln")
def _betaln(o: Any, a: Any, b: Any) -> tuple[Any, ...]:
    psi = _sc().psi
    return psi(a) - psi(a + b), psi(b) - psi(a + b)


@_entry("beta")
def _beta(o: Any, a: Any, b: Any) -> tuple[Any, ...]:
    da, db = _betaln(o, a, b)
    return o * da, o * db


@_entry("poch")
def _poch(o: Any, z: Any, m: Any) -> tuple[Any, ...]:
    psi = _sc().psi
    return o * (psi(z + m) - psi(z)), o * psi(z + m)


@_entry("gammainc")
def _gammainc(o: Any, a: Any, x: Any) -> tuple[Any, ...]:
    np = _np()
    dx = np.exp((a - 1) * np.log(x) - x - _sc().gammaln(a))
    return np.full_like(o, np.nan), dx


@_entry("gammaincc")
def _gammaincc(o: Any, a: Any, x: Any) -> tuple[Any, ...]:
    nan, dx = _gammainc(o, a, x)
    return nan, -dx


def _bessel(name: str, sign_minus: float, sign_plus: float) -> None:
    # Z_v'(x) = (s- Z_{v-1}(x) + s+ Z_{v+1}(x)) / 2; no closed form in v: NaN
    def partials(o: Any, v: Any, x: Any) -> tuple[Any, ...]:
        np = _np()
        f = getattr(_sc(), name)
        dx = (sign_minus * f(v - 1, x) + sign_plus * f(v + 1, x)) / 2
        return np.full_like(o, np.nan), dx

    _entry(name)(partials)


_bessel("jv", 1.0, -1.0)
_bessel("yv", 1.0, -1.0)
_bessel("iv", 1.0, 1.0)
_bessel("kv", -1.0, -1.0)


@_entry("ellipeinc")
def _ellipeinc(o: Any, phi: Any, m: Any) -> tuple[Any, ...]:
    np = _np()
    dphi = np.sqrt(1 - m * np.sin(phi) ** 2)
    dm = _x_over((o - _sc().ellipkinc(phi, m)) / 2, m, np.nan)
    return dphi, dm
