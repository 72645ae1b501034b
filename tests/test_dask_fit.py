"""fastmlp.dask.fit: one MLP trained across the workers of a Dask cluster.

The module-scoped `dask_client` fixture (conftest.py) gives 2 single-threaded worker
processes on loopback; the killed-worker test starts and closes its own cluster. Skipped
with the reason when the `dask` extra is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask", reason="the 'dask' extra is not installed")
distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")

import dask.array as da  # noqa: E402

import fastmlp  # noqa: E402
import fastmlp.dask  # noqa: E402
from fastmlp.datasets import make_spiral  # noqa: E402

STRATEGIES = ("model_average", "gradient_average")


@pytest.fixture(scope="module")
def spiral():
    return make_spiral(100, 3, seed=0)


def test_import_fastmlp_does_not_import_dask():
    code = ("import sys, fastmlp; bad = [m for m in ('dask', 'distributed') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_partition_is_mlp_fit_bit_for_bit(dask_client, spiral, strategy):
    """The worker runs the training core: one partition gives MLP.fit's weights."""
    X, y = spiral
    single = fastmlp.MLP((20,), seed=7).fit(X, y, epochs=4, batch_size=64, verbose=0)
    model = fastmlp.dask.fit(
        fastmlp.MLP((20,), seed=7), da.from_array(X, chunks=(len(X), -1)),
        da.from_array(y, chunks=len(y)), client=dask_client, epochs=4, batch_size=64,
        strategy=strategy, sync_every=3 if strategy == "model_average" else None)
    np.testing.assert_array_equal(model.net_.parameters, single.net_.parameters)
    np.testing.assert_array_equal(model.classes_, single.classes_)
    np.testing.assert_allclose(model.history["loss"], single.history["loss"], rtol=1e-6)


def test_same_seed_same_weights_on_two_partitions(dask_client, spiral):
    X, y = spiral
    fits = [fastmlp.dask.fit(fastmlp.MLP((16,), seed=3), X, y, client=dask_client, epochs=3,
                             batch_size=40, sync_every=2).net_.parameters for _ in range(2)]
    np.testing.assert_array_equal(fits[0], fits[1])
    other = fastmlp.dask.fit(fastmlp.MLP((16,), seed=4), X, y, client=dask_client, epochs=3,
                             batch_size=40, sync_every=2).net_.parameters
    assert not np.array_equal(fits[0], other)


def test_the_result_is_an_ordinary_fitted_mlp(dask_client, spiral, tmp_path):
    X, y = spiral
    labels = np.array(["a", "b", "c"])[y]  # labels are encoded as MLP.fit encodes them
    model = fastmlp.dask.fit(fastmlp.MLP((16,), seed=0, standardize=True), X, labels,
                             client=dask_client, epochs=3, batch_size=50)
    assert isinstance(model, fastmlp.MLP)
    assert model.classes_.tolist() == ["a", "b", "c"]
    assert len(model.history["loss"]) == len(model.history["lr"]) == 3
    assert model.history["loss"][-1] < model.history["loss"][0]
    assert set(model.predict(X)) <= {"a", "b", "c"}
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(model.input_mean_, X.mean(axis=0), rtol=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.MLP.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.score(X, labels) == model.score(X, labels)


@pytest.mark.parametrize("strategy, batch_size, sync_every",
                         [("model_average", 50, 3), ("gradient_average", 50, None)])
def test_both_strategies_reach_the_single_process_accuracy(dask_client, spiral, strategy,
                                                          batch_size, sync_every):
    """Two partitions: gradient averaging's step sees one batch of each (100 rows, as the
    single process's); model averaging averages after 3 steps of 50 rows (an epoch)."""
    X, y = spiral
    single = fastmlp.MLP((64,), seed=1).fit(X, y, epochs=30, batch_size=100,
                                            learning_rate=0.03, verbose=0)
    model = fastmlp.dask.fit(fastmlp.MLP((64,), seed=1), X, y, client=dask_client,
                             epochs=30, batch_size=batch_size, strategy=strategy,
                             sync_every=sync_every, learning_rate=0.03)
    assert single.score(X, y) > 0.9
    assert model.score(X, y) > single.score(X, y) - 0.05


def test_regression_targets(dask_client):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    model = fastmlp.dask.fit(fastmlp.MLP((16,), seed=0), X, y, client=dask_client,
                             epochs=40, batch_size=25, learning_rate=0.01)
    assert model.task_ == "regression"
    assert model.score(X, y) > 0.9


def test_a_killed_worker_does_not_lose_the_fit(spiral, monkeypatch):
    """A worker process killed mid-fit (SIGKILL at the start of the fit's fifth round): its
    nanny starts another, Dask recomputes the lost partition and reruns the round, and the
    fit ends with the weights of an undisturbed one (a round does not depend on where it
    runs)."""
    X, y = spiral
    Xd, yd = da.from_array(X, chunks=(150, -1)), da.from_array(y, chunks=150)
    options = dict(epochs=4, batch_size=30, sync_every=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        undisturbed = fastmlp.dask.fit(fastmlp.MLP((16,), seed=5), Xd, yd, client=client,
                                       **options)
        pids = client.run(os.getpid)
        rounds = []
        state_of = fastmlp.dask._state_of

        def killing_at_round_five(net):  # the driver reads the state once a round
            rounds.append(len(rounds))
            if len(rounds) == 5:
                os.kill(next(iter(pids.values())), signal.SIGKILL)
            return state_of(net)

        monkeypatch.setattr(fastmlp.dask, "_state_of", killing_at_round_five)
        model = fastmlp.dask.fit(fastmlp.MLP((16,), seed=5), Xd, yd, client=client,
                                 **options)
        assert len(rounds) > 5  # the kill came mid-fit
        client.wait_for_workers(2, timeout=30)
        assert set(client.run(os.getpid).values()) != set(pids.values())  # one was replaced
    np.testing.assert_array_equal(model.net_.parameters, undisturbed.net_.parameters)


def test_bad_input_is_named(dask_client, spiral):
    X, y = spiral
    Xd = da.from_array(X, chunks=(100, -1))
    with pytest.raises(ValueError, match="strategy"):
        fastmlp.dask.fit(fastmlp.MLP(), X, y, client=dask_client, strategy="allreduce")
    with pytest.raises(ValueError, match="row chunks"):
        fastmlp.dask.fit(fastmlp.MLP(), Xd, da.from_array(y, chunks=150), client=dask_client)
    with pytest.raises(ValueError, match="different lengths"):
        fastmlp.dask.fit(fastmlp.MLP(), Xd, da.from_array(y[:-1], chunks=100),
                         client=dask_client)
    with pytest.raises(ValueError, match="different lengths"):
        fastmlp.dask.fit(fastmlp.MLP(), X, y[:-1], client=dask_client)
    with pytest.raises(ValueError, match="sync_every"):
        fastmlp.dask.fit(fastmlp.MLP(), X, y, client=dask_client,
                         strategy="gradient_average", sync_every=5)
    with pytest.raises(TypeError, match="model"):
        fastmlp.dask.fit("MLP", X, y, client=dask_client)
    with pytest.raises(ValueError, match="batch_norm"):
        fastmlp.dask.fit(fastmlp.MLP(batch_norm=True), X, y, client=dask_client)
    with pytest.raises(TypeError, match="client"):
        fastmlp.dask.fit(fastmlp.MLP(), X, y, client="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="NaN"):  # found on the worker, raised here
        bad = X.copy()
        bad[5, 0] = np.nan
        fastmlp.dask.fit(fastmlp.MLP(), bad, y, client=dask_client)


def test_no_client_at_all_is_named():
    code = ("import numpy as np, fastmlp, fastmlp.dask\n"
            "try:\n"
            "    fastmlp.dask.fit(fastmlp.MLP(), np.zeros((4, 2)), np.arange(4) % 2)\n"
            "except ValueError as e:\n"
            "    assert 'client' in str(e) and 'no Dask client' in str(e), e\n"
            "else:\n"
            "    raise SystemExit('no error')\n")
    subprocess.run([sys.executable, "-c", code], check=True)
