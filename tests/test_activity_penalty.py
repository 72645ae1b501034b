"""Activity penalties on the hidden layers' outputs (activity_l2, activity_l1).

With row weights w_i (1 without sample weights) and W = sum_i w_i, the loss gains
sum over hidden layers of sum_i w_i (activity_l2/2 sum_j A_ij^2 + activity_l1 sum_j |A_ij|) / W
(A the activation's output, before dropout); what must hold:

- the loss is the data loss plus that formula, computed here from the weights alone;
- every gradient (W and b of each layer) matches centred finite differences, with sample
  weights and with dropout (the mask is fixed for a step, so the loss is a function);
- every backend trains as the NumPy reference in both dtypes (with weights and dropout);
- the C step gives the same bits on 1 and 2 threads, in row blocks and in tiles (where the
  products would apply the activation's derivative in registers: the penalty's gradient
  must join before it);
- MLP.fit with activity_l2 > 0 makes the hidden outputs smaller; a checkpointed fit
  refuses to resume with another activity_l2; bad values name their argument.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tol
from scipy.special import logsumexp

import fastmlp

SIZES = [5, 7, 6, 3]


def _data(rows=24, n_in=5, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n_in))
    y = rng.integers(0, n_out, rows)
    w = rng.random(rows) * 2
    return X, y, w


def _plan(backend, dtype=np.float64, activation="tanh", **options):
    options = {"activity_l2": 0.7, "activity_l1": 0.09, **options}
    return fastmlp.NetworkPlan(SIZES, activation, batch_size=24, dtype=dtype, seed=3,
                               backend=backend, **options)


def _reference_loss(plan, X, y, w):
    """Softmax cross-entropy plus the activity penalties, from the weights, in float64
    (no dropout)."""
    A, penalty = X, 0.0
    weights = np.ones(len(X)) if w is None else w
    layers = plan.weights
    for layer, (W, b) in enumerate(layers):
        Z = A @ W.astype(np.float64) + b
        if layer == len(layers) - 1:
            A = Z
            break
        A = np.tanh(Z)
        per_row = 0.5 * plan.activity_l2 * np.sum(A**2, axis=1) + \
            plan.activity_l1 * np.sum(np.abs(A), axis=1)
        penalty += np.dot(weights, per_row) / weights.sum()
    per_row = logsumexp(A, axis=1) - A[np.arange(len(y)), y]
    return np.dot(weights, per_row) / weights.sum() + penalty


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_loss_is_the_data_loss_plus_the_formula(backend, weighted):
    X, y, w = _data()
    w = w if weighted else None
    plan = _plan(backend)
    loss, _ = plan.loss_and_gradient(X, y, sample_weight=w)
    np.testing.assert_allclose(loss, _reference_loss(plan, X, y, w), **tol(np.float64))
    # and the penalty is there: without it the loss is smaller by its value
    plain = _plan(backend, activity_l2=0.0, activity_l1=0.0)
    assert plain.loss_and_gradient(X, y, sample_weight=w)[0] < loss - 0.1


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "gelu"])
@pytest.mark.parametrize("case", ["plain", "weighted", "dropout", "l2 only", "l1 only"])
def test_every_gradient_matches_finite_differences(backend, activation, case):
    X, y, w = _data()
    options = {"dropout": 0.3} if case == "dropout" else {}
    if case == "l2 only":
        options["activity_l1"] = 0.0
    if case == "l1 only":
        options["activity_l2"] = 0.0
    weights = w if case == "weighted" else None
    plan = _plan(backend, activation=activation, **options)
    # biases off 0: with zero biases, a row whose every input to a relu layer is dropped
    # has a pre-activation of exactly 0, on the kink, where differences see half a slope
    for _, b in plan.weights:
        b[...] = np.random.default_rng(7).uniform(0.05, 0.3, b.shape)
    params = plan.parameters
    _, grad = plan.loss_and_gradient(X, y, sample_weight=weights)
    grad = grad.copy()
    h = 1e-6
    numeric = np.empty_like(grad)
    for i in range(params.size):
        old = params[i]
        params[i] = old + h
        up = plan.loss_and_gradient(X, y, sample_weight=weights)[0]
        params[i] = old - h
        down = plan.loss_and_gradient(X, y, sample_weight=weights)[0]
        params[i] = old
        numeric[i] = (up - down) / (2 * h)
    # relu and the l1 term have kinks: no unit sits within h of one now
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    # fastmlp's own checker agrees
    report = fastmlp.check_gradients(plan, X, y, sample_weight=weights, rows=24)
    assert report.worst < 1e-6, report


@pytest.mark.parametrize("case", ["plain", "weighted", "dropout", "shuffled"])
def test_every_backend_trains_as_the_numpy_reference(backend, dtype, case):
    X, y, w = _data(rows=48)
    X = X.astype(dtype)
    w = w.astype(dtype) if case == "weighted" else None
    options = {"dropout": 0.25} if case == "dropout" else {}
    plans = [fastmlp.NetworkPlan(SIZES, "tanh", optimizer="momentum", learning_rate=0.05,
                                 batch_size=24, dtype=dtype, seed=3, backend=b,
                                 activity_l2=0.5, activity_l1=0.02, **options)
             for b in (backend, "numpy")]
    for _ in range(3):
        if case == "shuffled":
            losses = [p.train_epoch(X, y, batch_size=16, shuffle=True) for p in plans]
        else:
            losses = [p.train_step(X[:24], y[:24], w if w is None else w[:24]) for p in plans]
        np.testing.assert_allclose(losses[0], losses[1], **tol(dtype))
    for (W, b), (W0, b0) in zip(plans[0].weights, plans[1].weights):
        np.testing.assert_allclose(W, W0, **tol(dtype))
        np.testing.assert_allclose(b, b0, **tol(dtype))


def test_the_penalty_is_settable_between_steps(backend):
    X, y, _ = _data()
    plan = _plan(backend, activity_l2=0.0, activity_l1=0.0)
    before = plan.loss_and_gradient(X, y)[0]
    plan.activity_l2 = 0.7
    plan.activity_l1 = 0.09
    after = plan.loss_and_gradient(X, y)[0]
    np.testing.assert_allclose(after, _reference_loss(plan, X, y, None), **tol(np.float64))
    assert after > before
    plan.activity_l2 = plan.activity_l1 = 0.0
    assert plan.loss_and_gradient(X, y)[0] == before


def _c_training(sizes, batch, activation, dtype, n_threads, dropout, backend="c"):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((2 * batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 2 * batch)
    w = (rng.random(2 * batch) * 2).astype(dtype)
    plan = fastmlp.NetworkPlan(sizes, activation, optimizer="adam", learning_rate=1e-3,
                               batch_size=batch, dtype=dtype, seed=0, dropout=dropout,
                               activity_l2=0.05, activity_l1=1e-3, n_threads=n_threads,
                               backend=backend)
    losses = [plan.train_epoch(X, y, batch_size=batch, sample_weight=w) for _ in range(2)]
    return losses, [a.copy() for pair in plan.weights for a in pair]


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no-dropout", "dropout"])
def test_row_blocks_give_the_same_bits_for_any_thread_count(dtype, dropout):
    """784-100-10 at batch 100 runs in 2 row blocks on threads: each block's penalty
    joins its loss, summed in block order."""
    ref_losses, ref = _c_training([784, 100, 10], 100, "relu", dtype, 1, dropout)
    losses, weights = _c_training([784, 100, 10], 100, "relu", dtype, 2, dropout)
    assert losses == ref_losses
    for a, a0 in zip(weights, ref):
        np.testing.assert_array_equal(a, a0)
    np_losses, np_weights = _c_training([784, 100, 10], 100, "relu", dtype, 1, dropout,
                                        backend="numpy")
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ref_losses, np_losses, rtol=rtol)
    for a, a0 in zip(ref, np_weights):
        np.testing.assert_allclose(a, a0, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu"])
def test_tiles_give_the_same_bits_and_the_reference(activation, dtype, gemm_path, monkeypatch):
    """Without per-block gradient copies the products run in tiles on the threads, and
    their epilogue would apply the derivative of relu, sigmoid or tanh in registers
    (gemm=small): with an activity penalty the gradient must join dL/dA before it."""
    from fastmlp import plan as plan_module

    monkeypatch.setattr(plan_module, "_BLOCK_GRADIENT_BYTES", 0)
    sizes = [48, 2080, 5]
    ref_losses, ref = _c_training(sizes, 64, activation, dtype, 1, 0.0)
    losses, weights = _c_training(sizes, 64, activation, dtype, 2, 0.0)
    assert losses == ref_losses
    for a, a0 in zip(weights, ref):
        np.testing.assert_array_equal(a, a0)
    np_losses, np_weights = _c_training(sizes, 64, activation, dtype, 1, 0.0, backend="numpy")
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ref_losses, np_losses, rtol=rtol)
    for a, a0 in zip(ref, np_weights):
        np.testing.assert_allclose(a, a0, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_a_small_step_with_gating_in_registers_matches_the_reference(activation, dtype,
                                                                      gemm_path):
    """One block on one thread: the product making dA of the layer below gates in its
    epilogue unless an activity penalty is on."""
    X, y, w = _data(rows=24)
    plans = [fastmlp.NetworkPlan(SIZES, activation, batch_size=24, dtype=dtype, seed=3,
                                 backend=b, activity_l2=0.5, activity_l1=0.05)
             for b in ("c", "numpy")]
    results = [p.loss_and_gradient(X.astype(dtype), y, w.astype(dtype)) for p in plans]
    np.testing.assert_allclose(results[0][0], results[1][0], **tol(dtype))
    np.testing.assert_allclose(results[0][1], results[1][1], **tol(dtype))


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 4)) + 2.0 * np.eye(3, 4)[y]
    return X, y


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plan", "layered"])
def test_fit_with_activity_l2_shrinks_the_hidden_outputs(backend, batch_norm):
    X, y = _blobs()
    mean_squares = []
    for activity_l2 in (0.0, 0.5):
        model = fastmlp.MLP((16, 8), activation="tanh", seed=1, batch_norm=batch_norm)
        model.fit(X, y, epochs=15, batch_size=32, activity_l2=activity_l2, verbose=0)
        mean_squares.append([np.mean(A**2) for A in model.hidden_activations(X)])
    for penalised, plain in zip(mean_squares[1], mean_squares[0]):
        assert penalised < 0.9 * plain  # measured: 0.55x to 0.86x (batch norm rescales)


def test_the_layered_path_matches_finite_differences():
    """LayeredNetwork (batch norm): the penalty in its loss and the gradient it trains on,
    checked through one SGD step: W_new = W - lr grad."""
    from fastmlp.layers import LayeredNetwork

    X, y, _ = _data()
    options = dict(loss="softmax_cross_entropy", optimizer="sgd", batch_size=24,
                   dtype=np.float64, seed=2, batch_norm=True, activity_l2=0.7,
                   activity_l1=0.09)

    def loss_at(params):
        net = LayeredNetwork(SIZES, "tanh", **options)
        net.set_weights(params)
        net.learning_rate = 0.0
        return net.train_step(X, y)

    net = LayeredNetwork(SIZES, "tanh", **options)
    start = [(W.copy(), b.copy()) for W, b in net.weights]
    net.learning_rate = 1.0
    net.train_step(X, y)
    h = 1e-6
    for layer, (W0, _) in enumerate(start):
        grad = W0 - net.weights[layer][0]
        for index in [(0, 0), (W0.shape[0] - 1, W0.shape[1] - 1), (1, 2)]:
            params = [(W.copy(), b.copy()) for W, b in start]
            params[layer][0][index] += h
            up = loss_at(params)
            params[layer][0][index] -= 2 * h
            down = loss_at(params)
            np.testing.assert_allclose(grad[index], (up - down) / (2 * h), rtol=1e-6,
                                       atol=1e-9)
    # the penalty is in the loss
    plain = LayeredNetwork(SIZES, "tanh", **{**options, "activity_l2": 0.0,
                                             "activity_l1": 0.0})
    plain.learning_rate = 0.0
    assert plain.train_step(X, y) < loss_at(start) - 0.1


def test_a_resume_with_another_activity_l2_is_refused(tmp_path):
    X, y = _blobs(100)
    path = tmp_path / "run.npz"
    options = dict(epochs=2, batch_size=32, verbose=0, activity_l2=0.1)
    fastmlp.MLP((8,), seed=5).fit(X, y, **options, checkpoint=path)
    with pytest.raises(ValueError, match="activity_l2"):
        fastmlp.MLP.load(path).fit(X, y, **dict(options, activity_l2=0.2), resume=True)
    with pytest.raises(ValueError, match="activity_l1"):
        fastmlp.MLP.load(path).fit(X, y, **options, activity_l1=0.1, resume=True)
    fastmlp.MLP.load(path).fit(X, y, **options, resume=True)  # the same settings resume


@pytest.mark.parametrize("name", ["activity_l2", "activity_l1"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_values_name_the_argument(name, value):
    with pytest.raises(ValueError, match=name):
        fastmlp.NetworkPlan([2, 3, 2], **{name: value})
    plan = fastmlp.NetworkPlan([2, 3, 2])
    with pytest.raises(ValueError, match=name):
        setattr(plan, name, value)
    assert getattr(plan, name) == 0.0
    X, y = _blobs(40)
    with pytest.raises(ValueError, match=name):
        fastmlp.MLP((4,)).fit(X, y, epochs=1, verbose=0, **{name: value})
    with pytest.raises(TypeError, match=name):
        fastmlp.NetworkPlan([2, 3, 2], **{name: "0.1"})
