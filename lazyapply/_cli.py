"""The command line of ``python -m lazyapply``.

``python -m lazyapply`` lists the installed backends (versions, devices) and runs one
demo kernel through every backend and mode; ``python -m lazyapply check
MODULE:FUNCTION`` runs :func:`lazyapply.testing.check_kernel` on a user's kernel.
Exit status: 0 when everything asked for passed, 1 when a backend or a check failed,
2 for a usage error (unknown option or backend, a kernel that cannot be imported).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lazyapply import __version__

__all__ = ["main", "parser"]

_ALIASES = {"array-api-strict": "array_api_strict"}
_DEFAULT_SAMPLE = "np.linspace(0.0, 1.0, 12).reshape(3, 4)"

_EPILOG = """\
examples:
  python -m lazyapply                          every installed backend and mode
  python -m lazyapply --backend numpy,jax      only these backends
  python -m lazyapply --json > report.json     machine-readable report
  python -m lazyapply check mymod:ema --args "np.ones((4, 50))" 0.3
  python -m lazyapply check kernels.py:smooth --kwarg "alpha=0.5"

exit status: 0 all passed, 1 a backend or check failed, 2 usage error
"""


def _backends(text: str) -> tuple[str, ...]:
    from lazyapply._demo import BACKENDS

    names = tuple(_ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        msg = (
            f"unknown backend(s) {', '.join(map(repr, unknown)) or repr(text)}; "
            f"choose a comma-separated list of: {', '.join(BACKENDS)}"
        )
        raise argparse.ArgumentTypeError(msg)
    return names


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    """Options accepted before and after the command (``default``: SUPPRESS after,
    so that a subcommand's defaults do not overwrite what was given before it)."""
    p.add_argument(
        "--backend",
        type=_backends,
        metavar="NAMES",
        default=default,
        help="comma-separated backends to run (default: every installed one)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=default or False,
        help="print a JSON report only",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default or False,
        help="print only failures, or one summary line on success",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m lazyapply``."""
    p = argparse.ArgumentParser(
        prog="python -m lazyapply",
        description=(
            "Run eager array kernels lazily on every array library. Without a "
            "command: list the installed backends and run one demo kernel through "
            "every backend and mode (eager, as_numpy, jax.jit, Dask, a local "
            "dask.distributed cluster)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"lazyapply {__version__}")
    _common(p, None)
    p.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the dask.distributed row (it starts two worker processes)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="run lazyapply.testing.check_kernel on your kernel",
        description=(
            "Import FUNCTION from MODULE (a module name, or a path to a .py file) "
            "and run lazyapply.testing.check_kernel(FUNCTION, *ARGS, **KWARGS) on "
            "it. Each ARG is a Python expression evaluated with numpy as np, e.g. "
            "'np.ones((4, 5))' or 0.3."
        ),
    )
    _common(check, argparse.SUPPRESS)
    check.add_argument("target", metavar="MODULE:FUNCTION")
    check.add_argument(
        "--args",
        nargs="+",
        default=[_DEFAULT_SAMPLE],
        metavar="ARG",
        help=f"sample positional arguments (default: {_DEFAULT_SAMPLE})",
    )
    check.add_argument(
        "--kwarg",
        action="append",
        default=[],
        metavar="NAME=ARG",
        help="a sample keyword argument; repeat for several",
    )
    return p


class UsageError(Exception):
    """A problem with what the user asked for: exit status 2."""


def _load(target: str) -> Any:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        msg = f"expected MODULE:FUNCTION (e.g. mymodule:ema), got {target!r}"
        raise UsageError(msg)
    try:
        if module_name.endswith(".py") or Path(module_name).is_file():
            path = Path(module_name).resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                msg = f"cannot load {path}"
                raise UsageError(msg)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module  # so Dask workers can pickle by name
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, str(Path.cwd()))  # as `python -m` does
            module = importlib.import_module(module_name)
    except (ImportError, OSError, SyntaxError) as exc:
        msg = f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        raise UsageError(msg) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        msg = f"module {module_name!r} has no attribute {attr!r}"
        raise UsageError(msg) from None


def _evaluate(text: str) -> Any:
    import numpy as np

    try:
        return eval(text, {"np": np, "numpy": np})  # the user's own expression
    except Exception as exc:
        msg = (
            f"cannot evaluate the sample argument {text!r}: {type(exc).__name__}: {exc}"
        )
        raise UsageError(msg) from exc


def run_check(options: argparse.Namespace) -> int:
    """``check MODULE:FUNCTION``: 0 passed, 1 failed, 2 usage error."""
    kernel = _load(options.target)
    args = [_evaluate(a) for a in options.args]
    kwargs: dict[str, Any] = {}
    for item in options.kwarg:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            msg = f"--kwarg expects NAME=ARG, got {item!r}"
            raise UsageError(msg)
        kwargs[name] = _evaluate(value)
    from lazyapply.testing import check_kernel
    from lazyapply.testing._report import CheckFailed

    if options.backend is not None:
        kwargs["backends"] = options.backend
    if not options.quiet:
        kwargs["progress"] = _progress(options.target)
    try:
        report = check_kernel(kernel, *args, **kwargs)
    except CheckFailed as exc:
        report = exc.report
    ok = not report.failures
    if options.json:
        records = report.records()
        print(json.dumps({"kernel": options.target, "ok": ok, "rows": records}))
    elif not ok:  # -q: only the failing rows
        rows = type(report)(report.failures) if options.quiet else report
        print(f"{rows.table()}\n{report.summary()}", file=sys.stderr)
    elif options.quiet:
        print(report.summary())
    else:
        print(f"{report.table()}\n\n{report.summary()}")
    return 0 if ok else 1


def _progress(target: str) -> Any:
    """A progress line per backend on stderr (a check takes seconds per backend)."""

    def show(backend: str) -> None:
        _say(f"checking {target} on {backend}")

    return show


def run_demo(options: argparse.Namespace) -> int:
    """The main job: backends, versions, devices, and the demo table."""
    from lazyapply import _demo

    wanted = options.backend or _demo.BACKENDS
    say = _say if not options.quiet else _demo._quiet
    found = _demo.installed(wanted, say)
    missing = [n for n in wanted if n not in found]
    listing = [
        {
            "name": n,
            "installed": n in found,
            "version": _demo.version(n) if n in found else None,
            "devices": _demo.devices(n, found[n]) if n in found else None,
        }
        for n in wanted
    ]
    table = not options.json and not options.quiet
    if table:
        print("lazyapply: run eager array kernels lazily on every array library\n")
        print(f"{'backend':<18} {'version':<16} devices")
        for b in listing:
            version = b["version"] or "not installed"
            print(f"{b['name']:<18} {version:<16} {b['devices'] or '-'}")
        print(f"\ndemo kernel: (x*x + y*y) * scale on {_demo.SIZE} float64 elements\n")
    use_cluster = "dask" in found and not options.no_cluster
    if use_cluster:
        say("starting a local dask.distributed cluster (2 worker processes)")
    header = [table]  # rows are printed as they come, under one header

    def show(row: _demo.Row) -> None:
        if options.json or (options.quiet and row.ok):
            return
        if header[0] or options.quiet:
            _print_rows([], header=True)
            header[0] = False
        _print_rows([row])

    with _demo.local_cluster(use_cluster) as cluster:
        rows = _demo.run(found, cluster=cluster, progress=say, on_row=show)
    failed = [r for r in rows if not r.ok]
    # A backend asked for by name but missing fails the run; a default run skips it.
    status = 1 if failed or (options.backend and missing) else 0
    if options.json:
        report = {
            "version": __version__,
            "ok": status == 0,
            "backends": listing,
            "rows": [vars(r) for r in rows],
        }
        print(json.dumps(report, indent=2, default=str))
        return status
    summary = f"{len(rows) - len(failed)}/{len(rows)} backend modes correct"
    if table:
        print(f"\n{summary}")
    elif status == 0:
        print(f"lazyapply {__version__}: {summary}")
    if options.backend and missing:
        print(f"not installed: {', '.join(missing)}", file=sys.stderr)
    return status


def _say(line: str) -> None:
    """A progress line on stderr, before a step that takes seconds."""
    print(f"... {line}", file=sys.stderr, flush=True)


def _print_rows(rows: Sequence[Any], *, header: bool = False) -> None:
    if header:
        print(f"{'backend':<18} {'mode':<24} {'correct':<8} {'time/call':>12}  note")
    for r in rows:
        t = "-" if r.seconds != r.seconds else f"{r.seconds * 1e6:10.1f} us"
        print(
            f"{r.backend:<18} {r.mode:<24} {'yes' if r.ok else 'NO':<8} {t:>12}  "
            f"{r.note}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run; returns the exit status."""
    p = parser()
    options = p.parse_args(argv)
    try:
        if options.command == "check":
            return run_check(options)
        return run_demo(options)
    except UsageError as exc:
        p.exit(2, f"{p.prog}: error: {exc}\n")
