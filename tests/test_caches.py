"""Every store is bounded or weak, reported by cache_report, emptied by clear_caches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lazyapply import lazy, lazy_apply
from lazyapply._caches import bounded, pinned
from lazyapply.testing import cache_report, clear_caches


def test_report_lists_bounded_stores_within_their_bound() -> None:
    for i in range(600):  # more option keys than the spec cache holds
        lazy_apply(lambda x: x, np.ones(1), shape=(1,), dtype="float64", depth=i)
    report = cache_report()
    assert "spec: lazy_apply specs by option key" in report
    for name, entry in report.items():
        assert entry["maxsize"] is None or entry["size"] <= entry["maxsize"], name


def test_clear_caches_empties_every_store_and_calls_still_work() -> None:
    @lazy(shape=lambda x: x.shape, dtype="float64")
    def double(x: Any) -> Any:
        return 2 * x

    x = np.arange(3.0)
    np.testing.assert_array_equal(double(x), 2 * x)
    assert sum(e["size"] for e in cache_report().values() if not e["pinned"]) > 0
    clear_caches()
    assert sum(e["size"] for e in cache_report().values() if not e["pinned"]) == 0
    np.testing.assert_array_equal(double(x), 2 * x)
    np.testing.assert_array_equal(lazy_apply(np.negative, x), -x)


def test_bounded_dict_drops_the_oldest() -> None:
    store = bounded("test: three entries", 3)
    for i in range(5):
        store.put(i, i)
    assert sorted(store) == [2, 3, 4]
    assert "test: three entries" in cache_report()


def test_pinned_stores_are_reported_and_never_cleared() -> None:
    table = pinned("test: a table named from outside")
    table["site"] = 1
    clear_caches()
    assert table == {"site": 1}
    entry = cache_report()["test: a table named from outside"]
    assert entry == {"size": 1, "maxsize": None, "pinned": True}
    assert cache_report()["spec: lazy_apply specs by option key"]["pinned"] is False


def test_every_pinned_table_is_one_the_library_names() -> None:
    # Only tables that something outside lazyapply refers to by name are pinned;
    # everything else is a cache (bounded or weak) that clear_caches empties.
    import lazyapply.special  # noqa: F401

    names = {n for n, e in cache_report().items() if e["pinned"]}
    names.discard("test: a table named from outside")
    expected = {
        "pickling: copies of __main__ kernels",
        "special: partials of SciPy ufuncs by name",
        "special: partials registered per ufunc",
    }
    assert expected <= names
    allowed = expected | {
        "torch: custom ops by name",
        "torch: op names by kernel and spec",
        "torch: call site numbers by static key",
        "torch: call sites",
        "torch: layout ops of torch-code kernels",
        "jax native: failure tokens of handlers",
    }
    assert names <= allowed, names - allowed


def test_compiled_torch_graph_still_runs_after_clear_caches() -> None:
    # A compiled graph names its custom op and call site: clear_caches must not
    # drop them (a KeyError in the op, or a wrong site, would follow).
    torch = pytest.importorskip("torch", reason="torch is not installed")

    @lazy(as_numpy=True)
    def shifted(x: Any, by: float) -> Any:
        return np.copysign(x, by)

    f = torch.compile(lambda x: shifted(x, -0.0) + 1, fullgraph=True, backend="eager")
    x = torch.arange(1.0, 4.0, dtype=torch.float64)
    expected = np.copysign(x.numpy(), -0.0) + 1
    np.testing.assert_array_equal(f(x).numpy(), expected)
    before = {n: e["size"] for n, e in cache_report().items() if e["pinned"]}
    assert before["torch: call sites"] > 0
    clear_caches()
    after = {n: e["size"] for n, e in cache_report().items() if e["pinned"]}
    assert after == before
    np.testing.assert_array_equal(f(x).numpy(), expected)
