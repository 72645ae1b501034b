"""The training core: the one loop that fastmlp.MLP (model.py) and the scikit-learn
drop-ins (sklearn.py) run, and the only code that calls a network's train_epoch and
train_step.

- EpochRunner trains one epoch over a fit's rows (and their sample weights), in the order
  it is given, a chunk of whole batches per backend call; scikit-learn's penalty (alpha
  over each batch's weight sum) is an option of it.
- train() runs epochs: the front end gives each epoch's row order (from its own random
  stream) and, after each epoch, records, schedules and decides whether to stop. Ctrl-C
  ends the loop at the end of a backend call and is reported, not raised; the loop's
  Position (epochs done, rows of the next one done) goes to the front end's checkpoint
  callback every k epochs, at the end and at Ctrl-C, and a fit resumes from one.
- StreamRunner trains an epoch of a stream (streaming.py: a Dask array, a memory-mapped
  array, chunks) block by block, an EpochRunner on each, with the streaming shuffle (the
  block order and each block's rows drawn per epoch); train() runs it like an EpochRunner.
- minimize_lbfgs() is the full-batch solver: SciPy's L-BFGS-B over the network's flat
  parameters, one loss_and_gradient call per evaluation.

The bookkeeping of each front end (MLP's history and patience, scikit-learn's loss_curve_,
tol and adaptive learning rate) stays with it, in the callbacks it passes to train().
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy
import scipy.optimize


class EpochRunner:
    """Trains a network one epoch at a time over the rows of one fit.

    Parameters
    ----------
    net : NetworkPlan or LayeredNetwork
    X : ndarray (n, n_in) of the network's dtype
    T : ndarray (n,) of int labels, or (n, n_out) targets: y encoded for the network's loss
    batch_size : int, at most the network's
    batches_per_call : int, optional
        At most this many batches per train_epoch call (default: no limit). A backend call
        is not interrupted: Ctrl-C is seen between calls, so this bounds the wait.
    gather_bytes : int, optional
        Gather an ordered epoch's rows here, at most this many bytes of X (whole batches)
        at a time, and train on the gathered copy. Default: the network gathers each batch
        itself (``rows=``) and X is never copied.
    sample_weight : ndarray (n,), optional
        Per-row weights: each batch's loss is their weighted mean.
    alpha : float, optional
        scikit-learn's L2 penalty, for a network built with ``penalty="per_sample"``: each
        batch trains with ``alpha / its weight sum`` (its rows without weights). Default:
        the network's own l2.
    loss_per_output : bool, default False
        Report the data term of the loss divided by T's columns (scikit-learn's squared
        error is a mean over the outputs; its gradient is not). With several outputs and
        alpha > 0 the batches then train one by one, to part the data term from the penalty.
    on_chunk : callable(batches, loss), optional
        Called after each backend call with its number of batches and their mean loss.
    first_call_batches : int, optional
        Each epoch's first backend call trains this many batches, the rest as usual: a
        front end sees the weights after the epoch's first step(s) (the bits are those of
        any chunking).
    running_metric : bool, default False
        Sum the network's running training metric over the epoch (train_epoch's
        metric_out: per output, the hits or the squared errors of each batch's outputs in
        its training pass) into self.metric_total.
    """

    def __init__(self, net, X, T, batch_size, *, sample_weight=None, batches_per_call=None,
                 gather_bytes=None, alpha=None, loss_per_output=False, on_chunk=None,
                 first_call_batches=None, running_metric=False):
        self.net = net
        self.batch_size = batch_size
        # The per-row arrays: every row selection below applies to each of them alike
        self._data = (X, T) if sample_weight is None else (X, T, sample_weight)
        self._n = len(X)
        self._call_rows = None if batches_per_call is None else batches_per_call * batch_size
        self._first_call_rows = None if first_call_batches is None else \
            first_call_batches * batch_size
        self._gather_rows = None
        if gather_bytes is not None:
            row_bytes = max(1, X.shape[1] * X.itemsize)
            batches = max(1, gather_bytes // (row_bytes * batch_size))
            self._gather_rows = min(self._n, batches * batch_size, self._call_rows or self._n)
        self._buffers = None  # the gather buffers, made at the first ordered epoch
        self._alpha = None if alpha is None else float(alpha)
        if self._alpha is not None:
            if net.penalty != "per_sample":
                raise ValueError("alpha: the network must be built with penalty='per_sample'")
            if net.l2 != self._alpha:  # setting it reconfigures the engine
                net.l2 = self._alpha
        n_out = T.shape[1] if T.ndim == 2 else 1
        self._n_outputs = n_out if loss_per_output else 1
        self._by_batch = self._n_outputs > 1 and bool(self._alpha)
        self._on_chunk = on_chunk
        self.metric_total = self._chunk_metric = None
        if running_metric:
            if self._by_batch:
                raise ValueError("running_metric: not with loss_per_output and alpha")
            n_out = net.weights[-1][0].shape[1]
            self.metric_total, self._chunk_metric = np.zeros(n_out), np.zeros(n_out)

    def run(self, order=None, *, start=None, stop=None):
        """One epoch; returns the mean over the rows visited of their batch's loss, or
        None when stop() ended it early (self.rows and self.loss_total say how far).

        order : 1-D int array, optional
            The rows to visit, in this order, batch after batch (default: all of them, as
            stored).
        start : (rows, loss_total, metric_total), optional
            Resume an epoch that was stopped after `rows` rows (the runner's rows,
            loss_total and metric_total then; metric_total () without running_metric):
            the same calls follow, so the same bits.
        stop : callable() -> bool, optional
            Asked after each backend call whether to stop here.
        """
        n_visit = self._n if order is None else len(order)
        self.rows, self.loss_total, metric = (0, 0.0, ()) if start is None else start
        if self.metric_total is not None:
            self.metric_total[:] = metric if len(metric) else 0
        # the network's step when this epoch began: a consistency check of self.rows
        self._first_step = self.net.step - -(-self.rows // self.batch_size)
        for arrays, rows in self._chunks(order, self.rows):
            m = len(arrays[0]) if rows is None else len(rows)
            chunk_total = self._train_chunk(arrays, rows, m)
            self.rows += m
            self.loss_total += chunk_total
            if self.metric_total is not None:
                self.metric_total += self._chunk_metric
            if self._on_chunk is not None:
                self._on_chunk(-(-m // self.batch_size), chunk_total / m)
            if stop is not None and self.rows < n_visit and stop():
                return None
        return self.loss_total / n_visit

    def position(self, epoch):
        """Position(epoch, where this epoch is)."""
        metric = () if self.metric_total is None else tuple(self.metric_total.tolist())
        return Position(epoch, self.rows, self.loss_total, metric)

    def consistent(self):
        """Whether the network has trained exactly self.rows rows of the epoch: not so
        when an exception cut a chunk between its training and its bookkeeping."""
        return self.net.step == self._first_step + -(-self.rows // self.batch_size)

    # -- which rows (the one place they are chosen) -------------------------------------

    def _chunks(self, order, first=0):
        """(arrays, rows) per chunk of whole batches from row `first` on (a chunk's first
        row): the chunk's rows are `rows` of the arrays, in that order, or all of them
        (rows None). The chunks start at fixed rows, so a resumed epoch makes the calls
        the uninterrupted one makes."""
        if order is None:  # contiguous slices: nothing to gather
            for start, stop in self._spans(first, self._n, self._call_rows or self._n):
                yield tuple([a[start:stop] for a in self._data]), None
        elif self._gather_rows is None:  # the network gathers each batch
            for start, stop in self._spans(first, len(order), self._call_rows or len(order)):
                yield self._data, order[start:stop]
        else:
            if self._buffers is None:
                self._buffers = tuple(np.empty((self._gather_rows,) + a.shape[1:], a.dtype)
                                      for a in self._data)
            for start, stop in self._spans(first, len(order), self._gather_rows):
                rows = order[start:stop]
                # mode="clip": the rows are valid, and "raise" would gather via a temporary
                yield tuple([np.take(a, rows, axis=0, out=buf[:len(rows)], mode="clip")
                             for a, buf in zip(self._data, self._buffers)]), None

    def _spans(self, first, n, step):
        """(start, stop) of each chunk from row `first` on: at an epoch's start a first
        call of first_call_batches, then `step` rows a call."""
        if first == 0 and self._first_call_rows and self._first_call_rows < n:
            yield 0, self._first_call_rows
            first = self._first_call_rows
        for start in range(first, n, step):
            yield start, min(start + step, n)

    @staticmethod
    def _part(arrays, rows, start, stop):
        """Rows start:stop of a chunk, again as (arrays, rows)."""
        if rows is None:
            return tuple([a[start:stop] for a in arrays]), None
        return arrays, rows[start:stop]

    # -- training -----------------------------------------------------------------------

    def _train_chunk(self, arrays, rows, m):
        """Trains the chunk's m rows; returns the sum over them of their batch's loss."""
        if self._by_batch:
            return self._train_batch_by_batch(arrays, rows, m)
        return self._train_batches(arrays, rows) * m / self._n_outputs

    def _train_batches(self, arrays, rows):
        """The rows in batches, one train_epoch call; their mean loss."""
        X, T, *w = arrays
        w = w[0] if w else None
        if rows is None:
            return self.net.train_epoch(X, T, batch_size=self.batch_size, shuffle=False,
                                        sample_weight=w, metric_out=self._chunk_metric)
        return self.net.train_epoch(X, T, batch_size=self.batch_size, rows=rows,
                                    sample_weight=w, metric_out=self._chunk_metric)

    def _train_batch_by_batch(self, arrays, rows, m):
        """Several outputs with alpha > 0: the data term of each batch's loss is divided by
        the outputs, its penalty is not, so each batch's penalty is taken out of its loss."""
        weights = self.net.parameters[:_n_weights(self.net)]  # every W, one flat view
        total = 0.0
        for start in range(0, m, self.batch_size):
            stop = min(start + self.batch_size, m)
            arrays_b, rows_b = self._part(arrays, rows, start, stop)
            if rows_b is not None:
                arrays_b = tuple([a[rows_b] for a in arrays_b])
            X, T, *w = arrays_b
            weight_sum = float(np.sum(w[0], dtype=np.float64)) if w else stop - start
            # the step's loss is taken before its update: so is the penalty here
            penalty = 0.5 * self._alpha / weight_sum * float(np.dot(weights, weights))
            loss = self.net.train_step(X, T, sample_weight=w[0] if w else None)
            total += ((loss - penalty) / self._n_outputs + penalty) * (stop - start)
        return total


class StreamRunner:
    """Trains a network one epoch at a time over a stream of blocks (streaming.Stream),
    with EpochRunner's interface: train() runs it as it runs an EpochRunner.

    The streaming shuffle, each epoch: the blocks in a random order (when the stream can
    be read in any order; an iterable's blocks come in its own order), each block loaded,
    its rows in a random order, and the rows trained in that order in whole batches by an
    EpochRunner on the block. The rows a block leaves over (fewer than a batch) open the
    next block's first batch, so every batch but the epoch's last is whole, and every row
    is visited once an epoch. Both orders are drawn from `rng`: the same seed, the same
    epochs. Without rng the blocks and rows train as stored: the batches, and so the
    weights, of an in-memory fit without shuffling, for any blocking.

    Parameters
    ----------
    net : NetworkPlan or LayeredNetwork
    stream : streaming.Stream
    prepare : callable(X, y, sample_weight) -> (X, T, sample_weight or None)
        A raw block in the network's form: the front end's validation and encoding of
        in-memory input. Its TypeError or ValueError is raised again naming the block.
    batch_size : int
    rng : numpy.random.Generator, optional
        Draws the orders; None trains as stored.
    **options
        EpochRunner's keyword options (batches_per_call, gather_bytes, alpha,
        loss_per_output, on_chunk, first_call_batches, running_metric), for each block.
    """

    def __init__(self, net, stream, prepare, batch_size, *, rng=None, **options):
        self.net, self.batch_size = net, batch_size
        self._stream, self._prepare, self._rng = stream, prepare, rng
        self._options = options
        self.rows, self.loss_total, self.metric_total = 0, 0.0, None
        self._batches, self._first_step = 0, net.step

    def run(self, order=None, *, start=None, stop=None):
        """One epoch (EpochRunner.run's contract). The runner draws its own orders, and an
        epoch cannot resume within itself: order and start must be None."""
        if order is not None or start is not None:
            raise ValueError("a stream's epoch is ordered by its runner and starts at its "
                             "first row")
        self.rows, self.loss_total, self._batches = 0, 0.0, 0
        self._first_step = self.net.step
        if self.metric_total is not None:
            self.metric_total[:] = 0
        block_order = None
        if self._rng is not None and self._stream.shuffle_blocks:
            block_order = self._rng.permutation(self._stream.n_blocks)
        carry = None  # the last block's rows left over, in their order: the next batch's head
        for i, raw in self._stream.blocks(block_order):
            if stop is not None and self.rows and stop():
                return None
            try:
                arrays = self._prepare(*raw)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{exc} (block {i} of the stream)") from exc
            arrays = arrays[:2] if arrays[2] is None else tuple(arrays)
            n = len(arrays[0])
            if carry is not None and len(carry) != len(arrays):
                raise ValueError(f"sample_weight: block {i} has {'no ' * (len(arrays) == 2)}"
                                 "sample weights and the blocks before it "
                                 f"{'do' if len(arrays) == 2 else 'do not'}")
            rows = None if self._rng is None else self._rng.permutation(n)
            first = 0
            if carry is not None:
                first = min(n, self.batch_size - len(carry[0]))
                carry = tuple(np.concatenate([c, h]) for c, h in
                              zip(carry, _taken(arrays, rows, 0, first)))
                if len(carry[0]) < self.batch_size:
                    continue  # a block smaller than the batch's gap
                if not self._train(carry, None, stop):
                    return None
                carry = None
            whole = first + (n - first) // self.batch_size * self.batch_size
            if whole > first:
                trained = self._train(tuple(a[first:whole] for a in arrays), None, stop) \
                    if rows is None else self._train(arrays, rows[first:whole], stop)
                if not trained:
                    return None
            if whole < n:
                carry = _taken(arrays, rows, whole, n)
            # let this block go before the next one is read: one block in memory, not two
            raw = arrays = rows = None
        if carry is not None and not self._train(carry, None, stop):
            return None
        if not self.rows:
            raise ValueError("X: the stream has no rows")
        return self.loss_total / self.rows

    def _train(self, arrays, order, stop):
        """Rows `order` of arrays (all of them: None) by an EpochRunner; False when stop()
        ended it early (the rows trained are counted)."""
        X, T, *w = arrays
        runner = EpochRunner(self.net, X, T, self.batch_size,
                             sample_weight=w[0] if w else None, **self._options)
        loss = runner.run(order, stop=stop)
        self.rows += runner.rows
        self.loss_total += runner.loss_total
        self._batches += -(-runner.rows // self.batch_size)
        if runner.metric_total is not None:
            if self.metric_total is None:
                self.metric_total = np.zeros_like(runner.metric_total)
            self.metric_total += runner.metric_total
        return loss is not None

    def position(self, epoch):
        """Position(epoch, where this epoch is)."""
        metric = () if self.metric_total is None else tuple(self.metric_total.tolist())
        return Position(epoch, self.rows, self.loss_total, metric)

    def consistent(self):
        """Whether the network has trained exactly the batches counted."""
        return self.net.step == self._first_step + self._batches


def _taken(arrays, rows, start, stop):
    """Rows start:stop of the arrays (of `rows` of them, in that order), as new arrays: a
    block's rows kept beyond the block."""
    if rows is None:
        return tuple(np.array(a[start:stop]) for a in arrays)
    return tuple(a[rows[start:stop]] for a in arrays)


def _n_weights(net):
    """How many of the network's flat parameters are weights (they come first)."""
    return sum(W.size for W, _ in net.weights)


@dataclass(frozen=True)
class Position:
    """Where a fit is: `epoch` epochs complete and, of the next one, `rows` rows trained,
    `loss_total` the sum over them of their batch's loss, `metric_total` their running
    metric's sums (EpochRunner's; () without one) (all its rows may be trained with its
    bookkeeping, after_epoch, still to do). finished: the fit stopped (after_epoch asked)
    and goes no further."""

    epoch: int = 0
    rows: int = 0
    loss_total: float = 0.0
    metric_total: tuple = ()
    finished: bool = False


@dataclass(frozen=True)
class Outcome:
    """How train() ended.

    epochs : int, the epochs completed (after_epoch returned), resumed ones included
    stopped : bool, after_epoch asked to stop
    interrupted : bool, Ctrl-C (KeyboardInterrupt) ended the loop
    position : Position where it ended (None: unknown, see train)
    """

    epochs: int
    stopped: bool = False
    interrupted: bool = False
    position: Position = field(default=None, compare=False)


class _CtrlC:
    """Ctrl-C during train(), noted rather than raised: the loop stops when the backend
    call under way returns, with the weights, the optimizer and the bookkeeping at one
    point (a KeyboardInterrupt raised between a call and its bookkeeping could not say
    which rows had trained). A second Ctrl-C raises at once. Only in the main thread and
    over Python's default handler: a handler of the caller's stays in charge."""

    def __enter__(self):
        self._pressed = self._installed = False
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum, frame):
        self._pressed = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def pressed(self):
        return self._pressed

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return False


def train(runner, max_epochs, after_epoch, *, epoch_order=None, before_epoch=None,
          start=Position(), checkpoint=None, checkpoint_every=1):
    """Run epochs of runner until max_epochs are complete.

    Parameters
    ----------
    runner : EpochRunner
    max_epochs : int, counting those done before `start`
    after_epoch : callable(epoch, loss) -> bool
        Called after each epoch with its index and mean loss: the front end records it,
        checks it, changes the learning rate; True stops the loop.
    epoch_order : callable(epoch) -> 1-D int array or None, optional
        Called before each epoch for the order of its rows (the front end's own random
        stream). Default: the rows as stored, every epoch. A resumed epoch must get the
        order it had.
    before_epoch : callable(epoch), optional
        Called first in each epoch (a learning-rate schedule, a clock).
    start : Position, optional
        Where a resumed fit was saved (default: the beginning).
    checkpoint : callable(Position), optional
        Saves the fit at a position: after every checkpoint_every-th epoch, at the end and
        at Ctrl-C. The network and the front end's record of every complete epoch are
        then at that position.

    Returns
    -------
    Outcome. Ctrl-C (or a KeyboardInterrupt raised in a callback) ends the loop and is
    reported there with the weights consistent; the epoch (and its after_epoch) may be
    cut short. Its position is None only when a KeyboardInterrupt raised by a callback
    cut a chunk between its training and its bookkeeping: nothing is saved then.
    """
    if start.finished:
        return Outcome(start.epoch, stopped=True, position=start)
    position, epoch, stage = start, start.epoch, None
    with _CtrlC() as ctrl_c:
        try:
            for epoch in range(start.epoch, max_epochs):
                if before_epoch is not None:
                    before_epoch(epoch)
                order = None if epoch_order is None else epoch_order(epoch)
                resume = (position.rows, position.loss_total, position.metric_total) \
                    if position.rows else None
                stage = "run"
                loss = runner.run(order, start=resume, stop=ctrl_c.pressed)
                position = runner.position(epoch)
                if loss is None:
                    return _ended(position, checkpoint, interrupted=True)
                stage = "record"
                stop = bool(after_epoch(epoch, loss))
                position, stage = Position(epoch + 1, finished=stop), None
                if stop:
                    return _ended(position, checkpoint)
                if ctrl_c.pressed():
                    return _ended(position, checkpoint, interrupted=True)
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0 and \
                        epoch + 1 < max_epochs:
                    checkpoint(position)
        except KeyboardInterrupt:
            # raised by a callback. Cut short in after_epoch, the epoch's rows are trained
            # (position says so) and its record is redone on resume.
            if stage == "run":
                position = runner.position(epoch) if runner.consistent() else None
            return _ended(position, checkpoint, interrupted=True)
    return _ended(position, checkpoint)


def _ended(position, checkpoint, interrupted=False):
    """train()'s Outcome, after its last checkpoint (none at an unknown position)."""
    if checkpoint is not None and position is not None:
        checkpoint(position)
    return Outcome(0 if position is None else position.epoch,
                   stopped=position is not None and position.finished,
                   interrupted=interrupted, position=position)


class _Stop(Exception):
    """Ctrl-C inside SciPy's minimizer: unwinds it to the last iterate."""


def minimize_lbfgs(net, X, T, sample_weight=None, *, max_iter, max_fun, tol, verbose=False,
                   loss_per_output=False, checkpoint=None, checkpoint_every=1):
    """Minimise the network's full-batch loss over ``net.parameters`` with SciPy's
    L-BFGS-B, as scikit-learn's lbfgs solver does (gtol = tol). An evaluation is one copy
    of SciPy's point into the parameters and one ``loss_and_gradient`` call; nothing else
    is allocated. ``loss_per_output``: the value SciPy sees has its data term divided by
    T's columns, as scikit-learn's multi-output squared error (its gradient is not).

    checkpoint : callable(n_iter), optional
        Called with the network at an iterate: after every checkpoint_every-th iteration.
        (SciPy's own state, its curvature pairs, is not the caller's to save.)

    Returns SciPy's OptimizeResult; the network holds its point. Ctrl-C stops at the
    last iterate: the result then has status -1 ("interrupted") and its loss there.
    """
    params = net.parameters
    grad = np.empty(params.shape, np.float64)  # SciPy's dtype, reused by every evaluation
    n_out = T.shape[1] if loss_per_output and T.ndim == 2 else 1
    weights = params[:_n_weights(net)]
    if n_out > 1:
        weight_sum = len(X) if sample_weight is None else float(
            np.sum(sample_weight, dtype=np.float64))
        l2 = net.l2 / weight_sum if net.penalty == "per_sample" else net.l2

    def loss_and_gradient(x):
        if ctrl_c.pressed():
            raise _Stop
        return evaluate(x)

    def evaluate(x):
        params[...] = x
        loss, g = net.loss_and_gradient(X, T, sample_weight)
        np.copyto(grad, g)
        if n_out > 1:
            penalty = 0.5 * l2 * float(np.dot(weights, weights))
            loss = (loss - penalty) / n_out + penalty
        return loss, grad

    options = {"maxfun": max_fun, "maxiter": max_iter, "gtol": tol}
    if tuple(int(v) for v in scipy.__version__.split(".")[:2]) < (1, 15):
        options["iprint"] = 1 if verbose else -1  # SciPy 1.15 dropped it (and prints nothing)
    iterate = params.astype(np.float64)  # SciPy's start, then its last iterate
    n_iter = 0

    def after_iteration(x):
        nonlocal n_iter
        n_iter += 1
        iterate[...] = x
        if checkpoint is not None and n_iter % checkpoint_every == 0:
            params[...] = x  # the next evaluation sets them again
            checkpoint(n_iter)

    with _CtrlC() as ctrl_c:
        try:
            result = scipy.optimize.minimize(loss_and_gradient, iterate.copy(),
                                             method="L-BFGS-B", jac=True, options=options,
                                             callback=after_iteration)
        except (_Stop, KeyboardInterrupt):
            loss = evaluate(iterate)[0]  # sets the parameters to it
            return scipy.optimize.OptimizeResult(
                x=iterate, fun=loss, nit=n_iter, status=-1, success=False,
                message="interrupted")
    params[...] = result.x
    return result
