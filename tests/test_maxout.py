"""Maxout: a unit is the largest of its k pieces, and its gradient reaches the winner alone.

Every path a layer takes: the kernels (ops.maxout_forward/backward, dense_forward/backward)
on every backend and dtype against a reference written here in loops, finite differences,
the edges (ties, NaN, infinities), the fused network step (blocks on threads, tiles, the
inference chunks) against the NumPy backend, dropout, the activity penalty and max-norm
on its pieces, batch norm, MLP's fit, save and load, and hostile input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close, numerical_gradient, relative_error

import fastmlp
from fastmlp import ops


def ref_maxout(Z, k):
    """(A, winners): unit j's output and the index of its winning piece, row by row (the
    first maximum; a NaN piece wins at once, as np.argmax)."""
    n, units = Z.shape[0], Z.shape[1] // k
    A = np.empty((n, units), Z.dtype)
    winners = np.empty((n, units), np.int64)
    for i in range(n):
        for j in range(units):
            pieces = [float(z) for z in Z[i, j * k:(j + 1) * k]]
            best = next((p for p, z in enumerate(pieces) if math.isnan(z)), None)
            if best is None:
                best = max(range(k), key=lambda p: (pieces[p], -p))
            winners[i, j], A[i, j] = best, pieces[best]
    return A, winners


def ref_maxout_backward(dA, Z, k):
    _, winners = ref_maxout(Z, k)
    dZ = np.zeros(Z.shape, dA.dtype)
    for i in range(dA.shape[0]):
        for j in range(dA.shape[1]):
            dZ[i, j * k + winners[i, j]] = dA[i, j]
    return dZ


# -- kernels -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kernels_match_the_reference(backend, dtype, rng, k):
    Z = rng.standard_normal((7, 4 * k)).astype(dtype)
    dA = rng.standard_normal((7, 4)).astype(dtype)
    A_ref, _ = ref_maxout(Z, k)
    np.testing.assert_array_equal(ops.maxout_forward(Z, k), A_ref)  # a selection: exact
    np.testing.assert_array_equal(ops.maxout_backward(dA, Z, k), ref_maxout_backward(dA, Z, k))
    # through the activation kernels, k as alpha
    A = ops.activation_forward("maxout", Z, alpha=k)
    np.testing.assert_array_equal(A, A_ref)
    np.testing.assert_array_equal(ops.activation_backward("maxout", dA, A, Z=Z, alpha=k),
                                  ref_maxout_backward(dA, Z, k))


def test_edges_ties_nan_and_infinities(backend, dtype):
    inf, nan = np.inf, np.nan
    Z = np.array([[1.0, 1.0, 0.5, 2.0, 2.0, 2.0],  # ties: the first piece of the maximum
                  [3.0, nan, nan, 1.0, 7.0, 7.0],  # a NaN wins (its first one), is the output
                  [-inf, -inf, inf, 1.0, -1e4, 1e4]], dtype)  # infinities, large values
    dA = np.arange(1.0, 7.0, dtype=dtype).reshape(3, 2)
    A = ops.maxout_forward(Z, 3)
    np.testing.assert_array_equal(A, np.array([[1.0, 2.0], [nan, 7.0], [inf, 1e4]], dtype))
    assert ops.maxout_forward(Z[:, :3], 3)[1, 0] != ops.maxout_forward(Z[:, :3], 3)[1, 0]
    np.testing.assert_array_equal(ops.maxout_backward(dA, Z, 3),
                                  np.array([[1, 0, 0, 2, 0, 0],
                                            [0, 3, 0, 0, 4, 0],
                                            [0, 0, 5, 0, 0, 6]], dtype))
    # a unit whose pieces are all -inf passes -inf and its gradient to the first piece
    Z = np.full((1, 2), -inf, dtype)
    np.testing.assert_array_equal(ops.maxout_forward(Z, 2), [[-inf]])
    np.testing.assert_array_equal(ops.maxout_backward(np.ones((1, 1), dtype), Z, 2), [[1, 0]])


def test_an_empty_batch(backend, dtype):
    Z = np.empty((0, 6), dtype)
    assert ops.maxout_forward(Z, 3).shape == (0, 2)
    assert ops.maxout_backward(np.empty((0, 2), dtype), Z, 3).shape == (0, 6)


def test_out_arguments_and_the_callers_arrays(backend, dtype, rng):
    Z = rng.standard_normal((5, 6)).astype(dtype)
    dA = rng.standard_normal((5, 3)).astype(dtype)
    Z0, dA0 = Z.copy(), dA.copy()
    out = np.empty((5, 3), dtype)
    assert ops.maxout_forward(Z, 2, out=out) is out
    dZ_expected = ref_maxout_backward(dA, Z, 2)
    np.testing.assert_array_equal(ops.maxout_backward(dA, Z, 2), dZ_expected)
    np.testing.assert_array_equal(Z, Z0)
    np.testing.assert_array_equal(dA, dA0)
    # the backward pass may write over Z (what the network step does)
    assert ops.maxout_backward(dA, Z, 2, out=Z) is Z
    np.testing.assert_array_equal(Z, dZ_expected)


def test_bad_input_names_the_argument():
    Z = np.zeros((2, 6))
    with pytest.raises(ValueError, match="pieces"):
        ops.maxout_forward(Z, 1)
    with pytest.raises(ValueError, match="alpha: maxout"):
        ops.maxout_forward(np.zeros((2, 130)), 65)
    with pytest.raises(ValueError, match="multiple of 4 columns"):
        ops.maxout_forward(Z, 4)
    with pytest.raises(ValueError, match="alpha: maxout"):
        ops.activation_forward("maxout", Z, alpha=2.5)
    with pytest.raises(ValueError, match="dA"):
        ops.maxout_backward(np.zeros((2, 2)), Z, 2)
    with pytest.raises(TypeError, match="dtype"):
        ops.maxout_backward(np.zeros((2, 3), np.float32), Z, 2)
    with pytest.raises(ValueError, match="out: must not overlap Z"):
        ops.maxout_forward(Z, 2, out=Z.reshape(-1)[:6].reshape(2, 3))
    with pytest.raises(ValueError, match="Z: maxout's derivative needs"):
        ops.activation_backward("maxout", np.zeros((2, 3)), np.zeros((2, 3)), alpha=2)
    with pytest.raises(ValueError, match="W: maxout's 4 pieces"):
        ops.dense_forward(np.zeros((2, 3)), np.zeros((3, 6)), np.zeros(6), "maxout", alpha=4)


def test_gradient_against_finite_differences(backend, rng):
    """Away from ties (the kink, where the derivative does not exist) the gradient is
    exact: each unit's winner leads by at least 0.1, more than the step moves it."""
    k, units = 3, 4
    Z = rng.standard_normal((5, units * k))
    Zp = Z.reshape(5, units, k)
    winners = np.argmax(Zp, axis=2)
    np.put_along_axis(Zp, winners[:, :, None],
                      np.take_along_axis(Zp, winners[:, :, None], 2) + 0.2, 2)
    report = fastmlp.check_gradients("maxout", Z, alpha=k, entries=Z.size)
    assert report.worst < 1e-9, report


def test_dense_layer_forward_and_backward(backend, dtype, rng):
    k, n_in, units = 3, 6, 4
    X = rng.standard_normal((9, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, units * k)).astype(dtype)
    b = rng.standard_normal(units * k).astype(dtype)
    G = rng.standard_normal((9, units)).astype(dtype)
    Z_ref = X.astype(np.float64) @ W.astype(np.float64) + b
    Z = np.empty((9, units * k), dtype)
    A = ops.dense_forward(X, W, b, "maxout", alpha=k, Z_out=Z)
    assert_close(Z, Z_ref, dtype)
    np.testing.assert_array_equal(A, ref_maxout(Z, k)[0])
    np.testing.assert_array_equal(ops.dense_forward(X, W, b, "maxout", alpha=k), A)
    dX, dW, db = ops.dense_backward(G, X, W, A, "maxout", Z=Z, alpha=k, l2=0.1)
    dZ = ref_maxout_backward(G.astype(np.float64), Z, k)
    assert_close(dW, X.T.astype(np.float64) @ dZ + 0.1 * W, dtype, atol=1e-5)
    assert_close(db, dZ.sum(axis=0), dtype, atol=1e-5)
    assert_close(dX, dZ @ W.T.astype(np.float64), dtype, atol=1e-5)


def test_dense_layer_gradients_against_finite_differences(backend, rng):
    k, n_in, units = 2, 5, 3
    X = rng.standard_normal((6, n_in))
    W = rng.standard_normal((n_in, units * k))
    b = rng.standard_normal(units * k)
    G = rng.standard_normal((6, units))
    # keep every unit's winner ahead of its runner-up by more than the step changes it
    Zp = (X @ W + b).reshape(6, units, k)
    gap = np.abs(Zp[:, :, 0] - Zp[:, :, 1])
    assert gap.min() > 1e-3, gap.min()

    def objective():
        return float(np.sum(G * ops.dense_forward(X, W, b, "maxout", alpha=k)))

    Z = np.empty((6, units * k))
    A = ops.dense_forward(X, W, b, "maxout", alpha=k, Z_out=Z)
    dX, dW, db = ops.dense_backward(G, X, W, A, "maxout", Z=Z, alpha=k)
    for analytic, x in ((dX, X), (dW, W), (db, b)):
        assert relative_error(analytic, numerical_gradient(objective, x, 1e-7)) < 1e-6


# -- the network step ----------------------------------------------------------------------


def _plan(backend, dtype, sizes=(6, 8, 5, 3), pieces=(3, 2), **options):
    hidden = len(sizes) - 2
    return fastmlp.NetworkPlan(list(sizes), ["maxout"] * hidden, optimizer="adam",
                               learning_rate=1e-2, batch_size=options.pop("batch_size", 40),
                               dtype=dtype, seed=options.pop("seed", 0), backend=backend,
                               alpha=[*pieces[:hidden], None], **options)


def test_the_plan_lays_out_k_columns_per_unit(dtype):
    plan = _plan("c", dtype)
    assert [W.shape for W, _ in plan.weights] == [(6, 24), (8, 10), (5, 3)]
    assert [b.shape for _, b in plan.weights] == [(24,), (10,), (3,)]
    assert plan.parameters.size == 6 * 24 + 24 + 8 * 10 + 10 + 5 * 3 + 3
    # forward is the composition of the layers, maxout's reference between them
    X = np.random.default_rng(1).standard_normal((11, 6)).astype(dtype)
    h = X.astype(np.float64)
    for (W, b), k in zip(plan.weights[:-1], (3, 2)):
        h = ref_maxout(h @ W.astype(np.float64) + b, k)[0]
    W, b = plan.weights[-1]
    assert_close(plan.forward(X), h @ W + b, dtype, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"dropout": 0.25}, {"activity_l2": 0.1,
                                                                 "activity_l1": 0.01},
                                     {"max_norm": 0.5, "l2": 1e-3}],
                         ids=["plain", "dropout", "activity", "max_norm"])
def test_every_backend_trains_as_the_reference(backend, dtype, options):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 6)).astype(dtype)
    y = rng.integers(0, 3, 80)
    plans = [_plan(b, dtype, **options) for b in (backend, "numpy")]
    losses = [[p.train_epoch(X, y, batch_size=40) for _ in range(3)] for p in plans]
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(losses[0], losses[1], rtol=rtol)
    for (W, b), (W0, b0) in zip(plans[0].weights, plans[1].weights):
        np.testing.assert_allclose(W, W0, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(b, b0, rtol=rtol, atol=rtol)
    if "max_norm" in options:  # every piece's incoming weights, a column of W, obey it
        for W, _ in plans[0].weights:
            assert np.sqrt((W.astype(np.float64) ** 2).sum(axis=0)).max() <= 0.5 * (1 + 1e-6)


def test_network_gradients_against_finite_differences(backend, rng):
    plan = _plan(backend, np.float64, sizes=(4, 5, 3), pieces=(3,), batch_size=8, l2=0.1)
    X = rng.standard_normal((8, 4))
    y = rng.integers(0, 3, 8)
    for _, b in plan.weights:
        b[...] = rng.standard_normal(b.shape) * 0.1
    report = fastmlp.check_gradients(plan, X, y, entries=1000)
    # kinks: a step that crosses a tie is off; none of these seeds' entries does
    assert report.worst < 1e-6, report


def test_threads_give_the_same_bits(dtype, monkeypatch):
    """A step big enough for threads runs in row blocks (each with its own gradient
    copies) and, without copies, in tiles: either way the bits of one thread."""
    from fastmlp import plan as plan_module

    rng = np.random.default_rng(2)
    X = rng.standard_normal((512, 64)).astype(dtype)
    y = rng.integers(0, 10, 512)

    def train(n_threads):
        plan = _plan("c", dtype, sizes=(64, 256, 10), pieces=(2,), batch_size=256,
                     n_threads=n_threads, dropout=0.1)
        losses = [plan.train_epoch(X, y, batch_size=256) for _ in range(2)]
        out = plan.forward(X, chunk_rows=64)
        return losses, [a.copy() for W in plan.weights for a in W], out

    for tiles in (False, True):
        if tiles:
            monkeypatch.setattr(plan_module, "_BLOCK_GRADIENT_BYTES", 0)
        losses, weights, out = train(1)
        losses2, weights2, out2 = train(2)
        assert losses == losses2, tiles
        for a, a2 in zip(weights, weights2):
            np.testing.assert_array_equal(a, a2)
        np.testing.assert_array_equal(out, out2)
    # and the tiles agree with the reference
    reference = _plan("numpy", dtype, sizes=(64, 256, 10), pieces=(2,), batch_size=256,
                      dropout=0.1)
    ref_losses = [reference.train_epoch(X, y, batch_size=256) for _ in range(2)]
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol)


def test_maxout_is_for_hidden_layers_and_whole_pieces():
    with pytest.raises(ValueError, match="maxout is for hidden layers"):
        fastmlp.NetworkPlan([3, 4, 2], ["relu", "maxout"], loss="mean_squared_error")
    with pytest.raises(ValueError, match="alpha: maxout's pieces"):
        fastmlp.NetworkPlan([3, 4, 2], "maxout", alpha=[1, None])
    with pytest.raises(ValueError, match="alpha: maxout's pieces"):
        fastmlp.NetworkPlan([3, 4, 2], "maxout", alpha=[2.5, None])
    with pytest.raises(ValueError, match="maxout_pieces"):
        fastmlp.MLP((4,), "maxout", maxout_pieces=0)
    with pytest.raises(ValueError, match="alpha: maxout's pieces"):
        fastmlp.MLP((4,), "maxout", maxout_pieces=65)


# -- models --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plan", "batch_norm"])
def test_mlp_fits_saves_and_loads(backend, batch_norm, tmp_path):
    X, y = fastmlp.datasets.make_spiral(60, 3, seed=0, dtype=np.float32)
    model = fastmlp.MLP((24,), "maxout", maxout_pieces=3, batch_norm=batch_norm, seed=0)
    model.fit(X, y, epochs=60, batch_size=60, optimizer="adam", learning_rate=0.02,
              verbose=0)
    assert model.score(X, y) > 0.9  # a linear model scores about 0.5 on the spiral
    assert model.weights[0][0].shape == (2, 72)
    if batch_norm:
        assert model.net_.gamma[0].shape == (72,)  # normalised per piece, before the max
    path = tmp_path / "maxout.npz"
    model.save(path)
    loaded = fastmlp.MLP.load(path)
    assert loaded.maxout_pieces == 3
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    assert loaded.encode(X).shape == (180, 24)


def test_a_resumed_fit_is_the_same_bits(tmp_path):
    X, y = fastmlp.datasets.make_spiral(40, 3, seed=1, dtype=np.float32)
    options = dict(batch_size=20, optimizer="adam", verbose=0)
    expected = fastmlp.MLP((16,), "maxout", seed=3).fit(X, y, epochs=4, **options)
    path = tmp_path / "run.npz"
    fastmlp.MLP((16,), "maxout", seed=3).fit(X, y, epochs=2, checkpoint=path, **options)
    resumed = fastmlp.MLP.load(path).fit(X, y, epochs=4, checkpoint=path, resume=True,
                                         **options)
    for (W, b), (W0, b0) in zip(expected.weights, resumed.weights):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_a_file_whose_weights_do_not_match_its_pieces_is_refused(tmp_path):
    X, y = fastmlp.datasets.make_spiral(20, 3, seed=0, dtype=np.float32)
    model = fastmlp.MLP((8,), "maxout", maxout_pieces=2, seed=0).fit(X, y, epochs=1,
                                                                     verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    import json

    for pieces, match in ((3, "weights' shapes"), (1, "maxout_pieces"), (True, "maxout_pieces")):
        config = json.loads(str(arrays["config"]))
        config["maxout_pieces"] = pieces
        bad = tmp_path / f"bad{pieces}.npz"
        np.savez(bad, **{**arrays, "config": np.array(json.dumps(config))})
        with pytest.raises(ValueError, match=match):
            fastmlp.MLP.load(bad)


@pytest.mark.filterwarnings("ignore:.*(converge|Maximum iterations)")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_the_scikit_learn_drop_ins_take_maxout(solver):
    pytest.importorskip("sklearn")
    from fastmlp.sklearn import MLPClassifier, MLPRegressor

    X, y = fastmlp.datasets.make_spiral(60, 3, seed=0)
    clf = MLPClassifier((20, 12), "maxout", maxout_pieces=3, solver=solver, max_iter=300,
                        learning_rate_init=0.02, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(2, 60), (20, 36), (12, 3)]
    assert clf.score(X, y) > 0.9
    reg = MLPRegressor(hidden_layer_sizes=(8,), activation=["maxout"], solver=solver,
                       max_iter=50, random_state=0)
    reg.fit(X, X[:, 0] * X[:, 1])
    assert [c.shape for c in reg.coefs_] == [(2, 16), (8, 1)]
    assert reg.predict(X).shape == (180,)
    with pytest.raises(ValueError, match="maxout_pieces"):
        MLPClassifier((4,), "maxout", maxout_pieces=1).fit(X, y)
