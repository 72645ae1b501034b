"""Shared test helpers: tolerances, memory layouts and an independent NumPy reference.

The reference below is written from the docstrings of fastmlp.ops (and the math comments
of csrc/kernels/*.inc), in float64, with SciPy's expit / logsumexp where a stable formula
is needed. It deliberately does not import anything from fastmlp.backends: the numpy
backend is one of the implementations under test, not the specification.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp, ndtr

DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("float32", "float64")

# Relative and absolute tolerance of a result computed in `dtype` against the float64
# reference. float32 has a unit roundoff of 6e-8: 1e-5 leaves room for a few dozen
# roundings (exp, log, a short sum) and no more. float64: 1e-12.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
ATOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}

LAYOUTS = ("C", "F", "strided")

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "softplus", "selu",
               "gelu", "gelu_tanh", "swish", "mish", "softsign", "hard_sigmoid")
# the activations whose backward pass reads the pre-activation Z (not monotonic)
NEEDS_Z = ("gelu", "gelu_tanh", "swish", "mish")
# (name, alpha) pairs that cover every activation and both documented alpha roles.
ACTIVATION_CASES = (
    ("identity", None),
    ("relu", None),
    ("leaky_relu", None),  # default slope 0.01
    ("leaky_relu", 0.01),
    ("leaky_relu", 0.2),
    ("sigmoid", None),
    ("tanh", None),
    ("elu", None),  # default scale 1.0
    ("elu", 1.0),
    ("elu", 0.5),
    ("softplus", None),
    ("selu", None),
    ("gelu", None),
    ("gelu_tanh", None),
    ("swish", None),
    ("mish", None),
    ("softsign", None),
    ("hard_sigmoid", None),
)
ACTIVATION_IDS = tuple(n if a is None else f"{n}-{a}" for n, a in ACTIVATION_CASES)
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}


def tol(dtype):
    dtype = np.dtype(dtype)
    return {"rtol": RTOL[dtype], "atol": ATOL[dtype]}


def eps(dtype):
    return float(np.finfo(dtype).eps)


def assert_close(actual, expected, dtype, *, atol=None, err_msg=""):
    """actual (computed in dtype) agrees with the float64 reference within the table."""
    dtype = np.dtype(dtype)
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=RTOL[dtype],
        atol=ATOL[dtype] if atol is None else atol,
        err_msg=err_msg,
    )


def assert_within(actual, expected, bound, err_msg=""):
    """|actual - expected| <= bound elementwise (bound: an array or a scalar)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if np.any(bad):
        idx = np.argwhere(bad)[:5]
        raise AssertionError(
            f"{err_msg}: {int(bad.sum())} of {bad.size} entries off; first at {idx.tolist()}: "
            f"actual {actual[tuple(idx[0])]}, expected {expected[tuple(idx[0])]}, "
            f"max error / bound {np.max(err / np.maximum(bound, 1e-300)):.3g}"
        )


def product_bound(dtype, k, magnitude):
    """Rounding bound of a length-k dot product computed in `dtype` (plus RTOL slack).

    The textbook bound is gamma_k * (|a| . |b|) with gamma_k ~ k u; we allow 4 (k + 2) eps
    times the magnitude sum |a| . |b| (+ |bias|), which no correct summation order exceeds.
    """
    return 4 * (k + 2) * eps(dtype) * magnitude + ATOL[np.dtype(dtype)]


def as_layout(a, layout, fill=None):
    """The values of `a` in C order, Fortran order, or as a non-contiguous strided view.

    The strided view lives inside a twice-as-wide buffer whose other entries are `fill`
    (NaN for floats, an impossible label for integers), so a kernel that reads past the
    view shows it in its result.
    """
    a = np.asarray(a)
    if fill is None:
        fill = np.nan if a.dtype.kind == "f" else -(2**20)  # an impossible label
    if layout == "C":
        out = np.ascontiguousarray(a)
    elif layout == "F":
        out = np.asfortranarray(a)
    elif layout == "strided":
        if a.ndim == 0:
            return a.copy()
        big = np.full(a.shape[:-1] + (2 * a.shape[-1],), fill, dtype=a.dtype)
        out = big[..., ::2]
        out[...] = a
        if a.size > 1 and a.shape[-1] > 1:
            assert not out.flags.c_contiguous and not out.flags.f_contiguous
    else:
        raise ValueError(layout)
    np.testing.assert_array_equal(out, a)
    return out


def snapshot(*arrays):
    """Copies of the arrays (and of the buffers behind any views) to compare later."""
    return [None if a is None else (np.array(a, copy=True), _base_copy(a)) for a in arrays]


def _base_copy(a):
    base = a
    while (
        isinstance(base, np.ndarray)
        and base.base is not None
        and isinstance(base.base, np.ndarray)
    ):
        base = base.base
    return np.array(base, copy=True)


def assert_unchanged(arrays, snapshots, names=None):
    for i, (a, snap) in enumerate(zip(arrays, snapshots)):
        if a is None:
            continue
        name = names[i] if names else f"argument {i}"
        before, base_before = snap
        np.testing.assert_array_equal(a, before, err_msg=f"{name} was modified")
        base = a
        while (
            isinstance(base, np.ndarray)
            and base.base is not None
            and isinstance(base.base, np.ndarray)
        ):
            base = base.base
        np.testing.assert_array_equal(base, base_before, err_msg=f"buffer of {name} was modified")


# -- the reference ----------------------------------------------------------------------


def ref_activation(name, z, alpha=None):
    """a = f(z) in float64, from the formulas of fastmlp.ops.activation_forward."""
    z = np.asarray(z, dtype=np.float64)
    alpha = DEFAULT_ALPHA.get(name, 0.0) if alpha is None else alpha
    if name == "identity":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0.0)  # propagates NaN
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "sigmoid":
        return expit(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "elu":
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))
    if name == "softplus":
        return np.logaddexp(0.0, z)
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return z * ndtr(z)  # z P(N(0, 1) <= z)
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    if name in ("swish", "silu"):
        return z * expit(z)
    if name == "mish":
        return z * np.tanh(np.logaddexp(0.0, z))
    if name == "softsign":
        return z / (1 + np.abs(z))
    if name == "hard_sigmoid":
        return np.clip(0.2 * z + 0.5, 0.0, 1.0)
    raise ValueError(name)


SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def ref_derivative_from_z(name, z, alpha=None):
    """f'(z) in float64, written from the pre-activation (the textbook derivative)."""
    z = np.asarray(z, dtype=np.float64)
    alpha = DEFAULT_ALPHA.get(name, 0.0) if alpha is None else alpha
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, alpha)
    if name == "sigmoid":
        s = expit(z)
        return s * (1 - s)
    if name == "tanh":
        return 1 / np.cosh(z) ** 2
    if name == "elu":
        return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))
    if name == "softplus":
        return expit(z)
    if name == "selu":
        return np.where(z > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(z, 0)))
    if name == "gelu":  # Phi(z) + z phi(z)
        return ndtr(z) + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    if name == "gelu_tanh":
        c = np.sqrt(2 / np.pi)
        u = c * (z + 0.044715 * z**3)
        return 0.5 * (1 + np.tanh(u)) + 0.5 * z / np.cosh(u) ** 2 * c * (1 + 3 * 0.044715 * z**2)
    if name in ("swish", "silu"):
        s = expit(z)
        return s + z * s * (1 - s)
    if name == "mish":
        sp = np.logaddexp(0.0, z)
        return np.tanh(sp) + z * expit(z) / np.cosh(sp) ** 2
    if name == "softsign":
        return 1 / (1 + np.abs(z)) ** 2
    if name == "hard_sigmoid":
        return np.where(np.abs(z) < 2.5, 0.2, 0.0)
    raise ValueError(name)


def ref_derivative_from_a(name, a, alpha=None):
    """f'(z) in float64 from the saved output a = f(z), as activation_backward documents."""
    a = np.asarray(a, dtype=np.float64)
    alpha = DEFAULT_ALPHA.get(name, 0.0) if alpha is None else alpha
    if name == "identity":
        return np.ones_like(a)
    if name == "relu":
        return (a > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(a > 0, 1.0, alpha)
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "elu":
        return np.where(a > 0, 1.0, a + alpha)
    if name == "softplus":
        return 1 - np.exp(-a)  # sigmoid(z) = 1 - 1 / (1 + e^z) = 1 - e^-a
    if name == "selu":
        return np.where(a > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA)
    if name == "softsign":
        return (1 - np.abs(a)) ** 2
    if name == "hard_sigmoid":
        return np.where((a > 0) & (a < 1), 0.2, 0.0)
    raise ValueError(f"{name}: its derivative is not a function of its output")


def ref_derivative(name, A, Z, alpha=None):
    """f'(z) as activation_backward computes it: from the pre-activation Z for NEEDS_Z, else
    from the saved output A."""
    return ref_derivative_from_z(name, Z, alpha) if name in NEEDS_Z else \
        ref_derivative_from_a(name, A, alpha)


def ref_dense_forward(X, W, b, name, alpha=None):
    X, W, b = (np.asarray(a, dtype=np.float64) for a in (X, W, b))
    return ref_activation(name, X @ W + b.reshape(-1), alpha)


def ref_dense_backward(dA, X, W, A, name, alpha=None, l2=0.0, l1=0.0, Z=None):
    dA, X, W, A = (np.asarray(a, dtype=np.float64) for a in (dA, X, W, A))
    dZ = dA * ref_derivative(name, A, Z, alpha)
    dW = X.T @ dZ + l2 * W + l1 * np.sign(W)
    return dZ @ W.T, dW, dZ.sum(axis=0), dZ


def ref_softmax(Z):
    Z = np.asarray(Z, dtype=np.float64)
    return np.exp(Z - logsumexp(Z, axis=1, keepdims=True))


def ref_log_softmax(Z):
    Z = np.asarray(Z, dtype=np.float64)
    return Z - logsumexp(Z, axis=1, keepdims=True)


def ref_softmax_cross_entropy(Z, y, w=None):
    Z = np.asarray(Z, dtype=np.float64)
    n, k = Z.shape
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    lse = logsumexp(Z, axis=1)
    loss = np.sum(w * (lse - Z[np.arange(n), y])) / np.sum(w)
    onehot = np.zeros_like(Z)
    onehot[np.arange(n), y] = 1
    grad = w[:, None] * (ref_softmax(Z) - onehot) / np.sum(w)
    return loss, grad


def ref_sigmoid_bce(Z, Y):
    Z = np.asarray(Z, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(Z.shape)
    n = Z.shape[0]
    loss = np.sum(np.logaddexp(0.0, Z) - Z * Y) / n  # -y log s(z) - (1-y) log(1-s(z))
    return loss, (expit(Z) - Y) / n


def ref_mse(P, Y):
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(P.shape)
    n = P.shape[0]
    return np.sum((P - Y) ** 2) / (2 * n), (P - Y) / n


def ref_network_forward(X, weights, activations, alphas=None):
    """The plan's output from its [(W, b), ...] in float64."""
    h = np.asarray(X, dtype=np.float64)
    alphas = alphas or [None] * len(weights)
    for (W, b), name, alpha in zip(weights, activations, alphas):
        h = ref_dense_forward(h, W, b, name, alpha)
    return h


# -- finite differences ------------------------------------------------------------------


def numerical_gradient(f, x, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (in place)."""
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x must be contiguous
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        grad.reshape(-1)[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(analytic, numeric):
    """max |a - n| / max(|a|, |n|) over the arrays (scale-free, no per-entry blow-up)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)), 1e-12)
    return float(np.max(np.abs(analytic - numeric)) / scale)


def outlier_regression(seed, n=400):
    """(X, y, clean): y = clean = x0 - 2 x1 on [-1, 1]^2, with every tenth y off by 50, the
    data on which a robust loss must beat the squared error."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    clean = X[:, 0] - 2 * X[:, 1]
    y = clean.copy()
    y[::10] += 50.0
    return X, y, clean
