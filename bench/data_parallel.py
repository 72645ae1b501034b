"""One model on several workers, measured: fastmlp.dask.fit on a LocalCluster of 2 worker
processes (1 thread each) against one process's MLP.fit, and a projection to 8, 32 and
128 workers from the measured parts.

    python bench/data_parallel.py [--epochs 10] [--quick]

The workload: the embedded MNIST sample (8000 rows train, 2000 test), 784-100-10 relu,
Adam, float32, batch 100 in one process. Model averaging trains batches of 100 on each
partition; gradient averaging batches of 50 on each (one step: 100 rows, as in one
process); model averaging also runs with batches of 50 (as many steps per epoch as one
process). BLAS is pinned to one thread and fastmlp runs one thread, in the driver and in
each worker: the workers are the parallelism.

Figures: test accuracy, seconds per epoch (the whole fit over its epochs: the first epoch
includes encoding the partitions on the workers), scaling efficiency = (single-process
time / 2-worker time) / 2. Parts: one step's compute, one round trip through the
scheduler (2 trivial tasks), the bytes sent each way per synchronisation. The machine's
load (/proc/loadavg) is printed before and after: on a shared machine the figures are
noisy, and must be measured again on a quiet one before they are quoted as the speed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastmlp
from fastmlp.datasets import load_mnist_sample

BANDWIDTH = 1.25e9  # bytes/s: 10 GbE, the assumed network of the projection


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _noop(i):
    return i


def _mnist_rows(part, rows):
    """Rows part*rows:(part+1)*rows of the MNIST sample's (X, y), loaded on the worker:
    the data never passes through the graph, and a lost partition is loaded again."""
    X, y, _, _ = load_mnist_sample()
    return X[part * rows:(part + 1) * rows], y[part * rows:(part + 1) * rows]


def mnist_on_workers(parts, rows):
    """The training rows as Dask arrays of `parts` row chunks, each loaded by a worker."""
    import dask
    import dask.array as da

    pieces = [dask.delayed(_mnist_rows)(p, rows) for p in range(parts)]
    X = da.concatenate([da.from_delayed(piece[0], (rows, 784), np.float32) for piece in pieces])
    y = da.concatenate([da.from_delayed(piece[1], (rows,), np.int64) for piece in pieces])
    return X, y


def round_trip(client, workers, repeats=50):
    """Seconds of one synchronisation with no work: a trivial task per worker, gathered."""
    client.gather([client.submit(_noop, w, pure=False) for w in range(workers)])  # warm
    start = time.perf_counter()
    for _ in range(repeats):
        client.gather([client.submit(_noop, w, pure=False) for w in range(workers)])
    return (time.perf_counter() - start) / repeats


def step_time(X, y, batch, repeats=200):
    """Seconds of one train_step and of one loss_and_gradient, 784-100-10, on batch rows."""
    plan = fastmlp.NetworkPlan([784, 100, 10], "relu", optimizer="adam", batch_size=batch,
                               dtype=np.float32, seed=0, n_threads=1)
    Xb, yb = X[:batch], y[:batch]
    times = []
    for fn in (lambda: plan.train_step(Xb, yb), lambda: plan.loss_and_gradient(Xb, yb)):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return times


def projection(t_step, latency, n_params, itemsize):
    """Seconds per round and speed-up over one process for N workers: each worker trains
    k steps of the batch (t_step each), then the driver exchanges the state with every
    worker over one link (a star: N times the bytes each way) and pays the round trip."""
    print(f"\nProjection (a step {t_step * 1e3:.2f} ms, a round trip {latency * 1e3:.1f} ms "
          f"as measured here, {BANDWIDTH / 1e9:.2f} GB/s at the driver: 10 GbE, assumed):")
    print(f"{'strategy':<24}{'N':>5}{'bytes/sync':>12}{'round ms':>10}{'speed-up':>10}"
          f"{'efficiency':>11}")
    cases = [("gradient_average", 1, 1), ("model_average k=10", 10, 3),
             ("model_average k=40", 40, 3)]
    for name, k, arrays in cases:
        sync_bytes = arrays * n_params * itemsize  # each way, per worker
        for n in (2, 8, 32, 128):
            transfer = 2 * n * sync_bytes / BANDWIDTH
            round_s = k * t_step + latency + transfer
            speedup = n * k * t_step / round_s
            print(f"{name:<24}{n:>5}{sync_bytes:>12,}{round_s * 1e3:>10.2f}{speedup:>10.2f}"
                  f"{speedup / n:>11.2f}")
    # the step time at which gradient averaging breaks even with one process, per N
    print("\nGradient averaging pays (speed-up > 1) only when a step's compute exceeds "
          "(latency + 2 N bytes / bandwidth) / (N - 1):")
    for n in (2, 8, 32, 128):
        need = (latency + 2 * n * n_params * itemsize / BANDWIDTH) / (n - 1)
        print(f"  N={n:>3}: a step of more than {need * 1e3:.2f} ms "
              f"({need / t_step:.0f}x this one)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 epochs, fewer repeats")
    args = parser.parse_args()
    epochs = 3 if args.quick else args.epochs

    import distributed

    import fastmlp.dask

    print(f"load before: {loadavg()}")
    X, y, X_test, y_test = load_mnist_sample()
    n_params = 784 * 100 + 100 + 100 * 10 + 10
    with threadpool_limits(1):
        t_step, t_grad = step_time(X, y, 100, repeats=50 if args.quick else 200)
        print(f"one step, batch 100: train_step {t_step * 1e3:.3f} ms, loss_and_gradient "
              f"{t_grad * 1e3:.3f} ms")
        start = time.perf_counter()
        single = fastmlp.MLP((100,), seed=0, n_threads=1).fit(
            X, y, epochs=epochs, batch_size=100, verbose=0)
        t_single = (time.perf_counter() - start) / epochs
        acc_single = single.score(X_test, y_test)
        print(f"\n{'run':<34}{'accuracy':>9}{'s/epoch':>9}{'efficiency':>11}")
        print(f"{'1 process, MLP.fit':<34}{acc_single:>9.4f}{t_single:>9.3f}{'':>11}")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            Xd, yd = mnist_on_workers(2, len(X) // 2)
            runs = [("model_average", 100, 10), ("model_average", 100, 40),
                    ("model_average", 50, 40), ("gradient_average", 50, 1)]
            for strategy, batch, k in runs:
                start = time.perf_counter()
                model = fastmlp.dask.fit(
                    fastmlp.MLP((100,), seed=0, n_threads=1), Xd, yd, client=client,
                    epochs=epochs, batch_size=batch, strategy=strategy, sync_every=k)
                t = (time.perf_counter() - start) / epochs
                acc = model.score(X_test, y_test)
                label = f"2 workers, {strategy} k={k} b={batch}"
                print(f"{label:<34}{acc:>9.4f}{t:>9.3f}{t_single / t / 2:>11.2f}"
                      f"   ({(acc - acc_single) * 100:+.2f} points)")
            latency = round_trip(client, 2, repeats=20 if args.quick else 50)
    print(f"\nround trip through the scheduler, 2 tasks: {latency * 1e3:.1f} ms; "
          f"bytes per synchronisation each way and worker: weights {n_params * 4:,} "
          f"(float32), weights + Adam's m and v {3 * n_params * 4:,}")
    projection(t_step, latency, n_params, 4)
    print(f"\nload after: {loadavg()}")


if __name__ == "__main__":
    main()
