"""
Checking gradients, as the course does
======================================

The course's rule: before training a network whose backward pass you wrote, compare its
analytic gradient with centred differences ``(f(x + h) - f(x - h)) / 2h`` and look at the
relative error ``|a - n| / max(|a|, |n|)``. ``fastmlp.check_gradients`` does it for a
``NetworkPlan``, a fitted ``MLP``, a kernel of ``fastmlp.ops`` by name, or any function
returning ``(value, gradient)``, such as the two-layer network of the course written in
NumPy. Here it checks all four, finds a planted bug, and shows the caveats: float32 and
kinks. It prints tables only (no figures)::

    python examples/gradient_check.py
"""

# %%
# A plan and a fitted model
# -------------------------
# Every W and b of the network, penalties included, on a few rows: below 1e-7 is right
# (a relu network may show a little more where a step crosses the kink at 0).

import argparse

import numpy as np

import fastmlp
from fastmlp.datasets import make_spiral

parser = argparse.ArgumentParser(description="fastmlp.check_gradients at every level")
parser.add_argument("--out", help="ignored: this example draws no figures")
args, _ = parser.parse_known_args()

X, y = make_spiral(100, 3, seed=0)
plan = fastmlp.NetworkPlan([2, 100, 3], "tanh", l2=1e-3, dtype=np.float64, seed=0,
                           batch_size=300)
print("NetworkPlan 2-100-3 tanh, l2=1e-3:")
print(fastmlp.check_gradients(plan, X, y))

model = fastmlp.MLP((32, 32), "relu", dtype=np.float64, seed=0)
model.fit(X, y, epochs=20, batch_size=30, verbose=0)
print("\nMLP 2-32-32-3 relu after 20 epochs:")
print(fastmlp.check_gradients(model, X, y))

# %%
# The course's network in NumPy, and a bug
# ----------------------------------------
# The two-layer network of the notes, with its loss and backward pass written by hand,
# all parameters in one vector. ``backward_bug`` forgets the ReLU's gate on the hidden
# layer's gradient, a classic mistake; the check points at the arrays it damages.

n_in, n_hidden, n_out, reg = 2, 20, 3, 1e-3
shapes = [(n_in, n_hidden), (n_hidden,), (n_hidden, n_out), (n_out,)]
sizes = [int(np.prod(s)) for s in shapes]
rng = np.random.default_rng(0)
theta = 0.1 * rng.standard_normal(sum(sizes))
rows = X[:20]
labels = y[:20]


def unpack(vector):
    parts, start = [], 0
    for shape, size in zip(shapes, sizes):
        parts.append(vector[start:start + size].reshape(shape))
        start += size
    return parts


def loss_and_gradient(vector, gate=True):
    W1, b1, W2, b2 = unpack(vector)
    hidden = np.maximum(0, rows @ W1 + b1)
    scores = hidden @ W2 + b2
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    n = len(rows)
    loss = -np.log(probs[np.arange(n), labels]).mean() + 0.5 * reg * (
        np.sum(W1 * W1) + np.sum(W2 * W2))
    dscores = probs
    dscores[np.arange(n), labels] -= 1
    dscores /= n
    dW2 = hidden.T @ dscores + reg * W2
    db2 = dscores.sum(axis=0)
    dhidden = dscores @ W2.T
    if gate:
        dhidden[hidden <= 0] = 0
    dW1 = rows.T @ dhidden + reg * W1
    db1 = dhidden.sum(axis=0)
    return loss, np.concatenate([g.ravel() for g in (dW1, db1, dW2, db2)])


print("\nThe course's NumPy network, whole parameter vector:")
print(fastmlp.check_gradients(loss_and_gradient, theta, entries=50))
print("\nThe same without the ReLU gate in backward (a bug):")
print(fastmlp.check_gradients(lambda v: loss_and_gradient(v, gate=False), theta,
                              entries=50))

# %%
# Kernels by name, and the caveats
# --------------------------------
# A loss takes logits (or predictions) and targets; an activation is checked through
# ``sum(c * f(z))``. float32 keeps too few digits for the differences: the check warns.
# relu at inputs within h of its kink gives a large error that is not a bug.

logits = rng.standard_normal((6, 3))
print("\nsoftmax_cross_entropy:")
print(fastmlp.check_gradients("softmax_cross_entropy", logits, rng.integers(0, 3, 6)))
print("\ntanh:")
print(fastmlp.check_gradients("tanh", rng.standard_normal((4, 5))))
print("\nrelu at inputs right on its kink (not a bug):")
print(fastmlp.check_gradients("relu", np.array([[0.0, 1e-6, -1e-6, 0.5]])))
