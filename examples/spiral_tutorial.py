"""
The course's spiral tutorial
============================

Three arms of 100 points each in 2-D (``fastmlp.datasets.make_spiral(100, 3, seed=0)``),
trained as the course trains them: full-batch gradient descent with step size 1.0, L2
strength 1e-3, weights initialised to ``0.01 * randn`` (``init="course"``), no shuffling.

1. A linear classifier (no hidden layer) cannot separate the arms: about 50% accuracy.
2. One hidden layer of 100 ReLU units (2 -> 100 -> 3) fits the training set: >= 98%.

Run on its own, the script saves two figures, next to it or into ``--out``:
``spiral_decision_regions.png`` (both classifiers' decision regions and loss curves) and
``spiral_hidden_units.png`` (what 16 of the hidden units respond to, from
``model.hidden_activations`` on a grid). Without matplotlib it prints the numbers only::

    python examples/spiral_tutorial.py [--out DIR] [--steps 3000]
"""

# %%
# The command line and matplotlib
# --------------------------------
# ``--steps`` sets the number of full-batch steps per network, ``--out`` the folder of
# the PNG files. matplotlib is optional: ``pyplot()`` gives a file-only (Agg) pyplot, or
# None when matplotlib is not installed.

import argparse
import pathlib
import time

import numpy as np

import fastmlp
from fastmlp.datasets import make_spiral

CLASS_COLOURS = ("#d62728", "#1f77b4", "#2ca02c")
# next to this script (the current folder where there is no script file: a notebook)
HERE = pathlib.Path(globals().get("__file__", "example.py")).resolve().parent

parser = argparse.ArgumentParser(description="The course's spiral tutorial, with "
                                 "fastmlp.MLP.")
parser.add_argument("--out", type=pathlib.Path, default=HERE,
                    help="folder for the PNG files (default: next to this script)")
parser.add_argument("--steps", type=int, default=3000,
                    help="full-batch steps per network (default: 3000)")
args = parser.parse_args()


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


plt = pyplot()

# %%
# The data
# --------
# ``make_spiral`` is the course's generator: arm ``j`` has radius ``linspace(0, 1, 100)``
# and angle ``linspace(4j, 4(j+1), 100)`` plus Gaussian noise of 0.2.

X, y = make_spiral(100, 3, seed=0)
print(f"spiral: {len(X)} points, {len(np.unique(y))} classes; backend "
      f"{fastmlp.get_backend()!r}; {args.steps} full-batch SGD steps, step size 1.0, "
      "L2 1e-3")

# %%
# A linear classifier
# -------------------
# ``MLP(())`` has no hidden layer: softmax regression. Every step is one full batch of
# all 300 points, as in the course.


def train(hidden, X, y, steps):
    """The course's training: full batch, SGD with step size 1.0, L2 1e-3, 0.01 * randn."""
    model = fastmlp.MLP(hidden, "relu", init="course", dtype=np.float64, seed=0)
    start = time.perf_counter()
    model.fit(X, y, epochs=steps, batch_size=len(X), optimizer="sgd", learning_rate=1.0,
              l2=1e-3, shuffle=False, verbose=0)
    return model, time.perf_counter() - start


linear, t_linear = train((), X, y, args.steps)
print(f"linear classifier  2 -> 3        : training accuracy {linear.score(X, y):6.1%}, "
      f"final loss {linear.history['loss'][-1]:.3f}, "
      f"{t_linear / args.steps * 1e6:.0f} us/step")

# %%
# A network with one hidden layer
# -------------------------------
# 100 ReLU units between the input and the output (2 -> 100 -> 3), trained the same way.

net, t_net = train((100,), X, y, args.steps)
print(f"neural network     2 -> 100 -> 3 : training accuracy {net.score(X, y):6.1%}, "
      f"final loss {net.history['loss'][-1]:.3f}, "
      f"{t_net / args.steps * 1e6:.0f} us/step")

H = net.hidden_activations(X)[0]
print(f"hidden units active on some training point: {int((H > 0).any(axis=0).sum())} of "
      f"{H.shape[1]}")

# %%
# Decision regions and loss curves
# --------------------------------
# Each model's predicted class over a grid of the plane, and the loss per step (with
# step size 1.0 the spikes of the loss curves are real).


def grid(X, n=300, margin=0.1):
    lo, hi = X.min(axis=0) - margin, X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return xx, yy, np.c_[xx.ravel(), yy.ravel()]


def plot_decision_regions(plt, models, X, y, path):
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import ScalarFormatter

    xx, yy, points = grid(X)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (title, model) in zip(axes, models.items()):
        regions = model.predict(points).reshape(xx.shape)
        ax.contourf(xx, yy, regions, levels=[-0.5, 0.5, 1.5, 2.5],
                    cmap=ListedColormap(CLASS_COLOURS), alpha=0.3)
        ax.scatter(X[:, 0], X[:, 1], c=[CLASS_COLOURS[k] for k in y], s=14, edgecolors="k",
                   linewidths=0.3)
        ax.set_title(f"{title}: {model.score(X, y):.1%} training accuracy")
        ax.set_xlim(xx.min(), xx.max())
        ax.set_ylim(yy.min(), yy.max())
        ax.set_aspect("equal")
    ax = axes[2]
    for title, model in models.items():
        ax.plot(model.history["loss"], label=title)
    ax.set_xlabel("step (full batch)")
    ax.set_ylabel("loss (cross-entropy + L2)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_title("training loss (step size 1.0: the spikes are real)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


if plt is None:
    print("matplotlib is not installed: plots skipped (pip install matplotlib)")
else:
    args.out.mkdir(parents=True, exist_ok=True)
    regions = args.out / "spiral_decision_regions.png"
    plot_decision_regions(plt, {"linear": linear, "2-100-3 ReLU": net}, X, y, regions)
    print(f"saved {regions}")

# %%
# What the hidden units see
# -------------------------
# ``model.hidden_activations`` gives each hidden layer's output. Over a grid, a ReLU unit
# ``max(0, w . x + b)`` is a ramp that rises across one line of the plane; the output
# layer adds 100 such ramps into the three spiral arms. Shown: the 16 units whose
# response varies most over the plane, and the class each one's output weights favour.


def plot_hidden_units(plt, model, X, y, path, n_units=16):
    xx, yy, points = grid(X, n=200)
    H = model.hidden_activations(points)[0]  # (n_points, 100) ReLU outputs on the grid
    # the units whose response varies most over the plane, strongest first
    units = np.argsort(H.std(axis=0))[::-1][:n_units]
    W_out = model.weights[-1][0]
    cols = 4
    fig, axes = plt.subplots(n_units // cols, cols, figsize=(12, 12))
    for ax, unit in zip(axes.ravel(), units):
        ax.imshow(H[:, unit].reshape(xx.shape), origin="lower", cmap="magma",
                  extent=(xx.min(), xx.max(), yy.min(), yy.max()))
        ax.scatter(X[:, 0], X[:, 1], c=[CLASS_COLOURS[k] for k in y], s=3, alpha=0.6)
        favours = int(np.argmax(W_out[unit]))
        ax.set_title(f"unit {unit}: votes for class {favours}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Hidden ReLU units: max(0, w . x + b) is a ramp across one line of the "
                 "plane;\nthe output layer adds 100 such ramps into the three spiral arms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


if plt is not None:
    units = args.out / "spiral_hidden_units.png"
    plot_hidden_units(plt, net, X, y, units)
    print(f"saved {units}")
