"""fastmlp.datasets: the course's spiral generator and the embedded MNIST sample."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from fastmlp.datasets import load_mnist_sample, make_spiral

# -- make_spiral ------------------------------------------------------------------------


@pytest.mark.parametrize("n_per_class, n_classes", [(100, 3), (7, 2), (1, 5), (50, 1)])
def test_spiral_shapes_dtypes_and_labels(n_per_class, n_classes):
    X, y = make_spiral(n_per_class, n_classes, seed=0)
    n = n_per_class * n_classes
    assert X.shape == (n, 2) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (n,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.repeat(np.arange(n_classes), n_per_class))
    assert np.isfinite(X).all()
    assert np.hypot(X[:, 0], X[:, 1]).max() <= 1 + 1e-12  # radius linspace(0, 1, n)


def test_spiral_defaults_are_the_course_data_set():
    X, y = make_spiral(seed=0)
    assert X.shape == (300, 2)
    np.testing.assert_array_equal(np.bincount(y), [100, 100, 100])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spiral_dtype(dtype):
    X, y = make_spiral(20, 3, seed=1, dtype=dtype)
    assert X.dtype == dtype and y.dtype == np.int64
    X64, _ = make_spiral(20, 3, seed=1)
    np.testing.assert_allclose(X, X64, rtol=1e-6, atol=1e-7)


def test_spiral_seed_reproducibility():
    a, ya = make_spiral(50, 3, seed=123)
    b, yb = make_spiral(50, 3, seed=123)
    c, _ = make_spiral(50, 3, seed=124)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, c)
    # a Generator is accepted too, and gives the same points as its seed
    d, _ = make_spiral(50, 3, seed=np.random.default_rng(123))
    np.testing.assert_array_equal(a, d)


def test_spiral_geometry():
    n, k = 40, 3
    X, y = make_spiral(n, k, noise=0.0)
    r = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(r, np.tile(np.linspace(0, 1, n), k), atol=1e-12)
    for j in range(k):  # arm j: angle linspace(4 j, 4 (j + 1), n), point (r sin t, r cos t)
        t = np.linspace(4 * j, 4 * (j + 1), n)
        rr = np.linspace(0, 1, n)
        np.testing.assert_allclose(X[y == j], np.c_[rr * np.sin(t), rr * np.cos(t)],
                                   atol=1e-12)
    # noise moves the angle, never the radius
    Xn, _ = make_spiral(n, k, noise=0.5, seed=0)
    np.testing.assert_allclose(np.hypot(Xn[:, 0], Xn[:, 1]), r, atol=1e-12)
    assert not np.allclose(Xn, X)


@pytest.mark.parametrize(
    "kwargs, exception, name",
    [
        ({"n_per_class": 0}, ValueError, "n_per_class"),
        ({"n_per_class": -5}, ValueError, "n_per_class"),
        ({"n_per_class": 2.5}, TypeError, "n_per_class"),
        ({"n_classes": 0}, ValueError, "n_classes"),
        ({"n_classes": "3"}, TypeError, "n_classes"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"noise": "a lot"}, TypeError, "noise"),
    ],
)
def test_spiral_bad_arguments(kwargs, exception, name):
    with pytest.raises(exception, match=name):
        make_spiral(**kwargs)


# -- load_mnist_sample ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_sample()


def test_mnist_shapes_and_dtypes(mnist):
    X_train, y_train, X_test, y_test = mnist
    assert X_train.shape == (8000, 784) and X_test.shape == (2000, 784)
    assert y_train.shape == (8000,) and y_test.shape == (2000,)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64


def test_mnist_values(mnist):
    X_train, y_train, X_test, y_test = mnist
    for X in (X_train, X_test):
        assert X.min() == 0.0 and X.max() == 1.0
        # pixels are bytes / 255: every value is k / 255 for an integer k
        k = X * 255
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)
        assert 0.05 < np.mean(X > 0) < 0.5  # digits: mostly background
    for y in (y_train, y_test):
        assert y.min() == 0 and y.max() == 9
        np.testing.assert_array_equal(np.unique(y), np.arange(10))  # all ten classes
        assert np.bincount(y).min() > 0.05 * len(y)


def test_mnist_first_labels(mnist):
    np.testing.assert_array_equal(mnist[1][:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


def test_mnist_first_image_is_a_seven(mnist):
    image = mnist[0][0].reshape(28, 28)
    assert image[:4].max() == 0 and image[:, :4].max() == 0  # empty margins
    assert image[-1].max() == 0 and image[:, -4:].max() == 0
    ink = (image > 0.5).sum(axis=1)
    assert 7 <= np.argmax(ink) <= 9 and ink.max() >= 12  # the bar of the 7, at the top
    assert ink[12:26].max() <= 4  # below it, a narrow stroke


@pytest.mark.parametrize("n_train", [1, 6000, 9999])
def test_mnist_n_train(mnist, n_train):
    X_train, y_train, X_test, y_test = load_mnist_sample(n_train)
    assert X_train.shape == (n_train, 784) and y_train.shape == (n_train,)
    assert X_test.shape == (10000 - n_train, 784) and y_test.shape == (10000 - n_train,)
    X_all = np.concatenate([mnist[0], mnist[2]])
    y_all = np.concatenate([mnist[1], mnist[3]])
    np.testing.assert_array_equal(np.concatenate([X_train, X_test]), X_all)
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), y_all)


@pytest.mark.parametrize(
    "n_train, exception", [(0, ValueError), (10000, ValueError), (12000, ValueError),
                           (-1, ValueError), (0.5, TypeError), ("8000", TypeError)]
)
def test_mnist_bad_n_train(n_train, exception):
    with pytest.raises(exception, match="n_train"):
        load_mnist_sample(n_train)


def test_mnist_returns_fresh_arrays():
    X_train, y_train, _, _ = load_mnist_sample()
    X_train[...] = -1
    y_train[...] = -1
    X2, y2, _, _ = load_mnist_sample()
    assert X2.min() == 0 and y2.min() == 0  # the cached data was not modified


def test_mnist_package_data_carries_its_attribution():
    folder = resources.files("fastmlp") / "data" / "mnist"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for needed in ("LeCun", "Cortes", "Burges", "CC BY-SA 3.0", "t10k"):
        assert needed in readme
    # the embedded files are the published ones
    sums = (folder / "MD5SUMS").read_text(encoding="utf-8").split("\n")
    checked = 0
    for line in filter(None, sums):
        digest, name = line.split()
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == digest, name
        checked += 1
    assert checked == 2
