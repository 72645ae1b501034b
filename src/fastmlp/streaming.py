"""Training data larger than memory: the blocks of a stream, one at a time.

A Stream wraps one of three forms of a training set and hands out its blocks as in-memory
NumPy arrays (X, y, sample_weight or None), raw: the front end (MLP.fit, the drop-ins)
validates and encodes each block as it would an in-memory X, y, and the training core
(training.StreamRunner) trains it. The forms:

- a Dask array X (y and sample_weight Dask arrays or in-memory arrays): a block is one
  chunk of X's rows, computed by Dask (``dask.compute``, on whatever scheduler is active;
  X is rechunked to whole rows, y to X's row chunks, by Dask);
- a memory-mapped array X (``np.load(path, mmap_mode="r")`` or ``np.memmap``; y in
  memory or memory-mapped too): a block is `block_bytes` of X's rows, read from the file
  with ordinary file reads, not through the mapping, so the pages read are not kept in
  the process (resident memory stays at about two blocks whatever the file's size);
- chunks: a sequence (list, tuple) of (X, y) or (X, y, sample_weight) tuples, any other
  iterable of them, or a callable returning a fresh iterator of them. A sequence's blocks
  can be visited in any order; an iterable's come in its own order, each pass iterating
  it again (a callable is called again). A one-shot iterator (a generator, ``iter(...)``)
  can be read once: a second pass (a second epoch, or a first pass to find the classes)
  raises ValueError.

What needs all the data (the classes, standardize's statistics) is found in a pass over
the stream before training; see the README's "More data than memory" for what is not
streamed.
"""

from __future__ import annotations

import itertools
import math
import mmap
import numbers
import os
import sys
from collections.abc import Sequence

import numpy as np

# A memory-mapped X is read this many bytes of rows at a time: large enough that a read
# and the network's gather run at memory speed, small beside the data (two such blocks,
# the one read and its shuffled copy, are what a stream keeps in memory)
BLOCK_BYTES = 64 << 20


def _dask_array_type():
    """dask.array.Array if Dask is imported (a Dask array cannot exist otherwise)."""
    module = sys.modules.get("dask.array")
    return None if module is None else module.Array


def is_dask_array(a):
    kind = _dask_array_type()
    return kind is not None and isinstance(a, kind)


def is_stream(X, y, block_bytes=BLOCK_BYTES):
    """Whether fit streams X: a Stream, a Dask array, a memory-mapped array larger than
    one block (a smaller one is read whole, like any array), or chunks (y None, X not an
    array)."""
    if isinstance(X, Stream) or is_dask_array(X):
        return True
    if isinstance(X, np.memmap):
        return X.nbytes > block_bytes
    if y is not None or hasattr(X, "__array__") or hasattr(X, "shape"):
        return False  # an in-memory X (a DataFrame, a sparse matrix), its y given or not
    if isinstance(X, (list, tuple)):  # chunks, or rows of numbers
        first = X[0] if len(X) else None
        return isinstance(first, (list, tuple)) and len(first) in (2, 3) and (
            hasattr(first[0], "shape") or isinstance(first[0], (list, tuple)))
    return callable(X) or _is_iterable(X)


def _is_iterable(obj):
    try:
        iter(obj)
    except TypeError:
        return False
    return not isinstance(obj, (str, bytes))


class Stream:
    """A training set read one block at a time.

    Parameters
    ----------
    X : dask.array.Array, numpy.memmap, or chunks
        A Dask array of shape (n_samples, n_features); a memory-mapped array of that
        shape (``np.load(path, mmap_mode="r")``); or chunks: a sequence or iterable of
        ``(X, y)`` or ``(X, y, sample_weight)`` tuples of arrays, or a callable returning
        a fresh iterator of them (a one-shot iterator is read once).
    y : dask.array.Array or array-like, optional
        The targets of a Dask or memory-mapped X, row for row (None for chunks).
    sample_weight : dask.array.Array or array-like of shape (n_samples,), optional
        Row weights of a Dask or memory-mapped X (chunks carry their own).
    block_bytes : int, default BLOCK_BYTES (64 MiB)
        The bytes of a memory-mapped X's rows read per block (at least one row).

    Attributes
    ----------
    n_blocks : int or None
        Blocks in a pass; None for chunks that are not a sequence (known after a pass).
    n_samples : int or None
        Rows in a pass; None for chunks (known after a pass).
    shuffle_blocks : bool
        Whether the blocks can be read in any order (Dask, memmap, a sequence of chunks).
    """

    def __init__(self, X, y=None, *, sample_weight=None, block_bytes=BLOCK_BYTES):
        if isinstance(block_bytes, bool) or not isinstance(block_bytes, numbers.Integral) \
                or block_bytes < 1:
            raise ValueError(f"block_bytes: expected a positive int, got {block_bytes!r}")
        self.block_bytes = int(block_bytes)
        self._replay = None  # a one-shot iterator's first chunk, taken by first_block()
        self._consumed = False  # a one-shot iterator has been read
        self.n_samples = None
        if is_dask_array(X):
            self._init_dask(X, y, sample_weight)
        elif isinstance(X, np.memmap):
            self._init_memmap(X, y, sample_weight)
        elif isinstance(X, np.ndarray) or not (callable(X) or _is_iterable(X)):
            raise TypeError(f"X: expected a Dask array, a memory-mapped array or chunks of "
                            f"(X, y), got {type(X).__name__}")
        else:
            if y is not None or sample_weight is not None:
                raise ValueError("y, sample_weight: chunks carry their own (X, y) or "
                                 "(X, y, sample_weight); pass y=None")
            self._chunks = X
            self._kind = "chunks"
            self.shuffle_blocks = isinstance(X, Sequence)
            self.n_blocks = len(X) if self.shuffle_blocks else None

    # -- the three forms ----------------------------------------------------------------

    def _init_dask(self, X, y, sample_weight):
        import dask.array as da

        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D Dask array (n_samples, n_features), got "
                             f"{X.ndim}-D")
        if any(math.isnan(c) for c in X.chunks[0]):
            raise ValueError("X: a Dask array of unknown chunk sizes; call "
                             "X.compute_chunk_sizes() first")
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        arrays = [X]
        for name, a in (("y", y), ("sample_weight", sample_weight)):
            if a is None:
                if name == "y":
                    raise ValueError("y: required with a Dask array X")
                arrays.append(None)
                continue
            a = a if is_dask_array(a) else da.from_array(np.asarray(a), chunks=X.chunks[0][0])
            if a.ndim == 0 or a.shape[0] != X.shape[0]:
                raise ValueError(f"{name}: expected {X.shape[0]} rows as X, got shape "
                                 f"{a.shape}")
            if any(math.isnan(c) for c in a.chunks[0]):
                raise ValueError(f"{name}: a Dask array of unknown chunk sizes; call "
                                 f"{name}.compute_chunk_sizes() first")
            chunks = {0: X.chunks[0], **({1: -1} if a.ndim == 2 else {})}
            arrays.append(a.rechunk(chunks))
        self._arrays = arrays
        self._kind = "dask"
        self.shuffle_blocks = True
        self.n_blocks = X.numblocks[0]
        self.n_samples = X.shape[0]

    def _init_memmap(self, X, y, sample_weight):
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got shape "
                             f"{X.shape}")
        arrays = [X]
        for name, a in (("y", y), ("sample_weight", sample_weight)):
            if a is None:
                if name == "y":
                    raise ValueError("y: required with a memory-mapped X")
                arrays.append(None)
                continue
            if not isinstance(a, np.memmap):
                a = np.asarray(a)
            if a.ndim == 0 or a.shape[0] != X.shape[0]:
                raise ValueError(f"{name}: expected {X.shape[0]} rows as X, got shape "
                                 f"{a.shape}")
            arrays.append(a)
        self._arrays = arrays
        self._kind = "memmap"
        self.shuffle_blocks = True
        row_bytes = max(1, X.shape[1] * X.itemsize)
        self._block_rows = max(1, self.block_bytes // row_bytes)
        self.n_samples = X.shape[0]
        self.n_blocks = max(1, -(-X.shape[0] // self._block_rows))

    # -- reading ------------------------------------------------------------------------

    def blocks(self, order=None):
        """The blocks of one pass, each read when it is reached.

        Parameters
        ----------
        order : sequence of int, optional
            A permutation of ``range(n_blocks)`` (only when `shuffle_blocks`); default:
            the blocks as stored.

        Returns
        -------
        iterator of (int, tuple)
            ``(index, (X, y, sample_weight or None))`` per block, the arrays in memory and
            raw (not yet validated).
        """
        if order is not None and not self.shuffle_blocks:
            raise ValueError("this stream's blocks come in its own order")
        if self._kind == "chunks" and not self.shuffle_blocks:
            return self._iterate_chunks()
        indices = range(self.n_blocks) if order is None else order
        return ((int(i), self.block(int(i))) for i in indices)

    def block(self, i):
        """One block, read into memory (not for an iterable's chunks).

        Parameters
        ----------
        i : int
            The block, 0 <= i < n_blocks.

        Returns
        -------
        tuple of ndarray
            ``(X, y, sample_weight or None)``, raw.
        """
        if self._kind == "dask":
            import dask

            parts = [None if a is None else a.blocks[i] for a in self._arrays]
            loaded = dask.compute(*[p for p in parts if p is not None])
            it = iter(loaded)
            return tuple(None if p is None else next(it) for p in parts)
        if self._kind == "memmap":
            start = i * self._block_rows
            stop = min(start + self._block_rows, self._arrays[0].shape[0])
            return tuple(None if a is None else _read_rows(a, start, stop)
                         for a in self._arrays)
        return _chunk(self._chunks[i], i)

    def first_block(self):
        """The first block, without using up a pass: a one-shot iterator's first chunk is
        kept, and the next pass starts with it.

        Returns
        -------
        tuple of ndarray
            ``(X, y, sample_weight or None)``, raw.
        """
        if self._kind != "chunks" or self.shuffle_blocks:
            if not self.n_blocks:
                raise ValueError("X: the stream has no rows")
            return self.block(0)
        source = self._chunks
        iterator = source() if callable(source) else iter(source)
        try:
            chunk = next(iter(iterator))
        except StopIteration:
            raise ValueError("X: the stream has no chunks") from None
        if iterator is source:
            self._replay = chunk
        return _chunk(chunk, 0)

    def _iterate_chunks(self):
        source = self._chunks
        if callable(source):
            iterator = source()
            if not _is_iterable(iterator):
                raise TypeError(f"X: the callable returned {type(iterator).__name__}, not an "
                                "iterator of (X, y) chunks")
        else:
            iterator = iter(source)
            if iterator is source and self._replay is not None:
                iterator, self._replay = itertools.chain([self._replay], iterator), None
            elif iterator is source and self._consumed:
                raise ValueError(
                    "X: a one-shot iterator of chunks (a generator) is read once, and this "
                    "fit reads it again (a second epoch, or a first pass to find the classes "
                    "or standardize's statistics): pass a list of chunks, a re-iterable, or "
                    "a callable returning a fresh iterator")
            self._consumed = self._consumed or iterator is not source
        blocks = rows = 0
        for chunk in iterator:
            block = _chunk(chunk, blocks)
            yield blocks, block
            blocks, rows = blocks + 1, rows + len(block[0])
        self.n_blocks, self.n_samples = blocks, rows


def scan(stream, *, labels=False, moments=False):
    """What a fit needs from all of a stream before it trains, in one pass: the distinct
    labels of a 1-D y (labels=True) and the columns' float64 mean and standard deviation
    (moments=True). Returns (labels or None, (mean, std) or None). A Dask array is
    reduced by Dask (da.unique, mean, std, in one compute); a memory-mapped X's in-memory
    or memory-mapped y is read whole when only labels are asked (it is X's size over its
    columns); otherwise the blocks are read once."""
    if not (labels or moments):
        return None, None
    if stream._kind == "dask":
        import dask
        import dask.array as da

        X, y = stream._arrays[:2]
        tasks = ([da.unique(y.reshape(-1))] if labels else []) + (
            [X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)]
            if moments else [])
        found = list(dask.compute(*tasks))
        return (found.pop(0) if labels else None), (tuple(found) if moments else None)
    if stream._kind == "memmap" and not moments:
        return np.unique(np.asarray(stream._arrays[1]).reshape(-1)), None
    found, spread = [], Moments()
    for i, (X, y, _) in stream.blocks():
        if labels:
            found.append(np.unique(y.reshape(-1)))
        if moments:
            if X.dtype.kind not in "fiub" or X.ndim != 2:
                raise TypeError(f"X: block {i}: expected numeric features of shape "
                                f"(n_samples, n_features), got {X.dtype} of shape {X.shape}")
            spread.add(X)
    if labels:
        found = np.unique(np.concatenate(found)) if found else None
    return (found if labels else None), ((spread.mean, spread.std) if moments else None)


def _chunk(chunk, i):
    """A chunk's (X, y, sample_weight or None), checked for its form and row counts."""
    if not isinstance(chunk, (tuple, list)) or len(chunk) not in (2, 3):
        raise ValueError(f"X: chunk {i}: expected a tuple (X, y) or (X, y, sample_weight), "
                         f"got {type(chunk).__name__}")
    X, y, w = (*chunk, None) if len(chunk) == 2 else chunk
    X, y = np.asarray(X), np.asarray(y)
    w = None if w is None else np.asarray(w)
    n = X.shape[0] if X.ndim else -1
    for name, a in (("y", y), ("sample_weight", w)):
        if a is not None and (a.ndim == 0 or a.shape[0] != n):
            raise ValueError(f"X: chunk {i}: {name} has shape {a.shape}, X {X.shape}: "
                             "not the same rows")
    return X, y, w


def _read_rows(a, start, stop):
    """Rows start:stop of a (memory-mapped) array, as a new in-memory array. A
    C-contiguous memmap's rows are read from its file (not through the mapping, whose
    pages would stay resident in this process); any other array is sliced and copied."""
    position = _file_position(a)
    if position is None:
        return np.array(a[start:stop])
    row_bytes = a.itemsize * (math.prod(a.shape[1:]) if a.ndim > 1 else 1)
    out = np.empty((stop - start,) + a.shape[1:], a.dtype)
    with open(a.filename, "rb", buffering=0) as f:
        f.seek(position + start * row_bytes)
        view, done = memoryview(out).cast("B"), 0
        while done < len(view):  # a raw read may return fewer bytes than asked
            got = f.readinto(view[done:])
            if not got:
                raise OSError(f"{a.filename}: the file ends before its memory-mapped rows")
            done += got
    return out


def _file_position(a):
    """Where a memmap's first element is in its file, or None (not a memmap, not
    C-contiguous, no file). numpy maps the file from its offset rounded down to the
    allocation granularity; a view keeps its parent's offset, and its base chain ends at
    the mmap object."""
    if not isinstance(a, np.memmap) or not a.flags.c_contiguous or not a.size or \
            getattr(a, "filename", None) is None or not os.path.exists(a.filename):
        return None
    base = a
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None:
        return None
    mapped_at = np.frombuffer(base, np.uint8).ctypes.data
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    return start + (a.ctypes.data - mapped_at)


class Moments:
    """Column means and variances merged block by block (Chan, Golub and LeVeque's
    pairwise update: M2 = M2_a + M2_b + delta² n_a n_b / n), in float64."""

    def __init__(self):
        self.n, self.mean, self._m2 = 0, None, None

    def add(self, X):
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        n_b = len(X)
        if not n_b:
            return
        mean_b = X.mean(axis=0)
        m2_b = np.square(X - mean_b).sum(axis=0)
        if self.mean is None:
            self.n, self.mean, self._m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.square(delta) * (self.n * n_b / n)
        self.n = n

    @property
    def sum_of_squares(self):
        """Per column, the sum of squared deviations from the mean."""
        return self._m2

    @property
    def std(self):
        """Per column, the population standard deviation (numpy's default, ddof=0)."""
        return np.sqrt(self._m2 / self.n)
