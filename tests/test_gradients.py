"""Finite-difference twins of every gradient (float64, central differences, h = 1e-6).

Each analytic gradient returned by a kernel is compared with central differences of the
value computed by the same backend's forward kernel (activation_forward, the loss, the
dense_forward, or NetworkPlan.train_step itself), so a backward pass that disagrees with
its own forward pass fails whatever the reference says. Central differences with h = 1e-6
have truncation error ~h^2 f''' ~ 1e-12 and rounding error ~1e-16 / h ~ 1e-10 relative,
so a relative error below 1e-6 is a clear pass and anything wrong is far above it.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ACTIVATION_CASES, ACTIVATION_IDS, numerical_gradient, relative_error

import fastmlp
from fastmlp import ops

F64 = np.float64
H = 1e-6
MAX_REL_ERROR = 1e-6


def _kw(alpha):
    return {} if alpha is None else {"alpha": alpha}


def _away_from_kinks(z, margin=0.1):
    z = z.copy()
    small = np.abs(z) < margin
    z[small] = np.where(z[small] < 0, -margin, margin) * 3
    return z


@pytest.mark.parametrize("name, alpha", ACTIVATION_CASES, ids=ACTIVATION_IDS)
def test_activation_backward(backend, rng, name, alpha):
    Z = _away_from_kinks(rng.standard_normal((4, 5)) * 2)
    G = rng.standard_normal(Z.shape)

    def objective():
        return float(np.sum(G * ops.activation_forward(name, Z, **_kw(alpha))))

    if name == "hard_sigmoid":  # and from its kinks at +-2.5
        Z = np.where(np.abs(np.abs(Z) - 2.5) < 0.05, Z * 0.9, Z)
    A = ops.activation_forward(name, Z, **_kw(alpha))
    analytic = ops.activation_backward(name, G, A, Z=Z, **_kw(alpha))
    numeric = numerical_gradient(objective, Z, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_cross_entropy(backend, rng, weighted):
    Z = rng.standard_normal((6, 4)) * 2
    y = rng.integers(0, 4, 6)
    w = rng.uniform(0.2, 3.0, 6) if weighted else None
    _, analytic = ops.softmax_cross_entropy(Z, y, sample_weight=w)
    numeric = numerical_gradient(lambda: ops.softmax_cross_entropy(Z, y, sample_weight=w)[0], Z, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR


def test_sigmoid_binary_cross_entropy(backend, rng):
    Z = rng.standard_normal((5, 3)) * 2
    Y = rng.uniform(0, 1, (5, 3))
    _, analytic = ops.sigmoid_binary_cross_entropy(Z, Y)
    numeric = numerical_gradient(lambda: ops.sigmoid_binary_cross_entropy(Z, Y)[0], Z, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR


def test_mean_squared_error(backend, rng):
    P = rng.standard_normal((5, 3))
    Y = rng.standard_normal((5, 3))
    _, analytic = ops.mean_squared_error(P, Y)
    numeric = numerical_gradient(lambda: ops.mean_squared_error(P, Y)[0], P, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR


def test_softmax_is_the_gradient_of_logsumexp(backend, rng):
    # d/dz sum_i g_i log_softmax(z)_i = g - softmax(z) * sum(g) row by row
    Z = rng.standard_normal((3, 5))
    G = rng.standard_normal((3, 5))
    analytic = G - ops.softmax(Z) * G.sum(axis=1, keepdims=True)
    numeric = numerical_gradient(lambda: float(np.sum(G * ops.log_softmax(Z))), Z, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR


@pytest.mark.parametrize("name, alpha", ACTIVATION_CASES, ids=ACTIVATION_IDS)
@pytest.mark.parametrize(
    "l2, l1", [(0.0, 0.0), (0.3, 0.0), (0.3, 0.05)], ids=["nopenalty", "l2", "l2+l1"]
)
def test_dense_backward(backend, rng, name, alpha, l2, l1):
    n, n_in, n_out = 6, 4, 3
    X = rng.standard_normal((n, n_in))
    W = rng.standard_normal((n_in, n_out))
    W = np.where(W < 0, W - 0.2, W + 0.2)  # |W| >= 0.2: sign(W) is smooth around it
    b = rng.standard_normal(n_out)
    G = rng.standard_normal((n, n_out))
    # keep every pre-activation away from the kinks of relu / leaky_relu / elu
    Z = X @ W + b
    b = b + np.where(np.min(np.abs(Z), axis=0) < 0.05, 0.3, 0.0)
    assert np.min(np.abs(X @ W + b)) > 1e-3
    if name == "hard_sigmoid":  # kinks at +-2.5 too
        assert np.min(np.abs(np.abs(X @ W + b) - 2.5)) > 1e-3

    def objective():
        A = ops.dense_forward(X, W, b, name, **_kw(alpha))
        penalty = 0.5 * l2 * np.sum(W * W) + l1 * np.sum(np.abs(W))
        return float(np.sum(G * A) + penalty)

    Z = np.empty_like(G)
    A = ops.dense_forward(X, W, b, name, Z_out=Z, **_kw(alpha))
    dX, dW, db = ops.dense_backward(G, X, W, A, name, Z=Z, l2=l2, l1=l1, **_kw(alpha))
    assert relative_error(dX, numerical_gradient(objective, X, H)) < MAX_REL_ERROR
    assert relative_error(dW, numerical_gradient(objective, W, H)) < MAX_REL_ERROR
    assert relative_error(db, numerical_gradient(objective, b, H)) < MAX_REL_ERROR


# -- a whole network: the gradients a train_step computes are those of its loss ----------

NETWORK_CASES = {
    "softmax_cross_entropy": (["tanh", "sigmoid"], "labels"),
    "sigmoid_binary_cross_entropy": (["tanh", "sigmoid"], "probabilities"),
    "mean_squared_error": (["tanh", "sigmoid"], "reals"),
    "mean_squared_error-sigmoid_output": (["tanh", "softplus", "sigmoid"], "reals"),
    # the activations whose backward pass reads the kept pre-activation Z, one as output
    "softmax_cross_entropy-gelu": (["gelu", "mish"], "labels"),
    "mean_squared_error-swish_output": (["gelu_tanh", "selu", "swish"], "reals"),
    "sigmoid_binary_cross_entropy-softsign": (["softsign", "hard_sigmoid"], "probabilities"),
}


def _targets(kind, rng, n, k):
    if kind == "labels":
        return rng.integers(0, k, n)
    if kind == "probabilities":
        return rng.uniform(0, 1, (n, k))
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("case", list(NETWORK_CASES))
@pytest.mark.parametrize("l1", [0.0, 0.02], ids=["l2", "l2+l1"])
def test_network_train_step(backend, rng, case, l1):
    loss = case.split("-")[0]
    activations, kind = NETWORK_CASES[case]
    plan = fastmlp.NetworkPlan(
        [4, 7, 5, 3],
        activations,
        loss=loss,
        optimizer="sgd",
        learning_rate=0.0,
        batch_size=8,
        seed=3,
        l2=0.1,
        l1=l1,
    )
    assert plan.backend == backend
    if l1:
        for W, _ in plan.weights:  # keep |W| away from 0, where |W| has its kink
            W[...] = np.where(W < 0, W - 0.1, W + 0.1)
    for _, b in plan.weights:
        b[...] = rng.standard_normal(b.shape) * 0.1
    X = rng.standard_normal((8, 4))
    y = _targets(kind, rng, 8, 3)
    snapshot = [(W.copy(), b.copy()) for W, b in plan.weights]

    plan.train_step(X, y)
    dW = [d.copy() for d in plan._buffers["dW"]]
    db = [d.copy() for d in plan._buffers["db"]]
    # learning_rate 0: the step computed the gradients and changed nothing
    for (W, b), (W0, b0) in zip(plan.weights, snapshot):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)

    def objective():
        return plan.train_step(X, y)  # loss + penalties, before the (null) update

    for layer, (W, b) in enumerate(plan.weights):
        err_W = relative_error(dW[layer], numerical_gradient(objective, W, H))
        err_b = relative_error(db[layer], numerical_gradient(objective, b, H))
        assert err_W < MAX_REL_ERROR, f"dW[{layer}]"
        assert err_b < MAX_REL_ERROR, f"db[{layer}]"


def test_network_gradient_is_the_sum_of_rows(backend, rng):
    # the data loss is a mean over the rows: the batch gradient is the mean of per-row ones
    plan = fastmlp.NetworkPlan([3, 4, 2], "tanh", learning_rate=0.0, batch_size=4, seed=1)
    X = rng.standard_normal((4, 3))
    y = np.array([0, 1, 1, 0])
    plan.train_step(X, y)
    full = [d.copy() for d in plan._buffers["dW"]]
    rows = [np.zeros_like(d) for d in full]
    for i in range(4):
        plan.train_step(X[i : i + 1], y[i : i + 1])
        for acc, d in zip(rows, plan._buffers["dW"]):
            acc += d / 4
    for f, r in zip(full, rows):
        np.testing.assert_allclose(f, r, rtol=1e-12, atol=1e-15)


# -- loss_and_gradient: the flat gradient of the loss over plan.parameters ----------------

LOSS_AND_GRADIENT_CASES = {
    "softmax_cross_entropy": "labels",
    "sigmoid_binary_cross_entropy": "probabilities",
    "mean_squared_error": "reals",
    "poisson": "counts",
    "absolute_error": "residuals",
    "huber": "residuals",
}


def _batch(kind, rng, n, k):
    if kind == "counts":
        return rng.poisson(1.5, (n, k)).astype(np.float64)
    if kind == "residuals":
        # residuals output - y with |r| in [0.3, 0.7] or [1.3, 1.7]: the step h moves the
        # output by ~h, far from the kinks of absolute_error (r = 0) and huber (|r| = 1)
        size = rng.uniform(0.3, 0.7, (n, k)) + rng.integers(0, 2, (n, k))
        return rng.choice([-1.0, 1.0], (n, k)) * size
    return _targets(kind, rng, n, k)


@pytest.mark.parametrize("loss", list(LOSS_AND_GRADIENT_CASES))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "penalty, l2, l1",
    [("per_step", 0.0, 0.0), ("per_sample", 0.3, 0.0), ("per_sample", 0.3, 0.02),
     ("per_step", 0.1, 0.02)],
    ids=["nopenalty", "per_sample-l2", "per_sample-l2+l1", "per_step-l2+l1"],
)
def test_loss_and_gradient(backend, rng, loss, weighted, penalty, l2, l1):
    """The gradient loss_and_gradient returns is the derivative of the loss it returns,
    over every entry of plan.parameters (each W, then each b)."""
    plan = fastmlp.NetworkPlan([4, 6, 5, 3], ["tanh", "sigmoid"], loss=loss, batch_size=8,
                               seed=7, l2=l2, l1=l1, penalty=penalty, optimizer="adam")
    assert plan.backend == backend and plan.penalty == penalty
    params = plan.parameters
    n_W = sum(W.size for W, _ in plan.weights)
    if l1:  # keep |W| away from 0, where |W| has its kink
        params[:n_W] = np.where(params[:n_W] < 0, params[:n_W] - 0.1, params[:n_W] + 0.1)
    params[n_W:] = rng.standard_normal(params.size - n_W) * 0.3
    X = rng.standard_normal((7, 4))
    y = _batch(LOSS_AND_GRADIENT_CASES[loss], rng, 7, 3)
    if LOSS_AND_GRADIENT_CASES[loss] == "residuals":
        y = plan.forward(X) - y  # targets at those residuals from the network's output
    w = rng.uniform(0.2, 3.0, 7) if weighted else None
    before = params.copy()
    state = plan.optimizer_state()

    value, grad = plan.loss_and_gradient(X, y, sample_weight=w)
    assert isinstance(value, float) and np.isfinite(value)
    assert grad is plan._buffers["grads"] and grad.shape == params.shape
    analytic = grad.copy()
    # nothing changes: the parameters, the step, the optimizer's state
    np.testing.assert_array_equal(params, before)
    assert plan.step == 0
    for key, arrays in plan.optimizer_state().items():
        if key != "step":
            for a, a0 in zip(arrays, state[key]):
                np.testing.assert_array_equal(a, a0)
    # and again: the same loss, the same bits
    assert plan.loss_and_gradient(X, y, sample_weight=w)[0] == value
    np.testing.assert_array_equal(grad, analytic)

    # the flat layout is the parameters': each layer's dW, then each db
    flat = np.concatenate([d.reshape(-1) for d in plan._buffers["dW"] + plan._buffers["db"]])
    np.testing.assert_array_equal(flat, analytic)

    numeric = numerical_gradient(lambda: plan.loss_and_gradient(X, y, sample_weight=w)[0],
                                 params, H)
    assert relative_error(analytic, numeric) < MAX_REL_ERROR
    assert plan.step == 0


def test_loss_and_gradient_is_the_train_steps_gradient(backend, rng):
    # a train_step with plain SGD moves the parameters by -lr times that gradient
    kw = dict(layer_sizes=[3, 5, 2], activations="tanh", loss="poisson", batch_size=6,
              seed=2, optimizer="sgd", learning_rate=0.25, l2=0.2, penalty="per_sample")
    plan = fastmlp.NetworkPlan(**kw)
    X = rng.standard_normal((6, 3))
    y = rng.poisson(2.0, (6, 2)).astype(np.float64)
    w = rng.uniform(0.5, 2.0, 6)
    value, grad = plan.loss_and_gradient(X, y, sample_weight=w)
    grad = grad.copy()
    start = plan.parameters.copy()
    assert plan.train_step(X, y, sample_weight=w) == value
    assert plan.step == 1
    np.testing.assert_allclose(plan.parameters, start - 0.25 * grad, rtol=1e-14, atol=1e-15)
