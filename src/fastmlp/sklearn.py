"""scikit-learn drop-ins: ``fastmlp.sklearn.MLPClassifier`` and ``MLPRegressor``.

Replace ``from sklearn.neural_network import MLPClassifier`` by
``from fastmlp.sklearn import MLPClassifier``: same constructor parameters and defaults,
same fitted attributes, same methods (``fit``, ``partial_fit``, ``predict``,
``predict_proba``, ``predict_log_proba``, ``score``), same validation and error messages,
and the same arithmetic, with every epoch trained on a fastmlp NetworkPlan by the training
core (training.py, the loop fastmlp.MLP runs too); this module keeps scikit-learn's
bookkeeping: loss_curve_, tol and n_iter_no_change, the learning-rate schedules, warnings.

scikit-learn (>= 1.7) is an optional dependency: ``pip install "fastmlp[sklearn]"``.
``import fastmlp`` never imports it; this module does.

Many fits (searches, cross-validation) run through joblib's ``n_jobs``; the epoch
releases the GIL, so joblib's threading backend runs fits side by side, each on 1 fastmlp
thread with OpenBLAS held to 1 (fastmlp._threads), and ``parallel_config(backend="dask")``
runs the same search on a Dask cluster. The results are the serial run's bits.

What maps to what
-----------------
- ``activation`` {identity, logistic, tanh, relu} -> the plan's hidden activation
  (``logistic`` is ``"sigmoid"``); the output layer is linear and the output function is
  applied by the loss (training) or by ``predict*`` (inference), as ``out_activation_``
  says: ``"softmax"`` (multiclass: ``softmax_cross_entropy``), ``"logistic"`` (binary and
  multi-label: ``sigmoid_binary_cross_entropy``), ``"identity"`` (regression:
  ``mean_squared_error``).
- ``solver="lbfgs"`` -> training.minimize_lbfgs: SciPy's L-BFGS-B over the plan's flat
  parameters, one compiled loss-and-gradient call per evaluation.
- ``solver="sgd"`` -> optimizer ``"nesterov"`` (``nesterovs_momentum=True``),
  ``"momentum"`` or, with ``momentum=0``, ``"sgd"``; ``learning_rate`` schedules
  (constant, invscaling ``lr = learning_rate_init / (t_ + 1) ** power_t`` after each
  epoch, adaptive ``lr /= 5`` when the stopping rule fires) set the plan's learning rate
  between epochs. ``solver="adam"`` -> optimizer ``"adam"`` (beta_1, beta_2, epsilon).
- ``alpha``: scikit-learn adds ``alpha * W / n_batch`` to each batch's gradient (and
  ``0.5 * alpha * sum(W**2) / n_batch`` to its loss), n_batch the batch's weight sum with
  sample weights: the plan's ``l2 = alpha`` with ``penalty="per_sample"``.
- ``sample_weight``: each batch's loss is the weighted mean of its rows'; the weights follow
  their rows through shuffling and the early-stopping split, and weight the validation
  score.
- Initialisation, shuffling and the early-stopping split draw from ``random_state`` in
  exactly scikit-learn's order (Glorot uniform weights *and* intercepts, factor 2 for
  logistic; ``sklearn.utils.shuffle`` of the sample order each epoch;
  ``train_test_split``), so one seed gives both libraries the same starting point and the
  same batches.

Documented differences (the README's table "Differences from scikit-learn")
-------------------------------------------------------------------------
- Adam: fastmlp's kernel divides by ``sqrt(v_hat) + epsilon``, scikit-learn by
  ``sqrt(v) + epsilon`` after folding the bias corrections into the step size; the two
  differ only in the size of epsilon (a factor ``sqrt(1 - beta_2**t)`` on 1e-8).
- Losses are computed from the logits (no clipping of probabilities at machine epsilon).
- A batch whose sample weights sum to 0 or less, and negative targets with
  ``loss="poisson"``, raise ValueError (scikit-learn divides by the sum / takes a log).
- Multi-output regression: scikit-learn's ``loss_`` averages the squared error over the
  outputs while its gradient (``prediction - y``) does not; the plan trains with that same
  gradient and ``loss_`` (and lbfgs's objective) reports scikit-learn's number.
- Sparse X is accepted (as in scikit-learn) and densified (``fit``: once; ``predict``: in
  chunks). float32 X trains in float32 and float64 in float64, like scikit-learn; a
  float32 model predicts in float32.
- Pickles hold the weights and the optimizer state as arrays; the compiled plan is rebuilt
  on first use, so ``partial_fit`` after unpickling continues exactly.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from fastmlp import optimizers, streaming, training
from fastmlp._registry import MAX_PIECES
from fastmlp.plan import NetworkPlan

try:
    from sklearn.base import (
        BaseEstimator,
        ClassifierMixin,
        RegressorMixin,
        _fit_context,
        is_classifier,
    )
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d, shuffle
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.optimize import _check_optimize_result
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "fastmlp.sklearn needs scikit-learn >= 1.7, an optional dependency of fastmlp: "
        'pip install "fastmlp[sklearn]" (or pip install "scikit-learn>=1.7"). '
        f"The import failed with: {exc}"
    ) from exc

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's names, then fastmlp's (an extension): each hidden layer's plan activation
_HIDDEN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "relu", "sigmoid": "sigmoid", "leaky_relu": "leaky_relu",
                       "elu": "elu", "softplus": "softplus", "selu": "selu", "gelu": "gelu",
                       "gelu_tanh": "gelu_tanh", "swish": "swish", "silu": "swish",
                       "mish": "mish", "softsign": "softsign", "hard_sigmoid": "hard_sigmoid",
                       "maxout": "maxout"}
_PLAN_LOSSES = {"softmax": "softmax_cross_entropy", "logistic": "sigmoid_binary_cross_entropy",
                "identity": "mean_squared_error", "exp": "poisson"}
# MLPRegressor's loss -> the plan's; absolute_error and huber are fastmlp's extensions
_REGRESSION_LOSSES = {"squared_error": "mean_squared_error", "poisson": "poisson",
                      "absolute_error": "absolute_error", "huber": "huber"}
_STOCHASTIC_SOLVERS = ("sgd", "adam")
_PREDICT_CHUNK = 1024  # rows per pass of plan.forward (and per densified sparse chunk)
_GATHER_BYTES = 64 << 20  # at most this much of a shuffled epoch's X is gathered at once


class _BaseMLP(BaseEstimator):
    """The shared machinery; use MLPClassifier or MLPRegressor."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        # a name, or (fastmlp's extension) one name per hidden layer, checked at fit
        "activation": [StrOptions(set(_HIDDEN_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "dtype": [None, StrOptions({"float32", "float64"}), type],
        "maxout_pieces": [Interval(Integral, 2, MAX_PIECES, closed="both")],
    }

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size,
                 learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
                 random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                 early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                 n_iter_no_change, max_fun, n_threads, dropout, dtype, maxout_pieces):
        self.maxout_pieces = maxout_pieces
        self.n_threads = n_threads
        self.dropout = dropout
        self.dtype = dtype
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # -- the plan ----------------------------------------------------------------------

    def _input_dtypes(self):
        """validate_data's dtype: X's float dtype (scikit-learn's rule), or `dtype`."""
        if self.dtype is None:
            return (np.float64, np.float32)
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected None, float32 or float64, got {self.dtype!r}")
        return dtype

    def _make_optimizer(self):
        if self.solver == "adam":
            return optimizers.Adam(learning_rate=self.learning_rate_init, beta1=self.beta_1,
                                   beta2=self.beta_2, eps=self.epsilon)
        if self.momentum == 0:
            return optimizers.SGD(learning_rate=self.learning_rate_init)
        # scikit-learn allows momentum=1 (no decay at all); fastmlp requires < 1
        momentum = min(float(self.momentum), float(np.nextafter(1.0, 0.0)))
        cls = optimizers.Nesterov if self.nesterovs_momentum else optimizers.Momentum
        return cls(learning_rate=self.learning_rate_init, momentum=momentum)

    def _build_plan(self, capacity, state=None):
        """A NetworkPlan holding coefs_/intercepts_ (which then alias its buffers).

        state: the optimizer state of a previous plan (_export_state); None starts a fresh
        optimizer, as scikit-learn does at every fit() and at the first partial_fit().
        """
        names = self._plan_activations(len(self.coefs_) - 1)
        pieces = [self.maxout_pieces if name == "maxout" else None for name in names] + [None]
        sizes = [self.coefs_[0].shape[0]] + [c.shape[1] // (k or 1)
                                             for c, k in zip(self.coefs_, pieces)]
        plan = NetworkPlan(
            sizes,
            names,
            alpha=pieces,
            loss=(_PLAN_LOSSES[self.out_activation_] if is_classifier(self)
                  else _REGRESSION_LOSSES[self.loss]),
            optimizer=self._make_optimizer() if state is None else state["optimizer"],
            batch_size=max(1, int(capacity)),
            dtype=self.coefs_[0].dtype,
            seed=0,
            # scikit-learn's alpha: 0.5 alpha sum W^2 over each batch's weight sum
            l2=self.alpha,
            penalty="per_sample",
            dropout=self.dropout,
            n_threads=self.n_threads,
        )
        plan.set_weights(zip(self.coefs_, self.intercepts_))
        if state is not None:
            _import_state(plan, state)
        self._plan = plan
        self._bind_weights(plan)
        return plan

    def _plan_activations(self, n_hidden):
        """The plan's activation for each hidden layer."""
        names = ([self.activation] * n_hidden if isinstance(self.activation, str)
                 else list(self.activation))
        if len(names) != n_hidden or any(n not in _HIDDEN_ACTIVATIONS for n in names):
            raise ValueError(
                f"activation: expected one of {sorted(_HIDDEN_ACTIVATIONS)} or a list of "
                f"them, one per hidden layer ({n_hidden}), got {self.activation!r}")
        return [_HIDDEN_ACTIVATIONS[n] for n in names]

    def _bind_weights(self, plan):
        self.coefs_ = [W for W, _ in plan.weights]
        self.intercepts_ = [b for _, b in plan.weights]

    def _has_optimizer(self):
        return (getattr(self, "_plan", None) is not None
                or getattr(self, "_plan_state", None) is not None)

    def _get_plan(self, capacity=1):
        """The plan, rebuilt after unpickling, grown for `capacity` rows per batch, and
        re-synchronised if coefs_/intercepts_ were replaced by other arrays."""
        plan = getattr(self, "_plan", None)
        if plan is None:
            state = getattr(self, "_plan_state", None)
            if state is None:  # fitted attributes set by hand: a fresh optimizer
                return self._build_plan(capacity)
            plan = self._build_plan(max(capacity, state["batch_size"]), state)
            self._plan_state = None
            return plan
        if not (_same_arrays(self.coefs_, (W for W, _ in plan.weights))
                and _same_arrays(self.intercepts_, (b for _, b in plan.weights))):
            try:
                plan.set_weights(zip(self.coefs_, self.intercepts_))
            except ValueError:  # another architecture: a plan of its own, fresh optimizer
                return self._build_plan(max(capacity, plan.batch_size))
            self._bind_weights(plan)
        if (plan.batch_size < capacity or plan.dropout != self.dropout or
                plan.activations[:-1] != self._plan_activations(len(self.coefs_) - 1)):
            # grown, or set_params changed the network: the same weights and optimizer
            plan = self._build_plan(max(capacity, plan.batch_size), _export_state(plan))
        return plan

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never edit the live __dict__
        plan = state.pop("_plan", None)
        if plan is not None:
            state["_plan_state"] = _export_state(plan)
        return state

    # -- fitting -----------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden_layer_sizes}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        stream = None
        if not incremental and streaming.is_stream(X, y):
            # X, y: the stream's first block, validated (the architecture, the dtype)
            stream, X, y = self._open_stream(X, y, sample_weight, first_pass)
            sample_weight = None
        else:
            X, y = self._validate_input(X, y, incremental, reset=first_pass)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X)
        if sp.issparse(X):
            X = X.toarray()
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y, sample_weight)
        else:
            self._fit_stochastic(X, y, sample_weight, incremental, stream)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _open_stream(self, X, y, sample_weight, first_pass):
        """A streamed fit's start (see fit): the stream, and its first block validated
        as an in-memory X, y (the classifier's classes found in a pass first)."""
        for name, refused, why in (
                ("solver", self.solver == "lbfgs", "'lbfgs' needs all the rows at each "
                 "evaluation"),
                ("early_stopping", self.early_stopping, "its validation split needs all the "
                 "rows")):
            if refused:
                raise ValueError(f"{name}: not with a streamed X ({why})")
        stream = X if isinstance(X, streaming.Stream) else streaming.Stream(
            X, y, sample_weight=sample_weight)
        X_first, y_first, _ = stream.first_block()
        if is_classifier(self) and (first_pass or not hasattr(self, "classes_")):
            y_first = np.asarray(y_first)
            if y_first.ndim == 2 and y_first.shape[1] > 1:
                raise ValueError("y: a multilabel indicator matrix is not streamed; stream "
                                 "1-D class labels, or fit in memory")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(streaming.scan(stream, labels=True)[0])
            self.classes_ = self._label_binarizer.classes_
        X_first, y_first = self._validate_input(X_first, y_first, incremental=True,
                                                reset=first_pass, block=True)
        return stream, X_first, y_first

    def _block_preparer(self, dtype):
        """prepare(X, y, sample_weight) for training.StreamRunner: a block validated as
        partial_fit validates its X, y, in the plan's form."""
        def prepare(X, y, w):
            X, y = self._validate_input(X, y, incremental=True, reset=False, block=True)
            if w is not None:
                w = np.ascontiguousarray(_check_sample_weight(w, X), dtype=dtype)
            if sp.issparse(X):
                X = X.toarray()
            y = y.reshape((-1, 1)) if y.ndim == 1 else y
            if y.shape[1] != self.n_outputs_:
                raise ValueError(f"y: {y.shape[1]} outputs, but the stream's first block "
                                 f"has {self.n_outputs_}")
            return np.ascontiguousarray(X, dtype=dtype), self._plan_targets(y, dtype), w
        return prepare

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:  # binary and multi-label
            self.out_activation_ = "logistic"
        self.coefs_, self.intercepts_ = [], []
        hidden = self._plan_activations(len(layer_units) - 2)
        # the output layer takes the last hidden layer's factor (scikit-learn: the one name)
        factors = hidden + hidden[-1:] if hidden else [_HIDDEN_ACTIVATIONS[
            self.activation if isinstance(self.activation, str) else "relu"]]
        for layer, (fan_in, fan_out, activation) in enumerate(
                zip(layer_units[:-1], layer_units[1:], factors)):
            # a hidden maxout layer's coefs_ have its pieces' columns
            pieces = self.maxout_pieces if hidden[layer:layer + 1] == ["maxout"] else 1
            coef, intercept = self._init_coef(fan_in, fan_out * pieces, dtype, activation)
            self.coefs_.append(coef)
            self.intercepts_.append(intercept)
        self._plan = None
        self._plan_state = None
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver not in _STOCHASTIC_SOLVERS:
            return  # lbfgs keeps no loss curve, as scikit-learn's
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _init_coef(self, fan_in, fan_out, dtype, activation):
        # scikit-learn's: Glorot uniform for weights and intercepts, factor 2 for logistic
        factor = 2.0 if activation == "sigmoid" else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
        intercept = self._random_state.uniform(-bound, bound, fan_out)
        return coef.astype(dtype, copy=False), intercept.astype(dtype, copy=False)

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than "
                "sample size. It is going to be clipped",
                stacklevel=6,
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _fit_lbfgs(self, X, y, sample_weight):
        """scikit-learn's lbfgs: SciPy's L-BFGS-B on the whole batch (training core)."""
        if self.dropout:
            raise ValueError("dropout: not with solver='lbfgs' (a random mask per "
                             "evaluation is not a function L-BFGS can minimise)")
        plan = self._get_plan(X.shape[0]) if self._has_optimizer() else self._build_plan(
            X.shape[0])
        X = np.ascontiguousarray(X, dtype=plan.dtype)
        T = self._plan_targets(y, plan.dtype)
        w = None if sample_weight is None else np.ascontiguousarray(sample_weight, plan.dtype)
        plan.l2 = self.alpha  # set_params between fits
        result = training.minimize_lbfgs(
            plan, X, T, w, max_iter=self.max_iter, max_fun=self.max_fun, tol=self.tol,
            verbose=self.verbose is True or self.verbose >= 1,
            loss_per_output=not is_classifier(self) and self.loss == "squared_error")
        if result.status == -1:  # Ctrl-C: the last iterate, as the stochastic solvers
            warnings.warn("Training interrupted by user.", stacklevel=5)
            self.n_iter_ = int(result.nit)
        else:
            self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = np.float64(result.fun)

    def _fit_stochastic(self, X, y, sample_weight, incremental, stream=None):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        sw_train = sw_val = None
        if early_stopping and stream is None:
            # don't stratify in multilabel classification (nor, as scikit-learn, multiclass)
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=y if should_stratify else None,
                )
            else:  # the weights split with their rows, as scikit-learn's
                X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state,
                    test_size=self.validation_fraction,
                    stratify=y if should_stratify else None,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, X_val, y_val, sw_train = X, y, None, None, sample_weight

        n_samples = X_train.shape[0] if stream is None else stream.n_samples
        if n_samples is not None:
            batch_size = self._batch_size(n_samples)
        else:  # chunks not read yet: no clipping to the rows
            batch_size = 200 if self.batch_size == "auto" else int(self.batch_size)
        if not incremental or not self._has_optimizer():
            plan = self._build_plan(batch_size)  # a fresh optimizer, as scikit-learn
        else:
            plan = self._get_plan(batch_size)
        # scikit-learn's arithmetic: l2 = alpha / each batch's weight sum; a squared-error
        # regressor's loss_ is a mean over its outputs
        options = dict(gather_bytes=_GATHER_BYTES, alpha=self.alpha,
                       loss_per_output=not is_classifier(self) and self.loss == "squared_error")
        if stream is None:
            X_train = np.ascontiguousarray(X_train, dtype=plan.dtype)
            T_train = self._plan_targets(y_train, plan.dtype)
            if sw_train is not None:
                sw_train = np.ascontiguousarray(sw_train, dtype=plan.dtype)
            runner = training.EpochRunner(plan, X_train, T_train, batch_size,
                                          sample_weight=sw_train, **options)
            sample_idx = np.arange(n_samples, dtype=int)
        else:
            # the streaming shuffle's generator, seeded from random_state
            rng = np.random.default_rng(self._random_state.randint(np.iinfo(np.int32).max)) \
                if self.shuffle else None
            runner = training.StreamRunner(plan, stream, self._block_preparer(plan.dtype),
                                           batch_size, rng=rng, **options)

        def next_order(epoch):  # scikit-learn's stream: each epoch shuffles the last order
            nonlocal sample_idx
            sample_idx = shuffle(sample_idx, random_state=self._random_state)
            return sample_idx

        def after_epoch(epoch, loss):
            self.loss_ = np.float64(loss)
            self.n_iter_ += 1
            self.t_ += runner.rows
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

            self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                plan.learning_rate = (
                    float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t
                )
            if self._no_improvement_count > self.n_iter_no_change:
                if early_stopping:
                    msg = (f"Validation score did not improve more than tol={self.tol:f}"
                           f" for {self.n_iter_no_change} consecutive epochs.")
                else:
                    msg = (f"Training loss did not improve more than tol={self.tol:f}"
                           f" for {self.n_iter_no_change} consecutive epochs.")
                if self._trigger_stopping(plan, msg):
                    return True
                self._no_improvement_count = 0
            return False

        self.n_iter_ = 0
        outcome = training.train(runner, 1 if incremental else self.max_iter, after_epoch,
                                 epoch_order=next_order if self.shuffle and stream is None
                                 else None)
        if outcome.interrupted:
            # 5: past _fit_stochastic, _fit, fit and scikit-learn's _fit_context wrapper
            warnings.warn("Training interrupted by user.", stacklevel=5)
        elif not (incremental or outcome.stopped) and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                "and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=5,
            )

        if early_stopping:  # restore the best weights
            plan.set_weights(zip(self._best_coefs, self._best_intercepts))
            self._bind_weights(plan)

    def _trigger_stopping(self, plan, msg):
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if plan.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        plan.learning_rate = plan.learning_rate / 5.0
        if self.verbose:
            print(f"{msg} Setting learning rate to {plan.learning_rate:f}")
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sample_weight_val):
        if early_stopping:
            val_score = self._score(X_val, y_val, sample_weight=sample_weight_val)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), or a stream
            The input data (sparse input is densified). Streamed one block at a time
            (fastmlp's extension, as :meth:`fastmlp.MLP.fit` streams): a Dask array, a
            memory-mapped array larger than 64 MiB, chunks (a list or iterable of
            ``(X, y)`` or ``(X, y, sample_weight)`` tuples, or a callable returning a
            fresh iterator of them, with ``y=None``), or a
            :class:`fastmlp.streaming.Stream`; each block is validated as ``partial_fit``
            validates its input. The classifier finds its classes in a pass over a
            stream's 1-D y first. Each epoch shuffles the block order and each block's
            rows, drawn from `random_state`. Not with ``solver="lbfgs"`` nor
            ``early_stopping=True``.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), or None
            The target values (class labels in classification, real numbers in
            regression): a Dask array with a Dask X; None for chunks.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights (scikit-learn's: each batch's loss is their weighted mean, and
            alpha is divided by the batch's weight sum).

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                f" optimizers. {self.solver} is not stochastic."
            )
        return True

    # -- prediction --------------------------------------------------------------------

    def _forward_pass_fast(self, X, check_input=True):
        """The output layer's activations (probabilities, or regression values)."""
        if check_input:  # integers cast here, as fit casts them: the plan takes floats
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype=(np.float64, np.float32))
        plan = self._get_plan()
        n = X.shape[0]
        if sp.issparse(X):
            X = X.tocsr()
            out = np.empty((n, plan.layer_sizes[-1]), plan.dtype)
            for start in range(0, n, _PREDICT_CHUNK):
                stop = min(start + _PREDICT_CHUNK, n)
                plan.forward(X[start:stop].toarray(), out=out[start:stop],
                             chunk_rows=_PREDICT_CHUNK)
        else:
            out = plan.forward(X, chunk_rows=_PREDICT_CHUNK)
        if self.out_activation_ == "softmax":
            out -= out.max(axis=1)[:, np.newaxis]
            np.exp(out, out=out)
            out /= out.sum(axis=1)[:, np.newaxis]
        elif self.out_activation_ == "logistic":
            expit(out, out=out)
        elif self.out_activation_ == "exp":
            np.exp(out, out=out)
        return out

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer Perceptron classifier: scikit-learn's, trained by fastmlp.

    A drop-in for ``sklearn.neural_network.MLPClassifier``: the same parameters,
    defaults, attributes and methods, and the same arithmetic (see the user guide's
    "scikit-learn drop-ins" for the few differences). Each epoch is one fastmlp
    ``NetworkPlan.train_epoch`` call. Multiclass (softmax), binary and multilabel
    (logistic outputs) targets.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"} or list, default="relu"
        The hidden layers' activation. Also (fastmlp's extension) ``"sigmoid"`` (the
        same as ``"logistic"``), ``"leaky_relu"``, ``"elu"``, ``"softplus"``, ``"selu"``,
        ``"gelu"``, ``"gelu_tanh"``, ``"swish"`` (``"silu"``), ``"mish"``, ``"softsign"``,
        ``"hard_sigmoid"``, or a list with one name per hidden layer.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"lbfgs"``: SciPy's L-BFGS-B on the whole batch; ``"sgd"``: minibatch gradient
        descent (with momentum, Nesterov's by default); ``"adam"``: Adam.
    alpha : float, default=0.0001
        Strength of the L2 penalty, divided by each batch's size (its weight sum with
        sample weights), as scikit-learn does.
    batch_size : int or "auto", default="auto"
        Rows per minibatch of the stochastic solvers; ``"auto"`` is
        ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The schedule of ``solver="sgd"``: constant; ``invscaling``,
        ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch; ``adaptive``,
        divided by 5 each time the stopping rule fires (training stops once it is 1e-6
        or less).
    learning_rate_init : float, default=0.001
        The initial learning rate of ``"sgd"`` and ``"adam"``.
    power_t : float, default=0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default=200
        The most epochs (stochastic solvers) or iterations (``"lbfgs"``).
    shuffle : bool, default=True
        Shuffle the rows before each epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights and intercepts, the early-stopping split and the
        shuffling, in scikit-learn's order: one seed gives both libraries the same
        start and the same batches.
    tol : float, default=1e-4
        Training stops when the loss (or the validation score, with early stopping) has
        not improved by at least `tol` for `n_iter_no_change` epochs (``"lbfgs"``: its
        gradient tolerance).
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        ``fit`` starts from the current weights instead of new ones.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``, in [0, 1] (1 runs as ``1 - 2**-53``).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for ``solver="sgd"`` with momentum > 0.
    early_stopping : bool, default=False
        Hold out `validation_fraction` of the rows and stop when their score has not
        improved by `tol` for `n_iter_no_change` epochs (stochastic solvers); the best
        weights are kept.
    validation_fraction : float, default=0.1
        The share of the rows held out by early stopping, in [0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates of the first and second moments, in [0, 1).
    epsilon : float, default=1e-8
        Adam's term added to the denominator.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops (stochastic solvers).
    max_fun : int, default=15000
        The most loss evaluations of ``"lbfgs"``.
    n_threads : int or None, default=None
        fastmlp's extension: threads a training step may use (None: the process default,
        :func:`fastmlp.get_num_threads`, or 1 in a joblib worker thread, as in a search
        with ``n_jobs`` under the threading backend). The results are the same for any.
    dropout : float in [0, 1), default=0.0
        fastmlp's extension: inverted dropout on every hidden layer while training
        (stochastic solvers), its mask a hash of the step, layer, row and unit.
    dtype : None, "float32" or "float64", default=None
        fastmlp's extension: train and predict in this dtype (None: X's, as
        scikit-learn).
    maxout_pieces : int, default=2
        fastmlp's extension: the pieces per unit of the ``"maxout"`` layers (2 to 64);
        such a layer's ``coefs_`` entry has that many columns per unit, each unit's
        adjacent.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    loss_ : float
        The loss at the end of training (the loss function's value, penalty included).
    best_loss_ : float or None
        The least loss reached (stochastic solvers); None with early stopping.
    loss_curve_ : list of float
        The loss at the end of each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        The held-out score after each epoch with early stopping, else None.
    best_validation_score_ : float or None
        The best of them, or None without early stopping.
    t_ : int
        Training rows seen so far (the rows of every epoch, summed).
    coefs_ : list of ndarray of shape (n_in, n_out)
        Each layer's weights: the arrays the fastmlp plan trains in place.
    intercepts_ : list of ndarray of shape (n_out,)
        Each layer's biases, also the plan's own arrays.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features,)
        The feature names seen by ``fit``, when X had string column names.
    n_iter_ : int
        Epochs (stochastic solvers) or iterations (``"lbfgs"``) run.
    n_layers_ : int
        Layers, the input and the output included.
    n_outputs_ : int
        Outputs of the network.
    out_activation_ : str
        The output function: ``"softmax"`` (multiclass) or ``"logistic"`` (binary, multilabel).

    See Also
    --------
    MLPRegressor : The regressor.
    fastmlp.MLP : fastmlp's own model API.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, n_threads=None, dropout=0.0, dtype=None, maxout_pieces=2):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            n_threads=n_threads, dropout=dropout, dtype=dtype, maxout_pieces=maxout_pieces,
        )

    def _validate_input(self, X, y, incremental, reset, block=False):
        # block: one block of a stream, whose labels are some of the classes
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=self._input_dtypes(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not block:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def _plan_targets(self, y, dtype):
        if self.out_activation_ == "softmax":  # one-hot rows -> integer labels
            return np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=dtype)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (sparse input is densified 1024 rows at a time).

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The target values (class labels, or a label indicator matrix).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights: each batch's loss is their weighted mean.
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.

        Returns
        -------
        self : object
            The trained model.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """The logarithm of the class probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The log of :meth:`predict_proba`, classes ordered as in ``classes_``.
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Each class's probability, classes ordered as in ``classes_``.
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer Perceptron regressor: scikit-learn's, trained by fastmlp.

    A drop-in for ``sklearn.neural_network.MLPRegressor``: the same parameters,
    defaults, attributes and methods, and the same arithmetic (see the user guide's
    "scikit-learn drop-ins" for the few differences). One or several outputs.

    Parameters
    ----------
    loss : {"squared_error", "poisson", "absolute_error", "huber"}, default="squared_error"
        The first parameter, as in scikit-learn 1.9. ``"poisson"``: the half Poisson
        deviance with the log link (``out_activation_`` is ``"exp"``; y must be >= 0).
        fastmlp's extensions ``"absolute_error"`` and ``"huber"`` (delta 1), robust to
        outliers: their ``loss_`` is the loss summed over the outputs, averaged over the
        rows.
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The width of each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu"} or list, default="relu"
        The hidden layers' activation. Also (fastmlp's extension) ``"sigmoid"`` (the
        same as ``"logistic"``), ``"leaky_relu"``, ``"elu"``, ``"softplus"``, ``"selu"``,
        ``"gelu"``, ``"gelu_tanh"``, ``"swish"`` (``"silu"``), ``"mish"``, ``"softsign"``,
        ``"hard_sigmoid"``, or a list with one name per hidden layer.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"lbfgs"``: SciPy's L-BFGS-B on the whole batch; ``"sgd"``: minibatch gradient
        descent (with momentum, Nesterov's by default); ``"adam"``: Adam.
    alpha : float, default=0.0001
        Strength of the L2 penalty, divided by each batch's size (its weight sum with
        sample weights), as scikit-learn does.
    batch_size : int or "auto", default="auto"
        Rows per minibatch of the stochastic solvers; ``"auto"`` is
        ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The schedule of ``solver="sgd"``: constant; ``invscaling``,
        ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch; ``adaptive``,
        divided by 5 each time the stopping rule fires (training stops once it is 1e-6
        or less).
    learning_rate_init : float, default=0.001
        The initial learning rate of ``"sgd"`` and ``"adam"``.
    power_t : float, default=0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default=200
        The most epochs (stochastic solvers) or iterations (``"lbfgs"``).
    shuffle : bool, default=True
        Shuffle the rows before each epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights and intercepts, the early-stopping split and the
        shuffling, in scikit-learn's order: one seed gives both libraries the same
        start and the same batches.
    tol : float, default=1e-4
        Training stops when the loss (or the validation score, with early stopping) has
        not improved by at least `tol` for `n_iter_no_change` epochs (``"lbfgs"``: its
        gradient tolerance).
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        ``fit`` starts from the current weights instead of new ones.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``, in [0, 1] (1 runs as ``1 - 2**-53``).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for ``solver="sgd"`` with momentum > 0.
    early_stopping : bool, default=False
        Hold out `validation_fraction` of the rows and stop when their score has not
        improved by `tol` for `n_iter_no_change` epochs (stochastic solvers); the best
        weights are kept.
    validation_fraction : float, default=0.1
        The share of the rows held out by early stopping, in [0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates of the first and second moments, in [0, 1).
    epsilon : float, default=1e-8
        Adam's term added to the denominator.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops (stochastic solvers).
    max_fun : int, default=15000
        The most loss evaluations of ``"lbfgs"``.
    n_threads : int or None, default=None
        fastmlp's extension: threads a training step may use (None: the process default,
        :func:`fastmlp.get_num_threads`, or 1 in a joblib worker thread, as in a search
        with ``n_jobs`` under the threading backend). The results are the same for any.
    dropout : float in [0, 1), default=0.0
        fastmlp's extension: inverted dropout on every hidden layer while training
        (stochastic solvers), its mask a hash of the step, layer, row and unit.
    dtype : None, "float32" or "float64", default=None
        fastmlp's extension: train and predict in this dtype (None: X's, as
        scikit-learn).
    maxout_pieces : int, default=2
        fastmlp's extension: the pieces per unit of the ``"maxout"`` layers (2 to 64);
        such a layer's ``coefs_`` entry has that many columns per unit, each unit's
        adjacent.

    Attributes
    ----------
    loss_ : float
        The loss at the end of training (the loss function's value, penalty included).
    best_loss_ : float or None
        The least loss reached (stochastic solvers); None with early stopping.
    loss_curve_ : list of float
        The loss at the end of each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        The held-out score after each epoch with early stopping, else None.
    best_validation_score_ : float or None
        The best of them, or None without early stopping.
    t_ : int
        Training rows seen so far (the rows of every epoch, summed).
    coefs_ : list of ndarray of shape (n_in, n_out)
        Each layer's weights: the arrays the fastmlp plan trains in place.
    intercepts_ : list of ndarray of shape (n_out,)
        Each layer's biases, also the plan's own arrays.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features,)
        The feature names seen by ``fit``, when X had string column names.
    n_iter_ : int
        Epochs (stochastic solvers) or iterations (``"lbfgs"``) run.
    n_layers_ : int
        Layers, the input and the output included.
    n_outputs_ : int
        Outputs of the network.
    out_activation_ : str
        The output function: ``"identity"``, or ``"exp"`` with ``loss="poisson"``.

    See Also
    --------
    MLPClassifier : The classifier.
    fastmlp.MLP : fastmlp's own model API.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions(set(_REGRESSION_LOSSES))],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, n_threads=None, dropout=0.0, dtype=None, maxout_pieces=2):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            n_threads=n_threads, dropout=dropout, dtype=dtype, maxout_pieces=maxout_pieces,
        )

    def _validate_input(self, X, y, incremental, reset, block=False):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=self._input_dtypes(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("MLPRegressor(loss='poisson') needs y >= 0 (counts or rates); "
                             "y has negative values")
        return X, y

    def _plan_targets(self, y, dtype):
        return np.ascontiguousarray(y, dtype=dtype)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (sparse input is densified 1024 rows at a time).

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values (the mean, with ``loss="poisson"``).
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    # scikit-learn's regressor offers partial_fit for every solver (its condition is
    # `est._check_solver`, not a call), and with lbfgs it runs a whole lbfgs fit: kept
    @available_if(lambda est: est._check_solver)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights: each batch's loss is their weighted mean.

        Returns
        -------
        self : object
            The trained model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


# -- plan state (weights live in coefs_/intercepts_; this is the rest) ---------------------


def _same_arrays(mine, plans):
    mine = list(mine)
    plans = list(plans)
    return len(mine) == len(plans) and all(a is b for a, b in zip(mine, plans))


def _export_state(plan):
    """The optimizer's state of a plan, as copies (for pickling and for rebuilding)."""
    return {
        "optimizer": optimizers.get_optimizer(plan.optimizer),
        "batch_size": int(plan.batch_size),
        "arrays": plan.optimizer_state(),
    }


def _import_state(plan, state):
    plan.set_optimizer_state(state["arrays"])
    plan.learning_rate = state["optimizer"].learning_rate
