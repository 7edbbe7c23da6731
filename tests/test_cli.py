"""``python -m lazyapply`` as a user runs it: a subprocess each, options and exit codes.

Exit status: 0 everything asked for passed, 1 a backend or a check failed, 2 a usage
error. The full demo runs once (module fixture, ``--json``) and every installed
backend's rows are checked from it; a backend that is not installed is a skip.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lazyapply
from lazyapply import _cli, _demo
from tests._python import ROOT, run_python


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "lazyapply", *args, cwd=cwd, timeout=240, ok=False)


def _installed(name: str) -> bool:
    return name in _demo.installed((name,)) if _spec(name) else False


def _spec(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# Every mode the demo runs per backend (the distributed row only with `distributed`).
MODES = {
    "numpy": ["eager", "as_numpy"],
    "array_api_strict": ["eager", "as_numpy"],
    "torch": ["eager", "as_numpy"],
    "sparse": ["eager"],
    "cupy": ["eager"],
    "jax": ["eager", "as_numpy", "jit", "jit as_numpy"],
    "dask": ["deferred", "deferred as_numpy", "elementwise as_numpy"],
}


@pytest.fixture(scope="module")
def full_report() -> dict[str, Any]:
    """The default run (every installed backend, local cluster included), as JSON."""
    proc = cli("--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("name", _demo.BACKENDS)
def test_every_installed_backend_passes(full_report: dict[str, Any], name: str) -> None:
    listed = {b["name"]: b for b in full_report["backends"]}[name]
    if not listed["installed"]:
        pytest.skip(f"{name} is not installed here")
    rows = [r for r in full_report["rows"] if r["backend"] == name]
    modes = list(MODES[name])
    if name == "dask" and _spec("distributed"):
        modes.append("distributed elementwise")
    if name == "jax" and _spec("numba"):
        modes.append("jit as_numpy, Numba")  # the native path, with its compile time
    assert [r["mode"] for r in rows] == modes
    assert all(r["ok"] for r in rows), rows
    assert all(r["note"] for r in rows)  # the note column says what came back
    assert len(listed["devices"]) < 80  # short device names, not raw reprs


@pytest.mark.slow
def test_native_row_reports_the_path_and_compile(full_report: dict[str, Any]) -> None:
    if not (_installed("jax") and _spec("numba")):
        pytest.skip("jax and numba are needed for the native row")
    rows = {r["mode"]: r for r in full_report["rows"] if r["backend"] == "jax"}
    note = rows["jit as_numpy, Numba"]["note"]
    assert "path: native" in note
    assert "first call (compile)" in note


@pytest.mark.slow
def test_dask_rows_say_nothing_was_computed(full_report: dict[str, Any]) -> None:
    if not _installed("dask"):
        pytest.skip("dask is not installed here")
    rows = {r["mode"]: r for r in full_report["rows"] if r["backend"] == "dask"}
    assert "not computed" in rows["deferred"]["note"]
    assert "4 block(s)" in rows["elementwise as_numpy"]["note"]
    if not _spec("distributed"):
        pytest.skip("distributed is not installed here: no cluster row")
    assert "2 local worker processes" in rows["distributed elementwise"]["note"]


def test_array_api_strict_devices_are_short_names() -> None:
    if not _installed("array_api_strict"):
        pytest.skip("array-api-strict is not installed here")
    import array_api_strict

    text = _demo.devices("array_api_strict", array_api_strict)
    assert "CPU_DEVICE" in text
    assert "Device(" not in text


@pytest.mark.slow
def test_table_output_for_one_backend() -> None:
    proc = cli("--backend", "numpy")
    assert proc.returncode == 0, proc.stderr
    assert "numpy              eager" in proc.stdout
    assert "2/2 backend modes correct" in proc.stdout
    assert "jax" not in proc.stdout  # only the backend asked for


@pytest.mark.slow
def test_backend_alias_and_json() -> None:
    proc = cli("--backend", "array-api-strict,numpy", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert [b["name"] for b in report["backends"]] == ["array_api_strict", "numpy"]
    assert report["version"] == lazyapply.__version__
    assert {r["backend"] for r in report["rows"]} <= {"array_api_strict", "numpy"}
    assert report["ok"] is (proc.returncode == 0)


@pytest.mark.slow
def test_quiet_prints_one_summary_line_on_success() -> None:
    proc = cli("--backend", "numpy", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout == f"lazyapply {lazyapply.__version__}: 2/2 backend modes correct\n"
    )
    assert proc.stderr == ""  # no progress lines either


@pytest.mark.slow
def test_progress_lines_before_slow_steps() -> None:
    proc = cli("--backend", "numpy,jax", "--no-cluster")
    assert proc.returncode == 0, proc.stderr
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("... ")]
    assert progress[:2] == ["... importing numpy", "... importing jax"]
    assert "... jax: running the demo kernel in every mode" in progress
    if _spec("numba"):
        assert any("compiling a Numba kernel" in ln for ln in progress)


@pytest.mark.slow
def test_missing_backend_asked_by_name_fails() -> None:
    if _installed("cupy"):
        pytest.skip("cupy is installed and usable here")
    proc = cli("--backend", "cupy", "--quiet")
    assert proc.returncode == 1
    assert "not installed: cupy" in proc.stderr


@pytest.mark.slow
def test_help_and_version() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for word in ("usage: python -m lazyapply", "--backend", "--json", "--quiet"):
        assert word in proc.stdout
    assert "check" in proc.stdout
    proc = cli("--version")
    assert (proc.returncode, proc.stdout.strip()) == (
        0,
        f"lazyapply {lazyapply.__version__}",
    )
    proc = cli("check", "--help")
    assert proc.returncode == 0
    assert "MODULE:FUNCTION" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["foo"], "invalid choice: 'foo'"),
        (["--backend", "numpy,tensorflow"], "unknown backend(s) 'tensorflow'"),
        (["--backend", ""], "choose a comma-separated list of: numpy"),
        (["check"], "MODULE:FUNCTION"),
        (["check", "no_colon"], "expected MODULE:FUNCTION"),
        (["check", "no_such_module_xyz:f"], "cannot import 'no_such_module_xyz'"),
        (["check", "lazyapply:no_such_kernel"], "has no attribute 'no_such_kernel'"),
        (["check", "lazyapply:lazy", "--args", "np.ones("], "cannot evaluate"),
        (["check", "lazyapply:lazy", "--kwarg", "1x=2"], "NAME=ARG"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (argparse exits through SystemExit) to keep the suite quick; the
    # subprocess test below shows the same status from a real command line.
    with pytest.raises(SystemExit) as info:
        _cli.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "choose" in message or "unknown" in message:
        assert "array_api_strict" in err  # lists every valid backend


@pytest.mark.slow
def test_unknown_option_exits_2_with_usage() -> None:
    proc = cli("--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m lazyapply")
    assert "unrecognized arguments: --bogus" in proc.stderr


def test_failing_backend_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that gives wrong values on a real backend makes the run fail."""
    monkeypatch.setattr(_demo, "demo_kernel", lambda x, y, *, scale: x + y)
    assert _cli.main(["--backend", "numpy", "--quiet"]) == 1
    rows = _demo.run(_demo.installed(("numpy",)))
    assert [r.ok for r in rows] == [False, True]
    assert rows[0].note.startswith("WRONG VALUES")
    assert np.isnan(rows[0].seconds)


KERNELS = textwrap.dedent(
    """
    import numpy as np
    from lazyapply import lazy

    @lazy(as_numpy=True)
    def good(x, alpha=1.0):
        return np.sin(x) * alpha

    @lazy(shape=(2,), as_numpy=True)   # declares a shape the kernel does not give
    def bad(x):
        return np.sin(x)
    """
)


@pytest.mark.slow
def test_check_passes_and_fails(tmp_path: Path) -> None:
    (tmp_path / "kernels_cli.py").write_text(KERNELS)
    good = cli(
        "check",
        "kernels_cli:good",
        "--args",
        "np.ones((3, 4))",
        "--kwarg",
        "alpha=2.0",
        cwd=tmp_path,
    )
    assert good.returncode == 0, good.stderr
    by_path = cli("check", str(tmp_path / "kernels_cli.py") + ":good", "--json")
    assert by_path.returncode == 0, by_path.stderr
    assert json.loads(by_path.stdout)["ok"] is True
    bad = cli("check", "kernels_cli:bad", "--args", "np.ones(5)", cwd=tmp_path)
    assert bad.returncode == 1
    assert "bad" in bad.stderr


@pytest.mark.slow
def test_check_reports_records_progress_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / "kernels_cli.py").write_text(KERNELS)
    target = ("check", "kernels_cli:good", "--backend", "numpy,dask")
    proc = cli(*target, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "... checking kernels_cli:good on numpy",
        "... checking kernels_cli:good on dask",
        "... checking kernels_cli:good on pickle",
    ]
    assert proc.stdout.splitlines()[-1].startswith("check_kernel: good passed (")
    quiet = cli(*target, "-q", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert quiet.stdout.splitlines() == [proc.stdout.splitlines()[-1]]
    as_json = cli(*target, "--json", "-q", cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert report["ok"] is True
    assert report["rows"][0] == {
        "kernel": "good",
        "backend": "numpy",
        "mode": "as_numpy",
        "outcome": "ok",
        "message": "",
        "fix": "",
    }
    bad = cli(
        "check", "kernels_cli:bad", "--json", "-q", "--backend", "dask", cwd=tmp_path
    )
    assert bad.returncode == 1
    failed = [r for r in json.loads(bad.stdout)["rows"] if r["outcome"] == "FAIL"]
    assert failed
    assert all(r["fix"].startswith("declare shape=(3, 4)") for r in failed)
    quiet_bad = cli("check", "kernels_cli:bad", "-q", "--backend", "dask", cwd=tmp_path)
    assert quiet_bad.returncode == 1
    lines = quiet_bad.stderr.splitlines()
    assert lines[0].split()[:2] == ["kernel", "backend"]
    assert all(" FAIL " in line for line in lines[1:-1])
    assert lines[-1].startswith("check_kernel: bad FAILED (")
