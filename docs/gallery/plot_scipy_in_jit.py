"""
A SciPy routine inside ``jax.jit``
==================================

JAX has no complete elliptic integral. ``scipy.special.ellipk`` does; declared
``elementwise``, it runs inside ``jax.jit`` as one host callback, and ``jax.vmap``
batches it into one call.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.special

from lazyapply import lazy


@lazy(as_numpy=True, elementwise=True)
def ellipk(m):
    return scipy.special.ellipk(m)


@jax.jit
def pendulum_period(amplitude):
    """Period of a pendulum of length g (in units of 2*pi), any amplitude."""
    m = jnp.sin(amplitude / 2) ** 2
    return 2 / jnp.pi * ellipk(m)


amplitudes = jnp.linspace(0.01, 3.0, 200)
periods = pendulum_period(amplitudes)
print(type(periods).__name__, periods.shape, periods.dtype)
np.testing.assert_allclose(periods[0], 1.0, rtol=1e-4)  # small swings: 2*pi*sqrt(l/g)
batched = jax.vmap(pendulum_period)(amplitudes.reshape(20, 10))
np.testing.assert_allclose(np.asarray(batched).ravel(), periods, rtol=1e-6)
print("jax.jit and jax.vmap of a SciPy routine agree")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(amplitudes, periods)
ax.set_xlabel("amplitude (rad)")
ax.set_ylabel("period / small-swing period")
plt.tight_layout()
