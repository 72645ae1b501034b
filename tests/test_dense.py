"""dense_forward / dense_backward against the float64 reference, and the C backend's gemm.

Products are compared with a rounding bound proportional to the reduction length times
the magnitudes |X| @ |W| (helpers.product_bound), which holds for any summation order
(BLAS or the built-in small kernel) yet is tight enough to catch a wrong term.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    ACTIVATION_CASES,
    ACTIVATION_IDS,
    ACTIVATIONS,
    as_layout,
    assert_unchanged,
    assert_within,
    eps,
    product_bound,
    ref_activation,
    ref_dense_backward,
    ref_dense_forward,
    snapshot,
)

import fastmlp
from fastmlp import ops

SHAPES = [(7, 5, 4), (1, 3, 1), (33, 17, 9)]  # (n, n_in, n_out)
SHAPE_IDS = ["7x5x4", "1x3x1", "33x17x9"]


def _kw(alpha):
    return {} if alpha is None else {"alpha": alpha}


def _inputs(rng, dtype, n, n_in, n_out):
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return X, W, b


def _forward_bound(dtype, X, W, b, n_in):
    X64, W64, b64 = (np.asarray(a, np.float64) for a in (X, W, b))
    magnitude = np.abs(X64) @ np.abs(W64) + np.abs(b64)
    # each activation is 1-Lipschitz or flatter (elu with alpha <= 1), so the error of
    # z = XW + b carries over; then one more rounding of f(z) itself
    return product_bound(dtype, n_in, magnitude)


def _check_forward(X, W, b, name, alpha, dtype, A):
    expected = ref_dense_forward(X, W, b, name, alpha)
    bound = _forward_bound(dtype, X, W, b, X.shape[1]) + 4 * eps(dtype) * np.abs(expected)
    assert A.dtype == dtype and A.shape == expected.shape
    assert_within(A, expected, bound, f"dense_forward {name}")


@pytest.mark.parametrize("name, alpha", ACTIVATION_CASES, ids=ACTIVATION_IDS)
def test_dense_forward(backend, dtype, layout, rng, name, alpha):
    X, W, b = _inputs(rng, dtype, 7, 5, 4)
    X, W, b = as_layout(X, layout), as_layout(W, layout), as_layout(b, layout)
    before = snapshot(X, W, b)
    A = ops.dense_forward(X, W, b, name, **_kw(alpha))
    _check_forward(X, W, b, name, alpha, dtype, A)
    assert_unchanged([X, W, b], before, ["X", "W", "b"])


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_dense_forward_shapes_default_relu(backend, dtype, rng, shape):
    X, W, b = _inputs(rng, dtype, *shape)
    A = ops.dense_forward(X, W, b)  # activation defaults to relu
    _check_forward(X, W, b, "relu", None, dtype, A)


def test_dense_forward_accepts_row_bias_and_out(backend, dtype, rng):
    X, W, b = _inputs(rng, dtype, 6, 4, 3)
    out = np.full((6, 3), np.nan, dtype)
    result = ops.dense_forward(X, W, b.reshape(1, -1), "tanh", out=out)
    assert result is out
    _check_forward(X, W, b, "tanh", None, dtype, out)


def test_dense_forward_zero_rows(backend, dtype, rng):
    _, W, b = _inputs(rng, dtype, 1, 4, 3)
    A = ops.dense_forward(np.zeros((0, 4), dtype), W, b, "sigmoid")
    assert A.shape == (0, 3) and A.dtype == dtype


def test_dense_forward_zero_inputs_is_the_bias(backend, dtype):
    b = np.array([-1.0, 2.0], dtype)
    A = ops.dense_forward(np.zeros((3, 0), dtype), np.zeros((0, 2), dtype), b, "relu")
    np.testing.assert_array_equal(A, np.tile([0.0, 2.0], (3, 1)))


@pytest.mark.parametrize("name, alpha", ACTIVATION_CASES, ids=ACTIVATION_IDS)
@pytest.mark.parametrize(
    "l2, l1",
    [(0.0, 0.0), (0.1, 0.0), (0.0, 0.05), (0.1, 0.05)],
    ids=["nopenalty", "l2", "l1", "l2+l1"],
)
def test_dense_backward(backend, dtype, layout, rng, name, alpha, l2, l1):
    X, W, _ = _inputs(rng, dtype, 7, 5, 4)
    Z = rng.standard_normal((7, 4)) * 2
    Z[np.abs(Z) < 0.05] = 0.5
    A = ref_activation(name, Z, alpha).astype(dtype)
    Z = Z.astype(dtype)  # the pre-activation, read by gelu, gelu_tanh, swish and mish
    dA = rng.standard_normal((7, 4)).astype(dtype)
    dA, X, W, A, Z = (as_layout(a, layout) for a in (dA, X, W, A, Z))
    before = snapshot(dA, X, W, A, Z)
    dX, dW, db = ops.dense_backward(dA, X, W, A, name, Z=Z, l2=l2, l1=l1, **_kw(alpha))
    _check_backward(dA, X, W, A, name, alpha, l2, l1, dtype, dX, dW, db, Z=Z)
    assert_unchanged([dA, X, W, A, Z], before, ["dA", "X", "W", "A", "Z"])


def _check_backward(dA, X, W, A, name, alpha, l2, l1, dtype, dX, dW, db, need_dX=True, Z=None):
    e_dX, e_dW, e_db, e_dZ = ref_dense_backward(dA, X, W, A, name, alpha, l2, l1, Z=Z)
    aZ = np.abs(e_dZ)
    X64, W64 = np.asarray(X, np.float64), np.asarray(W, np.float64)
    n, n_in = X.shape
    # dZ = dA * f'(A) is itself rounded once or twice before the products
    assert dW.dtype == dtype and dW.shape == W.shape
    assert db.dtype == dtype and db.shape == (W.shape[1],)
    assert_within(
        dW, e_dW, product_bound(dtype, n + 4, np.abs(X64).T @ aZ + l2 * np.abs(W64) + l1), "dW"
    )
    assert_within(db, e_db, product_bound(dtype, n + 4, aZ.sum(axis=0)), "db")
    if need_dX:
        assert dX.dtype == dtype and dX.shape == X.shape
        assert_within(dX, e_dX, product_bound(dtype, W.shape[1] + 4, aZ @ np.abs(W64).T), "dX")
    else:
        assert dX is None


@pytest.mark.parametrize("name", ["relu", "sigmoid", "identity"])
def test_dense_backward_without_dX(backend, dtype, rng, name):
    X, W, _ = _inputs(rng, dtype, 5, 3, 2)
    A = ref_activation(name, rng.standard_normal((5, 2))).astype(dtype)
    dA = rng.standard_normal((5, 2)).astype(dtype)
    dX, dW, db = ops.dense_backward(dA, X, W, A, name, l2=0.3, need_dX=False)
    _check_backward(dA, X, W, A, name, None, 0.3, 0.0, dtype, dX, dW, db, need_dX=False)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_dense_backward_shapes(backend, dtype, rng, shape):
    n, n_in, n_out = shape
    X, W, _ = _inputs(rng, dtype, n, n_in, n_out)
    A = ref_activation("tanh", rng.standard_normal((n, n_out))).astype(dtype)
    dA = rng.standard_normal((n, n_out)).astype(dtype)
    dX, dW, db = ops.dense_backward(dA, X, W, A, "tanh", l2=0.01)
    _check_backward(dA, X, W, A, "tanh", None, 0.01, 0.0, dtype, dX, dW, db)


def test_dense_backward_zero_rows_gives_only_the_penalty(backend, dtype, rng):
    _, W, _ = _inputs(rng, dtype, 1, 3, 2)
    empty = np.zeros((0, 2), dtype)
    dX, dW, db = ops.dense_backward(empty, np.zeros((0, 3), dtype), W, empty, "relu", l2=0.5)
    assert dX.shape == (0, 3)
    np.testing.assert_allclose(dW, 0.5 * W.astype(np.float64), rtol=1e-6)
    np.testing.assert_array_equal(db, np.zeros(2))


# -- the C backend's two gemm paths ------------------------------------------------------


@pytest.mark.parametrize("name", ["identity", "relu", "sigmoid", "elu", "selu", "gelu", "mish"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_c_dense_on_both_gemm_paths(gemm_path, dtype, layout, rng, name, shape):
    with fastmlp.use_backend("c"):
        X, W, b = _inputs(rng, dtype, *shape)
        X, W = as_layout(X, layout), as_layout(W, layout)
        Z = np.empty((shape[0], shape[2]), dtype)
        A = ops.dense_forward(X, W, b, name, Z_out=Z)
        _check_forward(X, W, b, name, None, dtype, A)
        dA = rng.standard_normal(A.shape).astype(dtype)
        dX, dW, db = ops.dense_backward(dA, X, W, A, name, Z=Z, l2=0.01, l1=0.001)
        _check_backward(dA, X, W, A, name, None, 0.01, 0.001, dtype, dX, dW, db, Z=Z)


def test_small_gemm_threshold_round_trips(c_kernels):
    old = c_kernels.get_small_gemm_flops()
    try:
        c_kernels.set_small_gemm_flops(12345)
        assert c_kernels.get_small_gemm_flops() == 12345
        with pytest.raises(ValueError, match="flops"):
            c_kernels.set_small_gemm_flops(-1)
        assert c_kernels.get_small_gemm_flops() == 12345
    finally:
        c_kernels.set_small_gemm_flops(old)
    assert c_kernels.get_small_gemm_flops() == old


@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "A.T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "B.T"])
@pytest.mark.parametrize(
    "mnk",
    # the narrow-output "dot" form blocks up to 4 columns: every remainder, k below,
    # at and off a multiple of its 8 partial sums
    [(5, 4, 3), (1, 1, 1), (17, 13, 29), (4, 6, 1), (20, 3, 100), (16, 6, 7), (33, 7, 17),
     (18, 2, 8)],
    ids=["5x4x3", "1x1x1", "17x13x29", "4x6x1", "20x3x100", "16x6x7", "33x7x17", "18x2x8"],
)
def test_c_gemm(c_kernels, gemm_path, dtype, rng, trans_a, trans_b, mnk):
    m, n, k = mnk
    op_a = rng.standard_normal((m, k))
    op_b = rng.standard_normal((k, n))
    A = np.ascontiguousarray(op_a.T if trans_a else op_a, dtype=dtype)
    B = np.ascontiguousarray(op_b.T if trans_b else op_b, dtype=dtype)
    out = np.full((m, n), np.nan, dtype)
    A_before, B_before = A.copy(), B.copy()
    c_kernels.gemm(A, B, out, trans_a, trans_b)
    a64 = A.astype(np.float64).T if trans_a else A.astype(np.float64)
    b64 = B.astype(np.float64).T if trans_b else B.astype(np.float64)
    assert_within(out, a64 @ b64, product_bound(dtype, k, np.abs(a64) @ np.abs(b64)), "gemm")
    np.testing.assert_array_equal(A, A_before)
    np.testing.assert_array_equal(B, B_before)


# -- the SIMD micro-kernels, every instruction set this CPU has --------------------------

AWKWARD = (1, 2, 3, 7, 15, 16, 17, 31, 33, 100, 257)
# every pair of (m, n), (m, k) and (n, k) values occurs: k = AWKWARD[(i + j) % 11]
PAIRWISE = [(m, n, AWKWARD[(i + j) % len(AWKWARD)])
            for i, m in enumerate(AWKWARD) for j, n in enumerate(AWKWARD)]


@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "A.T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "B.T"])
def test_simd_gemm_on_awkward_sizes(c_kernels, simd, dtype, rng, trans_a, trans_b):
    """Every (m, n, k) pair from AWKWARD, overwriting a NaN output (beta = 0) and
    accumulating into one (alpha = 0.5, beta = -2), against the float64 product."""
    old = c_kernels.get_small_gemm_flops()
    c_kernels.set_small_gemm_flops(10**12)
    try:
        for m, n, k in PAIRWISE:
            op_a, op_b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
            A = np.ascontiguousarray(op_a.T if trans_a else op_a, dtype=dtype)
            B = np.ascontiguousarray(op_b.T if trans_b else op_b, dtype=dtype)
            a64 = (A.T if trans_a else A).astype(np.float64)
            b64 = (B.T if trans_b else B).astype(np.float64)
            magnitude = np.abs(a64) @ np.abs(b64)
            out = np.full((m, n), np.nan, dtype)
            c_kernels.gemm(A, B, out, trans_a, trans_b)
            assert_within(out, a64 @ b64, product_bound(dtype, k, magnitude),
                          f"{simd} gemm {m}x{n}x{k}")
            C0 = rng.standard_normal((m, n)).astype(dtype)
            out = C0.copy()
            c_kernels.gemm(A, B, out, trans_a, trans_b, 0.5, -2.0)
            expected = 0.5 * (a64 @ b64) - 2.0 * C0.astype(np.float64)
            bound = product_bound(dtype, k + 1, 0.5 * magnitude + 2.0 * np.abs(C0))
            assert_within(out, expected, bound, f"{simd} gemm {m}x{n}x{k}, alpha, beta")
    finally:
        c_kernels.set_small_gemm_flops(old)


def test_simd_gemm_propagates_nan_and_inf(c_kernels, simd, dtype):
    """A NaN or inf in A reaches exactly the rows of C it feeds, on every kernel set."""
    old = c_kernels.get_small_gemm_flops()
    c_kernels.set_small_gemm_flops(10**12)
    try:
        A = np.ones((20, 40), dtype)
        A[3, 7], A[11, 0] = np.nan, np.inf
        B = np.ones((40, 37), dtype)
        out = np.zeros((20, 37), dtype)
        c_kernels.gemm(A, B, out)
        assert np.isnan(out[3]).all() and np.isposinf(out[11]).all()
        rest = np.delete(out, [3, 11], axis=0)
        np.testing.assert_array_equal(rest, np.full_like(rest, 40))
    finally:
        c_kernels.set_small_gemm_flops(old)


def test_simd_levels_and_selection(c_kernels):
    levels = c_kernels.simd_levels()
    assert levels[:2] == ("scalar", "baseline") or levels == ("scalar",)
    assert c_kernels.simd_level() in levels
    with pytest.raises(ValueError, match="FASTMLP_SIMD: unknown kernel set 'sse9'"):
        c_kernels.select_simd("sse9")
    assert c_kernels.select_simd(None) == levels[-1]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_layers_on_every_simd_kernel_set(c_kernels, simd, dtype, rng, name):
    """dense_forward (bias and activation fused into the product's epilogue where they
    fit) and dense_backward on each kernel set, wide, narrow and one-row layers."""
    alpha = 0.1 if name in ("leaky_relu", "elu") else None
    with fastmlp.use_backend("c"):
        for rows, d_in, d_out in [(37, 2, 100), (33, 100, 3), (1, 17, 31), (64, 257, 15)]:
            X, W, b = _inputs(rng, dtype, rows, d_in, d_out)
            Z = np.empty((rows, d_out), dtype)
            A = ops.dense_forward(X, W, b, name, alpha=alpha, Z_out=Z)
            _check_forward(X, W, b, name, alpha, dtype, A)
            dA = rng.standard_normal(A.shape).astype(dtype)
            dX, dW, db = ops.dense_backward(dA, X, W, A, name, Z=Z, alpha=alpha, l2=0.01)
            _check_backward(dA, X, W, A, name, alpha, 0.01, 0.0, dtype, dX, dW, db, Z=Z)


def test_fused_relu_epilogue_keeps_nan(c_kernels, simd, dtype):
    """relu(NaN) is NaN in the fused epilogue too, and other rows are untouched."""
    with fastmlp.use_backend("c"):
        X = np.ones((9, 4), dtype)
        X[5, 2] = np.nan
        W = np.full((4, 20), -1.0, dtype)
        A = ops.dense_forward(X, W, np.zeros(20, dtype), "relu")
        assert np.isnan(A[5]).all()
        np.testing.assert_array_equal(np.delete(A, 5, axis=0), 0)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "swish", "mish"])
def test_dense_forward_keeps_the_preactivation(backend, dtype, rng, name):
    # Z_out = X W + b, what dense_backward reads for the activations that need it
    X, W, b = _inputs(rng, dtype, 6, 4, 3)
    Z = np.full((6, 3), np.nan, dtype)
    A = ops.dense_forward(X, W, b, name, Z_out=Z)
    _check_forward(X, W, b, "identity", None, dtype, Z)
    _check_forward(X, W, b, name, None, dtype, A)
    dA = rng.standard_normal((6, 3)).astype(dtype)
    dX, dW, db = ops.dense_backward(dA, X, W, A, name, Z=Z)
    _check_backward(dA, X, W, A, name, None, 0.0, 0.0, dtype, dX, dW, db, Z=Z)
    with pytest.raises(ValueError, match="pre-activation"):
        ops.dense_backward(dA, X, W, A, name)
