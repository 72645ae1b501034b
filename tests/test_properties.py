"""Property-based tests (hypothesis) of every public kernel, NetworkPlan and MLP.

What is drawn: the backend, the dtype, shapes with 0 and 1 in every dimension (and sizes
past the C backend's small-gemm threshold), memory layouts (C, Fortran, strided views,
negative strides, misaligned buffers), read-only flags, ``out=`` modes, hyper-parameters
at their edges, label sets and batch sizes. What is checked: the result against the
independent float64 reference of tests/helpers.py within a rounding bound (or a clean
TypeError/ValueError for what the README's input rules refuse), the inputs unchanged, the
NaN policy, saturation, and float32 training against float64.

Profiles (tests/_hypothesis_profiles.py): HYPOTHESIS_PROFILE=ci (default: derandomized,
30 examples per test) or long (2000 examples).
"""

from __future__ import annotations

import math

import _hypothesis_profiles  # noqa: F401  (registers and loads the profile)
import numpy as np
import pytest
from helpers import (
    RTOL,
    as_layout,
    assert_close,
    assert_unchanged,
    assert_within,
    product_bound,
    ref_activation,
    ref_dense_backward,
    ref_dense_forward,
    ref_log_softmax,
    ref_mse,
    ref_network_forward,
    ref_sigmoid_bce,
    ref_softmax,
    ref_softmax_cross_entropy,
    snapshot,
)
from hypothesis import assume, given, note
from hypothesis import strategies as st

import fastmlp
from fastmlp import ops

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - a test extra
    threadpool_limits = None

BACKENDS = tuple(fastmlp.available_backends())
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "softplus")
LOSSES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad",
              "adadelta", "adamax", "nadam")
# the networks draw every activation (the kernel tests above keep to the ones with bounds)
PLAN_ACTIVATIONS = tuple(fastmlp._registry.ACTIVATIONS)
LAYOUTS = ("C", "F", "strided", "reversed", "misaligned")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The properties are about numerics, not BLAS threading; a 2-thread OpenBLAS that
    # spins on a loaded 2-core CI machine runs these small products ~40x slower.
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def eps(dtype):
    return float(np.finfo(dtype).eps)


def tiny(dtype):
    return float(np.finfo(dtype).smallest_normal)


# -- strategies --------------------------------------------------------------------------

backends = st.sampled_from(BACKENDS)
dtypes = st.sampled_from(FLOATS)
# 0 and 1 often; now and then sizes whose products pass the small-gemm threshold (65536)
dims = st.integers(0, 3) | st.integers(4, 70)
layouts = st.sampled_from(LAYOUTS)


@st.composite
def shapes(draw, min_ndim=0, max_ndim=3, min_side=0):
    ndim = draw(st.integers(min_ndim, max_ndim))
    side = st.integers(min_side, 3) | st.integers(max(min_side, 4), 12)
    return tuple(draw(side) for _ in range(ndim))


@st.composite
def alpha_for(draw, name):
    """None (the default) or an alpha at the edges of its valid range."""
    if name == "leaky_relu":
        return draw(st.sampled_from([None, 0.0, 0.01, 0.3, 0.999]))
    if name == "elu":
        return draw(st.sampled_from([None, 1e-3, 0.5, 1.0, 3.0]))
    if name == "maxout":  # its pieces per unit
        return draw(st.sampled_from([None, 2, 3, 64]))
    return None


def values(draw, shape, kind=None, scale=1.0):
    """float64 values for an array: normal, small integers (ties, zeros) or mixed scales."""
    seed = draw(st.integers(0, 2**32 - 1))
    kind = kind or draw(st.sampled_from(("normal", "ints", "mixed")))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "ints":
        a = rng.integers(-3, 4, shape).astype(np.float64)
    elif kind == "unit":
        a = rng.uniform(0, 1, shape)
    else:
        a = rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 10.0], shape)
    return np.asarray(a * scale, dtype=np.float64)


def lay(a, layout, readonly=False):
    """`a`'s values in the given memory layout (see LAYOUTS); optionally read-only."""
    a = np.asarray(a)
    if a.ndim == 0 or a.size == 0:
        out = a.copy()
    elif layout == "reversed":
        flip = (slice(None, None, -1),) * a.ndim
        out = np.ascontiguousarray(a[flip])[flip]  # negative strides, same values
    elif layout == "misaligned":
        buf = np.zeros(a.nbytes + 1, np.uint8)
        out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned or a.dtype.itemsize == 1
    else:
        out = as_layout(a, layout, fill=None if a.dtype.kind == "f" else 0)
    np.testing.assert_array_equal(out, a)
    if readonly:
        out.flags.writeable = False
    return out


@st.composite
def arrays(draw, shape, dtype, kind=None, scale=1.0):
    """(array in a drawn layout, its exact values in float64)."""
    a = values(draw, shape, kind, scale).astype(dtype)
    layout = draw(layouts)
    readonly = draw(st.booleans())
    note(f"layout {layout}{' read-only' if readonly else ''} shape {shape} {np.dtype(dtype)}")
    return lay(a, layout, readonly), a.astype(np.float64)


def on_backend(name):
    return fastmlp.use_backend(name)


class gemm_path:
    """On the C backend, force its gemm onto BLAS (0), the small kernel (huge) or neither."""

    def __init__(self, backend, threshold):
        self.backend, self.threshold = backend, threshold

    def __enter__(self):
        if self.backend == "c" and self.threshold is not None:
            from fastmlp.backends import _c_kernels

            self.old = _c_kernels.get_small_gemm_flops()
            _c_kernels.set_small_gemm_flops(self.threshold)
        return self

    def __exit__(self, *exc):
        if self.backend == "c" and self.threshold is not None:
            from fastmlp.backends import _c_kernels

            _c_kernels.set_small_gemm_flops(self.old)


gemm_thresholds = st.sampled_from([None, 0, 10**12])


def derivative_magnitude(name, a, alpha):
    """A bound on the terms in f'(.) written from the saved output a (for rounding bounds)."""
    a = np.abs(a)
    return 1.0 + a + a * a + (alpha or 0.0)


def lipschitz(name, alpha):
    return max(1.0, alpha) if name == "elu" and alpha is not None else 1.0


def _alpha_kw(alpha):
    return {} if alpha is None else {"alpha": alpha}


# -- elementwise activations -------------------------------------------------------------


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       shape=shapes(), out_mode=st.sampled_from(["new", "out", "inplace"]))
def test_activation_forward(data, backend, dtype, name, shape, out_mode):
    alpha = data.draw(alpha_for(name))
    Z, z = data.draw(arrays(shape, dtype))
    if out_mode == "inplace":
        Z = np.array(Z, dtype=dtype, order="C")  # writable and C-contiguous to be the out
    out = {"new": None, "out": np.full(shape, np.nan, dtype), "inplace": Z}[out_mode]
    before = snapshot(Z)
    with on_backend(backend):
        A = ops.activation_forward(name, Z, out=out, **_alpha_kw(alpha))
    assert A.shape == tuple(shape) and A.dtype == dtype
    if out is not None:
        assert A is out
    if out_mode != "inplace":
        assert_unchanged([Z], before, ["Z"])
    expected = ref_activation(name, z, alpha)
    bound = 8 * eps(dtype) * np.abs(expected) + tiny(dtype)  # a few ulps
    assert_within(A, expected, bound, f"{name} alpha={alpha}")
    if name in ("identity", "relu"):
        np.testing.assert_array_equal(A, expected.astype(dtype))


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       shape=shapes(), out_mode=st.sampled_from(["new", "out", "inplace"]))
def test_activation_backward(data, backend, dtype, name, shape, out_mode):
    alpha = data.draw(alpha_for(name))
    # A is a genuine output f(z) of the activation (the derivative is written from it)
    z = values(data.draw, shape, scale=3.0)
    A = lay(ref_activation(name, z, alpha).astype(dtype), data.draw(layouts),
            data.draw(st.booleans()))
    dA, da = data.draw(arrays(shape, dtype))
    if out_mode == "inplace":
        dA = np.array(dA, dtype=dtype, order="C")
    out = {"new": None, "out": np.full(shape, np.nan, dtype), "inplace": dA}[out_mode]
    before = snapshot(dA, A)
    with on_backend(backend):
        dZ = ops.activation_backward(name, dA, A, out=out, **_alpha_kw(alpha))
    assert dZ.shape == tuple(shape) and dZ.dtype == dtype
    if out is not None:
        assert dZ is out
    assert_unchanged([A] if out_mode == "inplace" else [dA, A], before[1:] if
                     out_mode == "inplace" else before, ["A"] if out_mode == "inplace"
                     else ["dA", "A"])
    a = np.asarray(A, np.float64)
    alpha_value = {"leaky_relu": 0.01, "elu": 1.0}.get(name, 0.0) if alpha is None else alpha
    expected = da * {
        "identity": np.ones_like(a),
        "relu": (a > 0).astype(np.float64),
        "leaky_relu": np.where(a > 0, 1.0, alpha_value),
        "sigmoid": a * (1 - a),
        "tanh": 1 - a * a,
        "elu": np.where(a > 0, 1.0, a + alpha_value),
        "softplus": -np.expm1(-a),
    }[name]
    bound = 8 * eps(dtype) * np.abs(da) * derivative_magnitude(name, a, alpha_value) + tiny(dtype)
    assert_within(dZ, expected, bound, f"{name}' alpha={alpha}")


@given(data=st.data(), backend=backends, dtype=dtypes, n=dims, units=st.integers(0, 9),
       pieces=st.sampled_from([2, 3, 5, 64]), specials=st.booleans())
def test_maxout_is_an_exact_selection(data, backend, dtype, n, units, pieces, specials):
    """Maxout selects: its output is one of each unit's pieces bit for bit (the first
    maximum, or the first NaN), and its gradient is dA at that piece and 0 elsewhere, on
    any values (the "ints" kind draws ties), in any layout, the inputs untouched."""
    Z, z = data.draw(arrays((n, units * pieces), dtype))
    if specials and Z.size:
        Z = np.array(Z)  # a copy to plant NaN and infinities in
        where = data.draw(st.lists(st.integers(0, Z.size - 1), max_size=4))
        Z.reshape(-1)[where] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        z = Z.astype(np.float64)
    dA, da = data.draw(arrays((n, units), dtype))
    before = snapshot(Z, dA)
    with on_backend(backend):
        A = ops.maxout_forward(Z, pieces)
        dZ = ops.maxout_backward(dA, Z, pieces)
    assert_unchanged([Z, dA], before, ["Z", "dA"])
    zp = z.reshape(n, units, pieces)
    winner = np.argmax(zp, axis=2)  # NumPy's rule: the first NaN, else the first maximum
    np.testing.assert_array_equal(A, np.take_along_axis(zp, winner[:, :, None], 2)[:, :, 0])
    expected = np.zeros((n, units, pieces))
    np.put_along_axis(expected, winner[:, :, None], da[:, :, None], 2)
    np.testing.assert_array_equal(dZ, expected.reshape(n, units * pieces))


# -- dense layers -------------------------------------------------------------------------


def _forward_bound(dtype, x, w, b, name, alpha, expected):
    magnitude = np.abs(x) @ np.abs(w) + np.abs(b)
    return lipschitz(name, alpha) * product_bound(dtype, x.shape[1], magnitude) \
        + 8 * eps(dtype) * np.abs(expected)


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       n=dims, n_in=dims, n_out=dims, row_bias=st.booleans(), use_out=st.booleans(),
       threshold=gemm_thresholds)
def test_dense_forward(data, backend, dtype, name, n, n_in, n_out, row_bias, use_out,
                       threshold):
    alpha = data.draw(alpha_for(name))
    X, x = data.draw(arrays((n, n_in), dtype))
    W, w = data.draw(arrays((n_in, n_out), dtype))
    b, bv = data.draw(arrays((1, n_out) if row_bias else (n_out,), dtype))
    out = np.full((n, n_out), np.nan, dtype) if use_out else None
    before = snapshot(X, W, b)
    with on_backend(backend), gemm_path(backend, threshold):
        A = ops.dense_forward(X, W, b, name, out=out, **_alpha_kw(alpha))
    assert A.shape == (n, n_out) and A.dtype == dtype
    assert out is None or A is out
    assert_unchanged([X, W, b], before, ["X", "W", "b"])
    bv = bv.reshape(-1)
    expected = ref_dense_forward(x, w, bv, name, alpha)
    assert_within(A, expected, _forward_bound(dtype, x, w, bv, name, alpha, expected),
                  f"dense_forward {name}")


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       n=dims, n_in=dims, n_out=dims, need_dX=st.booleans(),
       l2=st.sampled_from([0.0, 1e-4, 0.5, 10.0]), l1=st.sampled_from([0.0, 1e-3, 2.0]),
       threshold=gemm_thresholds)
def test_dense_backward(data, backend, dtype, name, n, n_in, n_out, need_dX, l2, l1,
                        threshold):
    alpha = data.draw(alpha_for(name))
    X, x = data.draw(arrays((n, n_in), dtype))
    W, w = data.draw(arrays((n_in, n_out), dtype))
    z = values(data.draw, (n, n_out), scale=2.0)
    A = lay(ref_activation(name, z, alpha).astype(dtype), data.draw(layouts),
            data.draw(st.booleans()))
    a = np.asarray(A, np.float64)
    dA, da = data.draw(arrays((n, n_out), dtype))
    before = snapshot(dA, X, W, A)
    with on_backend(backend), gemm_path(backend, threshold):
        dX, dW, db = ops.dense_backward(dA, X, W, A, name, l2=l2, l1=l1, need_dX=need_dX,
                                        **_alpha_kw(alpha))
    assert_unchanged([dA, X, W, A], before, ["dA", "X", "W", "A"])
    e_dX, e_dW, e_db, _ = ref_dense_backward(da, x, w, a, name, alpha, l2, l1)
    alpha_value = {"leaky_relu": 0.01, "elu": 1.0}.get(name, 0.0) if alpha is None else alpha
    # dZ = dA * f'(A) is rounded before the products: bound it by its terms' magnitudes
    mag = np.abs(da) * derivative_magnitude(name, a, alpha_value)
    assert dW.shape == (n_in, n_out) and dW.dtype == dtype
    assert db.shape == (n_out,) and db.dtype == dtype
    assert_within(dW, e_dW, product_bound(dtype, n + 4, np.abs(x).T @ mag + l2 * np.abs(w) + l1),
                  "dW")
    assert_within(db, e_db, product_bound(dtype, n + 4, mag.sum(axis=0)), "db")
    if need_dX:
        assert dX.shape == (n, n_in) and dX.dtype == dtype
        assert_within(dX, e_dX, product_bound(dtype, n_out + 4, mag @ np.abs(w).T), "dX")
    else:
        assert dX is None


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 6),
       k=st.integers(1, 6), which=st.sampled_from(["X", "W", "b"]), shift=st.integers(0, 35))
def test_dense_forward_refuses_an_out_that_overlaps_an_input(data, backend, dtype, n, k,
                                                             which, shift):
    # out may not share memory with X, W or b, the product reads them while writing out:
    # out lies in one buffer with the input, at an offset that makes them overlap
    if which == "b":
        n = 1
    n_in = n if which == "W" else k
    shape = {"X": (n, n_in), "W": (n_in, k), "b": (k,)}[which]
    size = n * k
    shift = shift % size
    buf = np.zeros(size + shift, dtype)
    inputs = {"X": values(data.draw, (n, n_in)).astype(dtype),
              "W": values(data.draw, (n_in, k)).astype(dtype),
              "b": values(data.draw, (k,)).astype(dtype)}
    buf[:size] = inputs[which].reshape(-1)
    inputs[which] = buf[:size].reshape(shape)
    out = buf[shift:shift + size].reshape(n, k)
    before = snapshot(*inputs.values())
    with on_backend(backend), pytest.raises(ValueError, match="overlap"):
        ops.dense_forward(inputs["X"], inputs["W"], inputs["b"], "relu", out=out)
    assert_unchanged(list(inputs.values()), before, list(inputs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_misaligned_buffers_are_copied_or_refused(backend):
    # an array at an odd address (np.frombuffer at an offset): C may only load aligned
    # elements (UBSan reports it), so inputs are copied and in-place arguments refused
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), np.zeros(3)
    Xm, Wm, bm = (lay(a, "misaligned") for a in (X, W, b))
    assert not (Xm.flags.aligned or Wm.flags.aligned or bm.flags.aligned)
    y = lay(np.array([0, 1, 2, 1, 0]), "misaligned")
    with on_backend(backend):
        np.testing.assert_array_equal(ops.dense_forward(Xm, Wm, bm, "tanh"),
                                      ops.dense_forward(X, W, b, "tanh"))
        loss, grad = ops.softmax_cross_entropy(X[:, :3], y)
        expected_loss, expected_grad = ops.softmax_cross_entropy(X[:, :3], y.copy())
        assert loss == expected_loss
        np.testing.assert_array_equal(grad, expected_grad)
        for call in (lambda: ops.activation_forward("relu", X, out=lay(X, "misaligned")),
                     lambda: ops.sgd_update(lay(X, "misaligned"), X, 0.1),
                     lambda: ops.adam_update(X.copy(), X, lay(X, "misaligned"), X * 0, 1)):
            with pytest.raises(ValueError, match="aligned"):
                call()
        plan = fastmlp.NetworkPlan([4, 3], batch_size=5, seed=0)
        twin = fastmlp.NetworkPlan([4, 3], batch_size=5, seed=0)
        assert plan.train_step(Xm, y) == twin.train_step(X, y.copy())
        np.testing.assert_array_equal(plan.forward(Xm), twin.forward(X))


# -- softmax and the losses ---------------------------------------------------------------


@given(data=st.data(), backend=backends, dtype=dtypes, n=dims, k=dims,
       log=st.booleans(), use_out=st.booleans())
def test_softmax_and_log_softmax(data, backend, dtype, n, k, log, use_out):
    Z, z = data.draw(arrays((n, k), dtype))
    kernel = ops.log_softmax if log else ops.softmax
    out = np.full((n, k), np.nan, dtype) if use_out else None
    before = snapshot(Z)
    with on_backend(backend):
        if n == 0 or k == 0:
            with pytest.raises(ValueError, match="at least one row and one column"):
                kernel(Z, out=out)
            return
        P = kernel(Z, out=out)
    assert P.shape == (n, k) and P.dtype == dtype and (out is None or P is out)
    assert_unchanged([Z], before, ["Z"])
    spread = np.abs(z - z.max(axis=1, keepdims=True))  # exp's argument, rounded in dtype
    if log:
        expected = ref_log_softmax(z)
        bound = 8 * eps(dtype) * (1 + spread + np.log(k) + np.abs(expected))
    else:
        expected = ref_softmax(z)
        bound = 8 * eps(dtype) * (1 + spread + k) * expected + tiny(dtype)
        assert np.all(P >= 0) and np.all(P <= 1)
    assert_within(P, expected, bound, "log_softmax" if log else "softmax")


label_dtypes = st.sampled_from([np.int8, np.uint8, np.int32, np.int64, np.uint64])


@given(data=st.data(), backend=backends, dtype=dtypes, n=dims, k=dims,
       weighted=st.booleans(), out_mode=st.sampled_from(["new", "out", "inplace"]),
       label_dtype=label_dtypes)
def test_softmax_cross_entropy(data, backend, dtype, n, k, weighted, out_mode, label_dtype):
    assume(k <= np.iinfo(label_dtype).max)
    Z, z = data.draw(arrays((n, k), dtype))
    if out_mode == "inplace":
        Z = np.array(Z, dtype=dtype, order="C")  # the gradient overwrites the logits
    labels = values(data.draw, (n,), kind="unit")
    label_set = data.draw(st.sampled_from(["random", "one", "max"]))
    y = {"random": (labels * k).astype(np.int64).clip(0, max(k - 1, 0)),
         "one": np.zeros(n, np.int64), "max": np.full(n, max(k - 1, 0))}[label_set]
    y = lay(y.astype(label_dtype), data.draw(st.sampled_from(["C", "strided", "reversed",
                                                              "misaligned"])))
    w = None
    if weighted:
        w = values(data.draw, (n,), kind="unit") * data.draw(st.sampled_from([1e-3, 1.0, 50.0]))
        w[values(data.draw, (n,), kind="unit") < 0.3] = 0.0  # some rows weigh nothing
        if n:
            w[data.draw(st.integers(0, n - 1))] = 1.0  # a positive sum
        w = w.astype(dtype)
    out = {"new": None, "out": np.full((n, k), np.nan, dtype), "inplace": Z}[out_mode]
    before = snapshot(y, w) if out_mode == "inplace" else snapshot(Z, y, w)
    with on_backend(backend):
        if n == 0 or k == 0:
            with pytest.raises(ValueError):
                ops.softmax_cross_entropy(Z, y, sample_weight=w, out=out)
            return
        loss, grad = ops.softmax_cross_entropy(Z, y, sample_weight=w, out=out)
    assert isinstance(loss, float)
    assert grad.shape == (n, k) and grad.dtype == dtype and (out is None or grad is out)
    if out_mode == "inplace":
        assert_unchanged([y, w], before, ["y", "sample_weight"])
    else:
        assert_unchanged([Z, y, w], before, ["Z", "y", "sample_weight"])
    w64 = np.ones(n) if w is None else w.astype(np.float64)
    y64 = np.asarray(y).astype(np.int64)
    e_loss, e_grad = ref_softmax_cross_entropy(z, y64, w64)
    spread = np.abs(z - z.max(axis=1, keepdims=True))
    scale = (w64 / w64.sum())[:, None]
    row_scale = np.max(np.abs(z), axis=1) + np.log(k) + 1
    # each row's loss is rounded in dtype, the sum over rows accumulates in float64
    assert_within(loss, e_loss, (16 * eps(dtype) + (n + 4) * eps(np.float64))
                  * np.sum(scale[:, 0] * row_scale) + 1e-300, "loss")
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y64] = 1
    bound = scale * 8 * eps(dtype) * ((1 + spread + k) * ref_softmax(z) + onehot) + tiny(dtype)
    assert_within(grad, e_grad, bound, "dlogits")


@given(data=st.data(), backend=backends, dtype=dtypes, n=dims, k=dims,
       flat_targets=st.booleans(), hard=st.booleans(), use_out=st.booleans())
def test_sigmoid_binary_cross_entropy(data, backend, dtype, n, k, flat_targets, hard,
                                      use_out):
    Z, z = data.draw(arrays((n, k), dtype, scale=3.0))
    t = values(data.draw, (n, k), kind="unit")
    t = np.round(t) if hard else t
    if flat_targets and k == 1:
        t = t.reshape(n)
    T = lay(t.astype(dtype), data.draw(layouts), data.draw(st.booleans()))
    t = t.astype(dtype).astype(np.float64)
    out = np.full((n, k), np.nan, dtype) if use_out else None
    before = snapshot(Z, T)
    with on_backend(backend):
        if n == 0 or k == 0:
            with pytest.raises(ValueError):
                ops.sigmoid_binary_cross_entropy(Z, T, out=out)
            return
        loss, grad = ops.sigmoid_binary_cross_entropy(Z, T, out=out)
    assert grad.shape == (n, k) and grad.dtype == dtype and (out is None or grad is out)
    assert_unchanged([Z, T], before, ["logits", "targets"])
    e_loss, e_grad = ref_sigmoid_bce(z, t)
    terms = np.abs(z) * (1 + np.abs(t.reshape(n, k))) + 1
    assert_within(loss, e_loss, (8 * eps(dtype) + (n * k + 4) * eps(np.float64))
                  * terms.sum() / n + 1e-300, "loss")
    assert_within(grad, e_grad, 8 * eps(dtype) * (1 + np.abs(t.reshape(n, k))) / n
                  + tiny(dtype), "dlogits")


@given(data=st.data(), backend=backends, dtype=dtypes, n=dims, k=dims,
       flat_targets=st.booleans(), use_out=st.booleans())
def test_mean_squared_error(data, backend, dtype, n, k, flat_targets, use_out):
    P, p = data.draw(arrays((n, k), dtype))
    T, t = data.draw(arrays((n,) if flat_targets and k == 1 else (n, k), dtype))
    out = np.full((n, k), np.nan, dtype) if use_out else None
    before = snapshot(P, T)
    with on_backend(backend):
        if n == 0 or k == 0:
            with pytest.raises(ValueError):
                ops.mean_squared_error(P, T, out=out)
            return
        loss, grad = ops.mean_squared_error(P, T, out=out)
    assert grad.shape == (n, k) and grad.dtype == dtype and (out is None or grad is out)
    assert_unchanged([P, T], before, ["predictions", "targets"])
    e_loss, e_grad = ref_mse(p, t)
    mag = np.abs(p) + np.abs(t.reshape(n, k))
    assert_within(loss, e_loss, (8 * eps(dtype) + (n * k + 4) * eps(np.float64))
                  * np.sum(mag * mag) / n + 1e-300, "loss")
    assert_within(grad, e_grad, 4 * eps(dtype) * mag / n + tiny(dtype), "dpredictions")


# -- optimizer updates --------------------------------------------------------------------

learning_rates = st.sampled_from([0.0, 1e-6, 1e-3, 0.1, 1.0, 100.0])


@st.composite
def params(draw, dtype):
    shape = draw(shapes())
    p = values(draw, shape).astype(dtype)
    g, g64 = draw(arrays(shape, dtype))
    return shape, p, g, g64


def _check_update(param, expected, magnitude, dtype, what):
    assert_within(param, expected, 8 * eps(dtype) * magnitude + tiny(dtype), what)


@given(data=st.data(), backend=backends, dtype=dtypes, lr=learning_rates)
def test_sgd_update(data, backend, dtype, lr):
    shape, param, grad, g = data.draw(params(dtype))
    p = param.astype(np.float64)
    before = snapshot(grad)
    with on_backend(backend):
        result = ops.sgd_update(param, grad, lr)
    assert result is param and param.dtype == dtype and param.shape == shape
    assert_unchanged([grad], before, ["grad"])
    _check_update(param, p - lr * g, np.abs(p) + lr * np.abs(g), dtype, "param")
    if lr == 0:
        np.testing.assert_array_equal(param, p.astype(dtype))


@given(data=st.data(), backend=backends, dtype=dtypes, lr=learning_rates,
       momentum=st.sampled_from([0.0, 0.5, 0.9, 0.999999]), nesterov=st.booleans())
def test_momentum_update(data, backend, dtype, lr, momentum, nesterov):
    shape, param, grad, g = data.draw(params(dtype))
    velocity = values(data.draw, shape).astype(dtype)
    p, v = param.astype(np.float64), velocity.astype(np.float64)
    before = snapshot(grad)
    with on_backend(backend):
        result = ops.momentum_update(param, grad, velocity, lr, momentum, nesterov=nesterov)
    assert result is param and velocity.shape == shape
    assert_unchanged([grad], before, ["grad"])
    v_new = momentum * v - lr * g
    p_new = p + (momentum * v_new - lr * g if nesterov else v_new)
    v_mag = momentum * np.abs(v) + lr * np.abs(g)
    _check_update(velocity, v_new, v_mag, dtype, "velocity")
    _check_update(param, p_new, np.abs(p) + 2 * v_mag + lr * np.abs(g), dtype, "param")


@given(data=st.data(), backend=backends, dtype=dtypes, lr=learning_rates,
       beta1=st.sampled_from([0.0, 0.5, 0.9, 0.999999]),
       beta2=st.sampled_from([0.0, 0.9, 0.999, 0.99999999]),
       adam_eps=st.sampled_from([1e-12, 1e-8, 1.0]),
       weight_decay=st.sampled_from([0.0, 1e-2, 3.0]),
       step=st.sampled_from([1, 2, 10, 10**9]), state_scale=st.sampled_from([0.0, 1e-3, 1.0]))
def test_adam_update(data, backend, dtype, lr, beta1, beta2, adam_eps, weight_decay, step,
                     state_scale):
    shape, param, grad, g = data.draw(params(dtype))
    m = np.asarray(values(data.draw, shape) * state_scale, dtype=dtype)
    v = np.asarray(np.abs(values(data.draw, shape)) * state_scale**2, dtype=dtype)
    p, m64, v64 = (a.astype(np.float64) for a in (param, m, v))
    before = snapshot(grad)
    with on_backend(backend):
        result = ops.adam_update(param, grad, m, v, step, lr, beta1, beta2, adam_eps,
                                 weight_decay=weight_decay)
    assert result is param
    assert_unchanged([grad], before, ["grad"])
    m_new = beta1 * m64 + (1 - beta1) * g
    v_new = beta2 * v64 + (1 - beta2) * g * g
    _check_update(m, m_new, beta1 * np.abs(m64) + np.abs(g), dtype, "m")
    _check_update(v, v_new, beta2 * v64 + g * g, dtype, "v")
    shrink = 1 - lr * weight_decay if weight_decay else 1.0
    m_hat = m_new / (1 - beta1**step)
    v_hat = v_new / (1 - beta2**step)
    # m's two terms may cancel: its rounding error scales with the terms, not with m
    m_terms = (beta1 * np.abs(m64) + (1 - beta1) * np.abs(g)) / (1 - beta1**step)
    step_size = lr * m_terms / (np.sqrt(v_hat) + adam_eps)
    expected = p * shrink - lr * m_hat / (np.sqrt(v_hat) + adam_eps)
    # shrink = 1 - lr wd is computed in float64 (maybe fused: one rounding fewer) and then
    # rounded to dtype: at lr wd ~ 1 it is ~0, with an error of |p| eps64 lr wd
    magnitude = 2 * np.abs(p * shrink) + 4 * step_size
    magnitude = magnitude + np.abs(p) * lr * weight_decay * 4 * eps(np.float64) / eps(dtype)
    _check_update(param, expected, magnitude, dtype, "param")
    if lr == 0:
        np.testing.assert_array_equal(param, p.astype(dtype))


# -- anything else: a clean TypeError or ValueError, never a crash or a silent cast ---------

# Arguments that are not a float32/float64 array of the right shape. Each is either refused
# with TypeError/ValueError, or (lists of floats, float64 scalars) converted as documented.
JUNK = (
    None, "abc", 1.5, 3, True, [1.0, 2.0], [[1, 2]], [[1.0], [2.0, 3.0]], b"\x00",
    object(), {"a": 1}, 1j,
)
JUNK_DTYPES = (np.float16, np.int64, np.int32, np.uint8, np.bool_, np.complex128, object,
               np.longdouble, "U3", "M8[s]")


@st.composite
def junk_array(draw, shape):
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.sampled_from(JUNK))
    if choice == 1:  # the right shape, a wrong dtype
        dtype = np.dtype(draw(st.sampled_from(JUNK_DTYPES)))
        try:
            return np.empty(shape, object) if dtype.kind == "O" else np.zeros(shape, dtype)
        except TypeError:  # pragma: no cover
            return np.zeros(shape, np.int64)
    if choice == 2:  # a float array of the wrong rank
        ndim = draw(st.integers(0, 3))
        return np.ones(draw(shapes(min_ndim=ndim, max_ndim=ndim)),
                       draw(st.sampled_from(FLOATS)))
    if choice == 3:  # the wrong size in one dimension
        bad = list(shape) or [1]
        i = draw(st.integers(0, len(bad) - 1))
        bad[i] += draw(st.sampled_from([1, 2, 7]))
        return np.ones(bad, draw(st.sampled_from(FLOATS)))
    return np.ones(shape, draw(st.sampled_from(FLOATS)))  # maybe fine, maybe a dtype mix


junk_scalars = st.sampled_from([
    None, "0.1", float("nan"), float("inf"), -float("inf"), -1.0, -1e-300, 0.0, 1.0, 2.0,
    True, np.float32(0.5), np.nan, 1e308, [0.1], 1j, 0, 10**20, 10**400,
])


def _kernel_call(name, draw):
    """A random call of kernel `name`: each argument right, or wrong in one random way."""
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(FLOATS))

    def good(shape):
        return values(draw, shape, kind="normal").astype(dtype)

    def arg(shape):
        return draw(junk_array(shape)) if draw(st.integers(0, 3)) == 0 else good(shape)

    def scalar(value):
        return draw(junk_scalars) if draw(st.integers(0, 4)) == 0 else value

    act = draw(st.sampled_from(ACTIVATIONS + ("softmax", "", "RELU", None, 3)))
    labels = draw(st.sampled_from(["good", "negative", "high", "float", "2d", "short",
                                   "huge", "bool", "list"]))
    y = {"good": np.zeros(n, np.int64), "negative": np.full(n, -1), "high": np.full(n, k),
         "float": np.zeros(n), "2d": np.zeros((n, 1), np.int64),
         "short": np.zeros(n + 1, np.int64), "huge": np.full(n, 2**63, np.uint64),
         "bool": np.zeros(n, bool), "list": [0] * n}[labels]
    if name == "activation_forward":
        return lambda: ops.activation_forward(act, arg((n, k)), alpha=scalar(None),
                                              out=arg((n, k)) if draw(st.booleans()) else None)
    if name == "activation_backward":
        return lambda: ops.activation_backward(act, arg((n, k)), arg((n, k)),
                                               alpha=scalar(None))
    if name == "dense_forward":
        return lambda: ops.dense_forward(arg((n, k)), arg((k, m)), arg((m,)), act,
                                         alpha=scalar(None),
                                         out=arg((n, m)) if draw(st.booleans()) else None)
    if name == "dense_backward":
        return lambda: ops.dense_backward(arg((n, m)), arg((n, k)), arg((k, m)), arg((n, m)),
                                          act, l2=scalar(0.0), l1=scalar(0.0),
                                          alpha=scalar(None))
    if name in ("softmax", "log_softmax"):
        return lambda: getattr(ops, name)(arg((n, k)),
                                          out=arg((n, k)) if draw(st.booleans()) else None)
    if name == "softmax_cross_entropy":
        w = arg((n,)) if draw(st.booleans()) else None
        return lambda: ops.softmax_cross_entropy(arg((n, k)), y, sample_weight=w)
    if name in ("multiclass_hinge", "squared_multiclass_hinge"):
        w = arg((n,)) if draw(st.booleans()) else None
        return lambda: getattr(ops, name)(arg((n, k)), y, margin=scalar(1.0), sample_weight=w,
                                          out=arg((n, k)) if draw(st.booleans()) else None)
    if name in ("categorical_cross_entropy", "kl_divergence", "log_cosh"):
        w = arg((n,)) if draw(st.booleans()) else None
        return lambda: getattr(ops, name)(arg((n, k)), arg((n, k)), sample_weight=w,
                                          out=arg((n, k)) if draw(st.booleans()) else None)
    if name in ("sigmoid_binary_cross_entropy", "mean_squared_error", "poisson",
                "absolute_error", "huber"):
        return lambda: getattr(ops, name)(arg((n, k)), arg((n, k)),
                                          out=arg((n, k)) if draw(st.booleans()) else None)
    if name == "sgd_update":
        return lambda: ops.sgd_update(arg((n, k)), arg((n, k)), scalar(0.1))
    if name == "momentum_update":
        return lambda: ops.momentum_update(arg((n, k)), arg((n, k)), arg((n, k)), scalar(0.1),
                                           scalar(0.9))
    if name == "adam_update":
        return lambda: ops.adam_update(arg((n, k)), arg((n, k)), arg((n, k)), arg((n, k)),
                                       scalar(1), scalar(1e-3), scalar(0.9), scalar(0.999),
                                       scalar(1e-8), weight_decay=scalar(0.0))
    clip = {"clip_value": scalar(None), "grad_scale": scalar(1.0)}
    if name in ("rmsprop_update", "adagrad_update"):
        return lambda: getattr(ops, name)(arg((n, k)), arg((n, k)), arg((n, k)), scalar(0.1),
                                          **clip)
    if name == "adadelta_update":
        return lambda: ops.adadelta_update(arg((n, k)), arg((n, k)), arg((n, k)), arg((n, k)),
                                           scalar(1.0), scalar(0.95), scalar(1e-6), **clip)
    if name in ("adamax_update", "nadam_update"):
        return lambda: getattr(ops, name)(arg((n, k)), arg((n, k)), arg((n, k)), arg((n, k)),
                                          scalar(1), scalar(1e-3), scalar(0.9), scalar(0.999),
                                          scalar(1e-8), **clip)
    if name == "global_norm_scale":
        return lambda: ops.global_norm_scale([arg((n, k)), arg((m,))], scalar(1.0),
                                             clip_value=scalar(None))
    raise AssertionError(name)


@given(data=st.data(), backend=backends, name=st.sampled_from(ops.__all__))
def test_any_arguments_give_a_result_or_a_clean_error(data, backend, name):
    call = _kernel_call(name, data.draw)
    with on_backend(backend), np.errstate(all="ignore"):
        try:
            result = call()
        except (TypeError, ValueError) as exc:
            assert str(exc), "an error without a message"
            return
    # accepted: then every array that came back is float32/float64
    results = result if isinstance(result, tuple) else (result,)
    for r in results:
        assert r is None or isinstance(r, float) or (
            isinstance(r, np.ndarray) and r.dtype in FLOATS), r


@given(data=st.data(), backend=backends, dtype=dtypes, shape=shapes(min_ndim=1, min_side=1),
       problem=st.sampled_from(["dtype", "shape", "strided", "readonly", "list", "fortran",
                                "misaligned"]),
       kernel=st.sampled_from(["activation_forward", "softmax", "sigmoid_binary_cross_entropy",
                               "mean_squared_error", "sgd_update", "momentum_update",
                               "adam_update"]))
def test_out_and_in_place_arguments_must_be_exact(data, backend, dtype, shape, problem,
                                                  kernel):
    # out= and the arrays updated in place cannot be copied: a wrong one is refused, and
    # nothing at all is written (to it or to the other arguments)
    if kernel in ("softmax", "sigmoid_binary_cross_entropy", "mean_squared_error"):
        shape = shape[:2] if len(shape) >= 2 else (1,) + shape
    assume(problem != "fortran" or (len(shape) >= 2 and shape[0] > 1 and shape[1] > 1))
    good = values(data.draw, shape).astype(dtype)
    if problem == "dtype":
        bad = np.zeros(shape, np.float32 if dtype == np.float64 else np.float64)
    elif problem == "shape":
        bad = np.zeros(shape[:-1] + (shape[-1] + 1,), dtype)
    elif problem == "strided":
        bad = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
        assume(not bad.flags.c_contiguous)
    elif problem == "readonly":
        bad = np.zeros(shape, dtype)
        bad.flags.writeable = False
    elif problem == "fortran":
        bad = np.zeros(shape, dtype, order="F")
    elif problem == "misaligned":  # C-contiguous, writeable, but at an odd address
        bad = lay(np.zeros(shape, dtype), "misaligned")
    else:
        bad = np.zeros(shape, dtype).tolist()
    other = values(data.draw, shape).astype(dtype)
    before = snapshot(good, other) + [(np.array(bad, copy=True), None)]
    with on_backend(backend), pytest.raises((TypeError, ValueError)) as info:
        if kernel == "activation_forward":
            ops.activation_forward("tanh", good, out=bad)
        elif kernel == "softmax":
            ops.softmax(good, out=bad)
        elif kernel in ("sigmoid_binary_cross_entropy", "mean_squared_error"):
            getattr(ops, kernel)(good, other, out=bad)
        elif kernel == "sgd_update":
            ops.sgd_update(bad, good, 0.1)
        elif kernel == "momentum_update":
            which = data.draw(st.sampled_from(["param", "velocity"]))
            p, v = (bad, other) if which == "param" else (other, bad)
            ops.momentum_update(p, good, v, 0.1)
        else:
            which = data.draw(st.sampled_from(["param", "m", "v"]))
            arrays_ = {"param": other, "m": np.zeros(shape, dtype), "v": np.zeros(shape, dtype)}
            arrays_[which] = bad
            ops.adam_update(arrays_["param"], good, arrays_["m"], arrays_["v"], 1)
    assert isinstance(info.value, TypeError) == (problem in ("dtype", "list")), info.value
    assert_unchanged([good, other], before[:2], ["input", "other"])
    np.testing.assert_array_equal(np.asarray(bad), before[2][0])


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 6), k=st.integers(1, 5),
       bad=st.sampled_from(["negative", "too-high", "float", "2d", "length", "bool"]))
def test_labels_out_of_range_or_of_the_wrong_kind_are_refused(data, backend, dtype, n, k, bad):
    Z = values(data.draw, (n, k)).astype(dtype)
    y = (values(data.draw, (n,), kind="unit") * k).astype(np.int64).clip(0, k - 1)
    i = data.draw(st.integers(0, n - 1))
    if bad == "negative":
        y[i] = -data.draw(st.sampled_from([1, 2, 2**40]))
    elif bad == "too-high":
        y[i] = k + data.draw(st.sampled_from([0, 1, 2**40]))
    elif bad == "float":
        y = y.astype(np.float64)
    elif bad == "2d":
        y = y.reshape(n, 1)
    elif bad == "length":
        y = np.append(y, 0)
    else:
        y = y.astype(bool)
    before = snapshot(Z, y)
    expected = TypeError if bad in ("float", "bool") else ValueError
    with on_backend(backend), pytest.raises(expected) as info:
        ops.softmax_cross_entropy(Z, y)
    assert "y" in str(info.value)
    if bad in ("negative", "too-high"):
        assert str(int(y[i])) in str(info.value), "the message names the bad label"
    assert_unchanged([Z, y], before, ["logits", "y"])


# -- NaN policy: a NaN input gives NaN in every output that depends on it -----------------
#
# README: the kernels do not search for NaN/inf, they propagate them "and never turn them
# into plausible numbers". Inputs are drawn without exact zeros (a product with 0 is the
# only place where dependence is a matter of convention), one entry is poisoned, and
# every output that depends on it must be NaN while the others stay finite.


def _nonzero(draw, shape, dtype, scale=1.0):
    a = values(draw, shape, kind="normal", scale=scale)
    a[a == 0] = 0.5
    a[np.abs(a) < 1e-3] = 1e-3
    return a.astype(dtype)


def _poison(draw, a):
    index = tuple(draw(st.integers(0, s - 1)) for s in a.shape)
    a[index] = np.nan
    return index


def _assert_nan_exactly(actual, mask, what, either=None):
    """NaN where `mask`, finite elsewhere (except where `either`: a matter of convention)."""
    actual = np.asarray(actual)
    assert np.all(np.isnan(actual[mask])), f"{what}: a NaN input gave {actual[mask]}"
    finite = ~mask if either is None else ~mask & ~either
    assert np.all(np.isfinite(actual[finite])), f"{what}: NaN leaked where it is not used"


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       n=st.integers(1, 5), k=st.integers(1, 5), which=st.sampled_from(["Z", "dA", "A"]))
def test_nan_propagates_through_activations(data, backend, dtype, name, n, k, which):
    alpha = data.draw(alpha_for(name))
    z = _nonzero(data.draw, (n, k), dtype, scale=2.0)
    A = ref_activation(name, z, alpha).astype(dtype)
    dA = _nonzero(data.draw, (n, k), dtype)
    poisoned = {"Z": z, "dA": dA, "A": A}[which]
    index = _poison(data.draw, poisoned)
    mask = np.zeros((n, k), bool)
    mask[index] = True
    with on_backend(backend), np.errstate(invalid="ignore"):
        if which == "Z":
            _assert_nan_exactly(ops.activation_forward(name, z, **_alpha_kw(alpha)), mask, name)
            return
        dZ = ops.activation_backward(name, dA, A, **_alpha_kw(alpha))
    if which == "dA" and name == "relu" and A[index] <= 0:
        mask[index] = False  # a closed relu gate passes no gradient: dh[h <= 0] = 0
    if which == "A" and name == "identity":
        mask[index] = False  # the identity's derivative does not read A
    _assert_nan_exactly(dZ, mask, f"{name}' with NaN in {which}")


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_the_saved_output_of_a_relu_gives_a_nan_gradient(backend, name):
    A = np.array([[np.nan, 1.0, 0.0]])
    with on_backend(backend):
        dZ = ops.activation_backward(name, np.ones_like(A), A)
    assert np.isnan(dZ[0, 0]), f"{name}'(NaN) * 1 gave {dZ[0, 0]}"


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       n=st.integers(1, 5), n_in=st.integers(1, 5), n_out=st.integers(1, 5),
       which=st.sampled_from(["X", "W", "b"]), threshold=gemm_thresholds)
def test_nan_propagates_through_dense_forward(data, backend, dtype, name, n, n_in, n_out,
                                              which, threshold):
    X = _nonzero(data.draw, (n, n_in), dtype)
    W = _nonzero(data.draw, (n_in, n_out), dtype)
    b = _nonzero(data.draw, (n_out,), dtype)
    index = _poison(data.draw, {"X": X, "W": W, "b": b}[which])
    mask = np.zeros((n, n_out), bool)
    if which == "X":
        mask[index[0], :] = True  # the whole row of the product
    else:
        mask[:, index[-1]] = True  # the whole column
    with on_backend(backend), gemm_path(backend, threshold), np.errstate(invalid="ignore"):
        A = ops.dense_forward(X, W, b, name)
    _assert_nan_exactly(A, mask, f"dense_forward {name} with NaN in {which}")


@given(data=st.data(), backend=backends, dtype=dtypes,
       name=st.sampled_from(("identity", "leaky_relu", "sigmoid", "tanh", "elu", "softplus")),
       n=st.integers(1, 5), n_in=st.integers(1, 5), n_out=st.integers(1, 5),
       which=st.sampled_from(["dA", "X", "W", "A"]),
       penalty=st.sampled_from([(0.0, 0.0), (0.1, 0.0), (0.0, 0.1), (0.1, 0.1)]),
       threshold=gemm_thresholds)
def test_nan_propagates_through_dense_backward(data, backend, dtype, name, n, n_in, n_out,
                                               which, penalty, threshold):
    # (relu is left out: its closed gates pass nothing by design)
    l2, l1 = penalty
    X = _nonzero(data.draw, (n, n_in), dtype)
    W = _nonzero(data.draw, (n_in, n_out), dtype)
    A = ref_activation(name, _nonzero(data.draw, (n, n_out), np.float64, 2.0)).astype(dtype)
    A[A == 0] = 0.5
    A[np.abs(1 - np.abs(A)) < 1e-3] = 0.5  # no zero derivative (sigmoid a(1-a), tanh 1-a^2)
    dA = _nonzero(data.draw, (n, n_out), dtype)
    index = _poison(data.draw, {"dA": dA, "X": X, "W": W, "A": A}[which])
    nan_dX = np.zeros((n, n_in), bool)
    nan_dW = np.zeros((n_in, n_out), bool)
    either_dW = np.zeros((n_in, n_out), bool)
    nan_db = np.zeros(n_out, bool)
    if which == "A" and name == "identity":
        pass  # the identity's derivative does not read A
    elif which in ("dA", "A"):  # dZ[i, j] is NaN
        i, j = index
        nan_dX[i, :] = True
        nan_dW[:, j] = True
        nan_db[j] = True
    elif which == "X":  # dW = X^T dZ: row p of dW
        nan_dW[index[1], :] = True
    else:  # W: dX = dZ W^T, column p of dX; dW[p, j] through the penalty's l2 W or l1 sign(W)
        nan_dX[:, index[0]] = True
        nan_dW[index] = l2 > 0 or l1 > 0
        either_dW[index] = True  # without a penalty, numpy's `0.0 * W` is NaN too: fine
    with on_backend(backend), gemm_path(backend, threshold), np.errstate(invalid="ignore"):
        dX, dW, db = ops.dense_backward(dA, X, W, A, name, l2=l2, l1=l1)
    _assert_nan_exactly(dX, nan_dX, f"dX ({name}, NaN in {which})")
    _assert_nan_exactly(dW, nan_dW, f"dW ({name}, NaN in {which}, l2={l2}, l1={l1})",
                        either=either_dW)
    _assert_nan_exactly(db, nan_db, f"db ({name}, NaN in {which})")


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 5),
       k=st.integers(1, 5),
       kernel=st.sampled_from(["softmax", "log_softmax", "softmax_cross_entropy",
                               "sigmoid_binary_cross_entropy", "mean_squared_error"]),
       in_targets=st.booleans())
def test_nan_propagates_through_softmax_and_the_losses(data, backend, dtype, n, k, kernel,
                                                       in_targets):
    Z = _nonzero(data.draw, (n, k), dtype, scale=3.0)
    T = np.asarray(values(data.draw, (n, k), kind="unit"), dtype)
    in_targets = in_targets and kernel in ("sigmoid_binary_cross_entropy",
                                           "mean_squared_error")
    index = _poison(data.draw, T if in_targets else Z)
    mask = np.zeros((n, k), bool)
    if kernel in ("softmax", "log_softmax", "softmax_cross_entropy"):
        mask[index[0], :] = True  # the row's normalisation reads every entry
    else:
        mask[index] = True
    with on_backend(backend), np.errstate(invalid="ignore"):
        if kernel in ("softmax", "log_softmax"):
            _assert_nan_exactly(getattr(ops, kernel)(Z), mask, kernel)
            return
        if kernel == "softmax_cross_entropy":
            y = (values(data.draw, (n,), kind="unit") * k).astype(np.int64).clip(0, k - 1)
            loss, grad = ops.softmax_cross_entropy(Z, y)
        else:
            loss, grad = getattr(ops, kernel)(Z, T)
    assert math.isnan(loss), f"{kernel}: loss {loss} with a NaN input"
    _assert_nan_exactly(grad, mask, kernel)


@given(data=st.data(), backend=backends, dtype=dtypes, shape=shapes(min_ndim=1, min_side=1),
       kernel=st.sampled_from(["sgd", "momentum", "nesterov", "adam", "adamw"]),
       which=st.sampled_from(["param", "grad", "state1", "state2"]),
       lr=st.sampled_from([0.0, 1e-3, 0.5]))
def test_nan_propagates_through_the_updates(data, backend, dtype, shape, kernel, which, lr):
    param = _nonzero(data.draw, shape, dtype)
    grad = _nonzero(data.draw, shape, dtype)
    s1 = _nonzero(data.draw, shape, dtype)
    s2 = np.abs(_nonzero(data.draw, shape, dtype))
    n_states = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2}[kernel]
    assume(which not in ("state1", "state2")[n_states:])
    index = _poison(data.draw, {"param": param, "grad": grad, "state1": s1, "state2": s2}[which])
    mask = np.zeros(shape, bool)
    mask[index] = True
    with on_backend(backend), np.errstate(invalid="ignore"):
        if kernel == "sgd":
            ops.sgd_update(param, grad, lr)
        elif kernel in ("momentum", "nesterov"):
            ops.momentum_update(param, grad, s1, lr, 0.9, nesterov=kernel == "nesterov")
        else:
            ops.adam_update(param, grad, s1, s2, 3, lr, weight_decay=0.1 * (kernel == "adamw"))
    _assert_nan_exactly(param, mask, f"{kernel} param (NaN in {which})")
    if n_states >= 1 and which != "param":
        _assert_nan_exactly(s1, mask if which in ("grad", "state1") else ~np.ones_like(mask),
                            f"{kernel} state1 (NaN in {which})")
    if n_states == 2 and which != "param":
        _assert_nan_exactly(s2, mask if which in ("grad", "state2") else ~np.ones_like(mask),
                            f"{kernel} state2 (NaN in {which})")


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 5),
       k=st.integers(1, 4), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_sample_weights(data, backend, dtype, n, k, bad):
    # NaN weights are refused (they are neither >= 0 nor < 0); an infinite one is a valid
    # non-negative number whose sum is infinite: the loss is NaN, not a plausible number
    Z = _nonzero(data.draw, (n, k), dtype)
    y = np.zeros(n, np.int64)
    w = np.ones(n, dtype)
    w[data.draw(st.integers(0, n - 1))] = bad
    with on_backend(backend), np.errstate(all="ignore"):
        if not bad > 0:
            with pytest.raises(ValueError, match="sample_weight"):
                ops.softmax_cross_entropy(Z, y, sample_weight=w)
            return
        loss, _ = ops.softmax_cross_entropy(Z, y, sample_weight=w)
    assert not math.isfinite(loss)


# -- NetworkPlan ------------------------------------------------------------------------------

from fastmlp import optimizers as _optimizers  # noqa: E402

_OPTIMIZER_CLASSES = {"sgd": _optimizers.SGD, "momentum": _optimizers.Momentum,
                      "nesterov": _optimizers.Nesterov, "adam": _optimizers.Adam,
                      "adamw": _optimizers.AdamW, "rmsprop": _optimizers.RMSprop,
                      "adagrad": _optimizers.Adagrad, "adadelta": _optimizers.Adadelta,
                      "adamax": _optimizers.Adamax, "nadam": _optimizers.Nadam}


@st.composite
def plan_configs(draw, max_batch=33):
    """Keyword arguments of a random NetworkPlan, hyper-parameters at their edges."""
    n_in = draw(st.integers(1, 6))
    hidden = draw(st.lists(st.integers(1, 10), min_size=0, max_size=3))
    loss = draw(st.sampled_from(LOSSES))
    n_out = draw(st.integers(1, 5))
    names = [draw(st.sampled_from(PLAN_ACTIVATIONS)) for _ in hidden]
    if loss == "mean_squared_error" and draw(st.booleans()):
        # an output activation too (maxout is for hidden layers)
        names.append(draw(st.sampled_from([a for a in PLAN_ACTIVATIONS if a != "maxout"])))
    n_layers = len(hidden) + 1
    alphas = [draw(alpha_for(name)) for name in names] + [None] * (n_layers - len(names))
    name = draw(st.sampled_from(OPTIMIZERS))
    hyper = {"learning_rate": draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.3]))}
    if name in ("momentum", "nesterov"):
        hyper["momentum"] = draw(st.sampled_from([0.0, 0.5, 0.99]))
    if name in ("adam", "adamw"):
        hyper["beta1"] = draw(st.sampled_from([0.0, 0.9, 0.999]))
        hyper["beta2"] = draw(st.sampled_from([0.0, 0.999]))
        hyper["eps"] = draw(st.sampled_from([1e-12, 1e-8, 1.0]))
    if name == "adamw":
        hyper["weight_decay"] = draw(st.sampled_from([0.0, 0.1]))
    if name in ("rmsprop", "adadelta"):
        hyper["rho"] = draw(st.sampled_from([0.0, 0.9, 0.999]))
    if draw(st.booleans()):  # clipping, either or both
        hyper[draw(st.sampled_from(["clip_value", "clip_norm"]))] = draw(
            st.sampled_from([1e-3, 0.5, 10.0]))
    optimizer = _OPTIMIZER_CLASSES[name](**hyper)
    return dict(
        layer_sizes=[n_in, *hidden, n_out], activations=names, loss=loss,
        optimizer=draw(st.sampled_from([optimizer, name])) if len(hyper) == 1 else optimizer,
        learning_rate=hyper["learning_rate"], batch_size=draw(st.integers(1, max_batch)),
        dtype=draw(dtypes), seed=draw(st.integers(0, 2**32 - 1)),
        l2=draw(st.sampled_from([0.0, 1e-3, 1.0])), l1=draw(st.sampled_from([0.0, 1e-3, 0.5])),
        init=draw(st.sampled_from(["auto", "he", "glorot", "course"])),
        alpha=alphas if any(a is not None for a in alphas) else None,
    )


def _plan_data(draw, config, n):
    n_in, n_out = config["layer_sizes"][0], config["layer_sizes"][-1]
    dtype = config["dtype"]
    X = values(draw, (n, n_in), kind="normal").astype(dtype)
    if config["loss"] == "softmax_cross_entropy":
        y = (values(draw, (n,), kind="unit") * n_out).astype(np.int64).clip(0, n_out - 1)
    elif config["loss"] == "sigmoid_binary_cross_entropy":
        y = np.round(values(draw, (n, n_out), kind="unit")).astype(dtype)
    else:
        y = values(draw, (n, n_out), kind="normal").astype(dtype)
    return X, y


def _state(plan):
    """Copies of everything a training call may change."""
    arrays = [a.copy() for key in ("W", "b", "state1_W", "state1_b", "state2_W", "state2_b")
              for a in plan._buffers[key] if a is not None]
    return arrays, plan.step


def _assert_same_state(plan, state):
    arrays, step = state
    now, now_step = _state(plan)
    assert now_step == step
    for a, b in zip(now, arrays):
        np.testing.assert_array_equal(a, b)


# Loss curves and weights of two backends after a few steps: each step rounds differently
# (loop order, fused blocks, BLAS), and training feeds the differences back. Over <= 4
# steps at these learning rates the measured gap is <= 2e-6 (float32) / 5e-15 (float64)
# relative to the weights' scale; the bounds leave 10-100x room.
STEP_RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-11}


@given(data=st.data(), config=plan_configs(), backend=st.sampled_from(
    [b for b in BACKENDS if b != "numpy"] or ["numpy"]))
def test_plan_steps_match_the_numpy_plan(data, config, backend):
    opt = config["optimizer"]
    if not isinstance(opt, str) and opt.name in ("adam", "adamw"):
        # Adam's step is bounded (by ~lr) only when beta1^2 <= beta2; past that (beta2 = 0
        # with momentum) a near-zero gradient gives an unbounded step, the run turns chaotic
        # and two backends' rounding differences grow without bound. (The single update at
        # any betas is checked against the reference in test_adam_update.)
        assume(opt.beta1**2 <= opt.beta2)
    steps = data.draw(st.lists(st.integers(1, config["batch_size"]), min_size=1, max_size=4))
    X, y = _plan_data(data.draw, config, config["batch_size"])
    plan = fastmlp.NetworkPlan(backend=backend, **config)
    ref = fastmlp.NetworkPlan(backend="numpy", **config)
    rtol = STEP_RTOL[np.dtype(config["dtype"])]
    with np.errstate(all="ignore"):
        for rows in steps:
            loss = plan.train_step(X[:rows], y[:rows])
            ref_loss = ref.train_step(X[:rows], y[:rows])
            assert isinstance(loss, float)
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=rtol)
    assert plan.step == ref.step == len(steps)
    # Adam divides each gradient by its own running magnitude: a gradient at the level of
    # rounding noise (an exactly-cancelling sum, say) becomes a whole +-lr step whose sign
    # is the noise's, so its weights may differ by up to lr a step (the losses may not)
    slack = 2 * config["learning_rate"] * len(steps) if plan.optimizer.name in (
        "adam", "adamw") else 0.0
    for (W, b), (W0, b0) in zip(plan.weights, ref.weights):
        assert W.dtype == b.dtype == np.dtype(config["dtype"])
        scale = rtol * max(1.0, float(np.max(np.abs(W0), initial=0))) + slack
        np.testing.assert_allclose(W, W0, rtol=rtol, atol=scale)
        np.testing.assert_allclose(b, b0, rtol=rtol, atol=scale)
    if config["learning_rate"] == 0:  # nothing moves (AdamW's decay is lr * wd too)
        fresh = fastmlp.NetworkPlan(backend=backend, **config)
        for (W, b), (W0, b0) in zip(plan.weights, fresh.weights):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


@given(data=st.data(), config=plan_configs(), backend=backends,
       rows=st.sampled_from(["zero", "one-more", "many-more"]))
def test_train_step_refuses_more_rows_than_the_plan_holds(data, config, backend, rows):
    bs = config["batch_size"]
    n = {"zero": 0, "one-more": bs + 1, "many-more": 3 * bs + 2}[rows]
    X, y = _plan_data(data.draw, config, n)
    plan = fastmlp.NetworkPlan(backend=backend, **config)
    state = _state(plan)
    with pytest.raises(ValueError, match="batch_size|rows"):
        plan.train_step(X, y)
    _assert_same_state(plan, state)
    assert not plan._lock.locked()
    if n:  # ... while train_epoch takes any number of rows, batch_size at a time
        batch_losses = np.zeros(-(-n // bs))
        with np.errstate(all="ignore"):
            plan.train_epoch(X, y, batch_losses=batch_losses)
        assert plan.step == len(batch_losses)


@given(data=st.data(), config=plan_configs(max_batch=12), backend=backends,
       n=st.integers(1, 40), shuffle=st.booleans(), batch=st.integers(1, 13))
def test_train_epoch_is_the_sequence_of_its_batches(data, config, backend, n, shuffle, batch):
    X, y = _plan_data(data.draw, config, n)
    plan = fastmlp.NetworkPlan(backend=backend, **config)
    twin = fastmlp.NetworkPlan(backend=backend, **config)
    if batch > config["batch_size"]:
        state = _state(plan)
        with pytest.raises(ValueError, match="batch_size"):
            plan.train_epoch(X, y, batch_size=batch)
        _assert_same_state(plan, state)
        return
    n_batches = -(-n // batch)
    batch_losses = np.full(n_batches, np.nan)
    with np.errstate(all="ignore"):
        mean = plan.train_epoch(X, y, batch_size=batch, shuffle=shuffle,
                                batch_losses=batch_losses)
        # the same batches, one train_step each, in the order the plan's generator draws
        order = twin._rng.permutation(n) if shuffle else np.arange(n)
        Xo, yo = X[order], y[order]
        losses = [twin.train_step(Xo[s:s + batch], yo[s:s + batch])
                  for s in range(0, n, batch)]
    assert plan.step == twin.step == n_batches
    np.testing.assert_array_equal(batch_losses, losses)  # bit for bit
    for (W, b), (W0, b0) in zip(plan.weights, twin.weights):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    rows = np.diff(np.r_[np.arange(0, n, batch), n])
    expected = float(np.sum(np.array(losses) * rows) / n)
    assert mean == pytest.approx(expected, rel=1e-12, nan_ok=True)


@given(data=st.data(), config=plan_configs(max_batch=8), backend=backends,
       n=st.integers(1, 30), call=st.sampled_from(["step", "epoch", "epoch-shuffled"]),
       bad=st.sampled_from([-1, "n_out", 2**40]))
def test_a_bad_label_is_refused_and_the_plan_is_untouched(data, config, backend, n, call, bad):
    assume(config["loss"] == "softmax_cross_entropy")
    n = min(n, config["batch_size"]) if call == "step" else n
    X, y = _plan_data(data.draw, config, n)
    i = data.draw(st.integers(0, n - 1))  # anywhere: in a later batch of an epoch too
    y[i] = config["layer_sizes"][-1] if bad == "n_out" else bad
    plan = fastmlp.NetworkPlan(backend=backend, **config)
    state = _state(plan)
    with pytest.raises(ValueError, match=f"found {int(y[i])}"):
        if call == "step":
            plan.train_step(X, y)
        else:
            plan.train_epoch(X, y, shuffle=call == "epoch-shuffled")
    _assert_same_state(plan, state)
    assert not plan._lock.locked()


def _network_bound(dtype, X, weights, names, alphas):
    """Forward-error bound of the float64 reference chain: rounding of each layer's
    product (helpers.product_bound) plus the earlier layers' error through |W|."""
    h = np.asarray(X, np.float64)
    err = np.zeros_like(h)
    for (W, b), name, alpha in zip(weights, names, alphas):
        w, bb = np.asarray(W, np.float64), np.asarray(b, np.float64)
        magnitude = np.abs(h) @ np.abs(w) + np.abs(bb)
        z_err = err @ np.abs(w) + product_bound(dtype, w.shape[0], magnitude + err @ np.abs(w))
        h = ref_activation(name, h @ w + bb, alpha)
        err = lipschitz(name, alpha) * z_err + 8 * eps(dtype) * np.abs(h)
    return err


@given(data=st.data(), config=plan_configs(), backend=backends, n=dims,
       chunk=st.none() | st.integers(1, 20), use_out=st.booleans(),
       x_dtype=st.sampled_from(["same", "other", "int"]))
def test_plan_forward_matches_the_reference(data, config, backend, n, chunk, use_out,
                                            x_dtype):
    plan = fastmlp.NetworkPlan(backend=backend, **config)
    dtype = np.dtype(config["dtype"])
    X, _ = _plan_data(data.draw, config, n)
    if x_dtype == "int":
        X = np.round(X * 3).astype(np.int32)
    elif x_dtype == "other":
        X = X.astype(np.float64 if dtype == np.float32 else np.float32)
    X = lay(X, data.draw(layouts), data.draw(st.booleans()))
    out = np.full((n, config["layer_sizes"][-1]), np.nan, dtype) if use_out else None
    before = snapshot(X)
    if x_dtype == "int":  # the plan, as the kernels, casts no integers (the models do)
        with pytest.raises(TypeError, match="astype"):
            plan.forward(X, out=out, chunk_rows=chunk)
        assert_unchanged([X], before, ["X"])
        return
    result = plan.forward(X, out=out, chunk_rows=chunk)
    assert result.dtype == dtype and result.shape == (n, config["layer_sizes"][-1])
    assert out is None or result is out
    assert_unchanged([X], before, ["X"])
    Xd = np.asarray(X).astype(dtype).astype(np.float64)  # the plan converts X to its dtype
    alphas = config["alpha"] or [None] * len(plan.weights)
    expected = ref_network_forward(Xd, plan.weights, plan.activations, alphas)
    bound = _network_bound(dtype, Xd, plan.weights, plan.activations, alphas)
    assert_within(result, expected, bound + tiny(dtype), "plan.forward")



# -- MLP -------------------------------------------------------------------------------------

LABEL_SETS = {
    "ints": np.array([0, 1, 2, 3]),
    "sparse-ints": np.array([-7, 3, 100, 2**40]),
    "strings": np.array(["cat", "dog", "eel", "fox"]),
    "floats": np.array([-1.0, 0.0, 2.0, 5.0]),
}


@given(data=st.data(), backend=backends, dtype=dtypes,
       hidden=st.lists(st.integers(1, 8), min_size=1, max_size=2),
       activation=st.sampled_from(ACTIVATIONS), label_set=st.sampled_from(sorted(LABEL_SETS)),
       k=st.integers(2, 4), n=st.integers(4, 40), batch_size=st.integers(1, 50),
       epochs=st.integers(1, 2), optimizer=st.sampled_from(OPTIMIZERS),
       learning_rate=st.sampled_from([0.0, 1e-3, 0.1]), l2=st.sampled_from([0.0, 1e-2]))
def test_mlp_fit_predict_on_random_label_sets(data, backend, dtype, hidden, activation,
                                              label_set, k, n, batch_size, epochs, optimizer,
                                              learning_rate, l2):
    classes = LABEL_SETS[label_set][:k]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y = classes[np.r_[np.arange(k), rng.integers(0, k, n - k)]]  # every class present
    X = rng.standard_normal((n, 3)) + np.searchsorted(np.sort(classes), y)[:, None]
    model = fastmlp.MLP(hidden, activation, dtype=dtype, seed=0, backend=backend)
    try:
        with np.errstate(all="ignore"):
            model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                      learning_rate=learning_rate, l2=l2, verbose=0)
    except ValueError as exc:  # at lr 0.1 a linear net can diverge: refused, never NaN weights
        assert "diverged" in str(exc) and learning_rate == 0.1
        with pytest.raises(RuntimeError, match="not fitted"):
            model.predict(X)
        return
    assert len(model.history["loss"]) == epochs
    np.testing.assert_array_equal(model.classes_, np.sort(classes))
    pred = model.predict(X)
    assert pred.shape == (n,) and set(np.unique(pred)) <= set(classes)
    P = model.predict_proba(X)
    assert P.shape == (n, k)
    assert all(np.all(np.isfinite(a)) for pair in model.weights for a in pair)
    assert np.all(P >= 0) and np.all(P <= 1)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # predict is the class of the largest logit; its probability is the largest (two logits
    # an ulp apart may round to one probability, so argmax(P) itself may pick the other)
    chosen = P[np.arange(n), np.searchsorted(model.classes_, pred)]
    assert np.all(chosen >= P.max(axis=1) - 4 * eps(dtype))
    assert 0 <= model.score(X, y) <= 1
    if learning_rate == 0 and optimizer != "adamw":  # the weights stay at their seeded init
        init = fastmlp.MLP(hidden, activation, dtype=dtype, seed=0, backend=backend)
        init.fit(X, y, epochs=1, batch_size=batch_size, learning_rate=0.0, verbose=0)
        for (W, b), (W0, b0) in zip(model.weights, init.weights):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(2, 30),
       d=st.integers(1, 4), bad=st.sampled_from([np.nan, np.inf, -np.inf]),
       where=st.sampled_from(["fit", "predict", "predict_proba", "score", "partial_fit"]))
def test_mlp_rejects_nan_and_inf_in_X(data, backend, dtype, n, d, bad, where):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((n, d))
    y = np.arange(n) % 2
    model = fastmlp.MLP((3,), dtype=dtype, seed=0, backend=backend)
    if where != "fit":
        model.fit(X, y, epochs=1, verbose=0)
    before = [W.copy() for W, _ in model.weights] if where != "fit" else []
    Xbad = X.copy()
    Xbad[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, d - 1))] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        if where == "fit":
            model.fit(Xbad, y, epochs=1, verbose=0)
        elif where == "score":
            model.score(Xbad, y)
        elif where == "partial_fit":
            model.partial_fit(Xbad, y)
        else:
            getattr(model, where)(Xbad)
    for W0, (W, _) in zip(before, model.weights if before else []):
        np.testing.assert_array_equal(W, W0)


# -- saturation: extreme but finite inputs give finite outputs and gradients ------------------

SATURATING = {"logits": 1e4, "sigmoid": 1e3, "tanh": 1e3, "softplus": 1e3, "elu": 1e3}


@given(data=st.data(), backend=backends, dtype=dtypes, name=st.sampled_from(ACTIVATIONS),
       n=st.integers(1, 6), k=st.integers(1, 6), magnitude=st.sampled_from([1e2, 1e3]))
def test_saturated_activations_have_finite_values_and_gradients(data, backend, dtype, name, n,
                                                                k, magnitude):
    alpha = data.draw(alpha_for(name))
    signs = np.sign(values(data.draw, (n, k), kind="normal"))
    Z = (signs * magnitude * (1 + values(data.draw, (n, k), kind="unit"))).astype(dtype)
    with on_backend(backend):
        A = ops.activation_forward(name, Z, **_alpha_kw(alpha))
        dZ = ops.activation_backward(name, np.ones_like(A), A, **_alpha_kw(alpha))
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(dZ))
    assert_within(A, ref_activation(name, Z, alpha), 8 * eps(dtype) * np.abs(
        ref_activation(name, Z, alpha)) + tiny(dtype), name)
    # the derivative's limits: 0 for the flat sides, 1 (or alpha) for the linear ones
    lo = {"identity": 1, "relu": 0, "leaky_relu": 0.01 if alpha is None else alpha,
          "sigmoid": 0, "tanh": 0, "elu": 0, "softplus": 0}[name]
    hi = {"sigmoid": 0, "tanh": 0}.get(name, 1)
    expected = np.where(Z > 0, hi, lo)
    if name == "elu":  # a + alpha with a = alpha (e^z - 1) -> alpha e^z: 0 at z = -1e2
        expected = np.where(Z > 0, 1.0, 0.0)
    assert_within(dZ, expected, 4 * eps(dtype) * (1 + (alpha or 0)), f"{name}'")


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 6),
       k=st.integers(1, 6), magnitude=st.sampled_from([1e2, 1e3, 1e4]))
def test_saturated_logits_give_finite_losses_and_gradients(data, backend, dtype, n, k,
                                                           magnitude):
    signs = np.sign(values(data.draw, (n, k), kind="normal"))
    Z = (signs * magnitude * values(data.draw, (n, k), kind="unit")).astype(dtype)
    y = (values(data.draw, (n,), kind="unit") * k).astype(np.int64).clip(0, k - 1)
    T = np.round(values(data.draw, (n, k), kind="unit")).astype(dtype)
    with on_backend(backend):
        results = [ops.softmax_cross_entropy(Z, y), ops.sigmoid_binary_cross_entropy(Z, T),
                   ops.mean_squared_error(Z, T), (0.0, ops.softmax(Z)),
                   (0.0, ops.log_softmax(Z))]
    for loss, grad in results:
        assert math.isfinite(loss) and np.all(np.isfinite(grad))
    # Logits of 1e4 carry an absolute rounding of eps * 1e4 into a loss (the references'
    # logsumexp too); the gradients are checked against a reference that has none: in long
    # double, with the true class's p - 1 written as -(the other classes' p), which does not
    # cancel (helpers' exp(z - logsumexp) loses digits there: lse is rounded near 1e4).
    loss_tol = 16 * eps(dtype) * (magnitude + np.log(k) + 1)
    e_loss, _ = ref_softmax_cross_entropy(Z, y)
    assert results[0][0] == pytest.approx(e_loss, rel=RTOL[dtype], abs=loss_tol)
    z = Z.astype(np.longdouble)
    e = np.exp(z - z.max(axis=1, keepdims=True))  # the shift is exact at these magnitudes
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    e_grad = p.copy()
    e_grad[rows, y] = -(p.sum(axis=1) - p[rows, y])
    spread = np.abs(Z - Z.max(axis=1, keepdims=True)).astype(np.float64)  # exp's argument
    assert_within(results[0][1], (e_grad / n).astype(np.float64),
                  8 * eps(dtype) * (1 + k + spread) * (p + (e_grad < 0)).astype(np.float64) / n
                  + tiny(dtype), "softmax_cross_entropy dlogits")
    e_loss, e_grad = ref_sigmoid_bce(Z, T)
    assert results[1][0] == pytest.approx(e_loss, rel=RTOL[dtype], abs=k * loss_tol)
    assert_close(results[1][1], e_grad, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "elu", "relu"])
def test_a_saturated_network_trains_with_finite_gradients(backend, dtype, name):
    # pre-activations of +-1e3 in the hidden layer and logits of ~1e4 at the output
    rng = np.random.default_rng(0)
    X = (rng.choice([-1.0, 1.0], (32, 4)) * 1e3).astype(dtype)
    y = rng.integers(0, 3, 32)
    plan = fastmlp.NetworkPlan([4, 8, 3], name, optimizer="sgd", learning_rate=1e-6,
                               batch_size=32, dtype=dtype, seed=0, backend=backend)
    plan.weights[0][0][...] = rng.choice([-1.0, 1.0], (4, 8))
    plan.weights[1][0][...] = rng.choice([-1.0, 1.0], (8, 3)) * (10 if name != "relu" else 1e-2)
    for _ in range(3):
        loss = plan.train_step(X, y)
        assert math.isfinite(loss)
    for W, b in plan.weights:
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    for dW in plan._buffers["dW"]:
        assert np.all(np.isfinite(dW))


# -- float32 training against float64 -------------------------------------------------------


@pytest.mark.parametrize("backend", [b for b in ("c", "numba") if b in BACKENDS])
def test_float32_spiral_training_converges_like_float64(backend):
    # the README's plan: [2, 100, 3] relu, sgd lr 1.0, l2 1e-3, batch 300, the course's init
    from fastmlp.datasets import make_spiral

    accuracy = {}
    for dtype in (np.float32, np.float64):
        X, y = make_spiral(100, 3, seed=0, dtype=dtype)
        plan = fastmlp.NetworkPlan([2, 100, 3], "relu", optimizer="sgd", learning_rate=1.0,
                                   l2=1e-3, batch_size=300, dtype=dtype, seed=0, init="course",
                                   backend=backend)
        losses = [plan.train_step(X, y) for _ in range(3000)]
        assert np.all(np.isfinite(losses)), f"{np.dtype(dtype)} diverged"
        assert losses[-1] < 0.5 * losses[0]
        accuracy[np.dtype(dtype).name] = float(np.mean(plan.forward(X).argmax(axis=1) == y))
    assert accuracy["float64"] >= 0.98 and accuracy["float32"] >= 0.98, accuracy


def test_float32_mnist_training_matches_float64():
    # the lecture's 784-100-10 sigmoid network, Adam 1e-3, batch 100, three epochs on the
    # embedded sample: the two precisions end within one point of accuracy
    from fastmlp.datasets import load_mnist_sample

    X_train, y_train, X_test, y_test = load_mnist_sample()
    scores = {}
    for dtype in (np.float32, np.float64):
        model = fastmlp.MLP((100,), "sigmoid", dtype=dtype, seed=0)
        model.fit(X_train, y_train, epochs=3, batch_size=100, optimizer="adam",
                  learning_rate=1e-3, verbose=0)
        assert np.all(np.isfinite(model.history["loss"]))
        scores[np.dtype(dtype).name] = model.score(X_test, y_test)
    assert scores["float64"] > 0.9, scores
    assert abs(scores["float32"] - scores["float64"]) <= 0.01, scores


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 6),
       k=st.integers(2, 6), margin=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
       squared=st.booleans())
def test_hinge_is_zero_exactly_where_every_margin_is_met(data, backend, dtype, n, k, margin,
                                                         squared):
    # ties included (small integer scores): the loss is >= 0, 0 iff no j != y has
    # s_j - s_y + margin > 0, and then the gradient is 0; each row's gradient sums to 0
    Z = np.asarray(values(data.draw, (n, k)), dtype)
    y = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    with on_backend(backend):
        loss, grad = ops.multiclass_hinge(Z, y, margin=margin, squared=squared)
    m = Z - Z[np.arange(n), y][:, None] + dtype.type(margin)
    m[np.arange(n), y] = 0
    assert loss >= 0
    assert (loss == 0) == (not np.any(m > 0))
    if loss == 0:
        np.testing.assert_array_equal(grad, 0)
    scale = np.abs(grad).max(initial=0.0)
    assert np.all(np.abs(grad.sum(axis=1, dtype=np.float64)) <= 8 * k * np.finfo(dtype).eps
                  * max(scale, 1e-30) * (1 + np.abs(m).max()))


@given(data=st.data(), backend=backends, dtype=dtypes, n=st.integers(1, 5),
       k=st.integers(1, 6), kl=st.booleans())
def test_soft_target_losses_bounds(data, backend, dtype, n, k, kl):
    # KL >= 0 (0 where the softmax is the target) and CCE >= KL; for target rows summing
    # to 1 the gradient rows sum to 0
    Z = np.asarray(values(data.draw, (n, k), scale=5.0), dtype)
    T = np.abs(np.asarray(values(data.draw, (n, k), kind="unit"), np.float64)) + 1e-3
    T = (T / T.sum(axis=1, keepdims=True)).astype(dtype)
    with on_backend(backend):
        value, grad = (ops.kl_divergence if kl else ops.categorical_cross_entropy)(Z, T)
        divergence = ops.kl_divergence(Z, T)[0]
    tol = 64 * np.finfo(dtype).eps * (1 + np.abs(Z.astype(np.float64)).max())
    assert divergence >= -tol
    assert value >= divergence - tol
    assert np.all(np.abs(grad.sum(axis=1, dtype=np.float64)) <= 16 * k * np.finfo(dtype).eps)
