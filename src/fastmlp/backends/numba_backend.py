"""The "numba" backend: the kernels of numpy_backend compiled by Numba, without the GIL.

Each kernel is a ``numba.njit(nogil=True, cache=True)`` function written as the explicit
loops of csrc/kernels/*.inc (bias add and activation fused into one pass, the activation
derivative taken from the saved output or, for gelu, gelu_tanh, swish and mish, the kept
pre-activation, losses and their gradients in one pass, fused optimizer updates), with
the matrix products left to BLAS through ``np.dot``. Numba
compiles one specialisation per dtype, so float32 stays float32 (losses accumulate in
float64, as in the C core). Same API and numerics as the reference, numpy_backend (see
fastmlp.backends.BACKEND_API): arguments are already validated, outputs preallocated.

Network, NetworkPlan's engine, is the twin of csrc/kernels/network.inc: a whole training
step or epoch is one jitted call, with small products in vectorised loops and rows in
cache-sized blocks for small networks (see "The training engine" below).

Compilation. A kernel compiles on its first call, and only what that call runs: the
public activation kernels one activation at a time, each loss apart; the engine once
per dtype, with no activation, loss or optimizer in it, and each network's activations,
loss and optimizer as small C functions the engine calls by address, compiled when a
network first needs them (see "Per-configuration passes"). The machine code is cached
on disk (Numba's cache: ``__pycache__`` next to this file, or NUMBA_CACHE_DIR), and later
processes load it in milliseconds. The first compile in a process says so, once, on
stderr, with a rough duration and the cache's directory; the environment variable
FASTMLP_NUMBA_QUIET=1 silences it.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, event, types
from numba.extending import intrinsic, overload

from fastmlp.optimizers import nadam_mu, nadam_mu_product

NAME = "numba"

# error_model="numpy": a division by zero gives inf/nan as in the reference, not an
# exception (and lets LLVM vectorise the divisions).
_kernel = numba.njit(nogil=True, cache=True, error_model="numpy")
# The per-element functions and the passes that take them are inlined into their caller
# at Numba IR level: each pass is then specialised on its function, and a jitted function
# that receives another one as an argument could not be cached otherwise. (Numba compiles
# an inlined function's body again at every call site: it is no place for whole kernels.)
_inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")

_N_ACTIVATIONS = 14  # the element-wise ones; maxout (code 14) has its own kernels
_MAXOUT = 14
# the activations whose derivative reads the pre-activation z (fastmlp._registry)
_NEEDS_Z = (8, 9, 10, 11, 14)

# Constants are built with type(x)(...) throughout: a bare Python literal would promote
# float32 arithmetic to float64. Conversely the loss sums widen with np.float64(x):
# Numba types float(x) of a float32 as float32.


# exp, expm1 and log1p(t <= 1) as csrc/kernels/exp.inc and log1p.inc write them:
# arithmetic that LLVM vectorises, where math.exp / math.expm1 / math.log1p are a libm
# call per element (math.exp kept sigmoid and tanh 5x slower than C per element).


@intrinsic
def _bits(typingctx, x):
    """The bit pattern of the float x as a signed integer of its width (a bit cast)."""
    if not isinstance(x, types.Float):
        return None
    int_type = types.int64 if x.bitwidth == 64 else types.int32

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(int_type))

    return int_type(x), codegen


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float of like's type whose bit pattern is the low bits of the integer bits."""
    if not isinstance(bits, types.Integer) or not isinstance(like, types.Float):
        return None
    width = like.bitwidth

    def codegen(context, builder, signature, args):
        u = args[0]
        if bits.bitwidth > width:
            u = builder.trunc(u, ir.IntType(width))
        elif bits.bitwidth < width:
            u = builder.sext(u, ir.IntType(width))
        return builder.bitcast(u, context.get_value_type(like))

    return like(bits, like), codegen


def _exp(x):
    """e^x: the jitted versions are _exp_f64 and _exp_f32 (plain Python: math.exp)."""
    return math.exp(x)


# e^x = 2^k e^r with k = round(x / ln 2), |r| <= ln(2)/2, e^r by its Taylor polynomial
# (degree 13 for double, 7 for float: truncation below half an ulp), 2^k built in the
# exponent bits as two factors so that results from the subnormals up to overflow come out
# right. NaN stays NaN, +inf gives inf, -inf 0. Adding and subtracting 1.5 * 2^52 (2^23)
# rounds to an integer, which the sum's low bits hold. Below 2^-60 (2^-30) e^x rounds to
# 1: x is taken as 0 there, as a subnormal x would slow every operation for nothing.


def _exp_f64(x):
    T = type(x)
    shift = T(6755399441055744.0)  # 0x1.8p52
    xc = T(-746) if x < T(-746) else (T(710) if x > T(710) else x)  # e^x is 0 or inf
    xc = T(0) if abs(xc) < T(8.673617379884035e-19) else xc  # 2^-60
    kd = (xc * T(1.4426950408889634) + shift) - shift
    r = (xc - kd * T(6.93147180369123816490e-01)) - kd * T(1.90821492927058770002e-10)
    p = T(1.0 / 6227020800.0)
    p = p * r + T(1.0 / 479001600.0)
    p = p * r + T(1.0 / 39916800.0)
    p = p * r + T(1.0 / 3628800.0)
    p = p * r + T(1.0 / 362880.0)
    p = p * r + T(1.0 / 40320.0)
    p = p * r + T(1.0 / 5040.0)
    p = p * r + T(1.0 / 720.0)
    p = p * r + T(1.0 / 120.0)
    p = p * r + T(1.0 / 24.0)
    p = p * r + T(1.0 / 6.0)
    p = p * r + T(0.5)
    p = p * r + T(1.0)
    p = p * r + T(1.0)
    half = (kd * T(0.5) + shift) - shift
    k1 = _bits(half + shift) - _bits(shift)
    k2 = _bits((kd - half) + shift) - _bits(shift)
    return p * _float_from_bits((k1 + 1023) << 52, x) * _float_from_bits((k2 + 1023) << 52, x)


def _exp_f32(x):
    T = type(x)
    shift = T(12582912.0)  # 0x1.8p23
    xc = T(-104) if x < T(-104) else (T(89) if x > T(89) else x)  # e^x is 0 or inf
    xc = T(0) if abs(xc) < T(9.313225746154785e-10) else xc  # 2^-30
    kf = (xc * T(1.44269504) + shift) - shift
    r = (xc - kf * T(0.693145751953125)) - kf * T(1.428606765330187045e-06)
    p = T(1.0 / 5040.0)
    p = p * r + T(1.0 / 720.0)
    p = p * r + T(1.0 / 120.0)
    p = p * r + T(1.0 / 24.0)
    p = p * r + T(1.0 / 6.0)
    p = p * r + T(0.5)
    p = p * r + T(1.0)
    p = p * r + T(1.0)
    half = (kf * T(0.5) + shift) - shift
    k1 = _bits(half + shift) - _bits(shift)
    k2 = _bits((kf - half) + shift) - _bits(shift)
    return p * _float_from_bits((k1 + 127) << 23, x) * _float_from_bits((k2 + 127) << 23, x)


@overload(_exp, jit_options={"error_model": "numpy"})
def _exp_overload(x):
    if x == types.float64:
        return _exp_f64
    if x == types.float32:
        return _exp_f32
    return None


@_inline
def _expm1(x):
    # Taylor to degree 16 below |x| = ln 2, e^x - 1 (no cancellation) beyond
    T = type(x)
    small = abs(x) < T(0.6931471805599453)
    xs = x if small else T(0)
    p = T(4.779477332387385e-14)
    p = p * xs + T(7.647163731819816e-13)
    p = p * xs + T(1.1470745597729725e-11)
    p = p * xs + T(1.6059043836821613e-10)
    p = p * xs + T(2.08767569878681e-09)
    p = p * xs + T(2.505210838544172e-08)
    p = p * xs + T(2.755731922398589e-07)
    p = p * xs + T(2.7557319223985893e-06)
    p = p * xs + T(2.48015873015873e-05)
    p = p * xs + T(0.0001984126984126984)
    p = p * xs + T(0.001388888888888889)
    p = p * xs + T(0.008333333333333333)
    p = p * xs + T(0.041666666666666664)
    p = p * xs + T(0.16666666666666666)
    p = p * xs + T(0.5)
    p = p * xs + T(1.0)
    return xs * p if small else _exp(x) - T(1)


@_inline
def _log1p_unit(t):
    # log(1 + t) = 2 atanh(t / (2 + t)) for 0 <= t <= 1: a series of positive terms
    T = type(t)
    f = t / (T(2) + t)
    f2 = f * f
    p = T(0.02857142857142857)
    p = p * f2 + T(0.030303030303030304)
    p = p * f2 + T(0.03225806451612903)
    p = p * f2 + T(0.034482758620689655)
    p = p * f2 + T(0.037037037037037035)
    p = p * f2 + T(0.04)
    p = p * f2 + T(0.043478260869565216)
    p = p * f2 + T(0.047619047619047616)
    p = p * f2 + T(0.05263157894736842)
    p = p * f2 + T(0.058823529411764705)
    p = p * f2 + T(0.06666666666666667)
    p = p * f2 + T(0.07692307692307693)
    p = p * f2 + T(0.09090909090909091)
    p = p * f2 + T(0.1111111111111111)
    p = p * f2 + T(0.14285714285714285)
    p = p * f2 + T(0.2)
    p = p * f2 + T(0.3333333333333333)
    p = p * f2 + T(1)
    return T(2) * f * p


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
def _sigmoid_from(z, e):
    # sigmoid(z) given e = e^-|z| <= 1, which never overflows
    one = type(z)(1)
    return one / (one + e) if z >= 0 else e / (one + e)


@_inline
def _sigmoid(z, alpha):
    return _sigmoid_from(z, _exp(-abs(z)))


@_inline
def _tanh(z, alpha):
    # csrc/kernels/tanh.inc's formula (Cephes' rational one below |z| = 0.625, in z's own
    # precision): math.tanh is a libm call per element, 4x slower on a whole array
    T = type(z)
    x = abs(z)
    s = z * z
    p = (T(-9.64399179425052238628e-1) * s - T(9.92877231001918586564e1)) * s \
        - T(1.61468768441708447952e3)
    q = ((s + T(1.12811678491632931402e2)) * s + T(2.23548839060100448583e3)) * s \
        + T(4.84406305325125486048e3)
    small = z + z * s * (p / q)
    large = T(1) - T(2) / (_exp(T(2) * x) + T(1))
    return small if x < T(0.625) else (-large if z < 0 else large)


@_inline
def _elu(z, alpha):
    return z if z > 0 else alpha * _expm1(z)


@_inline
def _softplus(z, alpha):
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), which cannot overflow
    return _relu(z, alpha) + _log1p_unit(_exp(-abs(z)))


# selu's fixed scale and scale times alpha (Klambauer et al. 2017)
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_SCALE_ALPHA = 1.7580993408473768599402175208123


@_inline
def _selu(z, alpha):
    T = type(z)
    return T(_SELU_SCALE) * z if z > 0 else T(_SELU_SCALE_ALPHA) * _expm1(z)


@_inline
def _normal_cdf(z):
    # Phi(z) = erfc(-z / sqrt 2) / 2: no cancellation in the left tail, as 1 + erf would
    T = type(z)
    return T(0.5) * T(math.erfc(z * T(-0.7071067811865476)))


@_inline
def _gelu(z, alpha):
    return z * _normal_cdf(z)


@_inline
def _gelu_tanh_s(c):
    # (1 + tanh u) / 2 = sigmoid(2u), u = sqrt(2/pi) (c + 0.044715 c^3), c = z clipped to
    # [-10, 10] by the caller (beyond, the sigmoid is 0 or 1 to the last bit)
    T = type(c)
    return _sigmoid(T(1.5957691216057308) * c * (T(1) + T(0.044715) * c * c), c)


@_inline
def _clip10(z):
    T = type(z)
    return T(-10) if z < T(-10) else (T(10) if z > T(10) else z)


@_inline
def _gelu_tanh(z, alpha):
    return z * _gelu_tanh_s(_clip10(z))


@_inline
def _swish(z, alpha):
    return z * _sigmoid(z, alpha)


@_inline
def _mish(z, alpha):
    return z * _tanh(_softplus(z, alpha), alpha)


@_inline
def _softsign(z, alpha):
    return z / (type(z)(1) + abs(z))


@_inline
def _hard_sigmoid(z, alpha):
    # Keras 2's clip(0.2 z + 0.5, 0, 1); NaN stays NaN
    T = type(z)
    t = T(0.2) * z + T(0.5)
    return T(0) if t < 0 else (T(1) if t > 1 else t)


# Backward from the saved output a = f(z), so the pre-activation is not needed; but for
# gelu, gelu_tanh, swish and mish (not monotonic: one output, two inputs), whose backward
# functions take the saved pre-activation z in a's place.


@_inline
def _identity_backward(da, a, alpha):
    return da


@_inline
def _relu_backward(da, a, alpha):
    # a selection, not da * [a > 0]: an infinite da where a <= 0 gives 0, not nan; a NaN a
    # (which fails a > 0) is passed on, not read as a closed gate
    return da if a > 0 else (a if a != a else type(da)(0))


@_inline
def _leaky_relu_backward(da, a, alpha):
    return da * (type(a)(1) if a > 0 else (a if a != a else alpha))


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
    return da * -_expm1(-a)  # sigmoid(z) = 1 - e^-a


@_inline
def _selu_backward(da, a, alpha):
    T = type(a)
    return da * (T(_SELU_SCALE) if a > 0 else a + T(_SELU_SCALE_ALPHA))


@_inline
def _softsign_backward(da, a, alpha):
    d = type(a)(1) - abs(a)  # 1 / (1 + |z|)^2 = (1 - |a|)^2
    return da * (d * d)


@_inline
def _hard_sigmoid_backward(da, a, alpha):
    T = type(a)
    return da * (T(0.2) if a > 0 and a < 1 else (a if a != a else T(0)))


@_inline
def _gelu_backward(da, z, alpha):
    # Phi(z) + z phi(z), phi the normal density e^(-z^2/2) / sqrt(2 pi)
    T = type(z)
    return da * (_normal_cdf(z) + z * T(0.3989422804014327) * _exp(T(-0.5) * z * z))


@_inline
def _gelu_tanh_backward(da, z, alpha):
    # s + z s (1 - s) 2 du/dz, du/dz = sqrt(2/pi) (1 + 3 0.044715 z^2), z clipped as forward
    T = type(z)
    c = _clip10(z)
    s = _gelu_tanh_s(c)
    return da * (s + c * s * (T(1) - s) * T(1.5957691216057308) * (T(1) + T(0.134145) * c * c))


@_inline
def _swish_backward(da, z, alpha):
    s = _sigmoid(z, alpha)  # s (1 + z (1 - s))
    return da * (s * (type(z)(1) + z * (type(z)(1) - s)))


@_inline
def _mish_backward(da, z, alpha):
    t = _tanh(_softplus(z, alpha), alpha)  # t + z (1 - t^2) sigmoid(z)
    return da * (t + z * (type(z)(1) - t * t) * _sigmoid(z, alpha))


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


# A jitted function compiles whole, every branch of it. So each activation's kernels are
# made apart, by a factory whose closures hold the activation code as a constant: Numba
# prunes the branches of the other activations before it inlines or types anything, and
# the first relu call compiles the relu loop alone. (Closures over plain ints are cached
# on disk like any kernel: the cache key includes the values they hold.)


@functools.cache
def _activation_kernels(act):
    """The public kernels of activation `act`: forward(alpha, Z, bias, out), out = f(Z + bias)
    (bias None or a row), and backward(alpha, dA, A, Z, out), out = dA * f'(from A, or from
    the pre-activation Z for the activations in _NEEDS_Z)."""

    @_kernel
    def forward(alpha, Z, bias, out):
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
        elif act == 6:
            _forward_pass(_softplus, alpha, Z, bias, out)
        elif act == 7:
            _forward_pass(_selu, alpha, Z, bias, out)
        elif act == 8:
            _forward_pass(_gelu, alpha, Z, bias, out)
        elif act == 9:
            _forward_pass(_gelu_tanh, alpha, Z, bias, out)
        elif act == 10:
            _forward_pass(_swish, alpha, Z, bias, out)
        elif act == 11:
            _forward_pass(_mish, alpha, Z, bias, out)
        elif act == 12:
            _forward_pass(_softsign, alpha, Z, bias, out)
        else:
            _forward_pass(_hard_sigmoid, alpha, Z, bias, out)

    @_kernel
    def backward(alpha, dA, A, Z, out):
        # Z: the pre-activation, read (in A's place) by the activations in _NEEDS_Z
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
        elif act == 6:
            _backward_pass(_softplus_backward, alpha, dA, A, out)
        elif act == 7:
            _backward_pass(_selu_backward, alpha, dA, A, out)
        elif act == 8:
            _backward_pass(_gelu_backward, alpha, dA, Z, out)
        elif act == 9:
            _backward_pass(_gelu_tanh_backward, alpha, dA, Z, out)
        elif act == 10:
            _backward_pass(_swish_backward, alpha, dA, Z, out)
        elif act == 11:
            _backward_pass(_mish_backward, alpha, dA, Z, out)
        elif act == 12:
            _backward_pass(_softsign_backward, alpha, dA, A, out)
        else:
            _backward_pass(_hard_sigmoid_backward, alpha, dA, A, out)

    return forward, backward


@_kernel
def _matmul(X, W, out):
    """out = X W (BLAS)."""
    np.dot(X, W, out)


@_kernel
def _dense_gradients(X, W, l2, l1, dZ, dX, dW, db):
    """dW = X^T dZ + l2 W + l1 sign(W), db = dZ's column sums, dX = dZ W^T (dX None: not
    wanted): dense_backward once dZ is known."""
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


# The softmax and the losses take their exps apart, in one flat pass over a block of rows
# (_exp_inplace): a loop that also sums, or runs along a row of a few classes, stays
# scalar, and there the polynomial e^x is 2x slower than libm's. The block's arguments
# and exps go through a small scratch E (_exp_block), as the output may be Z.

_EXP_BLOCK = 2048  # entries of E: a block of rows, in L1


@_kernel
def _exp_inplace(E):
    """E = e^E, for a C-contiguous E."""
    flat = E.reshape(E.size)
    for k in range(flat.shape[0]):
        flat[k] = _exp(flat[k])


@_kernel
def _exp_block(Z):
    """Scratch for the rows of Z, a block at a time: E (block x cols) and M (block)."""
    rows, cols = Z.shape
    block = max(1, min(rows, _EXP_BLOCK // max(cols, 1)))
    return np.empty((block, cols), Z.dtype), np.empty(block, Z.dtype)


@_inline
def _shifted_exps(Z, r0, n, E, M):
    """M[i] = max_j Z[r0 + i, j], E[i, j] = e^(Z[r0 + i, j] - M[i]) for i < n."""
    for i in range(n):
        m = _row_max(Z, r0 + i)
        M[i] = m
        for j in range(Z.shape[1]):
            E[i, j] = Z[r0 + i, j] - m
    _exp_inplace(E[:n])


@_kernel
def _softmax(Z, log, out):
    rows, cols = Z.shape
    E, M = _exp_block(Z)
    block = E.shape[0]
    for r0 in range(0, rows, block):
        n = min(block, rows - r0)
        _shifted_exps(Z, r0, n, E, M)
        # out may be Z: its row is written only once E and M hold what is needed of it
        for i in range(n):
            s = type(M[i])(0)
            for j in range(cols):
                s += E[i, j]
            if log:
                log_s = math.log(s)
                for j in range(cols):
                    out[r0 + i, j] = (Z[r0 + i, j] - M[i]) - log_s
            else:
                for j in range(cols):
                    out[r0 + i, j] = E[i, j] / s


@_kernel
def _softmax_cross_entropy(Z, y, sample_weight, dZ):
    rows, cols = Z.shape
    weight_sum = np.float64(rows)
    if sample_weight is not None:
        weight_sum = 0.0
        for i in range(rows):
            weight_sum += np.float64(sample_weight[i])
    inv_norm = 1.0 / weight_sum
    total = 0.0
    E, M = _exp_block(Z)
    block = E.shape[0]
    for r0 in range(0, rows, block):
        n = min(block, rows - r0)
        _shifted_exps(Z, r0, n, E, M)
        for i in range(n):
            # log-sum-exp: lse = m + log(sum_j e^(z_j - m)), loss_i = lse - z_{y_i}
            r, m = r0 + i, M[i]
            s = type(m)(0)
            for j in range(cols):
                s += E[i, j]
            label = y[r]
            z_label = Z[r, label]  # read before dZ, which may be Z, is written
            w = 1.0 if sample_weight is None else np.float64(sample_weight[r])
            total += w * (np.float64(m) + np.float64(math.log(s)) - np.float64(z_label))
            scale = type(m)(w * inv_norm)
            for j in range(cols):
                dZ[r, j] = (E[i, j] / s) * scale
            dZ[r, label] = (E[i, label] / s - type(m)(1)) * scale
    return total / weight_sum


# Each loss as loss.inc's row kernels: over rows r0.. r0 + n - 1, total plus sum_i w_i
# loss_i (each row's loss summed in float64 first), and dZ_i = w_i dloss_i/dz_i inv_norm
# with the row's scale w_i inv_norm rounded once to the dtype. w holds the rows' sample
# weights, or is empty (no weights: w_i = 1). The public kernels are the mean over the
# rows (inv_norm = 1 / rows), the network step the weighted mean over its batch. One
# kernel per loss, so that a call compiles its own loss only.


@_inline
def _row_weight(w, i):
    """w_i in float64: 1 when w is empty (no weights)."""
    return np.float64(w[i]) if w.shape[0] > 0 else 1.0


@_inline
def _sigmoid_bce_terms(Z, Y, E, r0, n, w, inv_norm, dZ, total):
    """Given E[i, j] = e^-|Z[r0 + i, j]|: the losses of rows r0 .. r0 + n - 1,
    max(z, 0) - z y + log1p(e^-|z|) = log(1 + e^z) - z y without overflow, and
    dZ = w_i (sigmoid(z) - y) inv_norm on them. dZ may be Z (read first), or E."""
    for i in range(n):
        wi = _row_weight(w, r0 + i)
        scale = Z.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(Z.shape[1]):
            z, t, e = Z[r0 + i, j], Y[r0 + i, j], E[i, j]
            row += np.float64(_relu(z, None) - z * t + _log1p_unit(e))
            dZ[r0 + i, j] = (_sigmoid_from(z, e) - t) * scale
        total += wi * row
    return total


@_kernel
def _mean_squared_error_terms(P, Y, w, inv_norm, dP):
    """sum_i w_i sum_j (p - y)^2 / 2 over P's rows; dP = w_i (p - y) inv_norm."""
    total = 0.0
    for i in range(P.shape[0]):
        wi = _row_weight(w, i)
        scale = P.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(P.shape[1]):
            r = P[i, j] - Y[i, j]
            row += np.float64(r) * np.float64(r)
            dP[i, j] = r * scale
        total += wi * 0.5 * row
    return total


@_kernel
def _absolute_error_terms(P, Y, w, inv_norm, dP):
    """sum_i w_i sum_j |p - y| over P's rows; dP = w_i sign(p - y) inv_norm, where the sign
    is 0 at p = y and a NaN stays NaN (r * 0, as loss.inc writes it). dP may be P."""
    total = 0.0
    for i in range(P.shape[0]):
        wi = _row_weight(w, i)
        scale = P.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(P.shape[1]):
            r = P[i, j] - Y[i, j]
            one = type(r)(1)
            row += abs(np.float64(r))
            dP[i, j] = (one if r > 0 else (-one if r < 0 else r * type(r)(0))) * scale
        total += wi * row
    return total


@_kernel
def _huber_terms(P, Y, w, inv_norm, dP):
    """sum_i w_i sum_j huber(p - y) over P's rows with delta 1 (r^2 / 2 for |r| <= 1,
    |r| - 1/2 beyond); dP = w_i clamp(r, -1, 1) inv_norm (a NaN r stays NaN). dP may
    be P."""
    total = 0.0
    for i in range(P.shape[0]):
        wi = _row_weight(w, i)
        scale = P.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(P.shape[1]):
            r = P[i, j] - Y[i, j]
            one = type(r)(1)
            a = abs(np.float64(r))
            row += 0.5 * a * a if a <= 1.0 else a - 0.5
            dP[i, j] = (one if r > one else (-one if r < -one else r)) * scale
        total += wi * row
    return total


@_kernel
def _hinge_terms(Z, y, w, margin, squared, inv_norm, dZ):
    """sum_i w_i loss_i of the multiclass SVM loss with margin (a value of Z's dtype):
    m_j = (z_j - z_y) + margin, loss_i = sum_{j != y} max(0, m_j) (squared: max(0, m_j)^2);
    dZ_ij = w_i [m_j > 0] inv_norm (squared: 2 m_j), dZ_iy = -their sum (loss.inc's
    fm_hinge_rows: a tie m_j = 0 is no violation, a NaN m_j is one). dZ may be Z."""
    total = 0.0
    for i in range(Z.shape[0]):
        label = y[i]
        zy = Z[i, label]
        wi = _row_weight(w, i)
        scale = Z.dtype.type(wi * inv_norm)
        row = 0.0
        g_sum = 0.0
        for j in range(Z.shape[1]):
            if j == label:
                continue
            m = Z[i, j] - zy + margin
            g = type(m)(0)
            if not m <= 0:  # m > 0, or NaN
                g = m + m if squared else m * type(m)(0) + type(m)(1)
                row += np.float64(m) * np.float64(m) if squared else np.float64(m)
            g_sum += np.float64(g)
            dZ[i, j] = g * scale
        dZ[i, label] = Z.dtype.type(-g_sum) * scale
        total += wi * row
    return total


@_kernel
def _soft_target_terms(Z, T, w, kl, inv_norm, dZ):
    """sum_i w_i loss_i of the cross-entropy of softmax(z) against target rows t (kl: of
    KL(t || softmax(z)), which adds sum t log t, 0 log 0 = 0), as loss.inc's
    fm_soft_target_rows: with m = max z, s = sum e^(z - m), T = sum t, loss_i =
    sum t (m - z) + T log s; dZ_i = w_i (softmax T - t) inv_norm. A row of Z is read whole
    before its row of dZ is written: dZ may be Z."""
    rows, cols = Z.shape
    total = 0.0
    for i in range(rows):
        m = _row_max(Z, i)
        part = 0.0
        t_sum = 0.0
        for j in range(cols):
            t = np.float64(T[i, j])
            t_sum += t
            part += t * (np.float64(m) - np.float64(Z[i, j]))
            if kl and t > 0:
                part += t * math.log(t)
        s = type(m)(0)
        for j in range(cols):
            e = _exp(Z[i, j] - m)
            dZ[i, j] = e
            s += e
        wi = _row_weight(w, i)
        scale = Z.dtype.type(wi * inv_norm)
        t_sum_r = Z.dtype.type(t_sum)
        for j in range(cols):
            # as _softmax_cross_entropy_rows for one-hot rows: (e / s - 1) scale at the 1
            dZ[i, j] = (dZ[i, j] / s * t_sum_r - T[i, j]) * scale
        total += wi * (part + t_sum * np.float64(math.log(s)))
    return total


@_kernel
def _log_cosh_terms(P, Y, w, inv_norm, dP):
    """sum_i w_i sum_j log(cosh(p - y)), in float64 without overflow or cancellation:
    |r| + log1p(e^-2|r|) - log 2, and log1p(2 sinh(|r|/2)^2) for |r| <= 1; dP = w_i
    tanh(r) inv_norm. dP may be P."""
    total = 0.0
    for i in range(P.shape[0]):
        wi = _row_weight(w, i)
        scale = P.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(P.shape[1]):
            r = P[i, j] - Y[i, j]
            a = abs(np.float64(r))
            if a <= 1.0:
                h = math.sinh(0.5 * a)
                row += math.log1p(2.0 * h * h)
            else:  # a NaN r lands here, and stays NaN
                row += a + math.log1p(math.exp(-2.0 * a)) - 0.6931471805599453
            dP[i, j] = _tanh(r, None) * scale
        total += wi * row
    return total


@_inline
def _poisson_terms(Z, Y, E, r0, n, w, inv_norm, dZ, total):
    """Given E[i, j] = e^Z[r0 + i, j] (the mean mu): the half Poisson deviances of rows
    r0 .. r0 + n - 1 with the log link, y log(y) - y z - y + mu (y log y = 0 at y = 0),
    and dZ = w_i (mu - y) inv_norm on them. dZ may be Z (read first), or E."""
    for i in range(n):
        wi = _row_weight(w, r0 + i)
        scale = Z.dtype.type(wi * inv_norm)
        row = 0.0
        for j in range(Z.shape[1]):
            z, t, mu = Z[r0 + i, j], Y[r0 + i, j], E[i, j]
            t64 = np.float64(t)
            y_log_y = t64 * math.log(t64) if t > 0 else 0.0
            row += y_log_y - t64 * np.float64(z) - t64 + np.float64(mu)
            dZ[r0 + i, j] = (mu - t) * scale
        total += wi * row
    return total


@_kernel
def _sigmoid_bce_rows(Z, Y, E, r0, n, w, inv_norm, dZ, total):
    """total plus the sigmoid BCE terms of rows r0 .. r0 + n - 1 (_sigmoid_bce_terms), E
    their scratch (n rows; it may be dZ): E = e^-|z| first."""
    for i in range(n):
        for j in range(Z.shape[1]):
            E[i, j] = -abs(Z[r0 + i, j])
    _exp_inplace(E[:n])
    return _sigmoid_bce_terms(Z, Y, E, r0, n, w, inv_norm, dZ, total)


@_kernel
def _poisson_rows(Z, Y, E, r0, n, w, inv_norm, dZ, total):
    """total plus the Poisson terms of rows r0 .. r0 + n - 1 (_poisson_terms), E their
    scratch (n rows; it may be dZ): E = e^z, the means, first."""
    for i in range(n):
        for j in range(Z.shape[1]):
            E[i, j] = Z[r0 + i, j]
    _exp_inplace(E[:n])
    return _poisson_terms(Z, Y, E, r0, n, w, inv_norm, dZ, total)


@_inline
def _exp_loss_mean(loss_rows, Z, Y, dZ):
    """A public exp-loss kernel (loss_rows: _sigmoid_bce_rows or _poisson_rows): the mean
    over rows, a block of rows at a time through the scratch E (dZ may be Z)."""
    rows = Z.shape[0]
    no_weights = Z.reshape(Z.size)[:0]
    total = 0.0
    E, _ = _exp_block(Z)
    for r0 in range(0, rows, E.shape[0]):
        n = min(E.shape[0], rows - r0)
        total = loss_rows(Z, Y, E, r0, n, no_weights, 1.0 / rows, dZ, total)
    return total / rows


@_kernel
def _sigmoid_bce_mean(Z, Y, dZ):
    return _exp_loss_mean(_sigmoid_bce_rows, Z, Y, dZ)


@_kernel
def _poisson_mean(Z, Y, dZ):
    return _exp_loss_mean(_poisson_rows, Z, Y, dZ)


def _regression_mean(loss_terms, P, Y, dP):
    """A public regression loss (loss_terms: _mean_squared_error_terms,
    _absolute_error_terms or _huber_terms): the mean over rows (dP may be P)."""
    inv_rows = 1.0 / P.shape[0]
    no_weights = P.reshape(-1)[:0]
    return float(loss_terms(P, Y, no_weights, inv_rows, dP) * inv_rows)


@_inline
def _clip(g, c, s):
    """s clip(g, -c, c), NaN kept (optimizer.inc's fm_clip); c = inf and s = 1: g itself."""
    if g > c:
        g = c
    elif g < -c:
        g = -c
    return g * s


@_kernel
def _sgd(lr, c, s, param, grad):
    for i in range(param.shape[0]):
        param[i] += -lr * _clip(grad[i], c, s)


@_kernel
def _momentum(lr, mu, nesterov, c, s, param, grad, velocity):
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        v = mu * velocity[i] - lr * g
        velocity[i] = v
        if nesterov:
            param[i] += mu * v - lr * g
        else:
            param[i] += v


@_kernel
def _adam(lr, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, c1, c2, eps, c, s,
          param, grad, m, v):
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + one_minus_beta2 * g * g
        m[i], v[i] = mi, vi
        # shrink is exactly 1 without decoupled decay, and w * 1 == w bit for bit
        param[i] = param[i] * shrink - lr * (mi * c1) / (math.sqrt(vi * c2) + eps)


@_kernel
def _rmsprop(lr, rho, one_minus_rho, eps, c, s, param, grad, v):
    """v = rho v + (1 - rho) g^2; w -= lr g / (sqrt(v) + eps)"""
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        vi = rho * v[i] + one_minus_rho * g * g
        v[i] = vi
        param[i] -= lr * g / (math.sqrt(vi) + eps)


@_kernel
def _adagrad(lr, eps, c, s, param, grad, acc):
    """s += g^2; w -= lr g / (sqrt(s) + eps)"""
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        a = acc[i] + g * g
        acc[i] = a
        param[i] -= lr * g / (math.sqrt(a) + eps)


@_kernel
def _adadelta(lr, rho, one_minus_rho, eps, c, s, param, grad, v, u):
    """v = rho v + (1 - rho) g^2; d = sqrt(u + eps) / sqrt(v + eps) g;
    u = rho u + (1 - rho) d^2; w -= lr d"""
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        vi = rho * v[i] + one_minus_rho * g * g
        v[i] = vi
        d = math.sqrt(u[i] + eps) / math.sqrt(vi + eps) * g
        u[i] = rho * u[i] + one_minus_rho * d * d
        param[i] -= lr * d


@_kernel
def _adamax(corrected_lr, beta1, one_minus_beta1, beta2, eps, c, s, param, grad, m, u):
    """m = b1 m + (1 - b1) g; u = max(b2 u, |g| + eps); w -= lr / (1 - b1^t) m / u"""
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        mi = beta1 * m[i] + one_minus_beta1 * g
        m[i] = mi
        decayed, fresh = beta2 * u[i], abs(g) + eps
        ui = decayed if decayed > fresh or decayed != decayed else fresh
        u[i] = ui
        param[i] -= corrected_lr * mi / ui


@_kernel
def _nadam(cg, cm, beta1, one_minus_beta1, beta2, one_minus_beta2, c2, eps, c, s, param,
           grad, m, v):
    """m, v as Adam's; w -= (cg g + cm m) / (sqrt(v / (1 - b2^t)) + eps), cg and cm
    Nadam's coefficients (optimizer.inc)"""
    for i in range(param.shape[0]):
        g = _clip(grad[i], c, s)
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + one_minus_beta2 * g * g
        m[i], v[i] = mi, vi
        param[i] -= (cg * g + cm * mi) / (math.sqrt(vi * c2) + eps)


@_inline
def _nadam_mu(beta1, psi, t):
    """Nadam's momentum schedule: beta1 (1 - 0.5 0.96^(t psi))"""
    return beta1 * (1.0 - 0.5 * 0.96 ** (np.float64(t) * psi))


def _matrix(a):
    # the passes loop over rows and columns; any C-contiguous shape reshapes to a view
    return a if a.ndim == 2 else a.reshape(1, -1)


def _check_activation(act):
    if not 0 <= act < _N_ACTIVATIONS:
        raise ValueError(f"unknown activation code {act}")


@_kernel
def _maxout_forward(Z, out):
    _maxout_forward_pass(Z, out)


@_kernel
def _maxout_backward(dA, Z, out):
    _maxout_backward_pass(dA, Z, out)


def maxout_forward(pieces, Z, out):
    _maxout_forward(_matrix(Z), _matrix(out))


def maxout_backward(pieces, dA, Z, out):
    _maxout_backward(_matrix(dA), _matrix(Z), _matrix(out))


def activation_forward(act, alpha, Z, out):
    _check_activation(act)
    forward, _ = _activation_kernels(int(act))
    forward(Z.dtype.type(alpha), _matrix(Z), None, _matrix(out))


def _preactivation(act, A, Z):
    # A in Z's place where the activation does not read Z: one specialisation per dtype
    if act in _NEEDS_Z and Z is None:
        raise ValueError("Z: this activation's derivative needs the pre-activation")
    return A if Z is None else Z


def activation_backward(act, alpha, dA, A, Z, out):
    _check_activation(act)
    _, backward = _activation_kernels(int(act))
    Z = _preactivation(act, A, Z)
    backward(A.dtype.type(alpha), _matrix(dA), _matrix(A), _matrix(Z), _matrix(out))


def dense_forward(X, W, b, act, alpha, out, Z):
    if act == _MAXOUT:  # Z = X W + b kept, then out = the max of each unit's pieces
        _matmul(X, W, Z)
        _activation_kernels(0)[0](X.dtype.type(0), Z, b.reshape(-1), Z)
        maxout_forward(alpha, Z, out)
        return
    _check_activation(act)
    forward, _ = _activation_kernels(int(act))
    alpha = X.dtype.type(alpha)
    if Z is None:
        _matmul(X, W, out)
        forward(alpha, out, b.reshape(-1), out)
    else:  # Z = X W + b kept, then out = f(Z)
        _matmul(X, W, Z)
        _activation_kernels(0)[0](alpha, Z, b.reshape(-1), Z)
        forward(alpha, Z, None, out)


def dense_backward(dA, X, W, A, Z, act, alpha, l2, l1, dZ, dX, dW, db):
    t = X.dtype.type
    if act == _MAXOUT:  # dZ is as wide as W: k columns per unit of dA
        maxout_backward(alpha, dA, Z, dZ)
    else:
        _check_activation(act)
        _, backward = _activation_kernels(int(act))
        backward(t(alpha), dA, A, _preactivation(act, A, Z), dZ)
    _dense_gradients(X, W, t(l2), t(l1), dZ, dX, dW, db.reshape(-1))


def softmax(Z, log, out):
    _softmax(Z, bool(log), out)


def softmax_cross_entropy(Z, y, sample_weight, dZ):
    return float(_softmax_cross_entropy(Z, y, sample_weight, dZ))


def sigmoid_binary_cross_entropy(Z, Y, dZ):
    return float(_sigmoid_bce_mean(Z, Y, dZ))


def mean_squared_error(P, Y, dP):
    return _regression_mean(_mean_squared_error_terms, P, Y, dP)


def poisson(Z, Y, dZ):
    return float(_poisson_mean(Z, Y, dZ))


def absolute_error(P, Y, dP):
    return _regression_mean(_absolute_error_terms, P, Y, dP)


def huber(P, Y, dP):
    return _regression_mean(_huber_terms, P, Y, dP)


@_kernel
def _weight_sum(w):
    """sum w in float64, in order (as _softmax_cross_entropy and the C core sum it)."""
    total = 0.0
    for i in range(w.shape[0]):
        total += np.float64(w[i])
    return total


def _weighted_mean(loss_terms, Z, y, sample_weight, dZ, *options):
    """A public loss with sample weights (loss_terms(Z, y, w, *options, inv_norm, dZ)):
    the weighted mean over the rows (dZ may be Z)."""
    w = Z.reshape(-1)[:0] if sample_weight is None else sample_weight
    weight_sum = float(Z.shape[0]) if sample_weight is None else _weight_sum(sample_weight)
    inv_norm = 1.0 / weight_sum
    return float(loss_terms(Z, y, w, *options, inv_norm, dZ) * inv_norm)


def multiclass_hinge(Z, y, sample_weight, margin, squared, dZ):
    return _weighted_mean(_hinge_terms, Z, y, sample_weight, dZ, Z.dtype.type(margin),
                          bool(squared))


def categorical_cross_entropy(Z, T, sample_weight, dZ):
    return _weighted_mean(_soft_target_terms, Z, T, sample_weight, dZ, False)


def kl_divergence(Z, T, sample_weight, dZ):
    return _weighted_mean(_soft_target_terms, Z, T, sample_weight, dZ, True)


def log_cosh(P, Y, sample_weight, dP):
    return _weighted_mean(_log_cosh_terms, P, Y, sample_weight, dP)


@_kernel
def _all_finite(flat):
    # x - x is NaN for an infinity or a NaN; runs of OR-ed tests vectorise, with an early
    # exit between them
    for start in range(0, flat.shape[0], 4096):
        bad = False
        for i in range(start, min(start + 4096, flat.shape[0])):
            bad |= not (flat[i] - flat[i] == 0)
        if bad:
            return False
    return True


def all_finite(X, n_threads=1):
    """Whether every element of the C-contiguous float array X is finite (one thread)."""
    return bool(_all_finite(X.reshape(-1)))


@_kernel
def _classification_counts(Z, y, k, confusion):
    confusion[:, :] = 0
    hits = nans = 0
    for i in range(Z.shape[0]):
        label_score = Z[i, y[i]]
        best = above = 0
        nan = False
        for j in range(Z.shape[1]):
            nan |= Z[i, j] != Z[i, j]
            above += Z[i, j] > label_score
            if Z[i, j] > Z[i, best]:
                best = j
        if nan:
            nans += 1
            continue
        confusion[y[i], best] += 1
        hits += above < k
    return hits, nans


def classification_counts(Z, y, k, confusion):
    """metrics.inc's fm_classification_counts: the confusion matrix and (top-k hits, NaN
    rows)."""
    hits, nans = _classification_counts(Z, y, k, confusion)
    return int(hits), int(nans)


@_kernel
def _log_loss(Z, y, w):
    total = weight_sum = 0.0
    for i in range(Z.shape[0]):
        m = Z[i, 0]
        for j in range(1, Z.shape[1]):
            m = max(m, Z[i, j])
        s = 0.0
        for j in range(Z.shape[1]):
            s += np.float64(_exp(Z[i, j] - m))
        row = (np.float64(m) - np.float64(Z[i, y[i]])) + math.log(s)
        weight = np.float64(w[i]) if w.shape[0] else 1.0
        total += weight * row
        weight_sum += weight
    return total / weight_sum


def log_loss(Z, y, sample_weight):
    """metrics.inc's fm_log_loss: the mean (weighted) softmax cross-entropy, value only."""
    return float(_log_loss(Z, y, Z[0, :0] if sample_weight is None else sample_weight))


@_kernel
def regression_sums(P, Y, ss_res, ss_tot):
    """metrics.inc's fm_regression_sums: per output, sum (P - Y)^2 and sum (Y - mean)^2."""
    rows, cols = Y.shape
    for j in range(cols):
        mean = 0.0
        for i in range(rows):
            mean += np.float64(Y[i, j])
        mean /= rows
        tot = res = 0.0
        for i in range(rows):
            d = np.float64(Y[i, j]) - mean
            tot += d * d
            e = np.float64(P[i, j]) - np.float64(Y[i, j])
            res += e * e
        ss_tot[j] = tot
        ss_res[j] = res


def optimizer_update(kind, lr, momentum, beta1, beta2, eps, weight_decay, rho, momentum_decay,
                     clip_value, grad_scale, step, param, grad, state1, state2, decay):
    # The scalars are rounded to the parameters' dtype here, in the same order as
    # numpy_backend, so that both backends see the same float32 coefficients.
    t = param.dtype.type
    c, s = t(clip_value) if clip_value else t(np.inf), t(grad_scale)
    if kind == 0:
        _sgd(t(lr), c, s, param, grad)
    elif kind in (1, 2):
        _momentum(t(lr), t(momentum), kind == 2, c, s, param, grad, state1)
    elif kind in (3, 4):
        shrink = t(1)
        if kind == 4 and decay and weight_decay != 0:
            shrink = t(1.0 - t(lr) * weight_decay)  # decoupled weight decay
        _adam(t(lr), shrink, t(beta1), t(1 - beta1), t(beta2), t(1 - beta2),
              t(1.0 / (1.0 - beta1**step)), t(1.0 / (1.0 - beta2**step)), t(eps), c, s, param,
              grad, state1, state2)
    elif kind == 5:
        _rmsprop(t(lr), t(rho), t(1 - rho), t(eps), c, s, param, grad, state1)
    elif kind == 6:
        _adagrad(t(lr), t(eps), c, s, param, grad, state1)
    elif kind == 7:
        _adadelta(t(lr), t(rho), t(1 - rho), t(eps), c, s, param, grad, state1, state2)
    elif kind == 8:
        _adamax(t(lr / (1.0 - beta1**step)), t(beta1), t(1 - beta1), t(beta2), t(eps), c, s,
                param, grad, state1, state2)
    elif kind == 9:
        mu_t = nadam_mu(beta1, momentum_decay, step)
        mu_next = nadam_mu(beta1, momentum_decay, step + 1)
        product = nadam_mu_product(beta1, momentum_decay, step)
        _nadam(t(lr * (1.0 - mu_t) / (1.0 - product)),
               t(lr * mu_next / (1.0 - product * mu_next)), t(beta1), t(1 - beta1), t(beta2),
               t(1 - beta2), t(1.0 / (1.0 - beta2**step)), t(eps), c, s, param, grad, state1,
               state2)
    else:
        raise ValueError(f"unknown optimizer code {kind}")


# -- The training engine ----------------------------------------------------------------
#
# NetworkPlan's engine runs a whole step (forward, loss and gradient, backward, penalty,
# update) or a whole epoch in ONE jitted call over the plan's buffers, as
# csrc/kernels/network.inc does: composed in Python from the kernels above, a step pays
# a dispatch per kernel and a BLAS call per product, which on small networks cost more
# than the arithmetic. Small products run as loops that vectorise (gemm.inc's forms);
# large ones go to BLAS through np.dot.
#
# A step is an epoch of one batch: one kernel, _train, for both (a second one would
# compile all of it again). The buffers reach the jitted code as one numba.typed.List of
# 2-D arrays (vectors as 1 x n views), built once per plan: one argument to unbox per
# call, and one compiled specialisation per dtype whatever the number of layers. The
# labels (int64) and the targets (float) are separate arguments, the unused one empty, so
# that both kinds of loss share that specialisation. Per layer, _SLOTS arrays:

_W, _B, _DW, _DB, _S1W, _S2W, _S1B, _S2B, _A, _DA, _WT, _D, _ZP = range(13)
_SLOTS = 13  # _ZP: the pre-activation kept for _NEEDS_Z layers (else an empty matrix)
# then six more: the hyper-parameters in the plan's dtype (_H_* below), the activation
# alphas in the plan's dtype, a scratch row as long as the widest layer input, and the
# batch buffers of a shuffled epoch: X's gathered rows, the targets' (an empty matrix
# with labels, which are int64 and an argument apart) and the weights' (a row).
_H_LR, _H_MU, _H_B1, _H_1MB1, _H_B2, _H_1MB2, _H_EPS, _H_SHRINK, _H_L2, _H_L1 = range(10)
_H_DROP_SCALE = 10  # 1 / (1 - dropout)
# rho and 1 - rho (RMSprop, Adadelta), the clip value (inf: none) and the gradients' factor
# of global-norm clipping (1: none), which _train sets every step
_H_RHO, _H_1MRHO, _H_CLIP, _H_SCALE = range(11, 15)
_N_HYPER = 15
# float64 parameters, rounded nowhere: beta1, beta2 (bias corrections), l2, l1 (the loss),
# the learning rate and Nadam's momentum_decay (Nadam's coefficients), Nadam's product
# mu_1 ... mu_t and its step t (a cache, as fm_network's), the clip norm (0: none), the
# max norm (0: none), then the activity penalties on the hidden layers' outputs (0: none)
(_F_B1, _F_B2, _F_L2, _F_L1, _F_LR, _F_PSI, _F_PRODUCT, _F_PRODUCT_STEP, _F_CLIP_NORM,
 _F_MAX_NORM, _F_ACT_L2, _F_ACT_L1) = range(12)
_N_HYPER64 = 12
# int64 settings and state: optimizer code, loss code, step count, layers, the dropout
# hash's key and threshold (network.inc's fm_dropout; threshold 0: no dropout), whether
# l2 and l1 are divided by each batch's weight sum (penalty "per_sample"), the addresses
# of the loss's and the optimizer's C functions, then those of each layer's forward
# activation pass and of each layer's backward pass (see "Per-configuration passes")
(_I_OPT, _I_LOSS, _I_STEP, _I_LAYERS, _I_DROP_KEY, _I_DROP_THRESHOLD, _I_PER_SAMPLE,
 _I_LOSS_CALL, _I_UPDATE_CALL, _I_CALLS) = range(10)

# The fused step: networks whose every weight matrix has at most _FUSED_MAX_WEIGHTS
# entries run forward, loss and backward through every layer a block of rows at a time,
# adding into dW and db, so that a block's activations stay in cache: network.inc's
# rule, a block holds _FUSED_BYTES of activations and gradients (8 to 512 rows).
_FUSED_BYTES = 256 * 1024
_FUSED_MAX_WEIGHTS = 32768
# Layer-at-a-time, a product of at most this many multiply-adds skips BLAS (as the C
# backend's default small_gemm_flops): its call costs more than the arithmetic.
_SMALL_GEMM_FLOPS = 65536
# An output at least this wide is the one the inner loop runs along (gemm.inc's FM_WIDE).
_WIDE = 16


@_inline
def _forward_pass_inplace(f, alpha, Z, bias):
    # Z is read and written through one array: with a separate `out` that is the same
    # memory, LLVM's overlap check fails at run time and the loop runs unvectorised
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = f(Z[i, j] + bias[j], alpha)


@_inline
def _forward_pass_keep(f, alpha, A, bias, K):
    # the product is in K (which may be A itself): K = K + bias kept, A = f(K)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            k = K[i, j] + bias[j]
            K[i, j] = k
            A[i, j] = f(k, alpha)


@_inline
def _maxout_winner(K, i, j0, pieces):
    # the first maximum of K[i, j0 : j0 + pieces], or its first NaN (np.argmax's rule)
    best = 0
    for p in range(1, pieces):
        z, top = K[i, j0 + p], K[i, j0 + best]
        if z > top or (z != z and top == top):
            best = p
    return best


@_inline
def _maxout_forward_pass(K, A):
    # A[i, j] = the max of unit j's pieces K[i, j k : j k + k]; A may be K's memory (each
    # output lands below the pieces still to read)
    pieces = K.shape[1] // A.shape[1]
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] = K[i, j * pieces + _maxout_winner(K, i, j * pieces, pieces)]


@_inline
def _maxout_backward_pass(dA, K, dZ):
    # dZ (K's shape; may be K) = dA at each unit's winning piece, 0 at the others
    pieces = K.shape[1] // dA.shape[1]
    zero = dZ.dtype.type(0)
    for i in range(dA.shape[0]):
        for j in range(dA.shape[1]):
            best = _maxout_winner(K, i, j * pieces, pieces)
            for p in range(pieces):
                dZ[i, j * pieces + p] = dA[i, j] if p == best else zero


@_inline
def _relu_backward_inplace(da, a, alpha):
    # _relu_backward for dZ updated in place: storing back the loaded da would let LLVM
    # turn the selection into a conditional store, which does not vectorise; da + 0 is
    # da (but for a -0 gradient, which becomes +0) and keeps the loop a vector select.
    zero = type(da)(0)
    return da + zero if a > 0 else (a if a != a else zero)


@_inline
def _backward_pass_inplace(f, alpha, dZ, A):
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            dZ[i, j] = f(dZ[i, j], A[i, j], alpha)


@_inline
def _axpy_tail(a, B, c, p):
    """c += sum over q >= p of a[q] B[q, :], four rows of B per pass."""
    k, n = B.shape
    while p + 4 <= k:
        a0, a1, a2, a3 = a[p], a[p + 1], a[p + 2], a[p + 3]
        for j in range(n):
            c[j] += a0 * B[p, j] + a1 * B[p + 1, j] + a2 * B[p + 2, j] + a3 * B[p + 3, j]
        p += 4
    r = k - p
    if r == 3:
        a0, a1, a2 = a[p], a[p + 1], a[p + 2]
        for j in range(n):
            c[j] += a0 * B[p, j] + a1 * B[p + 1, j] + a2 * B[p + 2, j]
    elif r == 2:
        a0, a1 = a[p], a[p + 1]
        for j in range(n):
            c[j] += a0 * B[p, j] + a1 * B[p + 1, j]
    elif r == 1:
        a0 = a[p]
        for j in range(n):
            c[j] += a0 * B[p, j]


@_kernel
def _mm_axpy(A, B, C):
    """C = A B, the inner loop along contiguous rows of B and C (gemm.inc's axpy form).

    Four rows of B per pass, so each element of C is loaded and stored once per four
    multiply-adds; the first pass writes C (the same bits as adding to zeros), spelt
    out for k < 4 (the spiral's input layer has k = 2), each case a plain loop that
    LLVM vectorises.
    """
    m, k = A.shape
    n = B.shape[1]
    if k == 0:
        for i in range(m):
            for j in range(n):
                C[i, j] = 0
    elif k == 1:
        for i in range(m):
            a0 = A[i, 0]
            for j in range(n):
                C[i, j] = a0 * B[0, j]
    elif k == 2:
        for i in range(m):
            a0, a1 = A[i, 0], A[i, 1]
            for j in range(n):
                C[i, j] = a0 * B[0, j] + a1 * B[1, j]
    elif k == 3:
        for i in range(m):
            a0, a1, a2 = A[i, 0], A[i, 1], A[i, 2]
            for j in range(n):
                C[i, j] = a0 * B[0, j] + a1 * B[1, j] + a2 * B[2, j]
    else:
        for i in range(m):
            a0, a1, a2, a3 = A[i, 0], A[i, 1], A[i, 2], A[i, 3]
            for j in range(n):
                C[i, j] = a0 * B[0, j] + a1 * B[1, j] + a2 * B[2, j] + a3 * B[3, j]
            _axpy_tail(A[i], B, C[i], 4)


# Reassociation (only) lets LLVM vectorise a dot product's sum into partial sums, as
# gemm.inc's eight accumulators do explicitly.
_reducing_kernel = numba.njit(nogil=True, cache=True, error_model="numpy",
                              fastmath={"reassoc"})


@_reducing_kernel
def _mm_dot(A, Bt, C):
    """C = A Bt^T for a narrow C: dot products of contiguous rows (gemm.inc's dot form),
    up to four columns of C per pass over a row of A."""
    m, k = A.shape
    n = Bt.shape[0]
    zero = A.dtype.type(0)
    for i in range(m):
        j = 0
        while n - j >= 4:
            s0 = s1 = s2 = s3 = zero
            for p in range(k):
                a = A[i, p]
                s0 += a * Bt[j, p]
                s1 += a * Bt[j + 1, p]
                s2 += a * Bt[j + 2, p]
                s3 += a * Bt[j + 3, p]
            C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = s0, s1, s2, s3
            j += 4
        r = n - j
        if r == 3:
            s0 = s1 = s2 = zero
            for p in range(k):
                a = A[i, p]
                s0 += a * Bt[j, p]
                s1 += a * Bt[j + 1, p]
                s2 += a * Bt[j + 2, p]
            C[i, j], C[i, j + 1], C[i, j + 2] = s0, s1, s2
        elif r == 2:
            s0 = s1 = zero
            for p in range(k):
                a = A[i, p]
                s0 += a * Bt[j, p]
                s1 += a * Bt[j + 1, p]
            C[i, j], C[i, j + 1] = s0, s1
        elif r == 1:
            s0 = zero
            for p in range(k):
                s0 += A[i, p] * Bt[j, p]
            C[i, j] = s0


@_kernel
def _mm_tn_add(X, D, C, acc):
    """C += X^T D with X (k x m), D (k x n): the weight gradient of a block of k rows.

    Along C's rows when C is wide (or short); otherwise C^T = D^T X row by row into
    `acc` (1 x m), added into C's columns.
    """
    k, m = X.shape
    n = D.shape[1]
    if n >= _WIDE or m < _WIDE:
        Xt = X.T
        for i in range(m):
            _axpy_tail(Xt[i], D, C[i], 0)
    else:
        a = acc[0, :m]
        for j in range(n):
            for i in range(m):
                a[i] = 0
            _axpy_tail(D[:, j], X, a, 0)
            for i in range(m):
                C[i, j] += a[i]


@_kernel
def _transpose(W, Wt):
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            Wt[j, i] = W[i, j]


@_inline
def _layer_product(inp, W, Wt, Z, small):
    """Z = inp W: in loops when small (Wt = W^T, for a narrow Z), else by BLAS."""
    if not small:
        np.dot(inp, W, Z)
    elif W.shape[1] >= _WIDE or inp.shape[0] < _WIDE:
        _mm_axpy(inp, W, Z)
    else:
        _mm_dot(inp, Wt, Z)


@_inline
def _layer_input_gradient(dZ, W, Wt, dX, small):
    """dX = dZ W^T: in loops when small (Wt = W^T), else by BLAS."""
    if not small:
        np.dot(dZ, W.T, dX)
    elif W.shape[0] >= _WIDE or dZ.shape[0] < _WIDE:
        _mm_axpy(dZ, Wt, dX)
    else:
        _mm_dot(dZ, W, dX)


@_kernel
def _add_column_sums(M, out):
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            out[j] += M[i, j]


@_kernel
def _softmax_cross_entropy_rows(Z, y, w, inv_norm, dZ):
    """_softmax_cross_entropy on some rows of a batch: returns sum_i w_i loss_i, and
    dZ_i = w_i (softmax - onehot) inv_norm. dZ (C-contiguous) is not Z."""
    rows, cols = Z.shape
    # e^(z_ij - m_i) in one pass over the whole block, a loop that vectorises: along a row
    # of a few classes it would not
    for i in range(rows):
        m = _row_max(Z, i)
        for j in range(cols):
            dZ[i, j] = Z[i, j] - m
    flat = dZ.reshape(rows * cols)
    for k in range(flat.shape[0]):
        flat[k] = _exp(flat[k])
    total = 0.0
    for i in range(rows):
        m = _row_max(Z, i)
        s = type(m)(0)
        for j in range(cols):
            s += dZ[i, j]
        label = y[i]
        z_label = Z[i, label]
        e_label = dZ[i, label]
        wi = _row_weight(w, i)
        scale = type(m)(wi * inv_norm)
        total += wi * (np.float64(m) + np.float64(math.log(s)) - np.float64(z_label))
        for j in range(cols):
            dZ[i, j] = (dZ[i, j] / s) * scale
        dZ[i, label] = (e_label / s - type(m)(1)) * scale
    return total


@_kernel
def _add_activity_penalty(A, w, inv_norm, l2, l1, dA):
    """A hidden layer's activity penalty, as network.inc's fm_add_activity_penalty: with
    c_i = w_i inv_norm (w empty: w_i = 1), dA_ij += c_i (l2 A_ij + l1 sign(A_ij)), c_i l2
    and c_i l1 rounded to the dtype; returns sum_i w_i (l2/2 sum_j A_ij^2 + l1 sum_j
    |A_ij|) in float64, row by row."""
    weighted = w.shape[0] > 0
    total = 0.0
    for i in range(A.shape[0]):
        w_i = np.float64(w[i]) if weighted else 1.0
        c2, c1 = A.dtype.type(w_i * inv_norm * l2), A.dtype.type(w_i * inv_norm * l1)
        sq = 0.0
        ab = 0.0
        for j in range(A.shape[1]):
            v = A[i, j]
            dA[i, j] = dA[i, j] + (c2 * v + c1 * np.sign(v))
            sq += np.float64(v) * np.float64(v)
            ab += abs(np.float64(v))
        total += w_i * (0.5 * l2 * sq + l1 * ab)
    return total


@_kernel
def _add_penalty(W, dW, l2, l1, l2_64, l1_64):
    """dW += l2 W + l1 sign(W); returns 0.5 l2 sum W^2 + l1 sum |W| (in float64). The
    branches test the float64 strengths, as dense.inc's fm_add_penalty."""
    sq = 0.0
    ab = 0.0
    if l2_64 != 0 and l1_64 != 0:
        for i in range(W.shape[0]):
            w = W[i]
            dW[i] = dW[i] + l2 * w + l1 * np.sign(w)
            sq += np.float64(w) * np.float64(w)
            ab += abs(np.float64(w))
    elif l2_64 != 0:
        for i in range(W.shape[0]):
            w = W[i]
            dW[i] = dW[i] + l2 * w
            sq += np.float64(w) * np.float64(w)
    elif l1_64 != 0:
        for i in range(W.shape[0]):
            w = W[i]
            dW[i] = dW[i] + l1 * np.sign(w)
            ab += abs(np.float64(w))
    return 0.5 * l2_64 * sq + l1_64 * ab


@_inline
def _layer_weight_gradient(inp, dZ, dW, Wt, acc, small, accumulate):
    """dW (+)= inp^T dZ: in loops (always adding) when small, else by BLAS."""
    if small:
        _mm_tn_add(inp, dZ, dW, acc)
    elif accumulate:
        # a BLAS layer has no use for W^T: its buffer takes the block's product
        block_dW = Wt.reshape(dW.shape)
        np.dot(inp.T, dZ, block_dW)
        for i in range(dW.shape[0]):
            for j in range(dW.shape[1]):
                dW[i, j] += block_dW[i, j]
    else:
        np.dot(inp.T, dZ, dW)


@_inline
def _mix32(h):
    """murmur3's finaliser on a uint64 that holds 32 bits."""
    m = np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & m
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & m
    h ^= h >> np.uint64(16)
    return h


@_kernel
def _dropout(ints, scale, step, layer, row0, values, out):
    """out = values * (kept ? scale : 0): network.inc's fm_dropout, the same bits."""
    m = np.uint64(0xFFFFFFFF)
    golden = np.uint64(0x9E3779B9)
    threshold = np.uint64(ints[_I_DROP_THRESHOLD])
    inner = _mix32(((np.uint64(step) & m) * golden + np.uint64(layer)) & m)
    key = _mix32(np.uint64(ints[_I_DROP_KEY]) ^ inner)
    zero = scale - scale
    rows, width = values.shape
    for i in range(rows):
        base = (np.uint64(row0 + i) * np.uint64(width)) & m
        for j in range(width):
            h = _mix32((key + ((base + np.uint64(j)) & m) * golden) & m)
            out[i, j] = values[i, j] * (scale if (h >> np.uint64(8)) >= threshold else zero)


@_kernel
def _labels_in_range(labels, n_classes):
    for i in range(labels.shape[0]):
        if labels[i] < 0 or labels[i] >= n_classes:
            return False
    return True


@_kernel
def _gather_rows(X, labels, targets, w, order, start, rows, labelled, X_batch, labels_batch,
                 targets_batch, w_batch):
    """Rows order[start:start + rows] of X, of the labels (labelled) or else the targets,
    and of the weights w (unless empty), into the batch buffers' first rows."""
    weighted = w.shape[0] > 0
    for r in range(rows):
        src = order[start + r]
        for j in range(X.shape[1]):
            X_batch[r, j] = X[src, j]
        if labelled:
            labels_batch[r] = labels[src]
        else:
            for j in range(targets.shape[1]):
                targets_batch[r, j] = targets[src, j]
        if weighted:
            w_batch[r] = w[src]


@_kernel
def _gradient_blocks(bufs, n_layers, rows, itemsize):
    """A step's rows per block, and whether the blocks add into dW and db (the fused
    path: small networks go a block of rows at a time through the whole network, so that
    a block's activations stay in cache; others one layer at a time, network.inc's two
    paths). Writes W^T where the products run in loops, and zeroes what blocks add into."""
    per_row = 0
    for layer in range(n_layers):
        per_row += 2 * bufs[layer * _SLOTS + _A].shape[1] * itemsize  # A and dA
    fused_rows = min(max(_FUSED_BYTES // per_row, 8), 512) // 8 * 8
    fused = rows > fused_rows
    for layer in range(n_layers):
        if bufs[layer * _SLOTS + _W].size > _FUSED_MAX_WEIGHTS:
            fused = False
    block = fused_rows if fused else rows
    for layer in range(n_layers):
        s = layer * _SLOTS
        W = bufs[s + _W]
        small = block * W.size <= _SMALL_GEMM_FLOPS
        if small:
            _transpose(W, bufs[s + _WT])
        if small or fused:
            bufs[s + _DW][:] = 0  # added into block by block
        bufs[s + _DB][:] = 0
    return block, fused


@_inline
def _forward_product(X, W, out):
    """out = X W, without BLAS for a small product."""
    rows = X.shape[0]
    if rows * W.size > _SMALL_GEMM_FLOPS:
        np.dot(X, W, out)
    elif W.shape[1] >= _WIDE or rows < _WIDE:
        _mm_axpy(X, W, out)
    else:
        _mm_dot(X, np.ascontiguousarray(W.T), out)


# -- Per-configuration passes -------------------------------------------------------------
#
# The engine's kernels (_train, _forward) hold no activation, loss or optimizer code:
# they call it through the addresses in `ints`, a table of function pointers built per
# network (as the C core selects its kernels per CPU). Each address is that of a Numba C
# function (cfunc) made for one code and dtype, the first time a network needs it, and
# cached on disk like the kernels. Numba compiles a jitted function whole, with all its
# branches and callees, so a kernel that selected these itself would compile every
# activation, loss and optimizer on the first step; this way the engine compiles once
# per dtype, and a network compiles only the activations, loss and optimizer it uses.
# The C functions take raw pointers to C-contiguous data (numba.carray views them as
# arrays again) and the sizes.


@intrinsic
def _call(typingctx, address, result, args):
    """Calls the C function at `address` with the tuple `args`, each array as a pointer to
    its data (it must be C-contiguous); returns a value of result's type (None: none).
    The arguments' types must be those of the function's signature: nothing checks."""
    if not isinstance(args, types.BaseTuple):
        return None
    if any(isinstance(a, types.Array) and a.layout != "C" for a in args):
        return None
    c_args = [types.CPointer(a.dtype) if isinstance(a, types.Array) else types.unliteral(a)
              for a in args]
    returns = types.void if isinstance(result, types.NoneType) else types.unliteral(result)

    def codegen(context, builder, signature, llargs):
        values = cgutils.unpack_tuple(builder, llargs[2], len(args))
        c_values = [context.make_array(a)(context, builder, v).data
                    if isinstance(a, types.Array) else v for a, v in zip(args, values)]
        function_type = ir.FunctionType(context.get_value_type(returns),
                                        [context.get_value_type(a) for a in c_args])
        function = builder.inttoptr(llargs[0], function_type.as_pointer())
        value = builder.call(function, c_values)
        return context.get_dummy_value() if returns is types.void else value

    return returns(address, result, args), codegen


def _c_function(signature):
    return numba.cfunc(signature, cache=True, error_model="numpy")


# held while a network makes its C functions: two threads would compile them twice
_c_functions_lock = threading.Lock()


@functools.cache
def _activation_calls(act, dtype):
    """Activation act's in-place passes on arrays of dtype, as C functions:
    forward(A, bias, K, rows, cols, alpha), A = f(A + bias), or for the activations in
    _NEEDS_Z, which read the product from K (the layer's pre-activation buffer, or A
    itself), K = K + bias kept and A = f(K); and backward(dZ, A, K, rows, cols, alpha),
    dZ = dZ * f'(from A, or from the kept pre-activation K for _NEEDS_Z). act is a
    constant of these closures: Numba prunes the other activations' branches before it
    compiles."""
    T = numba.from_dtype(dtype)
    P = types.CPointer(T)
    signature = types.void(P, P, P, types.int64, types.int64, T)

    @_c_function(signature)
    def forward(A_data, bias_data, K_data, rows, cols, alpha):
        A, bias = numba.carray(A_data, (rows, cols)), numba.carray(bias_data, cols)
        if act == 0:
            _forward_pass_inplace(_identity, alpha, A, bias)
        elif act == 1:
            _forward_pass_inplace(_relu, alpha, A, bias)
        elif act == 2:
            _forward_pass_inplace(_leaky_relu, alpha, A, bias)
        elif act == 3:
            _forward_pass_inplace(_sigmoid, alpha, A, bias)
        elif act == 4:
            _forward_pass_inplace(_tanh, alpha, A, bias)
        elif act == 5:
            _forward_pass_inplace(_elu, alpha, A, bias)
        elif act == 6:
            _forward_pass_inplace(_softplus, alpha, A, bias)
        elif act == 7:
            _forward_pass_inplace(_selu, alpha, A, bias)
        elif act == 8:
            _forward_pass_keep(_gelu, alpha, A, bias, numba.carray(K_data, (rows, cols)))
        elif act == 9:
            _forward_pass_keep(_gelu_tanh, alpha, A, bias, numba.carray(K_data, (rows, cols)))
        elif act == 10:
            _forward_pass_keep(_swish, alpha, A, bias, numba.carray(K_data, (rows, cols)))
        elif act == 11:
            _forward_pass_keep(_mish, alpha, A, bias, numba.carray(K_data, (rows, cols)))
        elif act == 12:
            _forward_pass_inplace(_softsign, alpha, A, bias)
        elif act == 13:
            _forward_pass_inplace(_hard_sigmoid, alpha, A, bias)
        else:  # maxout: K (rows x cols pieces) = K + bias kept, A = its units' max
            width = cols * np.int64(alpha)
            K = numba.carray(K_data, (rows, width))
            _forward_pass_inplace(_identity, alpha, K, numba.carray(bias_data, width))
            _maxout_forward_pass(K, A)

    @_c_function(signature)
    def backward(dZ_data, A_data, K_data, rows, cols, alpha):
        dZ, A = numba.carray(dZ_data, (rows, cols)), numba.carray(A_data, (rows, cols))
        if act == 0:
            _backward_pass_inplace(_identity_backward, alpha, dZ, A)
        elif act == 1:
            _backward_pass_inplace(_relu_backward_inplace, alpha, dZ, A)
        elif act == 2:
            _backward_pass_inplace(_leaky_relu_backward, alpha, dZ, A)
        elif act == 3:
            _backward_pass_inplace(_sigmoid_backward, alpha, dZ, A)
        elif act == 4:
            _backward_pass_inplace(_tanh_backward, alpha, dZ, A)
        elif act == 5:
            _backward_pass_inplace(_elu_backward, alpha, dZ, A)
        elif act == 6:
            _backward_pass_inplace(_softplus_backward, alpha, dZ, A)
        elif act == 7:
            _backward_pass_inplace(_selu_backward, alpha, dZ, A)
        elif act == 8:
            _backward_pass_inplace(_gelu_backward, alpha, dZ, numba.carray(K_data, (rows, cols)))
        elif act == 9:
            _backward_pass_inplace(_gelu_tanh_backward, alpha, dZ,
                                   numba.carray(K_data, (rows, cols)))
        elif act == 10:
            _backward_pass_inplace(_swish_backward, alpha, dZ, numba.carray(K_data, (rows, cols)))
        elif act == 11:
            _backward_pass_inplace(_mish_backward, alpha, dZ, numba.carray(K_data, (rows, cols)))
        elif act == 12:
            _backward_pass_inplace(_softsign_backward, alpha, dZ, A)
        elif act == 13:
            _backward_pass_inplace(_hard_sigmoid_backward, alpha, dZ, A)
        else:  # maxout: the gradient, k times wider than dZ, over the kept K
            K = numba.carray(K_data, (rows, cols * np.int64(alpha)))
            _maxout_backward_pass(dZ, K, K)

    return forward, backward


_LABEL_LOSSES = (0, 6, 7)  # softmax cross-entropy and the hinge losses take labels


@functools.cache
def _loss_call(loss, dtype, margin=1.0):
    """The rows of loss code `loss` on arrays of dtype, as a C function
    loss_rows(Z, labels, targets, w, rows, cols, n_weights, inv_norm, dZ): the loss of Z's
    rows, sum_i w_i loss_i (no weights, n_weights 0: every w_i = 1), and their gradient
    dZ_i = w_i dloss_i/dz_i inv_norm: the batch's weighted mean once divided by its weight
    sum, 1 / inv_norm (network.inc's fm_output_loss). dZ is C-contiguous and not Z. The
    hinge losses' margin is a constant of the function (one compile per margin)."""
    delta = np.dtype(dtype).type(margin)
    T = numba.from_dtype(dtype)
    data = types.CPointer(T)
    signature = types.float64(data, types.CPointer(types.int64), data, data, types.int64,
                              types.int64, types.int64, types.float64, data)

    @_c_function(signature)
    def loss_rows(Z_data, labels_data, targets_data, w_data, rows, cols, n_weights, inv_norm,
                  dZ_data):
        Z, dZ = numba.carray(Z_data, (rows, cols)), numba.carray(dZ_data, (rows, cols))
        w = numba.carray(w_data, n_weights)
        if loss == 0:
            labels = numba.carray(labels_data, rows)
            return _softmax_cross_entropy_rows(Z, labels, w, inv_norm, dZ)
        if loss == 6 or loss == 7:
            labels = numba.carray(labels_data, rows)
            return _hinge_terms(Z, labels, w, delta, loss == 7, inv_norm, dZ)
        targets = numba.carray(targets_data, (rows, cols))
        if loss == 8 or loss == 10:
            return _soft_target_terms(Z, targets, w, loss == 10, inv_norm, dZ)
        if loss == 9:
            return _log_cosh_terms(Z, targets, w, inv_norm, dZ)
        if loss == 1:  # dZ is the exps' scratch first
            return _sigmoid_bce_rows(Z, targets, dZ, 0, rows, w, inv_norm, dZ, 0.0)
        if loss == 3:
            return _poisson_rows(Z, targets, dZ, 0, rows, w, inv_norm, dZ, 0.0)
        if loss == 4:
            return _absolute_error_terms(Z, targets, w, inv_norm, dZ)
        if loss == 5:
            return _huber_terms(Z, targets, w, inv_norm, dZ)
        return _mean_squared_error_terms(Z, targets, w, inv_norm, dZ)

    return loss_rows


# sgd; momentum, nesterov; adam, adamw; then rmsprop, adagrad, adadelta, adamax, nadam
_OPTIMIZER_FAMILY = (0, 1, 1, 2, 2, 3, 4, 5, 6, 7)


@functools.cache
def _update_call(family, dtype):
    """The update of an optimizer family (_OPTIMIZER_FAMILY) on arrays of dtype, as a C
    function update(kind, t, hyper, hyper64, param, grad, state1, state2, size, decay):
    optimizer_update of the optimizer code kind at step t, with the scalars already
    rounded to the dtype in hyper; decay 0 leaves out adamw's decoupled weight decay."""
    T = numba.from_dtype(dtype)
    data = types.CPointer(T)
    signature = types.void(types.int64, types.int64, data, types.CPointer(types.float64), data,
                           data, data, data, types.int64, types.int64)

    @_c_function(signature)
    def update(kind, t, hyper_data, hyper64_data, param_data, grad_data, state1_data,
               state2_data, size, decay):
        hyper = numba.carray(hyper_data, _N_HYPER)
        hyper64 = numba.carray(hyper64_data, _N_HYPER64)
        param, grad = numba.carray(param_data, size), numba.carray(grad_data, size)
        lr, c, s = hyper[_H_LR], hyper[_H_CLIP], hyper[_H_SCALE]
        T = hyper.dtype.type
        if family == 0:
            _sgd(lr, c, s, param, grad)
        elif family == 1:
            _momentum(lr, hyper[_H_MU], kind == 2, c, s, param, grad,
                      numba.carray(state1_data, size))
        elif family == 2:
            one = T(1)
            shrink = hyper[_H_SHRINK] if decay else one
            c1 = T(1.0 / (1.0 - hyper64[_F_B1] ** np.float64(t)))
            c2 = T(1.0 / (1.0 - hyper64[_F_B2] ** np.float64(t)))
            _adam(lr, shrink, hyper[_H_B1], hyper[_H_1MB1], hyper[_H_B2], hyper[_H_1MB2], c1,
                  c2, hyper[_H_EPS], c, s, param, grad, numba.carray(state1_data, size),
                  numba.carray(state2_data, size))
        elif family == 3:
            _rmsprop(lr, hyper[_H_RHO], hyper[_H_1MRHO], hyper[_H_EPS], c, s, param, grad,
                     numba.carray(state1_data, size))
        elif family == 4:
            _adagrad(lr, hyper[_H_EPS], c, s, param, grad, numba.carray(state1_data, size))
        elif family == 5:
            _adadelta(lr, hyper[_H_RHO], hyper[_H_1MRHO], hyper[_H_EPS], c, s, param, grad,
                      numba.carray(state1_data, size), numba.carray(state2_data, size))
        elif family == 6:
            corrected = T(hyper64[_F_LR] / (1.0 - hyper64[_F_B1] ** np.float64(t)))
            _adamax(corrected, hyper[_H_B1], hyper[_H_1MB1], hyper[_H_B2], hyper[_H_EPS], c, s,
                    param, grad, numba.carray(state1_data, size),
                    numba.carray(state2_data, size))
        else:
            b1, psi = hyper64[_F_B1], hyper64[_F_PSI]
            if hyper64[_F_PRODUCT_STEP] != t:  # the step's first array: P_t, once
                cached = hyper64[_F_PRODUCT_STEP]
                if cached > 0 and cached == t - 1:
                    product = hyper64[_F_PRODUCT] * _nadam_mu(b1, psi, t)
                else:  # from mu_1: the same products in the same order
                    product = 1.0
                    for i in range(1, t + 1):
                        product *= _nadam_mu(b1, psi, i)
                hyper64[_F_PRODUCT], hyper64[_F_PRODUCT_STEP] = product, t
            product = hyper64[_F_PRODUCT]
            mu_t, mu_next = _nadam_mu(b1, psi, t), _nadam_mu(b1, psi, t + 1)
            lr64 = hyper64[_F_LR]
            _nadam(T(lr64 * (1.0 - mu_t) / (1.0 - product)),
                   T(lr64 * mu_next / (1.0 - product * mu_next)), hyper[_H_B1], hyper[_H_1MB1],
                   hyper[_H_B2], hyper[_H_1MB2], T(1.0 / (1.0 - hyper64[_F_B2] ** np.float64(t))),
                   hyper[_H_EPS], c, s, param, grad, numba.carray(state1_data, size),
                   numba.carray(state2_data, size))

    return update


# -- The engine's kernels -----------------------------------------------------------------


@_kernel
def _add_output_metric(loss, Z, labels, targets, metric):
    """metric (n_out) plus the running training metric of the outputs Z of rows just
    trained, against their labels (loss codes 0, 6, 7) or targets: network.inc's
    fm_output_metric. Softmax cross-entropy and hinge: metric[c] += 1 for a row of label c
    whose first maximum is at c (no NaN in the row); categorical cross-entropy and KL
    (codes 8, 10): the same with c the first maximum of the row's targets; sigmoid BCE:
    metric[j] += 1 where
    (z > 0) == (y > 0.5); regression: metric[j] += (prediction - y)^2, the prediction
    e^z for poisson. Summed row after row in float64, in the C core's order."""
    soft = loss == 8 or loss == 10
    if loss == 0 or loss == 6 or loss == 7 or soft:
        for i in range(Z.shape[0]):
            best = 0
            nan = Z[i, 0] != Z[i, 0]
            for j in range(1, Z.shape[1]):
                nan |= Z[i, j] != Z[i, j]
                if Z[i, j] > Z[i, best]:
                    best = j
            target = 0
            if soft:
                for j in range(1, Z.shape[1]):
                    if targets[i, j] > targets[i, target]:
                        target = j
            else:
                target = labels[i]
            if not nan and best == target:
                metric[best] += 1.0
    elif loss == 1:
        half = targets.dtype.type(0.5)
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                if (Z[i, j] > 0) == (targets[i, j] > half):
                    metric[j] += 1.0
    else:
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                z = np.float64(Z[i, j])
                # libm's e^x, as the C core's exp(): one per output, accuracy before speed
                d = (math.exp(z) if loss == 3 else z) - np.float64(targets[i, j])
                metric[j] += d * d


@_inline
def _global_norm_scale(bufs, n_layers, clip_norm, c):
    """min(1, clip_norm / ||clip(g, -c, c)||_2) over every dW and db (layer by layer, W
    then b, as network.inc's update tasks), in the dtype; 1 for a norm not finite."""
    sumsq = 0.0
    for layer in range(n_layers):
        for slot in (_DW, _DB):
            g = bufs[layer * _SLOTS + slot]
            for i in range(g.shape[0]):
                for j in range(g.shape[1]):
                    gi = np.float64(_clip(g[i, j], c, type(c)(1)))
                    sumsq += gi * gi
    norm = math.sqrt(sumsq)
    scale = clip_norm / norm if math.isfinite(norm) and norm > clip_norm else 1.0
    return type(c)(scale)


@_inline
def _max_norm(W, c):
    """network.inc's fm_max_norm_task: columns of W longer than c scaled to norm c (the
    norms summed row by row in double, the scale rounded to W's dtype)."""
    for j in range(W.shape[1]):
        squares = 0.0
        for i in range(W.shape[0]):
            squares += np.float64(W[i, j]) * np.float64(W[i, j])
        norm = math.sqrt(squares)
        if norm > c:
            scale = W.dtype.type(c / norm)
            for i in range(W.shape[0]):
                W[i, j] *= scale


@_kernel
def _train(bufs, X, labels, targets, w, order, batch_size, batch_losses, metric,
           labels_batch, ints, hyper64, update):
    """Minibatches of batch_size rows over X, or over the rows `order` selects (gathered,
    in that order) when it is not empty, with their sample weights w (empty: none); each
    batch's loss (penalties included, before its update) into batch_losses (unless
    empty), and the epoch's running training metric into metric (unless empty: zeroed,
    then _add_output_metric of every batch's outputs); returns the mean loss per row. A
    step is one batch of all of X; update False leaves the weights and the step count as
    they were (the batch's gradients alone). A batch whose weights sum to 0 or less, or
    labels out of range, raise ValueError before anything of it changes (the C core's
    FM_EINVAL and FM_ELABEL). Products of at most _SMALL_GEMM_FLOPS multiply-adds run in
    loops, larger ones in BLAS."""
    n_layers = ints[_I_LAYERS]
    g = n_layers * _SLOTS
    last = (n_layers - 1) * _SLOTS
    hyper, alphas, acc = bufs[g][0], bufs[g + 1][0], bufs[g + 2]
    X_batch, targets_batch, w_batch = bufs[g + 3], bufs[g + 4], bufs[g + 5][0]
    loss, kind = ints[_I_LOSS], ints[_I_OPT]
    labelled = loss == 0 or loss == 6 or loss == 7  # _LABEL_LOSSES
    # with dropout, a layer reads the dropped outputs _D of the one below
    dropping = ints[_I_DROP_THRESHOLD] > 0
    below = _D if dropping else _A
    shuffled = order.shape[0] > 0
    n_visit = order.shape[0] if shuffled else X.shape[0]
    if shuffled:
        for i in range(n_visit):
            if order[i] < 0 or order[i] >= X.shape[0]:
                raise ValueError("order: row index out of range")
    weighted = w.shape[0] > 0
    measured = metric.shape[0] > 0
    if measured:
        metric[:] = 0
    total = 0.0
    batch = 0
    for start in range(0, n_visit, batch_size):
        stop = min(start + batch_size, n_visit)
        rows = stop - start
        if shuffled:
            _gather_rows(X, labels, targets, w, order, start, rows, labelled, X_batch,
                         labels_batch, targets_batch, w_batch)
            X_rows, labels_rows = X_batch[:rows], labels_batch[:rows]
            # without weights, an empty slice of w_batch
            targets_rows, w_rows = targets_batch[:rows], w_batch[: rows if weighted else 0]
        else:
            X_rows, labels_rows = X[start:stop], labels[start:stop]
            targets_rows, w_rows = targets[start:stop], w[start:stop]
        weight_sum = np.float64(rows)
        if weighted:
            weight_sum = 0.0
            for i in range(rows):
                weight_sum += np.float64(w_rows[i])
        if not weight_sum > 0:
            raise ValueError("sample_weight: the batch's weights must sum to more than 0")
        if labelled and not _labels_in_range(labels_rows, bufs[last + _W].shape[1]):
            raise ValueError("y: class labels out of range")

        # dW and db, and the data loss (a weighted mean), a block of rows at a time
        block, fused = _gradient_blocks(bufs, n_layers, rows, X.itemsize)
        t = ints[_I_STEP] + 1
        inv_norm = 1.0 / weight_sum
        data_loss = 0.0  # with the activity penalties, block by block as network.inc
        act_l2, act_l1 = hyper64[_F_ACT_L2], hyper64[_F_ACT_L1]
        activity = act_l2 != 0 or act_l1 != 0
        for r0 in range(0, rows, block):
            n = min(block, rows - r0)
            for layer in range(n_layers):
                s = layer * _SLOTS
                W = bufs[s + _W]
                small = block * W.size <= _SMALL_GEMM_FLOPS
                Z = bufs[s + _A][:n]
                # the product goes to the kept pre-activation where the layer has one
                K = bufs[s + _ZP][:n] if bufs[s + _ZP].shape[1] > 0 else Z
                # X stays apart from the buffers (a read-only X is another type)
                if layer == 0:
                    inputs = X_rows[r0 : r0 + n]
                else:
                    inputs = bufs[s - _SLOTS + below][:n]
                _layer_product(inputs, W, bufs[s + _WT], K, small)
                _call(ints[_I_CALLS + layer], None,
                      (Z, bufs[s + _B][0], K, n, Z.shape[1], alphas[layer]))
                if dropping and layer < n_layers - 1:
                    _dropout(ints, hyper[_H_DROP_SCALE], t, layer, r0, Z, bufs[s + _D][:n])
            Z, dZ, w_n = bufs[last + _A][:n], bufs[last + _DA][:n], w_rows[r0 : r0 + n]
            data_loss += _call(ints[_I_LOSS_CALL], 0.0,
                               (Z, labels_rows[r0 : r0 + n], targets_rows[r0 : r0 + n], w_n,
                                n, Z.shape[1], w_n.shape[0], inv_norm, dZ))
            if measured:  # now: the next block's forward pass overwrites these outputs
                _add_output_metric(loss, Z, labels_rows[r0 : r0 + n],
                                   targets_rows[r0 : r0 + n], metric)
            for layer in range(n_layers - 1, -1, -1):
                s = layer * _SLOTS
                W, dW, Wt = bufs[s + _W], bufs[s + _DW], bufs[s + _WT]
                small = block * W.size <= _SMALL_GEMM_FLOPS
                dZ = bufs[s + _DA][:n]
                if dropping and layer < n_layers - 1:  # the forward pass's mask, again
                    _dropout(ints, hyper[_H_DROP_SCALE], t, layer, r0, dZ, dZ)
                A = bufs[s + _A][:n]
                if activity and layer < n_layers - 1:  # before the activation's derivative
                    data_loss += _add_activity_penalty(A, w_rows[r0 : r0 + n], inv_norm,
                                                       act_l2, act_l1, dZ)
                K = bufs[s + _ZP][:n] if bufs[s + _ZP].shape[1] > 0 else A
                _call(ints[_I_CALLS + n_layers + layer], None,
                      (dZ, A, K, n, dZ.shape[1], alphas[layer]))
                if K.shape[1] != dZ.shape[1]:  # maxout: its gradient went over K, as wide as W
                    dZ = K
                if layer == 0:
                    inputs = X_rows[r0 : r0 + n]
                else:
                    inputs = bufs[s - _SLOTS + below][:n]
                _layer_weight_gradient(inputs, dZ, dW, Wt, acc, small, fused)
                _add_column_sums(dZ, bufs[s + _DB][0])
                if layer > 0:
                    _layer_input_gradient(dZ, W, Wt, bufs[s - _SLOTS + _DA][:n], small)
        data_loss = data_loss / weight_sum

        # the penalties, per step or (per_sample) over the batch's weight sum, rounded to
        # the dtype for the gradient as fm_add_penalty does; then the update
        l2, l1 = hyper[_H_L2], hyper[_H_L1]
        l2_64, l1_64 = hyper64[_F_L2], hyper64[_F_L1]
        if ints[_I_PER_SAMPLE] != 0:
            l2_64, l1_64 = l2_64 / weight_sum, l1_64 / weight_sum
            l2, l1 = hyper.dtype.type(l2_64), hyper.dtype.type(l1_64)
        penalty = 0.0
        for layer in range(n_layers - 1, -1, -1):
            s = layer * _SLOTS
            W, dW = bufs[s + _W], bufs[s + _DW]
            size = W.size
            penalty += _add_penalty(W.reshape(size), dW.reshape(size), l2, l1, l2_64, l1_64)
        # gradient (+ penalty) -> clip by value -> scale by min(1, c / global norm) ->
        # optimizer: every gradient is complete here, before the first update
        if update and hyper64[_F_CLIP_NORM] > 0:
            hyper[_H_SCALE] = _global_norm_scale(bufs, n_layers, hyper64[_F_CLIP_NORM],
                                                 hyper[_H_CLIP])
        for layer in range(n_layers - 1, -1, -1):
            s = layer * _SLOTS
            W, dW = bufs[s + _W], bufs[s + _DW]
            size = W.size
            W, dW = W.reshape(size), dW.reshape(size)
            if update:
                s1, s2 = bufs[s + _S1W], bufs[s + _S2W]
                _call(ints[_I_UPDATE_CALL], None,
                      (kind, t, hyper, hyper64, W, dW, s1.reshape(s1.size),
                       s2.reshape(s2.size), size, np.int64(1)))
                b = bufs[s + _B][0]
                _call(ints[_I_UPDATE_CALL], None,
                      (kind, t, hyper, hyper64, b, bufs[s + _DB][0], bufs[s + _S1B][0],
                       bufs[s + _S2B][0], b.size, np.int64(0)))
        if update and hyper64[_F_MAX_NORM] > 0:
            for layer in range(n_layers):
                _max_norm(bufs[layer * _SLOTS + _W], hyper64[_F_MAX_NORM])
        if update:
            ints[_I_STEP] = t
        batch_loss = data_loss + penalty

        if batch_losses.shape[0] > 0:
            batch_losses[batch] = batch_loss
        total += batch_loss * rows
        batch += 1
    return total / n_visit


@_kernel
def _forward(bufs, ints, X, out, work_a, work_b, chunk_rows):
    """The network's output for X, chunk_rows rows at a time through work_a/work_b.
    Reads only the weights: concurrent calls with their own work buffers are safe."""
    n_layers = ints[_I_LAYERS]
    alphas = bufs[n_layers * _SLOTS + 1][0]
    rows = X.shape[0]
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        n = stop - start
        for layer in range(n_layers):
            s = layer * _SLOTS
            W = bufs[s + _W]
            d_in, d_out = W.shape
            if layer == n_layers - 1:
                dst = out[start:stop]
            elif layer % 2 == 0:
                dst = work_a[: n * d_out].reshape((n, d_out))
            else:
                dst = work_b[: n * d_out].reshape((n, d_out))
            if layer == 0:
                inputs = X[start:stop]
            elif layer % 2 == 1:
                inputs = work_a[: n * d_in].reshape((n, d_in))
            else:
                inputs = work_b[: n * d_in].reshape((n, d_in))
            _forward_product(inputs, W, dst)
            # K = dst: a pre-activation is not kept (the plan's buffers stay untouched); a
            # maxout layer's units (fewer than W's columns) are written in dst's front
            _call(ints[_I_CALLS + layer], None,
                  (dst, bufs[s + _B][0], dst, n, bufs[s + _A].shape[1], alphas[layer]))


@_kernel
def _list_of(first):
    arrays = numba.typed.List()
    arrays.append(first)
    return arrays


@_kernel
def _list_append(arrays, a):
    arrays.append(a)


def _typed_list(arrays):
    # Built by cached jitted functions: numba.typed.List(arrays) called from Python
    # compiles the list's methods in every process (a third of a second per dtype).
    typed = _list_of(arrays[0])
    for a in arrays[1:]:
        _list_append(typed, a)
    return typed


class Network:
    """The training engine of a NetworkPlan: each step, epoch or forward pass is one
    jitted call over the plan's buffers (_train, _forward), which calls the plan's
    activations, loss and optimizer by address (see "Per-configuration passes")."""

    # the step checks the label range (in one loop in its jitted call: NumPy's min and max
    # in the plan cost more than the rest of the Python around a small step)
    checks_labels = True

    def __init__(self, plan):
        buf = plan._buffers
        dtype = plan.dtype
        self._dtype = dtype
        n_layers = len(buf["W"])
        none = np.zeros((1, 0), dtype)  # for absent arrays: row 0 is an empty vector

        def matrix(a):
            return none if a is None else (a if a.ndim == 2 else a.reshape(1, -1))

        arrays = []
        for layer in range(n_layers):
            W = buf["W"][layer]
            # W^T for the small products (any layer they may run on)
            Wt = np.zeros(W.shape[::-1], dtype) if W.size <= _SMALL_GEMM_FLOPS else none
            arrays += [matrix(buf[key][layer]) for key in (
                "W", "b", "dW", "db", "state1_W", "state2_W", "state1_b", "state2_b", "A", "dA"
            )] + [Wt, matrix(buf["D"][layer]), matrix(buf["Z"][layer])]
        self._hyper = np.zeros((1, _N_HYPER), dtype)
        alphas = np.array([plan._activation_alphas], dtype=np.float64).astype(dtype)
        scratch = np.zeros((1, max(plan.layer_sizes[:-1])), dtype)
        self._labelled = plan._loss_code in _LABEL_LOSSES
        # the kernels take both label and target arrays; the unused one is empty
        self._no_labels = np.zeros(0, np.int64)
        self._no_targets = np.zeros((0, plan.layer_sizes[-1]), dtype)
        targets_batch = self._no_targets if self._labelled else buf["y_batch"]
        self._labels_batch = buf["y_batch"] if self._labelled else self._no_labels
        arrays += [self._hyper, alphas, scratch, buf["X_batch"], targets_batch,
                   matrix(buf["w_batch"])]
        self._bufs = _typed_list(arrays)
        threshold = int(plan.dropout * 16777216.0 + 0.5) if plan.dropout else 0
        # the C functions of the layers' activations and of the loss (and, in configure,
        # of the optimizer): `ints` holds their addresses, this engine the functions
        with _c_functions_lock:
            passes = [_activation_calls(int(code), dtype) for code in plan._activation_codes]
            loss_rows = _loss_call(plan._loss_code, dtype, float(plan.margin))
        self._c_functions = {"passes": passes, "loss": loss_rows}
        self._ints = np.array(
            [0, plan._loss_code, 0, n_layers, plan._dropout_key, threshold, 0,
             loss_rows.address, 0]
            + [forward.address for forward, _ in passes]
            + [backward.address for _, backward in passes],
            dtype=np.int64,
        )
        self._hyper64 = np.zeros(_N_HYPER64, np.float64)
        self._no_order = np.zeros(0, np.int64)
        self._no_losses = np.zeros(0, np.float64)
        self._no_weights = np.zeros(0, dtype)
        self._step_loss = np.zeros(1, np.float64)  # a step's loss, as an epoch's batch loss
        self.configure(plan)

    def configure(self, plan):
        # the scalars rounded to the dtype as optimizer_update and dense_backward do
        opt, t = plan.optimizer, self._dtype.type
        lr = t(opt.learning_rate)
        shrink = t(1)
        if opt.code == 4 and opt.weight_decay != 0:
            shrink = t(1.0 - lr * opt.weight_decay)  # decoupled weight decay
        self._hyper[0] = [lr, t(opt.momentum), t(opt.beta1), t(1 - opt.beta1), t(opt.beta2),
                          t(1 - opt.beta2), t(opt.eps), shrink, t(plan.l2), t(plan.l1),
                          t(1) / t(1 - plan.dropout), t(opt.rho), t(1 - opt.rho),
                          t(opt.clip_value) if opt.clip_value else t(np.inf), t(1)]
        product, product_step = self._hyper64[_F_PRODUCT], self._hyper64[_F_PRODUCT_STEP]
        if (opt.beta1, opt.momentum_decay) != tuple(self._hyper64[[_F_B1, _F_PSI]]):
            product, product_step = 1.0, 0.0  # another schedule: Nadam's P_t recomputed
        self._hyper64[:] = [opt.beta1, opt.beta2, float(plan.l2), float(plan.l1),
                            opt.learning_rate, opt.momentum_decay, product, product_step,
                            opt.clip_norm or 0.0, plan.max_norm or 0.0,
                            float(plan.activity_l2), float(plan.activity_l1)]
        self._ints[_I_OPT] = opt.code
        self._ints[_I_STEP] = int(plan.step)
        self._ints[_I_DROP_KEY] = plan._dropout_key
        self._ints[_I_PER_SAMPLE] = plan.penalty == "per_sample"
        with _c_functions_lock:
            update = _update_call(_OPTIMIZER_FAMILY[opt.code], self._dtype)
        self._c_functions["update"] = update
        self._ints[_I_UPDATE_CALL] = update.address

    @property
    def step(self):
        return int(self._ints[_I_STEP])

    def _labels_targets(self, y):
        return (y, self._no_targets) if self._labelled else (self._no_labels, y)

    def _one_step(self, X, y, w, update):
        labels, targets = self._labels_targets(y)
        _train(self._bufs, X, labels, targets, self._no_weights if w is None else w,
               self._no_order, X.shape[0], self._step_loss, self._no_losses,
               self._labels_batch, self._ints, self._hyper64, update)
        return float(self._step_loss[0])

    def train_step(self, X, y, w=None):
        return self._one_step(X, y, w, True)

    def loss_gradient(self, X, y, w=None):
        """The batch's loss (penalties included) and its gradients into the plan's dW and
        db, without an update (the step count unchanged)."""
        return self._one_step(X, y, w, False)

    def train_epoch(self, X, y, w, order, batch_size, batch_losses, metric_out=None):
        """An epoch (_train); metric_out, a float64 array of n_out or None, receives its
        running training metric (_add_output_metric)."""
        labels, targets = self._labels_targets(y)
        return _train(
            self._bufs, X, labels, targets, self._no_weights if w is None else w,
            self._no_order if order is None else order, batch_size,
            self._no_losses if batch_losses is None else batch_losses,
            self._no_losses if metric_out is None else metric_out,
            self._labels_batch, self._ints, self._hyper64, True,
        )

    def forward(self, X, out, work_a, work_b, chunk_rows):
        _forward(self._bufs, self._ints, X, out, work_a, work_b, chunk_rows)


# -- Saying so when it compiles -----------------------------------------------------------
#
# With a cold cache (a fresh install, an upgrade, a new NUMBA_CACHE_DIR) the first use of
# the backend waits seconds for compiles that nothing announces. The first kernel that
# compiles in a process says so, once, on stderr. Numba starts its "numba:compile" event
# only once its on-disk cache has missed, so a warm cache says nothing.

QUIET_ENV_VAR = "FASTMLP_NUMBA_QUIET"  # set to 1 (any value but "" and "0"): no message
# Rough compile times for the message, measured on a 2-core machine: a network's first
# use of a dtype (the engine's kernels and its passes; the typed list's kernels compile
# first, when the plan is made), or one public kernel.
_ENGINE_KERNELS = ("_list_of", "_list_append", "_train", "_forward")
_ENGINE_SECONDS = 10
_KERNEL_SECONDS = 1


class _CompileNotice(event.Listener):
    """Prints one line on stderr when the first of this module's kernels compiles."""

    def __init__(self):
        self.done = False

    def on_start(self, ev):
        dispatcher = ev.data.get("dispatcher")
        if self.done or getattr(dispatcher, "py_func", None) is None:
            return
        if dispatcher.py_func.__module__ != __name__:
            return
        self.done = True
        if os.environ.get(QUIET_ENV_VAR, "") not in ("", "0"):
            return
        engine = dispatcher.py_func.__qualname__ in _ENGINE_KERNELS
        seconds = _ENGINE_SECONDS if engine else _KERNEL_SECONDS
        cache = getattr(getattr(dispatcher, "_cache", None), "cache_path", None)
        where = f"cached in {cache}" if cache else "not cached"
        print(f"fastmlp: compiling the Numba backend for this machine (about {seconds} s, "
              f"once; {where})", file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


event.register("numba:compile", _CompileNotice())
