#!/usr/bin/env python
"""Leak soak: call every fastmlp.ops kernel and NetworkPlan.train_step many times and
report how much memory stayed behind.

For each workload: a warm-up, then
- N calls between two readings of the process's resident set (RSS, /proc/self/statm),
  which sees every allocation, C-level malloc (the C core, Numba's runtime) included;
- N more calls under tracemalloc: bytes of Python-level allocations (objects, and NumPy
  buffers, which NumPy reports to tracemalloc) that grew and were still alive after them
  (a pass of its own: tracemalloc makes each call ~4x slower).
A leak of one object or one small buffer per call shows as growth proportional to N; noise
is a few KB of tracemalloc (interned objects, freelists) and the allocator's page-level
RSS behaviour.

Usage:
    python tools/soak.py                      # 10^5 calls per kernel, 10^3 train_steps, "c"
    python tools/soak.py --backend all --calls 20000 --steps 1000
The test suite runs a smaller version (tests/test_soak.py) through `run_soak`.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE")

try:  # glibc: give free heap pages back to the OS, so that RSS follows the memory in use
    import ctypes

    _malloc_trim = ctypes.CDLL(None).malloc_trim
    _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _malloc_trim = None


def trim_heap():
    """Release the allocator's free memory (glibc malloc_trim): without it, a long-running
    process (a test session) has megabytes of freed but resident heap, which a leak would
    fill up without moving the RSS."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def rss_bytes():
    """The resident set size now (Linux /proc/self/statm; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class SoakResult:
    name: str
    calls: int  # untraced calls, between the two RSS measurements
    traced_calls: int  # calls under tracemalloc
    seconds: float  # of the untraced calls
    traced_growth: int  # bytes of tracemalloc allocations that grew over the traced calls
    traced_blocks: int  # number of allocations that grew
    rss_growth: int  # bytes, over the untraced calls

    def row(self):
        per_call = self.traced_growth / max(self.traced_calls, 1)
        return (f"{self.name:<44} {self.calls:>7} {1e6 * self.seconds / max(self.calls, 1):>7.1f} "
                f"{self.rss_growth / 1024:>8.0f} KiB {self.traced_calls:>7} "
                f"{self.traced_growth:>8} B {self.traced_blocks:>6} {per_call:>7.3f} B")


HEADER = (f"{'workload':<44} {'calls':>7} {'us/call':>7} {'RSS grew':>12} {'traced':>7} "
          f"{'tracemalloc':>10} {'blocks':>6} {'per call':>9}")


def soak(name, call, n, warmup=None, traced=None):
    """Run call() n times after a warm-up, measuring RSS; then `traced` more times (default
    n) under tracemalloc (which slows the calls ~4x, so it gets its own pass)."""
    traced = n if traced is None else traced
    for _ in range(warmup if warmup is not None else min(n, 1000)):
        call()
    trim_heap()
    rss_before = rss_bytes()
    start = time.perf_counter()
    for _ in range(n):
        call()
    seconds = time.perf_counter() - start
    trim_heap()
    rss_growth = rss_bytes() - rss_before
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(traced):
            call()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # ignore tracemalloc's and this module's own bookkeeping
    filters = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, __file__)]
    stats = after.filter_traces(filters).compare_to(before.filter_traces(filters), "traceback")
    grown = [s for s in stats if s.size_diff > 0]
    return SoakResult(name, n, traced, seconds, sum(s.size_diff for s in grown),
                      sum(max(s.count_diff, 0) for s in grown), rss_growth)


def kernel_workloads(backend, dtype=np.float32, seed=0):
    """(name, call) for every public kernel on small shapes, plus two refused calls."""
    import fastmlp
    from fastmlp import ops

    rng = np.random.default_rng(seed)
    n, n_in, n_out = 8, 6, 4
    X = rng.standard_normal((n, n_in)).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = np.tanh(X @ W + b).astype(dtype)
    dA = rng.standard_normal((n, n_out)).astype(dtype)
    y = rng.integers(0, n_out, n)
    T = rng.integers(0, 2, (n, n_out)).astype(dtype)
    out = np.empty((n, n_out), dtype)
    p, g = rng.standard_normal(32).astype(dtype), rng.standard_normal(32).astype(dtype)
    vel, m, v = np.zeros(32, dtype), np.zeros(32, dtype), np.zeros(32, dtype)
    Xf = np.asfortranarray(X)  # a copy on every call
    bad_y = np.full(n, n_out)

    def refused(f, exc):
        def call():
            try:
                f()
            except exc:
                pass
            else:  # pragma: no cover
                raise AssertionError("expected an error")
        return call

    def active(f):
        def call():
            with fastmlp.use_backend(backend):
                return f()
        return call

    workloads = {
        "activation_forward": lambda: ops.activation_forward("sigmoid", X),
        "activation_forward(out=)": lambda: ops.activation_forward("relu", A, out=out),
        "activation_backward": lambda: ops.activation_backward("tanh", dA, A),
        "dense_forward": lambda: ops.dense_forward(X, W, b, "relu"),
        "dense_forward(F-order X)": lambda: ops.dense_forward(Xf, W, b, "tanh"),
        "dense_backward": lambda: ops.dense_backward(dA, X, W, A, "tanh", l2=1e-3, l1=1e-4),
        "softmax": lambda: ops.softmax(A),
        "log_softmax": lambda: ops.log_softmax(A),
        "softmax_cross_entropy": lambda: ops.softmax_cross_entropy(A, y),
        "softmax_cross_entropy(sample_weight)":
            lambda: ops.softmax_cross_entropy(A, y, sample_weight=np.ones(n, dtype)),
        "sigmoid_binary_cross_entropy": lambda: ops.sigmoid_binary_cross_entropy(A, T),
        "mean_squared_error": lambda: ops.mean_squared_error(A, T),
        "sgd_update": lambda: ops.sgd_update(p, g, 0.0),
        "momentum_update": lambda: ops.momentum_update(p, g, vel, 0.0, 0.9, nesterov=True),
        "adam_update": lambda: ops.adam_update(p, g, m, v, 3, 0.0),
        "refused: bad label": refused(lambda: ops.softmax_cross_entropy(A, bad_y), ValueError),
        "refused: int array": refused(lambda: ops.softmax(y.reshape(2, -1)), TypeError),
    }
    return [(f"{backend}: {name}", active(f)) for name, f in workloads.items()]


def plan_workloads(backend, dtype=np.float32, seed=0):
    """train_step, train_epoch, forward and a refused train_step of one plan."""
    import fastmlp
    from fastmlp.datasets import make_spiral

    X, y = make_spiral(100, 3, seed=seed, dtype=dtype)
    plan = fastmlp.NetworkPlan([2, 100, 3], "relu", optimizer="adam", learning_rate=1e-3,
                               batch_size=300, dtype=dtype, seed=seed, backend=backend)
    small = fastmlp.NetworkPlan([2, 16, 3], "tanh", optimizer="momentum", batch_size=32,
                                dtype=dtype, seed=seed, backend=backend)
    bad = y.copy()
    bad[-1] = 7

    def refused():
        try:
            plan.train_step(X, bad)
        except ValueError:
            pass

    return [
        (f"{backend}: NetworkPlan.train_step [2,100,3] x300", lambda: plan.train_step(X, y)),
        (f"{backend}: NetworkPlan.train_epoch [2,16,3] 300/32",
         lambda: small.train_epoch(X, y)),
        (f"{backend}: NetworkPlan.forward x300", lambda: plan.forward(X)),
        (f"{backend}: NetworkPlan.train_step refused", refused),
    ]


def run_soak(backends=("c",), calls=10**5, steps=10**3, dtype=np.float32, traced_calls=None,
             traced_steps=None, verbose=True):
    """Soak every workload; returns the list of SoakResult (printed as a table)."""
    results = []
    if verbose:
        print(HEADER, flush=True)
    for backend in backends:
        for name, call in kernel_workloads(backend, dtype):
            results.append(soak(name, call, calls, traced=traced_calls))
            if verbose:
                print(results[-1].row(), flush=True)
        for name, call in plan_workloads(backend, dtype):
            # a longer warm-up: Numba's dispatcher settles its caches over the first calls
            results.append(soak(name, call, steps, warmup=2000, traced=traced_steps))
            if verbose:
                print(results[-1].row(), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="c", help='"c", "numba", "numpy" or "all"')
    parser.add_argument("--calls", type=int, default=10**5, help="calls per kernel")
    parser.add_argument("--steps", type=int, default=10**3, help="calls per plan workload")
    parser.add_argument("--traced-calls", type=int, default=None,
                        help="calls per kernel under tracemalloc (default: --calls)")
    parser.add_argument("--traced-steps", type=int, default=None,
                        help="calls per plan workload under tracemalloc (default: --steps)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    import fastmlp

    backends = fastmlp.available_backends() if args.backend == "all" else [args.backend]
    print(f"fastmlp soak: backends {backends}, {args.calls} calls per kernel, "
          f"{args.steps} per plan workload, {args.dtype}; RSS at start "
          f"{rss_bytes() / 2**20:.1f} MiB")
    start_rss = rss_bytes()
    results = run_soak(backends, args.calls, args.steps, np.dtype(args.dtype),
                       args.traced_calls, args.traced_steps)
    total_traced = sum(r.traced_growth for r in results)
    print(f"total: {sum(r.calls for r in results)} calls (RSS) + "
          f"{sum(r.traced_calls for r in results)} traced, tracemalloc growth {total_traced} B, "
          f"RSS growth over the whole run {(rss_bytes() - start_rss) / 2**20:.2f} MiB "
          f"(includes the warm-ups: first calls, JIT, caches)")


if __name__ == "__main__":
    main()
