"""The machine's floating-point peak on one core, measured: chains of FMAs in registers.

    python bench/fma_peak.py            # prints GFLOP/s per instruction set and dtype

A small C source (below) is compiled at run time with the system's C compiler (``$CC``,
else ``cc``, ``gcc`` or ``clang``) into a shared library in a temporary directory, once
per instruction set the CPU reports (AVX-512F, AVX2+FMA, baseline SSE2), and called
through ctypes. Each variant keeps many independent accumulators in vector registers
(16 for AVX-512's 32 registers, 12 for the 16 of AVX2 and SSE2): an FMA has a latency
of 4-5 cycles and up to two issue per cycle, so at least 8-10 independent chains are
needed to keep the FMA ports busy. SSE2 has no FMA: its variant does a multiply and an
add (the same two FLOPs per lane). Each accumulator runs ``acc = acc * a + b`` with
``a`` just below 1, so values settle near ``b / (1 - a)``: no overflow, no subnormals.

The peak per dtype is the best variant's best run (calibrated to ~``seconds`` each).
Without a compiler, on a CPU that is not x86-64, or when a variant fails to build, that
figure is None (printed "n/a"); nothing raises.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One source, three builds: VARIANT_AVX512, VARIANT_AVX2 or VARIANT_SSE2 picks the vector
# type and the multiply-add; REP16/REP12 spell out the independent accumulators so that
# each lives in its own register (no array the compiler might keep in memory).
C_SOURCE = r"""
#include <immintrin.h>

#if defined(VARIANT_AVX512)
#  define VF __m512
#  define VD __m512d
#  define SET1F _mm512_set1_ps
#  define SET1D _mm512_set1_pd
#  define MADDF(x, a, b) _mm512_fmadd_ps(x, a, b)
#  define MADDD(x, a, b) _mm512_fmadd_pd(x, a, b)
#  define STOREF _mm512_storeu_ps
#  define STORED _mm512_storeu_pd
#  define NACC 16
#elif defined(VARIANT_AVX2)
#  define VF __m256
#  define VD __m256d
#  define SET1F _mm256_set1_ps
#  define SET1D _mm256_set1_pd
#  define MADDF(x, a, b) _mm256_fmadd_ps(x, a, b)
#  define MADDD(x, a, b) _mm256_fmadd_pd(x, a, b)
#  define STOREF _mm256_storeu_ps
#  define STORED _mm256_storeu_pd
#  define NACC 12
#else /* SSE2: no FMA, a multiply then an add (two FLOPs per lane all the same) */
#  define VF __m128
#  define VD __m128d
#  define SET1F _mm_set1_ps
#  define SET1D _mm_set1_pd
#  define MADDF(x, a, b) _mm_add_ps(_mm_mul_ps(x, a), b)
#  define MADDD(x, a, b) _mm_add_pd(_mm_mul_pd(x, a), b)
#  define STOREF _mm_storeu_ps
#  define STORED _mm_storeu_pd
#  define NACC 12
#endif

#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#if NACC == 16
#  define REP(X) REP12(X) X(12) X(13) X(14) X(15)
#else
#  define REP(X) REP12(X)
#endif

int fma_peak_lanes_f32(void) { return (int)(sizeof(VF) / sizeof(float)); }
int fma_peak_lanes_f64(void) { return (int)(sizeof(VD) / sizeof(double)); }
int fma_peak_accumulators(void) { return NACC; }

/* iters * NACC multiply-adds per lane; returns the sum of every lane of every
   accumulator so that none of the work can be optimised away. */
double fma_peak_f32(long iters, float a_, float b_)
{
    const VF a = SET1F(a_), b = SET1F(b_);
#define DECL(i) VF acc##i = SET1F((float)(i));
#define STEP(i) acc##i = MADDF(acc##i, a, b);
#define SUM(i) STOREF(lanes, acc##i); for (int j = 0; j < n; j++) total += lanes[j];
    REP(DECL)
    for (long it = 0; it < iters; it++) {
        REP(STEP)
    }
    float lanes[16];
    const int n = (int)(sizeof(VF) / sizeof(float));
    double total = 0.0;
    REP(SUM)
    return total;
#undef DECL
#undef STEP
#undef SUM
}

double fma_peak_f64(long iters, double a_, double b_)
{
    const VD a = SET1D(a_), b = SET1D(b_);
#define DECL(i) VD acc##i = SET1D((double)(i));
#define STEP(i) acc##i = MADDD(acc##i, a, b);
#define SUM(i) STORED(lanes, acc##i); for (int j = 0; j < n; j++) total += lanes[j];
    REP(DECL)
    for (long it = 0; it < iters; it++) {
        REP(STEP)
    }
    double lanes[8];
    const int n = (int)(sizeof(VD) / sizeof(double));
    double total = 0.0;
    REP(SUM)
    return total;
#undef DECL
#undef STEP
#undef SUM
}
"""

# name, the /proc/cpuinfo flags it needs, the -D switch, the compiler flags
VARIANTS = (
    ("avx512f", ("avx512f",), "VARIANT_AVX512", ("-mavx512f", "-mfma")),
    ("avx2+fma", ("avx2", "fma"), "VARIANT_AVX2", ("-mavx2", "-mfma")),
    ("sse2", ("sse2",), "VARIANT_SSE2", ("-msse2",)),
)
DTYPES = ("float32", "float64")


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def find_compiler():
    """The C compiler to use: $CC, else cc, gcc or clang on PATH; None when there is none."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else []
    candidates += ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name.split()[0])
        if path:
            return path
    return None


def _compile(compiler, workdir, variant):
    name, _, define, flags = variant
    src = Path(workdir) / "fma_peak.c"
    if not src.exists():
        src.write_text(C_SOURCE)
    lib = Path(workdir) / f"fma_peak_{define.lower()}.so"
    cmd = [compiler, "-O2", "-shared", "-fPIC", f"-D{define}", *flags, str(src), "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    dll = ctypes.CDLL(str(lib))
    dll.fma_peak_f32.restype = ctypes.c_double
    dll.fma_peak_f32.argtypes = (ctypes.c_long, ctypes.c_float, ctypes.c_float)
    dll.fma_peak_f64.restype = ctypes.c_double
    dll.fma_peak_f64.argtypes = (ctypes.c_long, ctypes.c_double, ctypes.c_double)
    return dll


def _gflops(dll, dtype, seconds, runs):
    """Best GFLOP/s of `runs` calls, each calibrated to about `seconds`."""
    fn = dll.fma_peak_f32 if dtype == "float32" else dll.fma_peak_f64
    lanes = dll.fma_peak_lanes_f32() if dtype == "float32" else dll.fma_peak_lanes_f64()
    flops_per_iter = 2 * lanes * dll.fma_peak_accumulators()
    iters = 1 << 12
    while True:  # calibrate: double until a call takes a tenth of the target
        t0 = time.perf_counter()
        fn(iters, 0.999999, 1e-6)
        dt = time.perf_counter() - t0
        if dt >= seconds / 10 or iters >= 1 << 40:
            break
        iters *= 2
    iters = max(1, int(iters * seconds / max(dt, 1e-9)))
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(iters, 0.999999, 1e-6)
        best = min(best, time.perf_counter() - t0)
    return flops_per_iter * iters / best / 1e9


def measure(seconds=0.05, runs=5, flags=None):
    """GFLOP/s of one core per instruction set and dtype, and the peak per dtype.

    Parameters
    ----------
    seconds : float, about how long each timed call runs
    runs : int, calls per variant and dtype; the best one counts
    flags : set of /proc/cpuinfo flags (read here when None)

    Returns
    -------
    dict with "variants" ({name: {dtype: GFLOP/s}}), "peak" ({dtype: GFLOP/s or None}),
    "peak_isa" ({dtype: variant name or None}), "compiler" (path or None) and "notes"
    (why a variant is missing).
    """
    result = {"variants": {}, "peak": dict.fromkeys(DTYPES), "peak_isa": dict.fromkeys(DTYPES),
              "compiler": None, "notes": []}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        result["notes"].append(f"not x86-64 ({platform.machine()}): no variant for this CPU")
        return result
    compiler = find_compiler()
    result["compiler"] = compiler
    if compiler is None:
        result["notes"].append("no C compiler (set CC, or install cc/gcc/clang)")
        return result
    flags = cpu_flags() if flags is None else set(flags)
    with tempfile.TemporaryDirectory(prefix="fastmlp-fma-") as workdir:
        for variant in VARIANTS:
            name, needs = variant[0], variant[1]
            if not all(f in flags for f in needs):
                result["notes"].append(f"{name}: the CPU does not report {'+'.join(needs)}")
                continue
            try:
                dll = _compile(compiler, workdir, variant)
            except (OSError, subprocess.SubprocessError) as exc:
                err = getattr(exc, "stderr", "") or str(exc)
                result["notes"].append(f"{name}: build failed ({err.strip()[:120]})")
                continue
            result["variants"][name] = {dt: _gflops(dll, dt, seconds, runs) for dt in DTYPES}
    for dt in DTYPES:
        best = max(result["variants"].items(), key=lambda kv: kv[1][dt], default=None)
        if best is not None:
            result["peak_isa"][dt], result["peak"][dt] = best[0], best[1][dt]
    return result


def summary(result):
    """One line: the peak per dtype and every variant measured, or why there is none."""
    if not result["variants"]:
        return "n/a (" + "; ".join(result["notes"]) + ")"
    parts = []
    for dt in DTYPES:
        parts.append(f"{dt} {result['peak'][dt]:.1f} GFLOP/s ({result['peak_isa'][dt]})")
    detail = ", ".join(
        f"{name} {v['float32']:.1f}/{v['float64']:.1f}" for name, v in result["variants"].items()
    )
    return "; ".join(parts) + f" [f32/f64 per variant: {detail}]"


if __name__ == "__main__":
    res = measure()
    print(f"compiler: {res['compiler'] or 'none'}")
    for name, values in res["variants"].items():
        print(f"{name:>9}: float32 {values['float32']:7.1f} GFLOP/s, "
              f"float64 {values['float64']:7.1f} GFLOP/s")
    for note in res["notes"]:
        print(f"note: {note}")
    print("peak (one core): " + summary(res))
    sys.exit(0)
