"""
The lecture's MNIST network
===========================

784 inputs -> 100 sigmoid units -> 10 classes (softmax cross-entropy), Adam with learning
rate 1e-3, minibatches of 100, 30 epochs, trained on the first 8000 images of the sample
that ships with fastmlp (``fastmlp.datasets.load_mnist_sample()``, no download) and
tested on the other 2000: about 95% test accuracy (95.15% with ``seed=0``).

It prints the loss and accuracy every five epochs, the test accuracy and the time per
epoch. Run on its own, the script saves ``mnist_curves.png`` (training and validation
loss and accuracy per epoch, from ``model.history``) and ``mnist_mistakes.png`` (the test
digits the network is most confidently wrong about), next to it or into ``--out``.
Without matplotlib it prints the numbers only::

    python examples/mnist_lecture.py [--out DIR] [--epochs 30]
"""

# %%
# The command line and matplotlib
# --------------------------------
# ``--epochs`` sets the number of epochs, ``--out`` the folder of the PNG files.
# matplotlib is optional: ``pyplot()`` gives a file-only (Agg) pyplot, or None when
# matplotlib is not installed.

import argparse
import pathlib
import time

import numpy as np

import fastmlp
from fastmlp.datasets import load_mnist_sample

# next to this script (the current folder where there is no script file: a notebook)
HERE = pathlib.Path(globals().get("__file__", "example.py")).resolve().parent

parser = argparse.ArgumentParser(description="The lecture's MNIST network, with "
                                 "fastmlp.MLP, on the embedded MNIST sample.")
parser.add_argument("--out", type=pathlib.Path, default=HERE,
                    help="folder for the PNG files (default: next to this script)")
parser.add_argument("--epochs", type=int, default=30, help="epochs (default: 30)")
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
# 10,000 real MNIST digits are embedded in the package: the first 8000 train, the other
# 2000 test. Pixels are float32 in [0, 1], labels int64.

X_train, y_train, X_test, y_test = load_mnist_sample()
print(f"MNIST sample: {len(X_train)} training and {len(X_test)} test images of "
      f"{X_train.shape[1]} pixels; backend {fastmlp.get_backend()!r}")

# %%
# Training
# --------
# ``MLP((100,), "sigmoid")`` is the lecture's 784-100-10 network (float32, Glorot-uniform
# weights). The test set is passed as ``validation_data`` so that ``model.history`` holds
# its loss and accuracy after every epoch.

model = fastmlp.MLP((100,), "sigmoid", seed=0)
start = time.perf_counter()
model.fit(X_train, y_train, epochs=args.epochs, batch_size=100, optimizer="adam",
          learning_rate=1e-3, validation_data=(X_test, y_test), verbose=0)
seconds = time.perf_counter() - start
history = model.history
if model.interrupted_:
    print(f"interrupted after {len(history['loss'])} epochs")

print(f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'val_loss':>9} {'val_accuracy':>13}")
for e in range(len(history["loss"])):
    if e == 0 or (e + 1) % 5 == 0 or e == len(history["loss"]) - 1:
        print(f"{e + 1:>5} {history['loss'][e]:>8.4f} {history['accuracy'][e]:>9.2%} "
              f"{history['val_loss'][e]:>9.4f} {history['val_accuracy'][e]:>13.2%}")
n_epochs = max(1, len(history["loss"]))
print(f"test accuracy: {model.score(X_test, y_test):.2%}")
print(f"time: {seconds:.2f} s for {n_epochs} epochs, {seconds / n_epochs * 1e3:.0f} ms per "
      f"epoch ({len(X_train) // 100} steps of 100 images, then one pass over the "
      f"{len(X_train) + len(X_test)} images for the history)")

# %%
# Learning curves
# ---------------
# The training and validation (test set) loss and accuracy per epoch, from
# ``model.history``.


def plot_curves(plt, history, path):
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_loss.plot(epochs, history["loss"], "o-", ms=3, label="training")
    ax_loss.plot(epochs, history["val_loss"], "o-", ms=3, label="validation (test set)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_acc.plot(epochs, 100 * np.asarray(history["accuracy"]), "o-", ms=3, label="training")
    ax_acc.plot(epochs, 100 * np.asarray(history["val_accuracy"]), "o-", ms=3,
                label="validation (test set)")
    ax_acc.axhline(95, color="grey", lw=0.8, ls="--")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(80, 100)
    ax_acc.set_title("accuracy")
    ax_acc.legend(loc="lower right")
    fig.suptitle("MNIST 784-100-10 sigmoid, Adam 1e-3, batch 100")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


if plt is None:
    print("matplotlib is not installed: plots skipped (pip install matplotlib)")
else:
    args.out.mkdir(parents=True, exist_ok=True)
    curves = args.out / "mnist_curves.png"
    plot_curves(plt, history, curves)
    print(f"saved {curves}")

# %%
# The most confident mistakes
# ---------------------------
# The test digits the network gets wrong with the highest predicted probability (from
# ``model.predict_proba``): true label, prediction and its probability.


def plot_mistakes(plt, model, X, y, path, n=24):
    predicted = model.predict(X)
    confidence = model.predict_proba(X).max(axis=1)
    wrong = np.flatnonzero(predicted != y)
    wrong = wrong[np.argsort(confidence[wrong])[::-1]][:n]  # the most confident mistakes
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.8))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), wrong):
        ax.imshow(X[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{y[i]} read as {predicted[i]}\n({confidence[i]:.0%})", fontsize=8)
    fig.suptitle(f"The most confident of the {int(np.sum(predicted != y))} mistakes on "
                 f"{len(y)} test digits (true label, prediction, probability)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


if plt is not None:
    mistakes = args.out / "mnist_mistakes.png"
    plot_mistakes(plt, model, X_test, y_test, mistakes)
    print(f"saved {mistakes}")
