"""Plain ``pickle`` of ``@lazy`` functions defined in a script (``__main__``).

``multiprocessing``, joblib and many user caches use plain pickle: a module-level lazy
function and a decorated method pickle by reference, and a process whose ``__main__``
lacks them (a ``dask worker`` started from the command line) gets a cloudpickle copy.
Each case runs a real script in a subprocess, since only a script has a ``__main__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._python import run_python

_SCRIPT = """
import multiprocessing
import pickle
import subprocess
import sys

import numpy as np

from lazyapply import lazy


@lazy(shape=lambda x: x.shape)  # a lambda option: plain pickle cannot send it by value
def double(x):
    return x * 2


@lazy
def countdown(x, n=2):  # names itself: its by-value copy must not recurse forever
    return x if n == 0 else countdown.eager(x + 1, n - 1)


class Model:
    def __init__(self, factor):
        self.factor = factor

    @lazy
    def apply(self, x):
        return x * self.factor


_FOREIGN = (  # a process whose __main__ does not define the kernels
    "import pickle, sys, numpy as np; f = pickle.loads(sys.stdin.buffer.read()); "
    "print(type(f).__name__, f(np.ones(2)).tolist())"
)


def foreign(data):
    done = subprocess.run(
        [sys.executable, "-c", _FOREIGN], input=data, capture_output=True, check=True
    )
    return done.stdout.decode().strip()


if __name__ == "__main__":
    x = np.ones(2)
    # By reference: the same object back.
    for obj in (double, countdown, Model.apply):
        assert pickle.loads(pickle.dumps(obj)) is obj, obj
    bound = pickle.loads(pickle.dumps(Model(3.0).apply))
    print("bound", bound(x).tolist(), bound.__func__ is Model.apply)
    # multiprocessing with spawn: the child re-imports this script as __main__.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print("spawn", pool.map(double, [x])[0].tolist(),
              pool.apply(Model(5.0).apply, (x,)).tolist())
    # Another __main__: the copy travels inside the pickle.
    print("foreign", foreign(pickle.dumps(double)))
    print("foreign", foreign(pickle.dumps(countdown)))
    import cloudpickle
    print("cloudpickle", foreign(cloudpickle.dumps(double)))
"""


def _run_script(tmp_path: Path, text: str, *args: str) -> list[str]:
    """Run ``text`` as a script (its own ``__main__``) with this checkout on the
    path; its stdout's lines."""
    script = tmp_path / "script.py"
    script.write_text(text)
    return run_python(str(script), *args, cwd=tmp_path, timeout=180).stdout.splitlines()


@pytest.mark.slow
def test_lazy_functions_of_a_script_pickle(tmp_path: Path) -> None:
    pytest.importorskip("cloudpickle")
    assert _run_script(tmp_path, _SCRIPT) == [
        "bound [3.0, 3.0] True",
        "spawn [2.0, 2.0] [5.0, 5.0]",
        "foreign LazyFunction [2.0, 2.0]",
        "foreign LazyFunction [3.0, 3.0]",
        "cloudpickle LazyFunction [2.0, 2.0]",
    ]


_CLUSTER_SCRIPT = """
import sys

import dask.array as da
import numpy as np
from distributed import Client

from lazyapply import lazy


@lazy(elementwise=True)
def double(x):
    return x * 2


class Model:
    def __init__(self, factor):
        self.factor = factor

    @lazy(elementwise=True)
    def apply(self, x):
        return x * self.factor


if __name__ == "__main__":
    x = np.arange(4.0)
    with Client(sys.argv[1]) as client:  # workers with another __main__
        a = client.submit(double, x).result()
        b = client.submit(Model(3.0).apply, x).result()
        c = client.submit(Model.apply, Model(4.0), x).result()
        graph = Model(5.0).apply(da.from_array(x, chunks=2))
        d = client.compute(graph).result()
    print(a.tolist(), b.tolist(), c.tolist(), d.tolist())
"""


@pytest.mark.slow
def test_lazy_functions_of_a_script_run_on_dask_workers(
    dask_cluster: Any, tmp_path: Path
) -> None:
    pytest.importorskip("cloudpickle")
    lines = _run_script(tmp_path, _CLUSTER_SCRIPT, dask_cluster.scheduler_address)
    assert lines[-1] == (
        "[0.0, 2.0, 4.0, 6.0] [0.0, 3.0, 6.0, 9.0] [0.0, 4.0, 8.0, 12.0] "
        "[0.0, 5.0, 10.0, 15.0]"
    )


def test_a_vjp_kernel_pickles_its_lazy_vjp_by_reference() -> None:
    # A vjp kernel runs a lazy vjp's kernel but pickles the lazy function: plain
    # pickle refuses the kernel itself (its name finds the lazy function).
    import pickle

    import numpy as np

    from lazyapply._grad_kernels import VjpKernel

    from . import kernels

    rule = VjpKernel(kernels.square.spec.vjp, "square", 1, False, (0,), 1)
    copy = pickle.loads(pickle.dumps(rule))
    x = np.linspace(0.1, 1.0, 6)
    np.testing.assert_allclose(copy(np.ones(6), x * x, x)[0], 2 * x)


def test_a_dask_graph_of_module_kernels_pickles_with_plain_pickle() -> None:
    # The graph's tasks carry the kernel, whose module name now finds the lazy
    # function, and the spec, whose shape callable is a lambda: both go by the lazy
    # function's reference ("not the same object" and "attribute lookup <lambda>"
    # before).
    import pickle

    import numpy as np

    da = pytest.importorskip("dask.array", reason="dask is not installed")

    from . import kernels

    x = da.arange(6.0, chunks=3)
    for y, want in (
        (kernels.steps(x), np.diff(np.arange(6.0))),
        (kernels.scaled_sum(x, x, scale=2.0), np.arange(6.0) * 4),
    ):
        copy = pickle.loads(pickle.dumps(y))
        np.testing.assert_array_equal(copy.compute(), want)
        np.testing.assert_array_equal(y.compute(), want)
