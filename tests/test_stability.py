"""Extreme inputs: no overflow, the right limits, and NaN that stays NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import (
    ACTIVATIONS,
    assert_close,
    ref_activation,
    ref_derivative_from_z,
    ref_log_softmax,
    ref_sigmoid_bce,
    ref_softmax,
    ref_softmax_cross_entropy,
)

from fastmlp import ops

BIG = 1e4

EXTREME_LOGITS = np.array(
    [
        [BIG, -BIG, 0.0],
        [-BIG, BIG, BIG],  # a tie at the top
        [-BIG, -BIG, -BIG],  # all equal and very negative
        [BIG, BIG, BIG],
        [0.0, 0.0, 0.0],
    ]
)


def test_softmax_cross_entropy_extreme_logits(backend, dtype):
    Z = EXTREME_LOGITS.astype(dtype)
    y = np.array([1, 2, 0, 2, 1])
    loss, grad = ops.softmax_cross_entropy(Z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    e_loss, e_grad = ref_softmax_cross_entropy(Z, y)
    # row 0 costs 2e4, row 1 log 2, rows 2-4 log 3: the exact mean
    assert e_loss == pytest.approx((2 * BIG + np.log(2) + 3 * np.log(3)) / 5, rel=1e-15)
    assert_close(loss, e_loss, dtype)
    assert_close(grad, e_grad, dtype)


def test_softmax_cross_entropy_ties(backend, dtype, rng):
    k = 4
    Z = np.full((6, k), 2.5, dtype)
    y = rng.integers(0, k, 6)
    loss, grad = ops.softmax_cross_entropy(Z, y)
    assert loss == pytest.approx(np.log(k), rel=1e-6 if dtype == np.float32 else 1e-14)
    expected = np.full((6, k), 1 / k)
    expected[np.arange(6), y] -= 1
    assert_close(grad, expected / 6, dtype)
    assert_close(grad.sum(axis=1, dtype=np.float64), np.zeros(6), dtype)


def test_softmax_cross_entropy_confident_and_right(backend, dtype):
    Z = np.array([[BIG, -BIG], [-BIG, BIG]], dtype)
    loss, grad = ops.softmax_cross_entropy(Z, np.array([0, 1]))
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_extreme_logits(backend, dtype, log):
    Z = EXTREME_LOGITS.astype(dtype)
    out = ops.log_softmax(Z) if log else ops.softmax(Z)
    assert np.all(np.isfinite(out))
    if log:
        assert_close(out, ref_log_softmax(Z), dtype, atol=1e-6)
        assert np.all(out <= 0)
    else:
        assert_close(out, ref_softmax(Z), dtype)
        assert np.all((out >= 0) & (out <= 1))
        assert_close(out.sum(axis=1, dtype=np.float64), np.ones(len(Z)), dtype)


EXTREMES = np.array([[-1000.0, 1000.0, -1e4, 1e4]])


def test_sigmoid_limits(backend, dtype):
    A = ops.activation_forward("sigmoid", EXTREMES.astype(dtype))
    np.testing.assert_array_equal(A, [[0.0, 1.0, 0.0, 1.0]])
    dZ = ops.activation_backward("sigmoid", np.ones_like(A), A)
    np.testing.assert_array_equal(dZ, 0)


def test_softplus_limits(backend, dtype):
    A = ops.activation_forward("softplus", EXTREMES.astype(dtype))
    assert np.all(np.isfinite(A)) and np.all(A >= 0)
    np.testing.assert_array_equal(A[0, [1, 3]], [1000.0, 1e4])
    assert A[0, 0] == 0.0 and A[0, 2] == 0.0  # log1p(e^-1000) underflows to 0
    dZ = ops.activation_backward("softplus", np.ones_like(A), A)
    np.testing.assert_array_equal(dZ, [[0.0, 1.0, 0.0, 1.0]])


def test_tanh_limits(backend, dtype):
    A = ops.activation_forward("tanh", EXTREMES.astype(dtype))
    np.testing.assert_array_equal(A, [[-1.0, 1.0, -1.0, 1.0]])


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_limits(backend, dtype, alpha):
    A = ops.activation_forward("elu", EXTREMES.astype(dtype), alpha=alpha)
    np.testing.assert_array_equal(A, np.array([[-alpha, 1000.0, -alpha, 1e4]], dtype))
    dZ = ops.activation_backward("elu", np.ones_like(A), A, alpha=alpha)
    np.testing.assert_array_equal(dZ, [[0.0, 1.0, 0.0, 1.0]])


def test_bce_extreme_logits(backend, dtype):
    Z = np.array([[BIG, -BIG], [BIG, -BIG], [1000.0, -1000.0]], dtype)
    Y = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype)
    loss, grad = ops.sigmoid_binary_cross_entropy(Z, Y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    e_loss, e_grad = ref_sigmoid_bce(Z, Y)
    assert e_loss == pytest.approx((2 * BIG + 1000.0) / 3, rel=1e-15)
    assert_close(loss, e_loss, dtype)
    assert_close(grad, e_grad, dtype)


def test_relu_dead_column(backend, dtype, rng):
    # column 1's pre-activation is negative on every row: zero output, zero gradient
    X = rng.uniform(-1, 1, (6, 3)).astype(dtype)
    W = rng.standard_normal((3, 2)).astype(dtype)
    b = np.array([0.5, -100.0], dtype)
    A = ops.dense_forward(X, W, b, "relu")
    np.testing.assert_array_equal(A[:, 1], 0)
    dA = rng.standard_normal((6, 2)).astype(dtype)
    dX, dW, db = ops.dense_backward(dA, X, W, A, "relu")
    for g in (dX, dW, db):
        assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(dW[:, 1], 0)
    assert db[1] == 0
    # and dX only carries column 0
    np.testing.assert_allclose(dX, (dA[:, :1] * (A[:, :1] > 0)) @ W[:, :1].T, rtol=1e-5, atol=1e-6)


def test_relu_all_dead(backend, dtype):
    Z = -np.ones((4, 3), dtype)
    A = ops.activation_forward("relu", Z)
    np.testing.assert_array_equal(A, 0)
    dZ = ops.activation_backward("relu", np.ones_like(A), A)
    np.testing.assert_array_equal(dZ, 0)


# -- NaN propagates ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_nan_propagates_through_activations(backend, dtype, name):
    Z = np.array([[np.nan, -1.0, 2.0], [0.5, np.nan, -3.0]], dtype)
    A = ops.activation_forward(name, Z)
    assert np.isnan(A[0, 0]) and np.isnan(A[1, 1]), f"{name}(nan) must be nan, got {A}"
    assert np.all(np.isfinite(A[~np.isnan(Z)]))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "identity", "tanh"])
def test_nan_propagates_through_dense_forward(backend, dtype, rng, name):
    X = rng.standard_normal((3, 4)).astype(dtype)
    X[1, 2] = np.nan
    W = rng.standard_normal((4, 2)).astype(dtype)
    A = ops.dense_forward(X, W, np.zeros(2, dtype), name)
    assert np.all(np.isnan(A[1])), f"row 1 of {name}(X @ W + b) must be nan, got {A[1]}"
    assert np.all(np.isfinite(A[[0, 2]]))


@pytest.mark.parametrize("col", [0, 2], ids=["nan-first", "nan-last"])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_nan_propagates_through_softmax(backend, dtype, col, log):
    Z = np.array([[1.0, 2.0, 3.0], [0.0, 5.0, -1.0]], dtype)
    Z[0, col] = np.nan
    out = ops.log_softmax(Z) if log else ops.softmax(Z)
    # every entry of the row depends on the NaN through the normalisation
    assert np.all(np.isnan(out[0])), f"row with a NaN gave {out[0]}"
    assert np.all(np.isfinite(out[1]))


@pytest.mark.parametrize("col", [0, 2], ids=["nan-first", "nan-last"])
def test_nan_propagates_through_softmax_cross_entropy(backend, dtype, col):
    Z = np.array([[1.0, 2.0, 3.0], [0.0, 5.0, -1.0]], dtype)
    Z[0, col] = np.nan
    loss, grad = ops.softmax_cross_entropy(Z, np.array([1, 1]))
    assert np.isnan(loss)
    assert np.all(np.isnan(grad[0]))


def test_nan_propagates_through_bce_and_mse(backend, dtype):
    Z = np.array([[np.nan, 1.0]], dtype)
    Y = np.array([[1.0, 0.0]], dtype)
    loss, grad = ops.sigmoid_binary_cross_entropy(Z, Y)
    assert np.isnan(loss) and np.isnan(grad[0, 0])
    loss, grad = ops.mean_squared_error(Z, Y)
    assert np.isnan(loss) and np.isnan(grad[0, 0])


# -- accuracy of the exp behind sigmoid, softplus, softmax and the losses ---------------

GRID = {np.dtype(np.float32): 110.0, np.dtype(np.float64): 760.0}  # past under/overflow


def _relative_error_on_normals(actual, expected, dtype):
    actual = np.asarray(actual, np.longdouble)
    normal = np.abs(expected) >= np.finfo(dtype).smallest_normal
    # subnormal results carry fewer bits: there, an absolute error of a few of them
    tiny = 4 * np.finfo(dtype).smallest_subnormal
    assert np.all(np.abs(actual[~normal] - expected[~normal]) <= tiny)
    return float(np.max(np.abs(actual[normal] - expected[normal]) / np.abs(expected[normal])))


def test_exp_based_kernels_are_accurate_over_the_whole_range(backend, dtype):
    # the reference runs in long double: its exp neither overflows nor underflows here
    # (scipy's expit, say, flushes float64 results below 1e-308 to zero)
    if np.finfo(np.longdouble).eps > 1e-18 and dtype == np.float64:
        pytest.skip("long double is no wider than double on this platform")
    L = GRID[np.dtype(dtype)]
    # and the tiny and subnormal arguments, where exp takes a shortcut (e^x rounds to 1)
    tiny = np.geomspace(np.finfo(dtype).smallest_subnormal, 1e-2, 4000)
    z = np.r_[np.linspace(-L, L, 40001), tiny, -tiny].astype(dtype)
    zl = z.astype(np.longdouble)
    sigmoid = 1 / (1 + np.exp(-zl))
    rtol = 4 * np.finfo(dtype).eps  # a few ulps, far inside the RTOL table
    sig = ops.activation_forward("sigmoid", z)
    assert _relative_error_on_normals(sig, sigmoid, dtype) <= rtol
    th = ops.activation_forward("tanh", z)
    assert _relative_error_on_normals(th, np.tanh(zl), dtype) <= rtol
    assert np.all(np.abs(th) <= 1) and np.all(np.signbit(th) == np.signbit(z))
    soft = ops.activation_forward("softplus", z)
    assert _relative_error_on_normals(soft, np.log1p(np.exp(zl)), dtype) <= rtol
    # softplus' = 1 - e^-a from its output a, and elu = alpha (e^z - 1) below 0: expm1
    a = np.abs(z)
    d_soft = ops.activation_backward("softplus", np.ones_like(a), a)
    assert _relative_error_on_normals(d_soft, -np.expm1(-a.astype(np.longdouble)), dtype) <= rtol
    elu = ops.activation_forward("elu", -a, alpha=1.0)
    assert _relative_error_on_normals(elu, np.expm1(-a.astype(np.longdouble)), dtype) <= rtol
    # softmax([0, z]) = [sigmoid(-z), sigmoid(z)]
    P = ops.softmax(np.c_[np.zeros_like(z), z])
    assert _relative_error_on_normals(P[:, 1], sigmoid, dtype) <= rtol
    assert _relative_error_on_normals(P[:, 0], 1 / (1 + np.exp(zl)), dtype) <= rtol


def test_numba_exp_is_accurate_over_the_whole_range(dtype):
    # numba_backend._exp, exp.inc's plain-arithmetic e^x behind every exp-based kernel of
    # the numba backend, on its own: the kernels above never reach its overflow side
    numba = pytest.importorskip("numba")
    from fastmlp.backends import numba_backend

    if np.finfo(np.longdouble).eps > 1e-18 and dtype == np.float64:
        pytest.skip("long double is no wider than double on this platform")

    @numba.njit
    def exp_each(x, out):
        for i in range(x.size):
            out[i] = numba_backend._exp(x[i])

    finfo = np.finfo(dtype)
    L = GRID[np.dtype(dtype)]
    tiny = np.geomspace(finfo.smallest_subnormal, 1e-2, 4000)
    # a few neighbours of the thresholds of overflow and of the smallest subnormal
    edges = [dtype.type(np.log(np.longdouble(v))) for v in (finfo.max, finfo.smallest_subnormal)]
    near = [e + k * np.spacing(e) for e in edges for k in range(-4, 5)]
    z = np.r_[np.linspace(-L, L, 400001), tiny, -tiny, near].astype(dtype)
    e = np.exp(z.astype(np.longdouble))
    out = np.empty_like(z)
    exp_each(z, out)
    finite = e <= finfo.max
    # within 2 eps relative where the result is normal (measured: 0.8 eps), a few
    # subnormals' worth below
    assert _relative_error_on_normals(out[finite], e[finite], dtype) <= 2 * finfo.eps
    assert np.all(out[~finite] == np.inf)
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype)
    exp_each(special, out[:5])
    np.testing.assert_array_equal(out[:5], [np.inf, 0.0, np.nan, 1.0, 1.0])


def test_log_softmax_is_shift_invariant(backend, dtype):
    # log_softmax(z + c) = log_softmax(z): a large common offset must not cost digits
    z = np.array([[0.0, -0.5, -1.0, -3.0]], dtype)
    expected = ref_log_softmax(z)
    for c in (1e3, 1e4, -1e4):
        shifted = (z + dtype.type(c)).astype(dtype)
        np.testing.assert_array_equal(shifted - dtype.type(c), z)  # the offset is exact
        assert_close(ops.log_softmax(shifted), expected, dtype, err_msg=f"offset {c}")


def test_infinite_inputs(backend, dtype):
    Z = np.array([[-np.inf, np.inf]], dtype)
    expected = {
        "identity": [-np.inf, np.inf],
        "relu": [0.0, np.inf],
        "sigmoid": [0.0, 1.0],
        "tanh": [-1.0, 1.0],
        "softplus": [0.0, np.inf],
        "elu": [-1.0, np.inf],
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(ops.activation_forward(name, Z)[0], values, err_msg=name)
    # a -inf logit is a masked class: probability 0, the others unaffected
    P = ops.softmax(np.array([[-np.inf, 0.0, 0.0]], dtype))
    np.testing.assert_array_equal(P, [[0.0, 0.5, 0.5]])


# -- the activations at the edges ---------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_finite_at_the_edges(backend, dtype, name):
    # far out (+-1e4, +-80: e^80 overflows float32) every activation and its derivative is
    # finite, without an overflow warning, and equals its float64 reference (saturated)
    Z = np.array([[-1e4, -80.0, -30.0, 0.0, 30.0, 80.0, 1e4]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow, invalid) fails
        A = ops.activation_forward(name, Z)
        dZ = ops.activation_backward(name, np.ones_like(Z), A, Z=Z)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(dZ)), f"{name}: {A}, {dZ}"
    with np.errstate(over="ignore"):  # the reference's cosh may overflow to a 0 slope
        expected = ref_derivative_from_z(name, Z.astype(np.float64))
    assert_close(A, ref_activation(name, Z.astype(np.float64)), dtype)
    assert_close(dZ, expected, dtype)
