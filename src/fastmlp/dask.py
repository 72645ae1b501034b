"""fastmlp.dask: one MLP trained across the workers of a Dask cluster (data parallelism).

:func:`fit` splits the training rows into the partitions of a Dask array (its row
chunks). Each partition is encoded once, on the worker that holds it, and stays there;
each worker trains its partitions with the compiled engine (a NetworkPlan, run by the
training core's EpochRunner), and the driver combines what they send back:

- ``strategy="model_average"`` (local SGD): every round, each partition takes
  `sync_every` minibatch steps from the combined weights and optimizer state, and the
  driver averages the weights and the optimizer's state (Adam's moments) over the
  partitions, weighted by the rows each trained;
- ``strategy="gradient_average"``: every step, each partition computes the gradient of
  its next minibatch at the combined weights, and the driver applies the rows-weighted
  mean gradient with :meth:`NetworkPlan.apply_gradient` (the fused step's update).

What Dask does, Dask does: the partitions are Dask futures (a lost one is recomputed from
its graph), a task whose worker dies is run again elsewhere, the per-worker cache of
plans is a WorkerPlugin. fastmlp only decides what a round computes. A round is a pure
function of the combined state, the partition and the round's number (every row order
comes from the model's seed), so a fit whose worker died ends with the weights of one
that ran undisturbed.

Dask and distributed are imported here only: ``import fastmlp`` never imports them.
"""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass

import numpy as np

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - the tests skip without the extra
    raise ImportError(
        "fastmlp.dask needs Dask and distributed: pip install 'fastmlp[dask]'") from exc

from fastmlp import _validation as check
from fastmlp import training
from fastmlp.model import MLP
from fastmlp.optimizers import get_optimizer

__all__ = ["fit"]

STRATEGIES = ("model_average", "gradient_average")
DEFAULT_SYNC_EVERY = 40  # steps: bench/data_parallel.py, README "One model, several machines"


def fit(model, X, y, *, client=None, epochs=10, batch_size=32, optimizer="adam",
        learning_rate=None, strategy="model_average", sync_every=None,
        l2=0.0, l1=0.0, shuffle=True, **optimizer_options):
    """Train `model` on the rows of X and y across the workers of a Dask cluster.

    Each partition (a row chunk of X and y) is encoded and kept on one worker, which
    trains it with the compiled engine; the driver combines the partitions' work by
    `strategy` until `epochs` passes over every partition are done. The model is fitted
    from scratch (new weights from its seed) and returned as an ordinary fitted MLP:
    ``predict``, ``score``, ``save`` and ``load`` work as after :meth:`MLP.fit`.

    Parameters
    ----------
    model : fastmlp.MLP
        The architecture to train (hidden layers, activations, task, loss, dtype, seed,
        standardize, dropout); not ``batch_norm``.
    X : dask.array.Array or ndarray of shape (n_samples, n_features)
        A Dask array's row chunks are the partitions (its columns are joined into one
        chunk). A NumPy array is split into one partition per worker; its data then
        travels inside the task graph, so give large data as a Dask array.
    y : dask.array.Array or ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Labels or values, in row chunks equal to X's. The task and the classes are read
        from y on the driver, as :meth:`MLP.fit` reads them (for 1-D y from its unique
        values, for 2-D y from the whole of it).
    client : distributed.Client, optional
        Default: the running client (``distributed.default_client()``).
    epochs : int, default 10
        Passes over every partition.
    batch_size : int, default 32
        Rows per minibatch on each partition: a gradient-averaged step's batch is one
        minibatch of every partition (``batch_size`` times the partitions).
    optimizer : str or Optimizer, default "adam"
        As for :meth:`MLP.fit`, without "lbfgs".
    learning_rate : float, optional
        Default: the optimizer's.
    strategy : {"model_average", "gradient_average"}, default "model_average"
        How the driver combines the partitions (see the module's description).
    sync_every : int, optional
        "model_average": the minibatch steps each partition takes between two
        averages (default 40; a round ends at the end of an epoch in any case).
        "gradient_average" synchronises every step (None or 1).
    l2, l1 : float, default 0
        Penalties on the weights, per step, as for :meth:`MLP.fit`.
    shuffle : bool, default True
        Visit each partition's rows in a fresh order every epoch, drawn from the
        model's seed (one stream per partition).
    **optimizer_options
        The optimizer's momentum, beta1, beta2, eps, weight_decay, clip_value,
        clip_norm, ...

    Returns
    -------
    model : fastmlp.MLP
        The same object, fitted: ``history`` has "loss" (the mean over every row of its
        batch's loss, per epoch) and "lr".

    Raises
    ------
    ValueError
        For bad arguments (named), X and y whose row chunks differ, or no client.

    Notes
    -----
    With one partition both strategies give the weights :meth:`MLP.fit` gives (same
    seed, batch_size, optimizer, epochs), bit for bit: the workers run the same core.
    Model averaging averages the optimizer's state (momentum, Adam's moments) with the
    weights, and takes the largest step count. A worker that dies during a fit costs
    time, not the fit: Dask recomputes its partitions elsewhere from their graph and
    reruns the round's task, whose result does not depend on where it runs.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a fastmlp.MLP, got {type(model).__name__}")
    if model.batch_norm:
        raise ValueError("model: batch_norm=True does not train data-parallel (its "
                         "statistics are per batch); use a model without it")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; expected one of {list(STRATEGIES)}")
    epochs = check.positive_int(epochs, "epochs")
    batch_size = check.positive_int(batch_size, "batch_size")
    if strategy == "gradient_average":
        if sync_every not in (None, 1):
            raise ValueError(f"sync_every: gradient averaging synchronises every step (1), "
                             f"got {sync_every!r}")
        sync_every = 1
    else:
        sync_every = check.positive_int(
            DEFAULT_SYNC_EVERY if sync_every is None else sync_every, "sync_every")
    if isinstance(optimizer, str) and optimizer == "lbfgs":
        raise ValueError("optimizer: 'lbfgs' is full-batch; it does not train data-parallel")
    if learning_rate is not None:
        optimizer_options["learning_rate"] = learning_rate
    opt = get_optimizer(optimizer, **optimizer_options)
    client = _client(client)
    X, y = _partitioned(X, y, client)

    previous = model._fitted_attributes()
    model.net_ = None
    futures, plugin = [], None
    try:
        n_features = X.shape[1]
        _learn_scaling(model, X)
        Y_sample = model._encode_targets(_label_sample(y), first=True)
        template = copy.copy(model)  # what the workers need: task, classes, scaling
        template.history = {}
        model._build(n_features, model._n_outputs(Y_sample), opt, batch_size, l2, l1)
        spec = _FitSpec(uuid.uuid4().hex, template, model._n_outputs(Y_sample), opt,
                        batch_size, float(l2), float(l1), sync_every, bool(shuffle),
                        np.random.SeedSequence(model.seed).entropy, len(X.chunks[0]))
        rows = [int(n) for n in X.chunks[0]]
        futures = client.compute([
            dask.delayed(_encode_partition)(spec, xb, yb,
                                            dask_key_name=f"fastmlp-partition-{spec.fit_id}-{p}")
            for p, (xb, yb) in enumerate(zip(X.to_delayed().ravel(), y.to_delayed().ravel()))])
        plugin = _PlanCache(spec.fit_id)
        client.register_plugin(plugin, name=plugin.name)
        run = _model_average if strategy == "model_average" else _gradient_average
        model.history = {"loss": [], "lr": []}
        for epoch in range(epochs):
            loss = run(client, spec, model.net_, futures, rows, epoch)
            if not model._finite(loss):
                raise ValueError(
                    f"fit: training diverged in epoch {epoch + 1} (loss {loss}): lower "
                    "learning_rate, scale X or add l2")
            model.history["loss"].append(loss)
            model.history["lr"].append(opt.learning_rate)
    except BaseException:
        model._restore(previous)
        raise
    finally:
        client.cancel(futures)
        if plugin is not None:
            client.unregister_worker_plugin(plugin.name)
    model.stopped_early_ = model.interrupted_ = False
    return model


# -- the driver ------------------------------------------------------------------------


def _client(client):
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client: expected a distributed.Client, got "
                            f"{type(client).__name__}")
        return client
    try:
        return distributed.default_client()
    except ValueError:
        raise ValueError("client: none given and no Dask client is running; start one "
                         "(distributed.Client(...)) or pass client=") from None


def _partitioned(X, y, client):
    """X and y as Dask arrays with the same row chunks, X's columns in one chunk."""
    if not isinstance(X, da.Array):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X: expected a 2-D array with rows, got shape {X.shape}")
        workers = max(1, len(client.scheduler_info()["workers"]))
        X = da.from_array(X, chunks=(-(-len(X) // workers), -1))
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got {X.shape}")
    if any(math.isnan(n) for n in X.chunks[0]):
        raise ValueError("X: its row chunks have unknown sizes; call X.compute_chunk_sizes()")
    X = X.rechunk({1: -1})
    if not isinstance(y, da.Array):
        y = np.asarray(y)
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected a 1-D or 2-D array, got shape {y.shape}")
        if len(y) != X.shape[0]:
            raise ValueError(f"X and y have different lengths: {X.shape[0]} and {len(y)}")
        y = da.from_array(y, chunks=(X.chunks[0],) + ((-1,) if y.ndim == 2 else ()))
    if y.ndim not in (1, 2):
        raise ValueError(f"y: expected a 1-D or 2-D array, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y have different lengths: {X.shape[0]} and {y.shape[0]}")
    if y.chunks[0] != X.chunks[0]:
        raise ValueError(f"y: its row chunks {y.chunks[0]} differ from X's {X.chunks[0]}; "
                         "rechunk one like the other (y.rechunk({0: X.chunks[0]}))")
    if y.ndim == 2:
        y = y.rechunk({1: -1})
    return X, y


def _learn_scaling(model, X):
    """standardize=True: MLP's column mean and scale, from X (in the model's dtype) by
    Dask's reductions."""
    if not model.standardize:
        model.input_mean_ = model.input_scale_ = None
        return
    X = X.astype(model.dtype)
    mean, std = dask.compute(X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64))
    model.input_mean_ = mean.astype(model.dtype)
    model.input_scale_ = np.where(std > 0, std, 1.0).astype(model.dtype)


def _label_sample(y):
    """What the first fit reads the task and classes from: a 1-D y's unique values (the
    same answer as all of y), a 2-D y whole."""
    if y.ndim == 1:
        return da.unique(y).compute()
    return y.compute()


@dataclass(frozen=True)
class _FitSpec:
    """What every worker task of one fit needs, shipped once per task (small)."""

    fit_id: str
    template: MLP  # the task, classes and scaling: it encodes each partition
    n_outputs: int
    optimizer: object
    batch_size: int
    l2: float
    l1: float
    sync_every: int
    shuffle: bool
    entropy: int  # the seed: every partition's row orders come from it
    n_partitions: int


def _model_average(client, spec, net, partitions, rows, epoch):
    """One epoch of rounds of sync_every steps; returns the epoch's mean loss."""
    steps_per_round = spec.sync_every * spec.batch_size
    rounds = -(-max(rows) // steps_per_round)
    loss_total = 0.0
    for r in range(rounds):
        # the state rides in each task (the scheduler holds it): a task rerun after its
        # worker died finds it there (data scattered to workers dies with them)
        state = _state_of(net)
        tasks = [client.submit(_train_round, spec, p, part, state, epoch, r,
                               key=f"fastmlp-round-{spec.fit_id}-{epoch}-{r}-{p}")
                 for p, part in enumerate(partitions) if r * steps_per_round < rows[p]]
        results = client.gather(tasks)  # (rows trained, (arrays, step), loss total)
        _set_state(net, _mean([arrays for _, (arrays, _), _ in results],
                              [trained for trained, _, _ in results]),
                   max(step for _, (_, step), _ in results))
        loss_total += sum(loss for _, _, loss in results)
    return loss_total / sum(rows)


def _gradient_average(client, spec, net, partitions, rows, epoch):
    """One epoch of synchronised steps; returns the epoch's mean loss."""
    steps = -(-max(rows) // spec.batch_size)
    loss_total = 0.0
    for i in range(steps):
        params = net.parameters.copy()
        tasks = [client.submit(_batch_gradient, spec, p, part, params, epoch, i,
                               key=f"fastmlp-step-{spec.fit_id}-{epoch}-{i}-{p}")
                 for p, part in enumerate(partitions) if i * spec.batch_size < rows[p]]
        results = client.gather(tasks)
        weights = [m for _, m, _ in results]
        net.apply_gradient(_mean([(g,) for g, _, _ in results], weights)[0])
        loss_total += sum(loss * m for _, m, loss in results)
    return loss_total / sum(rows)


def _state_of(net):
    """(arrays, step): the flat parameters and each optimizer state in their layout."""
    state = net.optimizer_state()
    arrays = [net.parameters.copy()]
    for n in (1, 2):
        parts = state[f"state{n}_W"] + state[f"state{n}_b"]
        if parts[0] is not None:
            arrays.append(np.concatenate([a.reshape(-1) for a in parts]))
    return arrays, state["step"]


def _set_state(net, arrays, step):
    """Put _state_of's arrays (and step) into net."""
    net.parameters[...] = arrays[0]
    state = {"step": step}
    for n in (1, 2):
        flat = arrays[n] if n < len(arrays) else None
        W, b = [], []
        start = 0
        for layer_W, _ in net.weights:
            W.append(None if flat is None else
                     flat[start:start + layer_W.size].reshape(layer_W.shape))
            start += layer_W.size
        for _, layer_b in net.weights:
            b.append(None if flat is None else flat[start:start + layer_b.size])
            start += layer_b.size
        state[f"state{n}_W"], state[f"state{n}_b"] = W, b
    net.set_optimizer_state(state)


def _mean(array_lists, weights):
    """The weighted mean of each position of the lists (float64 sums, the first list's
    dtype); one list is returned as it is (no rounding)."""
    if len(array_lists) == 1:
        return list(array_lists[0])
    total = float(sum(weights))
    means = []
    for arrays in zip(*array_lists):
        acc = np.zeros(arrays[0].shape, np.float64)
        for a, w in zip(arrays, weights):
            acc += (w / total) * a
        means.append(acc.astype(arrays[0].dtype))
    return means


# -- the workers -----------------------------------------------------------------------


class _PlanCache(distributed.WorkerPlugin):
    """Per worker and fit: each partition's trainer (its plan, runner and row orders),
    built at the partition's first task there; dropped when the fit unregisters it."""

    def __init__(self, fit_id):
        self.name = f"fastmlp-fit-{fit_id}"
        self.trainers = {}

    def setup(self, worker):
        self.trainers = {}

    def teardown(self, worker):
        self.trainers.clear()


def _encode_partition(spec, X, y):
    """(X, Y) of one partition in the plan's form, as MLP.fit encodes them."""
    model = spec.template
    X = model._scaled(model._features(X, fitting=True))
    return X, model._encode_targets(y, first=False)


class _Trainer:
    """One partition's plan, its EpochRunner (a backend call per round) and its row
    order per epoch (its own stream from the fit's seed)."""

    def __init__(self, spec, partition_index, partition):
        X, Y = partition
        model = copy.copy(spec.template)
        model._build(X.shape[1], spec.n_outputs, spec.optimizer, spec.batch_size, spec.l2,
                     spec.l1)
        self.net = model.net_
        self.X, self.Y = X, Y
        self.runner = training.EpochRunner(self.net, X, Y, spec.batch_size,
                                           batches_per_call=spec.sync_every)
        # one partition: MLP.fit's own stream, so the fit is MLP.fit's
        seed = np.random.SeedSequence(
            spec.entropy, spawn_key=(partition_index,) if spec.n_partitions > 1 else ())
        self._shuffled = spec.shuffle and spec.batch_size < len(X)
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(X), dtype=np.int64)
        self._epoch = -1

    def order(self, epoch):
        """The epoch's row order (None: as stored), drawing the epochs before it when
        this trainer starts late (a rerun task on another worker)."""
        if not self._shuffled:
            return None
        if epoch < self._epoch:
            raise RuntimeError("a partition's trainer went back an epoch")
        while self._epoch < epoch:
            # MLP's _Shuffler: a fresh shuffle of 0..n-1 each epoch
            self._order[...] = np.arange(len(self._order))
            self._rng.shuffle(self._order)
            self._epoch += 1
        return self._order


def _trainer(spec, partition_index, partition):
    cache = distributed.get_worker().plugins[f"fastmlp-fit-{spec.fit_id}"]
    trainer = cache.trainers.get(partition_index)
    if trainer is None:
        trainer = cache.trainers[partition_index] = _Trainer(spec, partition_index,
                                                              partition)
    return trainer


def _train_round(spec, partition_index, partition, state, epoch, round_index):
    """sync_every steps of the partition from the combined state: (rows trained, its
    state after them, the sum over its rows of their batch's loss)."""
    trainer = _trainer(spec, partition_index, partition)
    net = trainer.net
    _set_state(net, *state)
    net.learning_rate = spec.optimizer.learning_rate
    first = round_index * spec.sync_every * spec.batch_size
    runner = trainer.runner
    runner.run(trainer.order(epoch), start=(first, 0.0, ()), stop=lambda: True)
    return runner.rows - first, _state_of(net), runner.loss_total


def _batch_gradient(spec, partition_index, partition, params, epoch, step):
    """The gradient of the partition's step-th batch of the epoch at params: (gradient,
    rows, the batch's mean loss)."""
    trainer = _trainer(spec, partition_index, partition)
    net = trainer.net
    net.parameters[...] = params
    order = trainer.order(epoch)
    start, stop = step * spec.batch_size, min((step + 1) * spec.batch_size, len(trainer.X))
    rows = np.arange(start, stop) if order is None else order[start:stop]
    loss, gradient = net.loss_and_gradient(np.take(trainer.X, rows, axis=0),
                                           np.take(trainer.Y, rows, axis=0))
    return gradient.copy(), stop - start, loss
