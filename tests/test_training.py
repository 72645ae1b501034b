"""fastmlp.training: the epoch runner and the loop that MLP and the scikit-learn drop-ins share.

However an epoch is cut into backend calls (contiguous slices, rows gathered by the plan,
rows gathered by the runner), it trains the same batches in the same order as one call
over those rows; scikit-learn's alpha trains every batch with l2 = alpha / its rows (its
weight sum, with sample weights); the
loop asks for each epoch's order before the epoch, stops when asked and reports Ctrl-C
instead of raising it.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import training


def _twins(n_in, n_out, loss, dtype=np.float64, penalty="per_step"):
    """Two plans with the same weights; the first with `penalty`."""
    kw = dict(layer_sizes=[n_in, 7, n_out], activations="tanh", loss=loss, optimizer="adam",
              batch_size=8, seed=3, dtype=dtype, learning_rate=0.01)
    return fastmlp.NetworkPlan(**kw, penalty=penalty), fastmlp.NetworkPlan(**kw)


@pytest.mark.parametrize("selection", ["slices", "rows", "gathered"])
def test_a_chunked_epoch_is_one_call_over_the_same_rows(backend, dtype, rng, selection):
    X = rng.standard_normal((50, 4)).astype(dtype)
    y = rng.integers(0, 3, 50)
    chunked, whole = _twins(4, 3, "softmax_cross_entropy", dtype)
    order = None if selection == "slices" else rng.permutation(50)
    options = {"slices": dict(batches_per_call=2), "rows": dict(batches_per_call=2),
               "gathered": dict(gather_bytes=3 * 8 * X[0].nbytes)}[selection]
    calls = []
    runner = training.EpochRunner(chunked, X, y, 8, on_chunk=lambda b, loss: calls.append(b),
                                  **options)
    loss = runner.run(order)
    rows = np.arange(50) if order is None else order
    expected = whole.train_epoch(X[rows], y[rows], batch_size=8, shuffle=False)
    # 7 batches, the last of 2 rows: 2 per call, or 3 (24 rows of X) per gathered piece
    assert calls == ([3, 3, 1] if selection == "gathered" else [2, 2, 2, 1])
    assert loss == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-13)
    for (W, b), (W1, b1) in zip(chunked.weights, whole.weights):
        np.testing.assert_array_equal(W, W1)
        np.testing.assert_array_equal(b, b1)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("gathered", [False, True])
def test_alpha_is_l2_over_the_rows_of_each_batch(rng, n_out, gathered, weighted):
    """scikit-learn's penalty, and its loss_: the squared error averaged over the outputs
    (the data term only), for batches of 8, 8 and a last one of 4; with sample weights,
    alpha over each batch's weight sum."""
    X = rng.standard_normal((20, 4))
    Y = rng.standard_normal((20, n_out))
    w = rng.uniform(0.5, 2.0, 20) if weighted else None
    alpha = 0.3
    runner_plan, twin = _twins(4, n_out, "mean_squared_error", penalty="per_sample")
    order = rng.permutation(20) if gathered else None
    runner = training.EpochRunner(runner_plan, X, Y, 8, sample_weight=w, alpha=alpha,
                                  loss_per_output=True,
                                  gather_bytes=1 << 20 if gathered else None)
    loss = runner.run(order)
    rows = np.arange(20) if order is None else order
    expected = 0.0
    for start in range(0, 20, 8):
        batch = rows[start:start + 8]
        twin.l2 = alpha / (len(batch) if w is None else np.sum(w[batch]))
        penalty = 0.5 * twin.l2 * sum(float(np.sum(W * W)) for W, _ in twin.weights)
        data = twin.train_step(X[batch], Y[batch],
                               sample_weight=None if w is None else w[batch]) - penalty
        expected += (data / n_out + penalty) * len(batch)
    assert loss == pytest.approx(expected / 20, rel=1e-12)
    assert runner_plan.l2 == alpha
    for (W, b), (W1, b1) in zip(runner_plan.weights, twin.weights):
        np.testing.assert_allclose(W, W1, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b, b1, rtol=1e-12, atol=1e-15)


class _Runner:
    """Records the order of each epoch it runs; its loss is the epoch's number."""

    def __init__(self):
        self.orders = []
        self.rows, self.loss_total = 0, 0.0

    def run(self, order=None, start=None, stop=None):
        self.orders.append(order)
        return float(len(self.orders) - 1)

    def consistent(self):
        return True

    def position(self, epoch):
        return training.Position(epoch, self.rows, self.loss_total)


def test_the_loop_asks_for_each_order_before_its_epoch_and_stops_when_asked():
    runner, events = _Runner(), []
    orders = iter(range(100))

    def epoch_order(epoch):
        events.append(("order", epoch))
        return next(orders)

    def after_epoch(epoch, loss):
        events.append(("after", epoch, loss))
        return epoch == 2

    outcome = training.train(runner, 10, after_epoch, epoch_order=epoch_order,
                             before_epoch=lambda epoch: events.append(("before", epoch)))
    assert outcome == training.Outcome(3, stopped=True)
    assert runner.orders == [0, 1, 2]
    assert events[:3] == [("before", 0), ("order", 0), ("after", 0, 0.0)]
    assert len(events) == 9
    assert training.train(_Runner(), 4, lambda e, loss: False) == training.Outcome(4)


@pytest.mark.parametrize("where", ["before_epoch", "epoch_order", "run", "after_epoch"])
def test_ctrl_c_ends_the_loop_and_is_reported(where):
    def maybe_interrupt(name, epoch):
        if name == where and epoch == 2:
            raise KeyboardInterrupt

    class Interrupted(_Runner):
        def run(self, order=None, start=None, stop=None):
            maybe_interrupt("run", len(self.orders))
            return super().run(order)

    runner = Interrupted()
    outcome = training.train(
        runner, 10, lambda epoch, loss: maybe_interrupt("after_epoch", epoch),
        epoch_order=lambda epoch: maybe_interrupt("epoch_order", epoch),
        before_epoch=lambda epoch: maybe_interrupt("before_epoch", epoch))
    assert outcome == training.Outcome(2, interrupted=True)  # epochs 0 and 1 completed
