"""Run a script in a fresh interpreter that sees several CPU devices (JAX sharding).

XLA fixes its device count when it starts, so a test of sharding on four devices runs
its script in a new process with ``--xla_force_host_platform_device_count``; this
checkout comes first on its path, so the copy under test is the one it imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["run_on_devices"]

_ROOT = str(Path(__file__).resolve().parents[1])


def run_on_devices(
    script: str, *args: str, devices: int = 4, timeout: int = 600
) -> str:
    """Run ``python -c script *args`` on ``devices`` CPU devices; return its stdout.

    Fails the calling test with the end of the script's stderr if it exits non-zero.
    """
    path = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
