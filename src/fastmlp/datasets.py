"""Data sets: the course's spiral generator and the embedded MNIST sample."""

from __future__ import annotations

import functools
import gzip
from importlib import resources

import numpy as np

from fastmlp import _validation as check


def make_spiral(n_per_class=100, n_classes=3, noise=0.2, seed=None, dtype=np.float64):
    """The course's spiral: `n_classes` arms of `n_per_class` points in 2-D.

    Arm j has radius ``r = linspace(0, 1, n)`` and angle
    ``t = linspace(4 j, 4 (j + 1), n) + noise * randn(n)``; a point is ``(r sin t, r cos t)``.

    Parameters
    ----------
    n_per_class : int, default 100
        Points per arm.
    n_classes : int, default 3
        Arms (classes).
    noise : float, default 0.2
        Standard deviation of the Gaussian noise on the angle, >= 0.
    seed : int or None, default None
        Seeds the noise (``numpy.random.default_rng(seed)``).
    dtype : float32 or float64, default float64
        The dtype of X.

    Returns
    -------
    X : ndarray of shape (n_per_class * n_classes, 2)
        The points, of `dtype`, arm by arm.
    y : ndarray of shape (n_per_class * n_classes,)
        int64 labels in [0, n_classes): the arm of each point.

    Examples
    --------
    >>> from fastmlp.datasets import make_spiral
    >>> X, y = make_spiral(100, 3, seed=0)
    >>> X.shape, y.shape
    ((300, 2), (300,))
    """
    n = check.positive_int(n_per_class, "n_per_class")
    k = check.positive_int(n_classes, "n_classes")
    noise = check.real_scalar(noise, "noise", low=0)
    rng = np.random.default_rng(seed)
    X = np.zeros((n * k, 2), dtype=dtype)
    y = np.zeros(n * k, dtype=np.int64)
    for j in range(k):
        ix = slice(n * j, n * (j + 1))
        r = np.linspace(0.0, 1, n)
        t = np.linspace(j * 4, (j + 1) * 4, n) + rng.standard_normal(n) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X, y


_MNIST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@functools.lru_cache(maxsize=1)
def _mnist_bytes():
    folder = resources.files("fastmlp") / "data" / "mnist"
    images_file, labels_file = (folder / name for name in _MNIST)
    images = np.frombuffer(gzip.decompress(images_file.read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress(labels_file.read_bytes()), np.uint8, offset=8)
    if images.size != 10000 * 28 * 28 or labels.size != 10000:
        raise OSError("the embedded MNIST sample is damaged; reinstall fastmlp")
    return images.reshape(10000, 28 * 28), labels


def load_mnist_sample(n_train=8000):
    """The embedded MNIST sample: 10,000 real digits, no download.

    MNIST by Y. LeCun, C. Cortes and C. J. C. Burges (CC BY-SA 3.0); these are the
    official t10k images.

    Parameters
    ----------
    n_train : int, default 8000
        The first n_train images train, the rest test.

    Returns
    -------
    X_train : ndarray of shape (n_train, 784)
        float32 pixels in [0, 1], one 28 x 28 image a row.
    y_train : ndarray of shape (n_train,)
        int64 labels 0-9.
    X_test : ndarray of shape (10000 - n_train, 784)
        float32 pixels in [0, 1].
    y_test : ndarray of shape (10000 - n_train,)
        int64 labels 0-9.

    Examples
    --------
    >>> from fastmlp.datasets import load_mnist_sample
    >>> X_train, y_train, X_test, y_test = load_mnist_sample()
    >>> X_train.shape, X_test.shape
    ((8000, 784), (2000, 784))
    """
    n_train = check.positive_int(n_train, "n_train")
    if n_train >= 10000:
        raise ValueError(f"n_train: expected fewer than 10000 rows, got {n_train}")
    images, labels = _mnist_bytes()
    X = images.astype(np.float32) / np.float32(255)
    y = labels.astype(np.int64)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]
