"""The course's spiral: 300 points, 3 arms, a 100-unit ReLU layer, full-batch SGD.

Every backend, in both dtypes, must fit the training set (>= 98% accuracy), and the C
backend must follow the NumPy reference's loss curve step by step.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import DTYPE_IDS, DTYPES

import fastmlp
from fastmlp.datasets import make_spiral

STEPS = 4000  # the course's network is at 99% from about step 3000 on


def test_make_spiral():
    X, y = make_spiral(100, 3, seed=0)
    assert X.shape == (300, 2) and X.dtype == np.float64
    assert y.shape == (300,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])
    # arm j: radius linspace(0, 1, n), so every arm starts at the origin and ends on the
    # unit circle
    r = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(r, np.tile(np.linspace(0, 1, 100), 3), rtol=1e-12, atol=1e-15)
    X2, y2 = make_spiral(100, 3, seed=0)
    np.testing.assert_array_equal(X, X2)  # seeded
    X32, _ = make_spiral(10, 2, seed=1, dtype=np.float32)
    assert X32.dtype == np.float32 and X32.shape == (20, 2)
    # noise=0: the angle is exactly linspace(4 j, 4 (j + 1), n)
    Xc, _ = make_spiral(5, 2, noise=0.0)
    t = np.linspace(4, 8, 5)
    np.testing.assert_allclose(
        Xc[5:],
        np.c_[np.linspace(0, 1, 5) * np.sin(t), np.linspace(0, 1, 5) * np.cos(t)],
        atol=1e-15,
    )


@functools.cache
def _train(backend, dtype_name):
    """Loss at every step and the final training accuracy (cached: several tests use it)."""
    dtype = np.dtype(dtype_name)
    X, y = make_spiral(100, 3, seed=0, dtype=dtype)
    plan = fastmlp.NetworkPlan(
        [2, 100, 3],
        "relu",
        loss="softmax_cross_entropy",
        optimizer="sgd",
        learning_rate=1.0,
        l2=1e-3,
        batch_size=300,
        init="course",
        seed=0,
        dtype=dtype,
        backend=backend,
    )
    losses = np.array([plan.train_step(X, y) for _ in range(STEPS)])
    accuracy = float(np.mean(np.argmax(plan.forward(X), axis=1) == y))
    return losses, accuracy


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_spiral_is_learned(backend, dtype):
    losses, accuracy = _train(backend, np.dtype(dtype).name)
    assert np.all(np.isfinite(losses))
    assert losses[0] == pytest.approx(np.log(3), rel=1e-3)  # 0.01 randn weights: uniform
    assert losses[-1] < 0.3
    assert accuracy >= 0.98


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend_name", ["c", "numba"])
def test_spiral_loss_curve_matches_numpy(backend_name, dtype):
    got, _ = _train(backend_name, np.dtype(dtype).name)
    ref, _ = _train("numpy", np.dtype(dtype).name)
    # With learning rate 1.0 this run sits at the edge of stability: the loss oscillates
    # with period 2 from step ~170 on, and that dynamics amplifies a one-ulp difference
    # (BLAS called with A and B swapped by the C core, another summation order) about
    # tenfold every ~80 steps. So the curves agree to rounding for the first few hundred
    # steps (measured: 1e-15 in float64 up to step 800, 3e-8 in float32 up to step 100)
    # and only statistically afterwards: there the test asks for the same level of loss.
    tight = {np.dtype(np.float64): (500, 1e-12), np.dtype(np.float32): (100, 1e-5)}
    steps, rtol = tight[np.dtype(dtype)]
    np.testing.assert_allclose(got[:steps], ref[:steps], rtol=rtol, atol=0)
    late_got, late_ref = got[-100:].mean(), ref[-100:].mean()
    assert late_got == pytest.approx(late_ref, rel=0.02)
