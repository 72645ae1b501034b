"""fastmlp's threads, measured: 1 against 2 (or --threads N) threads for the issue's
workloads, beside S, the speed-up of a large sgemm on the same threads (the ceiling this
machine gives), and the CPU time each run burns.

    python bench/threads.py [--threads 2] [--repeats 5] [--quick]

Every fastmlp run pins BLAS to one thread (threadpoolctl): the threads are fastmlp's.
Rows: the MNIST epoch (8000 rows, batch 100, Adam, float32), the mid and large steps, the
spiral step, MLP.predict on 100,000 MNIST rows. The results are the same bits on any
number of threads (tests/test_pool.py); this measures only the time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlpbench as mb  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp.datasets import load_mnist_sample  # noqa: E402


def timed(fns, repeats):
    """{name: (median wall seconds, median CPU seconds)}, interleaved rounds."""
    for fn in fns.values():
        fn()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in fns}


def sgemm_speedup(threads, repeats):
    from threadpoolctl import threadpool_limits

    A = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    C = np.empty_like(A)
    out = {}
    for n in (1, threads):
        with threadpool_limits(n):
            out[n] = timed({"gemm": lambda: np.dot(A, A, out=C)}, repeats)["gemm"][0]
    return out[1] / out[threads]


def plans(sizes, act, optimizer, lr, batch, threads, dtype=np.float32, **kw):
    return {n: fastmlp.NetworkPlan(sizes, act, optimizer=optimizer, learning_rate=lr,
                                   batch_size=batch, dtype=dtype, seed=0, n_threads=n,
                                   backend="c", **kw) for n in (1, threads)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="no large step")
    args = ap.parse_args(argv)
    T, R = args.threads, args.repeats
    print(mb.machine_line())
    rows = []
    X_train, y_train, X_test, _ = load_mnist_sample()
    X8 = np.ascontiguousarray(X_train[:8000], np.float32)
    y8 = np.ascontiguousarray(y_train[:8000])
    rng = np.random.default_rng(0)
    with mb.pinned_threads(1):
        ps = plans([784, 100, 10], "sigmoid", "adam", 1e-3, 100, T)
        rows.append(("MNIST epoch (8000 rows, b100, Adam)", timed(
            {n: (lambda p=p: p.train_epoch(X8, y8, batch_size=100, shuffle=False))
             for n, p in ps.items()}, R)))
        for name, sizes, batch, reps in [("mid step (b1024 784-512-512-10)", [784, 512, 512, 10],
                                          1024, R),
                                         ("large step (b4096 1024-2048-2048-1000)",
                                          [1024, 2048, 2048, 1000], 4096, 2)]:
            if args.quick and name.startswith("large"):
                continue
            X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
            y = rng.integers(0, sizes[-1], batch)
            ps = plans(sizes, "relu", "sgd", 0.01, batch, T)
            rows.append((name, timed({n: (lambda p=p: p.train_step(X, y))
                                      for n, p in ps.items()}, reps)))
        X, y = fastmlp.datasets.make_spiral(100, 3, seed=0)
        ps = plans([2, 100, 3], "relu", "sgd", 1.0, 300, T, dtype=np.float64)
        rows.append(("spiral step (300×2-100-3, f64)", timed(
            {n: (lambda p=p: [p.train_step(X, y) for _ in range(100)]) for n, p in ps.items()},
            R)))
        X100k = np.ascontiguousarray(np.tile(X_test.astype(np.float32), (50, 1))[:100_000])
        models = {n: fastmlp.MLP((100,), "sigmoid", seed=0, n_threads=n).fit(
            X8[:1000], y8[:1000], epochs=1, verbose=0) for n in (1, T)}
        rows.append(("MLP.predict, 100,000 MNIST rows", timed(
            {n: (lambda m=m: m.predict(X100k)) for n, m in models.items()}, R)))
    # last: OpenBLAS's threads spin for a while after a threaded sgemm, and would take a
    # core from the workloads above
    S = sgemm_speedup(T, R)
    print(f"S = {S:.2f} (2048² sgemm, {T} OpenBLAS threads over 1)\n")
    print(f"| workload | 1 thread | {T} threads | speed-up | speed-up / S | CPU time "
          f"{T} threads / 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, res in rows:
        (w1, c1), (wT, cT) = res[1], res[T]
        unit, scale = ("ms", 1e3) if w1 >= 1e-3 else ("µs", 1e6)
        if name.startswith("spiral"):
            unit, scale, w1, wT = "µs", 1e4, w1, wT  # 100 steps a call: µs per step
        print(f"| {name} | {w1 * scale:.2f} {unit} | {wT * scale:.2f} {unit} | "
              f"{w1 / wT:.2f}× | {w1 / wT / S:.2f} | {cT / c1:.2f} |")


if __name__ == "__main__":
    main()
