"""softmax, log_softmax and the six losses (value and gradient) against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    as_layout,
    assert_close,
    assert_unchanged,
    assert_within,
    numerical_gradient,
    ref_log_softmax,
    ref_mse,
    ref_sigmoid_bce,
    ref_softmax,
    ref_softmax_cross_entropy,
    relative_error,
    snapshot,
)
from scipy.special import logsumexp

import fastmlp
from fastmlp import ops

SHAPES = [(6, 4), (1, 1), (9, 2), (3, 11)]
SHAPE_IDS = ["6x4", "1x1", "9x2", "3x11"]


def _loss_close(loss, expected, dtype):
    # the value is accumulated in double from per-entry terms rounded once in dtype
    assert isinstance(loss, float)
    assert_close(loss, expected, dtype, atol=10 * np.finfo(dtype).eps)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_softmax(backend, dtype, layout, rng, shape):
    Z = as_layout((rng.standard_normal(shape) * 4).astype(dtype), layout)
    before = snapshot(Z)
    P = ops.softmax(Z)
    assert P.dtype == dtype and P.shape == shape
    assert_close(P, ref_softmax(Z), dtype)
    assert_close(P.sum(axis=1, dtype=np.float64), np.ones(shape[0]), dtype)
    assert_unchanged([Z], before, ["Z"])


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_log_softmax(backend, dtype, layout, rng, shape):
    Z = as_layout((rng.standard_normal(shape) * 4).astype(dtype), layout)
    before = snapshot(Z)
    L = ops.log_softmax(Z)
    assert L.dtype == dtype and L.shape == shape
    # log_softmax = z - lse: its rounding scales with |z| and lse, not with the result
    scale = np.abs(np.asarray(Z, np.float64)).max() + 1
    assert_close(L, ref_log_softmax(Z), dtype, atol=8 * np.finfo(dtype).eps * scale)
    assert_unchanged([Z], before, ["Z"])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_out(backend, dtype, rng, log):
    Z = rng.standard_normal((4, 3)).astype(dtype)
    out = np.full_like(Z, np.nan)
    f = ops.log_softmax if log else ops.softmax
    assert f(Z, out=out) is out
    assert_close(out, (ref_log_softmax if log else ref_softmax)(Z), dtype, atol=1e-6)
    expected = (ref_log_softmax if log else ref_softmax)(Z)
    assert f(Z, out=Z) is Z  # in place
    assert_close(Z, expected, dtype, atol=1e-6)


@pytest.mark.parametrize("shape", [(3000, 3), (2, 5000)], ids=["3000x3", "2x5000"])
def test_in_place_on_more_rows_than_a_block(backend, dtype, rng, shape):
    # out=Z where a kernel works through Z a block of rows at a time (numba: 2048 entries,
    # a row at least): the same bits as with a separate out
    Z = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    Y = rng.integers(0, 2, shape).astype(dtype)
    calls = {
        "softmax": lambda Z, out: (0.0, ops.softmax(Z, out=out)),
        "log_softmax": lambda Z, out: (0.0, ops.log_softmax(Z, out=out)),
        "softmax_cross_entropy": lambda Z, out: ops.softmax_cross_entropy(Z, y, out=out),
        "sigmoid_bce": lambda Z, out: ops.sigmoid_binary_cross_entropy(Z, Y, out=out),
        "poisson": lambda Z, out: ops.poisson(Z, 3 * Y, out=out),
        "absolute_error": lambda Z, out: ops.absolute_error(Z, Y, out=out),
        "huber": lambda Z, out: ops.huber(Z, Y, out=out),
    }
    for name, call in calls.items():
        loss, expected = call(Z, np.empty_like(Z))
        W = Z.copy()
        in_place_loss, result = call(W, W)
        assert result is W, name
        np.testing.assert_array_equal(W, expected, err_msg=name)
        assert in_place_loss == loss, name


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_cross_entropy(backend, dtype, layout, rng, shape, weighted):
    n, k = shape
    Z = as_layout((rng.standard_normal(shape) * 3).astype(dtype), layout)
    y = as_layout(rng.integers(0, k, n), layout)
    w = as_layout(rng.uniform(0.1, 2.0, n).astype(dtype), layout) if weighted else None
    before = snapshot(Z, y, w)
    loss, grad = ops.softmax_cross_entropy(Z, y, sample_weight=w)
    e_loss, e_grad = ref_softmax_cross_entropy(Z, y, w)
    _loss_close(loss, e_loss, dtype)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, e_grad, dtype)
    assert_unchanged([Z, y, w], before, ["logits", "y", "sample_weight"])


def test_softmax_cross_entropy_weights(backend, dtype, rng):
    Z = rng.standard_normal((5, 3)).astype(dtype)
    y = np.array([0, 2, 1, 1, 0])
    # unit weights are the plain mean; a zero weight removes the row; scaling is neutral
    l1, g1 = ops.softmax_cross_entropy(Z, y)
    l2, g2 = ops.softmax_cross_entropy(Z, y, sample_weight=np.ones(5, dtype))
    assert_close(l2, l1, dtype)
    assert_close(g2, g1, dtype)
    w = np.array([1, 0, 1, 1, 1], dtype)
    l3, g3 = ops.softmax_cross_entropy(Z, y, sample_weight=w)
    l4, g4 = ops.softmax_cross_entropy(Z[w > 0], y[w > 0])
    assert_close(l3, l4, dtype)
    assert_close(g3[w > 0], g4, dtype)
    np.testing.assert_array_equal(g3[1], 0)
    l5, g5 = ops.softmax_cross_entropy(Z, y, sample_weight=7 * w)
    assert_close(l5, l3, dtype)
    assert_close(g5, g3, dtype)


def test_softmax_cross_entropy_out_and_labels_of_any_int_type(backend, dtype, rng):
    Z = rng.standard_normal((4, 3)).astype(dtype)
    expected = ref_softmax_cross_entropy(Z, [2, 0, 1, 2])
    for y in (np.array([2, 0, 1, 2], np.int32), np.array([2, 0, 1, 2], np.uint8)):
        out = np.full_like(Z, np.nan)
        loss, grad = ops.softmax_cross_entropy(Z, y, out=out)
        assert grad is out
        _loss_close(loss, expected[0], dtype)
        assert_close(out, expected[1], dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_sigmoid_binary_cross_entropy(backend, dtype, layout, rng, shape):
    Z = as_layout((rng.standard_normal(shape) * 3).astype(dtype), layout)
    Y = as_layout(rng.uniform(0, 1, shape).astype(dtype), layout)
    Y[0, 0] = 1.0  # hard targets too
    Y[-1, -1] = 0.0
    before = snapshot(Z, Y)
    loss, grad = ops.sigmoid_binary_cross_entropy(Z, Y)
    e_loss, e_grad = ref_sigmoid_bce(Z, Y)
    _loss_close(loss, e_loss, dtype)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, e_grad, dtype)
    assert_unchanged([Z, Y], before, ["logits", "targets"])


def test_sigmoid_bce_1d_targets_and_out(backend, dtype, rng):
    Z = rng.standard_normal((6, 1)).astype(dtype)
    y = rng.integers(0, 2, 6).astype(dtype)
    out = np.full_like(Z, np.nan)
    loss, grad = ops.sigmoid_binary_cross_entropy(Z, y, out=out)
    assert grad is out
    e_loss, e_grad = ref_sigmoid_bce(Z, y)
    _loss_close(loss, e_loss, dtype)
    assert_close(grad, e_grad, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_mean_squared_error(backend, dtype, layout, rng, shape):
    P = as_layout(rng.standard_normal(shape).astype(dtype), layout)
    Y = as_layout(rng.standard_normal(shape).astype(dtype), layout)
    before = snapshot(P, Y)
    loss, grad = ops.mean_squared_error(P, Y)
    e_loss, e_grad = ref_mse(P, Y)
    _loss_close(loss, e_loss, dtype)
    assert grad.dtype == dtype and grad.shape == shape
    # p - y is one rounding of a difference: scale the atol by |p| + |y|
    scale = (np.abs(np.asarray(P, np.float64)) + np.abs(np.asarray(Y, np.float64))) / shape[0]
    assert_close(grad, e_grad, dtype, atol=2 * np.finfo(dtype).eps * scale.max() + 1e-30)
    assert_unchanged([P, Y], before, ["predictions", "targets"])


def test_mean_squared_error_1d_targets_and_out(backend, dtype, rng):
    P = rng.standard_normal((5, 1)).astype(dtype)
    y = rng.standard_normal(5).astype(dtype)
    out = np.full_like(P, np.nan)
    loss, grad = ops.mean_squared_error(P, y, out=out)
    assert grad is out
    e_loss, e_grad = ref_mse(P, y)
    _loss_close(loss, e_loss, dtype)
    assert_close(grad, e_grad, dtype)


def test_perfect_predictions_have_zero_loss(backend, dtype, rng):
    P = rng.standard_normal((4, 3)).astype(dtype)
    loss, grad = ops.mean_squared_error(P, P.copy())
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0)


# -- poisson: the half Poisson deviance with the log link (scikit-learn's) ----------------


def ref_poisson(Z, Y):
    """From the formula of fastmlp.ops.poisson, in float64: the mean over the rows of
    sum_j y log(y) - y z - y + e^z (y log y = 0 at y = 0), and (e^z - y) / n."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(Z.shape)
    n = Z.shape[0]
    y_log_y = np.zeros_like(Y)
    positive = Y > 0
    y_log_y[positive] = Y[positive] * np.log(Y[positive])
    loss = np.sum(y_log_y - Y * Z - Y + np.exp(Z)) / n
    return loss, (np.exp(Z) - Y) / n


def _poisson_bounds(Z, Y, dtype):
    """Rounding bounds for the loss and the gradient computed in dtype: e^z is a few ulps,
    and both the loss's terms and e^z - y may cancel, so the bound scales with the
    terms' magnitudes, not with the result."""
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(Z.shape)
    n = Z.shape[0]
    mu = np.exp(Z)
    eps = np.finfo(dtype).eps
    y_log_y = np.abs(Y * np.log(np.where(Y > 0, Y, 1.0)))
    loss_scale = np.sum(y_log_y + np.abs(Y * Z) + Y + mu) / n
    return 8 * eps * loss_scale, 4 * eps * (mu + Y) / n


def _poisson_data(rng, shape, dtype):
    Z = rng.standard_normal(shape) * 1.5
    Y = rng.poisson(np.exp(Z)).astype(np.float64)
    Y.flat[0] = 0.0  # y log y = 0 at y = 0
    Y.flat[-1] = 2.5  # counts need not be integers
    return Z.astype(dtype), Y.astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_poisson(backend, dtype, layout, rng, shape):
    Z, Y = _poisson_data(rng, shape, dtype)
    Z, Y = as_layout(Z, layout), as_layout(Y, layout)
    before = snapshot(Z, Y)
    loss, grad = ops.poisson(Z, Y)
    e_loss, e_grad = ref_poisson(Z, Y)
    loss_bound, grad_bound = _poisson_bounds(Z, Y, dtype)
    assert isinstance(loss, float)
    assert abs(loss - e_loss) <= loss_bound + 1e-5 * abs(e_loss) * (dtype == np.float32)
    assert grad.dtype == dtype and grad.shape == shape
    assert_close(grad, e_grad, dtype, atol=grad_bound.max())
    assert_unchanged([Z, Y], before, ["log_means", "targets"])


def test_poisson_1d_targets_and_out(backend, dtype, rng):
    Z, Y = _poisson_data(rng, (6, 1), dtype)
    out = np.full_like(Z, np.nan)
    loss, grad = ops.poisson(Z, Y.reshape(-1), out=out)
    assert grad is out
    e_loss, e_grad = ref_poisson(Z, Y)
    loss_bound, grad_bound = _poisson_bounds(Z, Y, dtype)
    assert abs(loss - e_loss) <= loss_bound + 1e-5 * abs(e_loss)
    assert_close(grad, e_grad, dtype, atol=grad_bound.max())


def test_poisson_gradient_is_the_derivative_of_the_loss(backend, rng):
    # float64 central differences (see test_gradients.py): h = 1e-6, relative error < 1e-6
    Z, Y = _poisson_data(rng, (5, 3), np.float64)
    _, analytic = ops.poisson(Z, Y)
    numeric = numerical_gradient(lambda: ops.poisson(Z, Y)[0], Z, 1e-6)
    assert relative_error(analytic, numeric) < 1e-6


def test_poisson_at_the_edges(backend, dtype):
    # log-means of +-80 (e^80 = 5.5e34 and e^-80 = 1.8e-35 hold in float32 too), zero
    # and large counts: finite, and the reference's values
    Z = np.array([[80.0, -80.0, 0.0], [-80.0, 80.0, 20.0], [0.0, 0.0, -80.0]], dtype)
    Y = np.array([[0.0, 0.0, 0.0], [1e6, 1e6, 0.0], [1e6, 1.0, 3.0]], dtype)
    loss, grad = ops.poisson(Z, Y)
    e_loss, e_grad = ref_poisson(Z, Y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_close(loss, e_loss, dtype)
    # e^z is the only rounding of any size in the gradient: a few ulps of it
    assert_close(grad, e_grad, dtype, atol=0)
    # every entry with y = 0 contributes e^z exactly (its y log y is 0, not NaN)
    zeros = np.zeros_like(Z)
    assert_close(ops.poisson(Z, zeros)[0], np.exp(Z.astype(np.float64)).sum() / 3, dtype)


def test_poisson_is_zero_where_the_mean_is_the_count(backend, dtype):
    Y = np.array([[1.0, 2.0, 7.0], [0.5, 4.0, 1e3]], dtype)
    Z = np.log(Y.astype(np.float64)).astype(dtype)
    loss, grad = ops.poisson(Z, Y)
    eps = np.finfo(dtype).eps
    # the loss's terms cancel to 0 (up to the rounding of z = log y), as does e^z - y
    assert abs(loss) <= 16 * eps * np.sum(np.abs(Y * Z) + 2 * Y) / 2
    assert np.all(np.abs(grad) <= 4 * eps * Y)


def test_poisson_refuses_negative_targets(backend, dtype):
    Z = np.zeros((2, 2), dtype)
    Y = np.array([[1.0, -0.5], [0.0, 2.0]], dtype)
    with pytest.raises(ValueError, match="targets: .*counts >= 0"):
        ops.poisson(Z, Y)
    with pytest.raises(ValueError, match="targets"):
        ops.poisson(Z, -np.ones((2, 2), dtype))
    ops.poisson(Z, np.abs(Y))  # the same values, non-negative: accepted


# -- absolute_error and huber (delta 1): robust regression losses of the raw output -------


def ref_absolute_error(P, Y):
    """From the formula of fastmlp.ops.absolute_error, in float64: the mean over the rows of
    sum_j |p - y|, and sign(p - y) / n (0 at p = y)."""
    P = np.asarray(P, dtype=np.float64)
    r = P - np.asarray(Y, dtype=np.float64).reshape(P.shape)
    n = P.shape[0]
    return np.sum(np.abs(r)) / n, np.sign(r) / n


def ref_huber(P, Y):
    """From the formula of fastmlp.ops.huber, in float64: the mean over the rows of
    sum_j (r^2 / 2 if |r| <= 1 else |r| - 1/2) with r = p - y, and clip(r, -1, 1) / n."""
    P = np.asarray(P, dtype=np.float64)
    r = P - np.asarray(Y, dtype=np.float64).reshape(P.shape)
    n = P.shape[0]
    a = np.abs(r)
    return np.sum(np.where(a <= 1, 0.5 * r * r, a - 0.5)) / n, np.clip(r, -1, 1) / n


ROBUST = {"absolute_error": ref_absolute_error, "huber": ref_huber}


def _residual_data(rng, shape, dtype):
    """Targets, and predictions whose residuals cover both sides of Huber's |r| = 1, with
    the kinks themselves at the ends: r = 0 exactly first, r = 1 exactly last."""
    Y = rng.standard_normal(shape)
    P = Y + rng.standard_normal(shape) * 1.5
    Y, P = Y.astype(dtype), P.astype(dtype)
    P.flat[0] = Y.flat[0]
    Y.flat[-1], P.flat[-1] = 0.5, 1.5
    return P, Y


@pytest.mark.parametrize("name", list(ROBUST))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_robust_losses(backend, dtype, layout, rng, shape, name):
    P, Y = _residual_data(rng, shape, dtype)
    P, Y = as_layout(P, layout), as_layout(Y, layout)
    before = snapshot(P, Y)
    loss, grad = getattr(ops, name)(P, Y)
    e_loss, e_grad = ROBUST[name](P, Y)
    # each term is |r| or r^2 / 2 of the residual r rounded once in dtype
    _loss_close(loss, e_loss, dtype)
    assert grad.dtype == dtype and grad.shape == shape
    # huber's r (|r| <= 1) is one rounding of a difference, as in mean_squared_error
    scale = (np.abs(np.asarray(P, np.float64)) + np.abs(np.asarray(Y, np.float64))) / shape[0]
    assert_close(grad, e_grad, dtype, atol=2 * np.finfo(dtype).eps * scale.max() + 1e-30)
    assert_unchanged([P, Y], before, ["predictions", "targets"])


@pytest.mark.parametrize("name", list(ROBUST))
def test_robust_losses_1d_targets_and_out(backend, dtype, rng, name):
    P, Y = _residual_data(rng, (6, 1), dtype)
    out = np.full_like(P, np.nan)
    loss, grad = getattr(ops, name)(P, Y.reshape(-1), out=out)
    assert grad is out
    e_loss, e_grad = ROBUST[name](P, Y)
    _loss_close(loss, e_loss, dtype)
    assert_close(grad, e_grad, dtype)


@pytest.mark.parametrize("name", list(ROBUST))
def test_robust_gradient_is_the_derivative_of_the_loss(backend, rng, name):
    # float64 central differences (see test_gradients.py): h = 1e-6, relative error < 1e-6,
    # with every |r| in [0.2, 0.8] or [1.2, 2.8]: away from the kinks at 0 and 1
    Y = rng.standard_normal((5, 3))
    size = rng.uniform(0.2, 0.8, Y.shape) + rng.choice([0.0, 1.0, 2.0], Y.shape)
    P = Y + rng.choice([-1.0, 1.0], Y.shape) * size
    f = getattr(ops, name)
    _, analytic = f(P, Y)
    numeric = numerical_gradient(lambda: f(P, Y)[0], P, 1e-6)
    assert relative_error(analytic, numeric) < 1e-6


def test_absolute_error_at_its_kink(backend, dtype):
    # r = 0 exactly: the gradient is 0 there (not +-1), the term is 0
    P = np.array([[0.5, -2.0, 3.0], [1.0, 0.0, -0.25]], dtype)
    Y = np.array([[0.5, -2.0, 1.0], [1.0, 0.0, 0.25]], dtype)
    loss, grad = ops.absolute_error(P, Y)
    assert loss == (2.0 + 0.5) / 2
    np.testing.assert_array_equal(grad, [[0, 0, 0.5], [0, 0, -0.5]])
    loss, grad = ops.absolute_error(P, P.copy())  # perfect predictions
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0)


def test_huber_at_its_kinks(backend, dtype):
    # |r| = 1 exactly, where the two branches meet (r^2 / 2 = |r| - 1/2 = 1/2, and the
    # gradient r = +-1 = the clip), between 0.5 and 2 on either side, and r = 0
    P = np.array([[1.5, -0.5, 0.5], [2.0, -2.0, 3.0]], dtype)
    Y = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 3.0]], dtype)
    loss, grad = ops.huber(P, Y)  # r = [[1, -1, 0.5], [2, -2, 0]]
    assert loss == (0.5 + 0.5 + 0.125 + 1.5 + 1.5 + 0.0) / 2
    np.testing.assert_array_equal(grad, [[0.5, -0.5, 0.25], [0.5, -0.5, 0]])
    loss, grad = ops.huber(P, P.copy())  # perfect predictions
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("name", list(ROBUST))
@pytest.mark.parametrize("where", ["predictions", "targets"])
def test_robust_losses_propagate_nan(backend, dtype, rng, name, where):
    # a NaN residual is neither > 0 nor < 0 (nor outside [-1, 1]): its gradient entry is
    # NaN, not a sign or a clip; the loss is NaN; every other entry is as without it
    P, Y = _residual_data(rng, (4, 3), dtype)
    f = getattr(ops, name)
    _, clean = f(P, Y)
    (P if where == "predictions" else Y)[1, 2] = np.nan
    loss, grad = f(P, Y)
    assert np.isnan(loss)
    nan = np.zeros(P.shape, bool)
    nan[1, 2] = True
    np.testing.assert_array_equal(np.isnan(grad), nan)
    np.testing.assert_array_equal(grad[~nan], clean[~nan])


@pytest.mark.parametrize("name", list(ROBUST))
def test_robust_losses_at_large_values(backend, dtype, name):
    # residuals of 1e30 (finite in float32 too): a finite loss (1e30 - 1/2 for huber) and
    # a gradient of exactly +-1 / n, never r itself
    P = np.array([[1e30, -1e30, 0.0], [0.0, 1e30, 2.0]], dtype)
    Y = np.array([[0.0, 0.0, 1e30], [-1e30, 1e30, 2.5]], dtype)
    f = getattr(ops, name)
    loss, grad = f(P, Y)
    e_loss, _ = ROBUST[name](P, Y)
    assert np.isfinite(loss)
    assert_close(loss, e_loss, dtype)
    last = -0.25 if name == "huber" else -0.5  # r = -0.5: huber's r / n, the sign / n
    np.testing.assert_array_equal(grad, [[0.5, -0.5, -0.5], [0.5, 0.0, last]])
    # as IEEE says: an infinite residual, or one that overflows the dtype (3e38 - -3e38 is
    # inf in float32, 6e38 in float64), has an infinite (resp. finite) loss and a gradient
    # of +-1 / n; inf - inf is NaN (the numpy reference warns of both, as NumPy does)
    big = float(np.finfo(np.float32).max) * 0.9
    P = np.array([[np.inf, 1.0], [0.0, -np.inf]], dtype)
    Y = np.array([[0.0, 1.0], [np.inf, 0.0]], dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        loss, grad = f(P, Y)
        assert loss == np.inf
        np.testing.assert_array_equal(grad, [[0.5, 0.0], [-0.5, -0.5]])
        loss, grad = f(np.array([[big]], dtype), np.array([[-big]], dtype))
        assert loss == (np.inf if dtype == np.float32 else 2 * big)  # (- 1/2: below an ulp)
        np.testing.assert_array_equal(grad, [[1.0]])
        loss, grad = f(np.array([[np.inf, 2.0]], dtype), np.array([[np.inf, 0.0]], dtype))
    assert np.isnan(loss) and np.isnan(grad[0, 0]) and grad[0, 1] == 1.0


# -- multiclass SVM (hinge), categorical cross-entropy on soft targets, KL, log-cosh ------
# References written from the formulas in float64, independent of every backend.


def ref_hinge(Z, y, margin=1.0, squared=False, w=None):
    Z = np.asarray(Z, np.float64)
    n, k = Z.shape
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    loss, grad = 0.0, np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            if j == y[i]:
                continue
            m = Z[i, j] - Z[i, y[i]] + margin
            if m > 0:  # the convention: a tie m == 0 is no violation
                loss += w[i] * (m * m if squared else m)
                g = 2 * m if squared else 1.0
                grad[i, j] += w[i] * g
                grad[i, y[i]] -= w[i] * g
    return loss / w.sum(), grad / w.sum()


def ref_soft_target(Z, T, kl=False, w=None):
    Z, T = np.asarray(Z, np.float64), np.asarray(T, np.float64)
    w = np.ones(len(Z)) if w is None else np.asarray(w, np.float64)
    log_q = Z - logsumexp(Z, axis=1, keepdims=True)
    rows = -np.sum(T * log_q, axis=1)
    if kl:
        rows += np.sum(np.where(T > 0, T * np.log(np.where(T > 0, T, 1)), 0), axis=1)
    grad = np.exp(log_q) * T.sum(axis=1, keepdims=True) - T
    return float(np.sum(w * rows) / w.sum()), grad * (w / w.sum())[:, None]


def ref_log_cosh(P, Y, w=None):
    r = np.asarray(P, np.float64) - np.asarray(Y, np.float64)
    w = np.ones(len(r)) if w is None else np.asarray(w, np.float64)
    rows = np.sum(np.log(np.cosh(r)), axis=1)  # fine for the |r| < 20 the tests draw
    return float(np.sum(w * rows) / w.sum()), np.tanh(r) * (w / w.sum())[:, None]


def _labels_data(rng, shape, dtype):
    Z = (rng.standard_normal(shape) * 2).astype(dtype)
    return Z, rng.integers(0, shape[1], shape[0])


def _soft_data(rng, shape, dtype):
    Z = (rng.standard_normal(shape) * 2).astype(dtype)
    T = rng.dirichlet(np.full(shape[1], 0.7), shape[0])
    T[rng.random(shape) < 0.3] = 0  # zeros in the targets: 0 log 0 = 0
    T /= np.maximum(T.sum(axis=1, keepdims=True), 1e-300)
    T[T.sum(axis=1) == 0, 0] = 1
    return Z, T.astype(dtype)


NEW_LOSSES = {
    "multiclass_hinge": (lambda Z, y, **kw: ops.multiclass_hinge(Z, y, margin=0.8, **kw),
                         lambda Z, y, w=None: ref_hinge(Z, y, 0.8, False, w), _labels_data),
    "squared_multiclass_hinge": (
        lambda Z, y, **kw: ops.squared_multiclass_hinge(Z, y, margin=0.8, **kw),
        lambda Z, y, w=None: ref_hinge(Z, y, 0.8, True, w), _labels_data),
    "categorical_cross_entropy": (ops.categorical_cross_entropy,
                                  lambda Z, T, w=None: ref_soft_target(Z, T, False, w),
                                  _soft_data),
    "kl_divergence": (ops.kl_divergence, lambda Z, T, w=None: ref_soft_target(Z, T, True, w),
                      _soft_data),
    "log_cosh": (ops.log_cosh, ref_log_cosh,
                 lambda rng, shape, dtype: ((rng.standard_normal(shape) * 3).astype(dtype),
                                            rng.standard_normal(shape).astype(dtype))),
}


@pytest.mark.parametrize("name", list(NEW_LOSSES))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_new_losses_against_the_formula(backend, dtype, layout, rng, shape, name, weighted):
    f, ref, data = NEW_LOSSES[name]
    Z, y = data(rng, shape, dtype)
    Z = as_layout(Z, layout)
    w = rng.uniform(0.1, 2.0, shape[0]).astype(dtype) if weighted else None
    before = snapshot(Z)
    loss, grad = f(Z, y, sample_weight=w)
    e_loss, e_grad = ref(Z, y, w)
    assert isinstance(loss, float) and grad.dtype == dtype and grad.shape == shape
    assert_close(loss, e_loss, dtype, atol=20 * np.finfo(dtype).eps * max(1.0, abs(e_loss)))
    assert_close(grad, e_grad, dtype, atol=8 * np.finfo(dtype).eps)
    assert_unchanged([Z], before, ["Z"])


@pytest.mark.parametrize("name", list(NEW_LOSSES))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_new_losses_every_backend_agrees_with_the_reference_backend(dtype, rng, name,
                                                                    weighted):
    f, _, data = NEW_LOSSES[name]
    Z, y = data(rng, (300, 5), dtype)
    w = rng.uniform(0.0, 2.0, 300).astype(dtype) if weighted else None
    results = {}
    for backend in fastmlp.available_backends():
        with fastmlp.use_backend(backend):
            results[backend] = f(Z, y, sample_weight=w)
    ref_loss, ref_grad = results["numpy"]
    # a gradient entry is a difference of terms of the row's scale w_i / sum w (softmax T
    # and t), each backend rounding them in its own order: within a dozen roundings of
    # that scale (the difference itself may cancel)
    scale = (np.ones(300) if w is None else w.astype(np.float64)) / (
        300 if w is None else np.sum(w, dtype=np.float64))
    for backend, (loss, grad) in results.items():
        assert_close(loss, ref_loss, dtype, atol=0, err_msg=backend)
        assert_within(grad, ref_grad, 12 * np.finfo(dtype).eps * scale[:, None], backend)


@pytest.mark.parametrize("name", list(NEW_LOSSES))
def test_new_losses_gradient_is_the_derivative(backend, rng, name):
    # float64 central differences, h = 1e-6; the hinge's margins kept >= 0.05 from its
    # kinks (m_j = 0), where a step of h cannot cross one
    f, _, data = NEW_LOSSES[name]
    Z, y = data(rng, (5, 4), np.float64)
    if "hinge" in name:
        rows = np.arange(5)
        m = Z - Z[rows, y][:, None] + 0.8
        m[rows, y] = 1.0
        Z = Z + np.where(np.abs(m) < 0.05, 0.1, 0.0)  # away from the kinks
        m = Z - Z[rows, y][:, None] + 0.8
        m[rows, y] = 1.0
        assert np.all(np.abs(m) >= 0.05) and np.any(m > 0)
    w = rng.uniform(0.5, 1.5, 5)
    _, analytic = f(Z, y, sample_weight=w)
    numeric = numerical_gradient(lambda: f(Z, y, sample_weight=w)[0], Z, 1e-6)
    assert relative_error(analytic, numeric) < 1e-6


def test_hinge_the_course_example(backend, dtype):
    # the notes' example: scores (cat, car, frog) = (3.2, 5.1, -1.7) of a cat image, Delta 1:
    # max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9
    Z = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]], dtype)
    y = np.array([0, 1, 2])
    loss, grad = ops.multiclass_hinge(Z, y)
    assert_close(loss, (2.9 + 0.0 + 12.9) / 3, dtype, atol=1e-6)
    np.testing.assert_array_equal(grad * 3, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])


def test_hinge_at_its_kinks(backend, dtype):
    # m_j = 0 exactly (s_j = s_y - Delta): no violation, gradient 0 (the convention);
    # just past it (m_j = 0.25 > 0) one
    Z = np.array([[2.0, 1.0, 0.0], [2.0, 1.25, 0.0]], dtype)
    y = np.array([0, 0])
    loss, grad = ops.multiclass_hinge(Z, y)
    assert loss == 0.25 / 2
    np.testing.assert_array_equal(grad, [[0, 0, 0], [-0.5, 0.5, 0]])
    loss, grad = ops.squared_multiclass_hinge(Z, y)
    assert loss == 0.0625 / 2
    np.testing.assert_array_equal(grad, [[0, 0, 0], [-0.25, 0.25, 0]])
    # margin 0: ties of scores with the label's are no violation
    loss, grad = ops.multiclass_hinge(np.array([[1.0, 1.0]], dtype), np.array([0]), margin=0)
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("name", list(NEW_LOSSES))
def test_new_losses_at_large_logits(backend, dtype, name):
    # logits +-1e4: finite values and gradients, equal to the float64 formula
    f, _, _ = NEW_LOSSES[name]
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [3.0, -1e4, 2.0]], dtype)
    if name in ("categorical_cross_entropy", "kl_divergence"):
        y = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], dtype)
        lse = np.array([1e4, 1e4 + np.log(2.0), 2.0 + np.log1p(np.e)])
        zt = np.array([-1e4, -5e3 + 5e3, 3.0])  # sum_j t_j z_j
        t_log_t = np.array([0.0, -np.log(2.0), 0.0])  # sum_j t_j log t_j
        e_loss = np.mean(lse - zt + (t_log_t if name == "kl_divergence" else 0.0))
    elif name == "log_cosh":
        y = np.zeros_like(Z)
        e_loss = np.sum(np.abs(Z.astype(np.float64)) - np.log(2.0)
                        + np.log1p(np.exp(-2 * np.abs(Z.astype(np.float64))))) / 3
    else:
        y = np.array([1, 0, 2])
        # m_j = z_j - z_y + 0.8: (2e4, -, 1e4), (-, 2e4, 2e4), (1, -1e4 - 2, -) + 0.8
        m = np.array([[2e4, 0, 1e4], [0, 2e4, 2e4], [1.0, -1e4 - 2, 0]]) + 0.8
        m[np.arange(3), y] = 0
        m = np.maximum(m, 0)
        e_loss = np.sum(m * m if "squared" in name else m) / 3
    loss, grad = f(Z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_close(loss, e_loss, dtype, atol=0)


def test_log_cosh_is_quadratic_near_zero_and_linear_far_away(backend, dtype):
    r = np.array([[1e-4, -1e-3, 0.0, 1e-20]], dtype)
    loss, grad = ops.log_cosh(r, np.zeros_like(r))
    x2 = np.asarray(r, np.float64) ** 2  # log cosh x = x^2/2 - x^4/12 + x^6/45 - ...
    assert_close(loss, float(np.sum(x2 / 2 - x2 * x2 / 12 + x2**3 / 45)), dtype, atol=0)
    assert_close(grad, np.tanh(r.astype(np.float64)), dtype, atol=0)
    r = np.array([[30.0, -1e6]], dtype)  # cosh overflows past 710: the formula does not
    loss, grad = ops.log_cosh(r, np.zeros_like(r))
    assert_close(loss, 30 + 1e6 - 2 * np.log(2.0), dtype, atol=0)
    np.testing.assert_array_equal(grad, [[1, -1]])


def test_categorical_cross_entropy_on_one_hot_rows_is_softmax_cross_entropy(backend, dtype,
                                                                            rng):
    # the gradient bit for bit (T = 1, the same operations); the loss to within 2 ulp in
    # float64 ((m - z_y) + log s against (m + log s) - z_y)
    Z, y = _labels_data(rng, (500, 7), dtype)
    w = rng.uniform(0.1, 2.0, 500).astype(dtype)
    T = np.eye(7, dtype=dtype)[y]
    for weights in (None, w):
        loss, grad = ops.categorical_cross_entropy(Z, T, sample_weight=weights)
        e_loss, e_grad = ops.softmax_cross_entropy(Z, y, sample_weight=weights)
        np.testing.assert_array_equal(grad, e_grad)
        np.testing.assert_array_max_ulp(loss, e_loss, maxulp=2)
        kl, kl_grad = ops.kl_divergence(Z, T, sample_weight=weights)
        assert kl == loss  # the entropy of a one-hot row is 0
        np.testing.assert_array_equal(kl_grad, grad)


def test_kl_divergence_is_zero_at_the_target_and_cross_entropy_minus_entropy(backend, dtype,
                                                                               rng):
    Z, T = _soft_data(rng, (40, 5), np.float64)
    log_T = np.log(np.where(T > 0, T, 1e-300))
    log_T[T == 0] = -50.0  # softmax of these logits is T to within e^-50
    Zt = log_T.astype(dtype)
    loss, grad = ops.kl_divergence(Zt, T.astype(dtype))
    assert abs(loss) < 20 * np.finfo(dtype).eps
    assert np.max(np.abs(grad)) < 20 * np.finfo(dtype).eps
    cce = ops.categorical_cross_entropy(Z.astype(dtype), T.astype(dtype))[0]
    kl = ops.kl_divergence(Z.astype(dtype), T.astype(dtype))[0]
    T64 = T.astype(dtype).astype(np.float64)
    entropy = -np.mean(np.sum(np.where(T64 > 0, T64 * np.log(np.where(T64 > 0, T64, 1)), 0),
                              axis=1))
    assert_close(kl, cce - entropy, dtype, atol=1e-12)


def test_soft_target_gradient_for_rows_that_do_not_sum_to_one(backend, dtype):
    # the general gradient softmax * sum(t) - t, the loss weighing the row by its sum
    Z = np.array([[0.0, np.log(3.0)]], dtype)  # softmax (1/4, 3/4)
    T = np.array([[1.0, 1.0]], dtype)
    loss, grad = ops.categorical_cross_entropy(Z, T)
    assert_close(grad, [[0.5 - 1, 1.5 - 1]], dtype)
    assert_close(loss, -np.log(0.25) - np.log(0.75), dtype)


@pytest.mark.parametrize("name", list(NEW_LOSSES))
def test_new_losses_propagate_nan(backend, dtype, rng, name):
    f, _, data = NEW_LOSSES[name]
    Z, y = data(rng, (3, 4), dtype)
    Z[1, 2] = np.nan
    with np.errstate(invalid="ignore"):
        loss, grad = f(Z, y)
    assert np.isnan(loss)
    assert np.isnan(grad[1]).any() and not np.isnan(grad[[0, 2]]).any()


@pytest.mark.parametrize("name", list(NEW_LOSSES))
def test_new_losses_out_and_in_place(backend, dtype, rng, name):
    f, _, data = NEW_LOSSES[name]
    Z, y = data(rng, (3000, 3), dtype)
    loss, grad = f(Z, y)
    out = np.full_like(Z, np.nan)
    assert f(Z, y, out=out)[1] is out
    np.testing.assert_array_equal(out, grad)
    loss_in_place, same = f(Z, y, out=Z)
    assert same is Z and loss_in_place == loss
    np.testing.assert_array_equal(Z, grad)


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops.multiclass_hinge(np.zeros((2, 3)), np.array([0, 3])), ValueError, "y"),
    (lambda: ops.multiclass_hinge(np.zeros((2, 3)), np.array([0, 1]), margin=-1.0),
     ValueError, "margin"),
    (lambda: ops.multiclass_hinge(np.zeros((2, 3)), np.array([0, 1]), margin=np.nan),
     ValueError, "margin"),
    (lambda: ops.multiclass_hinge(np.zeros((2, 3)), np.array([0, 1]), squared=1), TypeError,
     "squared"),
    (lambda: ops.multiclass_hinge(np.zeros((2, 3)), np.array([0, 1]),
                                  sample_weight=np.zeros(2)), ValueError, "sample_weight"),
    (lambda: ops.categorical_cross_entropy(np.zeros((2, 3)), np.zeros((2, 2))), ValueError,
     "targets"),
    (lambda: ops.categorical_cross_entropy(np.zeros((2, 3)), -np.ones((2, 3))), ValueError,
     "targets"),
    (lambda: ops.kl_divergence(np.zeros((2, 3)), np.ones((2, 3), np.float32)), TypeError,
     "targets"),
    (lambda: ops.log_cosh(np.zeros((2, 3)), np.zeros((2, 3)), sample_weight=np.ones(3)),
     ValueError, "sample_weight"),
    (lambda: ops.log_cosh(np.zeros((0, 3)), np.zeros((0, 3))), ValueError, "predictions"),
])
def test_new_losses_name_the_bad_argument(backend, call, error, message):
    with pytest.raises(error, match=message):
        call()
