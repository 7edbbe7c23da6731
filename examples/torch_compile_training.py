"""Train a small torch model whose layer is a Numba kernel, under ``torch.compile``.

Run: ``python examples/torch_compile_training.py``. The layer ``soft_clip`` is a
Numba ``@njit`` kernel with a declared vjp (also Numba). Under ``torch.compile`` the
kernel becomes lazyapply's automatic custom op (one graph, no break), and the compiled
backward runs the vjp. Prints the loss per step, one ``OK``/``FAIL`` line per check,
and exits with status 1 if a check fails; skips (status 0) without numba or torch.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np

for module in ("numba", "torch"):
    if importlib.util.find_spec(module) is None:
        print(f"SKIP all: {module} is not installed (pip install {module})")
        sys.exit(0)

import torch  # noqa: E402
from numba import njit  # noqa: E402

from lazyapply import lazy  # noqa: E402


@lazy(as_numpy=True, elementwise=True)
@njit(cache=False)
def soft_clip(x: Any, limit: Any) -> Any:
    """``limit * tanh(x / limit)``, elementwise, in compiled machine code."""
    return limit * np.tanh(x / limit)


@soft_clip.defvjp
@njit(cache=False)
def soft_clip_vjp(g: Any, out: Any, x: Any, limit: Any) -> Any:
    t = np.tanh(x / limit)
    # limit (shape (1,)) was broadcast against x: its cotangent is summed back.
    g_limit = np.sum(g * (t - x / limit * (1 - t * t)))
    return g * (1 - t * t), np.full_like(limit, g_limit)


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1, dtype=torch.float64)
        self.limit = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))

    def forward(self, x: Any) -> Any:
        return soft_clip(self.linear(x), self.limit)


def main() -> int:
    torch.manual_seed(0)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = 1.5 * torch.tanh(x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=x.dtype))
    model = Model()
    step_fn = torch.compile(model, fullgraph=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for step in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(step_fn(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 5 == 0 or step == 24:
            print(f"step {step}: loss {loss.item():.4f}")
    explained = torch._dynamo.explain(model)(x)
    checks = {
        "loss decreases": losses[-1] < 0.5 * losses[0],
        "one graph, no graph break": explained.graph_break_count == 0,
        "compiled matches eager": torch.allclose(step_fn(x), model(x)),
        "gradcheck of the kernel": torch.autograd.gradcheck(
            soft_clip,
            (
                torch.randn(5, dtype=torch.float64, requires_grad=True),
                torch.tensor([1.5], dtype=torch.float64, requires_grad=True),
            ),
        ),
    }
    for label, ok in checks.items():
        print(f"{'OK  ' if ok else 'FAIL'} {label}")
    if all(checks.values()):
        print("all checks passed")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
