"""NetworkPlan: the same training on every backend, epochs, forward, state and workspace."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import RTOL, ref_network_forward

import fastmlp

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "softplus", "selu",
                      "gelu", "gelu_tanh", "swish", "mish", "softsign", "hard_sigmoid")
LOSSES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error")
LEARNING_RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01, "adamw": 0.01}

# Loss curves of two backends: each step rounds differently (BLAS call shapes, loop order),
# and training feeds the differences back; over 50 smooth steps they stay within the
# per-dtype table (measured: <= 1e-6 in float32, <= 1e-15 in float64), so no extra slack.
CURVE_RTOL = RTOL

# the backends compared with the reference, numpy (explicit: not the `backend` fixture)
compared_backends = pytest.mark.parametrize(
    "backend",
    [b for b in fastmlp.available_backends() if b != "numpy"],
    ids=lambda n: f"backend={n}",
)


def _data(rng, n, n_in, n_out, loss, dtype=np.float64):
    X = rng.standard_normal((n, n_in)).astype(dtype)
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "sigmoid_binary_cross_entropy":
        y = rng.integers(0, 2, (n, n_out)).astype(dtype)
    else:
        y = rng.standard_normal((n, n_out)).astype(dtype)
    return X, y


def _curve(backend, dtype, X, y, steps, **kw):
    plan = fastmlp.NetworkPlan(backend=backend, dtype=dtype, **kw)
    bs = plan.batch_size
    losses = []
    for s in range(steps):
        start = (s * bs) % len(X)
        losses.append(plan.train_step(X[start : start + bs], y[start : start + bs]))
    return np.array(losses), plan


def _compare_with_numpy(backend, dtype, X, y, steps=50, **kw):
    got, plan = _curve(backend, dtype, X, y, steps, **kw)
    ref, ref_plan = _curve("numpy", dtype, X, y, steps, **kw)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=CURVE_RTOL[np.dtype(dtype)], atol=1e-12)
    # weights are O(1): the relative tolerance doubles as an absolute one near zero
    rtol = CURVE_RTOL[np.dtype(dtype)]
    for (W, b), (W0, b0) in zip(plan.weights, ref_plan.weights):
        np.testing.assert_allclose(W, W0, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(b, b0, rtol=rtol, atol=rtol)
    assert plan.step == ref_plan.step == steps
    return got


@compared_backends
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_same_loss_curve_as_numpy_per_optimizer(backend, dtype, rng, optimizer):
    X, y = _data(rng, 64, 5, 3, "softmax_cross_entropy", dtype)
    curve = _compare_with_numpy(
        backend,
        dtype,
        X,
        y,
        layer_sizes=[5, 8, 6, 3],
        activations="tanh",
        optimizer=optimizer,
        learning_rate=LEARNING_RATES[optimizer],
        batch_size=16,
        seed=7,
        l2=1e-3,
    )
    assert curve[-1] < curve[0]  # and it trains


@compared_backends
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_same_loss_curve_as_numpy_per_activation(backend, dtype, rng, activation):
    X, y = _data(rng, 64, 5, 3, "softmax_cross_entropy", dtype)
    _compare_with_numpy(
        backend,
        dtype,
        X,
        y,
        layer_sizes=[5, 8, 3],
        activations=activation,
        optimizer="momentum",
        learning_rate=0.05,
        batch_size=16,
        seed=11,
        alpha=0.2 if activation in ("leaky_relu", "elu") else None,
    )


@compared_backends
@pytest.mark.parametrize("loss", LOSSES[1:])
def test_same_loss_curve_as_numpy_per_loss(backend, dtype, rng, loss):
    X, y = _data(rng, 64, 5, 2, loss, dtype)
    _compare_with_numpy(
        backend,
        dtype,
        X,
        y,
        layer_sizes=[5, 8, 2],
        activations="relu",
        loss=loss,
        optimizer="adam",
        learning_rate=0.01,
        batch_size=16,
        seed=5,
        l1=1e-4,
    )


def test_train_epoch_without_shuffle_is_the_sequence_of_steps(backend, dtype, rng):
    X, y = _data(rng, 50, 4, 3, "softmax_cross_entropy", dtype)
    kw = dict(
        layer_sizes=[4, 6, 3],
        activations="relu",
        optimizer="adam",
        batch_size=16,
        seed=2,
        dtype=dtype,
    )
    by_epoch = fastmlp.NetworkPlan(**kw)
    by_step = fastmlp.NetworkPlan(**kw)
    batch_losses = np.full(4, np.nan)
    mean = by_epoch.train_epoch(X, y, shuffle=False, batch_losses=batch_losses)
    steps = [by_step.train_step(X[s : s + 16], y[s : s + 16]) for s in range(0, 50, 16)]
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-13, atol=0)
    np.testing.assert_allclose(batch_losses, steps, **tol)
    sizes = np.array([16, 16, 16, 2])
    assert mean == pytest.approx(np.sum(batch_losses * sizes) / 50, rel=1e-14)
    for (W, b), (W1, b1) in zip(by_epoch.weights, by_step.weights):
        np.testing.assert_allclose(W, W1, **tol)
        np.testing.assert_allclose(b, b1, **tol)
    assert by_epoch.step == by_step.step == 4


def test_train_epoch_is_reproducible_bit_for_bit(backend, dtype, rng):
    X, y = _data(rng, 70, 4, 3, "softmax_cross_entropy", dtype)
    kw = dict(
        layer_sizes=[4, 9, 3],
        activations="elu",
        optimizer="nesterov",
        batch_size=16,
        seed=123,
        dtype=dtype,
        learning_rate=0.05,
    )
    results = []
    for _ in range(2):
        plan = fastmlp.NetworkPlan(**kw)
        losses = [plan.train_epoch(X, y) for _ in range(3)]
        results.append((losses, [(W.copy(), b.copy()) for W, b in plan.weights]))
    assert results[0][0] == results[1][0]
    for (W, b), (W1, b1) in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)


def test_train_epoch_shuffles_with_the_plan_seed(backend, rng):
    X, y = _data(rng, 40, 3, 2, "softmax_cross_entropy")
    kw = dict(layer_sizes=[3, 5, 2], batch_size=8, optimizer="sgd", learning_rate=0.1)
    a = fastmlp.NetworkPlan(seed=1, **kw)
    b = fastmlp.NetworkPlan(seed=1, **kw)
    b.set_weights([(W.copy(), bb.copy()) for W, bb in a.weights])
    la, lb = np.zeros(5), np.zeros(5)
    a.train_epoch(X, y, batch_losses=la)
    b.train_epoch(X, y, batch_losses=lb, shuffle=False)
    assert not np.allclose(la, lb)  # a shuffled epoch visits other batches


@pytest.mark.parametrize("loss", LOSSES)
def test_train_epoch_over_given_rows_equals_an_epoch_over_those_rows(backend, dtype, rng, loss):
    # a subset in a chosen order, with a repeat: gathered per batch, exactly as if the
    # caller had copied X[rows] and trained on it in stored order
    X, y = _data(rng, 30, 4, 3, loss, dtype)
    rows = np.r_[rng.permutation(30)[:20], 7, 7]
    X_before, rows_before = X.copy(), rows.copy()
    kw = dict(layer_sizes=[4, 6, 3], activations="tanh", loss=loss, optimizer="adam",
              batch_size=8, seed=5, dtype=dtype)
    given, copied = fastmlp.NetworkPlan(**kw), fastmlp.NetworkPlan(**kw)
    losses_given, losses_copied = np.zeros(3), np.zeros(3)
    mean = given.train_epoch(X, y, rows=rows, batch_losses=losses_given)
    assert mean == copied.train_epoch(X[rows], y[rows], shuffle=False,
                                      batch_losses=losses_copied)
    np.testing.assert_array_equal(losses_given, losses_copied)
    for (W, b), (W1, b1) in zip(given.weights, copied.weights):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)
    assert given.step == 3
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(rows, rows_before)


def _running_metric(loss, Z, y):
    """The spec of train_epoch's metric_out for one batch's outputs Z, written out."""
    Z = Z.astype(np.float64)
    if loss == "softmax_cross_entropy":
        hit = np.array([not np.isnan(z).any() and int(np.argmax(z)) == c for z, c in zip(Z, y)])
        return np.bincount(y[hit], minlength=Z.shape[1]).astype(np.float64)
    if loss == "sigmoid_binary_cross_entropy":
        return np.sum((Z > 0) == (y > 0.5), axis=0).astype(np.float64)
    prediction = np.exp(Z) if loss == "poisson" else Z
    return np.sum((prediction - y) ** 2, axis=0)


@pytest.mark.parametrize("loss", LOSSES + ("poisson",))
def test_train_epoch_metric_out_is_the_running_metric(backend, dtype, rng, loss):
    # each batch measured as it trains, before its update: as forward on the batch
    # just before its step
    X, y = _data(rng, 45, 4, 3, loss, dtype)
    if loss == "poisson":
        y = rng.poisson(2.0, y.shape).astype(dtype)
    rows = rng.permutation(45)
    kw = dict(layer_sizes=[4, 7, 3], activations="tanh", loss=loss, optimizer="adam",
              batch_size=10, seed=3, dtype=dtype, learning_rate=0.05)
    by_epoch, by_step = fastmlp.NetworkPlan(**kw), fastmlp.NetworkPlan(**kw)
    metric = np.full(3, np.nan)
    for _ in range(2):  # overwritten, not added to
        by_epoch.train_epoch(X, y, rows=rows, metric_out=metric)
    expected = np.zeros(3)
    for _ in range(2):
        expected[:] = 0
        for start in range(0, 45, 10):
            batch = rows[start:start + 10]
            expected += _running_metric(loss, by_step.forward(X[batch]), y[batch])
            by_step.train_step(X[batch], y[batch])
    if loss in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        np.testing.assert_array_equal(metric, expected)
        assert metric.sum() > 0
    else:
        np.testing.assert_allclose(metric, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_train_epoch_running_metric_with_dropout_is_the_same_on_every_backend(dtype, rng,
                                                                               loss):
    X, y = _data(rng, 60, 5, 3, loss, dtype)
    results = []
    for backend in fastmlp.available_backends():
        plan = fastmlp.NetworkPlan([5, 16, 3], "relu", loss=loss, dropout=0.5, batch_size=16,
                                   seed=4, dtype=dtype, backend=backend)
        metric = np.zeros(3)
        for _ in range(3):
            plan.train_epoch(X, y, metric_out=metric)
        results.append(metric)
    for other in results[1:]:
        if loss == "mean_squared_error":
            np.testing.assert_allclose(other, results[0], rtol=RTOL[np.dtype(dtype)])
        else:
            np.testing.assert_array_equal(other, results[0])
    without = fastmlp.NetworkPlan([5, 16, 3], "relu", loss=loss, batch_size=16, seed=4,
                                  dtype=dtype)
    metric = np.zeros(3)
    for _ in range(3):
        without.train_epoch(X, y, metric_out=metric)
    assert not np.array_equal(metric, results[0])  # the masks enter it


@pytest.mark.parametrize("metric_out, error, message", [
    (np.zeros(2), ValueError, r"metric_out: expected shape \(3,\), got \(2,\)"),
    (np.zeros(3, np.float32), TypeError, "metric_out: expected dtype float64"),
    (np.zeros(6)[::2], ValueError, "metric_out: must be C-contiguous"),
    ([0.0, 0.0, 0.0], TypeError, "metric_out: expected a numpy.ndarray"),
])
def test_train_epoch_rejects_a_bad_metric_out(backend, rng, metric_out, error, message):
    X, y = _data(rng, 10, 3, 3, "softmax_cross_entropy")
    plan = fastmlp.NetworkPlan([3, 4, 3], batch_size=4, seed=0)
    with pytest.raises(error, match=message):
        plan.train_epoch(X, y, metric_out=metric_out)
    assert plan.step == 0


@pytest.mark.parametrize(
    "rows, error, message",
    [
        (np.array([0.0, 1.0]), TypeError, "rows: expected a 1-D integer array"),
        (np.zeros((2, 2), int), TypeError, "rows: expected a 1-D integer array"),
        (np.array([], int), ValueError, "rows: expected at least one row index"),
        (np.array([0, 10]), ValueError, r"rows: row indices must be in \[0, 10\), got 10"),
        (np.array([-1, 3]), ValueError, r"rows: row indices must be in \[0, 10\), got -1"),
        ([0, 2**40], ValueError, "rows: row indices must be in"),
    ],
)
def test_train_epoch_rejects_bad_rows(backend, rng, rows, error, message):
    X, y = _data(rng, 10, 3, 2, "softmax_cross_entropy")
    plan = fastmlp.NetworkPlan([3, 4, 2], batch_size=4, seed=0)
    before = [(W.copy(), b.copy()) for W, b in plan.weights]
    with pytest.raises(error, match=message):
        plan.train_epoch(X, y, rows=rows)
    assert plan.step == 0
    for (W, b), (W0, b0) in zip(plan.weights, before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_a_refused_train_epoch_leaves_the_shuffle_stream(backend, rng):
    X, y = _data(rng, 20, 3, 2, "softmax_cross_entropy")
    kw = dict(layer_sizes=[3, 4, 2], batch_size=4, seed=3, optimizer="sgd")
    refused, clean = fastmlp.NetworkPlan(**kw), fastmlp.NetworkPlan(**kw)
    with pytest.raises(ValueError, match="batch_size"):
        refused.train_epoch(X, y, batch_size=5)
    with pytest.raises(ValueError, match="batch_losses"):
        refused.train_epoch(X, y, batch_losses=np.zeros(3))
    assert refused.train_epoch(X, y) == clean.train_epoch(X, y)


@pytest.mark.parametrize("loss", LOSSES)
def test_batch_losses_are_filled(backend, rng, loss):
    X, y = _data(rng, 45, 3, 2, loss)
    plan = fastmlp.NetworkPlan([3, 4, 2], loss=loss, batch_size=10, seed=0)
    batch_losses = np.full(5, np.nan)
    mean = plan.train_epoch(X, y, batch_losses=batch_losses)
    assert np.all(np.isfinite(batch_losses)) and np.all(batch_losses > 0)
    sizes = np.array([10, 10, 10, 10, 5])
    assert mean == pytest.approx(np.sum(batch_losses * sizes) / 45, rel=1e-14)
    assert plan.step == 5


@compared_backends
def test_partial_last_batch_matches_numpy(backend, dtype, rng):
    X, y = _data(rng, 10, 3, 2, "softmax_cross_entropy", dtype)
    curves = {}
    for name in (backend, "numpy"):
        plan = fastmlp.NetworkPlan(
            [3, 5, 2],
            batch_size=4,
            seed=4,
            backend=name,
            dtype=dtype,
            optimizer="adam",
            learning_rate=0.01,
        )
        losses = np.zeros(3)
        mean = plan.train_epoch(X, y, batch_losses=losses, shuffle=False)
        shuffled = np.zeros(3)
        plan.train_epoch(X, y, batch_losses=shuffled)  # shuffled, with a 2-row last batch
        curves[name] = (mean, losses, shuffled)
        assert plan.step == 6
    tol = CURVE_RTOL[np.dtype(dtype)]
    for got, ref in zip(curves[backend], curves["numpy"]):
        np.testing.assert_allclose(got, ref, rtol=tol)


@pytest.mark.parametrize(
    "activations", [["relu", "tanh"], ["sigmoid", "elu"], ["leaky_relu", "softplus"]]
)
def test_forward_matches_numpy_forward_pass(backend, dtype, rng, activations):
    plan = fastmlp.NetworkPlan(
        [4, 6, 5, 3], activations, batch_size=8, seed=9, dtype=dtype, alpha=0.3
    )
    for _, b in plan.weights:
        b[...] = rng.standard_normal(b.shape)
    X = rng.standard_normal((20, 4)).astype(dtype)
    out = plan.forward(X)  # 20 rows, batch_size 8: chunks of 8, 8, 4
    assert out.dtype == dtype and out.shape == (20, 3)
    alphas = [0.3 if a in ("leaky_relu", "elu") else None for a in activations] + [None]
    expected = ref_network_forward(X, plan.weights, activations + ["identity"], alphas)
    np.testing.assert_allclose(
        out,
        expected,
        rtol=1e-4 if dtype == np.float32 else 1e-11,
        atol=1e-5 if dtype == np.float32 else 1e-12,
    )


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 100])
def test_forward_in_chunks(backend, dtype, rng, chunk_rows):
    plan = fastmlp.NetworkPlan([3, 7, 2], "tanh", batch_size=16, seed=1, dtype=dtype)
    X = rng.standard_normal((23, 3)).astype(dtype)
    whole = plan.forward(X, chunk_rows=23)
    out = np.full((23, 2), np.nan, dtype)
    assert plan.forward(X, out=out, chunk_rows=chunk_rows) is out
    np.testing.assert_allclose(
        out,
        whole,
        rtol=1e-5 if dtype == np.float32 else 1e-13,
        atol=1e-6 if dtype == np.float32 else 1e-14,
    )


def test_forward_zero_rows_and_other_dtypes(backend, rng):
    plan = fastmlp.NetworkPlan([3, 2], seed=0)
    assert plan.forward(np.zeros((0, 3))).shape == (0, 2)
    X = rng.standard_normal((4, 3))
    np.testing.assert_allclose(
        plan.forward(X.astype(np.float32)), plan.forward(X.astype(np.float32).astype(np.float64))
    )


def test_weights_are_trained_in_place(backend, rng):
    plan = fastmlp.NetworkPlan([3, 4, 2], seed=0, learning_rate=0.5, batch_size=8)
    arrays = plan.weights
    before = [(W.copy(), b.copy()) for W, b in arrays]
    X, y = _data(rng, 8, 3, 2, "softmax_cross_entropy")
    plan.train_step(X, y)
    for (W, b), (W_now, b_now), (W0, b0) in zip(arrays, plan.weights, before):
        assert W is W_now and b is b_now
        assert not np.array_equal(W, W0) and not np.array_equal(b, b0)
    # and edits made through .weights are what the plan uses
    arrays[-1][1][...] = 1000.0
    assert np.all(plan.forward(X) > 900)  # every logit is 1000 + a small h @ W


def test_set_weights_copies_into_the_plan(backend, rng):
    plan = fastmlp.NetworkPlan([3, 4, 2], seed=0)
    new = [
        (rng.standard_normal((3, 4)), rng.standard_normal((1, 4))),
        (rng.standard_normal((4, 2)), rng.standard_normal(2)),
    ]
    arrays = plan.weights
    plan.set_weights(new)
    assert plan.weights[0][0] is arrays[0][0]
    np.testing.assert_array_equal(plan.weights[0][1], new[0][1].reshape(-1))
    X = rng.standard_normal((5, 3))
    expected = ref_network_forward(X, new, ["relu", "identity"])
    np.testing.assert_allclose(plan.forward(X), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_learning_rate_setter_changes_the_update(backend, rng, optimizer):
    X, y = _data(rng, 8, 3, 2, "softmax_cross_entropy")
    plan = fastmlp.NetworkPlan(
        [3, 4, 2], seed=0, batch_size=8, optimizer=optimizer, learning_rate=0.1
    )
    plan.train_step(X, y)
    plan.learning_rate = 0.0
    assert plan.learning_rate == 0.0
    before = [(W.copy(), b.copy()) for W, b in plan.weights]
    velocity = [v.copy() for v in plan._buffers["state1_W"]] if optimizer == "momentum" else []
    plan.train_step(X, y)
    for layer, ((W, b), (W0, b0)) in enumerate(zip(plan.weights, before)):
        if optimizer == "momentum":
            # lr 0 leaves only the momentum term: v = 0.9 v, w += v
            np.testing.assert_allclose(W, W0 + 0.9 * velocity[layer], rtol=1e-14, atol=1e-16)
        else:
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)
    # a new rate takes effect at once: one SGD step moves W by exactly -lr * dW
    if optimizer == "sgd":
        plan.learning_rate = 0.37
        W_before = plan.weights[0][0].copy()
        plan.train_step(X, y)
        np.testing.assert_allclose(
            plan.weights[0][0], W_before - 0.37 * plan._buffers["dW"][0], rtol=1e-14, atol=1e-16
        )
    with pytest.raises(ValueError, match="^learning_rate:"):
        plan.learning_rate = -1.0


def test_learning_rate_setter_keeps_the_step_count(backend, rng):
    # Adam's bias correction depends on t: changing the rate must not reset it
    X, y = _data(rng, 8, 3, 2, "softmax_cross_entropy")
    kw = dict(layer_sizes=[3, 4, 2], seed=0, batch_size=8, optimizer="adam", learning_rate=0.01)
    a, b = fastmlp.NetworkPlan(**kw), fastmlp.NetworkPlan(**kw)
    for _ in range(3):
        a.train_step(X, y)
        b.train_step(X, y)
    b.learning_rate = 0.01  # same value, reconfigured
    la = [a.train_step(X, y) for _ in range(3)]
    lb = [b.train_step(X, y) for _ in range(3)]
    assert la == lb and a.step == b.step == 6


@pytest.mark.parametrize("optimizer, n_states", [("sgd", 0), ("nesterov", 1), ("adamw", 2)])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mean_squared_error"])
def test_workspace_bytes(backend, dtype, optimizer, n_states, loss):
    sizes, batch = [5, 7, 4, 3], 10
    plan = fastmlp.NetworkPlan(
        sizes, optimizer=optimizer, batch_size=batch, dtype=dtype, loss=loss
    )
    item = np.dtype(dtype).itemsize
    params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    activations = batch * sum(sizes[1:])
    y_bytes = batch * 8 if loss == "softmax_cross_entropy" else batch * sizes[-1] * item
    # the C engine keeps a copy of the gradients per row block (threads; 16 at most),
    # each padded to whole 64-byte lines
    blocks = getattr(type(plan._engine), "max_blocks", 0)
    padded = sum(-(-i * o // 16) * 16 + -(-o // 16) * 16 for i, o in zip(sizes[:-1], sizes[1:]))
    # + the gathered rows' inputs and sample weights
    expected = item * (params * (2 + n_states) + blocks * padded + 2 * activations
                       + batch * sizes[0] + batch) + y_bytes
    assert plan.workspace_bytes == expected > 0
    # W, b, dW and db are views of the flat "params" and "grads"
    total = sum(
        a.nbytes
        for k, v in plan._buffers.items() if k not in ("W", "b", "dW", "db")
        for a in (v if isinstance(v, list) else [v])
        if a is not None
    )
    assert plan.workspace_bytes == total


def test_plan_uses_the_active_backend(backend):
    plan = fastmlp.NetworkPlan([2, 2])
    assert plan.backend == backend
    assert backend in repr(plan)


def test_float32_plan_keeps_float32(backend, rng):
    plan = fastmlp.NetworkPlan([3, 4, 2], dtype=np.float32, seed=0, batch_size=8)
    X, y = _data(rng, 8, 3, 2, "softmax_cross_entropy")
    loss = plan.train_step(X, y)  # float64 X: converted (a copy)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in plan.weights)
    assert plan.forward(X).dtype == np.float32


def test_second_thread_cannot_train_a_busy_plan(backend, rng):
    # one thread trains epoch after epoch; the other keeps calling train_step on the same
    # plan: whichever comes second while the other is inside must get a RuntimeError
    X = rng.standard_normal((4000, 32))
    y = rng.integers(0, 4, 4000)
    plan = fastmlp.NetworkPlan([32, 64, 4], batch_size=64, seed=0)
    errors = []
    stop = threading.Event()

    def epochs():
        for _ in range(1000):
            if stop.is_set():
                return
            try:
                plan.train_epoch(X, y)
            except RuntimeError as exc:
                errors.append(exc)
                return

    worker = threading.Thread(target=epochs)
    worker.start()
    try:
        for _ in range(100000):
            if errors or not worker.is_alive():
                break
            try:
                plan.train_step(X[:8], y[:8])
            except RuntimeError as exc:
                errors.append(exc)
                break
    finally:
        stop.set()
        worker.join()
    assert errors, "two threads trained one plan at the same time without an error"
    assert "another thread" in str(errors[0])
    # and the plan is usable again afterwards
    assert np.isfinite(plan.train_step(X[:8], y[:8]))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_every_simd_kernel_set_trains_like_numpy(simd, dtype, rng, loss, optimizer):
    """The C step on each micro-kernel set this CPU runs, every hidden activation, on
    awkward widths and a batch that the fused row-blocked path splits into a full and a
    partial block (its blocks hold 256 KiB of activations and gradients: 40 rows of this
    network in float64, 80 in float32), against the NumPy reference."""
    if optimizer == "adam" and dtype == np.float32:
        # Adam divides each gradient by its own running magnitude: float32 rounding in
        # the near-zero gradients of 33k weights becomes lr-sized steps (on the plain C
        # loops as much as on the SIMD kernels), so only float64 curves are comparable.
        pytest.skip("Adam amplifies float32 rounding of near-zero gradients")
    n_out = 3 if loss == "softmax_cross_entropy" else 2
    X, y = _data(rng, 202, 7, n_out, loss, dtype)
    for activation in HIDDEN_ACTIVATIONS:
        _compare_with_numpy(
            "c", dtype, X, y, steps=6, layer_sizes=[7, 257, 129, n_out],
            activations=activation, loss=loss, optimizer=optimizer,
            learning_rate=LEARNING_RATES[optimizer] / 10, batch_size=101, seed=3, l2=1e-3,
            alpha=0.2 if activation in ("leaky_relu", "elu") else None)


# -- dropout ---------------------------------------------------------------------------


@compared_backends
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_dropout_trains_like_numpy(backend, dtype, rng, activation):
    """Dropout masks are the same hash on every backend, for any blocking of the step:
    the fused C step (full and partial blocks of 40/80 rows) and the whole-batch NumPy
    reference train alike."""
    X, y = _data(rng, 202, 7, 3, "softmax_cross_entropy", dtype)
    _compare_with_numpy(
        backend, dtype, X, y, steps=6, layer_sizes=[7, 257, 129, 3], activations=activation,
        optimizer="momentum", learning_rate=0.01, batch_size=101, seed=3, dropout=0.3,
        alpha=0.2 if activation in ("leaky_relu", "elu") else None)


def test_dropout_mask(backend, rng):
    """About a fraction `dropout` of the units drop, the others are scaled by exactly
    1/(1 - dropout); a plan rebuilt with the same seed draws the same masks, another seed
    others; initial weights are those of the plan without dropout; forward never drops."""
    # 32 rows: one block on every engine, so the buffers hold the whole batch's outputs
    X, y = _data(rng, 32, 5, 3, "softmax_cross_entropy")

    def plan_after_a_step(seed, dropout=0.25):
        plan = fastmlp.NetworkPlan([5, 200, 3], "sigmoid", batch_size=32, seed=seed,
                                   dropout=dropout, learning_rate=0.1)
        weights = [W.copy() for W, _ in plan.weights]
        plan.train_step(X, y)
        return plan, weights

    plan, weights = plan_after_a_step(0)
    A, D = plan._buffers["A"][0], plan._buffers["D"][0]
    kept = D != 0
    assert 0.22 < 1 - kept.mean() < 0.28  # 6,400 sigmoid units, none exactly 0
    np.testing.assert_array_equal(D[kept], A[kept] * (1 / (1 - 0.25)))
    again, _ = plan_after_a_step(0)
    np.testing.assert_array_equal(again._buffers["D"][0], D)
    other, _ = plan_after_a_step(1)
    assert not np.array_equal(other._buffers["D"][0] != 0, kept)
    _, plain_weights = plan_after_a_step(0, dropout=0.0)
    for W, W0 in zip(weights, plain_weights):
        np.testing.assert_array_equal(W, W0)
    (W1, b1), (W2, b2) = plan.weights
    H = 1 / (1 + np.exp(-(X @ W1 + b1)))
    np.testing.assert_allclose(plan.forward(X), H @ W2 + b2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError),
                                          (float("nan"), ValueError), ("0.1", TypeError)])
def test_dropout_is_checked(backend, value, error):
    with pytest.raises(error, match="dropout"):
        fastmlp.NetworkPlan([2, 4, 2], dropout=value)


def test_integer_inputs_are_refused_by_the_plan_and_cast_by_the_models():
    X = np.arange(24).reshape(8, 3)
    y = np.arange(8) % 2
    plan = fastmlp.NetworkPlan([3, 4, 2], batch_size=8, dtype=np.float32, seed=0)
    for call in (lambda: plan.train_step(X, y), lambda: plan.forward(X),
                 lambda: plan.train_epoch(X, y), lambda: plan.forward(X > 4)):
        with pytest.raises(TypeError, match=r"astype\(np.float32\)"):
            call()
    model = fastmlp.MLP((4,), seed=0).fit(X, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(X), model.predict(X.astype(np.float32)))


# -- the multiclass SVM, soft-target and log-cosh losses in the fused step -----------------

NEW_LOSSES = ("multiclass_hinge", "squared_multiclass_hinge", "categorical_cross_entropy",
              "kl_divergence", "log_cosh")


def _new_loss_data(rng, n, n_in, n_out, loss, dtype):
    X = rng.standard_normal((n, n_in)).astype(dtype)
    if "hinge" in loss:
        return X, rng.integers(0, n_out, n)
    if loss == "log_cosh":
        return X, (2 * rng.standard_normal((n, n_out))).astype(dtype)
    T = rng.dirichlet(np.full(n_out, 0.5), n)
    T[:3] = np.eye(n_out)[rng.integers(0, n_out, 3)]  # zeros: 0 log 0
    return X, T.astype(dtype)


def _reference_loss(loss, Z, y, w, margin):
    from test_losses import ref_hinge, ref_log_cosh, ref_soft_target

    if "hinge" in loss:
        return ref_hinge(Z, y, margin, "squared" in loss, w)
    if loss == "log_cosh":
        return ref_log_cosh(Z, y, w)
    return ref_soft_target(Z, y, loss == "kl_divergence", w)


@pytest.mark.parametrize("loss", NEW_LOSSES)
def test_new_losses_step_against_a_reference_network(backend, dtype, rng, loss):
    # the batch's loss and every gradient of a [4, 6, 3] tanh network with sample weights,
    # from the formulas in float64, then the SGD update
    X, y = _new_loss_data(rng, 20, 4, 3, loss, dtype)
    w = rng.uniform(0.2, 2.0, 20).astype(dtype)
    plan = fastmlp.NetworkPlan([4, 6, 3], "tanh", loss=loss, batch_size=20, dtype=dtype,
                               seed=2, margin=0.7, learning_rate=0.1)
    (W0, b0), (W1, b1) = [(W.astype(np.float64), b.astype(np.float64))
                          for W, b in plan.weights]
    A0 = np.tanh(X.astype(np.float64) @ W0 + b0)
    Z = A0 @ W1 + b1
    e_loss, dZ = _reference_loss(loss, Z, y, w, 0.7)
    dZ0 = (dZ @ W1.T) * (1 - A0 * A0)
    expected = np.concatenate([(X.astype(np.float64).T @ dZ0).ravel(), (A0.T @ dZ).ravel(),
                               dZ0.sum(axis=0), dZ.sum(axis=0)])
    loss_value, grads = plan.loss_and_gradient(X, y, sample_weight=w)
    tol = 1e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(loss_value, e_loss, rtol=tol)
    np.testing.assert_allclose(grads, expected, rtol=tol, atol=tol * np.abs(expected).max())
    before = plan.parameters.astype(np.float64)
    assert plan.train_step(X, y, sample_weight=w) == loss_value
    np.testing.assert_allclose(plan.parameters, before - 0.1 * expected, rtol=tol, atol=tol)


@compared_backends
@pytest.mark.parametrize("loss", NEW_LOSSES)
def test_new_losses_same_loss_curve_as_numpy(backend, dtype, rng, loss):
    X, y = _new_loss_data(rng, 64, 5, 3, loss, dtype)
    _compare_with_numpy(backend, dtype, X, y, layer_sizes=[5, 8, 3], activations="relu",
                        loss=loss, optimizer="adam", learning_rate=0.01, batch_size=16,
                        seed=5, l1=1e-4, margin=1.5)


def _new_running_metric(loss, Z, y):
    Z = Z.astype(np.float64)
    if loss == "log_cosh":
        return np.sum((Z - y) ** 2, axis=0)
    labels = y if "hinge" in loss else np.argmax(y, axis=1)
    hit = np.argmax(Z, axis=1) == labels
    return np.bincount(labels[hit], minlength=Z.shape[1]).astype(np.float64)


@pytest.mark.parametrize("loss", NEW_LOSSES)
def test_new_losses_running_metric(backend, dtype, rng, loss):
    # hinge: the label's score highest; CCE/KL: argmax z == argmax t; log-cosh: the squared
    # errors, as mean squared error's
    X, y = _new_loss_data(rng, 45, 4, 3, loss, dtype)
    rows = rng.permutation(45)
    kw = dict(layer_sizes=[4, 7, 3], activations="tanh", loss=loss, optimizer="adam",
              batch_size=10, seed=3, dtype=dtype, learning_rate=0.05)
    by_epoch, by_step = fastmlp.NetworkPlan(**kw), fastmlp.NetworkPlan(**kw)
    metric = np.full(3, np.nan)
    by_epoch.train_epoch(X, y, rows=rows, metric_out=metric)
    expected = np.zeros(3)
    for start in range(0, 45, 10):
        batch = rows[start:start + 10]
        expected += _new_running_metric(loss, by_step.forward(X[batch]), y[batch])
        by_step.train_step(X[batch], y[batch])
    if loss == "log_cosh":
        np.testing.assert_allclose(metric, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    else:
        np.testing.assert_array_equal(metric, expected)
        assert 0 < metric.sum() < 45


@pytest.mark.parametrize("kw, y, error, message", [
    (dict(loss="hinge"), np.array([0, 3]), ValueError, "y"),
    (dict(loss="hinge", margin=-0.5), np.array([0, 1]), ValueError, "margin"),
    (dict(loss="squared_hinge", activations=["relu", "sigmoid"]), np.array([0, 1]), ValueError,
     "activations"),
    (dict(loss="categorical_cross_entropy"), -np.ones((2, 3)), ValueError, "probabilities"),
    (dict(loss="kl_divergence"), np.ones((2, 2)), ValueError, "y"),
    (dict(loss="log_cosh"), np.ones((2, 4)), ValueError, "y"),
])
def test_new_losses_plan_checks(backend, kw, y, error, message):
    kw = {"activations": "relu", **kw}
    with pytest.raises(error, match=message):
        plan = fastmlp.NetworkPlan([2, 4, 3], backend=backend, **kw)
        plan.train_step(np.zeros((2, 2)), y)


@pytest.mark.parametrize("optimizer, options", [
    ("sgd", {}), ("momentum", {"momentum": 0.9}), ("adam", {}),
    ("adamw", {"weight_decay": 0.1}), ("nadam", {}), ("adagrad", {}),
    ("adam", {"clip_value": 0.05}), ("adam", {"clip_norm": 0.1}),
], ids=lambda v: v if isinstance(v, str) else ",".join(v) or "default")
def test_apply_gradient_of_a_batch_is_its_train_step(backend, dtype, rng, optimizer, options):
    """loss_and_gradient then apply_gradient is train_step, bit for bit: the update a
    data-parallel driver applies to the workers' mean gradient is the fused step's."""
    X = rng.standard_normal((48, 6)).astype(dtype)
    y = rng.integers(0, 3, 48)
    opt = fastmlp.optimizers.get_optimizer(optimizer, learning_rate=0.05, **options)
    fused, split = (fastmlp.NetworkPlan([6, 16, 3], "tanh", optimizer=opt, batch_size=48,
                                        dtype=dtype, seed=4, l2=1e-3, max_norm=1.5)
                    for _ in range(2))
    for _ in range(4):
        fused.train_step(X, y)
        _, gradient = split.loss_and_gradient(X, y)
        split.apply_gradient(gradient.astype(np.float64))  # any float dtype is taken
    assert split.step == fused.step == 4
    # global-norm clipping: an engine may sum the norm in another order (numba), which
    # moves the last bit of its scale; everything else is the same arithmetic
    # (Adam divides by sqrt(v): a small parameter keeps that bit's relative size)
    rtol = {np.float32: 1e-5, np.float64: 1e-12}[dtype.type] if "clip_norm" in options else 0
    np.testing.assert_allclose(split.parameters, fused.parameters, rtol=rtol, atol=0)
    for key in ("state1_W", "state2_W"):
        for a, b in zip(split.optimizer_state()[key], fused.optimizer_state()[key]):
            if b is not None:  # the optimizer keeps this state
                np.testing.assert_allclose(a, b, rtol=rtol, atol=0)
    # and the next fused step goes on from there (the engine saw the step count)
    np.testing.assert_allclose(split.train_step(X, y), fused.train_step(X, y), rtol=rtol)


def test_apply_gradient_rejects_another_shape(rng):
    plan = fastmlp.NetworkPlan([4, 3], batch_size=8)
    with pytest.raises(ValueError, match="gradient"):
        plan.apply_gradient(np.zeros(plan.parameters.size + 1))
