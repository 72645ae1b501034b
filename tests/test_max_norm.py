"""The max-norm constraint: after each update every unit's incoming weights (a column of
W) are at most max_norm long, on every backend and path, the same bits for any thread
count."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ATOL, RTOL

import fastmlp


def _data(rng, n=64, n_in=5, n_out=3):
    return rng.standard_normal((n, n_in)), rng.integers(0, n_out, n)


def _column_norms(plan):
    return [np.linalg.norm(W.astype(np.float64), axis=0) for W, _ in plan.weights]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_backend_keeps_the_columns_within_the_norm_as_the_reference(backend, dtype,
                                                                          rng, optimizer):
    X, y = _data(rng)
    X = X.astype(dtype)
    kw = dict(layer_sizes=[5, 12, 3], activations="tanh", optimizer=optimizer,
              learning_rate=0.5 if optimizer == "sgd" else 0.05, batch_size=16, seed=3,
              dtype=dtype, max_norm=0.8)
    plan = fastmlp.NetworkPlan(backend=backend, **kw)
    ref = fastmlp.NetworkPlan(backend="numpy", **kw)
    free = fastmlp.NetworkPlan(backend=backend, **{**kw, "max_norm": None})
    for _ in range(3):
        plan.train_epoch(X, y, shuffle=False)
        ref.train_epoch(X, y, shuffle=False)
        free.train_epoch(X, y, shuffle=False)
    tol = 8 * np.finfo(dtype).eps
    for norms in _column_norms(plan):
        assert norms.max() <= 0.8 * (1 + tol)
    assert max(n.max() for n in _column_norms(free)) > 0.8  # the constraint acted
    for (W, b), (W0, b0) in zip(plan.weights, ref.weights):
        np.testing.assert_allclose(W, W0, rtol=RTOL[np.dtype(dtype)], atol=ATOL[np.dtype(dtype)])
        np.testing.assert_allclose(b, b0, rtol=RTOL[np.dtype(dtype)], atol=ATOL[np.dtype(dtype)])


def test_a_loose_norm_changes_nothing_and_a_column_keeps_its_direction(backend, rng):
    X, y = _data(rng)
    kw = dict(layer_sizes=[5, 8, 3], batch_size=64, seed=1, learning_rate=0.1)
    loose = fastmlp.NetworkPlan(max_norm=1e6, **kw)
    free = fastmlp.NetworkPlan(**kw)
    loose.train_step(X, y)
    free.train_step(X, y)
    for (W, _), (W0, _) in zip(loose.weights, free.weights):
        np.testing.assert_array_equal(W, W0)
    tight = fastmlp.NetworkPlan(**kw)
    tight.max_norm = 0.25  # settable between steps
    tight.train_step(X, y)
    for (W, _), (W0, _) in zip(tight.weights, free.weights):
        norms = np.linalg.norm(W0, axis=0)
        expected = W0 * np.minimum(1, 0.25 / norms)
        np.testing.assert_allclose(W, expected, rtol=1e-14)


def test_threads_give_the_same_bits(rng):
    X, y = rng.standard_normal((512, 64)), rng.integers(0, 10, 512)
    weights = []
    for threads in (1, 2):
        plan = fastmlp.NetworkPlan([64, 256, 200, 10], "relu", batch_size=512, seed=0,
                                   dtype=np.float32, learning_rate=0.5, max_norm=0.5,
                                   n_threads=threads, backend="c")
        for _ in range(3):
            plan.train_step(X.astype(np.float32), y)
        weights.append([W.copy() for W, _ in plan.weights])
    for W1, W2 in zip(*weights):
        np.testing.assert_array_equal(W1, W2)
    assert max(np.linalg.norm(W, axis=0).max() for W in weights[0]) <= 0.5 * (1 + 1e-6)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_fit_with_dropout_and_max_norm(rng, batch_norm, tmp_path):
    X, y = _data(rng, 200)
    options = dict(epochs=4, batch_size=20, learning_rate=0.05, max_norm=0.6, verbose=0)
    model = fastmlp.MLP((16,), dropout=0.3, batch_norm=batch_norm, seed=0)
    model.fit(X, y, **options)
    for W, _ in model.weights:
        assert np.linalg.norm(W.astype(np.float64), axis=0).max() <= 0.6 * (1 + 1e-6)
    path = tmp_path / "run.npz"
    fastmlp.MLP((16,), seed=0).fit(X, y, **options, checkpoint=path)
    with pytest.raises(ValueError, match="max_norm"):
        fastmlp.MLP.load(path).fit(X, y, **{**options, "max_norm": 0.7}, checkpoint=path,
                                   resume=True)


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (-1.0, ValueError),
                                        (float("nan"), ValueError), ("1", TypeError)])
def test_bad_max_norm_is_named(rng, bad, error):
    X, y = _data(rng)
    with pytest.raises(error, match="max_norm"):
        fastmlp.NetworkPlan([5, 4, 3], max_norm=bad)
    with pytest.raises(error, match="max_norm"):
        fastmlp.MLP((4,)).fit(X, y, max_norm=bad, verbose=0)
    with pytest.raises(ValueError, match="max_norm"):
        fastmlp.MLP((4,)).fit(X, y, max_norm=1.0, optimizer="lbfgs", verbose=0)
