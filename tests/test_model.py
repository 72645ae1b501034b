"""fastmlp.MLP, the model API: fit / predict / evaluate / partial_fit / save / load.

Every requirement of the model API has a test here whose assertions can fail: the output
head and its loss are recomputed by hand from model.weights, schedules are checked value
by value, early stopping is checked against a second model trained for exactly the best
number of epochs, Ctrl-C is simulated both by raising KeyboardInterrupt inside the loop
and by a real SIGINT, and the accuracy targets are the course's and the lecture's.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from helpers import outlier_regression

import fastmlp
import fastmlp.model
import fastmlp.progress
from fastmlp.datasets import load_mnist_sample, make_spiral
from fastmlp.layers import LayeredNetwork
from fastmlp.optimizers import Adam, Nesterov

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
LEARNING_RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01, "adamw": 0.01}
BN_EPS = 1e-5  # fastmlp.layers._BN_EPS


def _blobs(n=300, n_features=4, n_classes=3, seed=0, dtype=np.float64, spread=3.0):
    """Well separated Gaussian blobs: integer labels 0..n_classes-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=spread, size=(n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + rng.standard_normal((n, n_features))
    return X.astype(dtype), y


def _noise(n=200, n_features=5, n_classes=3, seed=0):
    """Features and labels without relation: a network can only overfit them."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_features)), rng.integers(0, n_classes, n)


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def _same_weights(a, b):
    return len(a) == len(b) and all(
        np.array_equal(Wa, Wb) and np.array_equal(ba, bb) for (Wa, ba), (Wb, bb) in zip(a, b)
    )


def _history_lengths(model):
    return {key: len(values) for key, values in model.history.items()}


# -- architecture and output head ----------------------------------------------------------


def test_per_layer_activations_and_hidden_activations_match_a_hand_forward_pass():
    X, y = _blobs(120, 4)
    model = fastmlp.MLP((16, 8), ["tanh", "relu"], dtype=np.float64, seed=0)
    model.fit(X, y, epochs=3, verbose=0)
    (W1, b1), (W2, b2), (W3, b3) = model.weights
    assert W1.shape == (4, 16) and W2.shape == (16, 8) and W3.shape == (8, 3)
    H1 = np.tanh(X @ W1 + b1)
    H2 = np.maximum(H1 @ W2 + b2, 0)
    hidden = model.hidden_activations(X)
    assert [h.shape for h in hidden] == [(120, 16), (120, 8)]
    np.testing.assert_allclose(hidden[0], H1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hidden[1], H2, rtol=1e-10, atol=1e-12)
    assert hidden[0].min() > -1 and hidden[0].max() < 1 and hidden[1].min() >= 0
    np.testing.assert_allclose(model.decision_function(X), H2 @ W3 + b3, rtol=1e-10, atol=1e-12)


def test_activation_count_must_match_the_hidden_layers():
    with pytest.raises(ValueError, match="activation"):
        fastmlp.MLP((8, 8), ["relu"])


def test_classification_head_is_softmax_with_cross_entropy():
    X, y = _blobs(200, 4, n_classes=3)
    model = fastmlp.MLP((10,), dtype=np.float64, seed=0).fit(X, y, epochs=5, verbose=0)
    assert model.task_ == "classification" and model.n_outputs_ == 3
    assert model.net_.loss == "softmax_cross_entropy"
    z = model.decision_function(X)
    P = model.predict_proba(X)
    np.testing.assert_allclose(P, _softmax(z), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(model.predict(X), model.classes_[np.argmax(z, axis=1)])
    expected_loss = np.mean(-np.log(P[np.arange(len(y)), y]))
    assert model.evaluate(X, y)["loss"] == pytest.approx(expected_loss, rel=1e-10)


def test_binary_head_is_one_sigmoid_unit_with_binary_cross_entropy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, "yes", "no")  # string labels, XOR-like
    model = fastmlp.MLP((32,), dtype=np.float64, seed=0)
    model.fit(X, y, epochs=100, learning_rate=1e-2, verbose=0)
    assert model.task_ == "binary" and model.n_outputs_ == 1
    assert model.net_.loss == "sigmoid_binary_cross_entropy"
    np.testing.assert_array_equal(model.classes_, ["no", "yes"])
    z = model.decision_function(X)
    assert z.shape == (300, 1)
    P = model.predict_proba(X)
    assert P.shape == (300, 2)
    np.testing.assert_allclose(P[:, 1], _sigmoid(z[:, 0]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.predict(X), np.where(z[:, 0] > 0, "yes", "no"))
    t = (y == "yes").astype(float)
    expected = np.mean(np.logaddexp(0, z[:, 0]) - t * z[:, 0])  # BCE of the logits
    assert model.evaluate(X, y)["loss"] == pytest.approx(expected, rel=1e-10)
    assert model.score(X, y) >= 0.95


def test_multilabel_head_is_independent_sigmoids():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 2))
    Y = np.c_[X[:, 0] > 0, X[:, 1] > 0, X.sum(axis=1) > 0].astype(int)
    model = fastmlp.MLP((32,), dtype=np.float64, seed=0)
    model.fit(X, Y, epochs=60, learning_rate=1e-2, verbose=0)
    assert model.task_ == "multilabel" and model.n_outputs_ == 3
    assert model.net_.loss == "sigmoid_binary_cross_entropy"
    z = model.decision_function(X)
    P = model.predict_proba(X)
    assert P.shape == (400, 3)
    np.testing.assert_allclose(P, _sigmoid(z), rtol=1e-12, atol=1e-15)
    pred = model.predict(X)
    assert pred.shape == (400, 3) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (z > 0).astype(int))
    assert model.score(X, Y) >= 0.95
    assert set(model.history) >= {"loss", "accuracy"}


def test_regression_head_is_identity_with_mean_squared_error():
    x = np.linspace(-2, 2, 200)[:, None]
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 0]  # a smooth 1-D function
    model = fastmlp.MLP((64, 64), "tanh", dtype=np.float64, seed=0)
    model.fit(x, y, epochs=80, batch_size=32, learning_rate=1e-2, verbose=0)
    assert model.task_ == "regression" and model.n_outputs_ == 1
    assert model.net_.loss == "mean_squared_error"
    pred = model.predict(x)
    assert pred.shape == (200,)
    np.testing.assert_array_equal(pred, model.decision_function(x)[:, 0])
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0.9
    assert model.score(x, y) == pytest.approx(r2, rel=1e-10)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "r2"}
    assert result["loss"] == pytest.approx(np.sum((pred - y) ** 2) / (2 * len(y)), rel=1e-8)
    assert model.history["r2"][-1] > 0.9
    with pytest.raises(AttributeError, match="regression"):
        model.predict_proba(x)


def test_multi_output_regression():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (300, 2))
    Y = np.c_[X[:, 0] * X[:, 1], np.sin(X[:, 0]) + 0.3]
    model = fastmlp.MLP((32,), "tanh", dtype=np.float64, seed=0)
    model.fit(X, Y, epochs=60, learning_rate=1e-2, verbose=0)
    assert model.task_ == "regression" and model.n_outputs_ == 2
    assert model.predict(X).shape == (300, 2)
    assert model.score(X, Y) > 0.8


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dtype_is_kept(dtype):
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), dtype=dtype, seed=0).fit(X, y, epochs=2, verbose=0)
    for W, b in model.weights:
        assert W.dtype == dtype and b.dtype == dtype
    assert model.decision_function(X).dtype == dtype
    assert model.predict_proba(X).dtype == dtype
    assert all(h.dtype == dtype for h in model.hidden_activations(X))


def test_dtype_must_be_a_float():
    with pytest.raises(TypeError, match="dtype"):
        fastmlp.MLP(dtype=np.int32)


# -- reproducibility -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("options", [{}, {"dropout": 0.2}], ids=["plan", "dropout"])
def test_same_seed_same_backend_gives_identical_weights_and_losses(backend, options):
    X, y = _blobs(150, 4)

    def run(seed):
        model = fastmlp.MLP((16,), seed=seed, backend=backend, **options)
        return model.fit(X, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0)

    a, b, c = run(7), run(7), run(8)
    assert a.net_.backend == backend
    assert _same_weights(a.weights, b.weights)
    assert a.history == b.history
    assert not _same_weights(a.weights, c.weights)
    assert a.history["loss"] != c.history["loss"]


def test_fit_starts_from_scratch():
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0)
    first = [(W.copy(), b.copy()) for W, b in model.fit(X, y, epochs=3, verbose=0).weights]
    model.fit(X, y, epochs=3, verbose=0)
    assert _same_weights(first, model.weights)
    assert len(model.history["loss"]) == 3


# -- fit: epochs, batches, shuffling -----------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"batch_norm": True}], ids=["plan", "batch_norm"])
def test_epochs_and_batch_size_set_the_number_of_steps(options):
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0, **options).fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert model.net_.step == 3 * math.ceil(100 / 16)
    assert all(n == 3 for n in _history_lengths(model).values())


def _record_training_rows(monkeypatch, model_class):
    """Replaces model_class.train_epoch with a wrapper that records the rows it gets."""
    seen = []
    original = model_class.train_epoch

    def recording(self, X, y, **kwargs):
        rows = kwargs.get("rows")  # the rows visited, in order: all of X, or those selected
        seen.append(np.array(X if rows is None else np.asarray(X)[rows], copy=True))
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(model_class, "train_epoch", recording)
    return seen


def test_rows_are_reshuffled_every_epoch(monkeypatch):
    X, y = _blobs(64, 3)
    seen = _record_training_rows(monkeypatch, fastmlp.NetworkPlan)
    fastmlp.MLP((4,), dtype=np.float64, seed=0).fit(X, y, epochs=3, batch_size=8, verbose=0)
    assert len(seen) == 3  # 64 rows: one backend call per epoch
    for rows in seen:  # each epoch sees every row once
        np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(X, axis=0))
    assert not np.array_equal(seen[0], X)
    assert not np.array_equal(seen[0], seen[1])
    assert not np.array_equal(seen[1], seen[2])


def test_shuffle_false_keeps_the_order(monkeypatch):
    X, y = _blobs(64, 3)
    seen = _record_training_rows(monkeypatch, fastmlp.NetworkPlan)
    fastmlp.MLP((4,), dtype=np.float64, seed=0).fit(X, y, epochs=2, batch_size=8,
                                                    shuffle=False, verbose=0)
    assert len(seen) == 2
    for rows in seen:
        np.testing.assert_array_equal(rows, X)


# -- optimizers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_by_name_trains(name):
    X, y = _blobs(200, 4)
    model = fastmlp.MLP((16,), seed=0)
    model.fit(X, y, epochs=15, batch_size=20, optimizer=name, learning_rate=LEARNING_RATES[name],
              verbose=0)
    assert model.net_.optimizer.name == name
    assert model.net_.optimizer.learning_rate == LEARNING_RATES[name]
    assert model.history["loss"][-1] < 0.5 * model.history["loss"][0]
    assert model.score(X, y) >= 0.9


def test_the_optimizer_changes_the_training():
    X, y = _blobs(100, 3)
    finals = {}
    for name in OPTIMIZERS:
        model = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=2, batch_size=10, optimizer=name,
                                              learning_rate=0.01, verbose=0)
        finals[name] = model.weights
    for i, a in enumerate(OPTIMIZERS):
        for b in OPTIMIZERS[i + 1:]:
            assert not _same_weights(finals[a], finals[b]), (a, b)


def test_optimizer_hyper_parameters_are_passed_on():
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0)
    model.fit(X, y, epochs=1, optimizer="momentum", learning_rate=0.05, momentum=0.5, verbose=0)
    assert (model.net_.optimizer.learning_rate, model.net_.optimizer.momentum) == (0.05, 0.5)
    model.fit(X, y, epochs=1, optimizer="adamw", weight_decay=0.1, beta1=0.8, beta2=0.99,
              eps=1e-6, verbose=0)
    opt = model.net_.optimizer
    assert (opt.name, opt.weight_decay, opt.beta1, opt.beta2, opt.eps) == (
        "adamw", 0.1, 0.8, 0.99, 1e-6)
    with pytest.raises(TypeError, match="hyper-parameters"):
        model.fit(X, y, epochs=1, optimizer="adam", betta1=0.5, verbose=0)


def test_optimizer_object_is_used_and_not_modified():
    X, y = _blobs(100, 3)
    opt = Nesterov(learning_rate=0.03, momentum=0.7)
    model = fastmlp.MLP((8,), seed=0)
    model.fit(X, y, epochs=4, optimizer=opt, schedule="step", step_size=1, gamma=0.5, verbose=0)
    assert model.net_.optimizer.name == "nesterov" and model.net_.optimizer.momentum == 0.7
    assert model.history["lr"] == pytest.approx([0.03, 0.015, 0.0075, 0.00375])
    assert opt.learning_rate == 0.03  # the schedule changed a copy
    # an object and its name with the same settings train identically
    a = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=2, optimizer=Adam(learning_rate=0.02),
                                      verbose=0)
    b = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=2, optimizer="adam", learning_rate=0.02,
                                      verbose=0)
    assert _same_weights(a.weights, b.weights)


# -- learning-rate schedules --------------------------------------------------------------


def _lr_history(epochs=6, **options):
    X, y = _blobs(60, 3)
    model = fastmlp.MLP((4,), seed=0)
    model.fit(X, y, epochs=epochs, optimizer="sgd", verbose=0, **options)
    return model.history["lr"]


def test_constant_schedule():
    assert _lr_history(learning_rate=0.2) == [0.2] * 6


def test_step_schedule():
    lr = _lr_history(learning_rate=0.1, schedule="step", step_size=2, gamma=0.5)
    assert lr == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-15)


def test_cosine_schedule_starts_at_the_learning_rate_and_decreases():
    lr = _lr_history(learning_rate=0.1, schedule="cosine", min_learning_rate=0.01)
    assert lr[0] == pytest.approx(0.1, rel=1e-15)
    assert all(a > b for a, b in zip(lr, lr[1:]))
    assert all(0.01 <= v <= 0.1 for v in lr)


def test_cosine_schedule_reaches_the_minimum_at_the_last_epoch():
    # fit's docstring: "cosine" (down to min_learning_rate at the last epoch)
    lr = _lr_history(epochs=5, learning_rate=0.1, schedule="cosine", min_learning_rate=0.01)
    assert lr[-1] == pytest.approx(0.01, rel=1e-12)
    assert lr[2] == pytest.approx(0.055, rel=1e-12)  # half-way: the mean of the two ends


def test_callable_schedule_drives_the_training():
    X, y = _blobs(80, 3)

    def only_first_epoch(epoch, lr0):
        return lr0 if epoch == 0 else 0.0

    one = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=1, optimizer="sgd", learning_rate=0.1,
                                        schedule=only_first_epoch, verbose=0)
    three = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=3, optimizer="sgd", learning_rate=0.1,
                                          schedule=only_first_epoch, verbose=0)
    assert three.history["lr"] == [0.1, 0.0, 0.0]
    assert _same_weights(one.weights, three.weights)  # lr 0 after the first epoch: no change


# -- penalties ----------------------------------------------------------------------------


def _trained_weights(**options):
    X, y = _blobs(200, 4)
    model = fastmlp.MLP((32,), dtype=np.float64, seed=0)
    model.fit(X, y, epochs=40, batch_size=50, optimizer="sgd", learning_rate=0.1, verbose=0,
              **options)
    return [W for W, _ in model.weights]


def test_l2_penalty_shrinks_the_weights():
    none = _trained_weights()
    l2 = _trained_weights(l2=0.05)
    for W0, W2 in zip(none, l2):
        assert np.sum(W2**2) < 0.7 * np.sum(W0**2)


def test_l1_penalty_shrinks_the_weights():
    none = _trained_weights()
    l1 = _trained_weights(l1=0.01)
    for W0, W1 in zip(none, l1):
        assert np.sum(np.abs(W1)) < 0.8 * np.sum(np.abs(W0))
    # L1 drives many weights to (nearly) zero
    assert np.mean(np.abs(l1[0]) < 1e-2) > np.mean(np.abs(none[0]) < 1e-2) + 0.1


# -- weight initialisation ------------------------------------------------------------------


def _initial_weights(activation, init):
    """Weights after one epoch of SGD with learning rate 0: the initial weights."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 200)), np.arange(20) % 3
    model = fastmlp.MLP((300,), activation, init=init, dtype=np.float64, seed=0)
    model.fit(X, y, epochs=1, optimizer="sgd", learning_rate=0.0, verbose=0)
    return model.weights


@pytest.mark.parametrize(
    "activation, init, kind",
    [
        ("relu", "he", "he"),
        ("tanh", "he", "he"),
        ("tanh", "glorot", "glorot"),
        ("relu", "glorot", "glorot"),
        ("relu", "course", "course"),
        ("relu", "auto", "he"),
        ("tanh", "auto", "glorot"),
        ("sigmoid", "auto", "glorot"),
        ("gelu", "auto", "he"),
        ("swish", "auto", "he"),
        ("mish", "auto", "he"),
        ("selu", "auto", "lecun"),
        ("softsign", "auto", "glorot"),
    ],
)
def test_weight_initialisation(activation, init, kind):
    (W1, b1), (W2, b2) = _initial_weights(activation, init)
    assert not b1.any() and not b2.any()  # biases start at zero
    W = W1  # 200 -> 300: 60,000 draws
    fan_in, fan_out = W.shape
    if kind in ("he", "lecun"):
        std = math.sqrt((2 if kind == "he" else 1) / fan_in)
        assert W.std() == pytest.approx(std, rel=0.03)
        assert np.abs(W).max() > 3.5 * std  # normal, not uniform
    elif kind == "glorot":
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(W).max() <= bound
        assert np.abs(W).max() > 0.99 * bound
        assert W.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    else:
        assert W.std() == pytest.approx(0.01, rel=0.03)
        assert W2.std() == pytest.approx(0.01, rel=0.1)
    assert abs(W.mean()) < 0.05 * W.std()


def test_unknown_init_is_rejected():
    X, y = _blobs(30, 2)
    with pytest.raises(ValueError, match="init"):
        fastmlp.MLP((4,), init="xavier").fit(X, y, epochs=1, verbose=0)


# -- dropout and batch normalisation --------------------------------------------------------


def test_dropout_trains_with_a_mask_and_predicts_without_one():
    X, y = _blobs(300, 4)
    plain = fastmlp.MLP((64,), dtype=np.float64, seed=0).fit(X, y, epochs=10, verbose=0)
    model = fastmlp.MLP((64,), dropout=0.5, dtype=np.float64, seed=0)
    model.fit(X, y, epochs=10, verbose=0)
    assert not _same_weights(plain.weights, model.weights)  # the mask changed the training
    assert model.score(X, y) >= 0.9
    # inference: deterministic, no mask and no 1/(1-p) scaling
    np.testing.assert_array_equal(model.decision_function(X), model.decision_function(X))
    (W1, b1), (W2, b2) = model.weights
    H = np.maximum(X @ W1 + b1, 0)
    np.testing.assert_allclose(model.hidden_activations(X)[0], H, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.decision_function(X), H @ W2 + b2, rtol=1e-10, atol=1e-12)
    # training runs in the fused plan, which drops about half the units and doubles the
    # others (A: the layer's outputs, D: what the next layer reads)
    plan = model.net_
    assert isinstance(plan, fastmlp.NetworkPlan) and plan.dropout == 0.5
    plan.train_step(X[:32], y[:32])  # the model's batch size
    A, masked = plan._buffers["A"][0][:32], plan._buffers["D"][0][:32]
    active = A > 0
    dropped = np.mean(masked[active] == 0)
    assert 0.45 < dropped < 0.55
    kept = active & (masked != 0)
    np.testing.assert_array_equal(masked[kept], 2 * A[kept])


def test_batch_norm_trains_and_predicts_with_running_statistics():
    X, y = _blobs(300, 4)
    X = 10 * X + 5  # badly scaled inputs: what batch normalisation is for
    model = fastmlp.MLP((32, 16), batch_norm=True, dtype=np.float64, seed=0)
    model.fit(X, y, epochs=20, batch_size=32, learning_rate=1e-2, verbose=0)
    assert model.score(X, y) >= 0.9
    net = model.net_
    assert not np.allclose(net.running_mean[0], 0) and not np.allclose(net.running_var[0], 1)
    assert not np.allclose(net.gamma[0], 1) and not np.allclose(net.beta[0], 0)
    # inference uses the running statistics, so a row's output does not depend on its batch
    np.testing.assert_allclose(model.decision_function(X[:5]), model.decision_function(X)[:5],
                               rtol=1e-10, atol=1e-12)
    # ... and is gamma (Z - running_mean) / sqrt(running_var + eps) + beta, then relu
    (W1, b1) = model.weights[0]
    Z = X @ W1 + b1
    H = np.maximum(net.gamma[0] * (Z - net.running_mean[0]) / np.sqrt(net.running_var[0] + BN_EPS)
                   + net.beta[0], 0)
    np.testing.assert_allclose(model.hidden_activations(X)[0], H, rtol=1e-9, atol=1e-10)
    assert [h.shape for h in model.hidden_activations(X)] == [(300, 32), (300, 16)]


def test_batch_norm_float32():
    X, y = _blobs(200, 4)
    model = fastmlp.MLP((16,), batch_norm=True, dropout=0.1, seed=0)
    model.fit(X, y, epochs=10, learning_rate=1e-2, verbose=0)
    assert model.net_.running_mean[0].dtype == np.float32
    assert model.decision_function(X).dtype == np.float32
    assert model.score(X, y) >= 0.9


# -- validation and history ------------------------------------------------------------------


def test_history_has_loss_and_accuracy_per_epoch_for_training_and_validation():
    X, y = _blobs(400, 4)
    X, y, Xv, yv = X[:300], y[:300], X[300:], y[300:]
    model = fastmlp.MLP((16,), seed=0)
    model.fit(X, y, epochs=6, validation_data=(Xv, yv), verbose=0)
    assert set(model.history) == {"loss", "accuracy", "lr", "val_loss", "val_accuracy"}
    assert all(n == 6 for n in _history_lengths(model).values())
    assert all(np.isfinite(v).all() for v in model.history.values())
    assert model.history["loss"][-1] < model.history["loss"][0]
    assert model.history["val_accuracy"][-1] == model.score(Xv, yv)
    assert model.history["val_loss"][-1] == pytest.approx(model.evaluate(Xv, yv)["loss"],
                                                          rel=1e-12)
    assert all(0 <= a <= 1 for a in model.history["accuracy"] + model.history["val_accuracy"])


@pytest.mark.parametrize("task", ["classification", "multilabel", "regression"])
def test_history_training_metric_is_the_running_one(task):
    # Full batch: epoch k's one batch runs on the weights of k steps, so its running
    # metric is what a fit of k epochs scores; with dropout, the masks enter it.
    X, y = _blobs(300, 3)
    if task == "multilabel":
        y = np.stack([y == 0, y != 1], axis=1).astype(np.float64)
    elif task == "regression":
        y = X @ np.linspace(-1, 2, X.shape[1]) + np.sin(X[:, 0])
    metric = "r2" if task == "regression" else "accuracy"
    settings = dict(learning_rate=0.05, batch_size=300, verbose=0)
    full = fastmlp.MLP((8,), task=task, seed=0).fit(X, y, epochs=4, **settings)
    for k in (1, 3):
        shorter = fastmlp.MLP((8,), task=task, seed=0).fit(X, y, epochs=k, **settings)
        assert full.history[metric][k] == pytest.approx(shorter.score(X, y), rel=1e-9)
    dropped = fastmlp.MLP((8,), task=task, dropout=0.5, seed=0).fit(X, y, epochs=4,
                                                                     **settings)
    assert dropped.history[metric][3] != full.history[metric][3]
    # batch norm trains layer by layer: the metric of its training outputs too
    normed = fastmlp.MLP((8,), task=task, batch_norm=True, seed=0).fit(X, y, epochs=4,
                                                                        **settings)
    assert all(np.isfinite(normed.history[metric]))
    assert normed.history[metric][-1] > (0.5 if task != "regression" else 0.0)


def test_a_full_batch_fit_trains_on_the_rows_as_stored():
    # one batch per epoch: any order is the same batch, so no draw and no gather
    X, y = _blobs(120, 3)
    fits = [fastmlp.MLP((8,), seed=0).fit(X, y, epochs=3, batch_size=batch, shuffle=shuffle,
                                          verbose=0)
            for batch, shuffle in ((120, True), (500, True), (120, False))]
    for other in fits[1:]:
        for (W, b), (W1, b1) in zip(fits[0].weights, other.weights):
            np.testing.assert_array_equal(W, W1)
            np.testing.assert_array_equal(b, b1)


def test_update_ratios_are_the_first_steps_relative_size_per_layer():
    X, y = _blobs(120, 3)
    settings = dict(batch_size=120, optimizer="sgd", learning_rate=0.5, verbose=0)
    # full batch: epoch k's one step goes from the weights of k epochs to those of k + 1
    fits = [fastmlp.MLP((8, 6), seed=0).fit(X, y, epochs=k, **settings) for k in (2, 3)]
    watched = fastmlp.MLP((8, 6), seed=0).fit(X, y, epochs=3, update_ratios=True, **settings)
    assert [k for k in watched.history if k.startswith("update")] == [
        "update_ratio_W0", "update_ratio_W1", "update_ratio_W2"]
    for layer in range(3):
        before, after = fits[0].weights[layer][0], fits[1].weights[layer][0]
        expected = np.linalg.norm(after - before) / np.linalg.norm(before)
        assert watched.history[f"update_ratio_W{layer}"][2] == pytest.approx(expected,
                                                                             rel=1e-6)
        assert len(watched.history[f"update_ratio_W{layer}"]) == 3
    # minibatches: the first step is its own call, and the weights are the same bits
    plain = fastmlp.MLP((8, 6), seed=0).fit(X, y, epochs=3, batch_size=16, verbose=0)
    split = fastmlp.MLP((8, 6), seed=0).fit(X, y, epochs=3, batch_size=16, verbose=0,
                                           update_ratios=True)
    for (W, b), (W1, b1) in zip(plain.weights, split.weights):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)
    assert all(0 < r < 1 for r in split.history["update_ratio_W0"])
    with pytest.raises(ValueError, match="update_ratios"):
        fastmlp.MLP((4,)).fit(X, y, optimizer="lbfgs", update_ratios=True, verbose=0)


def test_history_has_r2_for_regression():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 1))
    y = X[:, 0] ** 2 + 0.1 * np.sin(5 * X[:, 0])
    model = fastmlp.MLP((16,), "tanh", seed=0)
    model.fit(X, y, epochs=5, learning_rate=1e-2, validation_split=0.25, verbose=0)
    assert set(model.history) == {"loss", "r2", "lr", "val_loss", "val_r2"}
    assert all(n == 5 for n in _history_lengths(model).values())
    held_out = fastmlp.model._validation_rows(200, 0.25, None, 0)[1]
    assert model.history["val_r2"][-1] == pytest.approx(
        model.score(X[held_out], y[held_out]), rel=1e-6)


def test_validation_split_holds_out_a_stratified_random_fraction():
    X, y = _blobs(400, 4)
    model = fastmlp.MLP((16,), seed=0)
    model.fit(X, y, epochs=3, batch_size=25, validation_split=0.25, verbose=0)
    assert model.net_.step == 3 * (300 // 25)  # trained on 300 rows only
    train, held_out = fastmlp.model._validation_rows(400, 0.25, y, 0)
    assert len(held_out) == 100 and len(np.intersect1d(train, held_out)) == 0
    # each class keeps its share on both sides, and the rows come from all over X
    assert np.all(np.abs(np.bincount(y[held_out]) - np.bincount(y) / 4) < 1)
    assert held_out.min() < 100 and held_out.max() >= 300
    assert model.history["val_accuracy"][-1] == model.score(X[held_out], y[held_out])
    assert model.history["val_loss"][-1] == pytest.approx(
        model.evaluate(X[held_out], y[held_out])["loss"], rel=1e-12)
    # the seed picks the rows: another seed, other rows
    other = fastmlp.model._validation_rows(400, 0.25, y, 1)[1]
    assert not np.array_equal(held_out, other)


def test_validation_split_of_sorted_labels_validates_every_class():
    # make_spiral's labels are sorted: the last third of the rows is one class
    X, y = make_spiral(100, 3, seed=0)
    model = fastmlp.MLP((100,), seed=0).fit(X, y, epochs=300, batch_size=300,
                                            optimizer="sgd", learning_rate=1.0,
                                            validation_split=0.34, verbose=0)
    assert model.history["val_accuracy"][-1] > 0.9


def test_one_hot_targets_train_a_classifier_of_their_columns():
    X, y = _blobs(300)
    one_hot = fastmlp.MLP((16,), seed=0).fit(X, np.eye(3)[y], epochs=20, verbose=0)
    labels = fastmlp.MLP((16,), seed=0).fit(X, y, epochs=20, verbose=0)
    assert one_hot.task_ == "classification"
    for (W1, b1), (W2, b2) in zip(one_hot.weights, labels.weights):  # the same training
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    assert one_hot.score(X, np.eye(3)[y]) == one_hot.score(X, y) > 0.8
    assert one_hot.evaluate(X, np.eye(3)[y]) == one_hot.evaluate(X, y)
    # every column is a class, hot in this y or not
    model = fastmlp.MLP((16,), seed=0).fit(X, np.eye(4)[y], epochs=1, verbose=0)
    np.testing.assert_array_equal(model.classes_, np.arange(4))
    assert model.predict_proba(X).shape == (300, 4)
    # two one-hot columns: a binary classifier
    assert fastmlp.MLP((4,), seed=0).fit(X, np.eye(2)[y % 2], epochs=1,
                                         verbose=0).task_ == "binary"
    # several labels in a row, or task="multilabel": independent labels
    both = np.eye(3)[y % 3] + np.eye(3)[(y + 1) % 3]
    assert fastmlp.MLP((4,), seed=0).fit(X, both, epochs=1, verbose=0).task_ == "multilabel"
    assert fastmlp.MLP((4,), task="multilabel", seed=0).fit(
        X, np.eye(3)[y % 3], epochs=1, verbose=0).task_ == "multilabel"
    with pytest.raises(ValueError, match="one-hot rows of 4 columns"):
        model.score(X, np.eye(5)[y])


@pytest.mark.parametrize(
    "options", [{}, {"dropout": 0.2}, {"batch_norm": True}], ids=["plan", "dropout", "batch_norm"]
)
def test_early_stopping_restores_the_best_epoch(options):
    X, y = _noise(200, seed=0)
    Xv, yv = _noise(100, seed=1)
    settings = dict(batch_size=20, learning_rate=1e-2, validation_data=(Xv, yv), verbose=0)
    model = fastmlp.MLP((64,), dtype=np.float64, seed=3, **options)
    model.fit(X, y, epochs=200, early_stopping=True, patience=4, **settings)
    assert model.stopped_early_ and not model.interrupted_
    n_epochs = len(model.history["loss"])
    assert n_epochs < 200
    best = int(np.argmin(model.history["val_loss"]))
    assert model.best_epoch_ == best
    assert n_epochs == best + 1 + 4  # stopped after `patience` epochs without improvement
    # the restored model is the model of the best epoch: train one for exactly that long
    reference = fastmlp.MLP((64,), dtype=np.float64, seed=3, **options)
    reference.fit(X, y, epochs=best + 1, **settings)
    assert _same_weights(model.weights, reference.weights)
    np.testing.assert_array_equal(model.decision_function(Xv), reference.decision_function(Xv))
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(model.history["val_loss"][best],
                                                           rel=1e-12)


def test_early_stopping_without_restoring_keeps_the_last_weights():
    X, y = _noise(200, seed=0)
    Xv, yv = _noise(100, seed=1)
    settings = dict(batch_size=20, learning_rate=1e-2, validation_data=(Xv, yv), verbose=0)
    model = fastmlp.MLP((64,), seed=3).fit(X, y, epochs=200, early_stopping=True, patience=3,
                                           restore_best_weights=False, **settings)
    assert model.stopped_early_
    n_epochs = len(model.history["loss"])
    reference = fastmlp.MLP((64,), seed=3).fit(X, y, epochs=n_epochs, **settings)
    assert _same_weights(model.weights, reference.weights)


def test_without_early_stopping_every_epoch_runs():
    X, y = _noise(200, seed=0)
    Xv, yv = _noise(100, seed=1)
    model = fastmlp.MLP((64,), seed=3).fit(X, y, epochs=30, batch_size=20, learning_rate=1e-2,
                                           validation_data=(Xv, yv), verbose=0)
    assert len(model.history["loss"]) == 30 and not model.stopped_early_


# -- progress ----------------------------------------------------------------------------


def test_verbose_0_prints_nothing(capsys):
    X, y = _blobs(100, 3)
    fastmlp.MLP((8,), seed=0).fit(X, y, epochs=3, validation_split=0.2, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_shows_progress(capsys):
    X, y = _blobs(100, 3)
    fastmlp.MLP((8,), seed=0).fit(X, y, epochs=3, verbose=1)
    captured = capsys.readouterr()
    assert (captured.out + captured.err).strip() != ""


def test_without_tqdm_a_plain_line_per_epoch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(fastmlp.progress, "LINE_INTERVAL", 0.0)
    X, y = _blobs(100, 3)
    fastmlp.MLP((8,), seed=0).fit(X, y, epochs=3, validation_split=0.2, verbose=1)
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"epoch {epoch}/3:")
        assert "loss=" in line and "val_loss=" in line and "accuracy=" in line


def test_without_tqdm_many_tiny_epochs_print_a_few_lines_a_second(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = make_spiral(100, 3, seed=0)
    start = time.monotonic()
    fastmlp.MLP((100,), seed=0).fit(X, y, epochs=3000, batch_size=300, optimizer="sgd",
                                    learning_rate=1.0, verbose=1)
    seconds = time.monotonic() - start
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) <= 2 + seconds / fastmlp.progress.LINE_INTERVAL  # it printed 3000
    assert lines[0].startswith("epoch 1/3000:") and lines[-1].startswith("epoch 3000/3000:")


# -- Ctrl-C ------------------------------------------------------------------------------


def _assert_usable(model, X, y):
    assert model.interrupted_ is True
    assert not model.stopped_early_
    lengths = set(_history_lengths(model).values())
    assert len(lengths) == 1, f"history lists of different lengths: {_history_lengths(model)}"
    out = model.decision_function(X)
    assert np.isfinite(out).all()
    assert np.isfinite(model.predict_proba(X)).all()
    assert set(np.unique(model.predict(X))) <= set(model.classes_)
    model.partial_fit(X[:50], y[:50])  # still trainable (no lock left held)
    assert np.isfinite(model.decision_function(X)).all()


@pytest.mark.parametrize("options", [{}, {"dropout": 0.2}, {"batch_norm": True}],
                         ids=["plan", "dropout", "batch_norm"])
def test_keyboard_interrupt_in_a_training_call_stops_cleanly(monkeypatch, options):
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0, **options)
    # dropout trains in the plan; batch normalisation in the layer-by-layer network
    network_class = LayeredNetwork if "batch_norm" in options else fastmlp.NetworkPlan
    original = network_class.train_epoch
    calls = []

    def interrupting(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(network_class, "train_epoch", interrupting)
    model.fit(X, y, epochs=50, batch_size=10, verbose=0)
    assert len(calls) == 5
    assert len(model.history["loss"]) == 4  # 100 rows: one call per epoch, 4 completed
    _assert_usable(model, X, y)


def test_keyboard_interrupt_in_the_progress_update_stops_cleanly(monkeypatch):
    X, y = _blobs(100, 3)
    calls = []

    def interrupting(self, batches, loss):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(fastmlp.model.Progress, "update", interrupting)
    model = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=50, verbose=0)
    assert len(model.history["loss"]) == 2
    _assert_usable(model, X, y)


def test_keyboard_interrupt_during_validation_leaves_a_consistent_history(monkeypatch):
    X, y = _blobs(200, 3)
    original = fastmlp.MLP._evaluate_encoded
    calls = []

    def interrupting(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(fastmlp.MLP, "_evaluate_encoded", interrupting)
    model = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=50, validation_split=0.2, verbose=0)
    _assert_usable(model, X, y)


@pytest.mark.parametrize("options", [{}, {"dropout": 0.2}], ids=["plan", "dropout"])
def test_real_sigint_during_fit_stops_cleanly(monkeypatch, options):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((20000, 20)).astype(np.float32)
        y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 1)
        model = fastmlp.MLP((256,), seed=0, **options)
        main = threading.main_thread().ident
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
        start = time.perf_counter()
        timer.start()
        model.fit(X, y, epochs=100, batch_size=64, verbose=0)  # about a minute uninterrupted
        elapsed = time.perf_counter() - start
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert elapsed < 10, f"fit took {elapsed:.1f} s after SIGINT at 0.3 s"
    _assert_usable(model, X, y)
    # and it trains again from scratch
    model.fit(X[:500], y[:500], epochs=1, verbose=0)
    assert model.interrupted_ is False


# -- predict, evaluate, partial_fit ------------------------------------------------------


def test_predict_proba_rows_sum_to_one_and_predict_is_its_argmax():
    X, y = _blobs(200, 4, n_classes=4)
    labels = np.array(["a", "b", "c", "d"])[y]
    model = fastmlp.MLP((16,), seed=0).fit(X, labels, epochs=10, learning_rate=1e-2, verbose=0)
    P = model.predict_proba(X)
    assert P.shape == (200, 4) and (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.classes_, ["a", "b", "c", "d"])
    pred = model.predict(X)
    np.testing.assert_array_equal(pred, model.classes_[P.argmax(axis=1)])
    result = model.evaluate(X, labels)
    assert set(result) == {"loss", "accuracy"}
    assert result["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert model.score(X, labels) == result["accuracy"] >= 0.9
    assert model.score(X, np.roll(labels, 1)) < 0.6  # the score depends on y


def test_partial_fit_learns_from_a_stream_of_batches():
    X, y = _blobs(2000, 4, seed=5)
    order = np.argsort(y, kind="stable")
    first = order[:50]  # only class 0: the other classes come later
    assert set(y[first]) == {0}
    model = fastmlp.MLP((16,), seed=0)
    model.partial_fit(X[first], y[first], classes=[0, 1, 2], learning_rate=1e-2)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.n_outputs_ == 3
    for start in range(0, 2000, 50):
        model.partial_fit(X[start:start + 50], y[start:start + 50])
    losses = model.history["loss"]
    assert len(losses) == 1 + 40
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[1:6])
    assert model.score(X, y) >= 0.9


def test_partial_fit_does_not_reset_a_fitted_model():
    X, y = _blobs(300, 4)
    model = fastmlp.MLP((16,), seed=0).fit(X, y, epochs=20, verbose=0)
    before = [(W.copy(), b.copy()) for W, b in model.weights]
    accuracy = model.score(X, y)
    model.partial_fit(X[:32], y[:32])
    assert not _same_weights(before, model.weights)
    assert model.score(X, y) >= accuracy - 0.05
    for (W0, _), (W1, _) in zip(before, model.weights):
        assert np.abs(W1 - W0).max() < 0.1  # one small step, not a new initialisation


def test_partial_fit_rejects_a_label_it_has_never_seen():
    X, y = _blobs(200, 3)
    keep = y < 2
    model = fastmlp.MLP((8,), seed=0)
    model.partial_fit(X[keep][:50], y[keep][:50])
    with pytest.raises(ValueError, match=r"labels \[2\] were not seen"):
        model.partial_fit(X[~keep][:10], y[~keep][:10])
    model = fastmlp.MLP((8,), seed=0)
    model.partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not seen"):
        model.partial_fit(X[:3], np.array([0, 1, 7]))


def test_partial_fit_checks_its_input():
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0)
    with pytest.raises(ValueError, match="different lengths"):
        model.partial_fit(X, y[:-1])
    model.partial_fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :2], y)


# -- weights, save and load --------------------------------------------------------------


def test_weights_are_numpy_arrays_trained_and_edited_in_place():
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((16, 8), seed=0).fit(X, y, epochs=2, verbose=0)
    weights = model.weights
    assert [(W.shape, b.shape) for W, b in weights] == [
        ((3, 16), (16,)), ((16, 8), (8,)), ((8, 3), (3,))]
    assert all(isinstance(a, np.ndarray) for pair in weights for a in pair)
    W_last, b_last = weights[-1]
    W_last[...] = 0
    b_last[...] = 0
    np.testing.assert_array_equal(model.decision_function(X), 0)
    np.testing.assert_allclose(model.predict_proba(X), 1 / 3, rtol=1e-6)


def _saved_and_loaded(model, tmp_path, name="model.npz"):
    path = tmp_path / name
    model.save(path)
    assert path.exists()
    return fastmlp.MLP.load(path)


def _classification_data(n=600, n_features=20):
    X, y = _blobs(n, n_features, n_classes=3, spread=1.0)
    return X, np.array(["cat", "dog", "fish"])[y]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_save_load_restores_weights_classes_and_history(tmp_path, dtype):
    X, y = _classification_data()
    model = fastmlp.MLP((64, 32), ["relu", "tanh"], dtype=dtype, seed=0)
    model.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    loaded = _saved_and_loaded(model, tmp_path)
    assert _same_weights(model.weights, loaded.weights)
    assert all(W.dtype == dtype for W, _ in loaded.weights)
    np.testing.assert_array_equal(loaded.classes_, ["cat", "dog", "fish"])
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.task_ == "classification" and loaded.activation == ["relu", "tanh"]
    assert loaded.hidden_layer_sizes == (64, 32) and loaded.n_features_in_ == 20
    assert loaded.history == model.history
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_save_load_predictions_are_bit_identical(tmp_path, dtype):
    X, y = _classification_data()
    model = fastmlp.MLP((64,), dtype=dtype, seed=0)
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)  # a batch size other than 256
    loaded = _saved_and_loaded(model, tmp_path)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plan", "batch_norm"])
def test_save_load_new_activations(tmp_path, batch_norm):
    # every activation the registry added trains, saves and loads (names checked by the
    # loader against the registry), the alias included, on the plan and the layered path
    X, y = _classification_data(300, 6)
    names = ["selu", "gelu", "gelu_tanh", "silu", "mish", "softsign", "hard_sigmoid"]
    model = fastmlp.MLP((8,) * len(names), names, batch_norm=batch_norm, seed=0)
    model.fit(X, y, epochs=3, verbose=0)
    assert np.isfinite(model.history["loss"]).all()
    assert model.history["loss"][-1] < model.history["loss"][0]
    loaded = _saved_and_loaded(model, tmp_path)
    assert loaded.activation == names
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


def test_save_load_batch_norm_statistics_and_dropout(tmp_path):
    X, y = _classification_data(300, 6)
    model = fastmlp.MLP((16, 8), batch_norm=True, dropout=0.2, seed=0)
    model.fit(X, y, epochs=3, verbose=0)
    loaded = _saved_and_loaded(model, tmp_path)
    assert loaded.batch_norm and loaded.dropout == 0.2
    for name in ("gamma", "beta", "running_mean", "running_var"):
        for a, b in zip(getattr(model.net_, name), getattr(loaded.net_, name)):
            assert not np.array_equal(a, np.zeros_like(a)) or name == "beta"
            np.testing.assert_array_equal(a, b)
    assert _same_weights(model.weights, loaded.weights)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


def test_save_load_regression(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    model = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=2, verbose=0)
    loaded = _saved_and_loaded(model, tmp_path)
    assert loaded.task_ == "regression" and not hasattr(loaded, "classes_")
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


def test_standardize_learns_the_columns_scaling_and_uses_it_everywhere(tmp_path):
    rng = np.random.default_rng(0)
    X0, y = _blobs(300, 3)
    X0 = np.c_[X0, rng.standard_normal(300)]
    shift, scale = np.array([1e3, -50.0, 0.0, 7.0]), np.array([1e2, 1e-3, 1.0, 0.0])
    X = X0 * scale + shift  # wildly scaled columns, one constant
    X_before = X.copy()
    model = fastmlp.MLP((16,), standardize=True, dtype=np.float64, seed=0)
    model.fit(X, y, epochs=20, batch_size=30, validation_split=0.2, verbose=0)
    np.testing.assert_array_equal(X, X_before)  # the caller's X is not scaled in place
    np.testing.assert_allclose(model.input_mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.input_scale_, [*X.std(axis=0)[:3], 1.0], rtol=1e-12)
    # the same network on X scaled by hand gives the same outputs
    Z = (X - model.input_mean_) / model.input_scale_
    plain = fastmlp.MLP((16,), dtype=np.float64, seed=0)
    plain.fit(Z, y, epochs=1, verbose=0)
    plain.net_.set_weights(model.weights)
    np.testing.assert_array_equal(model.decision_function(X), plain.decision_function(Z))
    # as good as on the clean columns; without the scaling, training fails
    clean = fastmlp.MLP((16,), dtype=np.float64, seed=0)
    clean.fit(X0, y, epochs=20, batch_size=30, validation_split=0.2, verbose=0)
    assert model.score(X, y) > 0.8 and clean.score(X0, y) > 0.8
    unscaled = fastmlp.MLP((16,), dtype=np.float64, seed=0)
    unscaled.fit(X, y, epochs=20, batch_size=30, validation_split=0.2, verbose=0)
    assert unscaled.score(X, y) < 0.5
    # saved and loaded with it, checked at load
    path = tmp_path / "scaled.npz"
    model.save(path)
    loaded = fastmlp.MLP.load(path)
    assert loaded.standardize
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    with np.load(path) as data:
        members = {k: data[k] for k in data.files}
    members["input_scale"] = np.zeros(4)
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ValueError, match="input scaling"):
        fastmlp.MLP.load(tmp_path / "bad.npz")
    del members["input_scale"]
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ValueError, match="input scaling"):
        fastmlp.MLP.load(tmp_path / "bad.npz")
    # partial_fit learns it from its first call and keeps it
    streamed = fastmlp.MLP((16,), standardize=True, seed=0)
    streamed.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    first = streamed.input_mean_.copy()
    streamed.partial_fit(X[100:] + 5, y[100:])
    np.testing.assert_array_equal(streamed.input_mean_, first)
    with pytest.raises(TypeError, match="standardize"):
        fastmlp.MLP(standardize="yes")


@pytest.mark.parametrize("batch_norm", [False, True])
def test_an_autoencoder_reconstructs_through_its_code(batch_norm):
    X = fastmlp.datasets.load_mnist_sample()[0][:1000]
    model = fastmlp.MLP((64, 16, 64), task="regression", batch_norm=batch_norm, seed=0)
    model.fit(X, X, epochs=8, batch_size=50, learning_rate=3e-3, verbose=0)
    code = model.encode(X)
    assert code.shape == (1000, 16) and code.dtype == np.float32
    np.testing.assert_array_equal(code, model.hidden_activations(X)[1])
    np.testing.assert_array_equal(model.encode(X, layer=2), model.hidden_activations(X)[2])
    # the reconstruction beats the mean image (16 principal components leave ~0.4)
    error = np.mean((model.predict(X) - X) ** 2)
    assert error < 0.7 * np.mean((X - X.mean(axis=0)) ** 2)
    with pytest.raises(ValueError, match="layer"):
        model.encode(X, layer=3)
    with pytest.raises(ValueError, match="no hidden layer"):
        fastmlp.MLP(()).fit(X[:50], X[:50, :2], epochs=1, verbose=0).encode(X)


def test_load_rejects_a_corrupt_file(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.MLP.load(path)


@pytest.mark.parametrize("cut", ["empty", "half", "tail"])
def test_load_rejects_a_truncated_model_file(tmp_path, cut):
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0).fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    data = {"empty": b"", "half": data[: len(data) // 2], "tail": data[:-40]}[cut]
    (tmp_path / "bad.npz").write_bytes(data)
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.MLP.load(tmp_path / "bad.npz")


def test_load_rejects_a_foreign_npz(tmp_path):
    np.savez(tmp_path / "foreign.npz", W0=np.ones((3, 3)), b0=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.MLP.load(tmp_path / "foreign.npz")
    np.savez(tmp_path / "other.npz", config=np.array('{"format": "something else"}'))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.MLP.load(tmp_path / "other.npz")


def test_load_rejects_an_npz_whose_config_is_not_an_object(tmp_path):
    np.savez(tmp_path / "list.npz", config=np.array("[1, 2, 3]"))
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        fastmlp.MLP.load(tmp_path / "list.npz")


def test_load_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastmlp.MLP.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError):
        fastmlp.MLP.load(os.fspath(tmp_path / "missing.npz"))


# -- bad input ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    X, y = _blobs(100, 3)
    return fastmlp.MLP((8,), seed=0).fit(X, y, epochs=2, verbose=0), X, y


def test_mismatched_lengths(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match="different lengths"):
        fastmlp.MLP((4,)).fit(X, y[:-1], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="different lengths"):
        model.evaluate(X, y[:-1])
    with pytest.raises(ValueError, match="different lengths"):
        fastmlp.MLP((4,)).fit(X, y, epochs=1, validation_data=(X[:10], y[:9]), verbose=0)


def test_wrong_feature_count(fitted):
    model, X, y = fitted
    for method in (model.predict, model.predict_proba, model.decision_function,
                   model.hidden_activations):
        with pytest.raises(ValueError, match="has 4 features, but the model was fitted with 3"):
            method(np.ones((5, 4)))
    with pytest.raises(ValueError, match="features"):
        model.evaluate(X[:, :2], y)
    with pytest.raises(ValueError, match="features"):
        fastmlp.MLP((4,)).fit(X, y, epochs=1, validation_data=(X[:, :2], y), verbose=0)


def test_labels_never_seen(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match=r"labels \[5\] were not seen"):
        model.evaluate(X[:3], np.array([0, 1, 5]))
    with pytest.raises(ValueError, match="not seen"):
        fastmlp.MLP((4,)).fit(X, y, epochs=1, validation_data=(X[:3], [0, 1, 9]), verbose=0)


def test_empty_X(fitted):
    model, X, y = fitted
    with pytest.raises(ValueError, match="at least one sample"):
        fastmlp.MLP((4,)).fit(np.empty((0, 3)), np.empty(0, int), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="at least one sample"):
        model.predict(np.empty((0, 3)))
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.ones(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_or_inf_in_X(fitted, bad):
    model, X, y = fitted
    X_bad = X.copy()
    X_bad[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastmlp.MLP((4,)).fit(X_bad, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(X_bad)


def test_nan_in_regression_targets():
    X = np.ones((10, 2))
    y = np.linspace(0, 1, 10) + 0.01
    y[4] = np.nan
    with pytest.raises(ValueError, match="y: contains NaN"):
        fastmlp.MLP((4,)).fit(X, y, epochs=1, verbose=0)


def test_a_diverging_fit_raises_and_keeps_the_model_it_had(backend):
    X, y = _blobs(100, 3)
    model = fastmlp.MLP((8,), seed=0, backend=backend).fit(X, y, epochs=1, verbose=0)
    before = model.predict_proba(X)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="diverged in epoch 1"):
        model.fit(X * 1e3, y, epochs=3, optimizer="sgd", learning_rate=1e30, verbose=0)
    np.testing.assert_array_equal(model.predict_proba(X), before)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="diverged"):
        fastmlp.MLP((8,), seed=0, backend=backend).fit(
            X * 1e3, y, epochs=3, optimizer="sgd", learning_rate=1e30, verbose=0)


@pytest.mark.filterwarnings("ignore:(overflow|invalid value) encountered:RuntimeWarning")
@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_diverged_partial_fit_raises_and_predict_refuses_nan_outputs(backend, n_classes):
    X, y = _blobs(60, 3, n_classes)
    model = fastmlp.MLP((8,), seed=0, backend=backend)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="partial_fit: .*diverged"):
        for _ in range(20):  # a step or two may still leave (huge) finite weights
            model.partial_fit(X * 1e3, y, optimizer="sgd", learning_rate=1e30)
    # the float outputs propagate NaN; the labels cannot, so predict refuses
    assert np.isnan(model.decision_function(X)).any()
    assert np.isnan(model.predict_proba(X)).any()
    with pytest.raises(ValueError, match="output is NaN for"):
        model.predict(X)
    result = model.evaluate(X, y)
    assert math.isnan(result["loss"]) and math.isnan(result["accuracy"])
    assert math.isnan(model.score(X, y))


def test_infinite_logits_from_finite_weights_still_have_a_class():
    X, y = _blobs(60, 3, 2)
    model = fastmlp.MLP((), seed=0, dtype=np.float64).fit(X, y, epochs=2, verbose=0)
    (W, b), = model.weights
    model.net_.set_weights([(W * 1e10, b)])
    huge = np.zeros_like(X)
    huge[:, 0] = np.where(X[:, 0] > 0, 1e300, -1e300)  # finite; the logits overflow to +-inf
    z = model.decision_function(huge)
    assert np.isinf(z).any() and not np.isnan(z).any()
    np.testing.assert_array_equal(model.predict(huge), model.classes_[(z[:, 0] > 0).astype(int)])


def test_non_numeric_features():
    with pytest.raises(TypeError, match="X"):
        fastmlp.MLP((4,)).fit(np.array([["a", "b"], ["c", "d"]]), [0, 1], epochs=1, verbose=0)


def test_one_class_is_not_enough():
    with pytest.raises(ValueError, match="at least two classes"):
        fastmlp.MLP((4,)).fit(np.ones((5, 2)), np.zeros(5, int), epochs=1, verbose=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X, y, path: m.predict(X),
        lambda m, X, y, path: m.predict_proba(X),
        lambda m, X, y, path: m.decision_function(X),
        lambda m, X, y, path: m.evaluate(X, y),
        lambda m, X, y, path: m.score(X, y),
        lambda m, X, y, path: m.hidden_activations(X),
        lambda m, X, y, path: m.weights,
        lambda m, X, y, path: m.save(path),
    ],
    ids=["predict", "predict_proba", "decision_function", "evaluate", "score",
         "hidden_activations", "weights", "save"],
)
def test_use_before_fit_is_a_runtime_error(call, tmp_path):
    X, y = _blobs(10, 3)
    with pytest.raises(RuntimeError, match="not fitted"):
        call(fastmlp.MLP((4,)), X, y, tmp_path / "never-written.npz")
    assert not (tmp_path / "never-written.npz").exists()


@pytest.mark.parametrize(
    "options, exception, name",
    [
        ({"learning_rate": -0.1}, ValueError, "learning_rate"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"optimizer": "lion"}, ValueError, "optimizer"),
        ({"optimizer": "sgd", "momentum": 1.5}, ValueError, "momentum"),
        ({"schedule": "linear"}, ValueError, "schedule"),
        ({"schedule": "step", "step_size": 0}, ValueError, "step_size"),
        ({"schedule": "step", "gamma": -0.5, "step_size": 1}, ValueError, "gamma"),
        ({"l2": -1.0}, ValueError, "l2"),
        ({"l1": -1.0}, ValueError, "l1"),
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"early_stopping": True, "patience": 0}, ValueError, "patience"),
    ],
    ids=lambda v: None if isinstance(v, (dict, type)) else v,
)
def test_invalid_fit_hyper_parameters(options, exception, name):
    X, y = _blobs(40, 3)
    options = {"epochs": 3, **options}
    with pytest.raises(exception, match=name):
        fastmlp.MLP((4,)).fit(X, y, verbose=0, **options)


@pytest.mark.parametrize(
    "options, exception, name",
    [
        ({"activation": "prelu"}, ValueError, "activation"),
        ({"activation": ["relu", "prelu"], "hidden_layer_sizes": (4, 4)}, ValueError,
         "activation"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"dropout": 1.5}, ValueError, "dropout"),
        ({"dropout": -0.1}, ValueError, "dropout"),
        ({"hidden_layer_sizes": (10, 0)}, ValueError, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (10.5,)}, TypeError, "hidden_layer_sizes"),
        ({"task": "ranking"}, ValueError, "task"),
    ],
    ids=lambda v: None if isinstance(v, (dict, type)) else v,
)
def test_invalid_constructor_arguments(options, exception, name):
    with pytest.raises(exception, match=name):
        fastmlp.MLP(**options)


# -- accuracy ----------------------------------------------------------------------------

COURSE = dict(epochs=3000, batch_size=300, optimizer="sgd", learning_rate=1.0, l2=1e-3,
              shuffle=False, verbose=0)


def test_spiral_two_layer_relu_network_reaches_98_percent():
    X, y = make_spiral(100, 3, seed=0)
    model = fastmlp.MLP((100,), "relu", init="course", dtype=np.float64, seed=0)
    model.fit(X, y, **COURSE)
    assert model.history["loss"][0] == pytest.approx(math.log(3), rel=1e-3)
    assert model.history["loss"][-1] < 0.3
    assert model.score(X, y) >= 0.98


def test_spiral_linear_classifier_gets_about_half():
    X, y = make_spiral(100, 3, seed=0)
    model = fastmlp.MLP((), init="course", dtype=np.float64, seed=0)
    model.fit(X, y, **COURSE)
    assert model.hidden_layer_sizes == ()
    assert [W.shape for W, _ in model.weights] == [(2, 3)]
    assert model.hidden_activations(X) == []
    assert 0.40 <= model.score(X, y) <= 0.65


def test_mnist_lecture_network_reaches_95_percent():
    X_train, y_train, X_test, y_test = load_mnist_sample()
    model = fastmlp.MLP((100,), "sigmoid", seed=0)
    model.fit(X_train, y_train, epochs=30, batch_size=100, optimizer="adam",
              learning_rate=1e-3, validation_data=(X_test, y_test), verbose=0)
    accuracy = model.score(X_test, y_test)
    assert accuracy >= 0.95
    assert model.history["val_accuracy"][-1] == accuracy
    assert model.history["accuracy"][-1] > accuracy  # training accuracy above test accuracy


# -- sample weights and L-BFGS -------------------------------------------------------------


def test_fit_with_integer_sample_weights_equals_repeated_rows():
    X, y = fastmlp.datasets.make_spiral(40, 3, seed=0)
    counts = np.random.default_rng(0).integers(1, 4, len(X))
    kw = dict(epochs=5, batch_size=1000, shuffle=False, verbose=0)
    a = fastmlp.MLP((16,), seed=0, dtype=np.float64).fit(X, y, sample_weight=counts, **kw)
    b = fastmlp.MLP((16,), seed=0, dtype=np.float64).fit(
        np.repeat(X, counts, axis=0), np.repeat(y, counts), **kw)
    for (W, bias), (W1, bias1) in zip(a.net_.weights, b.net_.weights):
        np.testing.assert_allclose(W, W1, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bias, bias1, rtol=1e-10, atol=1e-12)
    # weights scale freely: c * w trains as w
    c = fastmlp.MLP((16,), seed=0, dtype=np.float64).fit(X, y, sample_weight=2.5 * counts,
                                                          **kw)
    np.testing.assert_allclose(c.history["loss"], a.history["loss"], rtol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (np.ones(5), r"sample_weight: expected shape \(120,\)"),
    (-np.ones(120), "weights >= 0"),
    (np.zeros(120), "every weight is 0"),
    (np.full(120, np.nan), "NaN or infinity"),
    (np.array(["x"] * 120), "expected numbers"),
])
def test_bad_sample_weight_is_refused(bad, match):
    X, y = fastmlp.datasets.make_spiral(40, 3, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        fastmlp.MLP((4,)).fit(X, y, sample_weight=bad, epochs=1, verbose=0)
    with pytest.raises((ValueError, TypeError), match=match):
        fastmlp.MLP((4,)).partial_fit(X, y, sample_weight=bad)


def test_lbfgs_fit_converges():
    X, y = fastmlp.datasets.make_spiral(100, 3, seed=0)
    model = fastmlp.MLP((50,), "tanh", seed=0).fit(X, y, optimizer="lbfgs", epochs=300,
                                                    verbose=0)
    assert model.history["accuracy"][-1] > 0.97
    assert 0 < model.n_iter_ <= 300
    with pytest.raises(ValueError, match="optimizer='lbfgs' takes max_fun and tol"):
        fastmlp.MLP((4,)).fit(X, y, optimizer="lbfgs", momentum=0.9, verbose=0)
    with pytest.raises(ValueError, match="not available with batch_norm"):
        fastmlp.MLP((4,), batch_norm=True).fit(X, y, optimizer="lbfgs", verbose=0)


def test_lbfgs_iteration_limit_warns():
    X, y = fastmlp.datasets.make_spiral(50, 3, seed=0)
    with pytest.warns(RuntimeWarning, match="lbfgs stopped after 2 iteration"):
        model = fastmlp.MLP((10,), seed=0).fit(X, y, optimizer="lbfgs", epochs=2, verbose=0)
    assert model.n_iter_ == 2


def test_poisson_regression_predicts_the_mean_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2000, 3))
    mean = np.exp(0.5 + X[:, 0] - 0.7 * X[:, 1])
    counts = rng.poisson(mean)  # integers: targets with loss="poisson", not classes
    model = fastmlp.MLP((16,), "tanh", loss="poisson", seed=0, dtype=np.float64).fit(
        X, counts, epochs=40, batch_size=64, learning_rate=3e-3, verbose=0)
    assert model.task_ == "regression"
    prediction = model.predict(X)
    assert prediction.min() > 0  # a mean, exp of the network's output
    assert np.corrcoef(prediction, mean)[0, 1] > 0.95
    assert model.evaluate(X, counts)["loss"] == pytest.approx(
        float(fastmlp.ops.poisson(model.decision_function(X), counts.astype(float))[0]))
    path = tmp_path / "poisson.npz"
    model.save(path)
    np.testing.assert_array_equal(fastmlp.MLP.load(path).predict(X), prediction)
    with pytest.raises(ValueError, match="counts >= 0"):
        fastmlp.MLP((4,), loss="poisson").fit(X, -np.ones(len(X)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="regression loss"):
        fastmlp.MLP((4,), task="classification", loss="poisson")


@pytest.mark.parametrize("loss", ["absolute_error", "huber"])
def test_robust_regression_losses(loss):
    X, y, clean = outlier_regression(1)
    fits = {name: fastmlp.MLP((16,), "tanh", task="regression", loss=name, seed=0,
                              dtype=np.float64).fit(X, y, epochs=60, batch_size=32,
                                                    learning_rate=1e-2, verbose=0)
            for name in (None, loss)}
    error = {name: float(np.median(np.abs(m.predict(X) - clean))) for name, m in fits.items()}
    assert error[loss] < 0.5 * error[None]
    expected = getattr(fastmlp.ops, loss)(fits[loss].decision_function(X), y.reshape(-1, 1))[0]
    assert fits[loss].evaluate(X, y)["loss"] == pytest.approx(expected)


def test_the_docstring_examples_run():
    import doctest

    result = doctest.testmod(fastmlp.model)
    assert result.attempted > 0 and result.failed == 0
    assert "encode" in str(doctest.DocTestFinder().find(fastmlp.MLP.encode))


@pytest.mark.parametrize("loss", ["poisson", "absolute_error", "huber"])
def test_batch_norm_trains_the_loss_asked_for(loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = rng.poisson(2.0, 64).astype(float) if loss == "poisson" else X[:, 0] * 3
    model = fastmlp.MLP((8,), batch_norm=True, loss=loss, seed=0)
    model.fit(X, y, epochs=1, batch_size=64, optimizer="sgd", learning_rate=0.0, verbose=0)
    # one full-batch step at learning rate 0: its loss is the asked loss of the network's
    # training-mode output (it was mean squared error whatever the loss, before)
    from fastmlp import ops

    output = model.net_._forward(np.asarray(X, model.dtype), training=True)[0]
    expected = getattr(ops, loss)(output, np.asarray(y, model.dtype)[:, None])[0]
    assert model.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_a_refused_fit_leaves_the_fitted_model_as_it_was():
    X, y = _blobs(120)
    model = fastmlp.MLP((8,), seed=0).fit(X, y.astype(float) * 0.5 + X[:, 0], epochs=2,
                                          verbose=0)
    before = (model.task_, model.predict(X), dict(model.history))
    for bad in (dict(y=np.zeros(120, int)),  # one class, found after the task was read
                dict(y=y, validation_data=(X[:, :2], y))):  # found after the plan was built
        with pytest.raises(ValueError):
            model.fit(X, **bad, epochs=1, verbose=0)
        assert (model.task_, model.history) == (before[0], before[2])
        assert not hasattr(model, "classes_")
        np.testing.assert_array_equal(model.predict(X), before[1])


# -- the multiclass SVM, soft-target classifiers and log-cosh regression --------------------


def _svm_blobs(rng, n_per, centers, spread=0.3):
    centers = np.asarray(centers, np.float64)
    X = np.concatenate([c + spread * rng.standard_normal((n_per, centers.shape[1]))
                        for c in centers])
    return X, np.repeat(np.arange(len(centers)), n_per)


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge"])
def test_linear_svm_separates_blobs(backend, rng, loss):
    X, y = _svm_blobs(rng, 40, [[0, 4], [4, 0], [-4, 0], [0, -4]])
    labels = np.array(["a", "b", "c", "d"])[y]
    model = fastmlp.MLP((), loss=loss, seed=0, backend=backend).fit(
        X, labels, epochs=60, batch_size=32, optimizer="sgd", learning_rate=0.05, verbose=0)
    assert model.task_ == "classification" and model.n_outputs_ == 4
    assert model.score(X, labels) == 1.0
    np.testing.assert_array_equal(model.predict(X), labels)
    scores = model.decision_function(X)
    assert scores.shape == (160, 4)
    # separable with room: every margin met, so the training loss goes to 0
    assert model.evaluate(X, labels)["loss"] < 0.05
    assert model.history["accuracy"][-1] > 0.95
    with pytest.raises(AttributeError, match="hinge"):
        model.predict_proba(X)


def test_svm_with_two_classes_has_two_outputs_and_a_margin(rng):
    X, y = _svm_blobs(rng, 50, [[2, 2], [-2, -2]])
    model = fastmlp.MLP((8,), loss="hinge", margin=2.0, seed=0).fit(X, y, epochs=40,
                                                                     verbose=0)
    assert model.task_ == "classification" and model.n_outputs_ == 2
    assert model.score(X, y) == 1.0
    z = model.decision_function(X)
    loss = fastmlp.ops.multiclass_hinge(z, y, margin=2.0)[0]
    assert model.evaluate(X, y)["loss"] == pytest.approx(loss, rel=1e-6)
    assert loss != pytest.approx(fastmlp.ops.multiclass_hinge(z, y)[0], rel=1e-6)


@pytest.mark.parametrize("loss", ["categorical_cross_entropy", "kl_divergence"])
def test_soft_target_classifier(backend, rng, loss):
    X, y = _svm_blobs(rng, 40, [[0, 3], [3, 0], [-3, 0]])
    T = np.full((120, 3), 0.1)
    T[np.arange(120), y] = 0.8  # label smoothing
    model = fastmlp.MLP((16,), loss=loss, seed=0, backend=backend).fit(X, T, epochs=40,
                                                                       verbose=0)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.task_ == "classification"
    assert model.score(X, T) == model.score(X, y) > 0.95  # rows or column indices
    np.testing.assert_array_equal(model.predict(X), np.argmax(model.decision_function(X), 1))
    P = model.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-6)
    result = model.evaluate(X, T)
    z = model.decision_function(X)
    assert result["loss"] == pytest.approx(getattr(fastmlp.ops, loss)(z, T.astype(np.float32))[0])
    with pytest.raises(ValueError, match="probabilities"):
        model.score(X, T[:, :2])
    with pytest.raises(ValueError, match="probabilities"):
        fastmlp.MLP((4,), loss=loss).fit(X, y, epochs=1, verbose=0)  # labels at first fit


def test_log_cosh_regression_is_robust_to_outliers(rng):
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.standard_normal(200)
    y_dirty = y.copy()
    y_dirty[:10] += 50.0
    model = fastmlp.MLP((), loss="log_cosh", seed=0, dtype=np.float64).fit(
        X, y_dirty, epochs=300, batch_size=200, optimizer="adam", learning_rate=0.05,
        verbose=0)
    mse = fastmlp.MLP((), seed=0, dtype=np.float64).fit(
        X, y_dirty, epochs=300, batch_size=200, optimizer="adam", learning_rate=0.05,
        verbose=0)
    assert model.task_ == "regression"
    assert model.score(X[10:], y[10:]) > 0.99 > mse.score(X[10:], y[10:])


@pytest.mark.parametrize("loss, target", [("hinge", "labels"), ("squared_hinge", "labels"),
                                          ("categorical_cross_entropy", "rows"),
                                          ("kl_divergence", "rows"), ("log_cosh", "values")])
def test_new_loss_models_save_and_load(tmp_path, rng, loss, target):
    X = rng.standard_normal((60, 4))
    y = {"labels": rng.integers(0, 3, 60), "rows": rng.dirichlet(np.ones(3), 60),
         "values": rng.standard_normal(60)}[target]
    model = fastmlp.MLP((5,), loss=loss, margin=0.5, seed=1).fit(X, y, epochs=3, verbose=0)
    loaded = _saved_and_loaded(model, tmp_path)
    assert loaded.loss == loss and loaded.margin == 0.5 and loaded.task_ == model.task_
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


@pytest.mark.parametrize("kw, message", [
    (dict(loss="hinge", task="regression"), "classification loss"),
    (dict(loss="kl_divergence", task="binary"), "classification loss"),
    (dict(loss="log_cosh", task="classification"), "regression loss"),
    (dict(loss="hinge", margin=-1.0), "margin"),
    (dict(loss="softmax"), "loss"),
])
def test_new_loss_model_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        fastmlp.MLP((4,), **kw)
