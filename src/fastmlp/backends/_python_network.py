"""The training engine of a NetworkPlan for backends without a compiled one.

It composes the backend's own kernels (dense_forward, the loss, dense_backward,
optimizer_update) into the same step the C core runs in csrc/kernels/network.inc, over
the same preallocated buffers, so the backends can be compared step by step.
"""

from __future__ import annotations

import numpy as np

_LOSS_KERNELS = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error")


class PythonNetwork:
    kernels = None  # the backend module whose kernels this engine calls
    checks_labels = False  # the plan checks the label range before calling

    def __init__(self, plan):
        self._buffers = plan._buffers
        self._activations = [int(c) for c in plan._activation_codes]
        self._alphas = [float(a) for a in plan._activation_alphas]
        self._loss_code = plan._loss_code
        self._loss = getattr(self.kernels, _LOSS_KERNELS[plan._loss_code])
        self.configure(plan)

    def configure(self, plan):
        self._dropout, self._dropout_key = plan.dropout, plan._dropout_key
        opt = plan.optimizer
        self._opt = (opt.code, opt.learning_rate, opt.momentum, opt.beta1, opt.beta2, opt.eps,
                     opt.weight_decay)
        self._l2, self._l1 = float(plan.l2), float(plan.l1)
        self._step = int(plan.step)

    @property
    def step(self):
        return self._step

    def _loss_gradient(self, logits, y, grad):
        if self._loss_code == 0:
            return self._loss(logits, y, None, grad)
        return self._loss(logits, y, grad)

    def train_step(self, X, y):
        k, buf = self.kernels, self._buffers
        rows = X.shape[0]
        W, b, dW, db = buf["W"], buf["b"], buf["dW"], buf["db"]
        A = [a[:rows] for a in buf["A"]]
        dA = [d[:rows] for d in buf["dA"]]
        t = self._step + 1
        # with dropout, the next layer reads the dropped outputs D
        inputs = [X] + ([d[:rows] for d in buf["D"][:-1]] if self._dropout else A[:-1])
        for layer in range(len(W)):
            k.dense_forward(inputs[layer], W[layer], b[layer], self._activations[layer], self._alphas[layer], A[layer])
            if self._dropout and layer < len(W) - 1:
                dropout(self._dropout_key, self._dropout, t, layer, A[layer], inputs[layer + 1])
        loss = self._loss_gradient(A[-1], y, dA[-1])
        # penalties on the weights before the update: 0.5 l2 sum W^2 + l1 sum |W|
        for w in W:
            if self._l2:
                loss += 0.5 * self._l2 * float(np.sum(np.square(w, dtype=np.float64)))
            if self._l1:
                loss += self._l1 * float(np.sum(np.abs(w), dtype=np.float64))
        for layer in reversed(range(len(W))):
            if self._dropout and layer < len(W) - 1:  # the forward pass's mask, again
                dropout(self._dropout_key, self._dropout, t, layer, dA[layer], dA[layer])
            k.dense_backward(dA[layer], inputs[layer], W[layer], A[layer], self._activations[layer],
                             self._alphas[layer], self._l2, self._l1, dA[layer],
                             dA[layer - 1] if layer > 0 else None, dW[layer], db[layer])
            k.optimizer_update(*self._opt, t, W[layer].reshape(-1), dW[layer].reshape(-1),
                               _flat(buf["state1_W"][layer]), _flat(buf["state2_W"][layer]), True)
            k.optimizer_update(*self._opt, t, b[layer], db[layer], buf["state1_b"][layer],
                               buf["state2_b"][layer], False)
        self._step = t
        return loss

    def train_epoch(self, X, y, order, batch_size, batch_losses):
        n = X.shape[0] if order is None else len(order)  # order: the rows to visit
        X_batch, y_batch = self._buffers["X_batch"], self._buffers["y_batch"]
        total = 0.0
        for batch, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            if order is None:
                Xb, yb = X[start:stop], y[start:stop]
            else:
                rows = order[start:stop]
                Xb, yb = X_batch[: stop - start], y_batch[: stop - start]
                np.take(X, rows, axis=0, out=Xb)
                np.take(y, rows, axis=0, out=yb)
            loss = self.train_step(Xb, yb)
            if batch_losses is not None:
                batch_losses[batch] = loss
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
                k.dense_forward(inp, W[layer], b[layer], self._activations[layer], self._alphas[layer], dst)
                inp = dst


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
