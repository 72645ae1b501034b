"""fastmlp.check_gradients: right gradients pass on every level and backend, wrong ones are
found, and nothing the caller owns is changed."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp._registry import ACTIVATIONS, LOSSES

F64 = np.float64


def _targets(loss, rng, n, k):
    if loss == "softmax_cross_entropy":
        return rng.integers(0, k, n)
    if loss == "sigmoid_binary_cross_entropy":
        return rng.integers(0, 2, (n, k)).astype(F64)
    if loss == "poisson":
        return rng.poisson(2.0, (n, k)).astype(F64)
    if "hinge" in loss:  # random scores: no margin within h of its kink
        return rng.integers(0, k, n)
    if loss in ("categorical_cross_entropy", "kl_divergence"):
        return rng.dirichlet(np.ones(k), n)
    return rng.standard_normal((n, k))


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "elu"])
def test_a_plan_passes_on_every_backend(backend, rng, loss, activation):
    X = rng.standard_normal((12, 3))
    y = _targets(loss, rng, 12, 2)
    plan = fastmlp.NetworkPlan([3, 7, 5, 2], activation, loss=loss, dtype=F64, seed=1,
                               l2=1e-3, batch_size=16)
    plan.train_step(X, y)  # away from the initial weights
    before = plan.parameters.copy()
    report = fastmlp.check_gradients(plan, X, y)
    assert set(report.errors) == {"W0", "W1", "W2", "b0", "b1", "b2"}
    assert report.checked == {"W0": 20, "W1": 20, "W2": 10, "b0": 7, "b1": 5, "b2": 2}
    # absolute_error and huber have kinks, at zero residual: random targets avoid them
    assert report.worst < 1e-5, str(report)
    np.testing.assert_array_equal(plan.parameters, before)  # put back, bit for bit
    assert plan.step == 1


def test_a_wrong_gradient_in_one_array_is_found_there(rng, monkeypatch):
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    plan = fastmlp.NetworkPlan([3, 6, 2], "tanh", dtype=F64, seed=0)
    right = plan.loss_and_gradient

    def one_percent_off(X, y, sample_weight=None):
        loss, gradient = right(X, y, sample_weight)
        gradient[18:30] *= 1.01  # W1 (after W0's 18 entries)
        return loss, gradient

    monkeypatch.setattr(plan, "loss_and_gradient", one_percent_off)
    report = fastmlp.check_gradients(plan, X, y, entries=100)
    assert report.errors["W1"] == pytest.approx(0.01 / 1.01, rel=1e-4)
    assert max(report.errors["W0"], report.errors["b0"], report.errors["b1"]) < 1e-6
    assert "uncomfortable" in str(report).splitlines()[2]


def test_a_fitted_model_is_checked_through_its_network(rng):
    X, y = fastmlp.datasets.make_spiral(20, 3, seed=0)
    model = fastmlp.MLP((10,), "tanh", dtype=F64, seed=0)
    model.fit(X, y, epochs=3, l2=1e-4, verbose=0)
    report = fastmlp.check_gradients(model, X, y, rows=30)
    assert report.worst < 1e-6, str(report)
    labels = np.array(["a", "b", "c"])[y]  # fit's own encoding of y
    other = fastmlp.MLP((10,), "tanh", dtype=F64, seed=0).fit(X, labels, epochs=2, verbose=0)
    assert fastmlp.check_gradients(other, X, labels).worst < 1e-6


def test_a_model_without_a_one_call_gradient_is_refused():
    X, y = fastmlp.datasets.make_spiral(10, 2, seed=0)
    with pytest.raises(ValueError, match="not fitted"):
        fastmlp.check_gradients(fastmlp.MLP((4,)), X, y)
    model = fastmlp.MLP((4,), batch_norm=True, dtype=F64, seed=0).fit(X, y, epochs=1,
                                                                     verbose=0)
    with pytest.raises(TypeError, match="batch normalisation"):
        fastmlp.check_gradients(model, X, y)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_loss_kernel_passes_by_name(backend, rng, loss):
    Z = rng.standard_normal((6, 4))
    y = _targets(loss, rng, 6, 4)
    Z_before = Z.copy()
    report = fastmlp.check_gradients(loss, Z, y)
    name = "scores" if "hinge" in loss else "logits" if "entropy" in loss or \
        "divergence" in loss else "predictions"
    assert list(report.errors) == [name]
    assert report.worst < 1e-6, str(report)
    np.testing.assert_array_equal(Z, Z_before)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_activation_passes_by_name(backend, rng, name):
    Z = rng.uniform(0.2, 2.0, (5, 4)) * rng.choice([-1.0, 1.0], (5, 4))  # off the kinks
    assert fastmlp.check_gradients(name, Z).worst < 1e-6


def test_a_function_and_its_gradient():
    x = np.linspace(-1, 1, 6)
    right = fastmlp.check_gradients(lambda v: (np.sum(np.sin(v) * v), np.cos(v) * v
                                               + np.sin(v)), x)
    assert right.worst < 1e-8 and right.checked == {"x": 6}
    wrong = fastmlp.check_gradients(lambda v: (np.sum(v ** 3), 2 * v ** 2), x)
    assert wrong.worst == pytest.approx(1 / 3, rel=1e-6)
    assert "wrong" in str(wrong)
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 6))
    with pytest.raises(ValueError, match="the gradient has 2 entries"):
        fastmlp.check_gradients(lambda v: (0.0, np.zeros(2)), x)


def test_float32_warns_and_bad_arguments_are_named(rng):
    X, y = rng.standard_normal((4, 2)).astype(np.float32), rng.integers(0, 2, 4)
    plan = fastmlp.NetworkPlan([2, 3, 2], dtype=np.float32, seed=0)
    with pytest.warns(UserWarning, match="float64"):
        fastmlp.check_gradients(plan, X, y, epsilon=1e-3)
    with pytest.raises(TypeError, match="target: expected"):
        fastmlp.check_gradients("no such loss", X, y)
    with pytest.raises(ValueError, match="epsilon"):
        fastmlp.check_gradients(plan, X, y, epsilon=0)
    with pytest.raises(ValueError, match="entries"):
        fastmlp.check_gradients(plan, X, y, entries=0)
    with pytest.raises(TypeError, match="needs X and y"):
        fastmlp.check_gradients(plan, X)


def test_the_docstring_example_runs():
    import doctest

    import fastmlp.gradcheck

    result = doctest.testmod(fastmlp.gradcheck)
    assert result.attempted > 0 and result.failed == 0
