"""Run a script in a fresh interpreter that sees four CPU devices (JAX sharding).

XLA fixes its device count when it starts, so a test of sharding on four devices runs
its script in a new process with ``--xla_force_host_platform_device_count``; this
checkout comes first on its path, so the copy under test is the one it imports.
Every script starts with :data:`PREAMBLE`: the imports and meshes they all use.
"""

from __future__ import annotations

from ._python import run_python

__all__ = ["PREAMBLE", "run_on_devices"]

#: What every script has before its own lines: the imports, the four devices, a
#: mesh with one axis over them (``line``, axis ``"d"``), a 2 x 2 mesh (``grid``,
#: axes ``"a"``, ``"b"``) and ``put(a, mesh, spec)``, ``a`` laid out on a mesh.
PREAMBLE = """\
import json, sys
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from lazyapply import explain_native, lazy, lazy_apply

assert jax.device_count() == 4, jax.devices()
devices = np.array(jax.devices())
line = Mesh(devices, ("d",))
grid = Mesh(devices.reshape(2, 2), ("a", "b"))

def put(a, mesh, spec):
    return jax.device_put(jnp.asarray(a), NamedSharding(mesh, spec))
"""


def run_on_devices(script: str, *args: str, timeout: int = 600) -> str:
    """Run ``python -c PREAMBLE+script *args`` on four CPU devices; return its stdout.

    Fails the calling test with the end of the script's stderr if it exits non-zero.
    """
    env = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    return run_python("-c", PREAMBLE + script, *args, env=env, timeout=timeout).stdout
