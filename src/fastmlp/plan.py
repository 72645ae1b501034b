"""NetworkPlan: a network built once, trained one whole step (or epoch) per call.

The plan owns every array the training step touches: weights and biases, their
gradients, the optimizer state, each layer's activations and their gradients for up to
`batch_size` rows, and the gather buffers of a shuffled epoch. The backend's engine
(csrc/kernels/network.inc for "c") works only inside those buffers, so a step allocates
nothing.
"""

from __future__ import annotations

import threading

import numpy as np

from fastmlp import _backend, _threads
from fastmlp import _validation as check
from fastmlp._registry import (
    ACTIVATIONS_NEEDING_Z,
    ACTIVATIONS_WITH_ALPHA,
    HINGE_LOSSES,
    LABEL_LOSSES,
    LOSSES,
    SOFT_TARGET_LOSSES,
)
from fastmlp.optimizers import get_optimizer

# init="auto": He normal for the relu family and the smooth gates that behave like it,
# LeCun normal for selu (what its self-normalising fixed point assumes), Glorot otherwise
_RELU_FAMILY = ("relu", "leaky_relu", "elu", "softplus", "gelu", "gelu_tanh", "swish", "mish")
_INITS = ("auto", "he", "glorot", "course")
_PENALTIES = ("per_step", "per_sample")
# the losses of the network's raw output (logits, scores or log means): a linear output
# layer
_TAKES_LOGITS = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "poisson",
                 *HINGE_LOSSES, *SOFT_TARGET_LOSSES)
# memory for the per-block copies of the gradients that let a step's row blocks run on
# threads (the mid network gets 5 copies in float32, 11 MB; the large one none)
_BLOCK_GRADIENT_BYTES = 16 << 20


def _line_aligned_zeros(blocks, stride, dtype):
    """(blocks, stride) zeros whose rows start on 64-byte cache lines (the engine's stride
    is a whole number of lines): two threads writing two blocks' gradients never share
    one."""
    raw = np.zeros(blocks * stride * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + blocks * stride * dtype.itemsize].view(dtype).reshape(blocks, stride)


class NetworkPlan:
    """A multilayer perceptron with all of its training buffers allocated once.

    One :meth:`train_step` call runs the forward pass, the loss, the backward pass and
    the optimizer update of one batch in the backend (compiled C with the GIL released
    for ``"c"``); one :meth:`train_epoch` call runs a whole epoch of minibatches.
    Nothing is allocated per step: the plan owns every array the step touches.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, hidden_1, ..., n_out]``; at least two entries.
    activations : str or sequence of str, default "relu"
        One name for every hidden layer, or one per hidden layer (the output layer is
        linear), or one per layer including the output (which must be ``"identity"`` for
        the classification losses, the hinge losses and ``"poisson"``: they take the raw
        output). Names:
        ``"identity"``, ``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"``,
        ``"elu"``, ``"softplus"``, ``"selu"``, ``"gelu"``, ``"gelu_tanh"``, ``"swish"``
        (``"silu"``), ``"mish"``, ``"softsign"``, ``"hard_sigmoid"`` and ``"maxout"``
        (hidden layers only): a unit is the largest of its k pieces, k = `alpha`
        (default 2), so the layer's ``W`` has k columns per unit, each unit's pieces
        adjacent (``W[:, j*k:(j+1)*k]``), and its gradient reaches the winning piece
        alone (the first maximum).
    loss : str, default "softmax_cross_entropy"
        ``"softmax_cross_entropy"`` (integer labels), ``"sigmoid_binary_cross_entropy"``
        (targets in [0, 1]), ``"mean_squared_error"``, ``"absolute_error"``, ``"huber"``
        (delta 1), ``"poisson"`` (half Poisson deviance with the log link,
        scikit-learn's: the output is log(mean), counts >= 0), ``"multiclass_hinge"``
        (alias ``"hinge"``) and ``"squared_multiclass_hinge"`` (``"squared_hinge"``): the
        multiclass SVM loss on integer labels, with `margin`;
        ``"categorical_cross_entropy"`` and ``"kl_divergence"``: softmax against (n, n_out)
        target rows of probabilities (one-hot or soft, >= 0); ``"log_cosh"``
        (regression). See :mod:`fastmlp.ops` for each formula.
    optimizer : str or fastmlp.optimizers.Optimizer, default "sgd"
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"adamw"``,
        ``"rmsprop"``, ``"adagrad"``, ``"adadelta"``, ``"adamax"``, ``"nadam"`` (with their
        default hyper-parameters) or an object from :mod:`fastmlp.optimizers` (which
        also carries the gradient clipping, ``clip_value`` and ``clip_norm``).
    batch_size : int, default 256
        The largest batch :meth:`train_step` accepts; the workspace is sized for it.
    dtype : float32 or float64, default float64
        The dtype of the weights, the workspace and every computation.
    seed : int or None, default None
        Seeds the weight initialisation, the epoch shuffling and the dropout masks.
    l2, l1 : float, default 0
        Penalties ``0.5 * l2 * sum(W**2) + l1 * sum(abs(W))`` on the weights (not the
        biases), added per step as in the course (not scaled by the batch size).
    penalty : {"per_step", "per_sample"}, default "per_step"
        ``"per_sample"`` divides `l2` and `l1` by each batch's weight sum (its rows
        without sample weights): scikit-learn's ``alpha``.
    activity_l2, activity_l1 : float, default 0
        Penalties on every hidden layer's output ``A`` (the activation's, before
        dropout), a weighted mean over the rows like the data loss: with row weights
        ``w_i`` (1 without sample weights) and ``W = sum(w_i)``, the loss gains
        ``sum over hidden layers of sum_i w_i * (0.5 * activity_l2 * sum_j A_ij**2 +
        activity_l1 * sum_j abs(A_ij)) / W``, and the gradient reaching ``A_ij`` (after
        the dropout mask, before the activation's derivative) ``w_i * (activity_l2 *
        A_ij + activity_l1 * sign(A_ij)) / W``. Not scaled by `penalty`.
    learning_rate : float, optional
        Overrides the optimizer's learning rate.
    init : {"auto", "he", "glorot", "course"}, default "auto"
        ``"auto"``: He normal for the relu family (relu, leaky_relu, elu, softplus, gelu,
        gelu_tanh, swish, mish), LeCun normal ``randn * sqrt(1 / fan_in)`` for selu and
        maxout,
        Glorot uniform otherwise; ``"course"`` is the course's ``0.01 * randn``. Biases
        start at zero.
    alpha : float or sequence of float, optional
        The leaky_relu slope / elu scale / maxout's pieces per unit (a whole number from
        2 to 64), one per layer or one for all.
    dropout : float in [0, 1), default 0
        Inverted dropout on every hidden layer's output in :meth:`train_step` and
        :meth:`train_epoch` (a dropped unit passes 0, a kept one its value /
        (1 - dropout)); :meth:`forward` never drops. The mask is a hash of the plan's
        seed, the step, the layer, the row and the unit: the same on every backend, for
        any blocking of the step, and again when a step is repeated from the same state.
        The rate is rounded to a multiple of 2**-24 (the hash's resolution).
    n_threads : int or None, default None
        Threads a step may use (None: the process default,
        :func:`fastmlp.get_num_threads`, or 1 in a task joblib runs on a worker thread).
        The C backend splits a small network's batch
        into row blocks that run on the threads and sums their gradients in block order,
        so the results are the same bits for any thread count; the other backends use
        one thread.
    backend : {"c", "numba", "numpy"}, optional
        Default: the active backend (:func:`fastmlp.get_backend`) when the plan is built.
    margin : float, default 1.0
        The hinge losses' margin Delta (>= 0); unread by the other losses.
    max_norm : float, optional
        The max-norm constraint (the dropout paper's, with dropout): after every update,
        each unit's incoming weights (a column of a layer's W, the output layer's too)
        whose L2 norm exceeds max_norm are scaled down to it; biases are free. Settable
        between steps; None: no constraint.

    Attributes
    ----------
    layer_sizes : tuple of int
        ``(n_in, hidden_1, ..., n_out)``.
    activations : list of str
        One activation per layer, the output layer's included.
    loss : str
        The loss's name.
    margin : float
        The hinge losses' margin.
    optimizer : fastmlp.optimizers.Optimizer
        The optimizer and its hyper-parameters (a copy of the one given).
    batch_size : int
        The largest batch a step accepts.
    dtype : numpy.dtype
        float32 or float64.
    init : str
        The initialisation the weights were drawn with.
    seed : int or None
        The seed given.
    step : int
        Optimizer steps taken so far (Adam's ``t``).
    dropout : float
        The dropout rate, rounded to a multiple of 2**-24.
    backend : str
        The backend the plan runs on.

    See Also
    --------
    fastmlp.MLP : A model (fit, predict, save) that trains on a plan.
    fastmlp.ops : The same arithmetic one kernel at a time.

    Notes
    -----
    One plan trains in one thread at a time: a second thread calling :meth:`train_step`
    (or :meth:`train_epoch`, :meth:`loss_and_gradient`) while a step runs gets a
    ``RuntimeError``. :meth:`forward` may run in several threads at once; separate plans
    train in parallel.

    Examples
    --------
    >>> import numpy as np
    >>> import fastmlp
    >>> from fastmlp.datasets import make_spiral
    >>> X, y = make_spiral(100, 3, seed=0)
    >>> plan = fastmlp.NetworkPlan([2, 100, 3], "relu", optimizer="sgd",
    ...                            learning_rate=1.0, l2=1e-3, batch_size=300, seed=0)
    >>> for step in range(1000):
    ...     loss = plan.train_step(X, y)
    >>> accuracy = np.mean(plan.forward(X).argmax(axis=1) == y)
    """

    def __init__(self, layer_sizes, activations="relu", loss="softmax_cross_entropy",
                 optimizer="sgd", batch_size=256, dtype=np.float64, seed=None, *, l2=0.0,
                 l1=0.0, penalty="per_step", learning_rate=None, init="auto", alpha=None,
                 dropout=0.0, n_threads=None, backend=None, margin=1.0, max_norm=None,
                 activity_l2=0.0, activity_l1=0.0):
        sizes = [check.positive_int(s, "layer_sizes") for s in layer_sizes]
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes: expected at least [n_in, n_out], got {sizes}")
        self.layer_sizes = tuple(sizes)
        n_layers = len(sizes) - 1
        self.loss = check.loss_name(loss)
        self._loss_code = LOSSES[self.loss]
        self._labelled = self.loss in LABEL_LOSSES
        self.margin = check.real_scalar(margin, "margin", low=0)
        self.activations = self._activation_names(activations, n_layers)
        self._check_output_activation()
        if "maxout" in self.activations[-1:]:
            raise ValueError("activations: maxout is for hidden layers; the output layer's "
                             "units are the loss's")
        alphas = alpha if isinstance(alpha, (list, tuple)) else [alpha] * n_layers
        if len(alphas) != n_layers:
            raise ValueError(f"alpha: expected {n_layers} values, got {len(alphas)}")
        for name, a in zip(self.activations, alphas):
            if a is not None and name not in ACTIVATIONS_WITH_ALPHA:
                check.real_scalar(a, "alpha")  # unread by this layer, but a NaN is a mistake
        codes = [
            check.activation(name, a if name in ACTIVATIONS_WITH_ALPHA else None)
            for name, a in zip(self.activations, alphas)
        ]
        self._activation_codes = np.array([c for c, _ in codes], dtype=np.int32)
        self._activation_alphas = np.array([a for _, a in codes], dtype=np.float64)
        self.dtype = np.dtype(dtype)
        if self.dtype not in check.FLOAT_DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        self.batch_size = check.positive_int(batch_size, "batch_size")
        self._engine = self._configured_learning_rate = None
        self.l2, self.l1 = l2, l1
        self.max_norm = max_norm
        self.activity_l2, self.activity_l1 = activity_l2, activity_l1
        if penalty not in _PENALTIES:
            raise ValueError(f"penalty: unknown {penalty!r}; expected one of {list(_PENALTIES)}")
        self._penalty = penalty
        extra = {} if learning_rate is None else {"learning_rate": learning_rate}
        self.optimizer = get_optimizer(optimizer, **extra)
        if init not in _INITS:
            raise ValueError(f"init: unknown {init!r}; expected one of {list(_INITS)}")
        self.init = init
        self.seed = seed
        self.step = 0
        rate = check.real_scalar(dropout, "dropout", low=0, high=1, high_open=True)
        # the hash compares 24 bits with rate 2^24: the rate is that multiple of 2^-24
        self.dropout = min(round(rate * 2**24), 2**24 - 1) / 2**24
        self._rng = np.random.default_rng(seed)
        # the dropout hash's key: from the seed's entropy, without drawing from the stream
        # that initialises and shuffles (so dropout leaves both as they were)
        seq = getattr(self._rng.bit_generator, "seed_seq", None) or np.random.SeedSequence()
        self._dropout_key = int(np.random.SeedSequence(
            seq.entropy, spawn_key=(*seq.spawn_key, 0xD0)).generate_state(1)[0])
        self.n_threads = n_threads
        self.backend = _backend.get_backend() if backend is None else backend
        engine_class = _backend.load(self.backend).Network
        self._buffers = self._allocate(engine_class)
        self._initialise_weights()
        self._lock = threading.Lock()
        self._engine = engine_class(self)
        self._configured_learning_rate = self.optimizer.learning_rate

    @staticmethod
    def _activation_names(activations, n_layers):
        names = [activations] * (n_layers - 1) if isinstance(activations, str) else list(
            activations
        )
        if len(names) == n_layers - 1:
            names.append("identity")
        if len(names) != n_layers:
            raise ValueError(
                f"activations: expected {n_layers - 1} (hidden layers) or {n_layers} names, "
                f"got {len(names)}"
            )
        return [check.activation_name(name) for name in names]  # aliases made canonical

    def _check_output_activation(self):
        if self.loss in _TAKES_LOGITS and self.activations[-1] != "identity":
            raise ValueError(
                f"activations: {self.loss} takes logits, so the output layer must be "
                f"'identity', not {self.activations[-1]!r}"
            )

    @property
    def n_threads(self):
        """Threads a step may use (int), or None: the process default at each step.

        Settable between steps; the results are the same bits for any count.
        """
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        if value is not None:
            _threads.resolve(value)  # checks it
        self._n_threads = value

    def _widths(self):
        return layer_widths(self.layer_sizes[1:], self.activations, self._activation_alphas)

    def _allocate(self, engine_class):
        sizes, dt, n = self.layer_sizes, self.dtype, self.batch_size
        shapes = list(zip(sizes[:-1], self._widths()))
        states = self.optimizer.n_states
        start_value = self.optimizer.initial_state  # Adagrad's initial accumulator, or 0

        def like(arrays):
            return [np.full_like(a, start_value) for a in arrays]

        # every parameter in one flat vector, every gradient in another, in scikit-learn's
        # order (each W, then each b): a full-batch optimizer reads and writes them whole
        params = np.zeros(sum((din + 1) * dout for din, dout in shapes), dt)
        grads = np.zeros_like(params)
        W, b, dW, db = [], [], [], []
        start = 0
        for din, dout in shapes:
            W.append(params[start:start + din * dout].reshape(din, dout))
            dW.append(grads[start:start + din * dout].reshape(din, dout))
            start += din * dout
        for _, dout in shapes:
            b.append(params[start:start + dout])
            db.append(grads[start:start + dout])
            start += dout
        n_out = sizes[-1]
        # an engine that runs a batch in row blocks (on threads) keeps each block's
        # gradients apart until it sums them in block order: as many copies as fit
        # _BLOCK_GRADIENT_BYTES (at least 2, else none: one block)
        if len(shapes) > getattr(engine_class, "max_layers", len(shapes)):
            raise ValueError(f"layer_sizes: at most {engine_class.max_layers} layers, got "
                             f"{len(shapes)}")
        per_copy = sum((din + 1) * dout for din, dout in shapes) * dt.itemsize
        blocks = min(getattr(engine_class, "max_blocks", 0), _BLOCK_GRADIENT_BYTES // per_copy)
        blocks = blocks if blocks >= 2 else 0
        stride = getattr(engine_class, "block_stride", None)
        block_buffers = {
            "block_dW": [_line_aligned_zeros(blocks, stride(din * dout), dt)
                         for din, dout in shapes],
            "block_db": [_line_aligned_zeros(blocks, stride(dout), dt) for _, dout in shapes],
        } if blocks else {}
        return {**block_buffers,
            "params": params,
            "grads": grads,
            "W": W,
            "b": b,
            "dW": dW,
            "db": db,
            "state1_W": like(W) if states >= 1 else [None] * len(W),
            "state1_b": like(b) if states >= 1 else [None] * len(W),
            "state2_W": like(W) if states >= 2 else [None] * len(W),
            "state2_b": like(b) if states >= 2 else [None] * len(W),
            "A": [np.zeros((n, units), dt) for units in sizes[1:]],
            "dA": [np.zeros((n, units), dt) for units in sizes[1:]],
            # the pre-activations of the layers whose derivative needs them (gelu, swish,
            # maxout: as wide as W)
            "Z": [np.zeros((n, s[1]), dt) if name in ACTIVATIONS_NEEDING_Z else None
                  for name, s in zip(self.activations, shapes)],
            # the dropped outputs of the hidden layers (what the next layer reads)
            "D": [np.zeros((n, units), dt) if self.dropout and i < len(shapes) - 1 else None
                  for i, units in enumerate(sizes[1:])],
            "X_batch": np.zeros((n, sizes[0]), dt),
            "w_batch": np.zeros(n, dt),
            "y_batch": np.zeros(n, np.int64) if self._labelled else np.zeros((n, n_out), dt),
        }

    def _initialise_weights(self):
        rng = self._rng
        for W, act in zip(self._buffers["W"], self.activations):
            fan_in, fan_out = W.shape
            if self.init == "course":
                W[...] = 0.01 * rng.standard_normal(W.shape)
            elif self.init == "he" or (self.init == "auto" and act in _RELU_FAMILY):
                W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / fan_in)
            elif self.init == "auto" and act in ("selu", "maxout"):
                # LeCun: keeps the second moment (a max of pieces keeps E[z^2] as well)
                W[...] = rng.standard_normal(W.shape) * np.sqrt(1.0 / fan_in)
            else:
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                W[...] = rng.uniform(-bound, bound, W.shape)

    # -- state -------------------------------------------------------------------------

    @property
    def weights(self):
        """The ``[(W, b), ...]`` of each layer: the arrays the plan trains, in place.

        ``W`` has shape (n_in, n_out) and ``b`` (n_out,) (a maxout layer of k pieces:
        (n_in, k * n_out) and (k * n_out,)); both are views into
        :attr:`parameters`. Edit them in place to change the plan's weights, or use
        :meth:`set_weights`.
        """
        return list(zip(self._buffers["W"], self._buffers["b"]))

    def set_weights(self, weights):
        """Copy weights and biases into the plan.

        Parameters
        ----------
        weights : iterable of (W, b)
            One pair per layer, of the shapes of :attr:`weights` (``b`` may also be
            (1, n_out)); converted to the plan's dtype.

        Raises
        ------
        ValueError
            For another number of layers or another shape.
        """
        weights = list(weights)
        if len(weights) != len(self._buffers["W"]):
            raise ValueError(f"weights: expected {len(self._buffers['W'])} (W, b) pairs")
        for i, ((W, b), (W_new, b_new)) in enumerate(zip(self.weights, weights)):
            W_new = check.float_array(W_new, f"weights[{i}][0]")
            b_new = check.float_array(b_new, f"weights[{i}][1]").reshape(-1)
            check.shape(W_new, f"weights[{i}][0]", W.shape)
            check.shape(b_new, f"weights[{i}][1]", b.shape)
            W[...] = W_new
            b[...] = b_new

    @property
    def learning_rate(self):
        """The optimizer's learning rate (float >= 0); set it between steps for a schedule."""
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.optimizer.learning_rate = check.real_scalar(value, "learning_rate", low=0)
        if self.optimizer.learning_rate != self._configured_learning_rate:
            self._reconfigure()  # only then: a fit sets it every epoch

    @property
    def l2(self):
        """Strength of the L2 penalty ``0.5 * l2 * sum(W**2)`` (settable between steps)."""
        return self._l2

    @l2.setter
    def l2(self, value):
        self._l2 = check.real_scalar(value, "l2", low=0)
        self._reconfigure()

    @property
    def l1(self):
        """Strength of the L1 penalty ``l1 * sum(abs(W))`` (settable between steps)."""
        return self._l1

    @l1.setter
    def l1(self, value):
        self._l1 = check.real_scalar(value, "l1", low=0)
        self._reconfigure()

    @property
    def max_norm(self):
        """The largest L2 norm of a unit's incoming weights after each update (float or
        None: unconstrained; settable between steps)."""
        return self._max_norm

    @max_norm.setter
    def max_norm(self, value):
        self._max_norm = None if value is None else check.real_scalar(
            value, "max_norm", low=0, low_open=True)
        self._reconfigure()

    @property
    def activity_l2(self):
        """Strength of the L2 activity penalty ``0.5 * activity_l2 * sum(A**2)`` on the
        hidden layers' outputs, per row (settable between steps)."""
        return self._activity_l2

    @activity_l2.setter
    def activity_l2(self, value):
        self._activity_l2 = check.real_scalar(value, "activity_l2", low=0)
        self._reconfigure()

    @property
    def activity_l1(self):
        """Strength of the L1 activity penalty ``activity_l1 * sum(abs(A))`` on the
        hidden layers' outputs, per row (settable between steps)."""
        return self._activity_l1

    @activity_l1.setter
    def activity_l1(self, value):
        self._activity_l1 = check.real_scalar(value, "activity_l1", low=0)
        self._reconfigure()

    def _reconfigure(self):
        if self._engine is not None:
            self._engine.configure(self)
            self._configured_learning_rate = self.optimizer.learning_rate

    _STATE_KEYS = ("state1_W", "state1_b", "state2_W", "state2_b")

    def optimizer_state(self):
        """A copy of the optimizer's state.

        Returns
        -------
        dict
            ``{"step": t, "state1_W": [...], "state1_b": [...], "state2_W": [...],
            "state2_b": [...]}`` with one array per layer in each list: state1 is the
            velocity (momentum, nesterov), Adam's, AdamW's, Adamax's or Nadam's m,
            RMSprop's mean square, Adagrad's sum of squares or Adadelta's mean square of
            the gradients; state2 Adam's, AdamW's or Nadam's v, Adamax's infinity norm or
            Adadelta's mean square of the steps (None where the optimizer keeps none).

        See Also
        --------
        set_optimizer_state : Restore it.
        """
        state = {"step": int(self.step)}
        for key in self._STATE_KEYS:
            state[key] = [None if a is None else a.copy() for a in self._buffers[key]]
        return state

    def set_optimizer_state(self, state):
        """Restore what :meth:`optimizer_state` returned.

        Parameters
        ----------
        state : dict
            From :meth:`optimizer_state` of a plan with the same architecture and
            optimizer.

        Raises
        ------
        ValueError
            When the arrays do not fit this plan's optimizer or shapes.
        """
        for key in self._STATE_KEYS:
            for i, (dst, src) in enumerate(zip(self._buffers[key], state[key])):
                if (dst is None) != (src is None):
                    raise ValueError(f"state: {key}[{i}] does not fit this plan's optimizer")
                if dst is not None:
                    src = check.float_array(src, f"state[{key!r}][{i}]")
                    check.shape(src, f"state[{key!r}][{i}]", dst.shape)
                    dst[...] = src
        self.step = check.positive_int(state["step"], "state['step']", low=0, high=1 << 62)
        self._reconfigure()

    def training_state(self):
        """What a resumed fit needs beyond the weights, to train on bit for bit.

        Returns
        -------
        scalars : dict
            ``{"step", "dropout_key", "rng"}``: JSON-serialisable values (the step, the
            dropout hash's key, the shuffling generator's state).
        arrays : dict of str to ndarray
            The optimizer's state arrays by name. They are the plan's own: copy them to
            keep them past the next step.

        See Also
        --------
        set_training_state : Restore it.
        """
        scalars = {"step": int(self.step), "dropout_key": int(self._dropout_key),
                   "rng": self._rng.bit_generator.state}
        arrays = {f"{key}_{i}": a for key in self._STATE_KEYS
                  for i, a in enumerate(self._buffers[key]) if a is not None}
        return scalars, arrays

    def set_training_state(self, scalars, arrays):
        """Restore what :meth:`training_state` returned.

        Parameters
        ----------
        scalars : dict
            The first value :meth:`training_state` returned.
        arrays : dict of str to ndarray
            The second, for a plan with the same architecture and optimizer.

        Raises
        ------
        ValueError
            For anything else (other names, shapes, a malformed generator state); the plan
            is then unchanged.
        """
        if set(scalars) != {"step", "dropout_key", "rng"}:
            raise ValueError(f"state: expected step, dropout_key and rng, got {sorted(scalars)}")
        state = {"step": scalars["step"]}
        for key in self._STATE_KEYS:
            state[key] = [arrays.get(f"{key}_{i}") for i in range(len(self._buffers[key]))]
        expected = {f"{key}_{i}" for key in self._STATE_KEYS
                    for i, a in enumerate(self._buffers[key]) if a is not None}
        if set(arrays) != expected:
            raise ValueError(f"state: optimizer arrays {sorted(arrays)} do not fit this "
                             f"plan's optimizer ({sorted(expected)})")
        key = scalars.get("dropout_key")
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 1 << 32:
            raise ValueError(f"state: dropout_key must be a 32-bit integer, got {key!r}")
        _set_generator_state(self._rng, scalars.get("rng"))
        self._dropout_key = key
        self.set_optimizer_state(state)  # reconfigures the engine: the key too

    @property
    def workspace_bytes(self):
        """Bytes of every array the plan owns (weights, gradients, state, workspace), int."""
        total = 0
        for key, value in self._buffers.items():
            if key in ("W", "b", "dW", "db"):
                continue  # views of "params" and "grads"
            for arr in value if isinstance(value, list) else [value]:
                total += 0 if arr is None else arr.nbytes
        return total

    @property
    def n_classes(self):
        """The width of the output layer, ``layer_sizes[-1]`` (int)."""
        return self.layer_sizes[-1]

    def __repr__(self):
        return (
            f"NetworkPlan({list(self.layer_sizes)}, activations={self.activations}, "
            f"loss={self.loss!r}, optimizer={self.optimizer.name!r}, "
            f"batch_size={self.batch_size}, dtype={self.dtype.name}, "
            f"{f'dropout={self.dropout}, ' if self.dropout else ''}backend={self.backend!r})"
        )

    # -- training ----------------------------------------------------------------------

    def _inputs(self, X, name="X"):
        X = np.asarray(X)
        if X.dtype != self.dtype:
            # as the kernels: floats only, integers are not cast silently (the models cast)
            if X.dtype.kind != "f":
                raise TypeError(f"{name}: expected a float array, got dtype {X.dtype}"
                                + ("; convert it with .astype(np.float32)"
                                   if X.dtype.kind in "biu" else ""))
            X = X.astype(self.dtype)  # a documented copy: pass the plan's dtype to avoid it
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(
                f"{name}: expected shape (n, {self.layer_sizes[0]}), got {X.shape}"
            )
        return check.aligned(np.ascontiguousarray(X))

    def _targets(self, y, rows, check_range=True):
        if self._labelled:
            return check.labels(y, "y", rows, self.layer_sizes[-1], check_range)
        Y = np.asarray(y)
        if Y.dtype.kind not in "fiub":
            raise TypeError(f"y: expected numeric targets, got dtype {Y.dtype}")
        Y = check.aligned(np.ascontiguousarray(Y, dtype=self.dtype))
        if Y.ndim == 1 and self.layer_sizes[-1] == 1:
            Y = Y.reshape(-1, 1)
        check.shape(Y, "y", (rows, self.layer_sizes[-1]))
        if self.loss == "poisson" and (Y < 0).any():  # (a NaN propagates, as elsewhere)
            raise ValueError("y: the poisson loss needs counts >= 0, found a negative one")
        if self.loss in SOFT_TARGET_LOSSES and (Y < 0).any():
            raise ValueError(f"y: the {self.loss} loss needs target rows of probabilities "
                             "(>= 0), found a negative one")
        return Y

    def _enter(self):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                "this NetworkPlan is training in another thread; use one plan per thread"
            )
        try:
            threads, self._holds_blas = _threads.call_threads(self._n_threads)
        except BaseException:
            self._lock.release()
            raise
        if self._holds_blas:
            _threads.hold_blas(True)
        set_threads = getattr(self._engine, "set_threads", None)
        if set_threads is not None:
            set_threads(threads)

    def _leave(self):
        if self._holds_blas:
            _threads.hold_blas(False)
        self._lock.release()

    def train_step(self, X, y, sample_weight=None):
        """Forward, loss, backward and update on one batch (at most `batch_size` rows).

        Parameters
        ----------
        X : ndarray of shape (n, n_in)
            float32 or float64; converted to the plan's dtype if it differs (a
            copy).
        y : ndarray of shape (n,) or (n, n_out)
            Integer labels in [0, n_out) for softmax cross-entropy, (n, n_out) targets
            for the other losses ((n,) when n_out is 1).
        sample_weight : ndarray of shape (n,), optional
            Per-row weights (finite; their sum positive): the loss is the weighted mean
            ``sum(w_i * loss_i) / sum(w_i)``, and so is its gradient.

        Returns
        -------
        loss : float
            The batch's mean loss plus the penalties, before the update.
        """
        return self._step(X, y, sample_weight, update=True)

    def loss_and_gradient(self, X, y, sample_weight=None):
        """The loss of one batch and its gradient, without an update.

        The loss (penalties included) and its gradient with respect to
        :attr:`parameters`, at the current parameters: what a full-batch optimizer such
        as L-BFGS evaluates. One backend call; nothing is allocated.

        Parameters
        ----------
        X : ndarray of shape (n, n_in)
            At most `batch_size` rows.
        y : ndarray of shape (n,) or (n, n_out)
            As for :meth:`train_step`.
        sample_weight : ndarray of shape (n,), optional
            As for :meth:`train_step`.

        Returns
        -------
        loss : float
            The batch's mean loss plus the penalties.
        gradient : ndarray
            The plan's flat gradient buffer (the layout of :attr:`parameters`),
            overwritten by the next call: copy it to keep it.
        """
        return self._step(X, y, sample_weight, update=False), self._buffers["grads"]

    def apply_gradient(self, gradient):
        """One optimizer update of :attr:`parameters` with a given gradient.

        The update a :meth:`train_step` makes after its backward pass, from `gradient`
        instead of a batch's: clipping by value and by global norm, the optimizer (its
        state and step advance by one), AdamW's decay of the weights, then `max_norm`.
        For a gradient put together elsewhere, such as the mean of several
        :meth:`loss_and_gradient` results (synchronous data-parallel training). The
        update is the same arithmetic as the step's, bit for bit, except that global-norm
        clipping may sum the norm in another order than the engine does.

        Parameters
        ----------
        gradient : ndarray of shape (parameters.size,)
            In the layout of :attr:`parameters`, penalties included (as
            :meth:`loss_and_gradient` returns it); float32 or float64, converted to the
            plan's dtype.

        Returns
        -------
        None
            The plan's parameters, optimizer state and step are updated in place.
        """
        from fastmlp.backends._python_network import update_parameters

        gradient = check.float_array(gradient, "gradient")
        check.shape(gradient, "gradient", self.parameters.shape)
        opt = self.optimizer
        self._enter()
        try:
            np.copyto(self._buffers["grads"], gradient)  # the dW, db that the update reads
            update_parameters(_backend.load(self.backend), self._buffers,
                              (opt.code, opt.learning_rate, opt.momentum, opt.beta1, opt.beta2,
                               opt.eps, opt.weight_decay, opt.rho, opt.momentum_decay,
                               opt.clip_value or 0.0),
                              opt.clip_norm, self.max_norm, self.step + 1)
            self.step += 1
            self._reconfigure()  # the engine counts steps too (Adam's bias correction)
        finally:
            self._leave()

    @property
    def parameters(self):
        """Every weight and bias in one flat array (ndarray).

        In scikit-learn's order: each layer's W row by row, then each layer's b.
        :attr:`weights` are views into it, so writing it (``plan.parameters[:] = x``)
        sets them all.
        """
        return self._buffers["params"]

    @property
    def penalty(self):
        """How `l2` and `l1` scale: ``"per_step"`` or ``"per_sample"`` (str).

        ``"per_step"``: as given, every step; ``"per_sample"``: divided by each batch's
        weight sum (scikit-learn's ``alpha``).
        """
        return self._penalty

    def _step(self, X, y, sample_weight, update):
        X = self._inputs(X)
        rows = X.shape[0]
        if not 1 <= rows <= self.batch_size:
            raise ValueError(f"X: expected 1 to batch_size={self.batch_size} rows, got {rows}")
        y = self._targets(y, rows, check_range=not self._engine.checks_labels)
        w = check.sample_weight(sample_weight, rows, self.dtype)
        self._enter()
        try:
            if update:
                loss = self._engine.train_step(X, y, w)
            else:
                loss = self._engine.loss_gradient(X, y, w)
        except ValueError:
            self._targets(y, rows)  # the detailed message, when the labels are the problem
            self._check_batch_weights(w, None, rows, rows)
            raise
        finally:
            self.step = self._engine.step
            self._leave()
        return loss

    @staticmethod
    def _check_batch_weights(w, order, n_visit, batch_size):
        """The engine refuses a batch whose weights sum to 0 or less: say which."""
        if w is None:
            return
        visited = (w if order is None else w[order]).astype(np.float64)  # as the engine sums
        sums = np.add.reduceat(visited, np.arange(0, n_visit, batch_size))
        bad = np.flatnonzero(sums <= 0)
        if len(bad):
            raise ValueError(
                f"sample_weight: the weights of batch {int(bad[0])} sum to {sums[bad[0]]} "
                "(a batch's weights must sum to more than 0)")

    def train_epoch(self, X, y, *, batch_size=None, shuffle=True, batch_losses=None,
                    rows=None, sample_weight=None, metric_out=None):
        """One pass over (X, y) in minibatches, all of it in one backend call.

        Parameters
        ----------
        X : ndarray of shape (n, n_in)
            Any number of rows, float32 or float64; converted to the plan's dtype if
            it differs (a copy).
        y : ndarray of shape (n,) or (n, n_out)
            As for :meth:`train_step`.
        batch_size : int, optional
            Rows per step; default and maximum: the plan's `batch_size`.
        shuffle : bool, default True
            Visit the rows in a fresh random order (the plan's seeded generator).
        batch_losses : ndarray of float64, optional
            Receives each batch's loss (length ``ceil(n_visited / batch_size)``).
        rows : 1-D array of int, optional
            The rows of X and y to visit, in this order (an own shuffle, a subset; repeats
            allowed), instead of all of them: rows are gathered per batch, X is not
            copied. Overrides `shuffle`.
        sample_weight : ndarray of shape (n,), optional
            Per-row weights of X's rows (see :meth:`train_step`); each batch's must sum to
            more than 0.
        metric_out : ndarray of float64, shape (n_out,), optional
            Receives the epoch's running training metric, measured on each batch's
            outputs in its training forward pass (before its update, dropout as trained),
            at no extra pass: for ``softmax_cross_entropy`` the visited rows of each class
            whose largest output is their label's (their sum over the rows is the
            accuracy); for ``sigmoid_bce`` each output's rows with ``(z > 0) == (y >
            0.5)``; for the regression losses each output's sum of squared errors of the
            prediction (``exp(z)`` for ``poisson``). Sample weights do not enter it.

        Returns
        -------
        loss : float
            The mean over the rows visited of the batch losses.
        """
        X = self._inputs(X)
        n = X.shape[0]
        if n == 0:
            raise ValueError("X: expected at least one row")
        # The label range is checked here even when the engine checks it too: the engine
        # would find a bad label only at its batch, after training the batches before it.
        y = self._targets(y, n)
        w = check.sample_weight(sample_weight, n, self.dtype)
        order = None if rows is None else check.row_indices(rows, "rows", n)
        n_visit = n if order is None else len(order)
        batch_size = self.batch_size if batch_size is None else check.positive_int(
            batch_size, "batch_size"
        )
        if batch_size > self.batch_size:
            raise ValueError(
                f"batch_size: at most the plan's batch_size={self.batch_size}, got {batch_size}"
            )
        if batch_losses is not None:
            n_batches = -(-n_visit // batch_size)
            check.writable_array(batch_losses, "batch_losses", (n_batches,), np.float64)
        if metric_out is not None:
            check.writable_array(metric_out, "metric_out", (self.layer_sizes[-1],), np.float64)
        if order is None and shuffle:
            # drawn only once every argument is accepted: a refused call leaves the plan's
            # random stream where it was
            order = self._rng.permutation(n).astype(np.int64)
        self._enter()
        try:
            loss = self._engine.train_epoch(X, y, w, order, batch_size, batch_losses,
                                            metric_out)
        except ValueError:
            self._targets(y, n)
            self._check_batch_weights(w, order, n_visit, batch_size)
            raise
        finally:
            self.step = self._engine.step
            self._leave()
        return loss

    def forward(self, X, *, out=None, chunk_rows=None):
        """The network's output for X, without dropout.

        Logits for the classification losses, log(mean) for poisson, the prediction for
        the other regression losses. Large inputs run in groups of chunks on the plan's
        threads.

        Parameters
        ----------
        X : ndarray of shape (n, n_in)
            Any number of rows, float32 or float64; converted to the plan's dtype if
            it differs (a copy).
        out : ndarray of shape (n, n_out), optional
            Where to write the output (C-contiguous, the plan's dtype).
        chunk_rows : int, optional
            Rows per pass through the network (default: the plan's `batch_size`).

        Returns
        -------
        out : ndarray of shape (n, n_out)
            Of the plan's dtype.
        """
        X = self._inputs(X)
        n = X.shape[0]
        out = check.out_array(out, "out", (n, self.layer_sizes[-1]), self.dtype)
        if n == 0:
            return out
        chunk = min(n, self.batch_size if chunk_rows is None else check.positive_int(
            chunk_rows, "chunk_rows"))
        width = max(self._widths()[:-1], default=1)  # maxout: its pieces, before the max
        # a slot of work buffers per thread that may run a group of chunks
        threads, holds_blas = _threads.call_threads(self._n_threads)
        slots = min(threads, -(-n // chunk))
        work_a = np.empty(slots * chunk * width, self.dtype)
        work_b = np.empty(slots * chunk * width, self.dtype)
        if holds_blas:
            _threads.hold_blas(True)
        try:
            self._engine.forward(X, out, work_a, work_b, chunk)
        finally:
            if holds_blas:
                _threads.hold_blas(False)
        return out


def layer_widths(units, activations, alphas):
    """Each layer's W columns: its units, times its pieces (alpha) for maxout."""
    return [n * int(alpha) if name == "maxout" else n
            for n, name, alpha in zip(units, activations, alphas)]


def _set_generator_state(rng, state):
    """rng continues from state, a bit_generator.state of its kind; ValueError otherwise."""
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != \
                type(rng.bit_generator).__name__:
            raise ValueError(f"not a {type(rng.bit_generator).__name__} state")
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"state: the random generator's state is invalid ({exc})") from exc
