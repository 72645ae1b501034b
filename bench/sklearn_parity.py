"""fastmlp's scikit-learn drop-ins against scikit-learn itself, the same fits side by side:
L-BFGS (float64, hidden 100, max_iter=100, same random_state) on load_digits and on the
MNIST sample, and Adam with and without sample_weight. Ratios in one run, one BLAS thread.

    python bench/sklearn_parity.py [--repeats 3]

For each L-BFGS fit it also prints the final losses, the test accuracies and, after 5
iterations, the largest relative difference between the two libraries' coefficients.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlpbench as mb  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastmlp import sklearn as drop_in  # noqa: E402
from fastmlp.datasets import load_mnist_sample  # noqa: E402


def interleaved(fits, repeats):
    """{name: (median seconds, the last fitted model)}, the fits taking turns."""
    times = {name: [] for name in fits}
    models = {}
    for _ in range(repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            models[name] = fit()
            times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(times[name])), models[name]) for name in fits}


def coefficient_gap(a, b):
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y)))
               for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


def lbfgs_row(name, X, y, X_test, y_test, repeats):
    params = dict(hidden_layer_sizes=(100,), solver="lbfgs", max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        runs = interleaved({"sk": lambda: neural_network.MLPClassifier(**params).fit(X, y),
                            "fm": lambda: drop_in.MLPClassifier(**params).fit(X, y)}, repeats)
        (t_sk, sk), (t_fm, fm) = runs["sk"], runs["fm"]
        early = {**params, "max_iter": 5}
        gap = coefficient_gap(drop_in.MLPClassifier(**early).fit(X, y),
                              neural_network.MLPClassifier(**early).fit(X, y))
    return (f"| lbfgs, {name} | {t_sk * 1e3:.0f} ms | {t_fm * 1e3:.0f} ms | "
            f"{t_sk / t_fm:.2f}× | {sk.loss_:.6g} / {fm.loss_:.6g} | "
            f"{sk.score(X_test, y_test):.4f} / {fm.score(X_test, y_test):.4f} | {gap:.1e} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"CPU: {mb.cpu_model()}; SIMD {mb.simd_summary()['simd']}; BLAS: "
          f"{mb.blas_summary()}; OPENBLAS_CORETYPE={mb.thread_env()['OPENBLAS_CORETYPE']}; "
          f"scikit-learn {mb.sklearn_version()}\n")
    digits = load_digits()
    Xd = digits.data / 16.0
    X_train, y_train, X_test, y_test = load_mnist_sample()
    X8 = np.asarray(X_train[:8000], np.float64)
    y8 = np.asarray(y_train[:8000])
    with mb.pinned_threads(1):
        print("| fit | scikit-learn | fastmlp | speed-up | final loss (sk / fm) | "
              "test accuracy (sk / fm) | coefficients after 5 iterations, max rel. diff |")
        print("|---|---:|---:|---:|---|---|---:|")
        print(lbfgs_row("load_digits (1797×64)", Xd[:1500], digits.target[:1500], Xd[1500:],
                        digits.target[1500:], args.repeats))
        print(lbfgs_row("MNIST sample (8000×784)", X8, y8, X_test, y_test, args.repeats))
        # Adam with sample weights against without: what the weights cost
        w = np.random.default_rng(0).uniform(0.5, 2.0, len(X8))
        params = dict(hidden_layer_sizes=(100,), max_iter=5, random_state=0, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits = {
                "without": lambda: drop_in.MLPClassifier(**params).fit(X8, y8),
                "with": lambda: drop_in.MLPClassifier(**params).fit(X8, y8, sample_weight=w),
            }
            runs = interleaved(fits, args.repeats)
        t_without, t_with = runs["without"][0], runs["with"][0]
        print(f"\nadam, MNIST sample, 5 epochs: {t_without * 1e3:.0f} ms without sample_weight, "
              f"{t_with * 1e3:.0f} ms with: {t_with / t_without:.3f}× the time")


if __name__ == "__main__":
    main()
