"""The compiled backends release the GIL inside their kernels.

Method: a worker thread runs one long kernel call while the main thread counts loop
iterations, giving the GIL back (time.sleep(0)) after each chunk of them. The switch
interval is raised to 100 s for the test, so the interpreter never preempts a thread on its
own: the main thread can only run while the worker has *released* the GIL. A kernel that
holds the GIL therefore leaves the counter at zero, one that releases it lets the counter
run for its whole duration (millions). The control test checks that the method sees a
GIL-holding call as such.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import ops

CHUNK = 1000
MIN_COUNT = 10 * CHUNK


def _count_while(work):
    """Iterations the main thread made while `work()` ran in another thread."""
    started, done = threading.Event(), threading.Event()
    errors = []

    def run():
        started.set()
        try:
            work()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        finally:
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        started.wait()
        count = 0
        while not done.is_set():
            for _ in range(CHUNK):
                count += 1
            time.sleep(0)  # hand the GIL over if the worker wants it back
        worker.join()
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    return count


def test_control_a_gil_holding_call_is_detected():
    # sum() over a range runs in C without releasing the GIL
    count = _count_while(lambda: sum(range(10_000_000)))
    assert count <= CHUNK, count


@pytest.mark.parametrize("name", ["c", "numba"])
def test_dense_forward_releases_the_gil(name, rng):
    X = rng.standard_normal((3000, 1000))
    W = rng.standard_normal((1000, 1000))
    b = np.zeros(1000)
    out = np.empty((3000, 1000))
    with fastmlp.use_backend(name):
        ops.dense_forward(X[:2], W, b, "tanh")  # compile / warm up outside the measurement

        def work():
            with fastmlp.use_backend(name):  # the override is per thread
                ops.dense_forward(X, W, b, "tanh", out=out)

        assert _count_while(work) > MIN_COUNT


def test_c_small_gemm_path_releases_the_gil(c_kernels, rng):
    old = c_kernels.get_small_gemm_flops()
    c_kernels.set_small_gemm_flops(10**12)
    try:
        A = rng.standard_normal((800, 800))
        out = np.empty((800, 800))
        assert _count_while(lambda: c_kernels.gemm(A, A, out, False, True)) > MIN_COUNT
    finally:
        c_kernels.set_small_gemm_flops(old)


@pytest.mark.parametrize("name", ["c", "numba"])
def test_elementwise_kernels_release_the_gil(name, rng):
    Z = rng.standard_normal((2000, 2000))
    out = np.empty_like(Z)
    with fastmlp.use_backend(name):
        ops.activation_forward("softplus", Z[:2], out=out[:2])

        def work():
            with fastmlp.use_backend(name):
                ops.activation_forward("softplus", Z, out=out)
                ops.softmax_cross_entropy(Z, np.zeros(2000, np.int64), out=out)

        assert _count_while(work) > MIN_COUNT


def test_c_train_epoch_releases_the_gil(c_kernels, rng):
    X = rng.standard_normal((20000, 64))
    y = rng.integers(0, 10, 20000)
    plan = fastmlp.NetworkPlan([64, 128, 128, 10], batch_size=128, seed=0, backend="c")
    # the built-in gemm: many small BLAS calls from a threaded OpenBLAS next to a busy
    # counting thread on a 2-core machine would only measure oversubscription
    old = c_kernels.get_small_gemm_flops()
    c_kernels.set_small_gemm_flops(10**12)
    try:
        assert _count_while(lambda: plan.train_epoch(X, y)) > MIN_COUNT
    finally:
        c_kernels.set_small_gemm_flops(old)
