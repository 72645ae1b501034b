"""Saving never loses a model: MLP.save writes atomically (fastmlp/_files.py).

A process killed (SIGKILL) at random instants while it saves leaves the path loadable as
the old or the new model; a full disk (RLIMIT_FSIZE) or an unwritable target raises OSError
naming the path and keeps the old file; temporaries of killed writers are cleaned up.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import time

import numpy as np
import pytest

import fastmlp

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
KILL_TRIALS = 60


def _model(seed, n_features=300):
    X = np.random.default_rng(seed).standard_normal((50, n_features)).astype(np.float32)
    return fastmlp.MLP((64,), seed=seed).fit(X, np.arange(50) % 3, epochs=1, verbose=0)


def _weights(model):
    return [a for W, b in model.net_.weights for a in (W, b)]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))


def test_a_writer_killed_at_random_instants_leaves_the_old_or_the_new_model(tmp_path):
    path = tmp_path / "model.npz"
    old, new = _model(0), _model(1)
    old.save(path)
    rng = random.Random(0)
    for _ in range(KILL_TRIALS):
        pid = os.fork()
        if pid == 0:  # the child saves, alternately, until it is killed
            try:
                while True:
                    new.save(path)
                    old.save(path)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = fastmlp.MLP.load(path)
        assert _same(loaded, old) or _same(loaded, new)
    # the killed writers' temporaries go with the next save
    old.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_a_full_disk_raises_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    old = _model(0)
    old.save(path)
    before = path.read_bytes()
    pid = os.fork()
    if pid == 0:
        status = 3
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            try:
                _model(1).save(path)
            except OSError as exc:
                status = 0 if str(path) in str(exc) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # OSError naming the path
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_an_unwritable_target_raises_a_clear_error(tmp_path):
    model = _model(0)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"x")
    for target in (not_a_directory / "model.npz", tmp_path / "missing" / "model.npz"):
        with pytest.raises(OSError, match="cannot write"):
            model.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "model.npz"
    _model(0).save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o600)
    _model(1).save(path)  # a replaced file keeps its permissions
    assert path.stat().st_mode & 0o777 == 0o600
