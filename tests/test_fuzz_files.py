"""Fuzzing MLP.load with damaged and doctored model files (hypothesis).

Four small models are saved once per module (a 3-class classifier in float32, a 2-output
regressor in float64, and with batch_norm=True, so that extra_* members exist, a binary
classifier with string labels in float32 and a regressor in float64), and two checkpoints
of fits with dropout, a validation split and early stopping (Adam; batch norm with
momentum), whose fit_* and best_* members hold the optimizer's state and the best epoch.
Each test draws one of them and one kind of mutation:

- damage to the bytes, several edits at once: bits flipped and bytes overwritten anywhere
  or aimed at the zip headers, the central directory, the end record and the .npy headers,
  and the sizes in a local header or the central directory set to any value (4 GB too);
  the file cut short; bytes put before it (among them a .npy header declaring 100 GB);
- a doctored archive, written again with correct checksums: members dropped, renamed (to
  names save writes and to foreign ones) or doubled; an array replaced by one of another
  shape or dtype (object and structured dtypes too); a .npy header rewritten (shapes of
  100 GB or whose product wraps around int64, other descr, fortran_order True, other
  versions, lengths of up to 4 GB, nested or non-dict text); the JSON header edited (keys
  removed, values of other types or from another model, huge ints, deep nesting, not a
  dict, not JSON).

What must hold: MLP.load raises ValueError, or it returns a model, which for damaged bytes
is the original model (only bytes the reader never uses were hit: the zip checksums catch
the rest) and for a doctored archive is what the archive holds (it saves back the same
arrays and architecture, uses every member, and predicts; a classifier's classes_ match
its probabilities; a checkpoint's fit resumes, or fit refuses it with a ValueError and
leaves the model as it was). Never another exception, and never a large allocation: each load runs
with the address space limited (RLIMIT_AS) to what the process has plus 1.5 GiB, so that
an allocation beyond that is a MemoryError, which fails the test (the fixture first checks
that the limit does refuse a 100 GB array).

Each failure the fuzzer found is kept as an @example of the test that found it.

Profiles (tests/_hypothesis_profiles.py): the default "ci" makes 300 loads per test, about
2100 in all (derandomized: the same files on every run; under 10 s); a soak draws 20000
random ones per test, 140000 in all (about 6 minutes):
``HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz_files.py -p no:cacheprovider``
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import struct
import warnings
import zipfile

import _hypothesis_profiles  # noqa: F401  (registers and loads the profile)
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fastmlp

resource = pytest.importorskip("resource")

# examples (one load each) per test: 10x the profile's count (ci: 300, long: 20000)
EXAMPLES = 10 * settings().max_examples
HEADROOM = 3 << 29  # 1.5 GiB above the address space in use when a load starts
MODEL_NAMES = ("classifier-f32", "regressor-f64", "binary-bn-f32", "regressor-bn-f64",
               "checkpoint-f32", "checkpoint-bn-f64")
# a checkpoint's fit: its data and arguments, by the data's fingerprint in its header
_CHECKPOINTED_FITS = {}


# -- the saved models ------------------------------------------------------------------------

@dataclasses.dataclass(repr=False)
class SavedModel:
    """A saved model: its file's bytes, its members and where the zip keeps what."""
    data: bytes
    members: dict  # zip member name -> its bytes, in the archive's order
    regions: dict  # region name -> [(start, stop), ...] of byte offsets in data
    local_headers: list  # offset of each member's local header, in order
    central_entries: list  # offset of each member's central directory entry, in order
    config: dict

    def __repr__(self):  # hypothesis prints the test's arguments, fixtures included
        return f"<a saved model of {len(self.data)} bytes>"


class _SavedModels(dict):
    def __repr__(self):
        return f"<saved models {sorted(self)}>"


def _fit(name, path):
    """Saves model `name` at path: a fitted model, or a checkpoint of a fit with all its
    state (optimizer moments, early stopping's best weights, batch-norm statistics)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((20, 5))
    dtype = np.float32 if name.endswith("f32") else np.float64
    model = fastmlp.MLP((8,), batch_norm="-bn-" in name, dtype=dtype, seed=3,
                        dropout=0.2 if name.startswith("checkpoint") else 0.0)
    y = {"classifier-f32": np.arange(20) % 3,
         "regressor-f64": X[:, :2],
         "binary-bn-f32": np.where(X[:, 0] > 0, "yes", "no"),
         "regressor-bn-f64": X[:, 0],
         "checkpoint-f32": np.arange(20) % 3,
         "checkpoint-bn-f64": X[:, 0]}[name]
    X = X.astype(dtype)
    if not name.startswith("checkpoint"):
        model.fit(X, y, epochs=2, verbose=0).save(path)
        return
    options = dict(epochs=3, batch_size=4, verbose=0, validation_split=0.25,
                   early_stopping=True, optimizer="adam" if "-bn-" not in name else "momentum")
    model.fit(X, y, **options, checkpoint=path)
    digest = fastmlp.MLP.load(path)._checkpoint["record"]["data"]
    _CHECKPOINTED_FITS[digest] = (X, y, options)


def _layout(data):
    """Regions of a zip written by np.savez (one disk, no zip64, no comment)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        members = {info.filename: archive.read(info) for info in infos}
    end_record = data.rindex(b"PK\x05\x06")
    central_start = struct.unpack_from("<I", data, end_record + 16)[0]
    local_headers, npy_headers, central_entries = [], [], []
    for info in infos:
        start = info.header_offset
        name_length, extra_length = struct.unpack_from("<HH", data, start + 26)
        data_start = start + 30 + name_length + extra_length
        local_headers.append((start, data_start))
        header_end = data_start + _npy_header_length(members[info.filename])
        npy_headers.append((data_start, header_end))
    position = central_start
    while position < end_record:
        central_entries.append(position)
        lengths = struct.unpack_from("<HHH", data, position + 28)
        position += 46 + sum(lengths)
    regions = {"anywhere": [(0, len(data))], "local headers": local_headers,
               "npy headers": npy_headers, "central directory": [(central_start, end_record)],
               "end record": [(end_record, len(data))]}
    return members, regions, [start for start, _ in local_headers], central_entries


def _npy_header_length(npy):
    stream = io.BytesIO(npy)
    version = np.lib.format.read_magic(stream)
    {(1, 0): np.lib.format.read_array_header_1_0,
     (2, 0): np.lib.format.read_array_header_2_0}[version](stream)
    return stream.tell()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: SavedModel} of MODEL_NAMES."""
    directory = tmp_path_factory.mktemp("saved")
    result = _SavedModels()
    for name in MODEL_NAMES:
        path = directory / f"{name}.npz"
        _fit(name, path)
        data = path.read_bytes()
        members, regions, local_headers, central_entries = _layout(data)
        config = json.loads(str(_array(members["config.npy"])))
        result[name] = SavedModel(data, members, regions, local_headers, central_entries,
                                  config)
    return result


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """The path each mutated file is written to."""
    return tmp_path_factory.mktemp("fuzz") / "mutated.npz"


# -- loading under a memory limit ------------------------------------------------------------

def _address_space_in_use():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def _address_space_limited(headroom=HEADROOM):
    """The soft RLIMIT_AS at the address space in use plus headroom, then as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space_in_use() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module")
def load():
    """MLP.load under the memory limit: the model, or the ValueError it raised (any other
    exception, MemoryError included, propagates and fails the test)."""
    try:
        _address_space_in_use()
    except OSError:
        pytest.skip("needs /proc/self/status")
    before = resource.getrlimit(resource.RLIMIT_AS)
    with _address_space_limited():  # the limit does what the tests rely on
        with pytest.raises(MemoryError):
            np.empty(100 * 10**9, dtype=np.uint8)
        with pytest.raises(MemoryError):
            np.ones(HEADROOM + (256 << 20), dtype=np.uint8)
        np.ones(64 << 20, dtype=np.uint8)  # and does not refuse what a load may need
    assert resource.getrlimit(resource.RLIMIT_AS) == before

    def load_limited(path):
        with _address_space_limited():
            try:
                return fastmlp.MLP.load(path)
            except ValueError as exc:
                assert "not a fastmlp model file" in str(exc)
                return exc

    return load_limited


# -- what must hold --------------------------------------------------------------------------

def _array(npy):
    return np.lib.format.read_array(io.BytesIO(npy), allow_pickle=False)


def _saved_arrays(model, path):
    """{name: array} of what model.save writes."""
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _same_values(a, b):
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    return np.array_equal(a, b)


def _assert_refused_or_original(result, original, target):
    """Damaged bytes: a ValueError, or the original model (bitwise, and the same header)."""
    if isinstance(result, ValueError):
        return
    expected = {name[:-4]: _array(npy) for name, npy in original.members.items()}
    if "training" in original.config:  # a checkpoint: the fit's state, as it was
        state = result._checkpoint
        assert state["record"] == original.config["training"]
        held = {**{f"fit_{k}": v for k, v in state["network"].items()},
                **{f"best_{kind}{i}": a for i, pair in enumerate(state["best"] or ())
                   for kind, a in zip("Wb", pair)},
                **{f"best_extra_{k}": v for k, v in state["best_extra"].items()}}
        assert held.keys() == {k for k in expected if k.startswith(("fit_", "best_"))}
        for name, array in held.items():
            assert array.dtype == expected[name].dtype
            assert array.tobytes() == expected.pop(name).tobytes(), name
    arrays = _saved_arrays(result, target)
    assert arrays.keys() == expected.keys()
    for name, array in expected.items():
        if name == "config":
            saved_back = json.loads(str(arrays[name]))
            assert saved_back == {k: v for k, v in json.loads(str(array)).items()
                                  if k != "training"}
        else:
            assert arrays[name].dtype == array.dtype and arrays[name].tobytes() == array.tobytes()


def _assert_refused_or_faithful(result, members, target):
    """A doctored archive: a ValueError, or a model that is what the archive holds."""
    if isinstance(result, ValueError):
        return
    model = result
    held = {name[:-4]: _array(npy) for name, npy in members.items()}
    # (an element is at least a byte: more of them than the file has bytes were made up,
    # and comparing them could take forever)
    assert all(array.size <= sum(map(len, members.values())) for array in held.values())
    held_config = json.loads(str(held["config"]))
    checkpoint = held_config.get("training") if isinstance(held_config, dict) else None
    if isinstance(checkpoint, dict):  # the model is its plain members, the rest its fit
        held = {k: v for k, v in held.items() if not k.startswith(("fit_", "best_"))}
    arrays = _saved_arrays(model, target)
    # every member was used and none made up: the model saves back the archive's members
    assert arrays.keys() == held.keys()
    for name, array in held.items():
        if name != "config":
            assert _same_values(arrays[name], array), name
    config = json.loads(str(arrays["config"]))
    for key in ("hidden_layer_sizes", "n_features_in_", "n_outputs_", "task_", "batch_size",
                "history"):
        if key in held_config:  # (as JSON text: NaN is NaN)
            assert json.dumps(config[key]) == json.dumps(held_config[key]), key
    if isinstance(checkpoint, dict):
        _assert_resumes_or_refuses(model, checkpoint)
    # and it is a model that works
    X = np.random.default_rng(0).standard_normal((7, model.n_features_in_)).astype(model.dtype)
    with np.errstate(all="ignore"):
        if not np.isfinite(model.decision_function(X)).all():
            # values that give NaN (weights, a negative running variance): the archive's,
            # faithfully, and predict refuses NaN outputs (the NaN policy)
            return
    predicted = model.predict(X)
    assert len(predicted) == len(X)
    if model.task_ in ("classification", "binary"):
        assert model.classes_.ndim == 1
        assert model.predict_proba(X).shape == (len(X), len(model.classes_))
        assert set(predicted.tolist()) <= set(model.classes_.tolist())


def _assert_resumes_or_refuses(model, record):
    """A checkpoint that loaded resumes its fit, or fit refuses it with a ValueError that
    says so, leaving the model as it was (or the fit is not one of ours: nothing to do)."""
    fit = _CHECKPOINTED_FITS.get(record.get("data"))
    if fit is None:
        return
    X, y, options = fit
    before = [(W.copy(), b.copy()) for W, b in model.weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another backend named in the header
        try:
            model.fit(X, y, **options, resume=True)
        except ValueError as exc:
            assert "resume" in str(exc) or "diverged" in str(exc), exc
            for (W, b), (W0, b0) in zip(model.weights, before):
                assert np.array_equal(W, W0, equal_nan=True)
                assert np.array_equal(b, b0, equal_nan=True)


# -- damaged bytes ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Flip:
    """Flip one bit of the byte at `position` (modulo the region's size) of a region."""
    region: str
    position: int
    bit: int

    def apply(self, saved, data):
        offset = _offset_in(saved.regions[self.region], self.position)
        data[offset] ^= 1 << self.bit


@dataclasses.dataclass(frozen=True)
class Overwrite:
    """Write `content` over the bytes from `position` (modulo the region's size) on."""
    region: str
    position: int
    content: bytes

    def apply(self, saved, data):
        offset = _offset_in(saved.regions[self.region], self.position)
        data[offset:offset + len(self.content)] = self.content[:len(data) - offset]


@dataclasses.dataclass(frozen=True)
class ZipSize:
    """Set a member's compressed or uncompressed size in its local header or in the
    central directory (which is what zipfile reads)."""
    member: int
    record: str  # "local" or "central"
    field: str  # "compressed" or "uncompressed"
    value: int

    def apply(self, saved, data):
        offsets = saved.local_headers if self.record == "local" else saved.central_entries
        start = offsets[self.member % len(offsets)]
        field = {("local", "compressed"): 18, ("local", "uncompressed"): 22,
                 ("central", "compressed"): 20, ("central", "uncompressed"): 24}
        struct.pack_into("<I", data, start + field[self.record, self.field], self.value)


def _offset_in(ranges, position):
    position %= sum(stop - start for start, stop in ranges)
    for start, stop in ranges:
        if position < stop - start:
            return start + position
        position -= stop - start
    raise AssertionError("unreachable")


_REGIONS = st.sampled_from(["anywhere", "local headers", "npy headers", "central directory",
                            "end record"])
_POSITIONS = st.integers(0, 1 << 16)
_SIZES = st.one_of(st.integers(0, 0xFFFFFFFF),
                   st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF]))
_EDITS = st.one_of(
    st.builds(Flip, _REGIONS, _POSITIONS, st.integers(0, 7)),
    st.builds(Overwrite, _REGIONS, _POSITIONS, st.binary(min_size=1, max_size=8)),
    st.builds(ZipSize, st.integers(0, 8), st.sampled_from(["local", "central"]),
              st.sampled_from(["compressed", "uncompressed"]), _SIZES),
)
# a .npy version 2.0 header whose length field claims 4 GB, in a member whose zip entry
# claims 4 GB too: numpy's header reader asked zipfile for 4 GB in one read (MemoryError)
_HEADER_OF_4_GB = [Overwrite("npy headers", 6, b"\x02\x00\xf0\xff\xff\xff"),
                   ZipSize(0, "central", "compressed", 0xFFFFFFF0),
                   ZipSize(0, "central", "uncompressed", 0xFFFFFFF0)]


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), edits=st.lists(_EDITS, min_size=1, max_size=8))
@example(name="classifier-f32", edits=_HEADER_OF_4_GB)
# zipfile raises NotImplementedError for an unknown compression method (1 here), and
# RuntimeError (a password is needed) or NotImplementedError for these flag bits
@example(name="classifier-f32", edits=[Overwrite("central directory", 10, b"\x01")])
@example(name="regressor-f64", edits=[Flip("central directory", 8, 0)])
@example(name="regressor-f64", edits=[Flip("central directory", 8, 5)])
@example(name="regressor-f64", edits=[Flip("central directory", 8, 6)])
def test_damaged_bytes_are_refused_or_unused(saved, target, load, name, edits):
    data = bytearray(saved[name].data)
    for edit in edits:
        edit.apply(saved[name], data)
    target.write_bytes(bytes(data))
    _assert_refused_or_original(load(target), saved[name], target)


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), length=st.integers(0, 1 << 16))
def test_a_file_cut_short_is_refused(saved, target, load, name, length):
    data = saved[name].data
    target.write_bytes(data[:length % len(data)])
    assert isinstance(load(target), ValueError)


def _npy_bytes(header, payload=b"", version=(1, 0), length=None):
    """A .npy member with `header` (a dict or text) as is, its length field `length`."""
    text = header if isinstance(header, str) else repr(header)
    encoded = text.encode("latin1", "replace")
    length_format = "<H" if version == (1, 0) else "<I"
    length = len(encoded) if length is None else length
    return (b"\x93NUMPY" + bytes(version) + struct.pack(length_format, length) + encoded
            + payload)


# np.load picks .npy by the first bytes, zipfile finds the archive after them: a .npy
# header declaring 100 GB before a valid archive passed the checks and np.load allocated it
_NPY_OF_100_GB = _npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**10, 10)})


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES),
       prefix=st.one_of(st.binary(min_size=1, max_size=64), st.just(_NPY_OF_100_GB),
                        st.binary(max_size=64).map(b"PK\x03\x04".__add__)))
@example(name="regressor-f64", prefix=_NPY_OF_100_GB)
def test_bytes_before_the_archive_are_refused_or_skipped(saved, target, load, name, prefix):
    target.write_bytes(prefix + saved[name].data)
    _assert_refused_or_original(load(target), saved[name], target)


# -- doctored archives -----------------------------------------------------------------------

def _zip(members):
    """An archive of [(name, bytes), ...] as np.savez writes one (stored, not compressed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": on purpose
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def _write_doctored(target, members):
    """Write the archive; {name: bytes} as a reader sees it: the last of a doubled name,
    and a name cut at a NUL (as zipfile cuts it)."""
    target.write_bytes(_zip(members))
    return {name.split("\0")[0]: content for name, content in members}


# what save writes for these models, and for models with one more layer
_SAVE_NAMES = ["config.npy", "classes.npy", "W0.npy", "b0.npy", "W1.npy", "b1.npy", "W2.npy",
               "b2.npy"] + [f"extra_{k}{i}.npy" for k in ("gamma", "beta", "mean", "var")
                            for i in (0, 1)] + [
               # a checkpoint's: optimizer state (a plan's, a layered network's), best epoch
               "fit_state1_W_0.npy", "fit_state2_b_1.npy", "fit_state0_0.npy",
               "best_W0.npy", "best_b1.npy", "best_extra_gamma0.npy"]
_FOREIGN_NAMES = ["payload.npy", "W0", "W0.NPY", "../W0.npy", "dir/W0.npy", "W100.npy",
                  "W.npy", "extra_.npy", "extra_foo.npy", "config.npy.npy", "W0.npy\0x",
                  "Wé.npy", ".npy"]


def _member_of(members, name):
    """name if the archive has it, else one of the members it has (so that a draw of a
    name only other models have still mutates something)."""
    return name if name in members else sorted(members)[len(name) % len(members)]


_MEMBER_EDITS = st.lists(
    st.tuples(st.sampled_from(["drop", "rename", "double"]), st.sampled_from(_SAVE_NAMES),
              st.sampled_from(_SAVE_NAMES + _FOREIGN_NAMES)),
    min_size=1, max_size=4)


def _edit_members(members, edits):
    """[(name, bytes)] of the members after edits [(drop | rename | double, name, new name)]."""
    members = list(members.items())
    for kind, name, new_name in edits:
        names = [n for n, _ in members]
        if not names:
            break
        index = names.index(_member_of(names, name))
        if kind == "drop":
            del members[index]
        elif kind == "rename":
            members[index] = (new_name, members[index][1])
        else:
            members.append((new_name, members[index][1]))
    return members


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), edits=_MEMBER_EDITS)
# -- for MLP.load (model.py) to refuse: a classifier without classes (it loaded, then
# predict raised AttributeError), no batch-norm state (it loaded with the defaults), and
# foreign state (ignored until LayeredNetwork.set_extra_state checked the names)
@example(name="classifier-f32", edits=[("drop", "classes.npy", "")])
@example(name="binary-bn-f32", edits=[("rename", "classes.npy", "extra_classes.npy")])
@example(name="regressor-bn-f64", edits=[("drop", f"extra_{state}0.npy", "")
                                         for state in ("gamma", "beta", "mean", "var")])
@example(name="regressor-bn-f64", edits=[("double", "extra_var0.npy", "extra_foo.npy")])
# a checkpoint's array in a plain model file (it loaded, the array ignored)
@example(name="classifier-f32", edits=[("double", "W0.npy", "fit_state1_W_0.npy")])
def test_dropped_renamed_or_doubled_members_are_refused_or_what_the_archive_holds(
        saved, target, load, name, edits):
    members = _write_doctored(target, _edit_members(saved[name].members, edits))
    _assert_refused_or_faithful(load(target), members, target)


_DTYPES = ["<f2", "<f4", "<f8", ">f4", ">f8", "<i4", "<i8", "|u1", "|b1", "<U3", "<c8",
           "<M8[ns]", "|S4", "|V8", [("a", "<f4"), ("b", "<f4")], "object"]


def _npy_of(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _replacement(original, shape, dtype):
    """.npy bytes of an array of `shape` and `dtype`, the original's values where they fit."""
    if dtype == "object":  # written by hand: np.save would pickle it
        return _npy_bytes({"descr": "|O", "fortran_order": False, "shape": shape},
                          b"\0" * 8 * int(np.prod(shape)))
    if np.dtype(dtype).names:
        return _npy_of(np.zeros(shape, dtype))
    values = np.resize(original.ravel(), shape) if original.size else np.zeros(shape)
    try:
        with np.errstate(all="ignore"):
            return _npy_of(values.astype(dtype))
    except ValueError:  # text that is not a number
        return _npy_of(np.zeros(shape, dtype))


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), member=st.sampled_from(_SAVE_NAMES),
       shape=st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=3).map(tuple)),
       dtype=st.one_of(st.none(), st.sampled_from(_DTYPES)))
# -- for MLP.load (model.py) to refuse: classes that are a scalar (it loaded, then predict
# raised IndexError), batch-norm state of another shape (broadcast until set_extra_state
# checked the shapes)
@example(name="classifier-f32", member="classes.npy", shape=(), dtype=None)
@example(name="binary-bn-f32", member="extra_gamma0.npy", shape=(1,), dtype=None)
def test_an_array_of_another_shape_or_dtype_is_refused_or_what_the_archive_holds(
        saved, target, load, name, member, shape, dtype):
    """shape, dtype: None for the original's."""
    members = dict(saved[name].members)
    member = _member_of(members, member)
    original = _array(members[member])
    members[member] = _replacement(original, original.shape if shape is None else shape,
                                   original.dtype.str if dtype is None else dtype)
    members = _write_doctored(target, list(members.items()))
    _assert_refused_or_faithful(load(target), members, target)


ORIGINAL = "original"


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """A .npy header to put on a member's data: `text` as is, or else a dict of descr,
    fortran_order and shape (ORIGINAL: the member's own); `payload`: the member's data,
    none, or as many bytes as the header declares; `length`: the length field's value."""
    text: str | None = None
    descr: object = ORIGINAL
    fortran_order: object = False
    shape: object = ORIGINAL
    payload: str = "original"  # or "none", "declared"
    version: tuple = (1, 0)
    length: int | None = None  # None: the text's

    def npy(self, original):
        header = self.text
        if header is None:
            header = {"descr": original.dtype.str if self.descr == ORIGINAL else self.descr,
                      "fortran_order": self.fortran_order,
                      "shape": original.shape if self.shape == ORIGINAL else self.shape}
        payload = original.tobytes() if self.payload == "original" else b""
        if self.payload == "declared" and self.text is None:
            try:
                size = math.prod(header["shape"]) * np.dtype(header["descr"]).itemsize
            except (TypeError, ValueError, OverflowError):
                size = 0
            payload = b"\x01" * size if 0 <= size < 1 << 20 else b""
        return _npy_bytes(header, payload, self.version, self.length)


_HOSTILE_HEADER_TEXTS = [
    "-" * 3000 + "1",  # ast.literal_eval: RecursionError (and MemoryError at 9000)
    "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "-" * 9000 + "1,), }",
    "not " * 2400 + "1",
    "(" * 300 + ")" * 300,
    "[" * 150 + "]" * 150,
    "{'descr': '<f4'}",
    "[1, 2]",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 8), 'x': 1, }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (5.0, 8), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (0x5, 8), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 8), }" + " " * 10000,
    "{'descr': b'<f4', 'fortran_order': False, 'shape': (5, 8), }",
    "{'descr': '<f4', 'fortran_order': None, 'shape': (5, 8), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 8), }\0",
    "\xff" * 64,
    "",
]
_SHAPES = st.one_of(
    st.just(ORIGINAL),
    st.lists(st.integers(0, 9), max_size=3).map(tuple),
    st.sampled_from([(10**10, 10), (2**32, 2**32), (2**61 + 1, 8), (2**63, 1), (2**64,),
                     (-1, -1), (-5, 8), (10**30,), (0, 10**12)]),
)
_DESCRS = st.sampled_from([ORIGINAL, "<f4", "<f8", ">f4", "<i4", "<u8", "|b1", "<U0", "<U1",
                           "<U2", "|O", "|V8", "<c8", "(2,3)<f8", "xyz", "",
                           [("a", "<f4")], ("<f4", (2,)), 5, None])
_NPY_HEADERS = st.builds(
    NpyHeader,
    text=st.one_of(st.none(), st.none(), st.sampled_from(_HOSTILE_HEADER_TEXTS)),
    descr=_DESCRS,
    fortran_order=st.sampled_from([False, False, True, 1, "yes"]),
    shape=_SHAPES,
    payload=st.sampled_from(["original", "none", "declared"]),
    version=st.sampled_from([(1, 0), (1, 0), (2, 0), (3, 0), (0, 0), (255, 255)]),
    length=st.one_of(st.none(), st.none(), st.sampled_from([0, 1, 0xFFFF])),
)


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), member=st.sampled_from(_SAVE_NAMES),
       header=_NPY_HEADERS)
# a shape whose product wraps around int64 (to 0) passed as an empty array
@example(name="classifier-f32", member="W0.npy",
         header=NpyHeader(shape=(2**32, 2**32), payload="none"))
# 10**12 empty strings cost no bytes and passed the size checks
@example(name="classifier-f32", member="classes.npy",
         header=NpyHeader(descr="<U0", shape=(10**12,), payload="none"))
# a header numpy's reader passes to ast.literal_eval: RecursionError, MemoryError
@example(name="regressor-f64", member="W0.npy", header=NpyHeader(text=_HOSTILE_HEADER_TEXTS[0]))
@example(name="regressor-f64", member="W0.npy", header=NpyHeader(text=_HOSTILE_HEADER_TEXTS[1]))
# text of UCS-4 code units above U+10FFFF (bytes 01 01 01 01): str() of the header and
# .tolist() of the classes raised SystemError
@example(name="classifier-f32", member="config.npy", header=NpyHeader(descr="<U1",
                                                                      payload="declared"))
@example(name="classifier-f32", member="classes.npy", header=NpyHeader(descr="<U1",
                                                                       payload="declared"))
# -- for MLP.load (model.py) to refuse: batch-norm state of integers (rounded to float32
# until set_extra_state checked dtypes), float64 weights in a float32 model (1e-303 became 0)
@example(name="binary-bn-f32", member="extra_beta0.npy", header=NpyHeader(descr="<i4"))
@example(name="classifier-f32", member="W0.npy", header=NpyHeader(descr="<f8",
                                                                  payload="declared"))
def test_a_rewritten_npy_header_is_refused_or_what_the_archive_holds(
        saved, target, load, name, member, header):
    members = dict(saved[name].members)
    member = _member_of(members, member)
    members[member] = header.npy(_array(members[member]))
    members = _write_doctored(target, list(members.items()))
    _assert_refused_or_faithful(load(target), members, target)


_CONFIG_KEYS = ["format", "version", "hidden_layer_sizes", "activation", "task", "loss",
                "dropout", "batch_norm", "init", "dtype", "seed", "task_", "n_features_in_",
                "n_outputs_", "history", "batch_size", "unknown", "training"]


@dataclasses.dataclass(frozen=True)
class ConfigEdit:
    """Give `key` of the JSON header another value: `value`, or (with from_model) that
    model's, or (with remove) none at all."""
    key: str
    value: object = None
    from_model: str | None = None
    remove: bool = False

    def apply(self, saved, config):
        if self.remove:
            config.pop(self.key, None)
        elif self.from_model is not None:
            config[self.key] = saved[self.from_model].config.get(self.key)
        else:
            config[self.key] = self.value


def _json_containers(children):
    return st.one_of(st.lists(children, max_size=3),
                     st.dictionaries(st.text(max_size=4), children, max_size=3))


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from([10**30, -10**30, 2**63, -1, 0, 1 << 31, 1 << 24,
                               json.loads("[" * 20 + "1" + "]" * 20)])),
    _json_containers, max_leaves=8)
_CONFIG_EDITS = st.one_of(
    st.builds(ConfigEdit, st.sampled_from(_CONFIG_KEYS), remove=st.just(True)),
    st.builds(ConfigEdit, st.sampled_from(_CONFIG_KEYS), from_model=st.sampled_from(MODEL_NAMES)),
    st.builds(ConfigEdit, st.sampled_from(_CONFIG_KEYS), value=_JSON_VALUES),
)
_HOSTILE_JSON_TEXTS = [
    "[" * 100000 + "]" * 100000,  # json.loads: RecursionError, before the depth check
    '{"a": ' * 5000 + "1" + "}" * 5000,
    "1" * 5000,
    "{nope",
    "",
    '"' + "x" * (2 << 20) + '"',
    "NaN",
    "[]",
    "null",
]
# a whole header: the model's with edits, a JSON value that is not a dict, or not JSON
_CONFIGS = st.one_of(
    st.lists(_CONFIG_EDITS, min_size=1, max_size=3),
    st.lists(_CONFIG_EDITS, min_size=1, max_size=3),
    st.lists(_CONFIG_EDITS, min_size=1, max_size=3),
    _JSON_VALUES.map(json.dumps),
    st.sampled_from(_HOSTILE_JSON_TEXTS),
)


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(MODEL_NAMES), config=_CONFIGS)
# json.loads raised RecursionError on deep nesting before the depth was checked
@example(name="classifier-f32", config=_HOSTILE_JSON_TEXTS[0])
# -- for MLP.load (model.py) to refuse: a regressor said to be a classifier (it loaded,
# then predict raised AttributeError), batch norm without its state (it loaded with the
# defaults), float64 weights under a float32 header (rounded)
@example(name="regressor-f64", config=[ConfigEdit("task_", "classification")])
@example(name="classifier-f32", config=[ConfigEdit("batch_norm", True)])
@example(name="regressor-f64", config=[ConfigEdit("dtype", from_model="classifier-f32")])
# a regressor with a classifier's checkpointed fit: the refused resume had left the task
# and classes of the fit it refused
@example(name="regressor-f64", config=[ConfigEdit("training", from_model="checkpoint-f32")])
def test_an_edited_json_header_is_refused_or_what_the_archive_holds(
        saved, target, load, name, config):
    """config: [ConfigEdit] of the model's header, or the header's text."""
    if not isinstance(config, str):
        edited = dict(saved[name].config)
        for edit in config:
            edit.apply(saved, edited)
        config = json.dumps(edited)
    members = {**saved[name].members, "config.npy": _npy_of(np.array(config))}
    members = _write_doctored(target, list(members.items()))
    _assert_refused_or_faithful(load(target), members, target)
