"""The "numba" backend: the kernels of numpy_backend compiled by Numba, without the GIL.

Each kernel is a ``numba.njit(nogil=True, cache=True)`` function written as the explicit
loops of csrc/kernels/*.inc (bias add and activation fused into one pass, the activation
derivative taken from the saved output, losses and their gradients in one pass, fused
optimizer updates), with the matrix products left to BLAS through ``np.dot``. Numba
compiles one specialisation per dtype, so float32 stays float32 (losses accumulate in
float64, as in the C core). Same API and numerics as the reference, numpy_backend (see
fastmlp.backends.BACKEND_API): arguments are already validated, outputs preallocated.
"""

from __future__ import annotations

import math
import sys

import numba
import numpy as np

from fastmlp.backends._python_network import PythonNetwork

NAME = "numba"

# error_model="numpy": a division by zero gives inf/nan as in the reference, not an
# exception (and lets LLVM vectorise the divisions).
_kernel = numba.njit(nogil=True, cache=True, error_model="numpy")
# The per-element functions and the passes that take them are inlined into their caller
# at Numba IR level: each pass is then specialised on its function, and a jitted function
# that receives another one as an argument could not be cached otherwise.
_inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")

_N_ACTIVATIONS = 7

# Constants are built with type(x)(...) throughout: a bare Python literal would promote
# float32 arithmetic to float64. Conversely the loss sums widen with np.float64(x):
# Numba types float(x) of a float32 as float32.


@_inline
def _identity(z, alpha):
    return z


@_inline
def _relu(z, alpha):
    return type(z)(0) if z <= 0 else z  # z > 0 ? z : 0 would turn NaN into 0


@_inline
def _leaky_relu(z, alpha):
    return z if z > 0 else alpha * z


@_inline
def _sigmoid(z, alpha):
    one = type(z)(1)
    e = math.exp(-abs(z))  # e^-|z| <= 1 never overflows
    return one / (one + e) if z >= 0 else e / (one + e)


@_inline
def _tanh(z, alpha):
    return math.tanh(z)


@_inline
def _elu(z, alpha):
    return z if z > 0 else alpha * math.expm1(z)


@_inline
def _softplus(z, alpha):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), which cannot overflow
    return _relu(z, alpha) + math.log1p(math.exp(-abs(z)))


# Backward from the saved output a = f(z), so the pre-activation is never needed.


@_inline
def _identity_backward(da, a, alpha):
    return da


@_inline
def _relu_backward(da, a, alpha):
    # a selection, not da * [a > 0]: an infinite da where a <= 0 gives 0, not nan
    return da if a > 0 else type(da)(0)


@_inline
def _leaky_relu_backward(da, a, alpha):
    return da * (type(a)(1) if a > 0 else alpha)


@_inline
def _sigmoid_backward(da, a, alpha):
    return da * (a * (type(a)(1) - a))


@_inline
def _tanh_backward(da, a, alpha):
    return da * (type(a)(1) - a * a)


@_inline
def _elu_backward(da, a, alpha):
    return da * (type(a)(1) if a > 0 else a + alpha)


@_inline
def _softplus_backward(da, a, alpha):
    return da * -math.expm1(-a)  # sigmoid(z) = 1 - e^-a


@_inline
def _forward_pass(f, alpha, Z, bias, out):
    # bias is None or an array: Numba prunes the untaken branch at compile time
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            z = Z[i, j] if bias is None else Z[i, j] + bias[j]
            out[i, j] = f(z, alpha)


@_inline
def _backward_pass(f, alpha, dA, A, out):
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = f(dA[i, j], A[i, j], alpha)


@_kernel
def _activate(act, alpha, Z, bias, out):
    # One loop per activation rather than a branch per element: the branch would stay
    # in the loop and cost an order of magnitude on relu.
    if act == 0:
        _forward_pass(_identity, alpha, Z, bias, out)
    elif act == 1:
        _forward_pass(_relu, alpha, Z, bias, out)
    elif act == 2:
        _forward_pass(_leaky_relu, alpha, Z, bias, out)
    elif act == 3:
        _forward_pass(_sigmoid, alpha, Z, bias, out)
    elif act == 4:
        _forward_pass(_tanh, alpha, Z, bias, out)
    elif act == 5:
        _forward_pass(_elu, alpha, Z, bias, out)
    else:
        _forward_pass(_softplus, alpha, Z, bias, out)


@_kernel
def _backpropagate(act, alpha, dA, A, out):
    if act == 0:
        _backward_pass(_identity_backward, alpha, dA, A, out)
    elif act == 1:
        _backward_pass(_relu_backward, alpha, dA, A, out)
    elif act == 2:
        _backward_pass(_leaky_relu_backward, alpha, dA, A, out)
    elif act == 3:
        _backward_pass(_sigmoid_backward, alpha, dA, A, out)
    elif act == 4:
        _backward_pass(_tanh_backward, alpha, dA, A, out)
    elif act == 5:
        _backward_pass(_elu_backward, alpha, dA, A, out)
    else:
        _backward_pass(_softplus_backward, alpha, dA, A, out)


@_kernel
def _dense_forward(X, W, b, act, alpha, out):
    np.dot(X, W, out)
    _activate(act, alpha, out, b, out)


@_kernel
def _dense_backward(dA, X, W, A, act, alpha, l2, l1, dZ, dX, dW, db):
    _backpropagate(act, alpha, dA, A, dZ)
    np.dot(X.T, dZ, dW)
    if l2 != 0 or l1 != 0:  # skipped without penalties, as in the C core
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                w = W[i, j]
                dW[i, j] = dW[i, j] + l2 * w + l1 * np.sign(w)
    for j in range(dZ.shape[1]):
        db[j] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]
    if dX is not None:
        np.dot(dZ, W.T, dX)


@_inline
def _row_max(Z, i):
    # not NaN-propagating, but a NaN in the row makes every exp sum, hence the row, NaN
    m = Z[i, 0]
    for j in range(1, Z.shape[1]):
        if Z[i, j] > m:
            m = Z[i, j]
    return m


@_kernel
def _softmax(Z, log, out):
    for i in range(Z.shape[0]):
        m = _row_max(Z, i)
        s = type(m)(0)
        if log:
            for j in range(Z.shape[1]):
                s += math.exp(Z[i, j] - m)
            log_s = math.log(s)
            for j in range(Z.shape[1]):
                out[i, j] = (Z[i, j] - m) - log_s
        else:
            # out may be Z: each element is read before it is overwritten
            for j in range(Z.shape[1]):
                out[i, j] = math.exp(Z[i, j] - m)
                s += out[i, j]
            for j in range(Z.shape[1]):
                out[i, j] = out[i, j] / s


@_kernel
def _softmax_cross_entropy(Z, y, sample_weight, dZ):
    rows, cols = Z.shape
    weight_sum = np.float64(rows)
    if sample_weight is not None:
        weight_sum = 0.0
        for i in range(rows):
            weight_sum += np.float64(sample_weight[i])
    total = 0.0
    for i in range(rows):
        # log-sum-exp: lse = m + log(sum_j e^(z_j - m)), loss_i = lse - z_{y_i}
        m = _row_max(Z, i)
        s = type(m)(0)
        for j in range(cols):
            s += math.exp(Z[i, j] - m)
        label = y[i]
        z_label = Z[i, label]  # read before dZ, which may be Z, is written
        w = 1.0 if sample_weight is None else np.float64(sample_weight[i])
        total += w * (np.float64(m) + np.float64(math.log(s)) - np.float64(z_label))
        scale = type(m)(w / weight_sum)
        for j in range(cols):
            dZ[i, j] = (math.exp(Z[i, j] - m) / s) * scale
        dZ[i, label] = (math.exp(z_label - m) / s - type(m)(1)) * scale
    return total / weight_sum


@_kernel
def _sigmoid_binary_cross_entropy(Z, Y, dZ):
    rows, cols = Z.shape
    n = Z.dtype.type(rows)
    total = 0.0
    for i in range(rows):
        for j in range(cols):
            z, t = Z[i, j], Y[i, j]
            # max(z, 0) - z y + log1p(e^-|z|): log(1 + e^z) - z y without overflow
            total += np.float64(_relu(z, None) - z * t + math.log1p(math.exp(-abs(z))))
            dZ[i, j] = (_sigmoid(z, None) - t) / n
    return total / rows


@_kernel
def _mean_squared_error(P, Y, dP):
    rows, cols = P.shape
    n = P.dtype.type(rows)
    total = 0.0
    for i in range(rows):
        for j in range(cols):
            r = P[i, j] - Y[i, j]
            dP[i, j] = r / n
            total += np.float64(r) * np.float64(r)
    return total / (2 * rows)


@_kernel
def _sgd(lr, param, grad):
    for i in range(param.shape[0]):
        param[i] += -lr * grad[i]


@_kernel
def _momentum(lr, mu, nesterov, param, grad, velocity):
    for i in range(param.shape[0]):
        v = mu * velocity[i] - lr * grad[i]
        velocity[i] = v
        if nesterov:
            param[i] += mu * v - lr * grad[i]
        else:
            param[i] += v


@_kernel
def _adam(lr, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, c1, c2, eps, param,
          grad, m, v):
    for i in range(param.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + one_minus_beta2 * g * g
        m[i], v[i] = mi, vi
        # shrink is exactly 1 without decoupled decay, and w * 1 == w bit for bit
        param[i] = param[i] * shrink - lr * (mi * c1) / (math.sqrt(vi * c2) + eps)


def _matrix(a):
    # the passes loop over rows and columns; any C-contiguous shape reshapes to a view
    return a if a.ndim == 2 else a.reshape(1, -1)


def _check_activation(act):
    if not 0 <= act < _N_ACTIVATIONS:
        raise ValueError(f"unknown activation code {act}")


def activation_forward(act, alpha, Z, out):
    _check_activation(act)
    _activate(act, Z.dtype.type(alpha), _matrix(Z), None, _matrix(out))


def activation_backward(act, alpha, dA, A, out):
    _check_activation(act)
    _backpropagate(act, A.dtype.type(alpha), _matrix(dA), _matrix(A), _matrix(out))


def dense_forward(X, W, b, act, alpha, out):
    _check_activation(act)
    _dense_forward(X, W, b.reshape(-1), act, X.dtype.type(alpha), out)


def dense_backward(dA, X, W, A, act, alpha, l2, l1, dZ, dX, dW, db):
    _check_activation(act)
    t = X.dtype.type
    _dense_backward(dA, X, W, A, act, t(alpha), t(l2), t(l1), dZ, dX, dW, db.reshape(-1))


def softmax(Z, log, out):
    _softmax(Z, bool(log), out)


def softmax_cross_entropy(Z, y, sample_weight, dZ):
    return float(_softmax_cross_entropy(Z, y, sample_weight, dZ))


def sigmoid_binary_cross_entropy(Z, Y, dZ):
    return float(_sigmoid_binary_cross_entropy(Z, Y, dZ))


def mean_squared_error(P, Y, dP):
    return float(_mean_squared_error(P, Y, dP))


def optimizer_update(kind, lr, momentum, beta1, beta2, eps, weight_decay, step, param, grad,
                     state1, state2, decay):
    # The scalars are rounded to the parameters' dtype here, in the same order as
    # numpy_backend, so that both backends see the same float32 coefficients.
    t = param.dtype.type
    if kind == 0:
        _sgd(t(lr), param, grad)
    elif kind in (1, 2):
        _momentum(t(lr), t(momentum), kind == 2, param, grad, state1)
    elif kind in (3, 4):
        shrink = t(1)
        if kind == 4 and decay and weight_decay != 0:
            shrink = t(1.0 - t(lr) * weight_decay)  # decoupled weight decay
        _adam(t(lr), shrink, t(beta1), t(1 - beta1), t(beta2), t(1 - beta2),
              t(1.0 / (1.0 - beta1**step)), t(1.0 / (1.0 - beta2**step)), t(eps), param,
              grad, state1, state2)
    else:
        raise ValueError(f"unknown optimizer code {kind}")


class Network(PythonNetwork):
    """Training step of a NetworkPlan, composed from this module's kernels."""


Network.kernels = sys.modules[__name__]
