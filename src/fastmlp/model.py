"""fastmlp.MLP: a multilayer perceptron to fit, predict, evaluate, save and load.

Training runs on a NetworkPlan (plan.py), driven by the training core (training.py) that
the scikit-learn drop-ins share: each chunk of minibatches of an epoch is one call into
the backend with the GIL released. MLP brings its own shuffling, learning-rate schedule,
history and early stopping. Dropout and batch normalisation are not in the fused step; a
model that uses them trains through fastmlp.layers, the same kernels called layer by layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import warnings
import zipfile

import numpy as np

from fastmlp import _backend, _files, _threads, streaming, training
from fastmlp import _validation as check
from fastmlp._registry import (
    ACTIVATIONS_WITH_ALPHA,
    HINGE_LOSSES,
    LOSS_ALIASES,
    SOFT_TARGET_LOSSES,
)
from fastmlp.layers import LayeredNetwork
from fastmlp.optimizers import get_optimizer
from fastmlp.plan import NetworkPlan, _set_generator_state, layer_widths
from fastmlp.progress import Progress

_TASKS = ("auto", "classification", "binary", "multilabel", "regression")
_REGRESSION_LOSSES = (None, "poisson", "absolute_error", "huber", "log_cosh")  # None: MSE
# MLP(loss=) for a classifier whose outputs are one per class (two classes included): the
# multiclass SVM (hinge) losses on labels, and softmax against target rows of
# probabilities (soft targets)
_CLASSIFIER_LOSSES = (*HINGE_LOSSES, *SOFT_TARGET_LOSSES)
_FORMAT = "fastmlp.MLP"
_FORMAT_VERSION = 1
# fit settings added after checkpoints were first written, with the default that a
# checkpoint without them trained with
_NEWER_SETTINGS = {"max_norm": None, "activity_l2": 0.0, "activity_l1": 0.0,
                   "update_ratios": False}
# rows of minibatches per backend call: small enough that Ctrl-C stops within a moment
_BATCHES_PER_CALL = 32


def _lr_schedule(schedule, lr0, epochs, step_size, gamma, min_lr):
    if callable(schedule):
        return lambda epoch: float(schedule(epoch, lr0))
    if schedule == "constant":
        return lambda epoch: lr0
    if schedule == "step":
        return lambda epoch: lr0 * gamma ** (epoch // step_size)
    if schedule == "cosine":
        last = max(1, epochs - 1)  # reaches min_lr at the last epoch
        return lambda epoch: min_lr + 0.5 * (lr0 - min_lr) * (1 + math.cos(math.pi * epoch / last))
    raise ValueError(
        f"schedule: unknown {schedule!r}; expected 'constant', 'step', 'cosine' or a callable"
    )


class MLP:
    """A stack of dense layers with an output head chosen by the task.

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default (100,)
    activation : str or sequence of str, default "relu"
        Hidden-layer activation(s): identity, relu, leaky_relu, sigmoid, tanh, elu, softplus,
        selu, gelu, gelu_tanh, swish (alias silu), mish, softsign, hard_sigmoid (Keras 2's
        clip(0.2 z + 0.5, 0, 1)), maxout (each unit the largest of `maxout_pieces`
        linear pieces); formulas in the user guide's kernels page.
    task : {"auto", "classification", "binary", "multilabel", "regression"}
        "auto" decides from y at the first fit: integer or string labels give
        classification (a sigmoid head for two classes, softmax otherwise); a 2-D 0/1
        matrix with exactly one 1 in every row is one-hot classes (``classes_`` are its
        column indices, ``predict`` returns them; evaluate and score take labels or
        one-hot rows); any other 2-D 0/1 matrix gives multilabel (task="multilabel" makes
        one-hot rows multilabel too); other floats give regression (identity head, mean
        squared error). The scikit-learn drop-ins keep scikit-learn's reading: an
        indicator matrix is multilabel there.
    loss : str, default None
        None: the task's loss. For regression: "poisson", the half Poisson deviance
        with the log link, for counts or rates y >= 0 (predict returns the mean,
        exp(output)); "absolute_error", "huber" (delta 1) and "log_cosh", robust to
        outliers. For classification: "multiclass_hinge" ("hinge") or
        "squared_multiclass_hinge" ("squared_hinge"), the multiclass SVM loss with
        `margin` (``MLP(())`` is a linear SVM; one output per class, two classes
        included; no predict_proba); "categorical_cross_entropy" and "kl_divergence"
        train on soft targets, an (n, k) y of rows of probabilities (``classes_`` are
        the column indices; evaluate and score take such rows or column indices, and
        count a hit where the largest output is the row's most probable class).
    margin : float, default 1.0
        The hinge losses' margin Delta (>= 0).
    maxout_pieces : int, default 2
        The pieces per unit k of the maxout layers (2 to 64): such a layer's ``W`` has k
        columns per unit (see :class:`fastmlp.NetworkPlan`). Unread without maxout.
    dropout : float, default 0
        Inverted dropout on every hidden layer's output while training.
    batch_norm : bool, default False
        Batch normalisation before each hidden activation.
    standardize : bool, default False
        Standardise the features inside the model: ``fit`` learns each column's mean and
        standard deviation from its X (all of it, as a ``StandardScaler`` in a pipeline
        would; a constant column is centred only), every later X is scaled with them,
        and save/load keep them. ``partial_fit`` learns them from its first call.
    init : {"auto", "he", "glorot", "course"}
        Weight initialisation; "course" is the course's ``0.01 * randn``.
    dtype : float32 or float64, default float32
    seed : int or None
        Same seed, same backend: identical weights and losses.
    n_threads : int or None, default None
        Threads a training step and a large prediction may use (None: the process
        default, fastmlp.get_num_threads(), or 1 in a joblib worker thread); the results
        are the same for any.
    backend : str, optional
        "c", "numba" or "numpy"; default: the active backend (fastmlp.get_backend()).

    Attributes
    ----------
    task_ : str
        The task the first fit decided: "classification", "binary", "multilabel" or
        "regression".
    classes_ : ndarray
        The class labels (classification and binary), sorted; for one-hot targets, the
        column indices.
    n_features_in_, n_outputs_ : int
        Input columns and network outputs.
    input_mean_, input_scale_ : ndarray or None
        With standardize=True: the columns' mean and scale fit learned (one per
        feature).
    history : dict of lists
        Per epoch: "loss" (the mean batch loss), "accuracy" or "r2" (running, as
        Keras's: of each batch's outputs as it trained, before its update, with dropout),
        "lr", and with validation "val_loss" and "val_accuracy"/"val_r2" (after the
        epoch). After optimizer="lbfgs": one entry each, at the final weights.
    interrupted_ : bool
        Ctrl-C stopped the last fit (the model is usable; its checkpoint, if any, resumes).
    stopped_early_ : bool
        Early stopping ended the last fit.
    best_epoch_ : int
        With early stopping and restore_best_weights: the epoch whose weights were
        restored (0-based).
    n_iter_ : int
        optimizer="lbfgs": the iterations SciPy ran.
    weights : list of (W, b)
        The trained arrays, W of shape (n_in, n_out), as in the course.

    Examples
    --------
    >>> from fastmlp import MLP
    >>> from fastmlp.datasets import make_spiral
    >>> X, y = make_spiral(100, 3, seed=0)
    >>> model = MLP((100,), seed=0).fit(X, y, epochs=300, batch_size=300,
    ...                                 optimizer="sgd", learning_rate=1.0, verbose=0)
    >>> model.score(X, y) > 0.9
    True
    >>> model.predict(X[:3]).shape
    (3,)
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", task="auto", *,
                 loss=None, dropout=0.0, batch_norm=False, standardize=False, init="auto",
                 dtype=np.float32, seed=None, n_threads=None, backend=None, margin=1.0,
                 maxout_pieces=2):
        if isinstance(hidden_layer_sizes, int):
            hidden_layer_sizes = (hidden_layer_sizes,)
        self.hidden_layer_sizes = tuple(
            check.positive_int(h, "hidden_layer_sizes") for h in hidden_layer_sizes
        )
        names = [activation] * len(self.hidden_layer_sizes) if isinstance(activation, str) \
            else list(activation)
        if len(names) != len(self.hidden_layer_sizes):
            raise ValueError(
                f"activation: expected one name or {len(self.hidden_layer_sizes)}, got {names}"
            )
        for name in names:
            check.activation(name)
        self.activation = names
        if task not in _TASKS:
            raise ValueError(f"task: unknown {task!r}; expected one of {list(_TASKS)}")
        self.task = task
        canonical = LOSS_ALIASES.get(loss, loss) if isinstance(loss, str) else loss
        if canonical not in _REGRESSION_LOSSES + _CLASSIFIER_LOSSES:
            raise ValueError(f"loss: expected one of "
                             f"{list(_REGRESSION_LOSSES + _CLASSIFIER_LOSSES)}, got {loss!r}")
        if canonical in _CLASSIFIER_LOSSES and task not in ("auto", "classification"):
            raise ValueError(f"loss: {loss!r} is a classification loss, not for task={task!r}")
        if canonical is not None and canonical not in _CLASSIFIER_LOSSES and \
                task not in ("auto", "regression"):
            raise ValueError(f"loss: {loss!r} is a regression loss, not for task={task!r}")
        self.loss = loss
        self.margin = check.real_scalar(margin, "margin", low=0)
        self.maxout_pieces = check.positive_int(maxout_pieces, "maxout_pieces")
        check.activation("maxout", self.maxout_pieces)  # from 2 to 64
        self.dropout = check.real_scalar(dropout, "dropout", low=0, high=1, high_open=True)
        self.batch_norm = bool(batch_norm)
        if not isinstance(standardize, (bool, np.bool_)):
            raise TypeError(f"standardize: expected True or False, got {standardize!r}")
        self.standardize = bool(standardize)
        self.n_threads = None if n_threads is None else _threads.resolve(n_threads)
        self.init = init
        self.dtype = np.dtype(dtype)
        if self.dtype not in check.FLOAT_DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        self.seed = seed
        self.backend = backend
        self.net_ = None
        self.history = {}
        self._checkpoint = None  # a checkpointed fit MLP.load read, for fit(resume=True)

    # -- data --------------------------------------------------------------------------

    def _features(self, X, fitting=False):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X: expected numeric features, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X: expected at least one sample, got 0")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not self._all_finite(X):
            raise ValueError("X: contains NaN or infinity")
        if not fitting or self.net_ is not None:
            self._check_fitted()
            if X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X: has {X.shape[1]} features, but the model was fitted with "
                    f"{self.n_features_in_}"
                )
        if not fitting:
            X = self._scaled(X)
        return X

    def _learn_scaling(self, X):
        """standardize=True: the columns' mean and scale (their standard deviation, 1 for
        a constant column), from X in float64."""
        if not self.standardize:
            self.input_mean_ = self.input_scale_ = None
            return
        self._set_scaling(X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64))

    def _set_scaling(self, mean, std):
        self.input_mean_ = mean.astype(self.dtype)
        self.input_scale_ = np.where(std > 0, std, 1.0).astype(self.dtype)

    def _scaled(self, X):
        """X standardised with the learned scaling (a new array), or X itself."""
        if getattr(self, "input_mean_", None) is None:
            return X
        return (X - self.input_mean_) / self.input_scale_

    def _all_finite(self, X):
        """The backend's check, on the model's threads (a pass over 100,000 MNIST rows
        costs a tenth of predicting them)."""
        backend = _backend.load(self.net_.backend if self.net_ is not None else
                                self.backend or _backend.get_backend())
        return backend.all_finite(X, _threads.resolve(self.n_threads))

    def _resolve_task(self, y):
        if self.task != "auto":
            return self.task
        if self._canonical_loss in _CLASSIFIER_LOSSES:
            return "classification"
        if self.loss is not None:  # integer counts are targets, not classes
            return "regression"
        if y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all() and y.shape[1] > 1:
            # one 1 per row is far more often one-hot classes (Keras' to_categorical) than
            # a multilabel set whose rows each happen to hold one label
            return "classification" if _one_hot(y) else "multilabel"
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            return "regression"
        if y.ndim == 2 and y.shape[1] > 1:
            return "regression"
        return "classification"

    def _encode_targets(self, y, first):
        """Targets in the plan's form: class indices, 0/1 floats or float values."""
        y = np.asarray(y)
        if y.ndim == 0 or y.ndim > 2:
            raise ValueError(f"y: expected a 1-D or 2-D array, got shape {y.shape}")
        if self._soft_targets:
            return self._encode_soft_targets(y, first)
        if first:
            self.task_ = self._resolve_task(y)
            if self.task_ in ("classification", "binary"):
                if y.ndim == 2 and y.shape[1] > 1 and _one_hot(y):
                    self.classes_ = np.arange(y.shape[1])  # every column, hot here or not
                else:
                    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
                    if y.ndim != 1:
                        raise ValueError(f"y: class labels must be 1-D or one-hot rows, got "
                                         f"shape {y.shape}")
                    self.classes_ = np.unique(y)
                if len(self.classes_) < 2:
                    raise ValueError(f"y: expected at least two classes, got {self.classes_}")
                if self.task_ == "binary" and len(self.classes_) != 2:
                    raise ValueError(f"y: task='binary' needs two classes, got "
                                     f"{len(self.classes_)}")
                if len(self.classes_) == 2:
                    self.task_ = self._two_class_task
        if self.task_ in ("classification", "binary"):
            if y.ndim == 2 and y.shape[1] > 1:
                if y.shape[1] != len(self.classes_) or not _one_hot(y):
                    raise ValueError(f"y: expected labels or one-hot rows of "
                                     f"{len(self.classes_)} columns, got shape {y.shape}")
                y = self.classes_[np.argmax(y, axis=1)]
            y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
            index = np.searchsorted(self.classes_, y)
            index = np.clip(index, 0, len(self.classes_) - 1)
            unseen = self.classes_[index] != y
            if unseen.any():
                raise ValueError(
                    f"y: labels {np.unique(y[unseen])[:5].tolist()} were not seen when the "
                    f"model was first fitted (classes {self.classes_.tolist()})"
                )
            if self.task_ == "binary":
                return index.astype(self.dtype).reshape(-1, 1)
            return index.astype(np.int64)
        Y = np.ascontiguousarray(y, dtype=self.dtype)
        if not self._all_finite(Y):
            raise ValueError("y: contains NaN or infinity")
        return np.ascontiguousarray(Y.reshape(len(Y), -1))

    def _encode_soft_targets(self, y, first):
        """Target rows of probabilities for categorical_cross_entropy / kl_divergence: an
        (n, k) y (k >= 2, finite, >= 0); after the first fit also column indices, as
        one-hot rows."""
        if first:
            if y.ndim != 2 or y.shape[1] < 2:
                raise ValueError(f"y: loss={self.loss!r} takes (n, k) rows of probabilities "
                                 f"(k >= 2), got shape {y.shape}")
            self.task_ = "classification"
            self.classes_ = np.arange(y.shape[1])
        k = len(self.classes_)
        if y.ndim == 1:
            if y.dtype.kind not in "biu" or ((y < 0) | (y >= k)).any():
                raise ValueError(f"y: expected rows of {k} probabilities or column indices "
                                 f"in [0, {k})")
            return np.ascontiguousarray(np.eye(k, dtype=self.dtype)[y])
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y: expected numeric targets, got dtype {y.dtype}")
        if y.ndim != 2 or y.shape[1] != k:
            raise ValueError(f"y: expected rows of {k} probabilities, got shape {y.shape}")
        Y = np.ascontiguousarray(y, dtype=self.dtype)
        if not self._all_finite(Y) or (Y < 0).any():
            raise ValueError("y: target probabilities must be finite and >= 0")
        return Y

    @property
    def _canonical_loss(self):
        return LOSS_ALIASES.get(self.loss, self.loss)

    @property
    def _soft_targets(self):
        return self._canonical_loss in SOFT_TARGET_LOSSES

    @property
    def _two_class_task(self):
        """The task of two classes: "binary" (one sigmoid output), or "classification"
        (an output per class) for the classifier losses."""
        return "classification" if self._canonical_loss in _CLASSIFIER_LOSSES else "binary"

    @property
    def _loss(self):
        if self.loss is not None and self.task_ in ("regression", "classification"):
            if (self.task_ == "classification") == (self._canonical_loss in _CLASSIFIER_LOSSES):
                return self._canonical_loss
        return {"classification": "softmax_cross_entropy",
                "binary": "sigmoid_binary_cross_entropy",
                "multilabel": "sigmoid_binary_cross_entropy",
                "regression": "mean_squared_error"}[self.task_]

    @property
    def _poisson(self):
        return self.loss == "poisson" and self.task_ == "regression"

    def _n_outputs(self, Y):
        if self.task_ == "classification":
            return len(self.classes_)
        return Y.shape[1]

    def _build(self, n_features, n_outputs, optimizer, batch_size, l2, l1, backend=None,
               max_norm=None, activity_l2=0.0, activity_l1=0.0):
        sizes = [n_features, *self.hidden_layer_sizes, n_outputs]
        options = dict(loss=self._loss, optimizer=optimizer, batch_size=batch_size,
                       dtype=self.dtype, seed=self.seed, l2=l2, l1=l1, init=self.init,
                       backend=backend or self.backend, margin=self.margin,
                       max_norm=max_norm, activity_l2=activity_l2, activity_l1=activity_l1,
                       alpha=[self.maxout_pieces if name == "maxout" else None
                              for name in self.activation] + [None])
        if self.batch_norm:
            self.net_ = LayeredNetwork(sizes, self.activation, dropout=self.dropout,
                                       batch_norm=True, **options)
        else:
            self.net_ = NetworkPlan(sizes, self.activation, dropout=self.dropout,
                                    n_threads=self.n_threads, **options)
        self.n_features_in_ = n_features
        self.n_outputs_ = n_outputs

    # what a fit changes: a failed one puts them back
    _FITTED = ("net_", "task_", "classes_", "n_features_in_", "n_outputs_", "history",
               "input_mean_", "input_scale_")

    def _fitted_attributes(self):
        return {k: getattr(self, k) for k in self._FITTED if hasattr(self, k)}

    def _restore(self, attributes):
        for key in self._FITTED:
            if key in attributes:
                setattr(self, key, attributes[key])
            elif hasattr(self, key):
                delattr(self, key)

    def _check_fitted(self):
        if self.net_ is None:
            raise RuntimeError("this MLP is not fitted yet: call fit() first")

    # -- training ----------------------------------------------------------------------

    def fit(self, X, y=None, *, sample_weight=None, epochs=10, batch_size=32, optimizer="adam",
            learning_rate=None, schedule="constant", step_size=10, gamma=0.1,
            min_learning_rate=0.0, l2=0.0, l1=0.0, max_norm=None, activity_l2=0.0,
            activity_l1=0.0, validation_data=None, validation_split=0.0,
            early_stopping=False, patience=5, min_delta=0.0, restore_best_weights=True,
            shuffle=True, verbose=1, checkpoint=None, checkpoint_every=1, resume=False,
            update_ratios=False, block_bytes=streaming.BLOCK_BYTES, **optimizer_options):
        """Train from scratch (new weights), or resume a checkpointed fit, and return self.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a stream
            Finite values (NaN or infinity: ValueError). Streamed, one block in memory
            at a time (see Notes): a Dask array; a memory-mapped array
            (``np.load(path, mmap_mode="r")``) larger than `block_bytes`; chunks (with
            ``y=None``): a list of ``(X, y)`` or ``(X, y, sample_weight)`` tuples, an
            iterable of them or a callable returning a fresh iterator of them; or a
            :class:`fastmlp.streaming.Stream`.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
            Labels or values; the first fit reads the task from it (see ``task``). A Dask
            array with a Dask X; None for chunks.
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0: each batch's loss is the weighted mean of its rows' (validation
            is unweighted). A Dask array with a Dask X; chunks carry their own.
        epochs : int, default 10
            Epochs; with optimizer="lbfgs", the most iterations.
        batch_size : int, default 32
            Rows per minibatch (unused with "lbfgs").
        optimizer : str or Optimizer, default "adam"
            "sgd", "momentum", "nesterov", "adam", "adamw", an object from
            fastmlp.optimizers, or "lbfgs": SciPy's L-BFGS-B on the whole batch (as
            scikit-learn's lbfgs solver; options max_fun=15000 and tol=1e-4, its gtol).
        learning_rate : float, optional
            Default: the optimizer's.
        schedule : {"constant", "step", "cosine"} or callable, default "constant"
            "step": times `gamma` every `step_size` epochs; "cosine": down to
            `min_learning_rate` at the last epoch; or ``f(epoch, lr0) -> lr``.
        step_size : int, default 10
            Epochs between the "step" schedule's reductions.
        gamma : float, default 0.1
            The "step" schedule's factor.
        min_learning_rate : float, default 0
            Where the "cosine" schedule ends.
        l2, l1 : float, default 0
            Penalties on the weights, per step (both: the elastic net).
        max_norm : float, optional
            The max-norm constraint, recommended with dropout: after every update, each
            unit's incoming weights longer than max_norm (L2) are scaled down to it.
        activity_l2, activity_l1 : float, default 0
            Penalties on every hidden layer's output ``A`` (before dropout), a (weighted)
            mean over each batch's rows like the data loss: ``sum_i w_i * (0.5 *
            activity_l2 * sum_j A_ij**2 + activity_l1 * sum_j abs(A_ij)) / sum_i w_i`` per
            hidden layer (``w_i`` 1 without sample weights).
        validation_data : tuple of (X_val, y_val), optional
            Data to measure "val_loss" and the metric on after each epoch.
        validation_split : float in [0, 1)
            Hold out this fraction of the rows, drawn at random from the model's seed and,
            for classes, stratified (each class keeps its share on both sides, as
            scikit-learn's early stopping), instead of validation_data. To hold out the
            last rows (a time series), pass them as validation_data.
        early_stopping : bool, default False
            Stop when the monitored loss (validation if any, else training) has not
            improved by `min_delta` for `patience` epochs.
        patience : int, default 5
            Epochs without improvement before early stopping stops.
        min_delta : float, default 0
            The least decrease of the monitored loss that counts as an improvement.
        restore_best_weights : bool, default True
            With early stopping, go back to the best epoch's weights.
        shuffle : bool, default True
            Visit the rows in a fresh order each epoch (from the seed); a `batch_size`
            of all the rows trains on them as stored.
        verbose : int, default 1
            0 silent, 1 a progress bar (tqdm when installed).
        checkpoint : str or path-like, optional
            Save the whole training state there, atomically, after every
            checkpoint_every-th epoch, at the end and when Ctrl-C stops the fit: the model
            (MLP.load reads it as one), the optimizer's state and step, the epoch and the
            rows of it done, early stopping's best and patience, the history and the random
            streams. With "lbfgs": the weights after every checkpoint_every iterations.
        checkpoint_every : int, default 1
            Epochs (iterations with "lbfgs") between checkpoints.
        resume : bool, default False
            Continue a checkpointed fit: this model's, if MLP.load read it from a
            checkpoint, else the one at `checkpoint` (if there is none yet, the fit
            starts, so a script can be rerun after a crash as it is). X, y and every
            setting must be the checkpointed fit's (epochs may be raised); the final
            weights, history and best epoch are then those of an uninterrupted fit, bit for
            bit, on the same backend (for any n_threads). "lbfgs" resumes from the saved
            weights only: SciPy's optimizer state cannot be saved, so the continuation is
            a fresh L-BFGS run from there for the iterations left. Not with a stream.
        update_ratios : bool, default False
            Record the course's babysitting measure in ``history["update_ratio_W0"]``,
            ``["update_ratio_W1"]``, ...: per epoch and layer, ``||ΔW|| / ||W||`` of the
            epoch's first step (Frobenius norms; about 1e-3 is healthy, much more says the
            learning rate is too high, much less too low). NaN for an epoch resumed within
            it. Not with "lbfgs".
        block_bytes : int, default 64 MiB
            A memory-mapped X is read this many bytes of rows at a time (at least a row);
            one no larger is read whole, as an in-memory X.
        **optimizer_options
            The optimizer's momentum, beta1, beta2, eps, weight_decay ("lbfgs": max_fun,
            tol).

        Returns
        -------
        self : MLP
            The fitted model, with its ``history`` (see the class's Attributes).

        Notes
        -----
        Ctrl-C stops the fit when the running backend call returns (at most 32 batches;
        a second Ctrl-C raises at once): ``interrupted_`` is then True, the model usable,
        and the checkpoint, if any, at that row.

        A stream trains with the streaming shuffle: each epoch the blocks in a random
        order (a Dask array's chunks, a memmap's blocks, a list's chunks; an iterable's
        come in its own order), each block's rows in a random order, both drawn from the
        model's seed; every batch is whole but the epoch's last (a block's left-over rows
        start the next block's first batch), every row is visited once an epoch. With
        ``shuffle=False`` the batches, and the weights, are an in-memory fit's. Each block
        is validated as an in-memory X and y would be. Before training, one pass finds
        the classes of a 1-D y (Dask: ``da.unique``; none when the first block's y has
        fractional values: regression) and, with standardize=True, the columns' mean and
        standard deviation (Dask: its reductions); a 2-D y's task is read from the first
        block. A one-shot iterator (a generator) can be read once:
        one epoch, and no such pass (else ValueError). Not with a stream:
        ``validation_split`` (pass ``validation_data``, held in memory), "lbfgs",
        ``checkpoint`` and ``resume``.
        """
        epochs = check.positive_int(epochs, "epochs")
        batch_size = check.positive_int(batch_size, "batch_size")
        lbfgs = isinstance(optimizer, str) and optimizer == "lbfgs"
        if lbfgs:
            lbfgs_options = _lbfgs_options(optimizer_options, learning_rate)
            if self.batch_norm:
                raise ValueError("optimizer: 'lbfgs' is not available with batch_norm=True")
            if update_ratios:
                raise ValueError("update_ratios: not with optimizer='lbfgs' (no steps)")
            opt = get_optimizer("sgd")  # the plan's own optimizer is never used
        else:
            if learning_rate is not None:
                optimizer_options["learning_rate"] = learning_rate
            opt = get_optimizer(optimizer, **optimizer_options)
        validation_split = check.real_scalar(validation_split, "validation_split", low=0,
                                             high=1, high_open=True)
        patience = check.positive_int(patience, "patience")
        step_size = check.positive_int(step_size, "step_size")
        gamma = check.real_scalar(gamma, "gamma", low=0)
        min_learning_rate = check.real_scalar(min_learning_rate, "min_learning_rate", low=0)
        activity_l2 = check.real_scalar(activity_l2, "activity_l2", low=0)
        activity_l1 = check.real_scalar(activity_l1, "activity_l1", low=0)
        checkpoint_every = check.positive_int(checkpoint_every, "checkpoint_every")
        if max_norm is not None:
            max_norm = check.real_scalar(max_norm, "max_norm", low=0, low_open=True)
            if lbfgs:
                raise ValueError("max_norm: not with optimizer='lbfgs' (no steps to follow)")
        if checkpoint is not None:
            checkpoint = os.fspath(checkpoint)
        stream = None
        if streaming.is_stream(X, y, block_bytes):
            for name, value, why in (
                    ("optimizer", lbfgs, "'lbfgs' needs the whole batch at each evaluation"),
                    ("validation_split", validation_split, "pass validation_data instead"),
                    ("checkpoint", checkpoint is not None, "a stream's epoch cannot resume"),
                    ("resume", resume, "a stream's epoch cannot resume")):
                if value:
                    raise ValueError(f"{name}: not with a streamed X ({why})")
            stream = X if isinstance(X, streaming.Stream) else streaming.Stream(
                X, y, sample_weight=sample_weight, block_bytes=block_bytes)
        elif y is None:
            raise ValueError("y: required, unless X is a stream of (X, y) chunks")
        # what shapes the training besides the data and epochs: a resumed fit must match it
        settings = {
            "batch_size": batch_size,
            "optimizer": {"name": "lbfgs", **lbfgs_options} if lbfgs else
            {"name": opt.name, **dataclasses.asdict(opt)},
            "schedule": schedule if isinstance(schedule, str) else "callable",
            "step_size": step_size, "gamma": gamma, "min_learning_rate": min_learning_rate,
            "l2": float(l2), "l1": float(l1), "max_norm": max_norm,
            "activity_l2": activity_l2, "activity_l1": activity_l1,
            "validation_split": validation_split,
            "early_stopping": bool(early_stopping), "patience": patience,
            "min_delta": float(min_delta), "restore_best_weights": bool(restore_best_weights),
            "shuffle": bool(shuffle), "update_ratios": bool(update_ratios)}
        saved = self._saved_fit(checkpoint) if resume else None
        # bad input, or a refused resume, leaves a fitted model as it was
        previous = self._fitted_attributes()
        self.net_ = None
        try:
            split_seed = y_spread = None
            if stream is not None:
                prepare, y_spread = self._open_stream(stream, opt, batch_size, l2, l1,
                                                      max_norm, activity_l2, activity_l1)
                X = Y = w = None
            else:
                X = self._features(X, fitting=True)
                y_raw = np.asarray(y)
                if len(y_raw) != len(X):
                    raise ValueError(f"X and y have different lengths: {len(X)} and "
                                     f"{len(y_raw)}")
                self._learn_scaling(X)  # held-out rows are scaled by _features below
                Y = self._encode_targets(y_raw, first=True)
                w = check.sample_weight(sample_weight, len(X), self.dtype, non_negative=True)
                if w is not None and self.batch_norm:
                    raise ValueError("sample_weight: not supported with batch_norm=True")
                if validation_data is None and validation_split:
                    # the model's seed (a resumed fit: its own draw) picks the rows held out
                    split_seed = saved["record"].get("split_seed") if saved is not None \
                        else np.random.SeedSequence(self.seed).entropy
                    labels = _labels_of(Y) if self.task_ in ("classification", "binary") \
                        else None
                    train, held_out = _validation_rows(len(X), validation_split, labels,
                                                       split_seed)
                    validation_data = (X[held_out], y_raw[held_out])
                    X, Y = X[train], Y[train]
                    w = None if w is None else w[train]
                X = self._scaled(X)
                # a resumed fit stays on its backend, unless this model names one or lacks it
                backend = None
                if saved is not None and self.backend is None and \
                        saved["record"]["backend"] in _backend.available_backends():
                    backend = saved["record"]["backend"]
                self._build(X.shape[1], self._n_outputs(Y), opt,
                            len(X) if lbfgs else batch_size, l2, l1, backend=backend,
                            max_norm=max_norm, activity_l2=activity_l2,
                            activity_l1=activity_l1)
            if validation_data is not None:
                X_val = self._features(validation_data[0])
                Y_val = self._encode_targets(validation_data[1], first=False)
                if len(X_val) != len(Y_val):
                    raise ValueError("validation_data: X and y have different lengths")
            else:
                X_val = Y_val = None
            metric = "r2" if self.task_ == "regression" else "accuracy"
            fit_record = None
            if stream is None and (checkpoint is not None or saved is not None):
                fit_record = {"settings": settings, "epochs": epochs, "split_seed": split_seed,
                              "data": _digest(X, Y, w, X_val, Y_val),
                              "backend": self.net_.backend}
        except (TypeError, ValueError):
            self._restore(previous)
            raise
        if lbfgs:
            return self._fit_lbfgs(X, Y, w, X_val, Y_val, metric, epochs, lbfgs_options,
                                   fit_record, saved, checkpoint, checkpoint_every, previous)
        lr_at = _lr_schedule(schedule, opt.learning_rate, epochs, step_size, gamma,
                             min_learning_rate)
        self.history = {"loss": [], metric: [], "lr": []}
        if X_val is not None:
            self.history.update({"val_loss": [], f"val_{metric}": []})
        ratios = _UpdateRatios(self.net_) if update_ratios else None
        if ratios is not None:
            self.history.update({name: [] for name in ratios.names})
        best = (np.inf, None, -1, {})
        waited = 0
        # one batch per epoch is the same batch in any order: full-batch epochs (the
        # course's) are not shuffled, which would only cost a draw and a gather each
        shuffler = _Shuffler(len(X), np.random.default_rng(self.seed)) \
            if stream is None and shuffle and batch_size < len(X) else None
        start = training.Position()
        if saved is not None:
            try:
                start, best, waited = self._resume(saved, fit_record, shuffler)
            except ValueError:
                self._restore(previous)
                raise
        if stream is None and self.task_ == "regression":
            y_spread = _sum_of_squares(Y)
        training_metric = _RunningMetric(self.task_, self.n_outputs_, y_spread)
        n_rows = len(X) if stream is None else stream.n_samples  # None: chunks, not read yet
        total = None if n_rows is None else \
            (epochs - start.epoch) * -(-n_rows // batch_size) - -(-start.rows // batch_size)
        progress = Progress(total, verbose, epochs=epochs)
        on_chunk = progress.update if ratios is None else ratios.watching(progress.update)
        options = dict(batches_per_call=_BATCHES_PER_CALL, on_chunk=on_chunk,
                       first_call_batches=None if ratios is None else 1, running_metric=True)
        if stream is None:
            runner = training.EpochRunner(self.net_, X, Y, batch_size, sample_weight=w,
                                          **options)
        else:
            runner = training.StreamRunner(
                self.net_, stream, prepare, batch_size,
                rng=np.random.default_rng(self.seed) if shuffle else None, **options)
        started = 0.0

        def before_epoch(epoch):
            nonlocal started
            self.net_.learning_rate = lr_at(epoch)
            if ratios is not None:
                ratios.epoch_starts(fresh=not (epoch == start.epoch and start.rows))
            started = time.perf_counter()

        def after_epoch(epoch, loss):
            nonlocal best, waited
            if not self._finite(loss):
                self._restore(previous)  # as for any failed fit: the model as it was
                raise ValueError(
                    f"fit: training diverged in epoch {epoch + 1} (loss {loss}, weights "
                    "no longer finite): lower learning_rate, scale X or add l2")
            self.history["lr"].append(self.net_.learning_rate)
            self.history["loss"].append(loss)
            self.history[metric].append(training_metric(runner.metric_total, runner.rows))
            if ratios is not None:
                for name, value in zip(ratios.names, ratios.values):
                    self.history[name].append(value)
            monitored = loss
            if X_val is not None:
                val = self._evaluate_encoded(X_val, Y_val)
                self.history["val_loss"].append(val["loss"])
                self.history[f"val_{metric}"].append(val[metric])
                monitored = val["loss"]
            progress.epoch_done(epoch, self._epoch_summary, time.perf_counter() - started)
            if monitored < best[0] - min_delta:
                if not (early_stopping and restore_best_weights):
                    best = (monitored, None, epoch, {})  # no weights to go back to
                else:
                    extra = getattr(self.net_, "extra_state", dict)()
                    kept_extra = [best[3][k] for k in extra] if best[3] else None
                    best = (monitored, _kept(self.net_.weights, best[1]), epoch,
                            dict(zip(extra, _kept(list(extra.values()), kept_extra))))
                waited = 0
                return False
            waited += 1
            return early_stopping and waited >= patience

        def save_checkpoint(position):
            self._write_checkpoint(checkpoint, position, fit_record, (best, waited), shuffler)

        self.stopped_early_ = self.interrupted_ = False
        try:
            outcome = training.train(
                runner, epochs, after_epoch, before_epoch=before_epoch, start=start,
                epoch_order=None if shuffler is None else shuffler.order,
                checkpoint=None if checkpoint is None else save_checkpoint,
                checkpoint_every=checkpoint_every)
        finally:
            progress.close()
            self._checkpoint = None  # consumed: a later resume reads the file
        self.stopped_early_ = outcome.stopped
        if outcome.interrupted:
            # The interrupted call finished its batch; the weights are consistent. An
            # epoch cut short in its bookkeeping leaves no partial row in the history.
            self.interrupted_ = True
            complete = min(len(v) for v in self.history.values())
            for values in self.history.values():
                del values[complete:]
        if early_stopping and restore_best_weights and best[1] is not None:
            self.net_.set_weights(best[1])
            if best[3]:
                self.net_.set_extra_state(best[3])
            self.best_epoch_ = best[2]
        return self

    # -- checkpoints -------------------------------------------------------------------

    def _open_stream(self, stream, opt, batch_size, l2, l1, max_norm, activity_l2,
                     activity_l1):
        """A streamed fit's start: the task and classes (of a 1-D y: its labels, found in a
        pass; of a 2-D y: its first block), standardize's scaling (a pass), the network.
        Returns (prepare, spread): a raw block in the network's form, validated as an
        in-memory X and y; and for regression the targets' spread for the running R²,
        gathered from the blocks prepare sees until it is first asked for (after the
        first epoch)."""
        X_first, y_first, _ = stream.first_block()
        n_features = self._features(X_first, fitting=True).shape[1]
        y_first = np.asarray(y_first)
        labels_decide = self.task in ("auto", "classification", "binary") and \
            not self._soft_targets and (self.loss is None or
                                        self._canonical_loss in _CLASSIFIER_LOSSES)
        if self.task == "auto" and self._resolve_task(y_first) == "regression":
            labels_decide = False  # fractional values in one block: all of y regresses
        one_column = y_first.ndim == 1 or (y_first.ndim == 2 and y_first.shape[1] == 1)
        labels, moments = streaming.scan(stream, labels=labels_decide and one_column,
                                         moments=self.standardize)
        # every label once decides the task and the classes as all of y would
        probe = y_first if labels is None else labels
        n_outputs = self._n_outputs(self._encode_targets(probe, first=True))
        if moments is None:
            self.input_mean_ = self.input_scale_ = None
        else:
            self._set_scaling(*moments)
        self._build(n_features, n_outputs, opt, batch_size, l2, l1, max_norm=max_norm,
                    activity_l2=activity_l2, activity_l1=activity_l1)
        y_moments = streaming.Moments() if self.task_ == "regression" else None
        collecting = [y_moments is not None]

        def prepare(X, y, w):
            X = self._scaled(self._features(X, fitting=True))
            Y = self._encode_targets(y, first=False)
            if len(Y) != len(X):
                raise ValueError(f"X and y have different lengths: {len(X)} and {len(Y)}")
            w = check.sample_weight(w, len(X), self.dtype, non_negative=True)
            if w is not None and self.batch_norm:
                raise ValueError("sample_weight: not supported with batch_norm=True")
            if collecting[0]:
                y_moments.add(Y)
            return X, Y, w

        def spread():
            collecting[0] = False
            return y_moments.sum_of_squares

        return prepare, None if y_moments is None else spread

    def _saved_fit(self, path):
        """The checkpointed fit to resume: this model's (from MLP.load), else the file at
        path; None when there is no file yet (the fit starts)."""
        saved = getattr(self, "_checkpoint", None)
        if saved is not None:
            return saved
        if path is None:
            raise ValueError("resume: this model holds no checkpointed fit (MLP.load one) "
                             "and no checkpoint= path was given")
        if not os.path.exists(path):
            return None
        loaded = MLP.load(path)
        if loaded._checkpoint is None:
            raise ValueError(f"resume: {path} is a saved model, not a checkpoint")
        mine, theirs = self._architecture(), loaded._architecture()
        for key in mine:
            if mine[key] != theirs[key]:
                raise ValueError(f"resume: {key}={mine[key]!r}, but the checkpoint {path} "
                                 f"was made with {key}={theirs[key]!r}")
        return loaded._checkpoint

    def _resume(self, saved, fit_record, shuffler):
        """Put the checkpointed fit back: the network, the history and the random streams;
        returns train()'s start position and early stopping's (best, waited)."""
        record = saved["record"]
        for key, value in fit_record["settings"].items():
            # a setting newer than the checkpoint had its default there
            theirs = record["settings"].get(key, _NEWER_SETTINGS.get(key))
            if theirs != value:
                raise ValueError(f"resume: {key}={value!r} differs from the checkpointed "
                                 f"fit's {theirs!r}")
        if record["data"] != fit_record["data"]:
            raise ValueError("resume: X, y, sample_weight or the validation data differ "
                             "from the checkpointed fit's")
        if record["backend"] != fit_record["backend"]:
            warnings.warn(f"resume: the fit was checkpointed on backend "
                          f"{record['backend']!r} and continues on {fit_record['backend']!r}: "
                          "not bit for bit the uninterrupted fit", RuntimeWarning, stacklevel=4)
        try:
            self.net_.set_weights(saved["weights"])
            if saved["extra"]:
                self.net_.set_extra_state(saved["extra"])
            self.net_.set_training_state(record["network"], saved["network"])
            if shuffler is not None:
                shuffler.set_state(record["shuffle"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"resume: the checkpoint's training state does not fit this "
                             f"fit ({exc})") from exc
        saved_position = record["position"]
        position = training.Position(**{
            **saved_position, "metric_total": tuple(saved_position.get("metric_total", ()))})
        if position.rows and len(position.metric_total) != self.n_outputs_:
            raise ValueError("resume: the checkpoint's running training metric does not fit "
                             "this fit (a checkpoint of an older fastmlp within an epoch)")
        self.history = {k: list(v) for k, v in saved["history"].items()}
        stopping = record["early_stopping"]
        best = (stopping["best_loss"], saved["best"], stopping["best_epoch"], saved["best_extra"])
        return position, best, stopping["waited"]

    def _write_checkpoint(self, path, position, fit_record, stopping, shuffler):
        """The model and everything its fit needs to go on from `position`, atomically."""
        (best_loss, best_weights, best_epoch, best_extra), waited = stopping
        scalars, arrays = self.net_.training_state()
        record = {**fit_record, "position": dataclasses.asdict(position), "network": scalars,
                  "shuffle": None if shuffler is None else shuffler.state_at(position.epoch),
                  "early_stopping": {"best_loss": float(best_loss), "best_epoch": best_epoch,
                                     "waited": waited}}
        # an epoch cut short in its record: its row of the history is redone on resume
        history = {k: v[:position.epoch] for k, v in self.history.items()}
        members = self._members(history, record)
        members.update({f"fit_{k}": v for k, v in arrays.items()})
        for i, (W, b) in enumerate(best_weights or ()):
            members[f"best_W{i}"], members[f"best_b{i}"] = W, b
        members.update({f"best_extra_{k}": v for k, v in best_extra.items()})
        _files.atomic_write(path, lambda f: np.savez(f, **members))

    def _fit_lbfgs(self, X, Y, w, X_val, Y_val, metric, max_iter, options, fit_record,
                   saved, checkpoint, checkpoint_every, previous):
        """fit's full-batch solver (the training core's minimize_lbfgs). A checkpoint's
        position counts iterations; a resumed fit restarts L-BFGS from its weights."""
        done, self.stopped_early_ = 0, False
        self.history = {}  # a checkpoint before the end holds this fit's, not the last one's
        if saved is not None:
            try:
                position = self._resume(saved, fit_record, None)[0]
            except ValueError:
                self._restore(previous)
                raise
            if position.finished:
                self._checkpoint = None
                return self
            done = position.epoch

        def save_checkpoint(n_iter, finished=False):
            self._write_checkpoint(checkpoint, training.Position(done + n_iter,
                                                                finished=finished),
                                   fit_record, ((np.inf, None, -1, {}), 0), None)

        result = training.minimize_lbfgs(
            self.net_, X, Y, w, max_iter=max(1, max_iter - done), **options,
            checkpoint=None if checkpoint is None else save_checkpoint,
            checkpoint_every=checkpoint_every)
        self._checkpoint = None
        self.n_iter_ = done + int(result.nit)
        self.interrupted_ = result.status == -1
        if result.status not in (0, -1):
            warnings.warn(f"fit: lbfgs stopped after {self.n_iter_} iteration(s) without "
                          f"converging: {result.message}", RuntimeWarning, stacklevel=3)
        self.history = {"loss": [float(result.fun)], metric: [self._metric(X, Y)]}
        if X_val is not None:
            val = self._evaluate_encoded(X_val, Y_val)
            self.history.update({"val_loss": [val["loss"]], f"val_{metric}": [val[metric]]})
        if checkpoint is not None:
            save_checkpoint(int(result.nit), finished=result.status == 0)
        return self

    def partial_fit(self, X, y, *, sample_weight=None, classes=None, optimizer="adam",
                    learning_rate=None, batch_size=None, l2=0.0, l1=0.0, **optimizer_options):
        """One pass over (X, y) without resetting the weights (streaming batches).

        The first call builds the model; pass ``classes`` then if later batches may hold
        labels this one lacks. Optimizer settings apply at the first call only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels or values.
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0: each batch's loss is the weighted mean of its rows'.
        classes : array-like, optional
            Every class label, at the first call.
        optimizer : str or Optimizer, default "adam"
            As for fit (not "lbfgs"); first call only.
        learning_rate : float, optional
            Default: the optimizer's; first call only.
        batch_size : int, optional
            Rows per minibatch. The first call sets the most (default: its rows); later
            calls default to that.
        l2, l1 : float, default 0
            Penalties on the weights, per step; first call only.
        **optimizer_options
            The optimizer's momentum, beta1, beta2, eps, weight_decay; first call only.

        Returns
        -------
        self : MLP
            The updated model; ``history["loss"]`` gains this pass's mean loss.
        """
        first = self.net_ is None
        X = self._features(X, fitting=True)
        if first:
            self._learn_scaling(X)
        X = self._scaled(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}")
        w = check.sample_weight(sample_weight, len(X), self.dtype, non_negative=True)
        if first:
            if learning_rate is not None:
                optimizer_options["learning_rate"] = learning_rate
            opt = get_optimizer(optimizer, **optimizer_options)
            if classes is not None:
                self.task_ = self._resolve_task(y) if self.task == "auto" else self.task
                self.classes_ = np.unique(np.asarray(classes))
                if self.task_ in ("classification", "binary"):
                    self.task_ = self._two_class_task if len(self.classes_) == 2 else \
                        "classification"
                Y = self._encode_targets(y, first=False)
            else:
                Y = self._encode_targets(y, first=True)
            self._build(X.shape[1], self._n_outputs(Y), opt, batch_size or len(X), l2, l1)
            self.history = {"loss": []}
        else:
            Y = self._encode_targets(y, first=False)
        bs = min(batch_size or self.net_.batch_size, self.net_.batch_size)
        loss = training.EpochRunner(self.net_, X, Y, bs, sample_weight=w).run()
        self.history.setdefault("loss", []).append(loss)
        if not self._finite(loss):
            # no copy of the weights is kept per call to roll back to; predict refuses them
            raise ValueError(f"partial_fit: training diverged (loss {loss}, weights no longer "
                             "finite); fit the model again with a lower learning_rate")
        return self

    def _finite(self, loss):
        # once per epoch or call: a pass over the weights is cheap beside the training
        if not math.isfinite(loss):
            return False
        params = getattr(self.net_, "parameters", None)  # a plan's, all in one array
        if params is not None:
            return self._all_finite(params)
        return all(self._all_finite(W) and self._all_finite(b) for W, b in self.net_.weights)

    # -- inference ---------------------------------------------------------------------

    def decision_function(self, X):
        """The network's raw output: logits for classification, values for regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
            Of the model's dtype; log(mean) for loss="poisson".
        """
        X = self._features(X)
        return self.net_.forward(X)

    def predict_proba(self, X):
        """Class probabilities (classification, binary and multilabel models).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or (n_samples, n_labels)
            Each class's probability, in the order of ``classes_`` (binary: two columns);
            multilabel: each label's.
        """
        self._check_fitted()
        if self.task_ == "regression":
            raise AttributeError("predict_proba: a regression model has no probabilities")
        if self._loss in HINGE_LOSSES:
            raise AttributeError("predict_proba: a hinge-loss (SVM) model has scores, not "
                                 "probabilities; see decision_function")
        z = self.decision_function(X)
        return self._probabilities(z)

    def _probabilities(self, z):
        if self.task_ == "classification":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        p = 0.5 * (1 + np.tanh(0.5 * z))  # the sigmoid, without overflow warnings
        return np.hstack([1 - p, p]) if self.task_ == "binary" else p

    def predict(self, X):
        """Class labels, 0/1 indicators (multilabel) or values (regression).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Labels from ``classes_``, 0/1 indicators, or values (the mean for
            loss="poisson").
        """
        self._check_fitted()
        z = self.decision_function(X)
        return self._decode(z)

    def _decode(self, z):
        if self.task_ != "regression":
            # a NaN logit has no class (argmax would answer class 0); an infinite one does
            nan_rows = int(np.isnan(z).any(axis=1).sum())
            if nan_rows:
                raise ValueError(f"predict: the network's output is NaN for {nan_rows} row(s): "
                                 "its weights are not finite (a diverged partial_fit?)")
        if self.task_ == "classification":
            return self.classes_[np.argmax(z, axis=1)]
        if self.task_ == "binary":
            return self.classes_[(z[:, 0] > 0).astype(int)]
        if self.task_ == "multilabel":
            return (z > 0).astype(int)
        if self._poisson:
            z = np.exp(z)  # the network's output is log(mean)
        return z[:, 0] if z.shape[1] == 1 else z

    def _metric(self, X, Y):
        return self._evaluate_encoded(X, Y)["r2" if self.task_ == "regression" else
                                            "accuracy"]

    def _epoch_summary(self):
        return {k: v[-1] for k, v in self.history.items() if v and k != "lr"}

    def _evaluate_encoded(self, X, Y, names=None):
        """The loss, and the metrics named (default: accuracy or r2), on encoded targets."""
        from fastmlp import metrics, ops

        z = self.net_.forward(X)
        labels = _labels_of(Y) if self.task_ == "classification" else None
        if self.task_ == "regression":
            result = {"loss": getattr(ops, self._loss)(z, Y)[0],
                      "r2": metrics.r2_score(np.exp(z) if self._poisson else z, Y)}
        elif self.task_ == "classification":
            if self._loss == "softmax_cross_entropy":
                loss = metrics.log_loss(z, Y)  # the value alone, no gradient table
            else:
                options = {"margin": self.margin} if self._loss in HINGE_LOSSES else {}
                loss = getattr(ops, self._loss)(z, Y, **options)[0]
            result = {"loss": loss, "accuracy": metrics.accuracy(z, labels)}
        else:
            loss = ops.sigmoid_binary_cross_entropy(z, Y)[0]
            result = {"loss": loss, "accuracy": _accuracy((z > 0) == (Y > 0.5), z)}
        for name in names or ():
            if name.startswith("top_") and name.endswith("_accuracy"):
                k = int(name[len("top_"):-len("_accuracy")] or 5)
                result[name] = metrics.top_k_accuracy(z, labels, k)
            elif name == "confusion_matrix":
                result[name] = metrics.confusion_matrix(z, labels)
            elif name == "log_loss":  # the softmax cross-entropy, whatever the loss
                result[name] = result["loss"] if self._loss == "softmax_cross_entropy" \
                    else metrics.log_loss(z, labels)
        return result

    _CLASS_METRICS = ("accuracy", "log_loss", "confusion_matrix", "top_k_accuracy")

    def _metric_names(self, names):
        """The metrics evaluate() may report for this model's task, checked."""
        names = [names] if isinstance(names, str) else list(names)
        if self.task_ == "classification":
            allowed = self._CLASS_METRICS
        else:
            allowed = ("r2",) if self.task_ == "regression" else ("accuracy",)
        checked = []
        for name in names:
            top_k = self.task_ == "classification" and isinstance(name, str) and \
                re.fullmatch(r"top_[1-9][0-9]*_accuracy", name)
            if name not in allowed and not top_k:
                raise ValueError(f"metrics: {name!r} is not a metric of a {self.task_} "
                                 f"model; expected some of {list(allowed)}")
            checked.append("top_5_accuracy" if name == "top_k_accuracy" else name)
        return checked

    def evaluate(self, X, y, *, metrics=None):
        """The loss and metrics on (X, y), computed in compiled code (fastmlp.metrics).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels or values, as at fit.
        metrics : str or sequence of str, optional
            More metrics to report. A classifier: "accuracy", "log_loss",
            "confusion_matrix" (label by predicted class, in ``classes_`` order) and
            "top_k_accuracy" (k = 5; "top_3_accuracy" for another k); a binary or
            multilabel model: "accuracy"; a regressor: "r2".

        Returns
        -------
        dict
            {"loss", "accuracy"} (classification) or {"loss", "r2"} (regression), and
            each metric asked for.
        """
        X = self._features(X)
        Y = self._encode_targets(y, first=False)
        if len(X) != len(Y):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(Y)}")
        names = None if metrics is None else self._metric_names(metrics)
        return self._evaluate_encoded(X, Y, names)

    def score(self, X, y):
        """Accuracy for classification, R² for regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels or values, as at fit.

        Returns
        -------
        float
            The accuracy, or R² averaged over the outputs.
        """
        result = self.evaluate(X, y)
        return result["r2" if self.task_ == "regression" else "accuracy"]

    def hidden_activations(self, X):
        """Each hidden layer's output for X: what the hidden units see.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values (NaN or infinity: ValueError).

        Returns
        -------
        list of ndarray
            One (n_samples, width) array per hidden layer.
        """
        X = self._features(X)
        return self.net_.hidden_outputs(X) if hasattr(self.net_, "hidden_outputs") else \
            _hidden_outputs(self.net_, X)

    def encode(self, X, layer=None):
        """The code of X: one hidden layer's output (an autoencoder's middle layer).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values.
        layer : int, optional
            Which hidden layer (from 0). Default: the narrowest, the first of them if
            several are: the bottleneck of ``MLP((128, 32, 128))``.

        Returns
        -------
        ndarray of shape (n_samples, hidden_layer_sizes[layer])

        Examples
        --------
        >>> import numpy as np
        >>> import fastmlp
        >>> X = fastmlp.datasets.load_mnist_sample()[0][:500]
        >>> autoencoder = fastmlp.MLP((64, 8, 64), task="regression", seed=0)
        >>> autoencoder = autoencoder.fit(X, X, epochs=2, verbose=0)
        >>> autoencoder.encode(X).shape
        (500, 8)
        """
        self._check_fitted()
        if not self.hidden_layer_sizes:
            raise ValueError("encode: the model has no hidden layer")
        last = len(self.hidden_layer_sizes) - 1
        layer = int(np.argmin(self.hidden_layer_sizes)) if layer is None else \
            check.positive_int(layer, "layer", low=0, high=last)
        X = self._features(X)
        if hasattr(self.net_, "hidden_outputs"):
            return self.net_.hidden_outputs(X)[layer]
        return _hidden_outputs(self.net_, X, layer + 1)[layer]  # the layers after: skipped

    @property
    def weights(self):
        """[(W, b), ...] per layer: the arrays being trained (edit them in place)."""
        self._check_fitted()
        return self.net_.weights

    # -- persistence -------------------------------------------------------------------

    def _architecture(self):
        """The constructor's settings that make the model what it is."""
        return {"hidden_layer_sizes": list(self.hidden_layer_sizes),
                "activation": self.activation, "task": self.task, "loss": self.loss,
                "margin": self.margin, "maxout_pieces": self.maxout_pieces,
                "dropout": self.dropout, "batch_norm": self.batch_norm,
                "standardize": self.standardize, "init": self.init,
                "dtype": self.dtype.name, "seed": self.seed}

    def _config(self):
        return {
            "format": _FORMAT, "version": _FORMAT_VERSION, **self._architecture(),
            "task_": self.task_, "n_features_in_": self.n_features_in_,
            "n_outputs_": self.n_outputs_, "history": self.history,
            # forward() rounds by chunks of batch_size rows: the same size, the same bits
            "batch_size": self.net_.batch_size,
        }

    def save(self, path):
        """Save the architecture, classes and weights in one .npz file (no pickled code).

        Written atomically: at every instant `path` holds the old file or the complete new
        one.

        Parameters
        ----------
        path : str or path-like
            The file to write (MLP.load reads it).
        """
        self._check_fitted()
        members = self._members(self.history)
        # atomically: a crash, Ctrl-C or full disk leaves the old file or the new one
        _files.atomic_write(path, lambda f: np.savez(f, **members))

    def _members(self, history, training_record=None):
        """The archive's members for save (and a checkpoint, with its training record)."""
        config = {**self._config(), "history": history}
        if training_record is not None:
            config["training"] = training_record
        members = {"config": np.array(json.dumps(config))}
        for i, (W, b) in enumerate(self.net_.weights):
            members[f"W{i}"], members[f"b{i}"] = W, b
        for name, value in getattr(self.net_, "extra_state", dict)().items():
            members[f"extra_{name}"] = value
        if hasattr(self, "classes_"):
            members["classes"] = self.classes_
        if getattr(self, "input_mean_", None) is not None:
            members["input_mean"], members["input_scale"] = self.input_mean_, self.input_scale_
        return members

    @classmethod
    def load(cls, path, *, max_bytes=1 << 30):
        """A model saved by save() (or a checkpoint of fit).

        The file may come from a stranger: its members, dtypes, declared sizes and header
        are checked before anything is read, and nothing larger than max_bytes (arrays,
        and the workspace the model would allocate) is allocated.

        Parameters
        ----------
        path : str or path-like
            The file.
        max_bytes : int, default 1 GiB
            The most memory the file may make the model allocate.

        Returns
        -------
        MLP
            The model.

        Raises
        ------
        ValueError
            For a file that is not a fastmlp model (FileNotFoundError: no file).
        """
        try:
            members = _files.check_npz(path, _model_member, max_bytes)
            if members.get("config", (None, None))[1] != () or \
                    members["config"][0].kind != "U":
                raise ValueError("no fastmlp.MLP header")
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            config = _files.check_json(str(arrays.pop("config")))
            if not isinstance(config, dict) or config.get("format") != _FORMAT:
                raise ValueError("no fastmlp.MLP header")
            if config.get("version") != _FORMAT_VERSION:
                raise ValueError(f"format version {config.get('version')} is not supported")
            _check_model_shapes(config, members, max_bytes)
            _check_model_members(config, members)
            model = cls(config["hidden_layer_sizes"], config["activation"], config["task"],
                        loss=config.get("loss"), margin=config.get("margin", 1.0),
                        maxout_pieces=config.get("maxout_pieces", 2),
                        dropout=config["dropout"],
                        batch_norm=config["batch_norm"],
                        standardize=config.get("standardize", False), init=config["init"],
                        dtype=config["dtype"], seed=config["seed"])
            model.task_ = config["task_"]
            model.input_mean_ = arrays.pop("input_mean", None)
            model.input_scale_ = arrays.pop("input_scale", None)
            if model.input_mean_ is not None and not (
                    np.isfinite(model.input_mean_).all() and np.isfinite(
                        model.input_scale_).all() and (model.input_scale_ > 0).all()):
                raise ValueError("the input scaling must be finite with a scale above 0")
            if "classes" in arrays:
                model.classes_ = arrays.pop("classes")
            model._build(config["n_features_in_"], config["n_outputs_"], "sgd",
                         config.get("batch_size", 256), 0.0, 0.0)
            n_layers = len(model.hidden_layer_sizes) + 1
            model.net_.set_weights([(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_layers)])
            extra = {k[len("extra_"):]: v for k, v in arrays.items() if k.startswith("extra_")}
            if extra:
                model.net_.set_extra_state(extra)
            model.history = config.get("history", {})
            model._checkpoint = None if "training" not in config else \
                _checkpointed_fit(model, config["training"], arrays)
            return model
        except (OSError, KeyError, ValueError, TypeError, AttributeError, EOFError,
                OverflowError, zipfile.BadZipFile) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a fastmlp model file ({exc})") from exc

    def __repr__(self):
        return (f"MLP(hidden_layer_sizes={self.hidden_layer_sizes}, activation={self.activation}, "
                f"task={self.task!r}, {f'loss={self.loss!r}, ' if self.loss else ''}"
                f"{f'margin={self.margin}, ' if self._canonical_loss in HINGE_LOSSES else ''}"
                f"dtype={self.dtype.name})")


class _Shuffler:
    """A fresh row order per epoch in a buffer made once per fit (rng.shuffle of 0..n-1
    draws what rng.permutation(n) would). It keeps the generator's state from before the
    last draw: a checkpoint within that epoch resumes by drawing its order again."""

    def __init__(self, n, rng):
        self._rng = rng
        self._identity = np.arange(n, dtype=np.int64)
        self._order = np.empty_like(self._identity)
        self._epoch, self._state_before = None, None

    def order(self, epoch):
        self._epoch, self._state_before = epoch, self._rng.bit_generator.state
        np.copyto(self._order, self._identity)
        self._rng.shuffle(self._order)
        return self._order

    def state_at(self, epoch):
        """The generator's state before epoch's order is drawn."""
        return self._state_before if self._epoch == epoch else self._rng.bit_generator.state

    def set_state(self, state):
        _set_generator_state(self._rng, state)


def _digest(*arrays):
    """A fingerprint of a fit's data (None entries included), to refuse a resume on other
    data: SHA-256 of dtypes, shapes and bytes (twice blake2b's speed where the CPU has SHA
    instructions: 14 ms for the MNIST sample)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(b"none" if a is None else f"{a.dtype.str}{a.shape}".encode())
        if a is not None:
            h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _validation_rows(n, fraction, labels, seed):
    """(training rows, validation rows), each sorted: round(n * fraction) rows drawn at
    random from seed, stratified by labels when given (largest remainders; a class keeps
    at least one training row)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5A,)))
    n_val = max(1, int(round(n * fraction)))
    if n_val >= n:
        raise ValueError("validation_split: leaves no training data")
    order = rng.permutation(n)
    if labels is None:
        held_out = order[:n_val]
    else:
        labels = labels.reshape(-1)
        by_class = order[np.argsort(labels[order], kind="stable")]  # shuffled within each
        counts = np.unique(labels, return_counts=True)[1]
        share = counts * (n_val / n)
        take = np.floor(share).astype(np.intp)
        take[np.argsort(take - share, kind="stable")[:n_val - take.sum()]] += 1
        take = np.minimum(take, counts - 1)
        starts = np.cumsum(counts) - counts
        held_out = np.concatenate([by_class[s:s + k] for s, k in zip(starts, take)])
        if not len(held_out):
            raise ValueError("validation_split: no class has rows to spare for validation")
    mask = np.ones(n, bool)
    mask[held_out] = False
    return np.flatnonzero(mask), np.sort(held_out)


class _UpdateRatios:
    """fit(update_ratios=True): ||ΔW|| / ||W|| per layer over each epoch's first step,
    through buffers made once per fit (the runner's first call of an epoch is that one
    step)."""

    def __init__(self, net):
        self._net = net
        self._before = [W.copy() for W, _ in net.weights]
        self._change = [W.copy() for W, _ in net.weights]
        self.names = [f"update_ratio_W{i}" for i in range(len(self._before))]
        self.values = [math.nan] * len(self._before)
        self._measure = False

    def epoch_starts(self, fresh):
        """Before an epoch; fresh: it starts at its first row (not a resumed one)."""
        for kept, (W, _) in zip(self._before, self._net.weights):
            np.copyto(kept, W)
        self.values = [math.nan] * len(self._before)
        self._measure = fresh

    def watching(self, on_chunk):
        """on_chunk, then the measure once the epoch's first call (its first step) is
        done."""
        def measured(batches, loss):
            on_chunk(batches, loss)
            if self._measure:
                self._measure = False
                self.values = [self._ratio(W, kept, change) for (W, _), kept, change in
                               zip(self._net.weights, self._before, self._change)]
        return measured

    @staticmethod
    def _ratio(W, kept, change):
        np.subtract(W, kept, out=change)
        size = float(np.linalg.norm(kept))
        return float(np.linalg.norm(change)) / size if size > 0 else math.inf


class _RunningMetric:
    """The training accuracy (or R²) that fit records per epoch, from the engine's
    running metric (EpochRunner.metric_total: per output, the hits or the squared errors
    of each batch's outputs in its training pass, as Keras records it) and the epoch's
    rows: no second pass over the data. Regression: `spread` gives the training targets'
    sum of squared deviations per output (an array, or a callable for a stream's, known
    once its first epoch has read every block)."""

    def __init__(self, task, n_outputs, spread):
        self._task, self._spread = task, spread
        self._columns = 1 if task == "classification" else n_outputs
        self._ss_tot = None

    def __call__(self, totals, rows):
        if self._task != "regression":
            return float(totals.sum()) / (rows * self._columns)
        if self._ss_tot is None:
            # R² per output against the training targets' spread, averaged as
            # metrics.r2_score does
            ss_tot = self._spread() if callable(self._spread) else self._spread
            self._constant = ss_tot == 0  # 1 when predicted exactly, else 0
            self._ss_tot = np.where(self._constant, 1.0, ss_tot)
            self._r2 = np.empty_like(ss_tot)
        r2 = np.divide(totals, self._ss_tot, out=self._r2)
        np.subtract(1.0, r2, out=r2)
        r2[self._constant] = totals[self._constant] == 0
        return float(np.mean(r2))


def _sum_of_squares(Y):
    """Per column of Y, the sum of squared deviations from its mean (float64)."""
    Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    return np.sum(np.square(Y - Y.mean(axis=0)), axis=0)


def _kept(arrays, into):
    """Copies of arrays ([(W, b), ...] or [a, ...]): into the copies `into` kept before
    (no allocation per epoch), or new ones."""
    if into is None:
        return [tuple(a.copy() for a in pair) if isinstance(pair, tuple) else pair.copy()
                for pair in arrays]
    for source, target in zip(arrays, into):
        for a, b in zip(source, target) if isinstance(source, tuple) else [(source, target)]:
            np.copyto(b, a)
    return into


def _labels_of(Y):
    """Class indices of encoded targets: labels as they are, the first most probable
    column of target rows (soft targets)."""
    return Y if Y.ndim == 1 else np.argmax(Y, axis=1)


def _one_hot(y):
    """Whether a 2-D y holds one-hot rows: 0/1 entries, exactly one 1 per row."""
    return y.dtype.kind in "biuf" and bool(np.isin(y, (0, 1)).all()) and \
        bool((np.count_nonzero(y, axis=1) == 1).all())


def _accuracy(correct, z):
    # a NaN output has no class: NaN accuracy, not a count of lucky argmaxes
    return math.nan if np.isnan(z).any() else float(np.mean(correct))


def _hidden_outputs(plan, X, stop=None):
    """The outputs of the plan's first `stop` hidden layers (default: all)."""
    from fastmlp import ops

    stop = len(plan.weights) - 1 if stop is None else stop
    outputs, A = [], X
    for (W, b), name, alpha in zip(plan.weights[:stop], plan.activations[:stop],
                                   plan._activation_alphas[:stop]):
        A = ops.dense_forward(A, W, b, name,
                              alpha=alpha if name in ACTIVATIONS_WITH_ALPHA else None)
        outputs.append(A)
    return outputs


def _lbfgs_options(options, learning_rate):
    """fit(optimizer="lbfgs")'s options: max_fun and tol (scikit-learn's defaults)."""
    unknown = set(options) - {"max_fun", "tol"}
    if unknown or learning_rate is not None:
        raise ValueError(f"optimizer='lbfgs' takes max_fun and tol, not "
                         f"{sorted(unknown) or ['learning_rate']}")
    return {"max_fun": check.positive_int(options.get("max_fun", 15000), "max_fun"),
            "tol": check.real_scalar(options.get("tol", 1e-4), "tol", low=0)}


def _model_member(name):
    """Whether an archive member name is one MLP.save (or a checkpoint) writes."""
    return (name in ("config", "classes", "input_mean", "input_scale") or re.fullmatch(
        r"(best_)?([Wb][0-9]{1,2}|extra_[A-Za-z0-9_]{1,64})|fit_[A-Za-z0-9_]{1,64}", name)
        is not None)


def _checkpointed_fit(model, record, arrays):
    """What fit(resume=True) needs of a checkpoint MLP.load read, its record checked."""
    def entry(mapping, key, kind, name):
        value = mapping.get(key) if isinstance(mapping, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ValueError(f"header: training.{name} is missing or malformed")
        return value

    for key, kind in (("settings", dict), ("data", str), ("backend", str), ("epochs", int),
                      ("network", dict), ("early_stopping", dict), ("position", dict)):
        entry(record, key, kind, key)
    split_seed = record.get("split_seed")
    if split_seed is not None and (isinstance(split_seed, bool) or not isinstance(
            split_seed, int) or not 0 <= split_seed < 1 << 128):
        raise ValueError("header: training.split_seed is malformed")
    position = record["position"]
    for key, kind in (("epoch", int), ("rows", int), ("loss_total", float),
                      ("finished", bool)):
        entry(position, key, kind, f"position.{key}")
    # absent from checkpoints that predate the running metric: those of an epoch's end
    # lose nothing (_resume refuses the others)
    metric = position.get("metric_total", [])
    if set(position) - {"metric_total"} != {"epoch", "rows", "loss_total", "finished"} or \
            position["epoch"] < 0 or position["rows"] < 0 or not isinstance(metric, list) \
            or not all(isinstance(x, float) for x in metric):
        raise ValueError("header: training.position is malformed")
    history = model.history
    if not isinstance(history, dict) or not all(
            isinstance(v, list) and all(x is None or isinstance(x, (int, float)) for x in v)
            for v in history.values()):
        raise ValueError("header: history must map names to lists of numbers")
    history = model.history
    if not isinstance(history, dict) or not all(
            isinstance(v, list) and all(x is None or isinstance(x, (int, float)) for x in v)
            for v in history.values()):
        raise ValueError("header: history must map names to lists of numbers")
    stopping = record["early_stopping"]
    entry(stopping, "best_loss", float, "early_stopping.best_loss")
    entry(stopping, "best_epoch", int, "early_stopping.best_epoch")
    entry(stopping, "waited", int, "early_stopping.waited")
    n_layers = len(model.hidden_layer_sizes) + 1
    best = None
    if "best_W0" in arrays:
        best = [(arrays.pop(f"best_W{i}"), arrays.pop(f"best_b{i}")) for i in range(n_layers)]
        for i, (W, b) in enumerate(best):  # the shapes of the model's own weights
            check.shape(W, f"best_W{i}", model.net_.weights[i][0].shape)
            check.shape(b, f"best_b{i}", model.net_.weights[i][1].shape)
    extra = getattr(model.net_, "extra_state", dict)()
    best_extra = {k[len("best_extra_"):]: arrays.pop(k) for k in list(arrays)
                  if k.startswith("best_extra_")}
    if best_extra and (best is None or set(best_extra) != set(extra) or any(
            v.shape != extra[k].shape for k, v in best_extra.items())):
        raise ValueError("the best epoch's batch-norm arrays do not fit the model")
    return {"record": record, "weights": model.net_.weights, "history": model.history,
            "extra": extra, "best": best, "best_extra": best_extra,
            "network": {k[len("fit_"):]: arrays.pop(k) for k in list(arrays)
                        if k.startswith("fit_")}}


def _check_model_members(config, members):
    """The rest of what makes the arrays the model the header describes, so that load
    uses every member as it is and invents none: the classes against the task and the
    outputs (a classifier has one class per output, a binary one two for its one output),
    the batch-norm state against the architecture, every array of the header's dtype."""
    task_, n_outputs = config.get("task_"), config.get("n_outputs_")
    if not isinstance(task_, str) or task_ not in _TASKS[1:]:
        raise ValueError(f"header: task_ must be one of {list(_TASKS[1:])}, got {task_!r}")
    classes = members["classes"][1] if "classes" in members else None
    if task_ in ("classification", "binary"):
        n_classes = 2 if task_ == "binary" else n_outputs
        if classes != (n_classes,) or task_ == "binary" and n_outputs != 1:
            raise ValueError(f"a {task_} model with {n_outputs} output(s) needs "
                             f"{n_classes} classes, got classes of shape {classes}")
    elif classes is not None and len(classes) != 1:  # partial_fit(classes=) keeps them
        raise ValueError(f"classes of shape {classes}")
    batch_norm = config.get("batch_norm")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"header: batch_norm must be true or false, got {batch_norm!r}")
    expected = {f"extra_{state}{i}": (size,)
                for i, size in enumerate(_widths(config)[:-1] if batch_norm else ())
                for state in ("gamma", "beta", "mean", "var")}
    if {k: shape for k, (_, shape) in members.items() if k.startswith("extra_")} != expected:
        raise ValueError("the batch-norm state does not match the header's architecture")
    if "training" not in config and any(k.startswith(("fit_", "best_")) for k in members):
        raise ValueError("a fit's arrays without the fit's record")
    standardize = config.get("standardize", False)
    if not isinstance(standardize, bool):
        raise ValueError(f"header: standardize must be true or false, got {standardize!r}")
    scaling = {k: members[k][1] for k in ("input_mean", "input_scale") if k in members}
    n_features = (config["n_features_in_"],)
    if scaling != ({"input_mean": n_features, "input_scale": n_features} if standardize
                   else {}):
        raise ValueError("the input scaling does not match the header's standardize and "
                         "n_features_in_")
    dtype = np.dtype(config["dtype"])
    if any(members[k][0] != dtype for k in members
           if re.fullmatch(r"(best_)?([Wb][0-9]+|extra_.+)|fit_.+|input_(mean|scale)", k)):
        raise ValueError(f"the arrays are not all of the header's dtype {dtype}")


def _widths(config):
    """Each layer's W columns by the header: its units (times maxout's pieces). An
    activation entry that is not a list of names is refused when the model is built."""
    hidden, names = config["hidden_layer_sizes"], config.get("activation")
    if not isinstance(names, list) or len(names) != len(hidden):
        names = [None] * len(hidden)
    return layer_widths([*hidden, config["n_outputs_"]], [*names, None],
                        [config.get("maxout_pieces", 2)] * (len(hidden) + 1))


def _check_model_shapes(config, members, max_bytes):
    """The header's architecture against the arrays' declared shapes, and the workspace
    a model of that architecture allocates (its batch of rows) under max_bytes."""
    def count(key, low=1, high=1 << 31):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
            raise ValueError(f"header: {key} must be an integer in [{low}, {high}), got "
                             f"{value!r}")
        return value

    hidden = config.get("hidden_layer_sizes")
    if not isinstance(hidden, list) or len(hidden) > 64 or not all(
            isinstance(h, int) and not isinstance(h, bool) and 0 < h < 1 << 31 for h in hidden):
        raise ValueError("header: hidden_layer_sizes must be a list of positive integers")
    sizes = [count("n_features_in_"), *hidden, count("n_outputs_")]
    pieces = config.get("maxout_pieces", 2)
    if isinstance(pieces, bool) or not isinstance(pieces, int) or not 2 <= pieces <= 64:
        raise ValueError(f"header: maxout_pieces must be an integer in [2, 64], got {pieces!r}")
    expected = {}
    for i, (n_in, width) in enumerate(zip(sizes[:-1], _widths(config))):
        expected[f"W{i}"], expected[f"b{i}"] = (n_in, width), (width,)
    found = {k: shape for k, (_, shape) in members.items() if re.fullmatch(r"[Wb][0-9]+", k)}
    if found != expected:
        raise ValueError("the weights' shapes do not match the header's architecture")
    dtype = np.dtype(config.get("dtype"))
    batch = count("batch_size", high=1 << 24)
    # X, A and dA per row, and Z where a layer keeps it (at most W's columns)
    workspace = batch * (sizes[0] + 2 * sum(sizes[1:]) + sum(_widths(config))) * dtype.itemsize
    if workspace > max_bytes:
        raise ValueError(f"the model's batch workspace ({workspace} bytes) is over "
                         f"max_bytes={max_bytes}")
