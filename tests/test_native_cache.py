"""The native path's disk cache, in fresh processes with their own cache folders.

Each test writes a kernel module into a temporary folder and runs a script in a new
Python process with ``LAZYAPPLY_CACHE_DIR`` set; the script prints the result and
:func:`lazyapply.explain_native`, whose note says whether the native code was compiled
or loaded from the disk cache. Values are checked against NumPy in every process.
Timings are not asserted here (``python -m benchmarks --section native``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lazyapply.adapters.jax.native._cache import cache_root

pytest.importorskip("jax", reason="jax is not installed")
pytest.importorskip("numba", reason="numba is not installed")

ROOT = Path(__file__).resolve().parents[1]

KERNEL = """
import numba
import numpy as np

@numba.njit
def kernel(x):
    return np.sin(x) * {scale} + 1.0
"""

SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from lazyapply import explain_native, lazy_apply
sys.path.insert(0, {folder!r})
from kmod import kernel
x = jnp.linspace(0.0, 1.0, 11)
out = jax.jit(lambda a: lazy_apply(kernel, a, as_numpy=True))(x)
print(json.dumps({{"out": np.asarray(out).tolist(), "how": explain_native(kernel)}}))
"""


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["LAZYAPPLY_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(ROOT)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _setup(tmp_path: Path, scale: float = 2.0) -> tuple[Path, Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "kmod.py").write_text(KERNEL.format(scale=scale))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(folder=str(folder)))
    return script, tmp_path / "cache"


def _start(script: Path, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], scale: float = 2.0) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    import numpy as np

    expected = np.sin(np.linspace(0.0, 1.0, 11, dtype=np.float32)) * scale + 1.0
    np.testing.assert_allclose(result["out"], expected, rtol=1e-5)
    how: str = result["how"]
    assert how.startswith("native: "), how
    return how


def _run(script: Path, cache: Path, scale: float = 2.0) -> str:
    return _finish(_start(script, cache), scale)


@pytest.mark.slow
def test_second_process_loads_and_changed_kernel_recompiles(tmp_path: Path) -> None:
    script, cache = _setup(tmp_path)
    assert "(compiled in" in _run(script, cache)
    assert "(loaded from the disk cache in" in _run(script, cache)
    # Same module, same name, new body: a new entry, compiled, and the new value.
    _setup(tmp_path, scale=3.0)
    assert "(compiled in" in _run(script, cache, scale=3.0)
    assert "(loaded from the disk cache in" in _run(script, cache, scale=3.0)
    assert len(list((cache / "native").iterdir())) == 2


@pytest.mark.slow
def test_eight_processes_on_an_empty_cache(tmp_path: Path) -> None:
    script, cache = _setup(tmp_path)
    procs = [_start(script, cache) for _ in range(8)]
    for proc in procs:
        _finish(proc)
    (entry,) = (cache / "native").iterdir()
    assert (entry / "ok.json").exists()
    assert "(loaded from the disk cache in" in _run(script, cache)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["machine code", "index", "source", "mark"])
def test_damaged_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    script, cache = _setup(tmp_path)
    _run(script, cache)
    (entry,) = (cache / "native").iterdir()
    if damage == "machine code":
        (target,) = (entry / "__pycache__").glob("*.nbc")
    elif damage == "index":
        (target,) = (entry / "__pycache__").glob("*.nbi")
    elif damage == "source":
        target = entry / "handler.py"
    else:
        target = entry / "ok.json"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] + b"garbage")
    how = _run(script, cache)  # values checked: never the damaged code
    if damage == "index":
        # Numba's index is read before anything else: a damaged one is a miss.
        assert "(compiled in" in how or "(loaded from" in how
    else:
        assert "(compiled in" in how, how
    assert "(loaded from the disk cache in" in _run(script, cache)


@pytest.mark.slow
def test_closure_is_explained_not_cached(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "kmod.py").write_text(
        textwrap.dedent(
            """
            import numba
            import numpy as np

            def make(scale):
                @numba.njit
                def kernel(x):
                    return np.sin(x) * scale + 1.0
                return kernel

            kernel = make(2.0)
            """
        )
    )
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(folder=str(folder)))
    how = _run(script, tmp_path / "cache")
    assert "not cached on disk" in how
    assert "closure" in how
    assert not (tmp_path / "cache" / "native").exists()


def test_cache_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAZYAPPLY_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert cache_root() == tmp_path / "own"
    monkeypatch.delenv("LAZYAPPLY_CACHE_DIR")
    assert cache_root() == tmp_path / "numba" / "lazyapply"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_root() == tmp_path / "xdg" / "lazyapply"
    assert cache_root().name in ("lazyapply", "Cache")


def _module(name: str, source: str) -> Any:
    import types

    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


def test_identity_follows_code_helpers_and_global_values() -> None:
    from lazyapply.adapters.jax.native._cache import Uncacheable, kernel_identity

    def kernel_of(scale: float, helper_body: str) -> Any:
        helpers = _module(
            "helpers",
            f"import numba\n@numba.njit\ndef f(x):\n    return {helper_body}\n",
        )
        mod = _module(
            "kmod",
            """
            import numba
            import numpy as np
            SCALE = 0.0

            @numba.njit
            def kernel(x):
                return helpers.f(np.sin(x)) * SCALE
            """,
        )
        mod.helpers, mod.SCALE = helpers, scale
        return mod.kernel

    base = kernel_identity(kernel_of(2.0, "x + 1"))
    assert kernel_identity(kernel_of(2.0, "x + 1")) == base  # same code: same key
    assert kernel_identity(kernel_of(3.0, "x + 1")) != base  # a global's value
    assert kernel_identity(kernel_of(-0.0, "x + 1")) != kernel_identity(
        kernel_of(0.0, "x + 1")
    )
    assert kernel_identity(kernel_of(2.0, "x + 2")) != base  # a helper's body
    mod = _module(
        "kmod2", "import numba\nTABLE = {}\n@numba.njit\ndef k(x):\n    return TABLE\n"
    )
    with pytest.raises(Uncacheable, match="global 'TABLE'"):
        kernel_identity(mod.k)


def test_entry_follows_the_native_code_not_only_the_version(tmp_path: Path) -> None:
    # Two checkouts of one lazyapply version (two branches, a development copy
    # beside a release) share a cache folder: their handlers must not mix.
    from lazyapply.adapters.jax.native import _cache

    for name, text in (("_handler.py", "A = 1\n"), ("_store.py", "B = 2\n")):
        (tmp_path / name).write_text(text)
    before = _cache.code_digest(tmp_path)
    (tmp_path / "_store.py").write_text("B = 3\n")
    _cache.code_digest.cache_clear()
    assert _cache.code_digest(tmp_path) != before
    here = Path(_cache.__file__).parent
    assert _cache.code_digest(here) in _cache._versions()
