"""The C backend's threads: the same bits for any thread count, the thread-count policy,
and a pool that survives fork and concurrent callers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import _threads

# (layer sizes, batch, optimizer, dropout): steps large enough to run in row blocks on
# threads (2 blocks of 50 rows for the lecture's net), with and without dropout
NETWORKS = [
    ([784, 100, 10], 100, "adam", 0.0),
    ([64, 256, 256, 10], 256, "momentum", 0.2),
    ([30, 500, 1], 200, "sgd", 0.0),
]


def _train(sizes, batch, optimizer, dropout, dtype, n_threads, loss="softmax_cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3 * batch, sizes[0])).astype(dtype)
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, sizes[-1], 3 * batch)
    else:
        y = rng.standard_normal((3 * batch, sizes[-1])).astype(dtype)
    plan = fastmlp.NetworkPlan(sizes, "tanh", loss=loss, optimizer=optimizer,
                               batch_size=batch, dtype=dtype, seed=1, l2=1e-3,
                               dropout=dropout, n_threads=n_threads, backend="c")
    losses = [plan.train_epoch(X, y, batch_size=batch) for _ in range(2)]
    return losses, [(W.copy(), b.copy()) for W, b in plan.weights]


@pytest.mark.parametrize("sizes, batch, optimizer, dropout", NETWORKS,
                         ids=["mnist", "dropout", "regression"])
def test_results_are_the_same_bits_for_any_thread_count(sizes, batch, optimizer, dropout,
                                                        dtype):
    loss = "mean_squared_error" if sizes[-1] == 1 else "softmax_cross_entropy"
    ref_losses, ref_weights = _train(sizes, batch, optimizer, dropout, dtype, 1, loss)
    for n_threads in (2, 3, 4):
        losses, weights = _train(sizes, batch, optimizer, dropout, dtype, n_threads, loss)
        assert losses == ref_losses, n_threads
        for (W, b), (W0, b0) in zip(weights, ref_weights):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


def test_threaded_training_matches_the_numpy_reference(dtype):
    """The blocks, their sums and the sliced update compute the same training as the
    whole-batch NumPy reference (within the usual rounding)."""
    sizes, batch = [784, 100, 10], 100
    rng = np.random.default_rng(2)
    X = rng.random((batch, 784)).astype(dtype)
    y = rng.integers(0, 10, batch)
    plans = [fastmlp.NetworkPlan(sizes, "sigmoid", optimizer="momentum", batch_size=batch,
                                 dtype=dtype, seed=0, n_threads=2, backend=b)
             for b in ("c", "numpy")]
    for _ in range(5):
        losses = [p.train_step(X, y) for p in plans]
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5 if dtype == np.float32
                                   else 1e-12)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for (W, b), (W0, b0) in zip(plans[0].weights, plans[1].weights):
        np.testing.assert_allclose(W, W0, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(b, b0, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("activation, dropout", [("relu", 0.0), ("sigmoid", 0.0),
                                                 ("softplus", 0.0), ("tanh", 0.3),
                                                 ("gelu", 0.0), ("mish", 0.3),
                                                 ("selu", 0.0)])
def test_a_step_in_tiles_gives_the_same_bits_and_the_reference(activation, dropout, dtype,
                                                              gemm_path, monkeypatch):
    """A network without per-block gradient copies (the plan's budget forced to 0 here, as
    a 1024-2048-2048-1000 net has none) runs each product in tiles on the threads: 2080
    units make two tiles a side, with an edge. Epilogues in registers (gemm=small) or in a
    pass over each tile (gemm=blas); softplus, selu and dropout leave the gate to its own
    pass; gelu and mish keep their pre-activation Z (the tiles make Z, then A = f(Z)) and
    take their derivative from it."""
    from fastmlp import plan as plan_module

    monkeypatch.setattr(plan_module, "_BLOCK_GRADIENT_BYTES", 0)
    sizes, batch = [48, 2080, 5], 64
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2 * batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 2 * batch)

    def train(backend, n_threads):
        plan = fastmlp.NetworkPlan(sizes, activation, optimizer="adam", learning_rate=1e-3,
                                   batch_size=batch, dtype=dtype, seed=0, l2=1e-3,
                                   dropout=dropout, n_threads=n_threads, backend=backend)
        losses = [plan.train_epoch(X, y, batch_size=batch) for _ in range(2)]
        return losses, [a.copy() for W in plan.weights for a in W]

    ref_losses, ref = train("c", 1)
    for n_threads in (2, 3):
        losses, weights = train("c", n_threads)
        assert losses == ref_losses, n_threads
        for a, a0 in zip(weights, ref):
            np.testing.assert_array_equal(a, a0)
    np_losses, np_weights = train("numpy", 1)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ref_losses, np_losses, rtol=rtol)
    for a, a0 in zip(ref, np_weights):
        np.testing.assert_allclose(a, a0, rtol=rtol, atol=rtol)


def test_tiled_steps_leave_openblas_its_thread_count(monkeypatch):
    """OpenBLAS runs one thread per call while a step's tiles run on fastmlp's threads,
    and gets its own count back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastmlp import plan as plan_module
    from fastmlp.backends import _c_kernels

    if _c_kernels.BLAS_THREADS_CONTROL is None:
        pytest.skip("SciPy's BLAS has no openblas_set_num_threads here")
    monkeypatch.setattr(plan_module, "_BLOCK_GRADIENT_BYTES", 0)
    plan = fastmlp.NetworkPlan([48, 2080, 5], "relu", batch_size=64, n_threads=2, seed=0,
                               backend="c")
    X = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    y = np.arange(64) % 5

    def counts():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["internal_api"] == "openblas"]

    for n in (3, 1):
        with threadpoolctl.threadpool_limits(n, user_api="blas"):
            before = counts()
            plan.train_step(X, y)
            assert counts() == before


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "poisson"])
def test_weighted_gradients_are_the_same_bits_for_any_thread_count(loss, dtype):
    """loss_and_gradient with sample weights and scikit-learn's per-sample penalty: the
    blocks of a batch share one normaliser (the batch's weight sum), so the bits do not
    depend on the blocks' threads."""
    sizes, batch = [784, 100, 10], 200
    rng = np.random.default_rng(4)
    X = rng.random((batch, 784)).astype(dtype)
    y = rng.integers(0, 10, batch) if loss != "poisson" else rng.poisson(
        2.0, (batch, 10)).astype(dtype)
    w = rng.random(batch).astype(dtype) * 3
    results = []
    for n_threads in (1, 2, 3):
        plan = fastmlp.NetworkPlan(sizes, "tanh", loss=loss, batch_size=batch, dtype=dtype,
                                   seed=0, l2=0.5, penalty="per_sample", n_threads=n_threads,
                                   backend="c")
        loss_value, grad = plan.loss_and_gradient(X, y, sample_weight=w)
        results.append((loss_value, grad.copy()))
    for loss_value, grad in results[1:]:
        assert loss_value == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])


def test_concurrent_plans_on_threads_train_as_alone():
    """Two plans stepping at once from Python threads share one pool (one of them runs
    its step on its own thread while the pool is busy): the same bits as alone."""
    args = NETWORKS[0]
    alone = _train(*args, np.float32, 2)
    results = [None, None]

    def work(i):
        results[i] = _train(*args, np.float32, 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for losses, weights in results:
        assert losses == alone[0]
        for (W, _), (W0, _) in zip(weights, alone[1]):
            np.testing.assert_array_equal(W, W0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pool_survives_fork():
    """A forked child (the parent's pool threads do not exist there) trains on threads of
    its own and gets the parent's bits."""
    args = NETWORKS[0]
    parent = _train(*args, np.float32, 2)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            child = _train(*args, np.float32, 2)
            same = child[0] == parent[0] and all(
                np.array_equal(W, W0) for (W, _), (W0, _) in zip(child[1], parent[1]))
            os.write(write, b"same" if same else b"different")
        finally:
            os._exit(0)
    os.close(write)
    message = os.read(read, 100)
    os.waitpid(pid, 0)
    assert message == b"same"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_n_threads_is_checked(value):
    with pytest.raises(ValueError, match="n_threads"):
        fastmlp.NetworkPlan([2, 3, 2], n_threads=value)
    with pytest.raises(ValueError, match="n_threads"):
        fastmlp.set_num_threads(value)


def test_process_default_and_its_environment(monkeypatch):
    """The variables are read when first needed and again after set_num_threads(None)."""
    monkeypatch.delenv("FASTMLP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        fastmlp.set_num_threads(None)
        assert fastmlp.get_num_threads() == _threads.available_cpus()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert fastmlp.get_num_threads() == _threads.available_cpus()  # read once
        fastmlp.set_num_threads(None)
        assert fastmlp.get_num_threads() == 3
        monkeypatch.setenv("FASTMLP_NUM_THREADS", "5")
        fastmlp.set_num_threads(None)
        assert fastmlp.get_num_threads() == 5  # fastmlp's own variable first
        fastmlp.set_num_threads(7)
        assert fastmlp.get_num_threads() == 7  # set_num_threads before either
        plan = fastmlp.NetworkPlan([2, 3, 2])
        assert plan.n_threads is None  # follows the process default at each step
        monkeypatch.setenv("FASTMLP_NUM_THREADS", "many")
        fastmlp.set_num_threads(None)
        with pytest.raises(ValueError, match="FASTMLP_NUM_THREADS"):
            fastmlp.get_num_threads()
    finally:
        fastmlp.set_num_threads(None)


def test_show_config_reports_the_threads():
    script = ("import fastmlp, io\n"
              "print('RESULT', fastmlp.show_config(file=io.StringIO())['threads'])")
    env = dict(os.environ, FASTMLP_NUM_THREADS="3")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    line = [s for s in res.stdout.splitlines() if s.startswith("RESULT")][-1]
    assert line.startswith("RESULT 3 per step by default")


def test_forward_and_predict_on_threads_give_the_same_bits():
    rng = np.random.default_rng(3)
    X = rng.random((5000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 5000)
    plan = fastmlp.NetworkPlan([784, 100, 10], "sigmoid", batch_size=100, seed=0,
                               dtype=np.float32, backend="c")
    one = plan.forward(X, chunk_rows=100)
    plan.n_threads = 3
    np.testing.assert_array_equal(plan.forward(X, chunk_rows=100), one)
    models = [fastmlp.MLP((32,), seed=0, n_threads=n).fit(X[:500], y[:500], epochs=1,
                                                          verbose=0) for n in (1, 2)]
    np.testing.assert_array_equal(models[0].predict_proba(X), models[1].predict_proba(X))
    with pytest.raises(ValueError, match="n_threads"):
        fastmlp.MLP(n_threads=0)


def test_threadpoolctl_sees_and_caps_the_pool():
    from threadpoolctl import threadpool_info, threadpool_limits

    from fastmlp.backends import _c_kernels  # noqa: F401 (the library threadpoolctl finds)

    pools = [p for p in threadpool_info() if p["user_api"] == "fastmlp"]
    assert len(pools) == 1 and pools[0]["num_threads"] == fastmlp.get_num_threads()
    before = fastmlp.get_num_threads()
    with threadpool_limits(1):
        assert fastmlp.get_num_threads() == 1
    assert fastmlp.get_num_threads() == before
    fastmlp.set_num_threads(None)


def test_a_limit_entered_right_after_import_caps_the_pool():
    """threadpoolctl sees only libraries loaded when a limit is entered: import fastmlp
    loads the compiled backend, so a limit set before the first plan caps it too."""
    code = ("import fastmlp, threadpoolctl\n"
            "with threadpoolctl.threadpool_limits(1):\n"
            "    assert fastmlp.get_num_threads() == 1, fastmlp.get_num_threads()\n")
    env = {**os.environ, "FASTMLP_NUM_THREADS": "3"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_scikit_learn_drop_in_takes_n_threads():
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPClassifier

    rng = np.random.default_rng(4)
    X = rng.random((400, 64)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 epochs do not converge: not the point here
        fits = [MLPClassifier((200,), batch_size=200, max_iter=3, random_state=0,
                              n_threads=n).fit(X, y) for n in (1, 2)]
    for W, W0 in zip(fits[0].coefs_, fits[1].coefs_):
        np.testing.assert_array_equal(W, W0)
