"""Per-kernel benchmarks: fastmlp.ops on every backend beside the course's NumPy lines.

One group per kernel x shape x dtype, so pytest-benchmark prints the implementations side
by side: "fastmlp-c", "fastmlp-numba", "fastmlp-numpy" (fastmlp.ops with that backend
active, validation included: what a user calls) and "course-numpy" (the same math written
the way the course writes it: np.dot, np.maximum, np.exp, a fresh array per expression).
"""

from __future__ import annotations

import mlpbench as mb
import numpy as np
import pytest
from scipy.special import erf

import fastmlp
from fastmlp import ops

N, D_IN, D_OUT = 256, 256, 256
SHAPE = f"{N}x{D_IN}->{D_OUT}"
ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "softplus", "selu",
               "gelu", "gelu_tanh", "swish", "mish", "softsign", "hard_sigmoid")
NEEDS_Z = ("gelu", "gelu_tanh", "swish", "mish")  # their backward reads the pre-activation
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
LEAKY, ELU = 0.01, 1.0
DTYPES = ("float32", "float64")
IMPLS = tuple(f"fastmlp-{b}" for b in mb.FASTMLP_BACKENDS) + ("course-numpy",)


# -- the course's lines ------------------------------------------------------------------


def course_activation(name, z):
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(0, z)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "elu":
        return np.where(z > 0, z, ELU * (np.exp(z) - 1))
    if name == "softplus":
        return np.log(1 + np.exp(z))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * (np.exp(z) - 1))
    if name == "gelu":
        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    if name == "swish":
        return z / (1 + np.exp(-z))
    if name == "mish":
        return z * np.tanh(np.log(1 + np.exp(z)))
    if name == "softsign":
        return z / (1 + np.abs(z))
    if name == "hard_sigmoid":
        return np.clip(0.2 * z + 0.5, 0, 1)
    raise ValueError(name)


def course_dense_forward(name, X, W, b):
    return course_activation(name, np.dot(X, W) + b)


def course_dense_backward(name, dA, X, W, A, Z):
    if name == "identity":
        dZ = dA
    elif name == "relu":
        dZ = dA.copy()
        dZ[A <= 0] = 0  # backprop the ReLU non-linearity
    elif name == "leaky_relu":
        dZ = dA * np.where(A > 0, 1, LEAKY)
    elif name == "sigmoid":
        dZ = dA * A * (1 - A)
    elif name == "tanh":
        dZ = dA * (1 - A**2)
    elif name == "elu":
        dZ = dA * np.where(A > 0, 1, A + ELU)
    elif name == "softplus":
        dZ = dA * (1 - np.exp(-A))  # sigmoid(z) written from a = softplus(z)
    elif name == "selu":
        dZ = dA * np.where(A > 0, SELU_SCALE, A + SELU_SCALE * SELU_ALPHA)
    elif name == "gelu":
        dZ = dA * (0.5 * (1 + erf(Z / np.sqrt(2))) + Z * np.exp(-0.5 * Z**2) / np.sqrt(2 * np.pi))
    elif name == "gelu_tanh":
        u = np.sqrt(2 / np.pi) * (Z + 0.044715 * Z**3)
        t = np.tanh(u)
        dZ = dA * (0.5 * (1 + t) + 0.5 * Z * (1 - t**2) * np.sqrt(2 / np.pi)
                   * (1 + 3 * 0.044715 * Z**2))
    elif name == "swish":
        s = 1 / (1 + np.exp(-Z))
        dZ = dA * (s + Z * s * (1 - s))
    elif name == "mish":
        t = np.tanh(np.log(1 + np.exp(Z)))
        dZ = dA * (t + Z * (1 - t**2) / (1 + np.exp(-Z)))
    elif name == "softsign":
        dZ = dA * (1 - np.abs(A)) ** 2
    elif name == "hard_sigmoid":
        dZ = dA * np.where((A > 0) & (A < 1), 0.2, 0.0)
    else:
        raise ValueError(name)
    dW = np.dot(X.T, dZ)
    db = np.sum(dZ, axis=0, keepdims=True)
    dX = np.dot(dZ, W.T)
    return dX, dW, db


def course_softmax_cross_entropy(scores, y):
    num_examples = scores.shape[0]
    exp_scores = np.exp(scores - np.max(scores, axis=1, keepdims=True))
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    correct_logprobs = -np.log(probs[range(num_examples), y])
    loss = np.sum(correct_logprobs) / num_examples
    dscores = probs
    dscores[range(num_examples), y] -= 1
    dscores /= num_examples
    return loss, dscores


def course_svm_loss(scores, y, delta=1.0, squared=False):
    """The notes' vectorised multiclass SVM loss and its gradient (squared: the L2-SVM)."""
    num_examples = scores.shape[0]
    rows = np.arange(num_examples)
    margins = np.maximum(0, scores - scores[rows, y][:, None] + delta)
    margins[rows, y] = 0
    loss = np.sum(margins * margins if squared else margins) / num_examples
    dscores = 2 * margins if squared else (margins > 0).astype(scores.dtype)
    dscores[rows, y] = -np.sum(dscores, axis=1)
    dscores /= num_examples
    return loss, dscores


def numpy_categorical_cross_entropy(scores, targets):
    """-sum t log softmax(z) with log-sum-exp, and softmax * sum(t) - t, in NumPy."""
    num_examples = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exp_scores = np.exp(shifted)
    sum_exp = np.sum(exp_scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(sum_exp)
    loss = -np.sum(targets * log_probs) / num_examples
    t_sum = np.sum(targets, axis=1, keepdims=True)
    return loss, (exp_scores / sum_exp * t_sum - targets) / num_examples


def numpy_kl_divergence(scores, targets):
    loss, dscores = numpy_categorical_cross_entropy(scores, targets)
    positive = targets > 0
    loss += np.sum(targets[positive] * np.log(targets[positive])) / scores.shape[0]
    return loss, dscores


def numpy_log_cosh(predictions, targets):
    r = predictions - targets
    a = np.abs(r)
    loss = np.sum(a + np.log1p(np.exp(-2 * a)) - np.log(2)) / r.shape[0]
    return loss, np.tanh(r) / r.shape[0]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=DTYPES)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=IMPLS)
def impl(request):
    """The implementation's name; a fastmlp backend is active for the whole test."""
    name = request.param
    if name.startswith("fastmlp-"):
        backend = name.split("-", 1)[1]
        if backend not in mb.fastmlp_backends():
            pytest.skip(mb.backend_errors().get(backend, f"backend {backend!r} unavailable"))
        with fastmlp.use_backend(backend):
            yield name
    else:
        yield name


def dense_arrays(dtype, activation, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D_IN)).astype(dtype)
    W = (rng.standard_normal((D_IN, D_OUT)) / np.sqrt(D_IN)).astype(dtype)
    b = (0.1 * rng.standard_normal(D_OUT)).astype(dtype)
    Z = np.empty((N, D_OUT), dtype)  # the pre-activation, what NEEDS_Z's backward reads
    with fastmlp.use_backend("numpy"):
        A = ops.dense_forward(X, W, b, activation, Z_out=Z)
    dA = rng.standard_normal((N, D_OUT)).astype(dtype)
    return X, W, b, A, dA, Z


# -- benchmarks --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward(measure, impl, dtype, activation):
    X, W, b, _, _, _ = dense_arrays(dtype, activation)
    if impl == "course-numpy":
        def fn():
            return course_dense_forward(activation, X, W, b)
    else:
        out = np.empty((N, D_OUT), dtype)

        def fn():
            return ops.dense_forward(X, W, b, activation, out=out)

    measure(fn, group=f"dense_forward[{activation}] {SHAPE} {dtype}", impl=impl, dtype=dtype,
            shape=SHAPE, flops=2 * N * D_IN * D_OUT, kernel="dense_forward",
            activation=activation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward(measure, impl, dtype, activation):
    X, W, _, A, dA, Z = dense_arrays(dtype, activation)
    if impl == "course-numpy":
        def fn():
            return course_dense_backward(activation, dA, X, W, A, Z)
    else:
        def fn():
            return ops.dense_backward(dA, X, W, A, activation,
                                      Z=Z if activation in NEEDS_Z else None)

    measure(fn, group=f"dense_backward[{activation}] {SHAPE} {dtype}", impl=impl,
            dtype=dtype, shape=SHAPE, flops=4 * N * D_IN * D_OUT, kernel="dense_backward",
            activation=activation)


PIECES = 2  # maxout's


def numpy_maxout_forward(X, W, b, k=PIECES):
    """Maxout as NumPy writes it: the pieces, then a max over each unit's k of them."""
    Z = np.dot(X, W) + b
    return Z.reshape(Z.shape[0], -1, k).max(axis=2), Z


def numpy_maxout_backward(dA, X, W, Z, k=PIECES):
    Zp = Z.reshape(Z.shape[0], -1, k)
    dZ = np.zeros_like(Zp)
    np.put_along_axis(dZ, np.argmax(Zp, axis=2)[:, :, None], dA[:, :, None], axis=2)
    dZ = dZ.reshape(Z.shape)
    return np.dot(dZ, W.T), np.dot(X.T, dZ), np.sum(dZ, axis=0, keepdims=True)


@pytest.mark.parametrize("direction", ("forward", "backward"))
def test_dense_maxout(measure, impl, dtype, direction):
    """A maxout layer of D_OUT units, 2 pieces each: W has twice the columns."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D_IN)).astype(dtype)
    W = (rng.standard_normal((D_IN, PIECES * D_OUT)) / np.sqrt(D_IN)).astype(dtype)
    b = (0.1 * rng.standard_normal(PIECES * D_OUT)).astype(dtype)
    A, Z = numpy_maxout_forward(X, W, b)
    dA = rng.standard_normal(A.shape).astype(dtype)
    if impl == "course-numpy":
        def fn():
            if direction == "forward":
                return numpy_maxout_forward(X, W, b)
            return numpy_maxout_backward(dA, X, W, Z)
    elif direction == "forward":
        out, Z_out = np.empty_like(A), np.empty_like(Z)

        def fn():
            return ops.dense_forward(X, W, b, "maxout", alpha=PIECES, out=out, Z_out=Z_out)
    else:
        def fn():
            return ops.dense_backward(dA, X, W, A, "maxout", Z=Z, alpha=PIECES)

    flops = (2 if direction == "forward" else 4) * N * D_IN * PIECES * D_OUT
    measure(fn, group=f"dense_{direction}[maxout k={PIECES}] {SHAPE} {dtype}", impl=impl,
            dtype=dtype, shape=SHAPE, flops=flops, kernel=f"dense_{direction}",
            activation="maxout")


def test_softmax_cross_entropy(measure, impl, dtype):
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal((N, D_OUT))).astype(dtype)
    y = rng.integers(0, D_OUT, N).astype(np.int64)
    shape = f"{N}x{D_OUT}"
    if impl == "course-numpy":
        def fn():
            return course_softmax_cross_entropy(Z, y)
    else:
        out = np.empty_like(Z)

        def fn():
            return ops.softmax_cross_entropy(Z, y, out=out)

    measure(fn, group=f"softmax_cross_entropy {shape} {dtype}", impl=impl, dtype=dtype,
            shape=shape, kernel="softmax_cross_entropy")


NEW_LOSSES = {
    # name: (the NumPy version, the fastmlp call, targets: labels / probability rows / values)
    "multiclass_hinge": (course_svm_loss, lambda Z, t, out: ops.multiclass_hinge(Z, t, out=out),
                         "labels"),
    "squared_multiclass_hinge": (
        lambda Z, t: course_svm_loss(Z, t, squared=True),
        lambda Z, t, out: ops.squared_multiclass_hinge(Z, t, out=out), "labels"),
    "categorical_cross_entropy": (
        numpy_categorical_cross_entropy,
        lambda Z, t, out: ops.categorical_cross_entropy(Z, t, out=out), "rows"),
    "kl_divergence": (numpy_kl_divergence,
                      lambda Z, t, out: ops.kl_divergence(Z, t, out=out), "rows"),
    "log_cosh": (numpy_log_cosh, lambda Z, t, out: ops.log_cosh(Z, t, out=out), "values"),
}


@pytest.mark.parametrize("loss", list(NEW_LOSSES))
def test_new_losses(measure, impl, dtype, loss):
    """The multiclass SVM, soft-target and log-cosh losses beside a NumPy version (impl
    course-numpy)."""
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal((N, D_OUT))).astype(dtype)
    numpy_version, call, kind = NEW_LOSSES[loss]
    if kind == "labels":
        t = rng.integers(0, D_OUT, N).astype(np.int64)
    elif kind == "rows":
        t = rng.dirichlet(np.ones(D_OUT), N).astype(dtype)
    else:
        t = rng.standard_normal((N, D_OUT)).astype(dtype)
    shape = f"{N}x{D_OUT}"
    if impl == "course-numpy":
        def fn():
            return numpy_version(Z, t)
    else:
        out = np.empty_like(Z)

        def fn():
            return call(Z, t, out)

    measure(fn, group=f"{loss} {shape} {dtype}", impl=impl, dtype=dtype, shape=shape,
            kernel=loss)


def _numpy_rmsprop(param, grad, v, _, t, lr, rho=0.9, eps=1e-8):
    v[...] = rho * v + (1 - rho) * grad * grad
    param[...] -= lr * grad / (np.sqrt(v) + eps)


def _numpy_adagrad(param, grad, s, _, t, lr, eps=1e-10):
    s += grad * grad
    param[...] -= lr * grad / (np.sqrt(s) + eps)


def _numpy_adadelta(param, grad, v, u, t, lr, rho=0.95, eps=1e-6):
    v[...] = rho * v + (1 - rho) * grad * grad
    d = np.sqrt(u + eps) / np.sqrt(v + eps) * grad
    u[...] = rho * u + (1 - rho) * d * d
    param[...] -= lr * d


def _numpy_adamax(param, grad, m, u, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    m[...] = beta1 * m + (1 - beta1) * grad
    np.maximum(beta2 * u, np.abs(grad) + eps, out=u)
    param[...] -= lr / (1 - beta1**t) * m / u


def _numpy_nadam(param, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, psi=4e-3):
    mu = [beta1 * (1 - 0.5 * 0.96 ** (i * psi)) for i in range(1, t + 2)]
    product = float(np.prod(mu[:t]))
    m[...] = beta1 * m + (1 - beta1) * grad
    v[...] = beta2 * v + (1 - beta2) * grad * grad
    m_hat = mu[t] * m / (1 - product * mu[t]) + (1 - mu[t - 1]) * grad / (1 - product)
    param[...] -= lr * m_hat / (np.sqrt(v / (1 - beta2**t)) + eps)


# the new optimizers written out in NumPy, beside the kernels
_NUMPY_UPDATES = {"rmsprop": _numpy_rmsprop, "adagrad": _numpy_adagrad,
                  "adadelta": _numpy_adadelta, "adamax": _numpy_adamax, "nadam": _numpy_nadam}


@pytest.mark.parametrize("optimizer", ("sgd", "momentum", "adam", "rmsprop", "adagrad",
                                       "adadelta", "adamax", "nadam"))
def test_optimizer_update(measure, impl, dtype, optimizer):
    rng = np.random.default_rng(0)
    param = (0.01 * rng.standard_normal((D_IN, D_OUT))).astype(dtype)
    grad = (0.01 * rng.standard_normal((D_IN, D_OUT))).astype(dtype)
    s1, s2 = np.zeros_like(param), np.zeros_like(param)
    lr, mu, beta1, beta2, eps = 1e-3, 0.9, 0.9, 0.999, 1e-8
    shape = f"{D_IN}x{D_OUT}"
    state = {"t": 0}
    if impl == "course-numpy":
        if optimizer == "sgd":
            def fn():
                param[...] += -lr * grad
        elif optimizer == "momentum":
            def fn():
                s1[...] = mu * s1 - lr * grad  # v = mu * v - learning_rate * dx
                param[...] += s1
        elif optimizer in _NUMPY_UPDATES:
            update = _NUMPY_UPDATES[optimizer]

            def fn():
                state["t"] += 1
                update(param, grad, s1, s2, state["t"], lr)
        else:
            def fn():  # the lecture's Adam, as in fastmlp.course
                state["t"] += 1
                t = state["t"]
                s1[...] = beta1 * s1 + (1 - beta1) * grad
                s2[...] = beta2 * s2 + (1 - beta2) * (grad * grad)
                m_hat = s1 / (1 - beta1**t)
                v_hat = s2 / (1 - beta2**t)
                param[...] += -lr * m_hat / (np.sqrt(v_hat) + eps)
    else:
        if optimizer == "sgd":
            def fn():
                return ops.sgd_update(param, grad, lr)
        elif optimizer == "momentum":
            def fn():
                return ops.momentum_update(param, grad, s1, lr, mu)
        elif optimizer == "adam":
            def fn():
                state["t"] += 1
                return ops.adam_update(param, grad, s1, s2, state["t"], lr, beta1, beta2, eps)
        elif optimizer in ("rmsprop", "adagrad"):
            update = getattr(ops, f"{optimizer}_update")

            def fn():
                return update(param, grad, s1, lr)
        elif optimizer == "adadelta":
            def fn():
                return ops.adadelta_update(param, grad, s1, s2, lr)
        else:
            update = getattr(ops, f"{optimizer}_update")

            def fn():
                state["t"] += 1
                return update(param, grad, s1, s2, state["t"], lr)

    measure(fn, group=f"{optimizer}_update {shape} {dtype}", impl=impl, dtype=dtype,
            shape=shape, kernel=f"{optimizer}_update")


# -- metrics: a large evaluation (100,000 rows of 10 classes), one pass each ----------------

METRIC_ROWS, METRIC_CLASSES = 100_000, 10


def metric_arrays(dtype):
    rng = np.random.default_rng(0)
    Z = (3 * rng.standard_normal((METRIC_ROWS, METRIC_CLASSES))).astype(dtype)
    y = rng.integers(0, METRIC_CLASSES, METRIC_ROWS).astype(np.int64)
    return Z, y


@pytest.mark.parametrize("metric", ("accuracy", "top_k_accuracy", "confusion_matrix",
                                    "log_loss", "r2_score"))
def test_metric(measure, impl, dtype, metric):
    from fastmlp import metrics

    Z, y = metric_arrays(dtype)
    P = Z[:, 1:2] + Z[:, :1]
    T = np.ascontiguousarray(Z[:, 1:2])
    if impl == "course-numpy":  # the NumPy lines a user writes
        if metric == "accuracy":
            def fn():
                return np.mean(np.argmax(Z, axis=1) == y)
        elif metric == "top_k_accuracy":
            def fn():
                return np.mean(np.any(np.argsort(-Z, axis=1)[:, :5] == y[:, None], axis=1))
        elif metric == "confusion_matrix":
            def fn():
                confusion = np.zeros((METRIC_CLASSES, METRIC_CLASSES), np.int64)
                np.add.at(confusion, (y, np.argmax(Z, axis=1)), 1)
                return confusion
        elif metric == "log_loss":
            def fn():
                return course_softmax_cross_entropy(Z, y)[0]
        else:
            def fn():
                return 1 - np.sum((P - T) ** 2) / np.sum((T - T.mean()) ** 2)
    else:
        args = (P, T) if metric == "r2_score" else (Z, y)

        def fn():
            return getattr(metrics, metric)(*args)

    shape = f"{METRIC_ROWS}x{METRIC_CLASSES}"
    measure(fn, group=f"metric {metric} {shape} {dtype}", impl=impl, dtype=dtype,
            shape=shape, kernel=f"metric {metric}")
