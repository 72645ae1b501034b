"""The training engine of a NetworkPlan for backends without a compiled one.

It composes the backend's own kernels (dense_forward, loss_rows: the loss of a batch's
rows with their sample weights, dense_backward, optimizer_update) into the same step the
C core runs in csrc/kernels/network.inc, over the same preallocated buffers, so the
backends can be compared step by step.
"""

from __future__ import annotations

import math

import numpy as np


class PythonNetwork:
    kernels = None  # the backend module whose kernels this engine calls
    checks_labels = False  # the plan checks the label range before calling

    def __init__(self, plan):
        self._buffers = plan._buffers
        self._activations = [int(c) for c in plan._activation_codes]
        self._alphas = [float(a) for a in plan._activation_alphas]
        self._loss_code = plan._loss_code
        self._margin = float(plan.margin)
        self.configure(plan)

    def configure(self, plan):
        self._dropout, self._dropout_key = plan.dropout, plan._dropout_key
        opt = plan.optimizer
        self._opt = (opt.code, opt.learning_rate, opt.momentum, opt.beta1, opt.beta2, opt.eps,
                     opt.weight_decay, opt.rho, opt.momentum_decay, opt.clip_value or 0.0)
        self._clip_norm = opt.clip_norm
        self._l2, self._l1 = float(plan.l2), float(plan.l1)
        self._penalty_over_weight = plan.penalty == "per_sample"
        self._max_norm = plan.max_norm
        self._activity_l2, self._activity_l1 = float(plan.activity_l2), float(plan.activity_l1)
        self._step = int(plan.step)

    @property
    def step(self):
        return self._step

    def train_step(self, X, y, w=None):
        """Forward, loss, backward and update on one batch (sample weights w, or None);
        returns the loss before the update, penalties included."""
        loss = self.loss_gradient(X, y, w)
        self._step += 1
        update_parameters(self.kernels, self._buffers, self._opt, self._clip_norm,
                          self._max_norm, self._step)
        return loss

    def loss_gradient(self, X, y, w=None):
        """The batch's loss (penalties included) and its gradients into the plan's dW and
        db, at the current weights: no update, the step count unchanged."""
        k, buf = self.kernels, self._buffers
        rows = X.shape[0]
        # the batch's weight sum normalises the loss, its gradient and (per_sample) the
        # penalties; the C core refuses a sum that is not positive (FM_EINVAL)
        weight_sum = float(rows) if w is None else float(np.sum(w, dtype=np.float64))
        if not weight_sum > 0:
            raise ValueError("sample_weight: the batch's weights must sum to more than 0")
        l2, l1 = self._l2, self._l1
        if self._penalty_over_weight:
            l2, l1 = l2 / weight_sum, l1 / weight_sum
        W, b, dW, db = buf["W"], buf["b"], buf["dW"], buf["db"]
        A = [a[:rows] for a in buf["A"]]
        dA = [d[:rows] for d in buf["dA"]]
        Z = [None if z is None else z[:rows] for z in buf["Z"]]  # where the derivative needs it
        t = self._step + 1  # the step these gradients are for (its dropout mask)
        # with dropout, the next layer reads the dropped outputs D
        inputs = [X] + ([d[:rows] for d in buf["D"][:-1]] if self._dropout else A[:-1])
        for layer in range(len(W)):
            k.dense_forward(inputs[layer], W[layer], b[layer], self._activations[layer],
                            self._alphas[layer], A[layer], Z[layer])
            if self._dropout and layer < len(W) - 1:
                dropout(self._dropout_key, self._dropout, t, layer, A[layer], inputs[layer + 1])
        loss = k.loss_rows(self._loss_code, A[-1], y, w, 1.0 / weight_sum, dA[-1],
                           self._margin) / weight_sum
        # penalties on the weights: 0.5 l2 sum W^2 + l1 sum |W|
        for w_layer in W:
            if l2:
                loss += 0.5 * l2 * float(np.sum(np.square(w_layer, dtype=np.float64)))
            if l1:
                loss += l1 * float(np.sum(np.abs(w_layer), dtype=np.float64))
        activity = self._activity_l2 or self._activity_l1
        for layer in reversed(range(len(W))):
            if self._dropout and layer < len(W) - 1:  # the forward pass's mask, again
                dropout(self._dropout_key, self._dropout, t, layer, dA[layer], dA[layer])
            if activity and layer < len(W) - 1:  # before the activation's derivative
                loss += add_activity_penalty(A[layer], w, weight_sum, self._activity_l2,
                                             self._activity_l1, dA[layer])
            # dZ in place of dA, or of Z for maxout (as wide as W, k columns per unit)
            dZ = Z[layer] if self._activations[layer] == _MAXOUT else dA[layer]
            k.dense_backward(dA[layer], inputs[layer], W[layer], A[layer], Z[layer],
                             self._activations[layer], self._alphas[layer], l2, l1, dZ,
                             dA[layer - 1] if layer > 0 else None, dW[layer], db[layer])
        return loss

    def train_epoch(self, X, y, w, order, batch_size, batch_losses, metric_out=None):
        n = X.shape[0] if order is None else len(order)  # order: the rows to visit
        buf = self._buffers
        X_batch, y_batch, w_batch = buf["X_batch"], buf["y_batch"], buf["w_batch"]
        total = 0.0
        if metric_out is not None:
            metric_out[:] = 0
        for batch, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            if order is None:
                Xb, yb = X[start:stop], y[start:stop]
                wb = None if w is None else w[start:stop]
            else:
                rows = order[start:stop]
                Xb, yb = X_batch[: stop - start], y_batch[: stop - start]
                np.take(X, rows, axis=0, out=Xb)
                np.take(y, rows, axis=0, out=yb)
                wb = None
                if w is not None:
                    wb = w_batch[: stop - start]
                    np.take(w, rows, out=wb)
            loss = self.train_step(Xb, yb, wb)
            if batch_losses is not None:
                batch_losses[batch] = loss
            if metric_out is not None:  # the step left its outputs in A[-1]
                output_metric(self._loss_code, buf["A"][-1][: stop - start], yb, metric_out)
            total += loss * (stop - start)
        return total / n

    def forward(self, X, out, work_a, work_b, chunk_rows):
        k, buf = self.kernels, self._buffers
        W, b = buf["W"], buf["b"]
        for start in range(0, X.shape[0], chunk_rows):
            stop = min(start + chunk_rows, X.shape[0])
            n = stop - start
            inp = X[start:stop]
            for layer in range(len(W)):
                width = W[layer].shape[1]
                if layer == len(W) - 1:
                    dst = out[start:stop]
                else:
                    dst = (work_a if layer % 2 == 0 else work_b)[: n * width].reshape(n, width)
                act = self._activations[layer]
                if act == _MAXOUT:  # the pieces into the slot, then their max in its front
                    units = width // int(self._alphas[layer])
                    k.dense_forward(inp, W[layer], b[layer], 0, 0.0, dst, None)
                    narrow = dst.reshape(-1)[: n * units].reshape(n, units)
                    k.maxout_forward(self._alphas[layer], dst.copy(), narrow)
                    dst = narrow
                else:
                    k.dense_forward(inp, W[layer], b[layer], act, self._alphas[layer], dst,
                                    None)
                inp = dst


_MAXOUT = 14  # the activation code whose dZ is wider than dA
_LABEL_CODES = (0, 6, 7)  # softmax cross-entropy, the hinge losses
_SOFT_TARGET_CODES = (8, 10)  # categorical cross-entropy, KL divergence


def update_parameters(kernels, buf, opt, clip_norm, max_norm_c, t):
    """The optimizer's update t of every parameter in buf ("W", "b") from the complete
    gradients in buf ("dW", "db"), with kernels' optimizer_update: the C core's update
    order, gradient (+ penalty) -> clip by value -> scale by min(1, c / global norm) ->
    optimizer (AdamW's decay on the weights only) -> max-norm. opt: the optimizer's
    (code, learning rate, momentum, beta1, beta2, eps, weight decay, rho, momentum decay,
    clip value) as optimizer_update takes them."""
    scale = 1.0
    if clip_norm:
        scale = global_norm_scale(buf["dW"] + buf["db"], clip_norm, opt[-1])
    for layer in range(len(buf["W"])):
        kernels.optimizer_update(*opt, scale, t, buf["W"][layer].reshape(-1),
                                 buf["dW"][layer].reshape(-1), _flat(buf["state1_W"][layer]),
                                 _flat(buf["state2_W"][layer]), True)
        kernels.optimizer_update(*opt, scale, t, buf["b"][layer], buf["db"][layer],
                                 buf["state1_b"][layer], buf["state2_b"][layer], False)
    if max_norm_c:
        for W in buf["W"]:
            max_norm(W, max_norm_c)


def max_norm(W, c):
    """Columns of W (a unit's incoming weights) longer than c scaled to norm c, in place:
    the C core's fm_max_norm_task (norms in double, the scale rounded to W's dtype)."""
    norms = np.sqrt(np.sum(np.square(W, dtype=np.float64), axis=0))
    longer = norms > c
    if longer.any():
        W[:, longer] *= (c / norms[longer]).astype(W.dtype)


def output_metric(loss_code, Z, y, metric):
    """Adds a trained batch's running training metric to metric (n_out,), as the C core's
    fm_output_metric: per class, the rows of that label (softmax cross-entropy, hinge) or
    whose target row's first maximum is there (categorical cross-entropy, KL) whose first
    maximum is theirs (no NaN in the row); sigmoid BCE: per output, (z > 0) == (y > 0.5);
    regression: per output, the sum of (prediction - y)^2, the prediction exp(z) for
    poisson (code 3)."""
    if loss_code in _LABEL_CODES or loss_code in _SOFT_TARGET_CODES:
        if loss_code in _SOFT_TARGET_CODES:
            y = np.argmax(y, axis=1)
        hit = (np.argmax(Z, axis=1) == y) & ~np.isnan(Z).any(axis=1)
        metric += np.bincount(y[hit], minlength=Z.shape[1])
    elif loss_code == 1:
        metric += np.count_nonzero((Z > 0) == (y > 0.5), axis=0)
    else:
        Z = Z.astype(np.float64)
        metric += np.sum(np.square((np.exp(Z) if loss_code == 3 else Z) - y), axis=0)


def add_activity_penalty(A, w, weight_sum, l2, l1, dA):
    """The activity penalty of a hidden layer's output A (rows, width), as network.inc's
    fm_add_activity_penalty: with c_i = w_i / weight_sum (w None: w_i = 1) rounded to the
    dtype times l2 and l1, dA += c_i (l2 A + l1 sign(A)); returns
    sum_i w_i (l2/2 sum_j A_ij^2 + l1 sum_j |A_ij|) / weight_sum (in float64)."""
    rows = A.shape[0]
    w64 = np.ones(rows) if w is None else np.asarray(w, dtype=np.float64)
    c = w64 * (1.0 / weight_sum)  # w_i inv_norm, as the C core rounds it
    dtype = A.dtype.type
    c2, c1 = (c * l2).astype(dtype)[:, None], (c * l1).astype(dtype)[:, None]
    dA += c2 * A + c1 * np.sign(A)
    A64 = A.astype(np.float64)
    per_row = 0.5 * l2 * np.sum(A64 * A64, axis=1) + l1 * np.sum(np.abs(A64), axis=1)
    return float(np.dot(w64, per_row)) / weight_sum


def _flat(a):
    return None if a is None else a.reshape(-1)


def _mix32(h):
    """murmur3's finaliser on uint32 arrays (wrapping arithmetic)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout(key, rate, step, layer, values, out):
    """out = values * (kept ? 1/(1 - rate) : 0) over a whole batch, the mask of
    csrc/kernels/network.inc's fm_dropout: unit (r, j) of a layer `width` wide is kept
    when the top 24 bits of mix32(layer_key + (r width + j) 0x9E3779B9) reach rate 2^24."""
    rows, width = values.shape
    with np.errstate(over="ignore"):
        layer_key = _mix32(np.uint32(key) ^ _mix32(
            np.uint32(step & 0xFFFFFFFF) * np.uint32(0x9E3779B9) + np.uint32(layer)))
        index = ((np.arange(rows, dtype=np.uint64)[:, None] * np.uint64(width)
                  + np.arange(width, dtype=np.uint64)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        h = _mix32(layer_key + index * np.uint32(0x9E3779B9))
    threshold = np.uint32(int(rate * 16777216.0 + 0.5))
    dtype = values.dtype.type
    scale = dtype(1) / dtype(1 - rate)
    np.multiply(values, np.where((h >> np.uint32(8)) >= threshold, scale, dtype(0)), out=out)


def global_norm_scale(grads, clip_norm, clip_value=0.0):
    """min(1, clip_norm / ||g||_2) over every array of grads (each clipped into
    [-clip_value, clip_value] first; 0: not), the norm summed in float64; 1 when the
    norm is not finite (NaN and inf gradients stay as they are)."""
    sumsq = 0.0
    for g in grads:
        if clip_value:
            g = np.clip(g, -g.dtype.type(clip_value), g.dtype.type(clip_value))
        g = g.reshape(-1).astype(np.float64)
        sumsq += float(np.dot(g, g))
    norm = math.sqrt(sumsq)
    return clip_norm / norm if math.isfinite(norm) and norm > clip_norm else 1.0
