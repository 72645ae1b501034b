"""Data sets: the course's spiral generator and the embedded MNIST sample."""

from __future__ import annotations

import numpy as np

from fastmlp import _validation as check


def make_spiral(n_per_class=100, n_classes=3, noise=0.2, seed=None, dtype=np.float64):
    """The course's spiral: `n_classes` arms of `n_per_class` points in 2-D.

    Arm j has radius ``r = linspace(0, 1, n)`` and angle
    ``t = linspace(4 j, 4 (j + 1), n) + noise * randn(n)``; a point is ``(r sin t, r cos t)``.

    Returns
    -------
    X : ndarray (n_per_class * n_classes, 2) of `dtype`
    y : ndarray (n_per_class * n_classes,) of int64 labels in [0, n_classes)
    """
    n = check.positive_int(n_per_class, "n_per_class")
    k = check.positive_int(n_classes, "n_classes")
    noise = check.real_scalar(noise, "noise", low=0)
    rng = np.random.default_rng(seed)
    X = np.zeros((n * k, 2), dtype=dtype)
    y = np.zeros(n * k, dtype=np.int64)
    for j in range(k):
        ix = slice(n * j, n * (j + 1))
        r = np.linspace(0.0, 1, n)
        t = np.linspace(j * 4, (j + 1) * 4, n) + rng.standard_normal(n) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y
