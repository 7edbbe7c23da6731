"""The shared test fixtures over the public vocabulary of ``lazyapply.testing``.

A behaviour test is written once against ``backend`` and runs on every installed
library: NumPy (writeable and read-only), array-api-strict (CPU and an extra device),
torch (CPU and ``meta``), sparse, JAX (eager and inside ``jax.jit``) and Dask, with
CuPy and CUDA torch on GPU machines. A library that is not installed is a skip with
the reason; ``skip_backend``/``xfail_backend`` markers name deliberate exclusions.

``backend.call(f, *arrays, **static)`` runs ``f`` the way the backend's users would:
inside ``jax.jit`` for ``JAX_JIT`` (statics closed over), and for Dask it asserts that
nothing was computed while ``f`` built the graph.
"""

from __future__ import annotations

from typing import Any

import pytest

# The vocabulary is public (lazyapply.testing); tests import it from here or there.
from lazyapply.testing import Backend, count_dask_computes, cuda_available
from tests._path_case import PATH_PARAMS, PathCase

__all__ = ["ALL_BACKENDS", "Backend", "count_dask_computes"]

# A test over ``backend`` that passes without an assertion fails (tests/_assertions.py);
# a test that starts a process or compiles with torch and is not marked slow fails
# (tests/_slow.py). pytester runs both checks on themselves (test_assertion_check.py,
# test_slow_marks.py).
pytest_plugins = ["tests._assertions", "tests._slow", "pytester"]


ALL_BACKENDS = list(Backend)


def _apply_markers(request: pytest.FixtureRequest, elem: Backend) -> None:
    for marker in request.node.iter_markers("skip_backend"):
        if elem in marker.args:
            pytest.skip(f"{elem}: {marker.kwargs.get('reason', 'skipped')}")
    for marker in request.node.iter_markers("xfail_backend"):
        if elem in marker.args:
            request.applymarker(
                pytest.mark.xfail(
                    reason=f"{elem}: {marker.kwargs['reason']}",
                    strict=marker.kwargs.get("strict", True),
                )
            )


@pytest.fixture(params=[b.pytest_param() for b in Backend])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every backend and mode; skipped with the reason where it is not installed."""
    elem: Backend = request.param
    reason = elem.skip_reason()
    if reason is not None:
        pytest.skip(f"{elem}: {reason}")
    _apply_markers(request, elem)
    return elem


@pytest.fixture(params=PATH_PARAMS)
def path(request: pytest.FixtureRequest) -> Any:
    """Every path of ``lazyapply.testing.PATHS`` on every backend it takes.

    Skipped with the reason where the backend or a module the path needs is missing;
    ``torch.compile`` cases are marked ``slow`` and reset dynamo afterwards (what one
    compile leaves behind can break the next kernel's: tests/test_paths.py).
    """
    case: PathCase = request.param
    reason = case.path.skip_reason(case.backend)
    if reason is not None:
        pytest.skip(reason)
    _apply_markers(request, case.backend)
    for marker in request.node.iter_markers("xfail_path"):
        if case.path.name in marker.args:
            reason = f"{case}: {marker.kwargs['reason']}"
            run = marker.kwargs.get("run", True)
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True, run=run))
    yield case
    if case.path.name == "torch compile":
        import torch

        torch._dynamo.reset()


@pytest.fixture
def xp(backend: Backend) -> Any:
    """The backend's array namespace."""
    return backend.xp


@pytest.fixture(scope="session")
def dask_cluster() -> Any:
    """A real ``dask.distributed`` cluster: two worker processes on loopback.

    The dashboard is off; the scheduler's own health/metrics HTTP server still binds a
    port (distributed always starts it, trying 8787 first), so the "port in use"
    warning that a second xdist worker gets is expected and silenced here.
    """
    import warnings

    distributed = pytest.importorskip(
        "distributed", reason="distributed is not installed"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def client(dask_cluster: Any) -> Any:
    """A client of the shared cluster, the default scheduler only inside the test."""
    import distributed

    with distributed.Client(dask_cluster) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "skip_backend(*backends, reason): skip these backends, with a reason"
    )
    config.addinivalue_line(
        "markers", "xfail_backend(*backends, reason, strict=True): expected failure"
    )
    config.addinivalue_line(
        "markers",
        "xfail_path(*path_names, reason, run=True): expected failure on these paths",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (CuPy or CUDA torch)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
