"""The course's NumPy network, written the way the course writes it.

This is the baseline fastmlp is measured against (the demo and bench/): one np.dot per
product, the softmax of the lecture, `dhidden[hidden_layer <= 0] = 0` for the ReLU,
`dsigmoid` for the sigmoid, the update `W += -step_size * dW` (or the lecture's Adam).
Generalised from the lecture's two layers to any depth; nothing else is optimised.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    """The lecture's ``1 / (1 + exp(-x))`` (it overflows for very negative x, as there)."""
    return 1.0 / (1.0 + np.exp(-x))


class CourseNetwork:
    """A ReLU or sigmoid MLP with a softmax output, trained as in the course.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_in, hidden..., n_classes]``.
    activation : {"relu", "sigmoid"}, default "relu"
        Every hidden layer's activation.
    step_size : float, default 1.0
        The learning rate.
    reg : float, default 1e-3
        The L2 strength (``0.5 * reg * sum(W * W)`` per weight matrix).
    optimizer : {"sgd", "adam"}, default "sgd"
        The update (Adam with the lecture's 0.9, 0.999, 1e-8).
    dtype : float32 or float64, default float64
        The dtype of the weights.
    seed : int or None, default None
        Seeds the ``0.01 * randn`` weights (the biases start at zero).
    """

    def __init__(self, layer_sizes, activation="relu", step_size=1.0, reg=1e-3,
                 optimizer="sgd", dtype=np.float64, seed=None):
        rng = np.random.default_rng(seed)
        self.Ws = [(0.01 * rng.standard_normal((a, b))).astype(dtype)
                   for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
        self.bs = [np.zeros((1, b), dtype=dtype) for b in layer_sizes[1:]]
        self.activation, self.step_size, self.reg = activation, step_size, reg
        self.optimizer = optimizer
        params = self.Ws + self.bs
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def forward(self, X):
        """The input and each hidden layer's output (a list), and the scores (logits)."""
        hidden = [X]
        for W, b in zip(self.Ws[:-1], self.bs[:-1]):
            middle = np.dot(hidden[-1], W) + b
            if self.activation == "relu":
                hidden.append(np.maximum(0, middle))  # note, ReLU activation
            else:
                hidden.append(sigmoid(middle))
        scores = np.dot(hidden[-1], self.Ws[-1]) + self.bs[-1]
        return hidden, scores

    def train_step(self, X, y):
        """One step on the batch (X, y): forward, loss, backward, update; returns the loss."""
        num_examples = X.shape[0]
        hidden, scores = self.forward(X)

        # compute the class probabilities
        exp_scores = np.exp(scores - np.max(scores, axis=1, keepdims=True))
        probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)  # [N x K]

        # compute the loss: average cross-entropy loss and regularization
        correct_logprobs = -np.log(probs[range(num_examples), y])
        data_loss = np.sum(correct_logprobs) / num_examples
        reg_loss = sum(0.5 * self.reg * np.sum(W * W) for W in self.Ws)
        loss = data_loss + reg_loss

        # compute the gradient on scores
        dscores = probs
        dscores[range(num_examples), y] -= 1
        dscores /= num_examples

        # backpropagate the gradient to the parameters
        dWs, dbs = [None] * len(self.Ws), [None] * len(self.Ws)
        dout = dscores
        for i in reversed(range(len(self.Ws))):
            dWs[i] = np.dot(hidden[i].T, dout)
            dbs[i] = np.sum(dout, axis=0, keepdims=True)
            if i > 0:
                dhidden = np.dot(dout, self.Ws[i].T)
                if self.activation == "relu":
                    dhidden[hidden[i] <= 0] = 0  # backprop the ReLU non-linearity
                else:
                    dhidden = np.multiply(dhidden, hidden[i] * (1.0 - hidden[i]))  # dsigmoid
                dout = dhidden

        # add regularization gradient contribution
        for W, dW in zip(self.Ws, dWs):
            dW += self.reg * W

        # perform a parameter update
        params, grads = self.Ws + self.bs, dWs + dbs
        if self.optimizer == "sgd":
            for p, g in zip(params, grads):
                p += -self.step_size * g
        else:  # Adam, as in the lecture
            self.t += 1
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            for p, g, m, v in zip(params, grads, self.m, self.v):
                m[...] = beta1 * m + (1 - beta1) * g
                v[...] = beta2 * v + (1 - beta2) * (g * g)
                m_hat = m / (1 - beta1**self.t)
                v_hat = v / (1 - beta2**self.t)
                p += -self.step_size * m_hat / (np.sqrt(v_hat) + eps)
        return loss

    def predict(self, X):
        """The predicted class of each row of X."""
        return np.argmax(self.forward(X)[1], axis=1)
