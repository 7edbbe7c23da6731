"""Every store is bounded or weak, reported by cache_report, emptied by clear_caches."""

from __future__ import annotations

from typing import Any

import numpy as np

from lazyapply import lazy, lazy_apply
from lazyapply._caches import bounded
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
    assert sum(e["size"] for e in cache_report().values()) > 0
    clear_caches()
    assert sum(e["size"] for e in cache_report().values()) == 0
    np.testing.assert_array_equal(double(x), 2 * x)
    np.testing.assert_array_equal(lazy_apply(np.negative, x), -x)


def test_bounded_dict_drops_the_oldest() -> None:
    store = bounded("test: three entries", 3)
    for i in range(5):
        store.put(i, i)
    assert sorted(store) == [2, 3, 4]
    assert "test: three entries" in cache_report()
