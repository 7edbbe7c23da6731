"""
Gradients through a SciPy routine
=================================

``scipy.special.ellipk`` is opaque to JAX's autodiff. Declare its derivative once,
as another eager kernel, and ``jax.grad`` works through it, inside ``jax.jit`` and
under ``jax.vmap``. Here: the amplitude at which a pendulum's period is 20 % longer
than a small swing's, found by Newton's method on ``jax.grad``.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.special

from lazyapply import lazy


def ellipk_vjp(g, out, m):
    """dK/dm = (E(m) - (1 - m) K(m)) / (2 m (1 - m)), times the incoming cotangent."""
    e = scipy.special.ellipe(m)
    return (g * (e - (1 - m) * out) / (2 * m * (1 - m)),)


ellipk = lazy(scipy.special.ellipk, as_numpy=True, elementwise=True, vjp=ellipk_vjp)


def period(amplitude):
    """Period of a pendulum in units of the small-swing period."""
    return 2 / jnp.pi * ellipk(jnp.sin(amplitude / 2) ** 2)


dperiod = jax.jit(jax.grad(period))
amplitude = jnp.asarray(1.0)
for _ in range(6):  # Newton's method on period(a) = 1.2
    amplitude = amplitude - (period(amplitude) - 1.2) / dperiod(amplitude)
print(f"amplitude {float(amplitude):.4f} rad, period {float(period(amplitude)):.6f}")
np.testing.assert_allclose(period(amplitude), 1.2, rtol=1e-5)

# jax.vmap of jax.grad against central finite differences
amplitudes = jnp.linspace(0.1, 3.0, 100)
slopes = jax.jit(jax.vmap(jax.grad(period)))(amplitudes)
h = 1e-3
finite = (period(amplitudes + h) - period(amplitudes - h)) / (2 * h)
np.testing.assert_allclose(slopes, finite, rtol=2e-2)
print("vmap(grad) agrees with finite differences")

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(amplitudes, period(amplitudes), label="period")
ax.plot(amplitudes, slopes, label="d period / d amplitude (jax.grad)")
ax.axvline(float(amplitude), color="grey", linestyle=":")
ax.set_xlabel("amplitude (rad)")
ax.legend()
plt.tight_layout()
