"""activation_forward / activation_backward against the float64 reference.

Every backend x dtype x memory layout x activation (and alpha); the result keeps the
dtype, `out=` is written and returned (also when it is the input itself), and inputs
are never modified.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import (
    ACTIVATION_CASES,
    ACTIVATION_IDS,
    NEEDS_Z,
    as_layout,
    assert_close,
    assert_unchanged,
    ref_activation,
    ref_derivative,
    ref_derivative_from_a,
    ref_derivative_from_z,
    snapshot,
)

from fastmlp import ops

every_activation = pytest.mark.parametrize("name, alpha", ACTIVATION_CASES, ids=ACTIVATION_IDS)


def _kw(alpha):
    return {} if alpha is None else {"alpha": alpha}


def _z(rng, dtype, shape=(7, 5)):
    # away from the kinks at 0, where relu/leaky/elu have no derivative
    z = np.asarray(rng.standard_normal(shape) * 3)
    z[np.abs(z) < 0.05] = 0.5
    return z.astype(dtype)


@every_activation
def test_forward_matches_reference(backend, dtype, layout, rng, name, alpha):
    Z = as_layout(_z(rng, dtype), layout)
    before = snapshot(Z)
    A = ops.activation_forward(name, Z, **_kw(alpha))
    assert A.dtype == dtype and A.shape == Z.shape
    assert_close(A, ref_activation(name, Z, alpha), dtype)
    assert_unchanged([Z], before, ["Z"])


@every_activation
def test_forward_writes_out(backend, dtype, rng, name, alpha):
    Z = _z(rng, dtype)
    out = np.full_like(Z, np.nan)
    result = ops.activation_forward(name, Z, out=out, **_kw(alpha))
    assert result is out
    assert_close(out, ref_activation(name, Z, alpha), dtype)


@every_activation
def test_forward_in_place(backend, dtype, rng, name, alpha):
    Z = _z(rng, dtype)
    expected = ref_activation(name, Z, alpha)
    result = ops.activation_forward(name, Z, out=Z, **_kw(alpha))
    assert result is Z
    assert_close(Z, expected, dtype)


@pytest.mark.parametrize("shape", [(11,), (2, 3, 4), (1, 1, 1, 3)], ids=["1d", "3d", "4d"])
@pytest.mark.parametrize("name, alpha", [("elu", 0.5), ("sigmoid", None)], ids=["elu", "sigmoid"])
def test_any_shape(backend, dtype, rng, name, alpha, shape):
    Z = _z(rng, dtype, shape)
    A = ops.activation_forward(name, Z, **_kw(alpha))
    assert A.shape == Z.shape
    assert_close(A, ref_activation(name, Z, alpha), dtype)
    dA = rng.standard_normal(shape).astype(dtype)
    dZ = ops.activation_backward(name, dA, A, **_kw(alpha))
    assert dZ.shape == Z.shape
    assert_close(dZ, dA.astype(np.float64) * ref_derivative_from_a(name, A, alpha), dtype)


def test_zero_dimensional(backend, dtype):
    # "Z: any shape" and "A: the shape of Z" include a 0-d array
    Z = np.array(-2.0, dtype)
    A = ops.activation_forward("relu", Z)
    assert A.shape == (), f"a 0-d Z gave A of shape {A.shape}"
    assert A == 0.0
    dZ = ops.activation_backward("tanh", np.array(2.0, dtype), np.array(0.5, dtype))
    assert dZ.shape == ()
    assert dZ == pytest.approx(1.5)


@pytest.mark.parametrize(
    "shape", [(0, 4), (3, 0), (0,), (2, 0, 3)], ids=["0x4", "3x0", "0", "2x0x3"]
)
def test_zero_size(backend, dtype, shape):
    Z = np.zeros(shape, dtype)
    A = ops.activation_forward("tanh", Z)
    assert A.shape == shape and A.dtype == dtype
    dZ = ops.activation_backward("tanh", Z, A)
    assert dZ.shape == shape and dZ.dtype == dtype


@every_activation
def test_backward_matches_reference(backend, dtype, layout, rng, name, alpha):
    Z = _z(rng, dtype)
    A = as_layout(ref_activation(name, Z, alpha).astype(dtype), layout)
    dA = as_layout(rng.standard_normal(Z.shape).astype(dtype), layout)
    Z = as_layout(Z, layout)
    before = snapshot(dA, A, Z)
    dZ = ops.activation_backward(name, dA, A, Z=Z, **_kw(alpha))
    assert dZ.dtype == dtype and dZ.shape == A.shape
    assert_close(dZ, np.asarray(dA, np.float64) * ref_derivative(name, A, Z, alpha), dtype)
    assert_unchanged([dA, A, Z], before, ["dA", "A", "Z"])


@every_activation
def test_backward_writes_out_and_may_overwrite_dA(backend, dtype, rng, name, alpha):
    Z = _z(rng, dtype)
    A = ref_activation(name, Z, alpha).astype(dtype)
    dA = rng.standard_normal(Z.shape).astype(dtype)
    expected = dA.astype(np.float64) * ref_derivative(name, A, Z, alpha)
    out = np.full_like(A, np.nan)
    assert ops.activation_backward(name, dA, A, Z=Z, out=out, **_kw(alpha)) is out
    assert_close(out, expected, dtype)
    assert ops.activation_backward(name, dA, A, Z=Z, out=dA, **_kw(alpha)) is dA
    assert_close(dA, expected, dtype)


@every_activation
def test_backward_of_forward_is_the_derivative(backend, dtype, rng, name, alpha):
    # forward then backward (the pairing the network uses) gives dA * f'(z)
    Z = np.linspace(-4, 4, 40).reshape(8, 5)
    Z[np.abs(Z) < 0.05] = 0.3
    Z = Z.astype(dtype)
    A = ops.activation_forward(name, Z, **_kw(alpha))
    dA = np.ones_like(Z)
    dZ = ops.activation_backward(name, dA, A, Z=Z, **_kw(alpha))
    # the derivative is taken from A rounded to dtype: in float32 a(1 - a) loses digits
    # where a is near 1, so allow the rounding of A to propagate (|f''| <= 1 here)
    slack = 4 * np.finfo(dtype).eps * (1 + np.abs(np.asarray(A, np.float64)))
    np.testing.assert_allclose(
        dZ.astype(np.float64),
        ref_derivative_from_z(name, Z, alpha),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=float(np.max(slack)) + 1e-13,
    )


@pytest.mark.parametrize("name", NEEDS_Z)
def test_backward_without_Z_is_refused(backend, dtype, name):
    # gelu, gelu_tanh, swish and mish are not monotonic: their output does not determine
    # the derivative (swish(-2) ~ swish(-0.7), with derivatives of opposite sign)
    A = ops.activation_forward(name, np.array([[-1.0, 2.0]], dtype))
    with pytest.raises(ValueError, match="pre-activation"):
        ops.activation_backward(name, np.ones_like(A), A)


def test_not_monotonic_needs_z_indeed():
    # why those four read Z: two inputs with one output and different derivatives
    z = np.array([-2.0, -0.7])
    a = ref_activation("swish", z)
    assert abs(a[0] - a[1]) < 0.01
    d = ref_derivative_from_z("swish", z)
    assert d[0] < 0 < d[1]


def test_silu_is_swish(backend, dtype, rng):
    Z = _z(rng, dtype)
    np.testing.assert_array_equal(ops.activation_forward("silu", Z),
                                  ops.activation_forward("swish", Z))
    A = ops.activation_forward("swish", Z)
    np.testing.assert_array_equal(ops.activation_backward("silu", np.ones_like(Z), A, Z=Z),
                                  ops.activation_backward("swish", np.ones_like(Z), A, Z=Z))


@pytest.mark.parametrize("name", ["selu", "gelu", "gelu_tanh", "swish", "mish", "softsign",
                                  "hard_sigmoid"])
def test_new_activations_known_values(backend, dtype, name):
    # values from their papers' definitions: f(0), and the limits far out
    Z = np.array([[0.0, 30.0, -30.0]], dtype)
    A = ops.activation_forward(name, Z)
    expected = {
        "selu": [0.0, 30 * 1.0507009873554805, -1.0507009873554805 * 1.6732632423543772],
        "gelu": [0.0, 30.0, 0.0], "gelu_tanh": [0.0, 30.0, 0.0],
        # -30 sigmoid(-30) and -30 tanh(log(1 + e^-30)), both -30 e^-30 to double precision
        "swish": [0.0, 30.0, -30 * math.exp(-30)], "mish": [0.0, 30.0, -30 * math.exp(-30)],
        "softsign": [0.0, 30 / 31, -30 / 31],
        "hard_sigmoid": [0.5, 1.0, 0.0],
    }[name]
    assert_close(A, np.array([expected]), dtype)
    dZ = ops.activation_backward(name, np.ones_like(Z), A, Z=Z)
    slope0 = {"selu": 1.0507009873554805 * 1.6732632423543772, "gelu": 0.5, "gelu_tanh": 0.5,
              "swish": 0.5, "mish": 0.6, "softsign": 1.0, "hard_sigmoid": 0.2}[name]
    # at 0 the derivative is defined (selu's is its left one, a + scale alpha at a = 0)
    assert dZ[0, 0] == pytest.approx(slope0, rel=1e-6)
