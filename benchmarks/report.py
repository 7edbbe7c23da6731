"""Tables, ratios and the chart, from the rows the benchmark sections return."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "chart", "markdown", "verdicts"]

#: Section -> (what is compared, the ratio that must not be exceeded).
TARGETS = {
    "eager": ("overhead over a direct call, lazyapply / reference", 0.15),
    "jit": ("time per jitted call, lazyapply / hand-written pure_callback", 1.25),
    "dask": ("graph construction, lazyapply / hand-written map_blocks", 1.5),
    # Per row ("target"): 1.25 for jax.jit(grad), 1.5 for torch backward.
    "grad": ("gradient, lazyapply / hand-written custom_vjp or autograd.Function", 1.5),
    "memory": ("peak-memory rise, lazyapply - hand-written (array sizes)", 0.1),
    # The target for a compiled call (a hand-written op is one Python call).
    "torch_compile": ("compiled call, lazyapply / hand-written custom_op", 1.25),
    "torch_grad": ("forward + backward, lazyapply / hand-written Function", 1.5),
}


def _us(t: float | None) -> str:
    if t is None:
        return "—"
    us = t * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.2f}"


def _ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}"


def _ok(r: float | None, limit: float) -> str:
    if r is None:
        return "—"
    return "yes" if r <= limit else "**no**"


def _overhead(row: dict[str, Any], variant: str) -> float:
    # The median of round-by-round differences: a slow phase of a shared machine
    # falls on both calls of a round and cancels, where a difference of medians
    # would keep it (sparse kernels take ~100 us with a jitter of a few us).
    samples = row.get("samples")
    if samples:
        pairs = zip(samples[variant], samples["direct"], strict=True)
        return statistics.median(a - b for a, b in pairs)
    return float(row["times"][variant] - row["times"]["direct"])


def eager_ratios(row: dict[str, Any]) -> dict[str, float | None]:
    """Overheads over the direct call, and each one's ratio to the reference's."""
    ref = _overhead(row, "reference")
    out: dict[str, float | None] = {"reference overhead": ref}
    for v in ("lazyapply", "decorated"):
        if v in row["times"]:
            out[f"{v} overhead"] = mine = _overhead(row, v)
            out[v] = mine / ref if ref > 0 else None
        else:
            out[f"{v} overhead"] = out[v] = None
    return out


def ratio_to(times: dict[str, float], base: str) -> dict[str, float | None]:
    """Each variant's time divided by the baseline variant's."""
    b = times[base]
    return {v: t / b for v, t in times.items()}


def verdicts(rows: list[dict[str, Any]]) -> list[tuple[str, str, float | None, bool]]:
    """``(section, case, worst ratio, holds)`` for every row."""
    out = []
    for row in rows:
        s = row["section"]
        if s not in TARGETS:  # a section with its own targets (native)
            continue
        limit = row.get("target", TARGETS[s][1])  # grad rows carry their own
        label = f"{row['backend']} {row['case']} n={row['size']}"
        if s == "eager":
            r = eager_ratios(row)
            vals = [r[v] for v in ("lazyapply", "decorated") if r[v] is not None]
        elif s in ("jit", "dask", "grad", "torch_compile", "torch_grad"):
            r = ratio_to(row["times"], "hand-written")
            vals = [r[v] for v in ("lazyapply", "decorated") if v in r]
        else:
            rises = row["rises"]
            if "lazyapply" not in rises or "hand-written" not in rises:
                continue
            vals = [rises["lazyapply"] - rises["hand-written"]]
        worst = max(vals) if vals else None
        out.append((s, label, worst, worst is not None and worst <= limit))
    return out


def markdown(rows: list[dict[str, Any]], command: str, machine: str) -> str:
    """The Markdown report: one table per section, then the verdicts."""
    lines = [
        "# lazyapply overhead benchmark",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}",
        "",
        "Times are medians of interleaved rounds, in microseconds per call; "
        "each table's variants ran side by side in the same process.",
        "",
    ]
    eager = [r for r in rows if r["section"] == "eager"]
    if eager:
        lines += [
            "## Eager overhead (10 elements, kernel `x + 1`)",
            "",
            "Overhead = time - direct call (median of the round-by-round "
            "differences). Ratio = lazyapply overhead / reference overhead "
            f"(target <= {TARGETS['eager'][1]}).",
            "",
            "| backend | metadata | direct | reference | lazyapply | @lazy | "
            "ref. overhead | lazyapply overhead | @lazy overhead | lazyapply ratio "
            "| @lazy ratio | holds |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in eager:
            t = row["times"]
            r = eager_ratios(row)
            worst = max(
                (r[v] for v in ("lazyapply", "decorated") if r[v] is not None),
                default=None,
            )
            lines.append(
                f"| {row['backend']} | {row['case']} | {_us(t['direct'])} | "
                f"{_us(t['reference'])} | {_us(t.get('lazyapply'))} | "
                f"{_us(t.get('decorated'))} | {_us(r['reference overhead'])} | "
                f"{_us(r['lazyapply overhead'])} | {_us(r['decorated overhead'])} | "
                f"{_ratio(r['lazyapply'])} | {_ratio(r['decorated'])} | "
                f"{_ok(worst, TARGETS['eager'][1])} |"
            )
        lines.append("")
    for section, title, base, limit in (
        ("jit", "Inside `jax.jit` (float32, kernel `x + 1`)", "hand-written", 1.25),
        (
            "dask",
            "Dask graph construction (kernel `x + 1`, nothing computed)",
            "hand-written",
            1.5,
        ),
        (
            "grad",
            "Gradients with a declared vjp (kernel `sin(x) * y`, as_numpy=True); "
            "targets: 1.25 JAX, 1.5 torch",
            "hand-written",
            1.5,
        ),
        (
            "torch_compile",
            "Inside `torch.compile` (float32, kernel `x + 1`, as_numpy)",
            "hand-written",
            1.25,
        ),
        (
            "torch_grad",
            "Torch autograd, forward + backward (float64, vjp `g`)",
            "hand-written",
            1.5,
        ),
    ):
        part = [r for r in rows if r["section"] == section]
        if not part:
            continue
        variants = [
            v
            for v in (
                "hand-written",
                "delayed",
                "reference",
                "eager",
                "lazyapply",
                "decorated",
            )
            if any(v in r["times"] for r in part)
        ]
        names = [("@lazy" if v == "decorated" else v) for v in variants]
        lines += [
            f"## {title}",
            "",
            f"Ratio = time / {base} (target <= {limit}).",
            "",
            "| case | size | "
            + " | ".join(names)
            + " | "
            + " | ".join(f"{n} ratio" for n in names if n != base)
            + " | holds |",
            "|---|---|" + "---:|" * (2 * len(variants) - 1) + "---|",
        ]
        for row in part:
            t = row["times"]
            r = ratio_to(t, base)
            worst = max(
                (r[v] for v in ("lazyapply", "decorated") if v in r), default=None
            )
            size = row["size"]
            size_s = f"{size:,}" if isinstance(size, int) else "x".join(map(str, size))
            lines.append(
                f"| {row['case']} | {size_s} | "
                + " | ".join(_us(t.get(v)) for v in variants)
                + " | "
                + " | ".join(_ratio(r.get(v)) for v in variants if v != base)
                + f" | {_ok(worst, row.get('target', limit))} |"
            )
        lines.append("")
    mem = [r for r in rows if r["section"] == "memory"]
    if mem:
        lines += [
            f"## Peak memory ({mem[0]['size']} MB input, kernel `x + 1`)",
            "",
            "Rise of the peak RSS during one call, in units of the input's size; the "
            "kernel's own output is 1.0. Target: lazyapply no more than hand-written "
            "(+0.1 for noise and JIT compilation).",
            "",
            "| path | hand-written | reference | lazyapply | holds |",
            "|---|---:|---:|---:|---|",
        ]
        for row in mem:
            m = row["rises"]
            extra = (
                m["lazyapply"] - m["hand-written"]
                if "lazyapply" in m and "hand-written" in m
                else None
            )
            cells = " | ".join(
                f"{m[v]:.2f}" if v in m else "—"
                for v in ("hand-written", "reference", "lazyapply")
            )
            lines.append(f"| {row['case']} | {cells} | {_ok(extra, 0.1)} |")
        lines.append("")
    from .bench_native import markdown as native_markdown
    from .bench_special import markdown as special_markdown

    lines += native_markdown(rows)
    lines += special_markdown(rows)
    results = verdicts(rows)
    held = sum(ok for *_, ok in results)
    lines += [
        "## Targets",
        "",
        f"{held} of {len(results)} comparisons within target.",
        "",
    ]
    for section, (what, limit) in TARGETS.items():
        mine = [v for v in results if v[0] == section]
        if mine:
            bad = [label for _, label, _, ok in mine if not ok]
            state = "holds" if not bad else "misses: " + "; ".join(bad)
            lines.append(f"- {section}: {what} <= {limit}: {state}")
    lines.append("")
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Time per call per backend: direct, reference, lazyapply, @lazy (log, µs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    eager = [r for r in rows if r["section"] == "eager"]
    jit = [r for r in rows if r["section"] == "jit"]
    dask = [r for r in rows if r["section"] == "dask"]
    panels = [p for p in (("eager", eager), ("jit", jit), ("dask", dask)) if p[1]]
    if not panels:
        return
    colors = {
        "direct": "#999999",
        "hand-written": "#999999",
        "delayed": "#cccccc",
        "reference": "#d62728",
        "lazyapply": "#1f77b4",
        "decorated": "#2ca02c",
    }
    # The eager panel (many bars) gets the whole top row; jit and Dask share the
    # bottom row.
    fig = plt.figure(figsize=(14, 9 if len(panels) > 1 else 4.8))
    grid = fig.add_gridspec(2 if len(panels) > 1 else 1, 2)
    axes = []
    for i in range(len(panels)):
        if i == 0:
            axes.append(fig.add_subplot(grid[0, :]))
        else:
            axes.append(fig.add_subplot(grid[1, (i - 1) % 2]))
    short = {"array-api-strict": "strict"}
    for ax, (section, part) in zip(axes, panels, strict=True):
        if section == "eager":
            labels = [
                f"{short.get(r['backend'], r['backend'])}\n{r['case']}" for r in part
            ]
            variants = ["direct", "reference", "lazyapply", "decorated"]
            title = (
                "Eager call of x + 1 on 10 elements (µs per call; the number above "
                "a blue bar: lazyapply's overhead / the reference's)"
            )
        elif section == "jit":
            labels = [f"n={r['size']:,}\n{r['case']}" for r in part]
            variants = ["hand-written", "reference", "lazyapply", "decorated"]
            title = "Inside jax.jit (µs per call)"
        else:
            labels = [r["case"].replace(", ", "\n") for r in part]
            variants = [
                "hand-written",
                "delayed",
                "reference",
                "lazyapply",
                "decorated",
            ]
            title = "Dask graph construction (µs)"
        variants = [v for v in variants if any(v in r["times"] for r in part)]
        width = 0.8 / len(variants)
        xs = np.arange(len(part))
        for i, v in enumerate(variants):
            vals = [r["times"].get(v, np.nan) * 1e6 for r in part]
            ax.bar(
                xs + (i - (len(variants) - 1) / 2) * width,
                vals,
                width,
                label="@lazy" if v == "decorated" else v,
                color=colors[v],
            )
            if section == "eager" and v == "lazyapply":
                for x, val, r in zip(
                    xs + (i - (len(variants) - 1) / 2) * width, vals, part, strict=True
                ):
                    ratio = eager_ratios(r)["lazyapply"]
                    if ratio is not None:
                        ax.annotate(
                            f"{ratio:.2f}",
                            (x, val),
                            xytext=(0, 2),
                            textcoords="offset points",
                            ha="center",
                            fontsize=6,
                            color=colors[v],
                        )
        ax.set_xticks(xs, labels, fontsize=7, rotation=0)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
