"""Where the C backend's own micro-kernels stop beating OpenBLAS: the measurement behind
SMALL_GEMM_FLOPS in src/fastmlp/backends/_c_kernels.pyx.

    python bench/gemm_crossover.py [--levels avx2,avx512] [--dtypes float32]

For each product of the benchmark networks' training steps (bench/mlpbench.py SHAPES, at
the block sizes the engine uses) and a few square ones: the time of fastmlp's gemm on
each micro-kernel set this CPU runs and on OpenBLAS (through the same C entry point),
interleaved, 1 thread, and the ratio. A kernel set should own every product where its
ratio to OpenBLAS stays at or below 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlpbench as mb  # noqa: E402

from fastmlp.backends import _c_kernels as ck  # noqa: E402


def products():
    """(label, m, n, k, trans_a, trans_b): every step product of every shape (the spiral
    per 32-row block as the fused step runs it), then squares around the crossover."""
    seen = []
    for shape in mb.SHAPES.values():
        rows = 32 if shape.name.startswith("spiral") else shape.batch
        for name, m, k, n, ta, tb in mb.gemm_calls(shape.sizes, rows):
            item = (f"{shape.name} {name}", m, n, k, ta, tb)
            if not shape.large and item[1:] not in [s[1:] for s in seen]:
                seen.append(item)
    seen += [(f"square {s}", s, s, s, False, False) for s in (64, 128, 256, 384, 512)]
    return seen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default=",".join(ck.simd_levels()[1:]))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    levels = args.levels.split(",")
    print(f"CPU: {mb.cpu_model()}; SIMD {mb.simd_summary()['simd']}; "
          f"BLAS: {mb.blas_summary()}; OPENBLAS_CORETYPE={mb.thread_env()['OPENBLAS_CORETYPE']}")
    print(f"threshold now: {ck.get_small_gemm_flops()} multiply-adds ({ck.simd_level()})\n")
    rng = np.random.default_rng(0)
    old_level, old_flops = ck.simd_level(), ck.get_small_gemm_flops()
    print("| product | m x n x k | dtype | multiply-adds | " +
          " | ".join(f"{lv} / OpenBLAS" for lv in levels) + " |")
    print("|---|---|---|---:|" + "---:|" * len(levels))
    with mb.pinned_threads(1):
        for dtype in args.dtypes.split(","):
            for label, m, n, k, ta, tb in products():
                A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                C = np.empty((m, n), dtype)

                def run(level, A=A, B=B, C=C, ta=ta, tb=tb):
                    def fn():
                        if level == "blas":
                            ck.set_small_gemm_flops(0)
                        else:
                            ck.select_simd(level)
                            ck.set_small_gemm_flops(1 << 62)
                        ck.gemm(A, B, C, ta, tb)
                    return fn

                fns = {lv: run(lv) for lv in ["blas", *levels]}
                times = mb.time_interleaved(fns, args.repeats, 0.02)
                ratios = " | ".join(f"{times[lv] / times['blas']:.2f}" for lv in levels)
                print(f"| {label} | {m}x{n}x{k} {'T' if ta else 'N'}{'T' if tb else 'N'} | "
                      f"{dtype} | {m * n * k} | {ratios} |", flush=True)
    ck.select_simd(old_level)
    ck.set_small_gemm_flops(old_flops)


if __name__ == "__main__":
    main()
