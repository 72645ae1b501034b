"""fastmlp: multilayer perceptrons on the CPU with compiled, GIL-free kernels.

- fastmlp.ops: functional kernels (dense_forward, softmax_cross_entropy, ...)
- fastmlp.metrics: accuracy, top-k accuracy, log loss, R², confusion matrix, compiled
- fastmlp.NetworkPlan: a network whose whole training step is one call
- fastmlp.MLP: fit / predict / evaluate / save / load; fastmlp.sklearn: drop-in estimators
- fastmlp.datasets: the course's spiral and the embedded MNIST sample
- check_gradients(): analytic gradients against centred differences, at every level
- backends: "c" (compiled, default), "numba", "numpy" (the reference); see
  get_backend, set_backend, use_backend, available_backends and FASTMLP_BACKEND.
- threads: set_num_threads / get_num_threads (FASTMLP_NUM_THREADS, OMP_NUM_THREADS).
- show_config(): the backend, SIMD kernels, BLAS library and threads in use here.

The documentation site (docs/, built by tools/build_docs.sh) has the user guide, the API
reference and the example gallery.
"""

from fastmlp import datasets, metrics, ops, optimizers
from fastmlp._backend import available_backends, get_backend, set_backend, use_backend
from fastmlp._config import show_config
from fastmlp._threads import get_num_threads, set_num_threads
from fastmlp.gradcheck import check_gradients
from fastmlp.model import MLP
from fastmlp.plan import NetworkPlan

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "NetworkPlan",
    "available_backends",
    "check_gradients",
    "datasets",
    "get_backend",
    "get_num_threads",
    "metrics",
    "ops",
    "optimizers",
    "set_backend",
    "set_num_threads",
    "show_config",
    "use_backend",
]
