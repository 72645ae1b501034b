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


# -- model files from strangers -----------------------------------------------------------

def _members(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array, header_shape=None):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    if header_shape is not None:  # the same bytes under a header that lies about the shape
        old = repr(array.shape).encode()
        new = repr(header_shape).encode()
        data = data.replace(old, new + b" " * (len(old) - len(new)) if len(new) <= len(old)
                            else new, 1)
    return data


def _config_of(members):
    import io
    import json

    return json.loads(str(np.lib.format.read_array(io.BytesIO(members["config.npy"]))))


def _with_config(members, config):
    import json

    return {**members, "config.npy": _npy(np.array(json.dumps(config)))}


def test_hostile_model_files_are_refused_before_anything_large_is_allocated(tmp_path):
    good = tmp_path / "good.npz"
    model = _model(0)
    model.save(good)
    members = _members(good)
    config = _config_of(members)
    W0 = np.load(good)["W0"]
    cases = {
        "a member declaring 100 GB": {**members, "W0.npy": _npy(W0, (10**10, 10))},
        "an object array": {**members, "classes.npy": _npy(np.array([1, "a"], object))},
        "an unexpected member": {**members, "payload.npy": _npy(np.zeros(3))},
        "a path in a member name": {**members, "../W0.npy": members["W0.npy"]},
        "a missing weight": {k: v for k, v in members.items() if k != "W1.npy"},
        "a weight of another shape": {**members, "W0.npy": _npy(W0[:10])},
        "a header that is not JSON": {**members, "config.npy": _npy(np.array("{nope"))},
        "a deeply nested header": _with_config(members, {**config, "history": [[[[[[[[[[1]]]]]]]]]]}),
        "a header of 2 MB": _with_config(members, {**config, "history": "x" * (2 << 20)}),
        "a huge batch in the header": _with_config(members, {**config, "batch_size": 1 << 23}),
        "a huge layer in the header": _with_config(
            members, {**config, "hidden_layer_sizes": [10**12]}),
        "a header that is a list": {**members, "config.npy": _npy(np.array("[1, 2]"))},
        "no header": {k: v for k, v in members.items() if k != "config.npy"},
    }
    for name, content in cases.items():
        path = tmp_path / "bad.npz"
        _write(path, content)
        with pytest.raises(ValueError, match="not a fastmlp model file"):
            fastmlp.MLP.load(path)
    with pytest.raises(ValueError, match="max_bytes"):
        fastmlp.MLP.load(good, max_bytes=1000)
    assert _same(fastmlp.MLP.load(good), model)


def test_flipped_bytes_give_a_value_error_or_the_same_model(tmp_path):
    good = tmp_path / "good.npz"
    model = _model(0)
    model.save(good)
    data = bytearray(good.read_bytes())
    rng = random.Random(1)
    refused = 0
    for _ in range(200):
        mutated = bytearray(data)
        mutated[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path = tmp_path / "flipped.npz"
        path.write_bytes(bytes(mutated))
        try:
            loaded = fastmlp.MLP.load(path)
        except ValueError:
            refused += 1
            continue
        assert _same(loaded, model)  # a flip the format does not read (zip metadata)
    assert refused > 150
