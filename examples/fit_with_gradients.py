"""Fit a model whose forward pass is a Numba kernel, with JAX and with PyTorch.

``damped(p, t)`` evaluates ``a * exp(-k t) * cos(w t)`` for the parameters
``p = (a, k, w)`` in an explicit Numba loop; ``damped_vjp`` is its hand-written
vector-Jacobian product, declared once with ``@damped.defvjp``. lazyapply then gives:

- JAX: ``jax.grad`` inside ``jax.jit`` (the kernel and its vjp run as host callbacks),
  used by a few lines of Adam;
- PyTorch: ``loss.backward()`` on tensors that require grad, used by
  ``torch.optim.Adam``.

Each gradient is checked against central finite differences of the NumPy loss, and
each fit must recover the parameters. Run: ``python examples/fit_with_gradients.py``;
exits with status 1 if a check fails. A missing library is a ``SKIP`` line.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from _report import check, finish, installed, skip, timed

from lazyapply import NotDifferentiableError, lazy

try:
    from numba import njit
except ImportError:
    print("SKIP all: numba is not installed (pip install numba)")
    sys.exit(0)


@lazy(as_numpy=True, shape=lambda p, t: t.shape)
@njit(cache=False)
def damped(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``a * exp(-k t) * cos(w t)`` for ``p = (a, k, w)``, one sample at a time."""
    a, k, w = p[0], p[1], p[2]
    out = np.empty_like(t)
    for i in range(t.size):
        out[i] = a * np.exp(-k * t[i]) * np.cos(w * t[i])
    return out


@damped.defvjp
@njit(cache=False)
def damped_vjp(g: np.ndarray, out: np.ndarray, p: np.ndarray, t: np.ndarray) -> Any:
    """Cotangents of ``p`` (summed over samples) and of ``t`` (one per sample)."""
    a, k, w = p[0], p[1], p[2]
    gp = np.zeros_like(p)
    gt = np.empty_like(t)
    for i in range(t.size):
        e = np.exp(-k * t[i])
        c, s = np.cos(w * t[i]), np.sin(w * t[i])
        gp[0] += g[i] * e * c
        gp[1] += g[i] * -t[i] * a * e * c
        gp[2] += g[i] * -t[i] * a * e * s
        gt[i] = g[i] * a * e * (-k * c - w * s)
    return gp, gt


TRUE = np.asarray([1.5, 0.4, 2.0])
START = np.asarray([1.0, 0.6, 1.7])
T = np.linspace(0.0, 6.0, 200)
Y = damped.eager(TRUE, T) + 0.01 * np.random.default_rng(0).standard_normal(T.size)
STEPS = 400


def loss_np(p: np.ndarray) -> float:
    return float(np.mean((damped.eager(p, T) - Y) ** 2))


def finite_differences(p: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the NumPy loss: what every gradient is checked against."""
    out = np.empty_like(p)
    for i in range(p.size):
        d = np.zeros_like(p)
        d[i] = h
        out[i] = (loss_np(p + d) - loss_np(p - d)) / (2 * h)
    return out


def fit_jax() -> None:
    import jax
    import jax.numpy as jnp

    t, y = jnp.asarray(T), jnp.asarray(Y)

    def loss(p: Any) -> Any:
        return jnp.mean((damped(p, t) - y) ** 2)

    grad = jax.jit(jax.grad(loss))
    p0 = jnp.asarray(START)
    g, us = timed(lambda: grad(p0).block_until_ready())
    check(
        "jax.jit(jax.grad(loss)) vs finite diffs",
        g,
        finite_differences(START),
        us,
        1e-3,
    )

    @jax.jit
    def adam_step(state: Any, i: Any) -> Any:
        p, m, v = state
        gi = jax.grad(loss)(p)
        m = 0.9 * m + 0.1 * gi
        v = 0.999 * v + 0.001 * gi**2
        mh, vh = m / (1 - 0.9 ** (i + 1)), v / (1 - 0.999 ** (i + 1))
        return (p - 0.02 * mh / (jnp.sqrt(vh) + 1e-8), m, v), None

    def fit() -> Any:
        zeros = jnp.zeros_like(p0)
        state, _ = jax.lax.scan(adam_step, (p0, zeros, zeros), jnp.arange(STEPS))
        return state[0].block_until_ready()

    p, us = timed(fit, repeat=3)
    check(f"jax: Adam, {STEPS} steps, recovers (a, k, w)", p, TRUE, us, 2e-2)


def fit_torch() -> None:
    import torch

    t, y = torch.asarray(T), torch.asarray(Y)
    p = torch.tensor(START, requires_grad=True)
    try:
        loss = torch.mean((damped(p, t) - y) ** 2)
        loss.backward()
    except NotDifferentiableError as e:
        skip("torch", f"no autograd for lazy kernels in this build ({e})")
        return
    except RuntimeError as e:  # torch's own refusal before the autograd support
        if "requires grad" not in str(e):
            raise
        skip("torch", f"no autograd for lazy kernels in this build ({e})")
        return
    assert p.grad is not None
    check(
        "torch: loss.backward() vs finite diffs",
        p.grad,
        finite_differences(START),
        0.0,
        1e-3,
    )

    def fit() -> Any:
        q = torch.tensor(START, requires_grad=True)
        opt = torch.optim.Adam([q], lr=0.02)
        for _ in range(STEPS):
            opt.zero_grad()
            torch.mean((damped(q, t) - y) ** 2).backward()
            opt.step()
        return q.detach()

    q, us = timed(fit, repeat=1)
    check(f"torch.optim.Adam, {STEPS} steps, recovers (a, k, w)", q, TRUE, us, 2e-2)


def main() -> int:
    # The vjp is a lazy function too: the loss's gradient by hand, on NumPy.
    out = damped(START, T)
    g_out = 2 * (out - Y) / T.size  # d loss / d out
    (gp, _), us = timed(lambda: damped.vjp(g_out, out, START, T))
    check("numpy: damped.vjp vs finite diffs", gp, finite_differences(START), us, 1e-4)
    if installed("jax"):
        fit_jax()
    else:
        skip("jax", "jax is not installed (pip install jax)")
    if installed("torch"):
        fit_torch()
    else:
        skip("torch", "torch is not installed (pip install torch)")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
