"""Names of activations, losses and optimizers, and their codes in the C core (fastmlp.h)."""

from __future__ import annotations

# name -> (code, default alpha); alpha is the slope of leaky_relu, the scale of elu and
# maxout's pieces per unit (a layer's W then has pieces columns per unit).
# The formulas are in csrc/kernels/activation.inc and the user guide's kernels page.
ACTIVATIONS = {
    "identity": (0, 0.0),
    "relu": (1, 0.0),
    "leaky_relu": (2, 0.01),
    "sigmoid": (3, 0.0),
    "tanh": (4, 0.0),
    "elu": (5, 1.0),
    "softplus": (6, 0.0),
    "selu": (7, 0.0),
    "gelu": (8, 0.0),
    "gelu_tanh": (9, 0.0),
    "swish": (10, 0.0),
    "mish": (11, 0.0),
    "softsign": (12, 0.0),
    "hard_sigmoid": (13, 0.0),
    "maxout": (14, 2.0),
}
ACTIVATIONS_WITH_ALPHA = ("leaky_relu", "elu", "maxout")
MAX_PIECES = 64  # maxout's pieces per unit at most (FM_MAX_PIECES)
ACTIVATION_ALIASES = {"silu": "swish"}
# The activations whose derivative is not a function of their output (not monotonic:
# one output, two inputs), and maxout (which piece won): their backward pass reads the
# saved pre-activation z.
ACTIVATIONS_NEEDING_Z = ("gelu", "gelu_tanh", "swish", "mish", "maxout")

# name -> code. The classification losses take logits: the output layer is linear.
LOSSES = {
    "softmax_cross_entropy": 0,
    "sigmoid_binary_cross_entropy": 1,
    "mean_squared_error": 2,
    "poisson": 3,
    "absolute_error": 4,
    "huber": 5,
    "multiclass_hinge": 6,
    "squared_multiclass_hinge": 7,
    "categorical_cross_entropy": 8,
    "log_cosh": 9,
    "kl_divergence": 10,
}
# the losses whose y is one integer label per row (the others take a row of targets)
LABEL_LOSSES = ("softmax_cross_entropy", "multiclass_hinge", "squared_multiclass_hinge")
# the losses with a margin (NetworkPlan(margin=...))
HINGE_LOSSES = ("multiclass_hinge", "squared_multiclass_hinge")
# the losses on target rows of probabilities (one-hot or soft)
SOFT_TARGET_LOSSES = ("categorical_cross_entropy", "kl_divergence")
LOSS_ALIASES = {
    "cross_entropy": "softmax_cross_entropy",
    "softmax": "softmax_cross_entropy",
    "binary_cross_entropy": "sigmoid_binary_cross_entropy",
    "bce": "sigmoid_binary_cross_entropy",
    "mse": "mean_squared_error",
    "mae": "absolute_error",
    "hinge": "multiclass_hinge",
    "svm": "multiclass_hinge",
    "squared_hinge": "squared_multiclass_hinge",
    "kl": "kl_divergence",
}

# name -> code (fm_optimizer_kind)
OPTIMIZERS = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3, "adamw": 4, "rmsprop": 5,
              "adagrad": 6, "adadelta": 7, "adamax": 8, "nadam": 9}
