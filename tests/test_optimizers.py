"""sgd_update, momentum_update (plain and Nesterov) and adam_update (Adam and AdamW).

Each runs a few steps in place against a float64 reference of the documented update;
param and the optimizer state are the only arrays allowed to change, and the same array
objects are updated (no copies), grad is never modified.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import as_layout, assert_close, assert_unchanged, snapshot

from fastmlp import ops

SHAPES = [(4, 3), (7,), (1, 1)]
SHAPE_IDS = ["4x3", "7", "1x1"]


def _state(rng, dtype, shape):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_sgd_update(backend, dtype, layout, rng, shape):
    param = _state(rng, dtype, shape)
    expected = param.astype(np.float64)
    for _ in range(3):
        grad = as_layout(rng.standard_normal(shape).astype(dtype), layout)
        before = snapshot(grad)
        expected = expected - 0.1 * grad.astype(np.float64)
        result = ops.sgd_update(param, grad, 0.1)
        assert result is param
        assert param.dtype == dtype
        assert_unchanged([grad], before, ["grad"])
    assert_close(param, expected, dtype)


def test_sgd_update_with_zero_learning_rate_is_a_no_op(backend, dtype, rng):
    param = _state(rng, dtype, (3, 2))
    before = param.copy()
    ops.sgd_update(param, rng.standard_normal((3, 2)).astype(dtype), 0.0)
    np.testing.assert_array_equal(param, before)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_momentum_update(backend, dtype, layout, rng, shape, nesterov):
    lr, mu = 0.05, 0.9
    param = _state(rng, dtype, shape)
    velocity = (0.1 * _state(rng, dtype, shape)).astype(dtype)
    p64, v64 = param.astype(np.float64), velocity.astype(np.float64)
    param_id, velocity_id = id(param), id(velocity)
    for _ in range(4):
        grad = as_layout(rng.standard_normal(shape).astype(dtype), layout)
        before = snapshot(grad)
        g = grad.astype(np.float64)
        v64 = mu * v64 - lr * g  # v = mu v - lr g
        p64 = p64 + (mu * v64 - lr * g if nesterov else v64)
        result = ops.momentum_update(param, grad, velocity, lr, mu, nesterov=nesterov)
        assert result is param
        assert_unchanged([grad], before, ["grad"])
    assert id(param) == param_id and id(velocity) == velocity_id
    assert param.dtype == dtype and velocity.dtype == dtype
    assert_close(velocity, v64, dtype)
    assert_close(param, p64, dtype)


def test_momentum_default_is_0_9(backend, dtype, rng):
    param = _state(rng, dtype, (3,))
    velocity = np.ones(3, dtype)
    grad = np.zeros(3, dtype)
    expected = param.astype(np.float64) + 0.9
    ops.momentum_update(param, grad, velocity, 0.1)
    assert_close(velocity, np.full(3, 0.9), dtype)
    assert_close(param, expected, dtype)


def _adam_reference(p, g, m, v, t, lr, b1, b2, eps, wd):
    if wd:
        p = p * (1 - lr * wd)  # decoupled decay first
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["adam", "adamw"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_adam_update(backend, dtype, layout, rng, shape, weight_decay):
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-7
    param = _state(rng, dtype, shape)
    m = np.zeros(shape, dtype)
    v = np.zeros(shape, dtype)
    p64, m64, v64 = param.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for t in range(1, 5):
        grad = as_layout(rng.standard_normal(shape).astype(dtype), layout)
        before = snapshot(grad)
        p64, m64, v64 = _adam_reference(
            p64, grad.astype(np.float64), m64, v64, t, lr, b1, b2, eps, weight_decay
        )
        result = ops.adam_update(param, grad, m, v, t, lr, b1, b2, eps, weight_decay=weight_decay)
        assert result is param
        assert_unchanged([grad], before, ["grad"])
        assert_close(m, m64, dtype)
        assert_close(v, v64, dtype)
        assert_close(param, p64, dtype)
    assert param.dtype == m.dtype == v.dtype == dtype


def test_adam_first_step_moves_each_weight_by_lr(backend, dtype, rng):
    # bias correction: at t = 1, m_hat = g and v_hat = g^2, so the step is lr * sign(g)
    param = np.zeros(6, dtype)
    grad = (rng.standard_normal(6) * 10).astype(dtype)
    ops.adam_update(param, grad, np.zeros(6, dtype), np.zeros(6, dtype), 1, lr=0.1, eps=1e-12)
    assert_close(param, -0.1 * np.sign(grad.astype(np.float64)), dtype)


def test_adam_defaults(backend, dtype, rng):
    shape = (3, 2)
    param = _state(rng, dtype, shape)
    grad = _state(rng, dtype, shape)
    m, v = np.zeros(shape, dtype), np.zeros(shape, dtype)
    expected, _, _ = _adam_reference(
        param.astype(np.float64), grad.astype(np.float64), 0.0, 0.0, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0
    )
    ops.adam_update(param, grad, m, v, 1)
    assert_close(param, expected, dtype)


def test_empty_params_are_fine(backend, dtype):
    param = np.zeros((0, 3), dtype)
    assert ops.sgd_update(param, np.zeros((0, 3), dtype), 0.1) is param
    velocity = np.zeros((0, 3), dtype)
    assert ops.momentum_update(param, param.copy(), velocity, 0.1) is param
