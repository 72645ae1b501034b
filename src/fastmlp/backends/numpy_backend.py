"""The "numpy" backend: the reference every other backend must agree with.

Written the way the course writes it (np.dot, np.maximum, np.exp, ...), short enough to
read against the formulas in DESIGN.md; made numerically stable where the course's
version overflows (softmax, sigmoid, softplus). Same API as every backend (see
fastmlp.backends.BACKEND_API): arguments are already validated, outputs preallocated.
"""

from __future__ import annotations

import sys

import numpy as np

from fastmlp.backends._python_network import PythonNetwork

NAME = "numpy"


def _sigmoid(z):
    # e = e^-|z| <= 1 never overflows: sigma = 1/(1+e) for z >= 0, e/(1+e) below
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _activate(act, alpha, z):
    """a = f(z) for the activation code `act` (see fastmlp._registry)."""
    if act == 0:
        return z
    if act == 1:
        return np.maximum(0, z)
    if act == 2:
        return np.where(z > 0, z, alpha * z)
    if act == 3:
        return _sigmoid(z)
    if act == 4:
        return np.tanh(z)
    if act == 5:
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if act == 6:
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    raise ValueError(f"unknown activation code {act}")


def _derivative(act, alpha, a):
    """f'(z) written from the saved output a = f(z)."""
    if act == 0:
        return np.ones_like(a)
    # a NaN output fails the gate a > 0 but must not read as a closed gate
    if act == 1:
        return np.where(a > 0, 1, np.where(np.isnan(a), a, 0)).astype(a.dtype)
    if act == 2:
        return np.where(a > 0, 1, np.where(np.isnan(a), a, alpha)).astype(a.dtype)
    if act == 3:
        return a * (1 - a)
    if act == 4:
        return 1 - a * a
    if act == 5:
        return np.where(a > 0, 1, a + alpha).astype(a.dtype)
    if act == 6:
        return -np.expm1(-a)  # sigmoid(z) = 1 - e^-a
    raise ValueError(f"unknown activation code {act}")


def activation_forward(act, alpha, Z, out):
    out[...] = _activate(act, Z.dtype.type(alpha), Z)


def activation_backward(act, alpha, dA, A, out):
    if act == 1:
        # the course: dh[h <= 0] = 0 (a selection, so an infinite dA at a closed gate gives 0)
        out[...] = np.where(A > 0, dA, np.where(np.isnan(A), A, 0))
    else:
        out[...] = dA * _derivative(act, A.dtype.type(alpha), A)


def dense_forward(X, W, b, act, alpha, out):
    out[...] = _activate(act, X.dtype.type(alpha), np.dot(X, W) + b)


def dense_backward(dA, X, W, A, act, alpha, l2, l1, dZ, dX, dW, db):
    activation_backward(act, alpha, dA, A, dZ)
    dW[...] = np.dot(X.T, dZ) + l2 * W + l1 * np.sign(W)
    db[...] = np.sum(dZ, axis=0)
    if dX is not None:
        dX[...] = np.dot(dZ, W.T)


def softmax(Z, log, out):
    shifted = Z - np.max(Z, axis=1, keepdims=True)
    exp_z = np.exp(shifted)
    sum_exp = np.sum(exp_z, axis=1, keepdims=True)
    out[...] = shifted - np.log(sum_exp) if log else exp_z / sum_exp


# Each loss in two layers, as csrc/kernels/loss.inc writes them: a row function that
# returns sum_i w_i loss_i over Z's rows (w None: every w_i = 1) and writes the gradient
# dZ_i = w_i dloss_i/dz_i inv_norm, with the row's scale w_i inv_norm rounded once to the
# dtype; and the public kernel, the mean over the rows (or the weighted mean). The
# network step (PythonNetwork) calls the row functions through loss_rows, with inv_norm
# 1 / the batch's weight sum. dZ may be Z: it is written last.


def _row_weights(w, n, inv_norm, dtype):
    """(w_i in float64, the per-row scale w_i inv_norm rounded to dtype, as a column)."""
    w = np.ones(n) if w is None else w.astype(np.float64)
    return w, (w * inv_norm).astype(dtype)[:, None]


def _softmax_cross_entropy_rows(Z, y, w, inv_norm, dZ):
    num_examples = Z.shape[0]
    rows = np.arange(num_examples)
    # log-sum-exp: lse = m + log(sum(exp(z - m))), loss_i = lse_i - z_{i, y_i}
    m = np.max(Z, axis=1, keepdims=True)
    exp_z = np.exp(Z - m)
    sum_exp = np.sum(exp_z, axis=1, keepdims=True)
    lse = m[:, 0].astype(np.float64) + np.log(sum_exp[:, 0]).astype(np.float64)
    correct_logprobs = lse - Z[rows, y]
    w, scale = _row_weights(w, num_examples, inv_norm, Z.dtype)
    probs = exp_z / sum_exp
    probs[rows, y] -= 1
    dZ[...] = probs * scale
    return float(np.sum(w * correct_logprobs))


def _sigmoid_bce_rows(Z, Y, w, inv_norm, dZ):
    # max(z, 0) - z y + log(1 + e^-|z|) = log(1 + e^z) - z y, without overflow
    loss = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    w, scale = _row_weights(w, Z.shape[0], inv_norm, Z.dtype)
    dZ[...] = (_sigmoid(Z) - Y) * scale
    return float(np.sum(w * np.sum(loss, axis=1, dtype=np.float64)))


def _mse_rows(P, Y, w, inv_norm, dP):
    diff = P - Y
    w, scale = _row_weights(w, P.shape[0], inv_norm, P.dtype)
    dP[...] = diff * scale
    return float(np.sum(w * 0.5 * np.sum(diff.astype(np.float64) ** 2, axis=1)))


def _poisson_rows(Z, Y, w, inv_norm, dZ):
    # half Poisson deviance with the log link: z = log(mu),
    # loss = y log(y) - y z - y + e^z (y log y = 0 at y = 0), dloss/dz = e^z - y
    mu = np.exp(Z)
    y = Y.astype(np.float64)
    y_log_y = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    loss = y_log_y - y * Z.astype(np.float64) - y + mu.astype(np.float64)
    w, scale = _row_weights(w, Z.shape[0], inv_norm, Z.dtype)
    dZ[...] = (mu - Y) * scale
    return float(np.sum(w * np.sum(loss, axis=1)))


def _absolute_error_rows(P, Y, w, inv_norm, dP):
    # |p - y|, dloss/dp = sign(p - y): 0 at p = y, a NaN r stays NaN (the C core's r * 0,
    # which is r itself there)
    diff = P - Y
    one = P.dtype.type(1)
    sign = np.where(diff > 0, one, np.where(diff < 0, -one, diff))
    w, scale = _row_weights(w, P.shape[0], inv_norm, P.dtype)
    dP[...] = sign * scale
    return float(np.sum(w * np.sum(np.abs(diff.astype(np.float64)), axis=1)))


def _huber_rows(P, Y, w, inv_norm, dP):
    # delta 1: r^2 / 2 for |r| <= 1, |r| - 1/2 beyond; dloss/dp = r clipped to [-1, 1]
    # (a NaN r fails every test and stays NaN)
    diff = P - Y
    a = np.abs(diff.astype(np.float64))
    inner = np.where(a <= 1, a, 0.0)  # squares only |r| <= 1: a huge r does not overflow
    loss = np.where(a <= 1, 0.5 * inner * inner, a - 0.5)
    one = P.dtype.type(1)
    clipped = np.where(diff > 1, one, np.where(diff < -1, -one, diff))
    w, scale = _row_weights(w, P.shape[0], inv_norm, P.dtype)
    dP[...] = clipped * scale
    return float(np.sum(w * np.sum(loss, axis=1)))


def _hinge_rows(Z, y, w, inv_norm, dZ, margin=1.0, squared=False):
    # the course's multiclass SVM: m_j = (z_j - z_y) + margin, loss = sum_{j != y}
    # max(0, m_j) (squared: max(0, m_j)^2); dloss/dz_j = [m_j > 0] (squared: 2 m_j [m_j > 0])
    # for j != y, dloss/dz_y = minus their sum. A tie m_j = 0 is no violation; a NaN m_j is
    # one (it propagates: m * 0 + 1 is NaN)
    rows = np.arange(Z.shape[0])
    margins = (Z - Z[rows, y][:, None]) + Z.dtype.type(margin)
    margins[rows, y] = 0  # the label's own term is left out
    violated = ~(margins <= 0)
    m64 = margins.astype(np.float64)
    loss = np.where(violated, m64 * m64 if squared else m64, 0.0)
    g = np.where(violated, margins + margins if squared else margins * 0 + 1,
                 Z.dtype.type(0))
    g_sum = np.sum(g.astype(np.float64), axis=1)
    w, scale = _row_weights(w, Z.shape[0], inv_norm, Z.dtype)
    grad = g * scale
    grad[rows, y] = (-g_sum).astype(Z.dtype) * scale[:, 0]
    dZ[...] = grad
    return float(np.sum(w * np.sum(loss, axis=1)))


def _squared_hinge_rows(Z, y, w, inv_norm, dZ, margin=1.0):
    return _hinge_rows(Z, y, w, inv_norm, dZ, margin, squared=True)


def _soft_target_rows(Z, T, w, inv_norm, dZ, kl=False):
    # cross-entropy of softmax(z) against target rows t: with m = max z, s = sum e^(z - m)
    # and T = sum t, -sum t log softmax = sum t (m - z) + T log s; KL(t || softmax(z)) adds
    # sum t log t (0 log 0 = 0); dloss/dz = softmax T - t (softmax - t when T = 1)
    m = np.max(Z, axis=1, keepdims=True)
    exp_z = np.exp(Z - m)
    sum_exp = np.sum(exp_z, axis=1, keepdims=True)
    t = T.astype(np.float64)
    part = t * (m.astype(np.float64) - Z.astype(np.float64))
    if kl:
        part = part + np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
    t_sum = np.sum(t, axis=1)
    # log s in the dtype, as _softmax_cross_entropy_rows (and the C core) take it
    loss = np.sum(part, axis=1) + t_sum * np.log(sum_exp[:, 0]).astype(np.float64)
    w, scale = _row_weights(w, Z.shape[0], inv_norm, Z.dtype)
    probs = exp_z / sum_exp
    dZ[...] = (probs * t_sum.astype(Z.dtype)[:, None] - T) * scale
    return float(np.sum(w * loss))


def _kl_divergence_rows(Z, T, w, inv_norm, dZ):
    return _soft_target_rows(Z, T, w, inv_norm, dZ, kl=True)


def _log_cosh_terms(r):
    """log(cosh(r)) in float64 without overflow or cancellation: |r| + log1p(e^-2|r|) -
    log 2, and log1p(2 sinh(|r|/2)^2) for |r| <= 1."""
    a = np.abs(r.astype(np.float64))
    small = a <= 1
    h = np.sinh(0.5 * np.where(small, a, 0.0))
    large = a + np.log1p(np.exp(-2 * np.where(small, 0.0, a))) - np.log(2.0)
    return np.where(small, np.log1p(2 * h * h), large)


def _log_cosh_rows(P, Y, w, inv_norm, dP):
    # log cosh(p - y): r^2 / 2 near the target, |r| - log 2 far away; dloss/dp = tanh(r)
    diff = P - Y
    w, scale = _row_weights(w, P.shape[0], inv_norm, P.dtype)
    loss = np.sum(_log_cosh_terms(diff), axis=1)
    dP[...] = np.tanh(diff) * scale
    return float(np.sum(w * loss))


# by the loss code of fastmlp._registry.LOSSES
_LOSS_ROWS = (_softmax_cross_entropy_rows, _sigmoid_bce_rows, _mse_rows, _poisson_rows,
              _absolute_error_rows, _huber_rows, _hinge_rows, _squared_hinge_rows,
              _soft_target_rows, _log_cosh_rows, _kl_divergence_rows)
_HINGE_CODES = (6, 7)


def loss_rows(code, Z, y, w, inv_norm, dZ, margin=1.0):
    """The loss `code` of Z's rows on labels or targets y, weighted by w (None: 1 each):
    returns sum_i w_i loss_i, writes dZ_i = w_i dloss_i/dz_i inv_norm (the network step's
    loss: the mean over a batch with inv_norm = 1 / its weight sum). margin: the hinge
    losses'."""
    if code in _HINGE_CODES:
        return _LOSS_ROWS[code](Z, y, w, inv_norm, dZ, margin)
    return _LOSS_ROWS[code](Z, y, w, inv_norm, dZ)


def _mean(rows_function, Z, y, dZ):
    n = Z.shape[0]  # no rows: loss 0, as in the C core
    return rows_function(Z, y, None, 1.0 / n, dZ) / n if n else 0.0


def softmax_cross_entropy(Z, y, sample_weight, dZ):
    weight_sum = Z.shape[0]
    if sample_weight is not None:
        weight_sum = float(np.sum(sample_weight, dtype=np.float64))
    return _softmax_cross_entropy_rows(Z, y, sample_weight, 1.0 / weight_sum, dZ) / weight_sum


def sigmoid_binary_cross_entropy(Z, Y, dZ):
    return _mean(_sigmoid_bce_rows, Z, Y, dZ)


def mean_squared_error(P, Y, dP):
    return _mean(_mse_rows, P, Y, dP)


def poisson(Z, Y, dZ):
    return _mean(_poisson_rows, Z, Y, dZ)


def absolute_error(P, Y, dP):
    return _mean(_absolute_error_rows, P, Y, dP)


def huber(P, Y, dP):
    return _mean(_huber_rows, P, Y, dP)


def _weighted_mean(rows_function, Z, y, sample_weight, dZ, **options):
    weight_sum = Z.shape[0]
    if sample_weight is not None:
        weight_sum = float(np.sum(sample_weight, dtype=np.float64))
    return rows_function(Z, y, sample_weight, 1.0 / weight_sum, dZ, **options) / weight_sum


def multiclass_hinge(Z, y, sample_weight, margin, squared, dZ):
    return _weighted_mean(_hinge_rows, Z, y, sample_weight, dZ, margin=margin,
                          squared=bool(squared))


def categorical_cross_entropy(Z, T, sample_weight, dZ):
    return _weighted_mean(_soft_target_rows, Z, T, sample_weight, dZ)


def kl_divergence(Z, T, sample_weight, dZ):
    return _weighted_mean(_soft_target_rows, Z, T, sample_weight, dZ, kl=True)


def log_cosh(P, Y, sample_weight, dP):
    return _weighted_mean(_log_cosh_rows, P, Y, sample_weight, dP)


def all_finite(X, n_threads=1):
    """Whether every element of the float array X is finite (one thread here)."""
    return bool(np.isfinite(X).all())


def optimizer_update(kind, lr, momentum, beta1, beta2, eps, weight_decay, step, param, grad,
                     state1, state2, decay):
    t = param.dtype.type
    lr, mu = t(lr), t(momentum)
    if kind == 0:  # sgd
        param += -lr * grad
    elif kind == 1:  # momentum
        state1[...] = mu * state1 - lr * grad
        param += state1
    elif kind == 2:  # nesterov
        state1[...] = mu * state1 - lr * grad
        param += mu * state1 - lr * grad
    elif kind in (3, 4):  # adam, adamw
        if kind == 4 and decay and weight_decay != 0:
            param *= t(1.0 - lr * weight_decay)  # decoupled weight decay
        state1[...] = t(beta1) * state1 + t(1 - beta1) * grad
        state2[...] = t(beta2) * state2 + t(1 - beta2) * grad * grad
        m_hat = state1 * t(1.0 / (1.0 - beta1**step))
        v_hat = state2 * t(1.0 / (1.0 - beta2**step))
        param -= lr * m_hat / (np.sqrt(v_hat) + t(eps))
    else:
        raise ValueError(f"unknown optimizer code {kind}")


class Network(PythonNetwork):
    """Training step of a NetworkPlan, composed from this module's kernels."""


Network.kernels = sys.modules[__name__]
