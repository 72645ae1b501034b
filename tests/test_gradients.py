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

    A = ops.activation_forward(name, Z, **_kw(alpha))
    analytic = ops.activation_backward(name, G, A, **_kw(alpha))
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

    def objective():
        A = ops.dense_forward(X, W, b, name, **_kw(alpha))
        penalty = 0.5 * l2 * np.sum(W * W) + l1 * np.sum(np.abs(W))
        return float(np.sum(G * A) + penalty)

    A = ops.dense_forward(X, W, b, name, **_kw(alpha))
    dX, dW, db = ops.dense_backward(G, X, W, A, name, l2=l2, l1=l1, **_kw(alpha))
    assert relative_error(dX, numerical_gradient(objective, X, H)) < MAX_REL_ERROR
    assert relative_error(dW, numerical_gradient(objective, W, H)) < MAX_REL_ERROR
    assert relative_error(db, numerical_gradient(objective, b, H)) < MAX_REL_ERROR


# -- a whole network: the gradients a train_step computes are those of its loss ----------

NETWORK_CASES = {
    "softmax_cross_entropy": (["tanh", "sigmoid"], "labels"),
    "sigmoid_binary_cross_entropy": (["tanh", "sigmoid"], "probabilities"),
    "mean_squared_error": (["tanh", "sigmoid"], "reals"),
    "mean_squared_error-sigmoid_output": (["tanh", "softplus", "sigmoid"], "reals"),
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
