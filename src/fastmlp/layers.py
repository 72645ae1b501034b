"""LayeredNetwork: the training path for dropout and batch normalisation.

The fused step of NetworkPlan has neither, so a model that asks for them trains here:
the same kernels (fastmlp.ops, on the active backend), called one layer at a time, with
the dropout mask and the batch statistics in NumPy between them. Same interface as
NetworkPlan for what fastmlp.MLP uses.

Per hidden layer: Z = X W + b; with batch norm Z <- gamma (Z - mean) / sqrt(var + eps) + beta
(batch statistics in training, running averages at inference); A = f(Z); with dropout
A <- A * mask / (1 - p) in training (inverted dropout; identity at inference). Activity
penalties on A (before dropout) add mean_i (activity_l2/2 sum_j A_ij^2 + activity_l1 sum_j
|A_ij|) to the loss, and (activity_l2 A + activity_l1 sign(A)) / n to the gradient reaching A
(after the mask, before the activation's derivative).
"""

from __future__ import annotations

import numpy as np

from fastmlp import _backend, ops
from fastmlp import _validation as check
from fastmlp._registry import ACTIVATIONS_WITH_ALPHA, HINGE_LOSSES
from fastmlp.backends._python_network import max_norm, output_metric
from fastmlp.plan import NetworkPlan, _set_generator_state

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9  # running = momentum * running + (1 - momentum) * batch statistic


class LayeredNetwork:
    """A network trained layer by layer through fastmlp.ops: dropout and batch norm.

    What fastmlp.MLP builds for ``batch_norm=True``; it offers the part of
    NetworkPlan's interface that MLP uses (weights, learning_rate, train_step,
    train_epoch, forward, the training state) plus the batch-norm state.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, hidden_1, ..., n_out]``.
    activations : str or sequence of str
        The hidden layers' activations, as for NetworkPlan.
    dropout : float, default 0
        Inverted dropout on every hidden layer's output while training (the mask drawn
        from the network's generator).
    batch_norm : bool, default False
        Batch normalisation before each hidden activation.
    loss, optimizer, batch_size, dtype, seed, l2, l1, init, backend, margin, alpha
        As for NetworkPlan (every loss: each is the fastmlp.ops function of its name).
    activity_l2, activity_l1 : float, default 0
        As for NetworkPlan: ``mean_i (0.5 * activity_l2 * sum_j A_ij**2 + activity_l1 *
        sum_j abs(A_ij))`` over every hidden layer's output ``A`` (before dropout).
    """

    def __init__(self, layer_sizes, activations, *, dropout=0.0, batch_norm=False, loss,
                 optimizer, batch_size, dtype, seed, l2=0.0, l1=0.0, init="auto",
                 backend=None, margin=1.0, max_norm=None, activity_l2=0.0, activity_l1=0.0,
                 alpha=None):
        # The plan validates the architecture and initialises the weights the same way.
        self._plan = NetworkPlan(layer_sizes, activations, loss=loss, optimizer=optimizer,
                                 batch_size=batch_size, dtype=dtype, seed=seed, l2=l2, l1=l1,
                                 init=init, backend=backend, margin=margin,
                                 max_norm=max_norm, activity_l2=activity_l2,
                                 activity_l1=activity_l1, alpha=alpha)
        self.backend = self._plan.backend
        self.activations = self._plan.activations
        self.loss, self.batch_size, self.dtype = loss, batch_size, np.dtype(dtype)
        self.optimizer, self.l2, self.l1 = self._plan.optimizer, l2, l1
        # validated by the plan
        self.activity_l2, self.activity_l1 = self._plan.activity_l2, self._plan.activity_l1
        self.dropout, self.batch_norm = dropout, batch_norm
        self._alphas = list(self._plan._activation_alphas)
        self._rng = np.random.default_rng(seed)
        # batch norm's per column of each hidden W (maxout: per piece, before the max)
        widths = [W.shape[1] for W, _ in self.weights[:-1]]
        self.gamma = [np.ones(w, self.dtype) for w in widths]
        self.beta = [np.zeros(w, self.dtype) for w in widths]
        self.running_mean = [np.zeros(w, self.dtype) for w in widths]
        self.running_var = [np.ones(w, self.dtype) for w in widths]
        params = [p for W, b in self.weights for p in (W, b)] + self.gamma + self.beta
        n_states, start = self.optimizer.n_states, self.optimizer.initial_state
        self._states = [[np.full_like(p, start) for _ in range(n_states)] for p in params]
        self.step = 0

    @property
    def weights(self):
        """[(W, b), ...] per layer, trained in place (as NetworkPlan.weights)."""
        return self._plan.weights

    def set_weights(self, weights):
        """Copy [(W, b), ...] into the network (as NetworkPlan.set_weights)."""
        self._plan.set_weights(weights)

    @property
    def learning_rate(self):
        """The optimizer's learning rate (settable between steps)."""
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.optimizer.learning_rate = check.real_scalar(value, "learning_rate", low=0)

    def extra_state(self):
        """Batch-norm parameters and statistics, for saving."""
        if not self.batch_norm:
            return {}
        state = {}
        for i in range(len(self.gamma)):
            state[f"gamma{i}"], state[f"beta{i}"] = self.gamma[i], self.beta[i]
            state[f"mean{i}"], state[f"var{i}"] = self.running_mean[i], self.running_var[i]
        return state

    def set_extra_state(self, state):
        """Restore what extra_state() returned; ValueError for other names or shapes (a
        model file may come from a stranger, and a broadcast would pass silently)."""
        _copy_checked(state, self.extra_state(), "batch-norm arrays")

    def training_state(self):
        """As NetworkPlan.training_state: ({"step", "rng"}, {name: optimizer array}); the
        dropout masks come from the generator, so its state is the masks to come."""
        scalars = {"step": int(self.step), "rng": self._rng.bit_generator.state}
        arrays = {f"state{k}_{j}": a for j, states in enumerate(self._states)
                  for k, a in enumerate(states)}
        return scalars, arrays

    def set_training_state(self, scalars, arrays):
        """Restore what training_state() returned; ValueError for other names or shapes."""
        if set(scalars) != {"step", "rng"}:
            raise ValueError(f"state: expected step and rng, got {sorted(scalars)}")
        step = check.positive_int(scalars["step"], "state['step']", low=0, high=1 << 62)
        _set_generator_state(self._rng, scalars["rng"])
        _copy_checked(arrays, {f"state{k}_{j}": a for j, states in enumerate(self._states)
                               for k, a in enumerate(states)}, "optimizer arrays")
        self.step = step

    def _alpha(self, layer):
        name = self.activations[layer]
        return self._alphas[layer] if name in ACTIVATIONS_WITH_ALPHA else None

    def _forward(self, X, training):
        """Outputs of every layer and what backward needs of each."""
        cache, A = [], X
        n_layers = len(self.weights)
        for layer, (W, b) in enumerate(self.weights):
            Z = ops.dense_forward(A, W, b, "identity")
            entry = {"input": A}
            if layer < n_layers - 1:
                if self.batch_norm:
                    if training:
                        mean, var = Z.mean(axis=0), Z.var(axis=0)
                        m = self.dtype.type(_BN_MOMENTUM)
                        self.running_mean[layer] *= m
                        self.running_mean[layer] += (1 - m) * mean
                        self.running_var[layer] *= m
                        self.running_var[layer] += (1 - m) * var
                    else:
                        mean, var = self.running_mean[layer], self.running_var[layer]
                    inv_std = 1 / np.sqrt(var + self.dtype.type(_BN_EPS))
                    xhat = (Z - mean) * inv_std
                    Z = self.gamma[layer] * xhat + self.beta[layer]
                    entry.update(xhat=xhat, inv_std=inv_std)
                A = ops.activation_forward(self.activations[layer], Z, alpha=self._alpha(layer))
                # the pre-activation too: gelu, gelu_tanh, swish, mish and maxout's
                # derivative reads it
                entry.update(activation=A, preactivation=Z)
                if training and self.dropout:
                    keep = self._rng.random(A.shape) >= self.dropout
                    entry["mask"] = keep / self.dtype.type(1 - self.dropout)
                    A = A * entry["mask"]
            else:
                A = Z
            cache.append(entry)
        return A, cache

    def forward(self, X, *, out=None, chunk_rows=None):
        """The network's output for X at inference (running statistics, no dropout)."""
        result = self._forward(np.ascontiguousarray(X, dtype=self.dtype), training=False)[0]
        if out is not None:
            out[...] = result
            return out
        return result.astype(self.dtype, copy=False)

    def hidden_outputs(self, X):
        """Each hidden layer's output for X at inference: a list of (n, width) arrays."""
        _, cache = self._forward(np.ascontiguousarray(X, dtype=self.dtype), training=False)
        return [entry["activation"] for entry in cache[:-1]]

    def _loss_and_gradient(self, logits, Y):
        # each of the plan's losses is the fastmlp.ops kernel of its name
        options = {"margin": self._plan.margin} if self._plan.loss in HINGE_LOSSES else {}
        return getattr(ops, self._plan.loss)(logits, Y, **options)

    def train_step(self, X, Y):
        """Forward, loss, backward and update on one batch; returns its loss (penalties
        included)."""
        return self._train_step(X, Y)[0]

    def _train_step(self, X, Y):
        """train_step's loss, and the batch's outputs in its training forward pass."""
        logits, cache = self._forward(X, training=True)
        loss, dA = self._loss_and_gradient(logits, Y)
        grads = [None] * len(self.weights)
        bn_grads = [None] * len(self.gamma)
        for layer in reversed(range(len(self.weights))):
            W, _ = self.weights[layer]
            entry = cache[layer]
            if layer < len(self.weights) - 1:
                if "mask" in entry:
                    dA = dA * entry["mask"]
                if self.activity_l2 or self.activity_l1:  # before the derivative
                    A = entry["activation"]
                    n, t = A.shape[0], self.dtype.type
                    dA = dA + (t(self.activity_l2 / n) * A + t(self.activity_l1 / n) * np.sign(A))
                    A64 = A.astype(np.float64)
                    loss += (0.5 * self.activity_l2 * float(np.sum(A64 * A64))
                             + self.activity_l1 * float(np.sum(np.abs(A64)))) / n
                dZ = ops.activation_backward(self.activations[layer], dA, entry["activation"],
                                             Z=entry["preactivation"], alpha=self._alpha(layer))
                if self.batch_norm:
                    xhat, inv_std = entry["xhat"], entry["inv_std"]
                    bn_grads[layer] = ((dZ * xhat).sum(axis=0), dZ.sum(axis=0))
                    dxhat = dZ * self.gamma[layer]
                    n = dZ.shape[0]
                    dZ = (inv_std / n) * (n * dxhat - dxhat.sum(axis=0)
                                          - xhat * (dxhat * xhat).sum(axis=0))
            else:
                dZ = dA
            dX, dW, db = ops.dense_backward(dZ, entry["input"], W, dZ, "identity", l2=self.l2,
                                            l1=self.l1, need_dX=layer > 0)
            grads[layer] = (dW, db)
            dA = dX
        for W, _ in self.weights:
            loss += 0.5 * self.l2 * float(np.sum(np.square(W, dtype=np.float64)))
            loss += self.l1 * float(np.sum(np.abs(W), dtype=np.float64))
        self.step += 1
        params = [p for W, b in self.weights for p in (W, b)] + self.gamma + self.beta
        flat = [g for pair in grads for g in pair]
        if self.batch_norm:
            flat += [g[0] for g in bn_grads] + [g[1] for g in bn_grads]
        else:
            params = params[: len(flat)]
        flat = [g.astype(self.dtype, copy=False) for g in flat]
        # gradient (+ penalty) -> clip by value -> scale by min(1, c / global norm) over
        # every parameter array (batch norm's too) -> optimizer
        opt, scale = self.optimizer, 1.0
        if opt.clip_norm is not None:
            scale = ops.global_norm_scale(flat, opt.clip_norm, clip_value=opt.clip_value)
        for index, (param, grad) in enumerate(zip(params, flat)):
            self._update(param, grad, self._states[index], scale,
                         is_weight=index < 2 * len(self.weights) and index % 2 == 0)
        if self._plan.max_norm:
            for W, _ in self.weights:
                max_norm(W, self._plan.max_norm)
        return float(loss), logits

    def _update(self, param, grad, states, scale, is_weight):
        opt = self.optimizer
        lr, clip = opt.learning_rate, {"clip_value": opt.clip_value, "grad_scale": scale}
        if opt.name == "sgd":
            ops.sgd_update(param, grad, lr, **clip)
        elif opt.name in ("momentum", "nesterov"):
            ops.momentum_update(param, grad, states[0], lr, opt.momentum,
                                nesterov=opt.name == "nesterov", **clip)
        elif opt.name in ("adam", "adamw"):
            decay = opt.weight_decay if opt.name == "adamw" and is_weight else 0.0
            ops.adam_update(param, grad, states[0], states[1], self.step, lr, opt.beta1,
                            opt.beta2, opt.eps, weight_decay=decay, **clip)
        elif opt.name == "rmsprop":
            ops.rmsprop_update(param, grad, states[0], lr, opt.rho, opt.eps, **clip)
        elif opt.name == "adagrad":
            ops.adagrad_update(param, grad, states[0], lr, opt.eps, **clip)
        elif opt.name == "adadelta":
            ops.adadelta_update(param, grad, states[0], states[1], lr, opt.rho, opt.eps, **clip)
        elif opt.name == "adamax":
            ops.adamax_update(param, grad, states[0], states[1], self.step, lr, opt.beta1,
                              opt.beta2, opt.eps, **clip)
        else:
            ops.nadam_update(param, grad, states[0], states[1], self.step, lr, opt.beta1,
                             opt.beta2, opt.eps, opt.momentum_decay, **clip)

    def train_epoch(self, X, Y, *, batch_size=None, shuffle=False, batch_losses=None,
                    rows=None, sample_weight=None, metric_out=None):
        """One pass over (X, Y) in minibatches (as NetworkPlan.train_epoch, without
        sample weights); returns the mean over rows of the batch losses."""
        if sample_weight is not None:
            raise ValueError("sample_weight: not supported with batch normalisation")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        batch_size = batch_size or self.batch_size
        if rows is not None:
            order = check.row_indices(rows, "rows", len(X))
        else:
            order = self._rng.permutation(len(X)) if shuffle else np.arange(len(X))
        total = 0.0
        if metric_out is not None:
            check.writable_array(metric_out, "metric_out", (self._plan.layer_sizes[-1],),
                                 np.float64)
            metric_out[:] = 0
        with _backend.use_backend(self.backend):
            for i, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start:start + batch_size]
                loss, outputs = self._train_step(X[batch], Y[batch])
                if batch_losses is not None:
                    batch_losses[i] = loss
                if metric_out is not None:
                    output_metric(self._plan._loss_code, outputs, Y[batch], metric_out)
                total += loss * len(batch)
        return total / len(order)


def _copy_checked(given, own, what):
    """Copy each given[name] into own[name], once all are checked: the same names, float
    arrays of the same shapes (a file may come from a stranger, and a broadcast would
    pass silently)."""
    if set(given) != set(own):
        raise ValueError(f"state: {what} {sorted(given)}, expected {sorted(own)}")
    for name, dst in own.items():
        src = check.float_array(given[name], f"state[{name!r}]")
        check.shape(src, f"state[{name!r}]", dst.shape)
    for name, dst in own.items():
        dst[...] = given[name]
