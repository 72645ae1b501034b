"""
An autoencoder on MNIST, and a denoising one
============================================

The course's last topic: a network trained to reproduce its input through a narrow
middle layer learns a code for it. Here ``MLP((256, 32, 256), task="regression")`` is
trained with mean squared error to map the embedded MNIST sample's images to themselves
(784 -> 256 -> 32 -> 256 -> 784); ``model.encode`` gives the 32 numbers of each image's
code. A denoising variant sees images with noise added (drawn afresh every epoch) and is
asked for the clean ones.

Run on its own, the script saves ``autoencoder_reconstructions.png``: originals, their
reconstructions, noisy inputs and the denoising network's outputs, next to it or into
``--out``. Without matplotlib it prints the numbers only::

    python examples/autoencoder.py [--out DIR] [--epochs 15]
"""

# %%
# Training
# --------
# Pixels are in [0, 1]; the error of always answering the mean image is the baseline.

import argparse
import pathlib
import time

import numpy as np

import fastmlp
from fastmlp.datasets import load_mnist_sample

HERE = pathlib.Path(globals().get("__file__", "example.py")).resolve().parent
parser = argparse.ArgumentParser(description="An MNIST autoencoder with fastmlp.MLP.")
parser.add_argument("--out", type=pathlib.Path, default=HERE,
                    help="folder for the PNG file (default: next to this script)")
parser.add_argument("--epochs", type=int, default=15, help="epochs (default: 15)")
args = parser.parse_args()

X_train, _, X_test, _ = load_mnist_sample()
baseline = float(np.mean((X_test - X_train.mean(axis=0)) ** 2))

autoencoder = fastmlp.MLP((256, 32, 256), task="regression", seed=0)
started = time.perf_counter()
autoencoder.fit(X_train, X_train, epochs=args.epochs, batch_size=100,
                learning_rate=2e-3, verbose=0)
seconds = time.perf_counter() - started
reconstructed = autoencoder.predict(X_test)
error = float(np.mean((reconstructed - X_test) ** 2))
code = autoencoder.encode(X_test)
print(f"autoencoder 784-256-32-256-784, {args.epochs} epochs on {len(X_train)} images in "
      f"{seconds:.1f} s: test error {error:.4f} (the mean image: {baseline:.4f}); "
      f"codes of shape {code.shape}")

# %%
# Denoising
# ---------
# Gaussian noise of 0.3 on the input only, a fresh draw every epoch (one ``partial_fit``
# pass each); the target stays the clean image.

rng = np.random.default_rng(0)


def noisy(images):
    return np.clip(images + 0.3 * rng.standard_normal(images.shape, dtype=np.float32), 0, 1)


denoiser = fastmlp.MLP((256, 32, 256), task="regression", seed=0)
for _ in range(args.epochs):
    denoiser.partial_fit(noisy(X_train), X_train, batch_size=100,
                         learning_rate=2e-3)
noisy_test = noisy(X_test)
denoised = denoiser.predict(noisy_test)
print(f"denoising: noisy input error {float(np.mean((noisy_test - X_test) ** 2)):.4f}, "
      f"after the network {float(np.mean((denoised - X_test) ** 2)):.4f}")

# %%
# The picture
# -----------
# Rows: test originals, the autoencoder's reconstructions, noisy inputs, denoised.

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed: no figure")
if plt is not None:
    rows = [("original", X_test), ("reconstructed", reconstructed),
            ("noisy", noisy_test), ("denoised", denoised)]
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 4.4))
    for (title, images), line in zip(rows, axes):
        for i, ax in enumerate(line):
            ax.imshow(np.clip(images[i], 0, 1).reshape(28, 28), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        line[0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "autoencoder_reconstructions.png", dpi=100)
    print(f"saved {args.out / 'autoencoder_reconstructions.png'}")
