"""Sample weights in NetworkPlan (train_step, loss_and_gradient, train_epoch) and the
"per_sample" penalty, on every backend and dtype.

The semantics (csrc/kernels/network.inc, loss.inc): with W = sum_i w_i over the batch
(its row count without weights), the data loss is sum_i w_i loss_i / W and its gradient
with respect to the output w_i dloss_i/dz_i / W; penalty "per_sample" divides l2 and l1 by
W, "per_step" leaves them as given; a batch with W <= 0 is refused (ValueError).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RTOL, assert_close
from scipy.special import expit, logsumexp, xlogy

import fastmlp

LOSSES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error",
          "poisson", "absolute_error", "huber")
SIZES = [4, 6, 5, 3]  # tanh, tanh, identity


def _data(rng, n, loss, dtype):
    X = rng.standard_normal((n, SIZES[0])).astype(dtype)
    k = SIZES[-1]
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "sigmoid_binary_cross_entropy":
        y = rng.uniform(0, 1, (n, k)).astype(dtype)
    elif loss == "poisson":
        y = rng.poisson(1.5, (n, k)).astype(dtype)
    else:
        y = rng.standard_normal((n, k)).astype(dtype)
    return X, y


def _plan(loss, dtype, **kw):
    kw = {"activations": "tanh", "batch_size": 16, "seed": 3, "optimizer": "sgd",
          "learning_rate": 0.1, **kw}
    return fastmlp.NetworkPlan(SIZES, loss=loss, dtype=dtype, **kw)


# -- the reference: the loss and its gradients in float64, written from the semantics ----


def _row_losses(loss, z, y):
    """Each row's loss and its derivative with respect to the row's output z."""
    if loss == "softmax_cross_entropy":
        rows = np.arange(len(z))
        onehot = np.zeros_like(z)
        onehot[rows, y] = 1
        lse = logsumexp(z, axis=1)
        return lse - z[rows, y], np.exp(z - lse[:, None]) - onehot
    y = np.asarray(y, np.float64)
    if loss == "sigmoid_binary_cross_entropy":
        return np.sum(np.logaddexp(0, z) - z * y, axis=1), expit(z) - y
    if loss == "poisson":
        return np.sum(xlogy(y, y) - y * z - y + np.exp(z), axis=1), np.exp(z) - y
    r = z - y
    if loss == "absolute_error":
        return np.sum(np.abs(r), axis=1), np.sign(r)
    if loss == "huber":
        a = np.abs(r)
        return np.sum(np.where(a <= 1, 0.5 * r * r, a - 0.5), axis=1), np.clip(r, -1, 1)
    return 0.5 * np.sum(r**2, axis=1), r


def ref_loss_and_gradients(weights, X, y, w, loss, l2=0.0, l1=0.0, penalty="per_step"):
    """(loss, [(dW, db), ...]) of a tanh network with an identity output, in float64."""
    weights = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in weights]
    h = [np.asarray(X, np.float64)]
    for i, (W, b) in enumerate(weights):
        z = h[-1] @ W + b
        h.append(z if i == len(weights) - 1 else np.tanh(z))
    n = len(X)
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    total = w.sum()
    losses, d = _row_losses(loss, h[-1], y)
    value = np.sum(w * losses) / total
    dZ = w[:, None] * d / total
    if penalty == "per_sample":
        l2, l1 = l2 / total, l1 / total
    grads = []
    for i in reversed(range(len(weights))):
        W, _ = weights[i]
        grads.append((h[i].T @ dZ + l2 * W + l1 * np.sign(W), dZ.sum(axis=0)))
        value += 0.5 * l2 * np.sum(W * W) + l1 * np.sum(np.abs(W))
        if i:
            dZ = (dZ @ W.T) * (1 - h[i] ** 2)
    return value, grads[::-1]


def _flat(grads):
    return np.concatenate([dW.reshape(-1) for dW, _ in grads] + [db for _, db in grads])


def _tol(dtype):
    # float32: the loss and gradients of a small network carry ~1e-6 of rounding (as the
    # cross-backend curves of test_plan.py); the weights are O(1)
    r = RTOL[np.dtype(dtype)]
    return {"rtol": r, "atol": r}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("penalty", ["per_step", "per_sample"])
def test_weighted_train_step_matches_the_reference(backend, dtype, rng, loss, penalty):
    plan = _plan(loss, dtype, l2=0.05, l1=0.01, penalty=penalty)
    X, y = _data(rng, 11, loss, dtype)
    w = rng.uniform(0.0, 3.0, 11).astype(dtype)
    w[3] = 0  # a row without weight
    before = [(W.astype(np.float64), b.astype(np.float64)) for W, b in plan.weights]
    expected, grads = ref_loss_and_gradients(before, X, y, w, loss, 0.05, 0.01, penalty)
    got = plan.train_step(X, y, sample_weight=w)
    assert_close(got, expected, dtype)
    for (W, b), (W0, b0), (dW, db) in zip(plan.weights, before, grads):
        np.testing.assert_allclose(W, W0 - 0.1 * dW, **_tol(dtype))
        np.testing.assert_allclose(b, b0 - 0.1 * db, **_tol(dtype))
    assert plan.step == 1


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_and_gradient_matches_the_reference(backend, dtype, rng, loss):
    plan = _plan(loss, dtype, l2=0.2, penalty="per_sample")
    X, y = _data(rng, 9, loss, dtype)
    w = rng.uniform(0.1, 4.0, 9).astype(dtype)
    expected, grads = ref_loss_and_gradients(plan.weights, X, y, w, loss, 0.2, 0.0,
                                             "per_sample")
    value, grad = plan.loss_and_gradient(X, y, sample_weight=w)
    assert_close(value, expected, dtype)
    np.testing.assert_allclose(grad, _flat(grads), **_tol(dtype))
    assert plan.step == 0


@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weights_are_repeated_rows(backend, dtype, rng, loss):
    # weight 2 is the row twice, 0 no row; the weight sum is then the rows', so the
    # per_sample penalty agrees too
    X, y = _data(rng, 8, loss, dtype)
    counts = np.array([2, 1, 0, 3, 1, 1, 2, 1])
    plan = _plan(loss, dtype, l2=0.1, penalty="per_sample")
    value, grad = plan.loss_and_gradient(X, y, sample_weight=counts.astype(dtype))
    grad = grad.copy()
    repeated, repeated_grad = plan.loss_and_gradient(np.repeat(X, counts, axis=0),
                                                     np.repeat(y, counts, axis=0))
    assert_close(value, repeated, dtype)
    np.testing.assert_allclose(grad, repeated_grad, **_tol(dtype))
    # and an unweighted batch is not the same: the weights did something
    plain = plan.loss_and_gradient(X, y)[0]
    assert abs(plain - value) > 100 * RTOL[np.dtype(dtype)] * abs(value)


@pytest.mark.parametrize("loss", LOSSES)
def test_uniform_weights_are_no_weights(backend, dtype, rng, loss):
    X, y = _data(rng, 10, loss, dtype)
    plan = _plan(loss, dtype, l2=0.1, l1=0.01)  # per_step: penalties as given
    value, grad = plan.loss_and_gradient(X, y)
    grad = grad.copy()
    for c in (1.0, 0.25, 7.0):
        scaled, scaled_grad = plan.loss_and_gradient(X, y, sample_weight=np.full(10, c, dtype))
        assert_close(scaled, value, dtype)
        np.testing.assert_allclose(scaled_grad, grad, **_tol(dtype))


def test_per_sample_penalty_is_over_the_weight_sum(backend, dtype, rng):
    # weights c * ones sum to c n: per_sample with l2 = c l is per_sample with l and no
    # weights (sum n), and per_step with l / n
    X, y = _data(rng, 10, "poisson", dtype)
    c, l2 = 4.0, 0.3
    weighted = _plan("poisson", dtype, l2=c * l2, penalty="per_sample")
    plain = _plan("poisson", dtype, l2=l2, penalty="per_sample")
    per_step = _plan("poisson", dtype, l2=l2 / 10, penalty="per_step")
    expected, expected_grad = per_step.loss_and_gradient(X, y)
    for plan, w in ((weighted, np.full(10, c, dtype)), (plain, None)):
        value, grad = plan.loss_and_gradient(X, y, sample_weight=w)
        assert_close(value, expected, dtype)
        np.testing.assert_allclose(grad, expected_grad, **_tol(dtype))
    # the penalty is really there: without it the loss is smaller
    assert _plan("poisson", dtype).loss_and_gradient(X, y)[0] < expected - 1e-3


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "poisson"])
@pytest.mark.parametrize("given_rows", [False, True], ids=["stored_order", "rows"])
def test_weighted_epoch_is_the_sequence_of_weighted_steps(backend, dtype, rng, loss,
                                                          given_rows):
    X, y = _data(rng, 30, loss, dtype)
    w = rng.uniform(0.0, 2.0, 30).astype(dtype)
    rows = np.r_[rng.permutation(30)[:19], 4, 4] if given_rows else np.arange(30)
    kw = dict(batch_size=8, optimizer="adam", learning_rate=0.01, l2=0.01,
              penalty="per_sample")
    by_epoch, by_step = _plan(loss, dtype, **kw), _plan(loss, dtype, **kw)
    w_before = w.copy()
    n_batches = -(-len(rows) // 8)
    batch_losses = np.full(n_batches, np.nan)
    extra = {"rows": rows} if given_rows else {"shuffle": False}
    mean = by_epoch.train_epoch(X, y, sample_weight=w, batch_losses=batch_losses, **extra)
    steps = []
    for start in range(0, len(rows), 8):
        batch = rows[start : start + 8]
        steps.append(by_step.train_step(X[batch], y[batch], sample_weight=w[batch]))
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-13, atol=0)
    np.testing.assert_allclose(batch_losses, steps, **tol)
    sizes = np.diff(np.r_[np.arange(0, len(rows), 8), len(rows)])
    assert mean == pytest.approx(np.sum(batch_losses * sizes) / len(rows), rel=1e-14)
    for (W, b), (W1, b1) in zip(by_epoch.weights, by_step.weights):
        np.testing.assert_allclose(W, W1, **tol)
        np.testing.assert_allclose(b, b1, **tol)
    assert by_epoch.step == by_step.step == n_batches
    np.testing.assert_array_equal(w, w_before)
    # the weights mattered: unweighted, the same epoch trains otherwise
    other = _plan(loss, dtype, **kw)
    other.train_epoch(X, y, batch_losses=np.zeros(n_batches), **extra)
    assert not np.allclose(other.weights[0][0], by_epoch.weights[0][0], **tol)


def test_a_batch_without_weight_is_refused(backend, dtype, rng):
    X, y = _data(rng, 8, "softmax_cross_entropy", dtype)
    plan = _plan("softmax_cross_entropy", dtype)
    before = plan.parameters.copy()
    zero = np.zeros(8, dtype)
    cancelling = np.array([1, -1, 2, -2, 0, 0, 0.5, -0.5], dtype)
    for w in (zero, cancelling):
        with pytest.raises(ValueError, match="sample_weight"):
            plan.train_step(X, y, sample_weight=w)
        with pytest.raises(ValueError, match="sample_weight"):
            plan.loss_and_gradient(X, y, sample_weight=w)
    # refused before anything changed
    np.testing.assert_array_equal(plan.parameters, before)
    assert plan.step == 0
    # in an epoch, the batch that sums to 0 is named; the batches before it trained
    w = np.ones(8, dtype)
    w[4:6] = 0
    with pytest.raises(ValueError, match="sample_weight: the weights of batch 2 sum to 0"):
        plan.train_epoch(X, y, sample_weight=w, batch_size=2, shuffle=False)
    assert plan.step == 2
    # the same weights gathered in another order put the zeros in other batches
    order = np.array([4, 0, 5, 1, 2, 3, 6, 7])
    plan.train_epoch(X, y, sample_weight=w, batch_size=2, rows=order)
    assert plan.step == 6


# -- the same results on every backend ----------------------------------------------------

compared_backends = pytest.mark.parametrize(
    "backend",
    [b for b in fastmlp.available_backends() if b != "numpy"],
    ids=lambda n: f"backend={n}",
)


def _weighted_run(backend, dtype, X, y, w, loss):
    plan = _plan(loss, dtype, backend=backend, batch_size=16, optimizer="adam",
                 learning_rate=0.01, l2=1e-3, l1=1e-4, penalty="per_sample", seed=9)
    losses = [plan.train_step(X[s : s + 16], y[s : s + 16], sample_weight=w[s : s + 16])
              for s in range(0, len(X), 16) for _ in range(5)]
    value, grad = plan.loss_and_gradient(X[:16], y[:16], sample_weight=w[:16])
    losses.append(plan.train_epoch(X, y, sample_weight=w))
    return np.array(losses + [value]), grad.copy(), plan


@compared_backends
@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_training_is_the_same_on_every_backend(backend, dtype, rng, loss):
    X, y = _data(rng, 64, loss, dtype)
    w = rng.uniform(0.0, 3.0, 64).astype(dtype)
    got, got_grad, plan = _weighted_run(backend, dtype, X, y, w, loss)
    ref, ref_grad, ref_plan = _weighted_run("numpy", dtype, X, y, w, loss)
    rtol = RTOL[np.dtype(dtype)]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(got_grad, ref_grad, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(plan.parameters, ref_plan.parameters, rtol=rtol, atol=rtol)
    assert plan.step == ref_plan.step == 20 + 4


def test_penalty_and_alpha_are_checked():
    with pytest.raises(ValueError, match="penalty: unknown 'per_batch'"):
        fastmlp.NetworkPlan([2, 3, 2], penalty="per_batch")
    from fastmlp import training

    plan = fastmlp.NetworkPlan([2, 3, 2], batch_size=4)  # penalty="per_step"
    X, y = np.zeros((4, 2)), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="penalty='per_sample'"):
        training.EpochRunner(plan, X, y, 4, alpha=0.1)
