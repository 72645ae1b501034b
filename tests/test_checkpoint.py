"""Checkpoints: fit(checkpoint=..., resume=True) continues an interrupted fit bit for bit.

A fit interrupted by a real SIGINT (at an epoch's end, or mid-epoch between two backend
calls), or by a KeyboardInterrupt raised in its bookkeeping, saves its whole state; the
file, loaded (here, or in a new process) and resumed, ends with the weights, batch-norm
statistics, history and best epoch of the fit that was never interrupted: every backend,
every stochastic optimizer, with dropout and batch normalisation, for each schedule.
L-BFGS resumes from the saved weights. A resume that cannot be that fit (other data, other
settings, another architecture, a plain model file) is refused.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastmlp
from fastmlp.progress import Progress

_FIT = dict(epochs=4, batch_size=8, verbose=0, validation_split=0.2, early_stopping=True,
            patience=3, schedule="cosine")
_OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "adadelta",
               "adamax", "nadam"]
_VARIANTS = {"plan": {}, "dropout": {"dropout": 0.3},
             "batch_norm": {"batch_norm": True, "dropout": 0.2},
             # a layer that keeps its pre-activation (plan and layered paths), by alias
             "silu": {"activation": "silu"},
             "gelu_batch_norm": {"activation": "gelu", "batch_norm": True},
             # W of k columns per unit, dZ written over the kept Z
             "maxout": {"activation": "maxout", "maxout_pieces": 3, "dropout": 0.2}}


def _data(n=600, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    return X, y


def _assert_same_fit(expected, got):
    for (W1, b1), (W2, b2) in zip(expected.weights, got.weights):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    extra = getattr(expected.net_, "extra_state", dict)()
    for name, value in extra.items():
        np.testing.assert_array_equal(value, got.net_.extra_state()[name], err_msg=name)
    assert got.history == expected.history
    for flag in ("stopped_early_", "best_epoch_"):  # fit's: a loaded model has neither
        assert getattr(got, flag, None) == getattr(expected, flag, None), flag


@pytest.fixture
def sigint_at(monkeypatch):
    """sigint_at(where, call): a real SIGINT to this process at the call-th progress update
    ("chunk": after a backend call) or epoch summary ("epoch": inside the epoch's record)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    calls = {"update": 0, "epoch_done": 0}

    def arm(where, call):
        method = {"chunk": "update", "epoch": "epoch_done"}[where]
        original = getattr(Progress, method)

        def signalling(self, *args):
            calls[method] += 1
            if calls[method] == call:
                signal.raise_signal(signal.SIGINT)
            return original(self, *args)

        monkeypatch.setattr(Progress, method, signalling)

    yield arm
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("variant", list(_VARIANTS))
@pytest.mark.parametrize("optimizer", _OPTIMIZERS)
@pytest.mark.parametrize("where", ["chunk", "epoch"])
def test_a_fit_stopped_by_sigint_resumes_bit_for_bit(backend, optimizer, variant, where,
                                                     sigint_at, tmp_path, monkeypatch):
    X, y = _data()
    options = dict(_FIT, optimizer=optimizer)
    expected = fastmlp.MLP((16,), seed=1, **_VARIANTS[variant]).fit(X, y, **options)
    # 480 training rows in batches of 8: two backend calls (32 + 28 batches) per epoch
    sigint_at(where, 3 if where == "chunk" else 2)
    path = tmp_path / "run.npz"
    stopped = fastmlp.MLP((16,), seed=1, **_VARIANTS[variant]).fit(X, y, **options,
                                                                   checkpoint=path)
    assert stopped.interrupted_
    monkeypatch.undo()
    saved = fastmlp.MLP.load(path)
    assert len(saved.history["loss"]) == (1 if where == "chunk" else 2)
    resumed = saved.fit(X, y, **options, checkpoint=path, resume=True)
    assert not resumed.interrupted_
    _assert_same_fit(expected, resumed)
    # the checkpoint now holds the finished fit: resuming it again changes nothing
    again = fastmlp.MLP.load(path).fit(X, y, **options, checkpoint=path, resume=True)
    _assert_same_fit(expected, again)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "callable"])
def test_each_schedule_resumes_where_it_was(schedule, tmp_path):
    X, y = _data()
    options = dict(_FIT, schedule=(lambda epoch, lr0: lr0 / (1 + epoch))
                   if schedule == "callable" else schedule, step_size=2, epochs=5)
    expected = fastmlp.MLP((16,), seed=2).fit(X, y, **options)
    path = tmp_path / "run.npz"
    fastmlp.MLP((16,), seed=2).fit(X, y, **{**options, "epochs": 3}, checkpoint=path)
    if schedule == "cosine":  # its learning rates depend on the epochs: not raised here
        with pytest.raises(AssertionError):
            _assert_same_fit(expected, fastmlp.MLP.load(path).fit(
                X, y, **options, checkpoint=path, resume=True))
        return
    resumed = fastmlp.MLP.load(path).fit(X, y, **options, checkpoint=path, resume=True)
    _assert_same_fit(expected, resumed)


def test_a_checkpoint_from_before_the_running_metric_resumes_at_an_epochs_end(tmp_path):
    # older checkpoints have no position.metric_total (at an epoch's end none is needed)
    # and not the settings added since (they trained with their defaults)
    X, y = _data()
    options = dict(_FIT, schedule="constant")
    expected = fastmlp.MLP((16,), seed=3).fit(X, y, **options)
    path = tmp_path / "run.npz"
    fastmlp.MLP((16,), seed=3).fit(X, y, **{**options, "epochs": 2}, checkpoint=path)
    def older(config, arrays):  # no running metric, none of the newer settings
        config["training"]["position"].pop("metric_total")
        for key in ("max_norm", "activity_l2", "activity_l1", "update_ratios"):
            config["training"]["settings"].pop(key)

    old = _edited(path, tmp_path / "old.npz", older)
    resumed = fastmlp.MLP.load(old).fit(X, y, **options, checkpoint=old, resume=True)
    _assert_same_fit(expected, resumed)
    assert resumed.history == expected.history


def test_checkpoints_are_written_every_k_epochs_at_the_end_and_load_as_models(
        tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "run.npz"
    copies = []
    original = fastmlp.MLP._write_checkpoint

    def keeping(self, target, position, *args):
        original(self, target, position, *args)
        copies.append((position.epoch, fastmlp.MLP.load(target),
                       self.predict(X[:50]).copy()))

    monkeypatch.setattr(fastmlp.MLP, "_write_checkpoint", keeping)
    fastmlp.MLP((16,), seed=0).fit(X, y, epochs=5, batch_size=16, verbose=0,
                                   checkpoint=path, checkpoint_every=2)
    assert [epoch for epoch, _, _ in copies] == [2, 4, 5]
    for epoch, saved, predicted in copies:
        assert len(saved.history["loss"]) == epoch
        np.testing.assert_array_equal(saved.predict(X[:50]), predicted)


def test_a_fit_with_no_seed_resumes_its_own_random_streams(tmp_path, monkeypatch):
    X, y = _data()
    path, kept = tmp_path / "run.npz", tmp_path / "epoch2.npz"
    original = fastmlp.MLP._write_checkpoint

    def keeping(self, target, position, *args):
        original(self, target, position, *args)
        if position.epoch == 2:
            shutil.copy(target, kept)

    monkeypatch.setattr(fastmlp.MLP, "_write_checkpoint", keeping)
    options = dict(_FIT, epochs=4)
    expected = fastmlp.MLP((16,), dropout=0.3, seed=None).fit(X, y, **options,
                                                              checkpoint=path)
    monkeypatch.undo()
    resumed = fastmlp.MLP.load(kept).fit(X, y, **options, checkpoint=kept, resume=True)
    _assert_same_fit(expected, resumed)


@pytest.mark.parametrize("where", ["training call", "validation"])
def test_a_keyboard_interrupt_raised_in_the_loop_resumes_bit_for_bit(where, tmp_path,
                                                                    monkeypatch):
    X, y = _data()
    expected = fastmlp.MLP((16,), seed=3).fit(X, y, **_FIT)
    target = (fastmlp.NetworkPlan, "train_epoch") if where == "training call" else \
        (fastmlp.MLP, "_evaluate_encoded")
    original, calls = getattr(*target), []

    def interrupting(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(*target, interrupting)
    path = tmp_path / "run.npz"
    assert fastmlp.MLP((16,), seed=3).fit(X, y, **_FIT, checkpoint=path).interrupted_
    monkeypatch.undo()
    resumed = fastmlp.MLP.load(path).fit(X, y, **_FIT, checkpoint=path, resume=True)
    _assert_same_fit(expected, resumed)


def test_resume_with_no_checkpoint_yet_starts_the_fit(tmp_path):
    X, y = _data()
    path = tmp_path / "run.npz"
    expected = fastmlp.MLP((16,), seed=4).fit(X, y, **_FIT)
    started = fastmlp.MLP((16,), seed=4).fit(X, y, **_FIT, checkpoint=path, resume=True)
    _assert_same_fit(expected, started)
    # and rerunning the same script finds the finished fit
    rerun = fastmlp.MLP((16,), seed=4).fit(X, y, **_FIT, checkpoint=path, resume=True)
    _assert_same_fit(expected, rerun)


def test_a_resume_that_cannot_be_the_same_fit_is_refused(tmp_path):
    X, y = _data()
    path, plain = tmp_path / "run.npz", tmp_path / "model.npz"
    model = fastmlp.MLP((16,), seed=5).fit(X, y, **_FIT, checkpoint=path)
    model.save(plain)
    with pytest.raises(ValueError, match="optimizer"):
        fastmlp.MLP.load(path).fit(X, y, **_FIT, learning_rate=0.5, resume=True)
    with pytest.raises(ValueError, match="batch_size"):
        fastmlp.MLP.load(path).fit(X, y, **dict(_FIT, batch_size=16), resume=True)
    with pytest.raises(ValueError, match="differ from the checkpointed"):
        fastmlp.MLP.load(path).fit(X[::-1], y[::-1], **_FIT, resume=True)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        fastmlp.MLP((17,), seed=5).fit(X, y, **_FIT, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="seed"):
        fastmlp.MLP((16,), seed=6).fit(X, y, **_FIT, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="not a checkpoint"):
        fastmlp.MLP((16,), seed=5).fit(X, y, **_FIT, checkpoint=plain, resume=True)
    with pytest.raises(ValueError, match="no checkpointed fit"):
        fastmlp.MLP.load(plain).fit(X, y, **_FIT, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fastmlp.MLP((16,)).fit(X, y, **_FIT, checkpoint=path, checkpoint_every=0)


def test_a_resumed_fit_stays_on_its_backend(tmp_path):
    X, y = _data()
    path = tmp_path / "run.npz"
    options = dict(_FIT, schedule="constant")
    fastmlp.MLP((16,), seed=6, backend="numpy").fit(X, y, **{**options, "epochs": 2},
                                                    checkpoint=path)
    resumed = fastmlp.MLP.load(path).fit(X, y, **options, checkpoint=path, resume=True)
    assert resumed.net_.backend == "numpy"
    expected = fastmlp.MLP((16,), seed=6, backend="numpy").fit(X, y, **options)
    _assert_same_fit(expected, resumed)
    fastmlp.MLP((16,), seed=6, backend="numpy").fit(X, y, **{**options, "epochs": 2},
                                                    checkpoint=path)
    with pytest.warns(RuntimeWarning, match="not bit for bit"):
        fastmlp.MLP((16,), seed=6, backend="c").fit(X, y, **options, checkpoint=path,
                                                    resume=True)


def test_an_interrupted_lbfgs_fit_resumes_from_its_weights(tmp_path, monkeypatch, sigint_at):
    X, y = _data()
    path = tmp_path / "run.npz"
    original, calls = fastmlp.NetworkPlan.loss_and_gradient, []

    def signalling(self, *args):
        calls.append(1)
        if len(calls) == 12:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(fastmlp.NetworkPlan, "loss_and_gradient", signalling)
    options = dict(epochs=200, optimizer="lbfgs", verbose=0)
    stopped = fastmlp.MLP((16,), seed=7).fit(X, y, **options, checkpoint=path)
    monkeypatch.undo()
    assert stopped.interrupted_ and 0 < stopped.n_iter_ < 12
    saved = fastmlp.MLP.load(path)
    np.testing.assert_array_equal(saved.weights[0][0], stopped.weights[0][0])
    resumed = saved.fit(X, y, **options, checkpoint=path, resume=True)
    assert not resumed.interrupted_
    assert stopped.n_iter_ < resumed.n_iter_ <= 200
    assert resumed.history["loss"][-1] < stopped.history["loss"][-1]


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import fastmlp
    path, mode, options = sys.argv[1], sys.argv[2], eval(sys.argv[3])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 20)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 1)
    fit = dict(epochs=30, batch_size=32, verbose=0, optimizer="adam", validation_split=0.1)
    if mode == "expected":
        model = fastmlp.MLP((64,), seed=0, **options).fit(X, y, **fit)
        model.save(path)
    elif mode == "interrupt":
        model = fastmlp.MLP((64,), seed=0, **options).fit(X, y, **fit, checkpoint=path)
        print("interrupted" if model.interrupted_ else "finished", flush=True)
    else:
        model = fastmlp.MLP.load(path).fit(X, y, **fit, checkpoint=path, resume=True)
        model.save(path + ".final.npz")
""")


@pytest.mark.parametrize("options", [{"dropout": 0.2}, {"batch_norm": True}],
                         ids=["dropout", "batch_norm"])
def test_a_process_stopped_by_sigint_mid_epoch_resumes_in_a_new_process(options, tmp_path):
    def child(mode, path):
        return [sys.executable, "-c", _CHILD, str(path), mode, repr(options)]

    path = tmp_path / "run.npz"
    expected = subprocess.Popen(child("expected", tmp_path / "expected.npz"))
    interrupted = subprocess.Popen(child("interrupt", path), stdout=subprocess.PIPE,
                                   text=True)
    deadline = time.monotonic() + 120
    while not path.exists() and interrupted.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first checkpoint: epoch 1 is done, epoch 2 is under way
    time.sleep(0.05 + 0.1 * np.random.default_rng().random())
    interrupted.send_signal(signal.SIGINT)
    out, _ = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 0 and out.strip() == "interrupted"
    position = fastmlp.MLP.load(path)._checkpoint["record"]["position"]
    assert 1 <= position["epoch"] < 30
    subprocess.run(child("resume", path), check=True, timeout=300)
    assert expected.wait(timeout=300) == 0
    _assert_same_fit(fastmlp.MLP.load(tmp_path / "expected.npz"),
                     fastmlp.MLP.load(f"{path}.final.npz"))


def _edited(source, target, edit):
    """A copy of the checkpoint at source with edit(config, arrays) applied."""
    import json

    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays.pop("config")))
    edit(config, arrays)
    np.savez(target, config=np.array(json.dumps(config)), **arrays)
    return target


def _set(path, value):
    def edit(config, arrays):
        *keys, last = path
        node = config
        for key in keys:
            node = node[key]
        node[last] = value
    return edit


def _array(name, value):
    def edit(config, arrays):
        arrays[name] = value
    return edit


_HOSTILE_CHECKPOINTS = {
    "negative rows": _set(("training", "position", "rows"), -1),
    "running metric of strings": _set(("training", "position", "metric_total"), ["a"]),
    "mid-epoch without its running metric": lambda config, arrays: config["training"][
        "position"].update(rows=16, metric_total=[]),
    "position not a dict": _set(("training", "position"), [0, 0]),
    "step not an integer": _set(("training", "network", "step"), "12"),
    "step too large": _set(("training", "network", "step"), 1 << 70),
    "dropout key too large": _set(("training", "network", "dropout_key"), 1 << 40),
    "generator state garbage": _set(("training", "network", "rng"),
                                    {"bit_generator": "PCG64", "state": {"state": "x"}}),
    "shuffle state of another generator": _set(("training", "shuffle"),
                                               {"bit_generator": "MT19937", "state": {}}),
    "history not lists": _set(("history",), {"loss": "abc"}),
    "optimizer state resized": _array("fit_state1_W_0", np.zeros((2, 2), np.float32)),
    "optimizer state of object dtype": _array("fit_state1_W_0", np.array(["x"])),
    "foreign optimizer state": _array("fit_state9_W_0", np.zeros(3, np.float32)),
    "best weights resized": _array("best_W0", np.zeros((1, 1), np.float32)),
    "batch-norm statistics that would broadcast": _array("extra_gamma0",
                                                         np.ones(1, np.float32)),
    "best batch-norm statistics resized": _array("best_extra_var0", np.ones(3, np.float32)),
}


@pytest.mark.parametrize("name", list(_HOSTILE_CHECKPOINTS))
@pytest.mark.parametrize("variant", ["dropout", "batch_norm"])
def test_a_malformed_checkpoint_is_refused_at_load_or_resume(name, variant, tmp_path):
    X, y = _data()
    path = tmp_path / "run.npz"
    fastmlp.MLP((16,), seed=8, **_VARIANTS[variant]).fit(X, y, **{**_FIT, "epochs": 2},
                                                         checkpoint=path)
    bad = _edited(path, tmp_path / "bad.npz", _HOSTILE_CHECKPOINTS[name])
    try:
        model = fastmlp.MLP.load(bad)
    except ValueError:
        return
    before = model.predict(X)
    with pytest.raises(ValueError, match="resume"):
        model.fit(X, y, **_FIT, resume=True)
    np.testing.assert_array_equal(model.predict(X), before)  # the model as it was
