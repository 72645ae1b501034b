"""The "numpy" backend: the reference every other backend must agree with.

Written the way the course writes it (np.dot, np.maximum, np.exp, ...), short enough to
read against the formulas in DESIGN.md; made numerically stable where the course's
version overflows (softmax, sigmoid, softplus). Same API as every backend (see
fastmlp.backends.BACKEND_API): arguments are already validated, outputs preallocated.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import erfc

from fastmlp.backends._python_network import PythonNetwork
from fastmlp.optimizers import nadam_mu, nadam_mu_product

NAME = "numpy"


def _sigmoid(z):
    # e = e^-|z| <= 1 never overflows: sigma = 1/(1+e) for z >= 0, e/(1+e) below
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


# selu's fixed scale and alpha (Klambauer et al. 2017)
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717


def _softplus(z):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _normal_cdf(z):
    # Phi(z) = erfc(-z / sqrt 2) / 2: no cancellation in the left tail, as 1 + erf would
    return (0.5 * erfc(-z / np.sqrt(2))).astype(z.dtype, copy=False)


def _gelu_tanh_s(z):
    # (1 + tanh u) / 2 = sigmoid(2u), u = sqrt(2/pi) (z + 0.044715 z^3), from z clipped to
    # [-10, 10]: beyond, sigmoid(2u) is 0 or 1 to the last bit and z^3 could overflow
    c = np.clip(z, -10, 10)
    return _sigmoid(2 * np.sqrt(2 / np.pi) * c * (1 + 0.044715 * c * c))


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
        return _softplus(z)
    if act == 7:  # selu
        t = z.dtype.type
        return np.where(z > 0, t(_SELU_SCALE) * z,
                        t(_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(z, 0)))
    if act == 8:  # gelu: z Phi(z)
        return z * _normal_cdf(z)
    if act == 9:  # gelu_tanh: z (1 + tanh u) / 2
        return z * _gelu_tanh_s(z)
    if act == 10:  # swish (SiLU): z sigmoid(z)
        return z * _sigmoid(z)
    if act == 11:  # mish: z tanh(softplus(z))
        return z * np.tanh(_softplus(z))
    if act == 12:  # softsign
        return z / (1 + np.abs(z))
    if act == 13:  # hard_sigmoid, Keras 2's: clip(0.2 z + 0.5, 0, 1); NaN stays NaN
        t = z.dtype.type
        return np.clip(t(0.2) * z + t(0.5), 0, 1)
    raise ValueError(f"unknown activation code {act}")


# the activations whose derivative reads the pre-activation z (fastmlp._registry)
_NEEDS_Z = (8, 9, 10, 11)


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
    if act == 7:  # selu: scale for z > 0, a + scale alpha below
        t = a.dtype.type
        return np.where(a > 0, t(_SELU_SCALE), a + t(_SELU_SCALE * _SELU_ALPHA)).astype(a.dtype)
    if act == 12:  # softsign: 1 / (1 + |z|)^2 = (1 - |a|)^2
        return (1 - np.abs(a)) ** 2
    if act == 13:  # hard_sigmoid: 0.2 inside the ramp, 0 on the flat parts (and the kinks)
        t = a.dtype.type
        return np.where((a > 0) & (a < 1), t(0.2), np.where(np.isnan(a), a, 0)).astype(a.dtype)
    raise ValueError(f"unknown activation code {act}")


def _derivative_from_z(act, z):
    """f'(z) of the activations that need the pre-activation z (_NEEDS_Z)."""
    if act == 8:  # gelu: Phi(z) + z phi(z), phi the normal density
        return _normal_cdf(z) + z * (1 / np.sqrt(2 * np.pi)) * np.exp(-0.5 * z * z)
    if act == 9:  # gelu_tanh: s + z s (1 - s) 2 du/dz, du/dz = sqrt(2/pi) (1 + 3 0.044715 z^2)
        s, c = _gelu_tanh_s(z), np.clip(z, -10, 10)
        return s + c * s * (1 - s) * (2 * np.sqrt(2 / np.pi)) * (1 + 0.134145 * c * c)
    if act == 10:  # swish: s (1 + z (1 - s)), s = sigmoid(z)
        s = _sigmoid(z)
        return s * (1 + z * (1 - s))
    if act == 11:  # mish: t + z (1 - t^2) sigmoid(z), t = tanh(softplus(z))
        t = np.tanh(_softplus(z))
        return t + z * (1 - t * t) * _sigmoid(z)
    raise ValueError(f"activation code {act} takes its derivative from the output")


def activation_forward(act, alpha, Z, out):
    out[...] = _activate(act, Z.dtype.type(alpha), Z)


def activation_backward(act, alpha, dA, A, Z, out):
    if act in _NEEDS_Z:
        if Z is None:
            raise ValueError("Z: this activation's derivative needs the pre-activation")
        out[...] = dA * _derivative_from_z(act, Z).astype(Z.dtype, copy=False)
    elif act == 1:
        # the course: dh[h <= 0] = 0 (a selection, so an infinite dA at a closed gate gives 0)
        out[...] = np.where(A > 0, dA, np.where(np.isnan(A), A, 0))
    else:
        out[...] = dA * _derivative(act, A.dtype.type(alpha), A)


# maxout (code 14): unit j of a row is the largest of its pieces, Z's columns
# j*k .. j*k + k - 1; np.argmax's winner (the first maximum, or the first NaN) takes the
# whole gradient.
_MAXOUT = 14


def _pieces(Z, pieces):
    return Z.reshape(Z.shape[0], Z.shape[1] // int(pieces), int(pieces))


def maxout_forward(pieces, Z, out):
    Zp = _pieces(Z, pieces)
    out[...] = np.take_along_axis(Zp, np.argmax(Zp, axis=2)[:, :, None], axis=2)[:, :, 0]


def maxout_backward(pieces, dA, Z, out):
    Zp = _pieces(Z, pieces)
    winner = np.argmax(Zp, axis=2)[:, :, None] == np.arange(Zp.shape[2])
    out[...] = np.where(winner, dA[:, :, None], 0).reshape(out.shape)


def dense_forward(X, W, b, act, alpha, out, Z):
    z = np.dot(X, W) + b
    if Z is not None:
        Z[...] = z
    if act == _MAXOUT:
        maxout_forward(alpha, z, out)
    else:
        out[...] = _activate(act, X.dtype.type(alpha), z)


def dense_backward(dA, X, W, A, Z, act, alpha, l2, l1, dZ, dX, dW, db):
    if act == _MAXOUT:  # dZ is as wide as W: k columns per unit of dA
        maxout_backward(alpha, dA, Z, dZ)
    else:
        activation_backward(act, alpha, dA, A, Z, dZ)
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


def classification_counts(Z, y, k, confusion):
    """The confusion matrix of Z's first maxima against y (rows with a NaN left out) into
    confusion; returns (rows whose label's score is below fewer than k others, NaN rows)."""
    nan = np.isnan(Z).any(axis=1)
    kept = ~nan
    label_scores = Z[np.arange(len(y)), y]
    above = np.count_nonzero(Z > label_scores[:, None], axis=1)
    confusion[...] = 0
    np.add.at(confusion, (y[kept], np.argmax(Z[kept], axis=1)), 1)
    return int(np.count_nonzero((above < k) & kept)), int(np.count_nonzero(nan))


def log_loss(Z, y, sample_weight):
    """The mean (weighted) softmax cross-entropy of logits Z on labels y, value only."""
    m = Z.max(axis=1, keepdims=True)
    s = np.exp(Z - m).sum(axis=1, dtype=np.float64)
    rows = (m[:, 0].astype(np.float64) - Z[np.arange(len(y)), y]) + np.log(s)
    if sample_weight is None:
        return float(rows.mean())
    w = sample_weight.astype(np.float64)
    return float(np.dot(w, rows) / w.sum())


def regression_sums(P, Y, ss_res, ss_tot):
    """Per output: sum (P - Y)^2 into ss_res, sum (Y - its mean)^2 into ss_tot."""
    Y64 = Y.astype(np.float64)
    ss_res[:] = np.sum(np.square(P.astype(np.float64) - Y64), axis=0)
    ss_tot[:] = np.sum(np.square(Y64 - Y64.mean(axis=0)), axis=0)


def optimizer_update(kind, lr, momentum, beta1, beta2, eps, weight_decay, rho, momentum_decay,
                     clip_value, grad_scale, step, param, grad, state1, state2, decay):
    t = param.dtype.type
    lr64, lr, mu = float(lr), t(lr), t(momentum)
    # the gradient the optimizer sees: clipped into [-c, c], times global-norm clipping's
    # factor (both exact no-ops when off: c 0, scale 1)
    if clip_value:
        grad = np.clip(grad, -t(clip_value), t(clip_value))
    if grad_scale != 1:
        grad = grad * t(grad_scale)
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
    elif kind == 5:  # rmsprop: v = rho v + (1 - rho) g^2; w -= lr g / (sqrt(v) + eps)
        state1[...] = t(rho) * state1 + t(1 - rho) * grad * grad
        param -= lr * grad / (np.sqrt(state1) + t(eps))
    elif kind == 6:  # adagrad: s += g^2; w -= lr g / (sqrt(s) + eps)
        state1 += grad * grad
        param -= lr * grad / (np.sqrt(state1) + t(eps))
    elif kind == 7:  # adadelta: d = sqrt(u + eps) / sqrt(v + eps) g, v and u mean squares
        state1[...] = t(rho) * state1 + t(1 - rho) * grad * grad
        delta = np.sqrt(state2 + t(eps)) / np.sqrt(state1 + t(eps)) * grad
        state2[...] = t(rho) * state2 + t(1 - rho) * delta * delta
        param -= lr * delta
    elif kind == 8:  # adamax: u = max(b2 u, |g| + eps); w -= lr / (1 - b1^t) m / u
        state1[...] = t(beta1) * state1 + t(1 - beta1) * grad
        np.maximum(t(beta2) * state2, np.abs(grad) + t(eps), out=state2)
        param -= t(lr64 / (1.0 - beta1**step)) * state1 / state2
    elif kind == 9:  # nadam (Dozat): the momentum schedule mu_t and its product P_t
        mu_t = nadam_mu(beta1, momentum_decay, step)
        mu_next = nadam_mu(beta1, momentum_decay, step + 1)
        product = nadam_mu_product(beta1, momentum_decay, step)
        cg = t(lr64 * (1.0 - mu_t) / (1.0 - product))
        cm = t(lr64 * mu_next / (1.0 - product * mu_next))
        state1[...] = t(beta1) * state1 + t(1 - beta1) * grad
        state2[...] = t(beta2) * state2 + t(1 - beta2) * grad * grad
        denom = np.sqrt(state2 * t(1.0 / (1.0 - beta2**step))) + t(eps)
        param -= (cg * grad + cm * state1) / denom
    else:
        raise ValueError(f"unknown optimizer code {kind}")


class Network(PythonNetwork):
    """Training step of a NetworkPlan, composed from this module's kernels."""


Network.kernels = sys.modules[__name__]
