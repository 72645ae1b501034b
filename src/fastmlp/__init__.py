"""fastmlp: multilayer perceptrons on the CPU with compiled, GIL-free kernels.

- fastmlp.ops: functional kernels (dense_forward, softmax_cross_entropy, ...)
- fastmlp.NetworkPlan: a network whose whole training step is one call
- backends: "c" (compiled, default), "numba", "numpy" (the reference); see
  get_backend, set_backend, use_backend, available_backends and FASTMLP_BACKEND.
"""

from fastmlp import ops, optimizers
from fastmlp._backend import available_backends, get_backend, set_backend, use_backend
from fastmlp._config import show_config
from fastmlp.plan import NetworkPlan

__version__ = "0.1.0"

__all__ = [
    "NetworkPlan",
    "available_backends",
    "get_backend",
    "ops",
    "optimizers",
    "set_backend",
    "show_config",
    "use_backend",
]
