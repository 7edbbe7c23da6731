"""``lazy_apply``'s keywords and ``@lazy``'s option names.

:func:`kernel_keywords` splits ``lazy_apply``'s keywords into its options and the
kernel's own keywords (a kernel parameter named like an option takes it, as
``array_api_extra.lazy_apply`` passes it); :func:`check_names` refuses an option
``@lazy`` does not know. Both run before :mod:`lazyapply.spec._build` makes the
spec (which imports :data:`DEFAULTS` from here).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

from lazyapply._caches import bounded, weak
from lazyapply.spec import kernel_name

__all__ = ["DEFAULTS", "KERNEL_FIRST", "check_names", "kernel_keywords"]

#: The options ``@lazy`` accepts, with its defaults.
DEFAULTS: Mapping[str, Any] = types.MappingProxyType(
    {
        "shape": None,
        "dtype": None,
        "as_numpy": False,
        "xp": None,
        "elementwise": False,
        "signature": None,
        "depth": None,
        "boundary": None,
        "strict": True,
        "vjp": None,
        "jvp": None,
    }
)

#: ``lazy_apply`` options that a kernel parameter of the same name takes over.
KERNEL_FIRST = frozenset(
    ("elementwise", "signature", "depth", "boundary", "strict", "vjp", "jvp")
)

_PARAMS = weak("spec: kernel parameter names (lazy_apply keywords)")
_PARAMS_STRONG = bounded("spec: kernel parameter names (no weakref)", 256)


def _parameters(func: Callable[..., Any]) -> frozenset[str]:
    """The names ``func`` takes as keywords (cached per kernel object)."""
    last = _LAST_PARAMS[0]
    if last[0] is func:  # the same kernel again: no weak reference to make
        return last[1]
    names = _find_parameters(func)
    _LAST_PARAMS[0] = (func, names)
    return names


_LAST_PARAMS: list[tuple[Any, frozenset[str]]] = [(None, frozenset())]


def _find_parameters(func: Callable[..., Any]) -> frozenset[str]:
    try:
        names = _PARAMS.get(func)
        store: Any = _PARAMS
    except TypeError:  # not weakly referenceable (a ufunc), or unhashable
        try:
            names, store = _PARAMS_STRONG.get(func), _PARAMS_STRONG
        except TypeError:
            names, store = None, None
    if names is None:
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):  # no signature (some builtins): none known
            names = frozenset()
        else:
            names = frozenset(
                p.name
                for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )
        if store is _PARAMS:
            _PARAMS[func] = names
        elif store is not None:
            store.put(func, names)
    return names


def kernel_keywords(
    func: Callable[..., Any], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``lazy_apply``'s keywords into (options, the kernel's keywords).

    A name of :data:`KERNEL_FIRST` goes to the kernel when the kernel has a
    parameter of that name (as ``array_api_extra.lazy_apply`` passes it); otherwise,
    even to a kernel with ``**kwargs``, it is ``lazy_apply``'s option.
    """
    params = _parameters(func)
    if params.isdisjoint(kwargs) and KERNEL_FIRST.issuperset(kwargs):
        return kwargs, {}  # only options (a fresh dict per call: ours to keep)
    options = {}
    rest = {}
    for key, value in kwargs.items():
        if key in KERNEL_FIRST and key not in params:
            options[key] = value
        else:
            rest[key] = value
    return options, rest


def check_names(options: Mapping[str, Any], kernel: Callable[..., Any] | None) -> None:
    """Refuse options ``@lazy`` does not know, listing the valid ones."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        where = "" if kernel is None else f" for {kernel_name(kernel)}"
        msg = (
            f"lazy: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}{where}; valid options are "
            f"{', '.join(DEFAULTS)} (keyword-only)"
        )
        raise TypeError(msg)
