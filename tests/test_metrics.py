"""fastmlp.metrics on every backend and both dtypes: against formulas written out here and
scikit-learn, at the edges (ties, NaN rows, logits of +-1e4, a large mean), and as
MLP.evaluate reports them."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RTOL

import fastmlp
from fastmlp import metrics


def _scores(rng, n, k, dtype):
    return rng.standard_normal((n, k)).astype(dtype)


def test_accuracy_and_the_confusion_matrix(backend, dtype, rng):
    Z = _scores(rng, 500, 7, dtype)
    y = rng.integers(0, 7, 500)
    predicted = np.argmax(Z, axis=1)
    assert metrics.accuracy(Z, y) == np.mean(predicted == y)
    expected = np.zeros((7, 7), np.int64)
    for label, guess in zip(y, predicted):
        expected[label, guess] += 1
    confusion = metrics.confusion_matrix(Z, y)
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, expected)
    sklearn = pytest.importorskip("sklearn.metrics")
    np.testing.assert_array_equal(confusion, sklearn.confusion_matrix(y, predicted,
                                                                      labels=range(7)))


@pytest.mark.parametrize("k", [1, 2, 3, 7, 9])
def test_top_k_accuracy_counts_the_classes_scoring_strictly_above(backend, dtype, rng, k):
    Z = _scores(rng, 400, 7, dtype)
    y = rng.integers(0, 7, 400)
    above = np.array([np.sum(z > z[label]) for z, label in zip(Z, y)])
    assert metrics.top_k_accuracy(Z, y, k) == np.mean(above < k)
    sklearn = pytest.importorskip("sklearn.metrics")
    if k < 7:  # (scikit-learn refuses k >= n_classes with a warning)
        assert metrics.top_k_accuracy(Z, y, k) == pytest.approx(
            sklearn.top_k_accuracy_score(y, Z, k=k, labels=range(7)))


def test_ties_go_to_the_first_class_and_stay_in_the_top_k(backend, dtype):
    Z = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]], dtype)
    y = np.array([1, 2, 2])
    assert metrics.accuracy(Z, y) == 0.0  # argmax picks the first of equal scores
    assert metrics.top_k_accuracy(Z, y, 1) == 1.0  # nothing scores strictly above
    np.testing.assert_array_equal(metrics.confusion_matrix(Z, y),
                                  [[0, 0, 0], [1, 0, 0], [1, 1, 0]])


def test_a_row_with_a_nan_has_no_class(backend, dtype):
    Z = np.array([[2.0, 1.0], [np.nan, 1.0], [0.0, 1.0]], dtype)
    y = np.array([0, 1, 1])
    assert np.isnan(metrics.accuracy(Z, y))
    assert metrics.top_k_accuracy(Z, y, 1) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(metrics.confusion_matrix(Z, y), [[1, 0], [0, 1]])


def test_log_loss_is_the_mean_cross_entropy(backend, dtype, rng):
    Z = _scores(rng, 300, 5, dtype) * 3
    y = rng.integers(0, 5, 300)
    w = rng.uniform(0, 2, 300).astype(dtype)
    Z64 = Z.astype(np.float64)
    rows = np.log(np.exp(Z64).sum(axis=1)) - Z64[np.arange(300), y]
    rtol = RTOL[np.dtype(dtype)]
    assert metrics.log_loss(Z, y) == pytest.approx(rows.mean(), rel=rtol)
    assert metrics.log_loss(Z, y, sample_weight=w) == pytest.approx(
        np.dot(w, rows) / w.sum(), rel=rtol)
    assert metrics.log_loss(Z, y) == pytest.approx(
        fastmlp.ops.softmax_cross_entropy(Z, y)[0], rel=rtol)
    sklearn = pytest.importorskip("sklearn.metrics")
    probabilities = np.exp(Z64 - Z64.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert metrics.log_loss(Z, y) == pytest.approx(
        sklearn.log_loss(y, probabilities, labels=range(5)), rel=rtol)


def test_log_loss_is_finite_at_logits_of_1e4(backend, dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    y = np.array([1, 0])
    # row 0: 2e4; row 1: 2e4 + log 2
    assert metrics.log_loss(Z, y) == pytest.approx((4e4 + np.log(2)) / 2, rel=1e-7)
    assert metrics.log_loss(Z, np.array([0, 2])) == pytest.approx(np.log(2) / 2, abs=1e-6)


def test_r2_per_output_and_averaged(backend, dtype, rng):
    Y = rng.standard_normal((200, 3)).astype(dtype) + np.array([0, 1e3, -5], dtype)
    P = (Y + 0.3 * rng.standard_normal(Y.shape)).astype(dtype)
    Y64, P64 = Y.astype(np.float64), P.astype(np.float64)
    expected = 1 - ((P64 - Y64) ** 2).sum(axis=0) / ((Y64 - Y64.mean(axis=0)) ** 2).sum(axis=0)
    raw = metrics.r2_score(P, Y, multioutput="raw_values")
    np.testing.assert_allclose(raw, expected, rtol=1e-12)  # sums in double
    assert metrics.r2_score(P, Y) == pytest.approx(expected.mean(), rel=1e-12)
    assert metrics.r2_score(P[:, 1], Y[:, 1]) == pytest.approx(expected[1], rel=1e-12)
    sklearn = pytest.importorskip("sklearn.metrics")
    np.testing.assert_allclose(raw, sklearn.r2_score(Y64, P64, multioutput="raw_values"),
                               rtol=1e-9)


def test_r2_of_a_constant_target_follows_scikit_learn(backend, dtype):
    Y = np.ones((4, 2), dtype)
    P = np.array([[1, 1], [1, 2], [1, 1], [1, 1]], dtype)
    np.testing.assert_array_equal(metrics.r2_score(P, Y, multioutput="raw_values"), [1, 0])


@pytest.mark.parametrize("call, error, message", [
    (lambda: metrics.accuracy(np.zeros((2, 3)), np.array([0, 3])), ValueError,
     r"y: class labels must lie in \[0, 3\)"),
    (lambda: metrics.accuracy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError,
     "y: class labels must be integers"),
    (lambda: metrics.accuracy(np.zeros((0, 3)), np.zeros(0, int)), ValueError,
     "scores: expected at least one row"),
    (lambda: metrics.top_k_accuracy(np.zeros((2, 3)), np.array([0, 1]), 0), ValueError, "k"),
    (lambda: metrics.log_loss(np.zeros((2, 3)), np.array([0, 1]), sample_weight=[0.0, 0.0]),
     ValueError, "sample_weight"),
    (lambda: metrics.r2_score(np.zeros(3), np.zeros(4)), ValueError, "targets"),
    (lambda: metrics.r2_score(np.zeros(3), np.zeros(3, np.float32)), TypeError, "dtype"),
    (lambda: metrics.r2_score(np.zeros(3), np.zeros(3), multioutput="x"), ValueError,
     "multioutput"),
])
def test_bad_input_is_named(backend, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_evaluate_reports_the_metrics_asked_for(rng):
    X, y = fastmlp.datasets.make_spiral(60, 4, seed=0)
    labels = np.array(["a", "b", "c", "d"])[y]
    model = fastmlp.MLP((32,), seed=0).fit(X, labels, epochs=40, verbose=0)
    result = model.evaluate(X, labels, metrics=["confusion_matrix", "top_2_accuracy",
                                                "top_k_accuracy", "log_loss"])
    z = model.decision_function(X)
    assert result["accuracy"] == model.score(X, labels) == metrics.accuracy(z, y)
    np.testing.assert_array_equal(result["confusion_matrix"], metrics.confusion_matrix(z, y))
    assert result["confusion_matrix"].sum() == 240
    assert result["top_2_accuracy"] == metrics.top_k_accuracy(z, y, 2)
    assert result["top_5_accuracy"] == 1.0  # four classes
    assert result["log_loss"] == result["loss"] == pytest.approx(
        fastmlp.ops.softmax_cross_entropy(z, y)[0], rel=1e-5)
    with pytest.raises(ValueError, match="'r2' is not a metric of a classification model"):
        model.evaluate(X, labels, metrics="r2")
    regressor = fastmlp.MLP((8,), seed=0).fit(X, X[:, 0] * 2.0, epochs=2, verbose=0)
    assert set(regressor.evaluate(X, X[:, 0] * 2.0, metrics=["r2"])) == {"loss", "r2"}
    with pytest.raises(ValueError, match="'accuracy' is not a metric of a regression model"):
        regressor.evaluate(X, X[:, 0], metrics=["accuracy"])
