"""
Hyper-parameter search and babysitting, as the notes advise
===========================================================

The notes' advice on tuning: search the learning rate on a log scale, with the hidden
size and the L2 strength, at random rather than on a grid (random trials try more values
of the parameter that matters); judge each trial on held-out data; then watch the winner
train: its loss curve, and the ratio of each step's update to the weights (about 1e-3 is
healthy; much larger, the learning rate is too high; much smaller, too low).

Two searches: the course's spiral and the embedded MNIST sample. Each trial is a fresh
``fastmlp.MLP`` scored on a validation split; the table lists them best first. Run on its
own, the script saves ``hyperparameter_search.png`` (the MNIST winner's loss curves and
update ratios per layer), next to it or into ``--out``; without matplotlib it prints the
tables only::

    python examples/hyperparameter_search.py [--out DIR] [--trials 12] [--epochs 8]
"""

# %%
# The search
# ----------
# ``sample()`` draws one trial: learning rate 10^U(-4, -1), hidden size from a list, L2
# 10^U(-6, -2). ``search()`` trains each on the training rows and keeps the validation
# accuracy after the last epoch.

import argparse
import math
import pathlib
import time

import numpy as np

import fastmlp
from fastmlp.datasets import load_mnist_sample, make_spiral

HERE = pathlib.Path(globals().get("__file__", "example.py")).resolve().parent
parser = argparse.ArgumentParser(description="Random hyper-parameter search with fastmlp.")
parser.add_argument("--out", type=pathlib.Path, default=HERE,
                    help="folder for the PNG file (default: next to this script)")
parser.add_argument("--trials", type=int, default=12, help="trials per search (12)")
parser.add_argument("--epochs", type=int, default=8, help="MNIST epochs per trial (8)")
args = parser.parse_args()
rng = np.random.default_rng(0)


def sample(hidden_sizes):
    return {"learning_rate": float(10 ** rng.uniform(-4, -1)),
            "hidden": int(rng.choice(hidden_sizes)),
            "l2": float(10 ** rng.uniform(-6, -2))}


def search(X, y, hidden_sizes, epochs, batch_size):
    trials = []
    for _ in range(args.trials):
        trial = sample(hidden_sizes)
        model = fastmlp.MLP((trial["hidden"],), seed=0)
        started = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch_size,
                  learning_rate=trial["learning_rate"], l2=trial["l2"],
                  validation_split=0.2, verbose=0)
        trial.update(val_accuracy=model.history["val_accuracy"][-1],
                     seconds=time.perf_counter() - started)
        trials.append(trial)
    trials.sort(key=lambda t: -t["val_accuracy"])
    print(f"{'learning rate':>13} {'hidden':>6} {'L2':>8} {'val. accuracy':>13} {'s':>5}")
    for t in trials:
        print(f"{t['learning_rate']:13.2e} {t['hidden']:6d} {t['l2']:8.1e} "
              f"{t['val_accuracy']:13.3f} {t['seconds']:5.2f}")
    return trials[0]


X_spiral, y_spiral = make_spiral(100, 3, seed=0)
print(f"spiral, {args.trials} trials, Adam, 300 full-batch epochs each:")
best_spiral = search(X_spiral, y_spiral, [16, 32, 64, 128], 300, 300)

X_train, y_train, X_test, y_test = load_mnist_sample()
print(f"\nMNIST sample, {args.trials} trials, Adam, {args.epochs} epochs of batch 100 each:")
best = search(X_train, y_train, [32, 64, 128, 256], args.epochs, 100)

# %%
# Babysitting the winner
# ----------------------
# The best MNIST trial trained again with ``update_ratios=True``: ``history`` then holds,
# per epoch and layer, ``||dW|| / ||W||`` of the epoch's first step. The test accuracy
# comes last, once.

model = fastmlp.MLP((best["hidden"],), seed=0)
model.fit(X_train, y_train, epochs=args.epochs, batch_size=100,
          learning_rate=best["learning_rate"], l2=best["l2"], validation_split=0.2,
          update_ratios=True, verbose=0)
history = model.history
print(f"\nwinner: learning rate {best['learning_rate']:.2e}, hidden {best['hidden']}, "
      f"L2 {best['l2']:.1e}; test accuracy {model.score(X_test, y_test):.3f}")
for name in ("update_ratio_W0", "update_ratio_W1"):
    values = history[name]
    print(f"{name}: first epoch {values[0]:.1e}, last {values[-1]:.1e} "
          f"(log10 {math.log10(values[-1]):.1f}; the notes' healthy value is about -3)")

# %%
# The plots
# ---------

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed: no figure")
if plt is not None:
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_ratio) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, history["loss"], "o-", ms=3, label="training (running)")
    ax_loss.plot(epochs, history["val_loss"], "o-", ms=3, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for name in ("update_ratio_W0", "update_ratio_W1"):
        ax_ratio.semilogy(epochs, history[name], "o-", ms=3, label=name[len("update_"):])
    ax_ratio.axhline(1e-3, color="grey", lw=1, ls="--", label="1e-3")
    ax_ratio.set(xlabel="epoch", ylabel="||dW|| / ||W||", title="update / weight")
    ax_ratio.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "hyperparameter_search.png", dpi=100)
    print(f"saved {args.out / 'hyperparameter_search.png'}")
