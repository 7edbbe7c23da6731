"""SciPy's own tests of its ``lazy_apply`` callers, with lazyapply swapped in.

SciPy vendors array-api-extra and calls ``xpx.lazy_apply`` from ten functions of
``scipy.cluster.hierarchy`` and from ``scipy.spatial.distance.pdist``. The test files
ship inside the installed SciPy; they run here unchanged in a pytest subprocess with
``scipy._lib.array_api_extra.lazy_apply`` replaced by lazyapply's (counted, to prove the
swap was live). ``SCIPY_ARRAY_API=1`` makes SciPy's conftest test every installed array
backend (a JSON list such as ``["numpy"]`` selects some: SciPy's ``spin test -b``
sets the same variable).

Every test that fails with lazyapply is run again with SciPy's own copy: it must fail
there too (so every test that passes with SciPy's copy passes with lazyapply's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._suite import SuiteResult, run_suite

pytest.importorskip("scipy", reason="SciPy is not installed")

# JAX-only validation tests that spend ~1 min compiling jit variants of functions
# that never reach lazy_apply (num_obs_linkage, is_valid_linkage on 4..n points).
_SLOW_JAX = "not (jax and (num_obs_linkage or is_valid_linkage_4_and_up))"


def _run(target: str, backends: str, tmp_path: Path, extra: list[str]) -> SuiteResult:
    args = ["--pyargs", target, "-n", "2", *extra]
    env = {"SCIPY_ARRAY_API": backends}
    result = run_suite(
        args, cwd=tmp_path, swap="scipy", tmp_path=tmp_path, extra_env=env
    )
    assert result.outcomes, result.output[-4000:]
    assert result.calls > 0, "the swap was not live: no call reached lazyapply"
    if result.failed_ids:
        # The same tests with SciPy's own lazy_apply: each must fail there too.
        baseline = run_suite(
            [*result.failed_ids, "-n", "2"],
            cwd=tmp_path,
            swap="none",
            baseline="scipy",
            tmp_path=tmp_path,
            extra_env=env,
        )
        assert baseline.calls > 0
        passes_with_scipy = sorted(set(result.failed_ids) - set(baseline.failed_ids))
        assert not passes_with_scipy, (
            f"{len(passes_with_scipy)} test(s) pass with SciPy's lazy_apply and fail "
            f"with lazyapply's: {passes_with_scipy[:20]}\n{result.output[-6000:]}"
        )
    return result


@pytest.mark.slow
def test_scipy_cluster_hierarchy_every_backend(tmp_path: Path) -> None:
    result = _run(
        "scipy.cluster.tests.test_hierarchy", "1", tmp_path, ["-k", _SLOW_JAX]
    )
    params = {k.rsplit("[", 1)[-1] for k in result.ids("passed")}
    for name in ("numpy", "array_api_strict", "torch", "jax.numpy", "dask.array"):
        if _installed(name.split(".")[0]):  # every installed backend was tested
            assert any(name in p for p in params), (name, result.summary())


@pytest.mark.slow
def test_scipy_spatial_distance_numpy(tmp_path: Path) -> None:
    result = _run("scipy.spatial.tests.test_distance", '["numpy"]', tmp_path, [])
    assert len(result.ids("passed")) > 100, result.summary()


def _installed(lib: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(lib) is not None
