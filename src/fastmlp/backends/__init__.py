"""The three interchangeable implementations of fastmlp's kernels.

Each backend module provides every name in BACKEND_API with the same signature as the
reference, numpy_backend: validated, C-contiguous arrays in, preallocated outputs
written, no checks of its own beyond what it cannot trust.
"""

BACKEND_MODULES = {
    "c": "fastmlp.backends._c_kernels",
    "numba": "fastmlp.backends.numba_backend",
    "numpy": "fastmlp.backends.numpy_backend",
}

BACKEND_API = (
    "NAME",
    "activation_forward",
    "activation_backward",
    "maxout_forward",
    "maxout_backward",
    "dense_forward",
    "dense_backward",
    "softmax",
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "mean_squared_error",
    "poisson",
    "absolute_error",
    "huber",
    "multiclass_hinge",
    "categorical_cross_entropy",
    "kl_divergence",
    "log_cosh",
    "optimizer_update",
    "all_finite",
    "classification_counts",
    "log_loss",
    "regression_sums",
    "Network",
)
