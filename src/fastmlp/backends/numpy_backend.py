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


def softmax_cross_entropy(Z, y, sample_weight, dZ):
    num_examples = Z.shape[0]
    # log-sum-exp: lse = m + log(sum(exp(z - m))), loss_i = lse_i - z_{i, y_i}
    m = np.max(Z, axis=1, keepdims=True)
    exp_z = np.exp(Z - m)
    sum_exp = np.sum(exp_z, axis=1, keepdims=True)
    lse = m[:, 0].astype(np.float64) + np.log(sum_exp[:, 0]).astype(np.float64)
    correct_logprobs = lse - Z[np.arange(num_examples), y]
    w = np.ones(num_examples) if sample_weight is None else sample_weight.astype(np.float64)
    weight_sum = np.sum(w)
    probs = exp_z / sum_exp
    probs[np.arange(num_examples), y] -= 1
    dZ[...] = probs * (w / weight_sum)[:, None]
    return float(np.sum(w * correct_logprobs) / weight_sum)


def sigmoid_binary_cross_entropy(Z, Y, dZ):
    n = Z.shape[0]
    loss = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    dZ[...] = (_sigmoid(Z) - Y) / n
    return float(np.sum(loss, dtype=np.float64) / n)


def mean_squared_error(P, Y, dP):
    n = P.shape[0]
    diff = P - Y
    dP[...] = diff / n
    return float(np.sum(diff.astype(np.float64) ** 2) / (2 * n))


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
