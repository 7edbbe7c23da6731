"""
A Numba kernel row by row: Dask chunks and ``jax.vmap``
=======================================================

A Numba ``@njit`` loop that works along the last axis declares
``signature="(n)->(n)"``: Dask then runs it on row blocks without merging them, and
``jax.vmap`` makes one batched call. A ``signature`` kernel must accept extra leading
(loop) dimensions, as a gufunc does: write it on the last axis only.
"""

import dask.array as da
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from numba import njit

from lazyapply import lazy


@lazy(signature="(n)->(n)", as_numpy=True)
@njit(cache=False)
def running_max_drawdown(x):
    """Drawdown from the running maximum, along the last axis, any leading dims."""
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for i in range(rows.shape[0]):
        peak = rows[i, 0]
        for j in range(rows.shape[1]):
            peak = max(peak, rows[i, j])
            out[i, j] = rows[i, j] - peak
    return out.reshape(x.shape)


rng = np.random.default_rng(1)
paths = np.cumsum(rng.standard_normal((200, 250)), axis=1)

eager = running_max_drawdown(paths)
chunked = running_max_drawdown(da.from_array(paths, chunks=(50, 250)))
print("dask blocks:", chunked.numblocks)  # row blocks, never merged
batched = jax.vmap(running_max_drawdown)(jnp.asarray(paths))
np.testing.assert_allclose(chunked.compute(), eager)
np.testing.assert_allclose(np.asarray(batched), eager, atol=1e-4)  # jax: float32
print("numpy, dask row blocks and jax.vmap agree")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(paths[0], label="path")
ax.plot(eager[0], label="drawdown")
ax.legend()
ax.set_title("a Numba loop, run per row block")
plt.tight_layout()
