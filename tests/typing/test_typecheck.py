"""Run the static type checks of ``tests/typing/check.sh`` as tests.

mypy --strict and pyright on the library, and on ``check_lazy.py`` (``assert_type``
cases for ``@lazy``; misuse lines that both checkers must reject).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

COMMANDS = {
    "mypy-lazyapply": ["mypy", "lazyapply"],
    "mypy-check_lazy": [
        "mypy",
        "--config-file",
        "tests/typing/mypy.ini",
        "tests/typing/check_lazy.py",
    ],
    # --pythonpath: resolve imports in this environment, not the first python on PATH.
    "pyright-lazyapply": ["pyright", "--pythonpath", sys.executable, "lazyapply"],
    "pyright-check_lazy": [
        "pyright",
        "--pythonpath",
        sys.executable,
        "-p",
        "tests/typing/pyrightconfig.json",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_typecheck(name: str) -> None:
    tool, *args = COMMANDS[name]
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (pip install {tool})")
    proc = subprocess.run(
        [str(exe), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{tool} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    )
