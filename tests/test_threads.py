"""Threads: kernels and separate plans run in parallel bit for bit; a shared plan refuses.

- the same kernel called from 4 Python threads at once, on different data, gives exactly
  the results of the serial calls (dense_forward, dense_backward, softmax_cross_entropy on
  the compiled backends, "c" and "numba", which release the GIL);
- 4 separate NetworkPlans trained in 4 threads at once match serial training bit for bit;
- one plan shared by two threads: the second gets RuntimeError("... one plan per thread")
  while a step runs (checked deterministically by holding the plan's lock), and forward
  may run in many threads at once;
- a real SIGINT during a long MLP.fit stops it cleanly and leaves a usable model.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import ops

N_THREADS = 4
COMPILED = [b for b in ("c", "numba") if b in fastmlp.available_backends()]
# (n, n_in, n_out): the C backend's built-in small gemm, and products that go to BLAS
SHAPES = [(8, 10, 5), (96, 120, 64)]
# calls per thread, so that the threads' calls overlap in time
REPEATS = {(8, 10, 5): 20, (96, 120, 64): 6}


def _run_threads(target, n=N_THREADS):
    """Run target(i) in n threads released together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _kernel_inputs(seed, dtype, shape):
    n, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dA = rng.standard_normal((n, n_out)).astype(dtype)
    y = rng.integers(0, n_out, n)
    return X, W, b, dA, y


def _kernel_calls(backend, dtype, shape, seed):
    """Every kernel under test once on this seed's data: a list of result arrays."""
    X, W, b, dA, y = _kernel_inputs(seed, dtype, shape)
    with fastmlp.use_backend(backend):  # the override is per thread: set it in each one
        A = ops.dense_forward(X, W, b, "tanh")
        dX, dW, db = ops.dense_backward(dA, X, W, A, "tanh", l2=1e-3)
        loss, dlogits = ops.softmax_cross_entropy(A, y)
    return [A, dX, dW, db, np.array(loss), dlogits]


@pytest.mark.parametrize("shape", SHAPES, ids=["small", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", COMPILED)
def test_kernels_in_four_threads_give_the_serial_results_bit_for_bit(backend, dtype, shape):
    serial = [_kernel_calls(backend, dtype, shape, seed) for seed in range(N_THREADS)]

    def work(i):
        return [_kernel_calls(backend, dtype, shape, i) for _ in range(REPEATS[shape])]

    for i, runs in enumerate(_run_threads(work)):
        for run in runs:
            for got, expected in zip(run, serial[i]):
                np.testing.assert_array_equal(got, expected)


def _plan_and_data(seed, backend, dtype):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((600, 16)).astype(dtype)
    y = rng.integers(0, 4, 600)
    plan = fastmlp.NetworkPlan([16, 48, 32, 4], "relu", optimizer="adam", learning_rate=1e-3,
                               batch_size=64, dtype=dtype, seed=seed, backend=backend)
    return plan, X, y


def _train(seed, backend, dtype):
    plan, X, y = _plan_and_data(seed, backend, dtype)
    losses = [plan.train_epoch(X, y) for _ in range(3)]  # shuffled: the plan's own rng
    losses += [plan.train_step(X[:64], y[:64]) for _ in range(5)]
    return np.array(losses), [a.copy() for pair in plan.weights for a in pair]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", fastmlp.available_backends())
def test_separate_plans_train_in_parallel_bit_for_bit(backend, dtype):
    serial = [_train(seed, backend, dtype) for seed in range(N_THREADS)]
    parallel = _run_threads(lambda i: _train(i, backend, dtype))
    for (losses, weights), (losses0, weights0) in zip(parallel, serial):
        np.testing.assert_array_equal(losses, losses0)
        for W, W0 in zip(weights, weights0):
            np.testing.assert_array_equal(W, W0)


@pytest.mark.parametrize("backend", fastmlp.available_backends())
def test_a_plan_busy_in_one_thread_refuses_a_second_one(backend):
    plan, X, y = _plan_and_data(0, backend, np.float64)
    state = [a.copy() for pair in plan.weights for a in pair]
    errors = []

    def second_thread():
        for call in (lambda: plan.train_step(X[:8], y[:8]), lambda: plan.train_epoch(X, y)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)

    # A step in progress holds the plan's lock: hold it here, as a running step would.
    assert plan._lock.acquire(blocking=False)
    try:
        t = threading.Thread(target=second_thread)
        t.start()
        t.join()
        assert len(errors) == 2, "train_step / train_epoch ran on a plan that was busy"
        for exc in errors:
            assert "use one plan per thread" in str(exc)
        # nothing was trained, and inference does not need the lock
        for a, a0 in zip([a for pair in plan.weights for a in pair], state):
            np.testing.assert_array_equal(a, a0)
        assert plan.step == 0
        assert np.all(np.isfinite(plan.forward(X)))
    finally:
        plan._lock.release()
    # free again: it trains, and releases the lock when the step ends (or fails)
    assert np.isfinite(plan.train_step(X[:8], y[:8]))
    assert not plan._lock.locked()
    with pytest.raises(ValueError):
        plan.train_step(X[:8], np.full(8, 99))
    assert not plan._lock.locked()


@pytest.mark.parametrize("backend", fastmlp.available_backends())
def test_forward_runs_in_many_threads_at_once(backend):
    plan, X, y = _plan_and_data(1, backend, np.float32)
    plan.train_epoch(X, y)
    # (the chunk size changes which gemm runs, so each thread is compared with the serial
    # result at its own chunk size)
    expected = [plan.forward(X, chunk_rows=50 + i) for i in range(N_THREADS)]
    results = _run_threads(lambda i: [plan.forward(X, chunk_rows=50 + i) for _ in range(10)])
    for i, runs in enumerate(results):
        for out in runs:
            np.testing.assert_array_equal(out, expected[i])


# -- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, options",
    [(b, {}) for b in fastmlp.available_backends()] + [("c", {"dropout": 0.1})],
    ids=[f"{b}-plan" for b in fastmlp.available_backends()] + ["c-layered"],
)
def test_sigint_during_a_long_fit_leaves_a_usable_model(backend, options):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 20)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 1)
    model = fastmlp.MLP((256,), seed=0, backend=backend, **options)
    main = threading.main_thread().ident
    sent = []

    def schedule(epoch, lr0):
        # called by fit at the start of each epoch: fire SIGINT 0.3 s into the training
        if not sent:
            timer = threading.Timer(0.3, lambda: (sent.append(time.perf_counter()),
                                                  signal.pthread_kill(main, signal.SIGINT)))
            timer.daemon = True
            timer.start()
            sent.append(timer)
        return lr0

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # about a minute of training uninterrupted (>= 0.05 s an epoch, 1000 epochs)
        model.fit(X, y, epochs=1000, batch_size=64, schedule=schedule, verbose=0)
        returned = time.perf_counter()
        sent[0].join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(sent) == 2, "the SIGINT was never sent"
    assert returned - sent[1] < 5, f"fit ran on for {returned - sent[1]:.1f} s after SIGINT"
    assert model.interrupted_ is True
    assert len(model.history["loss"]) < 1000  # (0 when the first epoch was cut short)
    lengths = {k: len(v) for k, v in model.history.items()}
    assert len(set(lengths.values())) == 1, lengths
    # usable: it predicts, and trains again (the plan's lock was released)
    assert np.all(np.isfinite(model.predict_proba(X[:100])))
    assert set(np.unique(model.predict(X))) <= set(model.classes_)
    if hasattr(model.net_, "_lock"):
        assert not model.net_._lock.locked()
    model.partial_fit(X[:64], y[:64])
    assert model.score(X[:1000], y[:1000]) > 0.5
    model.fit(X[:500], y[:500], epochs=1, verbose=0)
    assert model.interrupted_ is False
