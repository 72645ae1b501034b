"""Many fits: one hyper-parameter search run serially, on 2 joblib threads, on 2 joblib
processes and on a Dask LocalCluster of 2 worker processes; fastmlp's drop-in beside
scikit-learn's own MLPClassifier.

    python bench/search.py [--quick] [--rows 8000] [--epochs 10] [--folds 3]
                           [--no-sklearn] [--no-processes] [--no-dask]

The search: GridSearchCV of 8 candidates (hidden 64 or 128 x learning rate 1e-3 or 3e-3 x
alpha 1e-4 or 1e-3; adam, batch 200, `--epochs` epochs, no early stop) with `--folds`-fold
KFold on the first `--rows` rows of the embedded MNIST sample (float32), refit=False (the
search alone is timed). Each estimator's runs:

- serial: n_jobs=1 with every BLAS pool and fastmlp held to 1 thread (threadpoolctl),
  the baseline of every ratio; for fastmlp also "serial, default threads": n_jobs=1 with
  nothing pinned (each fit on fastmlp's threads), what one gets without a parallel search;
- threads: n_jobs=2 under joblib's threading backend. fastmlp is not pinned: its thread
  policy gives each fit 1 thread and holds OpenBLAS to 1 meanwhile. scikit-learn's MLP
  runs with BLAS pinned to 1 (else its fits' OpenBLAS calls would take both cores each);
- processes: n_jobs=2 under joblib's loky backend (workers started and warmed up before
  the clock starts; joblib sets their OMP/OPENBLAS_NUM_THREADS);
- Dask: n_jobs=2 under joblib.parallel_config(backend="dask") on a distributed.LocalCluster
  of 2 single-threaded worker processes (started and warmed up before the clock starts).

Each row gives the wall time, serial / run (the speed-up), the fits' own time (fit and
score, summed over the fits, as scikit-learn timed them where they ran: what the workers
did, beside what the dispatch cost), this process's CPU time, and whether the best
parameters and every split's score equal the serial run's. One run of
each, measured in one process: /proc/loadavg is printed before and after, and others =
CPUs' worth of time other processes used meanwhile (the worker processes of the
processes and Dask rows count as others).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlpbench as mb  # noqa: E402

from fastmlp.datasets import load_mnist_sample  # noqa: E402

GRID = {"hidden_layer_sizes": [(64,), (128,)], "learning_rate_init": [1e-3, 3e-3],
        "alpha": [1e-4, 1e-3]}
JOBS = 2


def loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return ["?"] * 3


def estimators(include_sklearn):
    from fastmlp.sklearn import MLPClassifier as FastClassifier

    out = {"fastmlp": FastClassifier}
    if include_sklearn:
        from sklearn.neural_network import MLPClassifier

        out["scikit-learn"] = MLPClassifier
    return out


def search(estimator_class, args, n_jobs):
    from sklearn.model_selection import GridSearchCV, KFold

    estimator = estimator_class(max_iter=args.epochs, batch_size=200, random_state=0,
                                n_iter_no_change=args.epochs + 1)
    return GridSearchCV(estimator, GRID, cv=KFold(args.folds, shuffle=True, random_state=0),
                        n_jobs=n_jobs, refit=False)


def timed_search(estimator_class, args, X, y, n_jobs, backend=None, pin=False):
    """(the fitted search, wall s, this process's CPU s, other processes' CPUs)."""
    from joblib import parallel_config
    from sklearn.exceptions import ConvergenceWarning

    s = search(estimator_class, args, n_jobs)
    with warnings.catch_warnings(), parallel_config(backend=backend) if backend else \
            nullcontext(), mb.pinned_threads(1) if pin else nullcontext():
        warnings.simplefilter("ignore", ConvergenceWarning)
        meter = mb.LoadMeter()
        c0, t0 = time.process_time(), time.perf_counter()
        s.fit(X, y)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        others = meter.stop()["others_cpus"]
    return s, wall, cpu, others


def same_results(serial, other):
    """(same best parameters, every split's score and the ranks the same bits)."""
    keys = [k for k in serial.cv_results_ if k.startswith(("split", "rank"))]
    same_scores = all(np.array_equal(serial.cv_results_[k], other.cv_results_[k])
                      for k in keys)
    return serial.best_params_ == other.best_params_, same_scores


def fits_time(fitted, args):
    """The fits' and scorings' own time summed over every candidate and split, as
    scikit-learn timed them where they ran."""
    results = fitted.cv_results_
    return float(np.sum(results["mean_fit_time"] + results["mean_score_time"]) * args.folds)


def warm_loky():
    from joblib import Parallel, delayed

    Parallel(n_jobs=JOBS, backend="loky")(
        delayed(importlib.import_module)(m) for m in ("fastmlp.sklearn", "sklearn.neural_network"))


def dask_cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=JOBS, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0")
    client = Client(cluster)
    for module in ("fastmlp.sklearn", "sklearn.neural_network"):
        client.run(importlib.import_module, module)
    return cluster, client


def fmt_params(params):
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1500 rows (or --rows if fewer), 2 epochs, 2 folds")
    ap.add_argument("--no-sklearn", action="store_true", help="fastmlp only")
    ap.add_argument("--no-processes", action="store_true", help="no loky row")
    ap.add_argument("--no-dask", action="store_true", help="no Dask row")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.folds = min(args.rows, 1500), 2, 2
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("search.py needs scikit-learn (pip install 'fastmlp[sklearn]')")
        return 1
    if not args.no_dask:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("no Dask row: the 'dask' extra is not installed")
            args.no_dask = True

    X_all, y_all, _, _ = load_mnist_sample()
    X, y = X_all[:args.rows], y_all[:args.rows]
    print(mb.machine_line())
    print(f"search: GridSearchCV, {len(GRID['hidden_layer_sizes']) * 4} candidates x "
          f"{args.folds} folds, {args.rows} MNIST rows (float32), {args.epochs} epochs, "
          f"batch 200, n_jobs={JOBS}{' (--quick)' if args.quick else ''}")
    start_load = loadavg()
    print(f"/proc/loadavg before: {' '.join(start_load)}")

    cluster = client = None
    if not args.no_processes:
        warm_loky()
    if not args.no_dask:
        cluster, client = dask_cluster()
    rows = []
    try:
        for name, cls in estimators(not args.no_sklearn).items():
            serial, *serial_t = timed_search(cls, args, X, y, 1, pin=True)
            runs = [("serial", serial, serial_t)]
            if name == "fastmlp":
                s, *t = timed_search(cls, args, X, y, 1)
                runs.append(("serial, default threads", s, t))
            s, *t = timed_search(cls, args, X, y, JOBS, "threading",
                                 pin=name != "fastmlp")
            runs.append((f"threads, n_jobs={JOBS}", s, t))
            if not args.no_processes:
                s, *t = timed_search(cls, args, X, y, JOBS, "loky")
                runs.append((f"processes (loky), n_jobs={JOBS}", s, t))
            if client is not None:
                s, *t = timed_search(cls, args, X, y, JOBS, "dask")
                runs.append((f"Dask LocalCluster, {JOBS} workers", s, t))
            for label, s, (wall, cpu, others) in runs:
                same_best, same_scores = same_results(serial, s)
                rows.append((name, label, wall, serial_t[0] / wall, cpu, others,
                             same_best, same_scores, s.best_params_, fits_time(s, args)))
            print(f"  {name} done ({sum(r[2] for r in rows if r[0] == name):.1f} s)",
                  flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()

    print(f"/proc/loadavg after: {' '.join(loadavg())}\n")
    print("| estimator | run | wall | serial / run | fits' own time | CPU (this process) | "
          "others | same best params | same scores |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for name, label, wall, ratio, cpu, others, same_best, same_scores, _, fits in rows:
        others_text = "?" if others is None else f"{others:.2f}"
        print(f"| {name} | {label} | {wall:.2f} s | {ratio:.2f}× | {fits:.2f} s | "
              f"{cpu:.2f} s | {others_text} | {'yes' if same_best else 'NO'} | "
              f"{'yes' if same_scores else 'no'} |")
    print()
    for name in dict.fromkeys(r[0] for r in rows):
        best = next(r[8] for r in rows if r[0] == name)
        print(f"{name} serial best: {fmt_params(best)}")
    return 0 if all(r[6] for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
