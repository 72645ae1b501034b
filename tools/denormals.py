#!/usr/bin/env python
"""Do the kernels slow down on denormal (subnormal) inputs? Prints time ratios.

Each kernel runs on normal inputs (standard normal values) and on the same values scaled
into the subnormal range (~1e-310 in float64, ~1e-40 in float32), best of several
repeats; the ratio denormal / normal is printed per backend and dtype. x86 CPUs take a
microcode assist (~100 cycles) on many operations with a subnormal operand or result,
unless flush-to-zero / denormals-are-zero are on (they are not: fastmlp never changes
the floating-point environment, and NumPy does not either).

Not a test: timings depend on the machine. Usage:
    python tools/denormals.py [--repeats 7] [--backend all] [--size 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SUBNORMAL_SCALE = {np.dtype(np.float64): 1e-310, np.dtype(np.float32): 1e-40}


def best_time(call, repeats):
    call()  # warm-up (and Numba compilation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def workloads(size, dtype, denormal, seed=0):
    from fastmlp import ops

    rng = np.random.default_rng(seed)
    scale = SUBNORMAL_SCALE[np.dtype(dtype)] if denormal else 1.0
    Z = (rng.standard_normal((size, size)) * scale).astype(dtype)
    if denormal:
        assert np.all(np.abs(Z[Z != 0]) < np.finfo(dtype).smallest_normal)
    X = (rng.standard_normal((size, size)) * scale).astype(dtype)
    W = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(dtype)
    b = np.zeros(size, dtype)
    dA = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty((size, size), dtype)
    return {
        "activation_forward sigmoid": lambda: ops.activation_forward("sigmoid", Z, out=out),
        "activation_forward relu": lambda: ops.activation_forward("relu", Z, out=out),
        "activation_forward tanh": lambda: ops.activation_forward("tanh", Z, out=out),
        "activation_forward softplus": lambda: ops.activation_forward("softplus", Z, out=out),
        "activation_backward sigmoid (A subnormal)":
            lambda: ops.activation_backward("sigmoid", dA, Z, out=out),
        "dense_forward sigmoid (X subnormal)":
            lambda: ops.dense_forward(X, W, b, "sigmoid", out=out),
        "dense_forward relu (X subnormal)": lambda: ops.dense_forward(X, W, b, "relu", out=out),
        "softmax (Z subnormal)": lambda: ops.softmax(Z, out=out),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="all")
    parser.add_argument("--size", type=int, default=512, help="arrays are size x size")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    import fastmlp

    backends = fastmlp.available_backends() if args.backend == "all" else [args.backend]
    print(f"denormal / normal time ratio, {args.size}x{args.size} arrays, best of "
          f"{args.repeats}; subnormal inputs ~1e-310 (float64), ~1e-40 (float32)")
    print(f"{'kernel':<42} {'backend':<7} {'dtype':<8} {'normal':>10} {'denormal':>10} "
          f"{'ratio':>7}")
    for backend in backends:
        with fastmlp.use_backend(backend):
            for dtype in (np.float32, np.float64):
                normal = workloads(args.size, dtype, False)
                denormal = workloads(args.size, dtype, True)
                for name in normal:
                    t0 = best_time(normal[name], args.repeats)
                    t1 = best_time(denormal[name], args.repeats)
                    print(f"{name:<42} {backend:<7} {np.dtype(dtype).name:<8} "
                          f"{t0 * 1e3:>8.2f}ms {t1 * 1e3:>8.2f}ms {t1 / t0:>7.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
