"""array-api-extra 0.11.5's own ``tests/main/test_lazy.py``, with lazyapply swapped in.

The test file and its ``conftest.py`` come unchanged from the reference's source
distribution (downloaded once with ``pip download --no-binary``), and run under the
reference's own pytest settings (its ``pyproject.toml``: ``filterwarnings = error``,
``xfail_strict``, ``--strict-markers``) with ``array_api_extra.lazy_apply`` replaced by
lazyapply's. Every test passes but the one deliberate difference listed in the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._suite import run_suite, sdist_tests

pytest.importorskip("array_api_extra", reason="the reference is not installed")

#: The one test of the reference that lazyapply fails on purpose: inside ``jax.jit``
#: a Python scalar reaches the kernel as itself (weak typing kept, never traced); the
#: reference's kernel asserts that it became a JAX array.
DELIBERATE = ("test_lazy.py::test_lazy_apply_scalars_and_nones[jax]",)


@pytest.mark.slow
def test_reference_test_lazy_passes(tmp_path: Path) -> None:
    root = sdist_tests("array-api-extra", "0.11.5")
    result = run_suite(
        ["tests/main/test_lazy.py"],
        cwd=root,
        swap="array_api_extra",
        tmp_path=tmp_path,
        xfail=DELIBERATE,
    )
    assert result.returncode == 0, result.output[-6000:]
    assert result.ids("failed") == set(), result.output[-6000:]
    assert {i.split(".")[-1] for i in result.ids("xfailed")} == {
        d.replace(".py::", "::", 1) for d in DELIBERATE
    }
    assert len(result.ids("passed")) > 150, result.summary()
    # The swap was live: the reference's tests called lazyapply's lazy_apply.
    assert result.calls > 100, result.summary()
