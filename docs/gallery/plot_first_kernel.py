"""
One kernel, every array library
===============================

A NumPy kernel decorated once with ``@lazy`` runs on NumPy, PyTorch, Dask and
inside ``jax.jit``; the result is an array of the caller's library.
"""

import dask.array as da
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import torch

from lazyapply import lazy


@lazy(as_numpy=True, elementwise=True)
def damped(t, rate):
    """A damped oscillation: plain NumPy, elementwise."""
    return np.exp(-rate * t) * np.cos(2 * np.pi * t)


t = np.linspace(0, 4, 400)
results = {
    "numpy": damped(t, 0.5),
    "torch": damped(torch.asarray(t), 0.5),
    "dask": damped(da.from_array(t, chunks=100), 0.5),
    "jax.jit": jax.jit(lambda a: damped(a, 0.5))(jnp.asarray(t)),
}
for name, r in results.items():
    print(f"{name:8} -> {type(r).__module__.split('.')[0]}.{type(r).__name__}")

values = {name: np.asarray(r) for name, r in results.items()}
for name, v in values.items():
    np.testing.assert_allclose(v, values["numpy"], atol=1e-6, err_msg=name)  # jax: f32

fig, ax = plt.subplots(figsize=(7, 3))
for (name, v), style in zip(values.items(), ["-", "--", ":", "-."], strict=True):
    ax.plot(t, v, style, label=name)
ax.set_xlabel("t")
ax.legend()
ax.set_title("the same kernel on four libraries")
plt.tight_layout()
