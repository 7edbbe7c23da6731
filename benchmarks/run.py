"""Run the benchmark suite: ``python -m benchmarks [--backend ...] [--quick]``.

Sections: ``eager`` (overhead per call on NumPy, torch, array-api-strict, sparse and
JAX outside jit), ``jit`` (inside ``jax.jit``), ``dask`` (graph construction),
``grad`` (``jax.grad`` under jit and torch ``backward`` with a declared vjp),
``memory`` (peak memory on a large array, one subprocess per variant), ``native``
(a Numba kernel as an XLA FFI target under ``jax.jit``) and ``torch`` (a kernel
inside ``torch.compile``; autograd through a declared vjp). Writes
``overhead.md``, ``overhead.json`` and ``overhead.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

__all__ = ["main"]

ALL_BACKENDS = ("numpy", "torch", "array-api-strict", "sparse", "jax", "dask")
SECTIONS = ("eager", "jit", "dask", "grad", "memory", "native", "torch")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--backend",
        default=",".join(ALL_BACKENDS),
        help=f"comma-separated subset of {','.join(ALL_BACKENDS)} (default: all)",
    )
    p.add_argument(
        "--section",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    p.add_argument(
        "--memory-mb",
        type=int,
        default=None,
        help="input size of the memory section (default 256, 64 with --quick)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="results folder (default benchmarks/results; benchmarks/results/quick "
        "with --quick, so that a quick run never replaces the published figures)",
    )
    return p


def _machine() -> str:
    import numpy as np

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the sections, print and write the report."""
    from tqdm import tqdm

    from . import (
        bench_dask,
        bench_eager,
        bench_grad,
        bench_jit,
        bench_memory,
        bench_native,
        bench_special,
        bench_torch,
        report,
    )
    from ._timing import Settings

    args = _parser().parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(ALL_BACKENDS))
    sections = [s.strip() for s in args.section.split(",") if s.strip()]
    unknown += sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"unknown backend/section: {', '.join(unknown)}", file=sys.stderr)
        return 2
    settings = Settings(quick=args.quick)
    megabytes = args.memory_mb or (64 if args.quick else 256)
    steps = {
        "eager": bench_eager.count(backends),
        "jit": bench_jit.count(backends),
        "dask": bench_dask.count(backends),
        "grad": bench_grad.count(backends),
        "memory": bench_memory.count(backends),
        "native": bench_native.count(backends) + bench_special.count(backends),
        "torch": bench_torch.count(backends),
    }
    rows = []
    with tqdm(total=sum(steps[s] for s in sections), unit="case") as bar:
        if "eager" in sections:
            rows += bench_eager.run(backends, settings, bar)
        if "jit" in sections:
            rows += bench_jit.run(backends, settings, bar)
        if "dask" in sections:
            rows += bench_dask.run(backends, settings, bar)
        if "grad" in sections:
            rows += bench_grad.run(backends, settings, bar)
        if "memory" in sections:
            rows += bench_memory.run(backends, megabytes, bar)
        if "native" in sections:
            rows += bench_native.run(backends, settings, bar)
            rows += bench_special.run(backends, settings, bar)
        if "torch" in sections:
            rows += bench_torch.run(backends, settings, bar)
    command = "python -m benchmarks " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    text = report.markdown(rows, command.strip(), _machine())
    print(text)
    out = Path(
        args.out or ("benchmarks/results/quick" if args.quick else "benchmarks/results")
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.md").write_text(text)
    (out / "overhead.json").write_text(
        json.dumps(
            {"command": command.strip(), "machine": _machine(), "rows": rows},
            indent=1,
            default=str,
        )
    )
    report.chart(rows, out / "overhead.png")
    print(
        f"wrote {out / 'overhead.md'}, {out / 'overhead.json'}, {out / 'overhead.png'}"
    )
    return 0
