"""Many fits: scikit-learn's searches over the drop-ins, in parallel, give the serial results.

- the thread policy: a call in a task that joblib runs on a worker thread uses 1 fastmlp
  thread by default (whatever the process default) and holds SciPy's OpenBLAS to 1
  thread while it runs, restoring its count after; the main thread and plain threads keep
  the process default; an explicit ``n_threads`` wins;
- GridSearchCV, RandomizedSearchCV and cross_validate over the drop-ins with n_jobs=2
  under joblib's threading backend give the same bits as n_jobs=1: every split's score,
  the best parameters and the refitted weights;
- the same search under ``parallel_config(backend="dask")`` on the LocalCluster of the
  ``dask_client`` fixture: the same scores and best parameters, and in its workers the
  policy's default is 1 thread with OpenBLAS at 1 (the nanny's environment).
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the drop-ins need scikit-learn")

from joblib import Parallel, delayed, parallel_config  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_validate,
)

import fastmlp  # noqa: E402
from fastmlp import _threads  # noqa: E402
from fastmlp.datasets import load_mnist_sample  # noqa: E402
from fastmlp.plan import NetworkPlan  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# a process default no worker thread may take: the policy must say 1 there, not this
PROCESS_DEFAULT = 4
GRID = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}
CV = KFold(3, shuffle=True, random_state=0)


def _mnist(rows=600):
    X, y, _, _ = load_mnist_sample()
    return X[:rows], y[:rows]


def _classifier(**params):
    return MLPClassifier(max_iter=4, batch_size=100, random_state=0, **params)


@pytest.fixture
def process_default():
    """The process default set to PROCESS_DEFAULT for the test, then restored."""
    saved = _threads._process_default
    fastmlp.set_num_threads(PROCESS_DEFAULT)
    yield PROCESS_DEFAULT
    fastmlp.set_num_threads(saved)


def _openblas():
    """(get, set) of the OpenBLAS the C backend calls; skip where there is none."""
    if "c" not in fastmlp.available_backends():
        pytest.skip("the C backend is not built")
    from fastmlp.backends import _c_kernels

    functions = _c_kernels._openblas_threads()
    if functions is None:
        pytest.skip("SciPy's BLAS is not OpenBLAS")
    return functions


@pytest.fixture
def openblas_two_threads():
    """SciPy's OpenBLAS set to 2 threads for the test (so that a hold to 1 shows), then
    restored; yields its getter."""
    get, set_ = _openblas()
    saved = get()
    set_(2)
    if get() < 2:
        set_(saved)
        pytest.skip("OpenBLAS runs on one thread here")
    yield get
    set_(saved)


def _quietly(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn()


def _on_joblib_threads(fn, n_tasks=2):
    with parallel_config(backend="threading"):
        return Parallel(n_jobs=2)(delayed(fn)() for _ in range(n_tasks))


# -- the thread policy ---------------------------------------------------------------------


def test_default_in_a_joblib_worker_thread_is_one(process_default):
    assert _on_joblib_threads(lambda: _threads.resolve(None)) == [1, 1]
    assert _on_joblib_threads(lambda: _threads.resolve(3)) == [3, 3]  # explicit wins
    assert _on_joblib_threads(lambda: _threads.in_joblib_worker_thread()) == [True, True]


def test_default_elsewhere_is_the_process_default(process_default):
    assert _threads.resolve(None) == process_default
    assert not _threads.in_joblib_worker_thread()
    # a serial joblib call runs on the calling thread: the process is not shared
    with parallel_config(backend="threading"):
        assert Parallel(n_jobs=1)(delayed(_threads.resolve)(None) for _ in range(2)) == \
            [process_default] * 2
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_threads.resolve(None)))
    thread.start()
    thread.join()
    assert seen == [process_default]


class _EngineSpy:
    """Wraps a plan's engine: records the thread count set for each call and the
    OpenBLAS thread count while each engine call runs."""

    def __init__(self, engine, get_blas_threads, log):
        self._engine, self._get, self._log = engine, get_blas_threads, log

    def set_threads(self, n):
        self._log.append(("threads", n))
        self._engine.set_threads(n)

    def _watched(self, name):
        def call(*args):
            self._log.append(("blas", self._get()))
            return getattr(self._engine, name)(*args)
        return call

    def __getattr__(self, name):
        if name in ("train_epoch", "train_step", "loss_gradient", "forward"):
            return self._watched(name)
        return getattr(self._engine, name)


def _spied_plan(get_blas_threads, log):
    plan = NetworkPlan([20, 16, 3], "relu", batch_size=50, seed=0, backend="c")
    plan._engine = _EngineSpy(plan._engine, get_blas_threads, log)
    return plan


def test_plan_call_in_a_worker_thread_uses_one_thread_and_one_blas_thread(
        process_default, openblas_two_threads):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 20)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    logs = [[], []]

    def task(i):
        plan = _spied_plan(openblas_two_threads, logs[i])
        plan.train_epoch(X, y)
        plan.train_step(X[:50], y[:50])
        plan.loss_and_gradient(X[:50], y[:50])
        plan.forward(X)

    with parallel_config(backend="threading"):
        Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
    for log in logs:
        assert {n for kind, n in log if kind == "threads"} == {1}
        assert [n for kind, n in log if kind == "blas"] == [1, 1, 1, 1]
    assert openblas_two_threads() == 2  # the last one out restored OpenBLAS's count

    main_log = []
    plan = _spied_plan(openblas_two_threads, main_log)
    plan.train_epoch(X, y)
    plan.forward(X)
    assert {n for kind, n in main_log if kind == "threads"} == {process_default}
    assert [n for kind, n in main_log if kind == "blas"] == [2, 2]  # not held


def test_fits_of_a_threaded_search_run_on_one_thread(process_default, openblas_two_threads,
                                                      monkeypatch):
    log = []

    class SpiedPlan(NetworkPlan):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._engine = _EngineSpy(self._engine, openblas_two_threads, log)

    monkeypatch.setattr("fastmlp.sklearn.NetworkPlan", SpiedPlan)
    X, y = _mnist(300)
    search = GridSearchCV(_classifier(), {"alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2,
                          refit=False)
    with parallel_config(backend="threading"):
        _quietly(lambda: search.fit(X, y))
    assert {n for kind, n in log if kind == "threads"} == {1}
    assert {n for kind, n in log if kind == "blas"} == {1}
    assert len([1 for kind, _ in log if kind == "blas"]) >= 4 * 4  # 4 fits, epochs + scores


# -- threads: n_jobs=2 gives the bits of n_jobs=1 ------------------------------------------


def _search_results(search):
    """Every split's test score, the ranks and the best parameters."""
    results = search.cv_results_
    scores = {k: v for k, v in results.items() if k.startswith("split") or k.startswith("rank")}
    return scores, search.best_params_


def _assert_same_search(serial, parallel):
    serial_scores, serial_best = _search_results(serial)
    parallel_scores, parallel_best = _search_results(parallel)
    assert serial_scores.keys() == parallel_scores.keys()
    for key in serial_scores:
        np.testing.assert_array_equal(parallel_scores[key], serial_scores[key], err_msg=key)
    assert parallel_best == serial_best
    for a, b in zip(serial.best_estimator_.coefs_ + serial.best_estimator_.intercepts_,
                    parallel.best_estimator_.coefs_ + parallel.best_estimator_.intercepts_):
        np.testing.assert_array_equal(b, a)


def _fit_both(make_search, X, y, backend="threading"):
    serial = _quietly(lambda: make_search(1).fit(X, y))
    with parallel_config(backend=backend):
        parallel = _quietly(lambda: make_search(2).fit(X, y))
    return serial, parallel


def test_grid_search_on_threads_matches_serial():
    X, y = _mnist()
    serial, parallel = _fit_both(
        lambda n_jobs: GridSearchCV(_classifier(), GRID, cv=CV, n_jobs=n_jobs), X, y)
    _assert_same_search(serial, parallel)
    # the candidates differ, so that "the same best" means something
    assert len(set(serial.cv_results_["mean_test_score"])) > 1


def test_randomized_search_on_threads_matches_serial():
    X, y = _mnist()
    space = {"alpha": loguniform(1e-5, 1e-1), "learning_rate_init": loguniform(1e-4, 1e-2)}
    serial, parallel = _fit_both(
        lambda n_jobs: RandomizedSearchCV(_classifier(hidden_layer_sizes=(16,)), space,
                                          n_iter=4, cv=CV, random_state=0, n_jobs=n_jobs),
        X, y)
    _assert_same_search(serial, parallel)


def test_cross_validate_regressor_on_threads_matches_serial():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 10))
    y = X @ rng.standard_normal(10) + np.sin(X[:, 0])

    def run(n_jobs):
        regressor = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
        return cross_validate(regressor, X, y, cv=CV, n_jobs=n_jobs, return_estimator=True,
                              return_train_score=True)

    serial = _quietly(lambda: run(1))
    with parallel_config(backend="threading"):
        parallel = _quietly(lambda: run(2))
    for key in ("test_score", "train_score"):
        np.testing.assert_array_equal(parallel[key], serial[key])
    for a, b in zip(serial["estimator"], parallel["estimator"]):
        for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(wb, wa)


# -- Dask: a LocalCluster of worker processes --------------------------------------------


def _worker_threads():
    """(process id, fastmlp's default for a step, SciPy's OpenBLAS threads) where it runs."""
    from fastmlp.backends import _c_kernels

    functions = _c_kernels._openblas_threads()
    return os.getpid(), _threads.resolve(None), None if functions is None else functions[0]()


def test_dask_workers_run_fits_on_one_thread(dask_client):
    if "c" not in fastmlp.available_backends():
        pytest.skip("the C backend is not built")
    with parallel_config(backend="dask"):
        seen = Parallel(n_jobs=2)(delayed(_worker_threads)() for _ in range(4))
    assert os.getpid() not in {pid for pid, _, _ in seen}
    assert {threads for _, threads, _ in seen} == {1}
    assert {blas for _, _, blas in seen} <= {1, None}


def test_grid_search_on_dask_matches_serial(dask_client):
    from distributed import get_task_stream

    X, y = _mnist()
    with get_task_stream(dask_client) as stream:
        serial, parallel = _fit_both(
            lambda n_jobs: GridSearchCV(_classifier(), GRID, cv=CV, n_jobs=n_jobs), X, y,
            backend="dask")
    assert len(stream.data) >= 1  # the fits ran on the cluster
    # the workers run the same kernels on the same CPU: the same bits, not just the same
    # best parameters
    _assert_same_search(serial, parallel)
