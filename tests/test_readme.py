"""Every ``python`` block of README.md runs alone, as a reader would paste it.

Each block runs in a fresh interpreter (a subprocess, the repository root on
``PYTHONPATH``); it must exit 0 and print something, so a reader sees it worked. A
block that imports a library that is not installed here is a visible skip.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests._blocks import top_level_imports
from tests._python import run_python

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of every ```python block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m[1]) for m in BLOCK.finditer(text)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3
    assert "def lazy_apply" not in README.read_text()  # shows usage, not internals


@pytest.mark.slow
@pytest.mark.parametrize(
    ("line", "source"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS]
)
def test_readme_block_runs_alone(line: int, source: str, tmp_path: Path) -> None:
    missing = sorted(
        n for n in top_level_imports(source) if importlib.util.find_spec(n) is None
    )
    if missing:
        pytest.skip(f"README.md:{line} needs {', '.join(missing)} (not installed)")
    proc = run_python(
        "-c",
        source,
        env={"JAX_PLATFORMS": "cpu"},
        cwd=tmp_path,  # not the repository: imports come from PYTHONPATH only
        timeout=240,
        ok=False,
    )
    assert proc.returncode == 0, f"README.md:{line} failed:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"README.md:{line} prints nothing"
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
