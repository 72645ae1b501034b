"""The NaN/inf policy of the public API beyond the kernels (README, "NaN and infinity").

The kernels propagate (tests/test_stability.py and the NaN properties of
tests/test_properties.py); a NetworkPlan propagates too (it is the kernels' training loop:
no pass over the data per step); hyper-parameters are rejected; MLP and the scikit-learn
drop-ins reject NaN/inf data, refuse a diverging fit and never turn a NaN output into a
label.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastmlp
from fastmlp import _backend

DTYPES = [np.float32, np.float64]


def _plan(backend, dtype, loss="softmax_cross_entropy", sizes=(3, 5, 2), batch_size=8):
    return fastmlp.NetworkPlan(list(sizes), "tanh", loss=loss, optimizer="adam",
                               batch_size=batch_size, dtype=dtype, seed=0, backend=backend)


def _data(dtype, n=8, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(dtype), rng.integers(0, 2, n)


def _all_nan(plan):
    return all(np.isnan(W).all() and np.isnan(b).all() for W, b in plan.weights[1:]) and \
        np.isnan(plan.weights[0][1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_train_step_propagates_a_nan_feature_into_the_loss_and_weights(backend, dtype):
    plan = _plan(backend, dtype)
    X, y = _data(dtype)
    X[2, 1] = np.nan
    with np.errstate(all="ignore"):
        loss = plan.train_step(X, y)
    assert math.isnan(loss)
    # the whole batch's gradient is NaN: every bias and every later layer
    assert _all_nan(plan)
    assert np.isnan(plan.weights[0][0][1]).all()  # the bad feature's row of W0
    with np.errstate(all="ignore"):
        assert np.isnan(plan.forward(_data(dtype)[0])).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_train_step_with_an_infinite_feature(backend, dtype):
    # tanh(+-inf) = +-1 is the true limit, so the loss stays finite; the feature's weight
    # gradient is +-inf, and Adam's inf / sqrt(inf^2) step makes that row NaN (not a number
    # that looks trained); the rest of the step is exact
    plan, clean = _plan(backend, dtype), _plan(backend, dtype)
    X, y = _data(dtype)
    X_inf = X.copy()
    X_inf[2, 1] = np.inf
    with np.errstate(all="ignore"):
        assert math.isfinite(plan.train_step(X_inf, y))
    clean.train_step(X, y)
    (W0, b0), (W1, b1) = plan.weights
    assert np.isnan(W0[1]).all()
    assert np.isfinite(np.delete(W0, 1, axis=0)).all()
    assert np.isfinite(b0).all() and np.isfinite(W1).all() and np.isfinite(b1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_train_step_propagates_a_nan_regression_target(backend, dtype):
    plan = _plan(backend, dtype, loss="mse")
    X, _ = _data(dtype)
    Y = np.zeros((8, 2), dtype)
    Y[5, 0] = np.nan
    with np.errstate(all="ignore"):
        assert math.isnan(plan.train_step(X, Y))
    (W0, b0), (W1, b1) = plan.weights
    # output 0's gradient is NaN, so is every hidden unit's (through W1[:, 0]); output 1's
    # own weights see only finite hidden activations of the forward pass
    assert np.isnan(W0).all() and np.isnan(b0).all()
    assert np.isnan(W1[:, 0]).all() and np.isnan(b1[0])
    assert np.isfinite(W1[:, 1]).all() and np.isfinite(b1[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_train_epoch_shows_the_batch_where_nan_entered(backend, dtype):
    plan = _plan(backend, dtype, batch_size=4)
    X, y = _data(dtype, n=16)
    X[9, 0] = np.nan  # the third batch of four
    losses = np.zeros(4)
    with np.errstate(all="ignore"):
        mean = plan.train_epoch(X, y, shuffle=False, batch_losses=losses)
    assert np.isfinite(losses[:2]).all() and np.isnan(losses[2:]).all()
    assert math.isnan(mean)


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_forward_keeps_a_nan_in_its_own_row(backend, dtype):
    plan = _plan(backend, dtype)
    X, _ = _data(dtype, n=6)
    clean = plan.forward(X)
    X[4, 2] = np.nan
    with np.errstate(all="ignore"):
        out = plan.forward(X)
    assert np.isnan(out[4]).all()
    np.testing.assert_array_equal(np.delete(out, 4, axis=0), np.delete(clean, 4, axis=0))


def test_plan_set_weights_with_nan_propagates(backend):
    plan = _plan(backend, np.float64)
    weights = [(W.copy(), b.copy()) for W, b in plan.weights]
    weights[1][1][0] = np.nan  # one output bias
    plan.set_weights(weights)
    out = plan.forward(_data(np.float64)[0])
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["learning_rate", "l2", "l1", "alpha"])
def test_plan_rejects_non_finite_hyper_parameters(backend, name, bad):
    with pytest.raises(ValueError, match=f"{name}: expected a finite number"):
        fastmlp.NetworkPlan([3, 4, 2], "leaky_relu", backend=backend, **{name: bad})
    if name == "alpha":
        return
    plan = fastmlp.NetworkPlan([3, 4, 2], backend=backend)
    with pytest.raises(ValueError, match=f"{name}: expected a finite number"):
        setattr(plan, name, bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_optimizers_reject_non_finite_hyper_parameters(bad):
    for name in ("sgd", "momentum", "nesterov", "adam", "adamw"):
        with pytest.raises(ValueError, match="learning_rate"):
            fastmlp.optimizers.get_optimizer(name, learning_rate=bad)
    with pytest.raises(ValueError, match="beta2"):
        fastmlp.optimizers.get_optimizer("adam", beta2=bad)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_mlp_rejects_non_finite_data_everywhere(bad):
    X, y = _data(np.float64, n=20)
    model = fastmlp.MLP((4,), seed=0).fit(X, y, epochs=1, verbose=0)
    X_bad = X.copy()
    X_bad[3, 0] = bad
    calls = {
        "fit": lambda: fastmlp.MLP((4,)).fit(X_bad, y, epochs=1, verbose=0),
        "partial_fit": lambda: fastmlp.MLP((4,)).partial_fit(X_bad, y),
        "fit(validation_data)": lambda: fastmlp.MLP((4,)).fit(
            X, y, epochs=1, verbose=0, validation_data=(X_bad, y)),
        "predict": lambda: model.predict(X_bad),
        "predict_proba": lambda: model.predict_proba(X_bad),
        "decision_function": lambda: model.decision_function(X_bad),
        "evaluate": lambda: model.evaluate(X_bad, y),
        "score": lambda: model.score(X_bad, y),
        "hidden_activations": lambda: model.hidden_activations(X_bad),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="X: contains NaN or infinity"):
            call()
    y_bad = np.linspace(0, 1, 20) + 0.01
    y_bad[7] = bad
    with pytest.raises(ValueError, match="y: contains NaN or infinity"):
        fastmlp.MLP((4,), task="regression").fit(X, y_bad, epochs=1, verbose=0)


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer:UserWarning")
@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_sklearn_dropins_reject_nan_and_a_diverging_fit(estimator):
    pytest.importorskip("sklearn")
    from fastmlp import sklearn as fs

    X, y = _data(np.float64, n=30)
    X_bad = X.copy()
    X_bad[0, 0] = np.nan
    est = getattr(fs, estimator)(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X_bad, y)
    # (scikit-learn's own check and message: the weights left the float range)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="non-finite"):
        getattr(fs, estimator)(hidden_layer_sizes=(4,), max_iter=3, solver="sgd",
                               learning_rate_init=1e200, random_state=0).fit(X * 1e200, y)


def test_datasets_reject_non_finite_arguments():
    with pytest.raises(ValueError, match="noise"):
        fastmlp.datasets.make_spiral(noise=np.nan)


# -- the input check behind MLP's "X: contains NaN or infinity" ------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 4095, 4097, (1 << 18) + 3, 3 * (1 << 18)])
def test_all_finite_finds_one_bad_element_anywhere(backend, dtype, n):
    # sizes around the C kernel's runs (4096) and tasks (2^18 elements); first, last and
    # a middle position, each non-finite kind, on 1 and 3 threads
    kernels = _backend.load(backend)
    X = np.random.default_rng(n).standard_normal(n).astype(dtype) * 1e30
    if n:
        X[n // 2] = np.finfo(dtype).max  # the largest finite value is finite
    for threads in (1, 3):
        assert kernels.all_finite(X, threads)
    for pos in sorted({0, n // 2, n - 1}) if n else []:
        for bad in (np.nan, np.inf, -np.inf):
            Y = X.copy()
            Y[pos] = bad
            for threads in (1, 3):
                assert not kernels.all_finite(Y, threads), (pos, bad, threads)
                assert not kernels.all_finite(Y.reshape(1, -1), threads)
    assert kernels.all_finite(X.reshape(-1, 1), 2)
