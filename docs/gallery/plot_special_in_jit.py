"""
SciPy special functions inside ``jax.jit``
==========================================

``jax.scipy.special`` has no Mathieu functions, no Struve functions and no
incomplete elliptic integrals. ``lazy(scipy.special.X)`` runs SciPy's own compiled
loop inside the jitted program, as native code (no Python callback), with SciPy's
values bit for bit; ``jax.vmap`` batches it into one call, and ``jax.grad`` goes
through the functions whose derivatives lazyapply declares.

Here: the period of a pendulum at any amplitude (``ellipk``), the Struve function
``H_v`` over a grid of orders (``vmap``), and the gradient of a log-likelihood
built from ``gammaln`` and ``xlogy``.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.special as sc

from lazyapply import explain_native, lazy

jax.config.update("jax_enable_x64", True)

ellipk = lazy(sc.ellipk)
struve = lazy(sc.struve)
gammaln = lazy(sc.gammaln)
xlogy = lazy(sc.xlogy)


@jax.jit
def pendulum_period(amplitude):
    """Period over the small-swing period, for amplitudes in radians."""
    return 2 / jnp.pi * ellipk(jnp.sin(amplitude / 2) ** 2)


amplitudes = jnp.linspace(0.01, 3.0, 200)
periods = pendulum_period(amplitudes)
expected = 2 / np.pi * sc.ellipk(np.sin(np.asarray(amplitudes) / 2) ** 2)
np.testing.assert_array_equal(periods, expected)  # SciPy's bits
print(explain_native(sc.ellipk))
lowered = pendulum_period.lower(amplitudes).as_text()
print("host callback in the program:", "callback" in lowered)

# %%
# ``jax.vmap`` over the order: one native call for the whole grid.

orders = jnp.arange(0.0, 4.0)
x = jnp.linspace(0.0, 10.0, 300)
grid = jax.jit(jax.vmap(struve, in_axes=(0, None)))(orders, x)
np.testing.assert_array_equal(grid, sc.struve(np.asarray(orders)[:, None], x))
print(grid.shape, explain_native(sc.struve))

# %%
# Gradients: the Poisson log-likelihood of a rate, differentiated through
# ``gammaln`` and ``xlogy``, checked against the closed form ``sum(k) / rate - n``.

counts = jnp.asarray([2.0, 0.0, 5.0, 3.0, 1.0])


def log_likelihood(rate):
    return jnp.sum(xlogy(counts, rate) - rate - gammaln(counts + 1))


rate = jnp.asarray(2.5)
slope = jax.jit(jax.grad(log_likelihood))(rate)
np.testing.assert_allclose(slope, counts.sum() / rate - counts.size, rtol=1e-12)
print("d loglik / d rate:", float(slope))

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(amplitudes, periods)
left.set_xlabel("amplitude (rad)")
left.set_ylabel("period / small-swing period")
for v, row in zip(np.asarray(orders), np.asarray(grid), strict=True):
    right.plot(x, row, label=f"H_{v:g}")
right.set_xlabel("x")
right.legend()
plt.tight_layout()
