"""
How a stencil's halo works
==========================

A stencil reads its neighbours: a 3-point moving average needs ``x[i - 1]`` and
``x[i + 1]`` to compute ``out[i]``. Cut the array into chunks and run the kernel on
each, and the elements at the chunk edges are wrong: their neighbours live in
another chunk.

``@lazy(depth=1)`` fixes that the way ``dask.array.map_overlap`` does. Before the
kernel runs, each block is extended by ``depth`` elements copied from its
neighbours (the *halo*); the kernel runs on the extended block; the halo is trimmed
from its output. The result equals the eager result on the whole array, edges
included. ``boundary=`` would also pad the array's outer edges (``"reflect"``,
``"periodic"``, ``"nearest"`` or a constant); the default, ``None``, leaves them to
the kernel's own edge handling.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from lazyapply import lazy

# %%
# The picture: 18 elements in three chunks of 6, ``depth=2``.

N, CHUNK, DEPTH = 18, 6, 2
COLORS = ["#4c72b0", "#55a868", "#c44e52"]


def draw_cells(ax, y, start, stop, color, label=None, hatch=None, alpha=1.0):
    for i in range(start, stop):
        ax.add_patch(
            Rectangle((i, y), 0.95, 0.8, color=color, alpha=alpha, hatch=hatch, lw=0)
        )
    if label:
        ax.text(-0.6, y + 0.4, label, ha="right", va="center", fontsize=9)


fig, ax = plt.subplots(figsize=(9, 4.2))
draw_cells(ax, 5, 0, N, "white", "the array, 3 chunks")
for b, color in enumerate(COLORS):
    draw_cells(ax, 5, b * CHUNK, (b + 1) * CHUNK, color)
for b, color in enumerate(COLORS):
    y = 3.8 - 1.1 * b
    lo, hi = b * CHUNK, (b + 1) * CHUNK
    draw_cells(ax, y, lo, hi, color, f"block {b} + halo")
    if b > 0:  # halo from the left neighbour
        draw_cells(ax, y, lo - DEPTH, lo, COLORS[b - 1], alpha=0.45, hatch="//")
    if b < len(COLORS) - 1:  # halo from the right neighbour
        draw_cells(ax, y, hi, hi + DEPTH, COLORS[b + 1], alpha=0.45, hatch="//")
for b, color in enumerate(COLORS):
    draw_cells(ax, 0, b * CHUNK, (b + 1) * CHUNK, color)
ax.text(-0.6, 0.4, "kernel output,\nhalo trimmed", ha="right", va="center", fontsize=9)
ax.annotate(
    "depth=2 elements copied\nfrom the neighbour",
    xy=(2 * CHUNK + 1.5, 2.7 + 0.8),
    xytext=(N + 0.5, 3.4),
    fontsize=9,
    arrowprops={"arrowstyle": "->"},
)
ax.annotate(
    "outer edge: nothing added\n(boundary=None)",
    xy=(N, 1.6 + 0.4),
    xytext=(N + 0.5, 1.3),
    fontsize=9,
    arrowprops={"arrowstyle": "->"},
)
ax.set_xlim(-7, N + 6)
ax.set_ylim(-0.4, 6)
ax.set_axis_off()
ax.set_title("@lazy(depth=2): overlapping blocks, kernel per block, halo trimmed")
plt.tight_layout()

# %%
# The same thing, computed: a 3-point average with ``depth=1`` on 3 Dask chunks
# equals the eager result everywhere, chunk edges included.


@lazy(depth=1, as_numpy=True)
def smooth(x):
    out = x.copy()
    out[1:-1] = (x[:-2] + x[1:-1] + x[2:]) / 3
    return out


x = np.random.default_rng(0).standard_normal(N)
chunked = smooth(da.from_array(x, chunks=CHUNK))
print("blocks:", chunked.numblocks, "tasks in the graph:", len(chunked.dask))
np.testing.assert_allclose(chunked.compute(), smooth(x))
print("equal to the eager result, chunk edges included")
