"""`python -m fastmlp demo`: train the course's networks and compare with the course's NumPy.

Spiral: 300 points, 3 arms, 2 -> 100 -> 3 ReLU, softmax cross-entropy, L2 1e-3,
full-batch SGD with step size 1, on every backend and on the course's NumPy loop.
MNIST: the lecture's 784 -> 100 -> 10 sigmoid net, Adam lr 1e-3, batch 100, on the
embedded 10k sample (8000 train, 2000 test), with fastmlp.MLP and the course's loop.
"""

from __future__ import annotations

import time

import numpy as np

from fastmlp import _backend
from fastmlp.course import CourseNetwork
from fastmlp.datasets import load_mnist_sample, make_spiral
from fastmlp.model import MLP
from fastmlp.plan import NetworkPlan


def _per_step(train_step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step()
    return (time.perf_counter() - start) / steps, loss


def spiral(steps=3000, dtype=np.float64, seed=0, out=print):
    """Train the spiral network everywhere; returns {name: (accuracy, seconds per step)}."""
    X, y = make_spiral(100, 3, seed=seed, dtype=dtype)
    results = {}
    course = CourseNetwork([2, 100, 3], "relu", step_size=1.0, reg=1e-3, dtype=dtype, seed=seed)
    t_course, loss = _per_step(lambda: course.train_step(X, y), steps)
    results["course NumPy"] = (np.mean(course.predict(X) == y), t_course, loss)
    for name in _backend.available_backends():
        plan = NetworkPlan([2, 100, 3], "relu", optimizer="sgd", learning_rate=1.0, l2=1e-3,
                           batch_size=len(X), dtype=dtype, seed=seed, init="course",
                           backend=name)
        plan.train_step(X, y)  # compile (numba) and warm up outside the timing
        t, loss = _per_step(lambda plan=plan: plan.train_step(X, y), steps - 1)
        results[f"fastmlp {name}"] = (np.mean(plan.forward(X).argmax(1) == y), t, loss)
    out(f"Spiral 2-100-3 ReLU, {len(X)} points, full-batch SGD, {steps} steps, "
        f"{np.dtype(dtype).name}")
    out(f"{'implementation':<16} {'accuracy':>9} {'final loss':>11} {'us/step':>9} "
        f"{'speed-up':>9}")
    for name, (acc, t, loss) in results.items():
        out(f"{name:<16} {acc:>9.1%} {loss:>11.4f} {t * 1e6:>9.1f} {t_course / t:>8.1f}x")
    return results


def mnist(epochs=20, seed=0, out=print):
    """The lecture's MNIST net everywhere; returns {name: (test accuracy, s per epoch)}."""
    X_train, y_train, X_test, y_test = load_mnist_sample()
    results = {}
    course = CourseNetwork([784, 100, 10], "sigmoid", step_size=1e-3, reg=0.0,
                           optimizer="adam", dtype=np.float32, seed=seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(X_train))
        for i in range(0, len(order), 100):
            rows = order[i:i + 100]
            course.train_step(X_train[rows], y_train[rows])
    t_course = (time.perf_counter() - start) / epochs
    results["course NumPy"] = (np.mean(course.predict(X_test) == y_test), t_course)
    for name in _backend.available_backends():
        model = MLP((100,), "sigmoid", seed=seed, backend=name)
        model.fit(X_train[:200], y_train[:200], epochs=1, batch_size=100, verbose=0)  # warm-up
        start = time.perf_counter()
        model.fit(X_train, y_train, epochs=epochs, batch_size=100, optimizer="adam",
                  learning_rate=1e-3, verbose=0)
        t = (time.perf_counter() - start) / epochs
        results[f"fastmlp {name}"] = (model.score(X_test, y_test), t)
    out(f"MNIST 784-100-10 sigmoid, Adam lr 1e-3, batch 100, {epochs} epochs on "
        f"{len(X_train)} images, tested on {len(X_test)}, float32")
    out(f"{'implementation':<16} {'test acc':>9} {'ms/epoch':>9} {'speed-up':>9}")
    for name, (acc, t) in results.items():
        out(f"{name:<16} {acc:>9.1%} {t * 1e3:>9.1f} {t_course / t:>8.1f}x")
    return results


def main():
    from threadpoolctl import threadpool_limits

    from fastmlp._config import show_config

    show_config()
    print()
    # Every backend loaded first, so that the limit reaches each BLAS library; one BLAS
    # thread for every implementation: a per-core comparison, and on a busy 2-core machine
    # a second OpenBLAS thread waiting for a core can make a step many times slower.
    _backend.available_backends()
    with threadpool_limits(limits=1, user_api="blas"):
        print("(BLAS pinned to 1 thread for every implementation)\n")
        for dtype in (np.float64, np.float32):
            spiral(dtype=dtype)
            print()
        mnist()
