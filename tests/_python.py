"""Run Python in a new interpreter with this checkout first on its path.

Tests that need a fresh process (a script's own ``__main__``, a clean ``sys.modules``,
an environment variable read at import, XLA's device count) run it here, so that the
copy under test is the one imported and a failure shows the end of the child's stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ROOT", "run_python"]

#: The checkout's root (the folder holding ``lazyapply/`` and ``tests/``).
ROOT = Path(__file__).resolve().parents[1]


def run_python(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 300,
    ok: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` (a script's path or ``-c`` code, then its arguments).

    ``env`` is added to this process's environment. With ``ok`` (the default) the
    calling test fails with the end of the child's stderr unless it exits with 0.
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {}), "PYTHONPATH": path},
        cwd=cwd,
        check=False,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc
