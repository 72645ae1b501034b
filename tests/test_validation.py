"""The input rules of fastmlp._validation: the documented exception, naming the argument.

TypeError for a wrong kind of thing (integer arrays, mixed float dtypes, float labels,
a wrong `out` dtype); ValueError for a wrong value (shape, range, name, read-only or
non-contiguous `out`). Every message starts with, or contains, the argument's name.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import ops

F64, F32 = np.float64, np.float32


def _dense(dtype=F64):
    return np.ones((4, 3), dtype), np.ones((3, 2), dtype), np.zeros(2, dtype)


# -- arrays -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, name",
    [
        ((np.ones(3), np.ones((3, 2)), np.zeros(2)), "X"),
        ((np.ones((1, 4, 3)), np.ones((3, 2)), np.zeros(2)), "X"),
        ((np.ones((4, 3)), np.ones(3), np.zeros(2)), "W"),
    ],
    ids=["X-1d", "X-3d", "W-1d"],
)
def test_dense_forward_wrong_ndim(backend, args, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected a 2-D array"):
        ops.dense_forward(*args)


def test_dense_forward_shapes_must_chain(backend):
    with pytest.raises(ValueError, match=r"X and W do not chain"):
        ops.dense_forward(np.ones((4, 3)), np.ones((5, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"X and W do not chain"):
        ops.dense_backward(
            np.ones((4, 2)), np.ones((4, 3)), np.ones((5, 2)), np.ones((4, 2)), "relu"
        )


@pytest.mark.parametrize(
    "b",
    [np.zeros(3), np.zeros(1), np.zeros((2, 2)), np.zeros((1, 3))],
    ids=["3", "1", "2x2", "1x3"],
)
def test_dense_forward_wrong_bias_length(backend, b):
    X, W, _ = _dense()
    with pytest.raises(ValueError, match=r"^b: expected shape"):
        ops.dense_forward(X, W, b)


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8, bool])
def test_integer_arrays_are_refused(backend, int_dtype):
    X, W, b = _dense()
    with pytest.raises(TypeError, match=r"^X: expected a float32 or float64 array"):
        ops.dense_forward(X.astype(int_dtype), W, b)
    with pytest.raises(TypeError, match=r"^Z:"):
        ops.activation_forward("relu", np.ones((2, 2), int_dtype))
    with pytest.raises(TypeError, match=r"^logits:"):
        ops.softmax_cross_entropy(np.ones((2, 2), int_dtype), np.array([0, 1]))


def test_other_dtypes_are_refused(backend):
    for bad in (
        np.ones((2, 2), np.float16),
        np.ones((2, 2), np.complex128),
        np.array([["a", "b"]]),
    ):
        with pytest.raises(TypeError, match=r"^Z:"):
            ops.activation_forward("tanh", bad)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: ops.dense_forward(np.ones((4, 3), F32), np.ones((3, 2)), np.zeros(2)), "W"),
        (lambda: ops.dense_forward(np.ones((4, 3)), np.ones((3, 2)), np.zeros(2, F32)), "b"),
        (lambda: ops.activation_backward("relu", np.ones(3, F32), np.ones(3)), "A"),
        (
            lambda: ops.dense_backward(
                np.ones((4, 2)), np.ones((4, 3), F32), np.ones((3, 2)), np.ones((4, 2)), "relu"
            ),
            "X",
        ),
        (
            lambda: ops.sigmoid_binary_cross_entropy(np.ones((2, 2)), np.ones((2, 2), F32)),
            "targets",
        ),
        (lambda: ops.mean_squared_error(np.ones((2, 2), F32), np.ones((2, 2))), "targets"),
        (lambda: ops.sgd_update(np.ones(3), np.ones(3, F32), 0.1), "grad"),
        (lambda: ops.momentum_update(np.ones(3), np.ones(3), np.ones(3, F32), 0.1), "velocity"),
    ],
    ids=[
        "dense-W",
        "dense-b",
        "act_backward-A",
        "dense_backward-X",
        "bce-targets",
        "mse-targets",
        "sgd-grad",
        "momentum-velocity",
    ],
)
def test_mixed_float_dtypes_are_refused(backend, call, name):
    with pytest.raises(TypeError, match=rf"^{name}:"):
        call()


# -- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("y", [[0, 3, 1], [0, 1, 7]], ids=["k", "k+4"])
def test_labels_out_of_range(backend, y):
    with pytest.raises(ValueError, match=r"^y: class labels must lie in \[0, 3\)"):
        ops.softmax_cross_entropy(np.zeros((3, 3)), np.array(y))


def test_negative_labels(backend):
    with pytest.raises(ValueError, match=r"^y: .*found -1"):
        ops.softmax_cross_entropy(np.zeros((3, 3)), np.array([0, -1, 2]))


@pytest.mark.parametrize(
    "y", [np.array([0.0, 1.0, 2.0]), np.array([True, False, True])], ids=["float", "bool"]
)
def test_non_integer_labels(backend, y):
    with pytest.raises(TypeError, match=r"^y: class labels must be integers"):
        ops.softmax_cross_entropy(np.zeros((3, 3)), y)


@pytest.mark.parametrize("y", [np.array([0, 1]), np.array([[0], [1], [2]])], ids=["short", "2d"])
def test_labels_of_the_wrong_shape(backend, y):
    with pytest.raises(ValueError, match=r"^y: expected shape \(3,\)"):
        ops.softmax_cross_entropy(np.zeros((3, 3)), y)


@pytest.mark.parametrize(
    "w, exc, pattern",
    [
        (np.array([1.0, -1.0, 1.0]), ValueError, "non-negative"),
        (np.zeros(3), ValueError, "positive sum"),
        (np.ones(2), ValueError, "expected shape"),
        (np.ones(3, np.int64), TypeError, "float32 or float64"),
    ],
    ids=["negative", "zero-sum", "length", "int"],
)
def test_bad_sample_weight(backend, w, exc, pattern):
    with pytest.raises(exc, match=rf"^sample_weight: .*{pattern}"):
        ops.softmax_cross_entropy(np.zeros((3, 3)), np.array([0, 1, 2]), sample_weight=w)


def test_targets_of_the_wrong_shape(backend):
    with pytest.raises(ValueError, match=r"^targets: expected shape"):
        ops.mean_squared_error(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"^targets: expected shape"):
        ops.sigmoid_binary_cross_entropy(np.zeros((3, 2)), np.zeros(3))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_logits_need_a_row_and_a_column(backend, shape):
    with pytest.raises(ValueError, match=r"^Z: expected at least one row"):
        ops.softmax(np.zeros(shape))
    with pytest.raises(ValueError, match=r"^logits: expected at least one row"):
        ops.softmax_cross_entropy(np.zeros(shape), np.zeros(shape[0], np.int64))


# -- names and scalars --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prelu", "ReLU", "", None, 1])
def test_unknown_activation(backend, name):
    with pytest.raises(ValueError, match=r"^activation: unknown"):
        ops.activation_forward(name, np.ones(3))
    X, W, b = _dense()
    with pytest.raises(ValueError, match=r"^activation: unknown"):
        ops.dense_forward(X, W, b, name)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_leaky_relu_alpha_range(backend, alpha):
    with pytest.raises(ValueError, match=r"^alpha: leaky_relu needs 0 <= alpha < 1"):
        ops.activation_forward("leaky_relu", np.ones(3), alpha=alpha)


def test_leaky_relu_alpha_edges_accepted(backend):
    np.testing.assert_array_equal(
        ops.activation_forward("leaky_relu", np.array([-2.0, 3.0]), alpha=0.0), [0.0, 3.0]
    )
    np.testing.assert_allclose(
        ops.activation_forward("leaky_relu", np.array([-2.0, 3.0]), alpha=0.999),
        [-1.998, 3.0],
        rtol=1e-15,
    )


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_elu_alpha_must_be_positive(backend, alpha):
    with pytest.raises(ValueError, match=r"^alpha: elu needs alpha > 0"):
        ops.activation_forward("elu", np.ones(3), alpha=alpha)


def test_alpha_only_for_leaky_relu_and_elu(backend):
    with pytest.raises(ValueError, match=r"^alpha: only"):
        ops.activation_forward("relu", np.ones(3), alpha=0.1)


@pytest.mark.parametrize(
    "alpha, exc",
    [(np.nan, ValueError), (np.inf, ValueError), ("0.1", TypeError), (True, TypeError)],
)
def test_alpha_must_be_a_finite_real(backend, alpha, exc):
    with pytest.raises(exc, match=r"^alpha:"):
        ops.activation_forward("leaky_relu", np.ones(3), alpha=alpha)


@pytest.mark.parametrize("kw", [{"l2": -0.1}, {"l1": -1.0}, {"l2": np.nan}])
def test_negative_penalties(backend, kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=rf"^{name}:"):
        ops.dense_backward(
            np.ones((4, 2)), np.ones((4, 3)), np.ones((3, 2)), np.ones((4, 2)), "relu", **kw
        )


# -- out= and in-place arguments -----------------------------------------------------------

OUT_CALLS = {
    "activation_forward": (lambda out: ops.activation_forward("relu", np.ones((4, 2)), out=out)),
    "activation_backward": (
        lambda out: ops.activation_backward("relu", np.ones((4, 2)), np.ones((4, 2)), out=out)
    ),
    "dense_forward": (
        lambda out: ops.dense_forward(np.ones((4, 3)), np.ones((3, 2)), np.zeros(2), out=out)
    ),
    "softmax": (lambda out: ops.softmax(np.ones((4, 2)), out=out)),
    "log_softmax": (lambda out: ops.log_softmax(np.ones((4, 2)), out=out)),
    "softmax_cross_entropy": (
        lambda out: ops.softmax_cross_entropy(np.ones((4, 2)), np.zeros(4, np.int64), out=out)
    ),
    "sigmoid_binary_cross_entropy": (
        lambda out: ops.sigmoid_binary_cross_entropy(np.ones((4, 2)), np.ones((4, 2)), out=out)
    ),
    "mean_squared_error": (
        lambda out: ops.mean_squared_error(np.ones((4, 2)), np.ones((4, 2)), out=out)
    ),
}


def _read_only(shape, dtype=F64):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


BAD_OUTS = {
    "wrong-shape": (lambda: np.zeros((2, 4)), ValueError, "expected shape"),
    "wrong-dtype": (lambda: np.zeros((4, 2), F32), TypeError, "expected dtype"),
    "read-only": (lambda: _read_only((4, 2)), ValueError, "read-only"),
    "non-contiguous": (lambda: np.zeros((4, 4))[:, ::2], ValueError, "C-contiguous"),
    "fortran": (lambda: np.zeros((4, 2), order="F"), ValueError, "C-contiguous"),
    "list": (lambda: [[0.0] * 2] * 4, TypeError, "numpy.ndarray"),
}


@pytest.mark.parametrize("bad", list(BAD_OUTS))
@pytest.mark.parametrize("function", list(OUT_CALLS))
def test_bad_out(backend, function, bad):
    make, exc, pattern = BAD_OUTS[bad]
    with pytest.raises(exc, match=rf"^out: .*{pattern}"):
        OUT_CALLS[function](make())


def test_dense_forward_out_must_not_overlap_inputs(backend):
    X = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"^out: must not overlap X"):
        ops.dense_forward(X, np.eye(3), np.zeros(3), out=X)


@pytest.mark.parametrize(
    "param, exc, pattern",
    [
        (_read_only(3), ValueError, "read-only"),
        (np.zeros(6)[::2], ValueError, "C-contiguous"),
        (np.zeros(3, np.int64), TypeError, "float32 or float64"),
        ([0.0, 0.0, 0.0], TypeError, "numpy.ndarray"),
    ],
    ids=["read-only", "strided", "int", "list"],
)
def test_bad_param_for_sgd_update(backend, param, exc, pattern):
    grad = np.ones(3, np.int64 if getattr(param, "dtype", None) == np.int64 else F64)
    with pytest.raises(exc, match=rf"^param: .*{pattern}"):
        ops.sgd_update(param, grad, 0.1)


def test_read_only_optimizer_state(backend):
    with pytest.raises(ValueError, match=r"^velocity: is read-only"):
        ops.momentum_update(np.zeros(3), np.ones(3), _read_only(3), 0.1)
    with pytest.raises(ValueError, match=r"^m: is read-only"):
        ops.adam_update(np.zeros(3), np.ones(3), _read_only(3), np.zeros(3), 1)
    with pytest.raises(ValueError, match=r"^v: expected shape"):
        ops.adam_update(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(4), 1)


def test_failed_update_leaves_param_alone(backend):
    param = np.ones(3)
    with pytest.raises(ValueError):
        ops.sgd_update(param, np.ones(4), 0.1)
    np.testing.assert_array_equal(param, 1)


@pytest.mark.parametrize("lr", [-0.1, -1e-12, np.nan, np.inf])
def test_bad_learning_rate(backend, lr):
    with pytest.raises(ValueError, match=r"^lr:"):
        ops.sgd_update(np.zeros(3), np.ones(3), lr)
    with pytest.raises(ValueError, match=r"^lr:"):
        ops.momentum_update(np.zeros(3), np.ones(3), np.zeros(3), lr)
    with pytest.raises(ValueError, match=r"^lr:"):
        ops.adam_update(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(3), 1, lr=lr)


@pytest.mark.parametrize(
    "kw, name", [({"momentum": 1.0}, "momentum"), ({"momentum": -0.5}, "momentum")]
)
def test_bad_momentum(backend, kw, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        ops.momentum_update(np.zeros(3), np.ones(3), np.zeros(3), 0.1, **kw)


@pytest.mark.parametrize(
    "kw, exc, name",
    [
        ({"step": 0}, ValueError, "step"),
        ({"step": 1.5}, TypeError, "step"),
        ({"beta1": 1.0}, ValueError, "beta1"),
        ({"beta2": -0.1}, ValueError, "beta2"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ],
    ids=["step0", "step-float", "beta1", "beta2", "eps", "weight_decay"],
)
def test_bad_adam_hyper_parameters(backend, kw, exc, name):
    args = {"step": 1, **kw}
    with pytest.raises(exc, match=rf"^{name}:"):
        ops.adam_update(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(3), **args)


# -- NetworkPlan ----------------------------------------------------------------------------


def test_plan_unknown_loss():
    with pytest.raises(ValueError, match=r"^loss: unknown 'focal'"):
        fastmlp.NetworkPlan([2, 3], loss="focal")


def test_plan_unknown_optimizer():
    with pytest.raises(ValueError, match=r"^optimizer: unknown 'lion'"):
        fastmlp.NetworkPlan([2, 3], optimizer="lion")


def test_plan_unknown_activation():
    with pytest.raises(ValueError, match=r"^activation: unknown 'prelu'"):
        fastmlp.NetworkPlan([2, 4, 3], "prelu")


@pytest.mark.parametrize(
    "kw, exc, name",
    [
        ({"layer_sizes": [3]}, ValueError, "layer_sizes"),
        ({"layer_sizes": [3, 0, 2]}, ValueError, "layer_sizes"),
        ({"layer_sizes": [3, 2.5, 2]}, TypeError, "layer_sizes"),
        ({"activations": ["relu", "relu", "relu"]}, ValueError, "activations"),
        ({"dtype": np.int32}, TypeError, "dtype"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"l2": -1.0}, ValueError, "l2"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"init": "zeros"}, ValueError, "init"),
        ({"alpha": [0.1]}, ValueError, "alpha"),
        ({"backend": "cuda"}, ValueError, "backend"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_plan_bad_arguments(kw, exc, name):
    args = {"layer_sizes": [3, 4, 2], **kw}
    with pytest.raises(exc, match=rf"^{name}:"):
        fastmlp.NetworkPlan(**args)


def test_plan_classification_loss_needs_a_linear_output(backend):
    # the classification losses take logits: an output activation is an error, on every
    # backend, and at the latest when the plan first trains (never silently trained)
    with pytest.raises(ValueError):
        plan = fastmlp.NetworkPlan([2, 3], ["sigmoid"], loss="softmax_cross_entropy")
        plan.train_step(np.ones((2, 2)), np.array([0, 1]))


def test_batch_larger_than_the_plan(backend):
    plan = fastmlp.NetworkPlan([2, 3], batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"^X: expected 1 to batch_size=4 rows, got 5"):
        plan.train_step(np.ones((5, 2)), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"^batch_size: at most"):
        plan.train_epoch(np.ones((10, 2)), np.zeros(10, np.int64), batch_size=5)


def test_plan_bad_inputs(backend):
    plan = fastmlp.NetworkPlan([2, 3], batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"^X: expected shape \(n, 2\)"):
        plan.train_step(np.ones((3, 4)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"^y: class labels must lie in \[0, 3\)"):
        plan.train_step(np.ones((3, 2)), np.array([0, 1, 3]))
    with pytest.raises(TypeError, match=r"^y: class labels must be integers"):
        plan.train_step(np.ones((3, 2)), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"^X: expected at least one row"):
        plan.train_epoch(np.ones((0, 2)), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"^batch_losses: expected shape"):
        plan.train_epoch(np.ones((5, 2)), np.zeros(5, np.int64), batch_losses=np.zeros(1))


def test_plan_refuses_labels_out_of_range_before_changing_anything(backend):
    # checked by the plan or inside the backend's step (c, numba): either way a refused
    # step leaves no trace, even with the bad label in the fused step's second block
    plans = [
        fastmlp.NetworkPlan([2, 4, 3], optimizer="adam", batch_size=64, seed=0) for _ in range(2)
    ]
    X = np.linspace(-1, 1, 80).reshape(40, 2)
    y = np.arange(40) % 3
    for plan in plans:
        plan.train_step(X, y)
    for bad in (3, -1):
        y_bad = y.copy()
        y_bad[37] = bad
        with pytest.raises(ValueError, match=r"^y: class labels must lie in \[0, 3\), found"):
            plans[0].train_step(X, y_bad)
        assert plans[0].step == 1
    for plan in plans:
        plan.train_step(X, y)
    for (W, b), (W1, b1) in zip(plans[0].weights, plans[1].weights):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)


# -- backend names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cuda", "C", "", "numpy "])
def test_unknown_backend_name(name):
    with pytest.raises(ValueError, match=r"^backend: unknown"):
        fastmlp.set_backend(name)
    with pytest.raises(ValueError, match=r"^backend: unknown"), fastmlp.use_backend(name):
        pass


def _python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "FASTMLP_BACKEND"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )


def test_env_var_unknown_backend():
    result = _python("import fastmlp; fastmlp.get_backend()", FASTMLP_BACKEND="fortran")
    assert result.returncode != 0
    assert "FASTMLP_BACKEND" in result.stderr
    assert "ValueError" in result.stderr


@pytest.mark.parametrize("name", ["numpy", "numba", "c", "NumPy"])
def test_env_var_selects_the_backend(name):
    result = _python("import fastmlp; print(fastmlp.get_backend())", FASTMLP_BACKEND=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name.lower()


def test_no_env_var_means_c():
    result = _python("import fastmlp; print(fastmlp.get_backend())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "c"


def test_zero_rows_dense_forward(backend, dtype):
    W, b = np.ones((3, 5), dtype), np.zeros(5, dtype)
    A = ops.dense_forward(np.zeros((0, 3), dtype), W, b)
    assert A.shape == (0, 5) and A.dtype == dtype
