"""A short comparison of fastmlp with the course's NumPy loop and its peers, as markdown.

    python bench/report.py [--quick] [--threads 1] [--png out.png] [--shapes spiral,mnist]

For each shape (bench/mlpbench.py SHAPES): the time of one training step of every
implementation (median of interleaved repeats after a warm-up, time.perf_counter) beside
the step's matrix products alone (numpy.matmul on arrays of the plan's shapes, timed in
the same rounds); each step's speed-up over the course's NumPy loop, JAX and PyTorch, its
GFLOP/s as a share of the FMA peak measured on this core (bench/fma_peak.py), and its
time over the products alone. Then the MNIST epoch against scikit-learn's MLPClassifier,
plan.forward from two Python threads against one, the issue's targets with the measured
value and met / not met, and for each case that misses one a profile split: products
alone vs the whole step vs fixed overhead. Nothing is hard-coded: every figure is
measured here, now.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fma_peak  # noqa: E402
import mlpbench as mb  # noqa: E402

import fastmlp  # noqa: E402

PRIMARY = "fastmlp-c"  # the implementation held to the targets (first backend otherwise)
LOADS = []  # (section, LoadMeter result): how noisy the machine was while we timed
INTERLEAVE = [True]  # False with several threads per pool (see mlpbench.time_interleaved)
PIN = [None]  # the mb.pinned_cpu in force (1 thread), released for the threads section


# -- formatting ----------------------------------------------------------------------------


def fmt_time(seconds):
    if seconds is None or not np.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(x):
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def fmt_load(load):
    if not load or load.get("others_cpus") is None:
        return "n/a"
    return f"{load['others_cpus']:.2f} (steal {100 * load['steal']:.0f}%)"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def out(text=""):
    print(text, flush=True)


# -- measurements --------------------------------------------------------------------------


def gemm_throughput(dtype, size, repeats):
    """GFLOP/s of numpy.matmul on (size x size) @ (size x size) in `dtype` (threads as
    pinned)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size)).astype(dtype)
    B = rng.standard_normal((size, size)).astype(dtype)
    C = np.empty((size, size), dtype)
    t = mb.time_interleaved({"gemm": lambda: np.matmul(A, B, out=C)}, repeats, 0.05)["gemm"]
    return 2.0 * size**3 / t / 1e9


_CORETYPE_PROBE = r"""
import json, os, time
import numpy as np
from threadpoolctl import threadpool_info
n = int(os.environ["PROBE_SIZE"])
A = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
C = np.empty_like(A)
np.matmul(A, A, out=C)
best = float("inf")
for _ in range(5):
    t0 = time.perf_counter()
    np.matmul(A, A, out=C)
    best = min(best, time.perf_counter() - t0)
kernels = sorted({p.get("architecture") for p in threadpool_info() if p["user_api"] == "blas"})
print(json.dumps({"gflops": 2 * n**3 / best / 1e9, "kernels": kernels}))
"""


def coretype_probe(threads, size):
    """sgemm GFLOP/s in a subprocess with OPENBLAS_CORETYPE flipped (unset <-> Haswell)."""
    env = dict(os.environ)
    current = env.get("OPENBLAS_CORETYPE")
    if current:
        del env["OPENBLAS_CORETYPE"]
        label = "unset"
    else:
        env["OPENBLAS_CORETYPE"] = "Haswell"
        label = "Haswell"
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               PROBE_SIZE=str(size))
    try:
        res = subprocess.run([sys.executable, "-c", _CORETYPE_PROBE], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        return label, json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return label, {"error": str(exc)[:200]}


def build(factories):
    """{name: callable} from {name: factory}; a factory that fails is reported, not fatal."""
    fns, errors = {}, {}
    for name, factory in factories.items():
        try:
            fns[name] = factory()
        except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the report
            errors[name] = f"{type(exc).__name__}: {exc}"
    return fns, errors


def timed(fns, repeats, min_block, warmup=1):
    """time_interleaved, but one failing implementation only loses its own row."""
    good, errors = {}, {}
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
            good[name] = fn
        except Exception as exc:  # noqa: BLE001
            errors[name] = f"{type(exc).__name__}: {exc}"
    times = mb.time_interleaved(good, repeats, min_block, warmup=0,
                                interleave=INTERLEAVE[0]) if good else {}
    return times, errors


QUICK_LARGE_SKIPS = ("course-numpy", "fastmlp-numpy")


def repin():
    """At 1 thread: move the pinned process to the CPU other work leaves quietest now."""
    if PIN[0] is not None:
        PIN[0].repick()


def settings(args, shape):
    if shape.large:
        return {"repeats": 3, "min_block": 0.0}
    return {"repeats": 5 if args.quick else 9, "min_block": 0.05 if args.quick else 0.2}


# -- profile split -------------------------------------------------------------------------


class Products:
    """The step's products as standalone calls on arrays of the plan's shapes
    (mb.product_operands); each call of the object runs them all once and records the
    time of each. gemm=None: numpy.matmul on the (transposed) views; otherwise
    gemm(A, B, out, trans_a, trans_b) on the stored arrays."""

    def __init__(self, sizes, n, dtype, gemm):
        self.calls, self.shapes = [], {}
        flags = {c[0]: c[4:] for c in mb.gemm_calls(sizes, n)}
        for name, a, b, c in mb.product_operands(sizes, n, dtype):
            ta, tb = flags[name]
            if gemm is None:
                def fn(a=a, b=b, c=c):
                    np.matmul(a, b, out=c)
            else:
                def fn(a=(a.T if ta else a), b=(b.T if tb else b), c=c, ta=ta, tb=tb):
                    gemm(a, b, c, ta, tb)
            self.calls.append((name, fn))
            self.shapes[name] = (c.shape[0], a.shape[1], c.shape[1])
        self.samples = {name: [] for name, _ in self.calls}

    def __call__(self):
        clock = time.perf_counter
        for name, fn in self.calls:
            t0 = clock()
            fn()
            self.samples[name].append(clock() - t0)

    def per_call(self):
        return {name: float(np.median(v)) for name, v in self.samples.items()}


def profile_split(shape, dtype, backend, args):
    """Markdown lines: where one step of `backend` on `shape` spends its time. The step,
    its products alone, the fixed per-call cost and a 1-row step are timed interleaved,
    so the same noise reaches all of them."""
    if shape.large:
        reps, block = (2 if args.quick else 3), 0.0
    else:
        reps, block = (7 if args.quick else 11), (0.05 if args.quick else 0.1)
    c_gemm = None
    if backend == "c":
        from fastmlp.backends import _c_kernels

        c_gemm = getattr(_c_kernels, "gemm", None)
    prod_np = Products(shape.sizes, shape.batch, dtype, None)
    prod_c = Products(shape.sizes, shape.batch, dtype, c_gemm) if c_gemm else None
    step = mb.step_impls(shape, dtype, include_torch=False,
                         include_jax=False)[f"fastmlp-{backend}"]()
    tiny = mb.Shape("tiny", (2, 2, 2), shape.activation, shape.optimizer, shape.lr, shape.l2,
                    1, (str(dtype),), 1)
    plan1 = mb.fastmlp_plan(shape, dtype, backend)
    X1, y1 = mb.make_data(shape, 1, dtype, seed=3)
    fns = {
        "step": step,
        "products_np": prod_np,
        "tiny": mb.step_impls(tiny, dtype, rows=1, include_torch=False,
                              include_jax=False)[f"fastmlp-{backend}"](),
        "one_row": lambda: plan1.train_step(X1, y1),
        "noop": lambda: None,
    }
    if prod_c is not None:
        fns["products_c"] = prod_c
    repin()
    t = mb.time_interleaved(fns, reps, block, interleave=INTERLEAVE[0])
    total = t["step"]
    gemm = t.get("products_c", t["products_np"])
    src = "fastmlp C gemm" if "products_c" in t else "numpy.matmul"
    overhead = t["tiny"]
    rest = total - gemm - overhead

    def share(x):
        return f"{100 * x / total:.0f}%"

    n_calls = len(prod_np.calls)
    lines = [
        table(
            ["part of one step", "time", "share"],
            [
                ["whole step", fmt_time(total), "100%"],
                [f"its {n_calls} products alone ({src}, plan's shapes, {n_calls} Python calls)",
                 fmt_time(gemm), share(gemm)],
                ["fixed cost: 1-row step of a 2->2->2 plan (validation, dispatch, GIL)",
                 fmt_time(overhead), share(overhead)],
                ["the rest: bias+activation, loss, dZ, update, copies", fmt_time(rest),
                 share(rest)],
                ["(reference) 1-row step of this shape (fixed cost + full update)",
                 fmt_time(t["one_row"]), share(t["one_row"])],
                ["(reference) the same products with numpy.matmul", fmt_time(t["products_np"]),
                 share(t["products_np"])],
                ["(reference) a no-op Python call", fmt_time(t["noop"]), ""],
            ],
        ),
        "",
    ]
    np_calls = prod_np.per_call()
    c_calls = prod_c.per_call() if prod_c is not None else {}
    rows = []
    for name, (m, k, n) in prod_np.shapes.items():
        tc, tn = c_calls.get(name), np_calls[name]
        rows.append([name, f"{m}×{k}×{n}", fmt_time(tc), fmt_time(tn),
                     fmt_ratio(tc / tn) if tc is not None and tn > 0 else "-",
                     f"{2 * m * k * n / (tc if tc is not None else tn) / 1e9:.1f}"])
    lines.append(table(["product", "m×k×n", "fastmlp C gemm", "numpy.matmul",
                        "C / numpy.matmul", "GFLOP/s"], rows))
    if rest < 0:
        lines += ["", "(a negative rest is noise: the parts ran as separate calls)"]
    return lines


# -- sections ------------------------------------------------------------------------------


def header(args, peak):
    simd = mb.simd_summary()
    env = mb.thread_env()
    torch = mb.torch_module()
    jax = mb.jax_module()
    pin = PIN[0]
    if pin is not None and pin.cpu is not None:
        affinity = (
            f"- CPU affinity: the whole process (every thread) pinned to one CPU (CPU {pin.cpu} "
            "now; re-chosen as the least busy one before each timed section) for every "
            "implementation alike: at 1 thread per pool they all run on one core anyway, "
            "and affinity is what holds JAX/XLA, whose pool ignores threadpoolctl, to one "
            "core (set before jax was imported). Released for the threads section only."
        )
    else:
        affinity = (f"- CPU affinity: not pinned ({args.threads} threads); JAX/XLA uses its own "
                    "pool over every CPU it may run on")
    lines = [
        "# fastmlp benchmark report",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}"
        f"{' (--quick)' if args.quick else ''}",
        f"- cpu: {mb.cpu_model()} ({os.cpu_count()} logical cpus, {platform.machine()}); "
        f"simd {simd['simd']}; AVX-512: "
        + (f"yes ({simd['avx512_flags']})" if simd["avx512"] else "no"),
        "- FMA peak, one core (bench/fma_peak.py, best run): " + fma_peak.summary(peak),
        f"- fastmlp SIMD kernels: {mb.fastmlp_simd_kernels()}",
        f"- OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}; OPENBLAS_NUM_THREADS="
        f"{env['OPENBLAS_NUM_THREADS']}; OMP_NUM_THREADS={env['OMP_NUM_THREADS']}; "
        f"MKL_NUM_THREADS={env['MKL_NUM_THREADS']}",
        f"- threads: BLAS/OpenMP pools pinned to {args.threads} (threadpoolctl)"
        + (f", torch.set_num_threads({args.threads})" if torch is not None else ""),
        affinity,
        "- BLAS (threadpoolctl): " + mb.blas_summary(),
        f"- python {platform.python_version()}, numpy {np.__version__}, fastmlp "
        f"{getattr(fastmlp, '__version__', '?')} (backends: {', '.join(mb.fastmlp_backends())}"
        f"; default {fastmlp.get_backend()})",
        f"- peers: PyTorch {torch.__version__ if torch is not None else 'not installed'}; "
        f"scikit-learn {mb.sklearn_version() or 'not installed'}; "
        + (f"JAX {jax.__version__} on {jax.default_backend()} (XLA_FLAGS="
           f"{os.environ.get('XLA_FLAGS', '')!r})" if jax is not None else "JAX not installed"),
    ]
    for name, why in mb.backend_errors().items():
        lines.append(f"- fastmlp backend {name!r} is NOT measured: {why}")
    if "c" in mb.fastmlp_backends():
        from fastmlp.backends import _c_kernels

        getter = getattr(_c_kernels, "get_small_gemm_flops", None)
        if getter is not None:
            lines.append(f"- fastmlp C small-gemm threshold: {getter()} multiply-adds")
    return lines


def run_shapes(args, peak):
    results = []  # dicts: shape, dtype, impl, time, ...
    for name in args.shapes:
        shape = mb.SHAPES[name]
        for dt in shape.dtypes:
            dtype = np.dtype(dt)
            t0 = time.perf_counter()
            factories = mb.step_impls(shape, dtype, include_products=True)
            if args.quick and shape.large:  # ~2-3 s a call: only what the targets need
                for impl in QUICK_LARGE_SKIPS:
                    factories.pop(impl, None)
            fns, errors = build(factories)
            repin()
            meter = mb.LoadMeter()
            times, errs = timed(fns, **settings(args, shape))
            load = meter.stop()
            errors.update(errs)
            del fns
            flops = mb.gemm_flops(shape.sizes, shape.batch)
            base = {k: times.get(k) for k in ("course-numpy", "jax-jit", "pytorch", mb.PRODUCTS)}
            for impl, t in times.items():
                network = impl != mb.PRODUCTS
                results.append({
                    "shape": shape, "dtype": dtype, "impl": impl, "time": t, "flops": flops,
                    "gflops": flops / t / 1e9,
                    "peak_pct": (100 * flops / t / 1e9 / peak[dtype.name]
                                 if peak.get(dtype.name) else None),
                    "vs_course": base["course-numpy"] / t if network and base["course-numpy"]
                    else None,
                    "vs_jax": base["jax-jit"] / t if network and base["jax-jit"] else None,
                    "vs_torch": base["pytorch"] / t if network and base["pytorch"] else None,
                    "products": t / base[mb.PRODUCTS] if base[mb.PRODUCTS] else None,
                    "load": load,
                })
            for impl, err in errors.items():
                results.append({"shape": shape, "dtype": dtype, "impl": impl, "time": None,
                                "error": err, "flops": flops})
            print(f"<!-- {name} {dt}: {time.perf_counter() - t0:.1f} s -->", file=sys.stderr)
            LOADS.append((f"{name} {dt}", load))
    return results


def fmt_pct(x):
    return "-" if x is None or not np.isfinite(x) else f"{x:.0f}%" if x >= 10 else f"{x:.1f}%"


def impl_label(impl):
    return "(products alone: numpy.matmul)" if impl == mb.PRODUCTS else impl


def shapes_table(results):
    rows = []
    for r in results:
        shape = r["shape"]
        if r.get("time") is None:
            rows.append([shape.label, r["dtype"].name, impl_label(r["impl"]),
                         "error: " + r["error"][:60]] + ["-"] * 6)
            continue
        rows.append([
            shape.label, r["dtype"].name, impl_label(r["impl"]), fmt_time(r["time"]),
            fmt_ratio(r.get("vs_course")), fmt_ratio(r.get("vs_jax")),
            fmt_ratio(r.get("vs_torch")), f"{r['gflops']:.2f}", fmt_pct(r.get("peak_pct")),
            fmt_ratio(r.get("products")),
        ])
    return table(["shape (batch × layers)", "dtype", "implementation", "time / step",
                  "× vs course", "× vs JAX", "× vs PyTorch", "GFLOP/s", "% FMA peak",
                  "× products"], rows)


def mnist_epoch(args):
    shape = mb.SHAPES["mnist"]
    dtype = np.dtype(np.float32)
    X, y, source = mb.mnist_rows(shape.epoch_rows, np.float32)
    factories = mb.epoch_impls(shape, dtype, include_sklearn=True, data=lambda: (X, y))
    fns, errors = build(factories)
    if "sklearn-mlp" in fns:
        fns["sklearn-mlp"]()  # the first partial_fit initialises; not an epoch to time
    repin()
    times, errs = timed(fns, repeats=3 if args.quick else 5, min_block=0.0)
    errors.update(errs)
    base = [times.get(k) for k in ("sklearn-mlp", "course-numpy", "jax-jit", "pytorch")]
    rows = [
        [impl, fmt_time(t)] + [fmt_ratio(b / t) if b else "-" for b in base]
        for impl, t in times.items()
    ]
    rows += [[impl, "error: " + err[:60], "-", "-", "-", "-"] for impl, err in errors.items()]
    lines = [
        f"## MNIST epoch: {shape.epoch_rows} rows, batch {shape.batch}, "
        f"{'->'.join(map(str, shape.sizes))} sigmoid, Adam lr {shape.lr}, float32",
        "",
        f"Data: {source}. scikit-learn: MLPClassifier(hidden_layer_sizes=(100,), "
        "activation='logistic', solver='adam', batch_size=100, learning_rate_init=1e-3, "
        "alpha=0, max_iter=1, shuffle=True), one partial_fit over the 8000 rows per epoch "
        "(it minibatches and shuffles inside); the first call (initialisation) is not timed. "
        "JAX: one jax.jit call per epoch, a lax.scan of the jitted step over the batches of "
        "a shuffled order (compiled in the warm-up).",
        "",
        table(["implementation", "time / epoch", "× vs scikit-learn", "× vs course",
               "× vs JAX", "× vs PyTorch"], rows),
    ]
    return lines, times


def inference_threads(args):
    if PIN[0] is not None:
        PIN[0].release()  # two Python threads need two CPUs
    try:
        return _inference_threads(args)
    finally:
        if PIN[0] is not None:
            PIN[0].reapply()


def _inference_threads(args):
    shape = mb.SHAPES["mid"]
    dtype = np.float32
    rows = 4096 if args.quick else 16384
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((rows, shape.sizes[0])).astype(dtype) for _ in range(2)]
    outs = [np.empty((rows, shape.sizes[-1]), dtype) for _ in range(2)]
    lines = [
        f"## Inference from Python threads: plan.forward on {rows} rows × "
        f"{'->'.join(map(str, shape.sizes))} float32 (chunks of {shape.batch}), BLAS at 1 thread",
        "",
    ]
    table_rows = []
    meter = mb.LoadMeter()
    with mb.pinned_threads(1):
        for backend in mb.fastmlp_backends():
            plan = mb.fastmlp_plan(shape, dtype, backend)
            plan.forward(X[0], out=outs[0])  # warm-up
            t1 = mb.time_block(lambda p=plan: p.forward(X[0], out=outs[0]), 1)
            k = max(2, int(np.ceil((0.3 if args.quick else 1.0) / max(t1, 1e-6))))

            def work(i, plan=plan, k=k):
                for _ in range(k):
                    plan.forward(X[i], out=outs[i])

            one, two = [], []
            for _ in range(3 if args.quick else 5):
                t0 = time.perf_counter()
                work(0)
                one.append(k * rows / (time.perf_counter() - t0))
                threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
                t0 = time.perf_counter()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                two.append(2 * k * rows / (time.perf_counter() - t0))
            r1, r2 = float(np.median(one)), float(np.median(two))
            table_rows.append([f"fastmlp-{backend}", f"{r1:,.0f}", f"{r2:,.0f}",
                               fmt_ratio(r2 / r1)])
    # The machine's own ceiling: one sgemm on 2 BLAS threads against 1 (same matrices).
    with mb.pinned_threads(1):
        g1 = gemm_throughput(np.dtype(np.float32), 1024, 3)
    time.sleep(0.2)
    with mb.pinned_threads(2):
        g2 = gemm_throughput(np.dtype(np.float32), 1024, 3)
    table_rows.append(["(reference) numpy sgemm 1024², BLAS 1 vs 2 threads",
                       f"{g1:.1f} GFLOP/s", f"{g2:.1f} GFLOP/s", fmt_ratio(g2 / g1)])
    lines.append(table(["implementation", "rows/s, 1 thread", "rows/s, 2 threads",
                        "2 threads / 1 thread"], table_rows))
    lines += ["", f"({os.cpu_count()} logical cpus: 2.00× is perfect scaling; the sgemm row "
              "shows how far this machine's cores scale on gemm at all; load from other "
              f"processes meanwhile: {fmt_load(meter.stop())} CPUs' worth)"]
    return lines


# The issue's targets (ratios measured in one run, 1 thread): at least `vs_course` times the
# course's NumPy step and `vs_jax` times the JAX jit step, at least `peak_pct` % of the FMA
# peak (GFLOP/s of the step's products over the peak of that dtype), and at most `products`
# times the step's products alone by numpy.matmul (1 / 1.3: 1.3x faster than them).
ISSUE_TARGETS = {
    **{(name, "float64"): {"vs_course": 12.0, "vs_jax": 4.0, "peak_pct": 30.0}
       for name in ("spiral", "spiral-sigmoid")},
    **{(name, "float32"): {"vs_course": 12.0, "vs_jax": 4.0, "peak_pct": 20.0}
       for name in ("spiral", "spiral-sigmoid")},
    **{(name, "float32"): {"vs_course": 2.0, "vs_jax": 1.6, "products": 1 / 1.3,
                           "peak_pct": 60.0}
       for name in ("mnist-sgd", "mnist")},
    ("mid", "float32"): {"products": 1.03},
    ("large", "float32"): {"products": 1.03},
}
EPOCH_TARGET = 4.0  # the MNIST epoch (Adam): at least 4x scikit-learn's MLPClassifier
TARGET_TEXT = {  # key: (label, direction, format); × products has 3 decimals (1.03 is close)
    "vs_course": ("× vs course", "≥", fmt_ratio),
    "vs_jax": ("× vs JAX", "≥", fmt_ratio),
    "peak_pct": ("% FMA peak", "≥", fmt_pct),
    "products": ("× products alone", "≤", lambda x: f"{x:.3f}×"),
}


def target_checks(results, args):
    """[(row, [(what, measured, target, met)])] for the primary implementation; `met` is
    None when the figure could not be measured here (no JAX, no compiler, ...)."""
    checks = []
    for r in results:
        if r["impl"] != args.primary or r.get("time") is None:
            continue
        target = ISSUE_TARGETS.get((r["shape"].name, r["dtype"].name))
        if not target:
            continue
        items = []
        for key, goal in target.items():
            what, sign, fmt = TARGET_TEXT[key]
            value = r.get(key)
            met = None if value is None else (value >= goal if sign == "≥" else value <= goal)
            items.append((what, fmt(value) if value is not None else "n/a",
                          f"{sign} {fmt(goal)}", met))
        checks.append((r, items))
    return checks


def fmt_met(met):
    return "not measured" if met is None else "met" if met else "**not met**"


def targets_section(results, epoch_times, args):
    """The targets table (markdown lines) and the rows that miss one (or all, --profile)."""
    rows, misses = [], []
    for r, items in target_checks(results, args):
        for what, value, goal, met in items:
            rows.append([r["shape"].label, r["dtype"].name, what, value, goal, fmt_met(met)])
        if any(met is False for *_, met in items) or args.profile:
            misses.append((r, [f"{w} {v} (target {g})" for w, v, g, met in items
                               if met is False]))
    if epoch_times is not None:
        sk, t = epoch_times.get("sklearn-mlp"), epoch_times.get(args.primary)
        value = sk / t if sk and t else None
        rows.append(["MNIST epoch (8000 rows, batch 100, Adam)", "float32",
                     "× vs scikit-learn", fmt_ratio(value) if value else "n/a",
                     f"≥ {fmt_ratio(EPOCH_TARGET)}",
                     fmt_met(None if value is None else value >= EPOCH_TARGET)])
    lines = [
        f"The issue's targets for {args.primary}, from the tables above (ratios in one run, "
        f"{args.threads} thread(s); the targets assume 1): spiral relu and sigmoid ≥ 12× the "
        "course step and ≥ 4× JAX, ≥ 30% of the FMA peak in float64 and ≥ 20% in float32; "
        "MNIST b100 (SGD and Adam) ≥ 2× the course, ≥ 1.6× JAX, at most products alone / 1.3 "
        "and ≥ 60% of peak; mid and large at most 1.03× their products alone; the MNIST epoch "
        "≥ 4× scikit-learn. Shapes not run (--shapes) are not listed.",
        "",
        table(["shape", "dtype", "target on", "measured", "target", "met?"], rows)
        if rows else "(no target case was run)",
    ]
    return lines, misses


def chart(results, path, args):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    cases, impls = [], []
    for r in results:
        key = f"{r['shape'].name}\n{r['dtype'].name}"
        if key not in cases:
            cases.append(key)
        if r["impl"] not in impls and r["impl"] not in ("course-numpy", mb.PRODUCTS) \
                and r.get("time"):
            impls.append(r["impl"])
    speed = {(f"{r['shape'].name}\n{r['dtype'].name}", r["impl"]): r.get("vs_course")
             for r in results if r.get("time")}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases)), 4.5))
    width = 0.8 / max(1, len(impls))
    for j, impl in enumerate(impls):
        xs = [i + (j - (len(impls) - 1) / 2) * width for i in range(len(cases))]
        ys = [speed.get((c, impl)) or 0 for c in cases]
        ax.bar(xs, ys, width, label=impl)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}×" if
                                               str(round(v, 6))[0] in "25" else ""))
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases)
    ax.set_ylabel("speed-up over the course's NumPy step (log)")
    ax.set_title(f"fastmlp training step, {mb.cpu_model()}, {args.threads} BLAS thread(s)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart written to {path}"


# -- main ----------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (about 2 minutes)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads (1)")
    p.add_argument("--png", type=Path, help="write a bar chart of the speed-ups here")
    p.add_argument("--shapes", default=",".join(mb.SHAPES),
                   help=f"comma-separated subset of {','.join(mb.SHAPES)}")
    p.add_argument("--no-epoch", action="store_true", help="skip the MNIST epoch section")
    p.add_argument("--no-inference", action="store_true", help="skip the threads section")
    p.add_argument("--no-coretype-probe", action="store_true",
                   help="skip the sgemm probe with OPENBLAS_CORETYPE flipped (a subprocess)")
    p.add_argument("--profile", action="store_true",
                   help="print the profile split for every shape, not only for misses")
    args = p.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in args.shapes if s not in mb.SHAPES]
    if unknown:
        p.error(f"--shapes: unknown {unknown}; expected some of {list(mb.SHAPES)}")
    if args.threads < 1:
        p.error("--threads: expected a positive integer")
    backends = mb.fastmlp_backends()
    if not backends:
        p.error("no fastmlp backend imports")
    args.primary = PRIMARY if "c" in backends else f"fastmlp-{backends[0]}"
    return args


def main(argv=None):
    args = parse_args(argv)
    INTERLEAVE[0] = args.threads == 1
    started = time.perf_counter()
    if args.threads == 1 and hasattr(os, "sched_setaffinity"):
        PIN[0] = mb.pinned_cpu().reapply()  # before JAX is imported: XLA sizes its pool
    mb.torch_module()  # import first, so that pinning reaches its pools too
    mb.jax_module()  # now, with XLA_FLAGS set and the affinity in force
    whole_run = mb.LoadMeter()
    with mb.pinned_threads(args.threads):
        # many short runs: on a shared core, the best one is the one nobody interrupted
        peak = fma_peak.measure(seconds=0.005 if args.quick else 0.01,
                                runs=15 if args.quick else 25)
        for line in header(args, peak):
            out(line)

        size = 2048
        square = {dt: gemm_throughput(np.dtype(dt), size, 3 if args.quick else 5)
                  for dt in ("float32", "float64")}
        out(f"- square gemm for reference (numpy.matmul, {size}×{size}, {args.threads} "
            "thread(s)): " + ", ".join(
                f"{dt} {square[dt]:.1f} GFLOP/s"
                + (f" ({fmt_pct(100 * square[dt] / peak['peak'][dt])} of peak)"
                   if peak["peak"][dt] else "") for dt in square))
        if not args.no_coretype_probe:
            label, probe = coretype_probe(args.threads, size)
            if "error" in probe:
                out(f"- sgemm with OPENBLAS_CORETYPE={label}: probe failed ({probe['error']})")
            else:
                kernels = ", ".join(map(str, probe["kernels"]))
                out(f"- sgemm with OPENBLAS_CORETYPE={label} (subprocess): "
                    f"{probe['gflops']:.1f} GFLOP/s, kernels {kernels} "
                    f"(this process: {square['float32']:.1f})")
        out()

        out("## Training step")
        out()
        out(("Median of interleaved repeats" if INTERLEAVE[0] else
             "Median of back-to-back repeats per implementation (several threads: pools that "
             "spin would disturb interleaved timing)") +
            " after a warm-up; every implementation starts from the same weights on the same "
            "data. × vs X = X's time over this row's (higher is faster). GFLOP/s counts the "
            "step's products: forward 2·n·din·dout per layer, dW the same, dX for every layer "
            "but the first; % FMA peak = GFLOP/s over the peak of that dtype in the header. "
            "× products = this row's time over the time of the step's products alone "
            "(numpy.matmul(a, b, out=c) on preallocated arrays of the plan's shapes, "
            "transposed views where the product is transposed, timed in the same rounds): "
            "below 1.00× the step beats its own products by BLAS."
            + (f" --quick: the large shape without {' and '.join(QUICK_LARGE_SKIPS)} (its "
               "target is × products)." if args.quick else ""))
        out()
        results = run_shapes(args, peak["peak"])
        out(shapes_table(results))
        out()
        for shape in (mb.SHAPES[s] for s in args.shapes):
            if shape.note:
                out(f"- {shape.name}: {shape.note}")
        out("- load from other processes while each shape was timed (CPUs' worth; "
            f"{os.cpu_count()} = the whole machine): " + ", ".join(
                f"{name} {fmt_load(load)}" for name, load in LOADS))
        out()

        epoch_times = None
        if not args.no_epoch:
            lines, epoch_times = mnist_epoch(args)
            for line in lines:
                out(line)
            out()

        if not args.no_inference:
            for line in inference_threads(args):
                out(line)
            out()

        out("## Targets")
        out()
        lines, misses = targets_section(results, epoch_times, args)
        for line in lines:
            out(line)
        out()
        backend = args.primary.split("-", 1)[1]
        for r, reasons in misses:
            title = f"### {r['shape'].label} {r['dtype'].name}: {args.primary} "
            title += ("misses: " + "; ".join(reasons)) if reasons else "(profile)"
            out(title)
            out()
            if r["shape"].large and args.quick and not args.profile:
                out("(profile skipped with --quick: the step table's × products already "
                    "compares this step with its products alone; --profile runs it)")
                out()
                continue
            try:
                for line in profile_split(r["shape"], r["dtype"], backend, args):
                    out(line)
            except Exception as exc:  # noqa: BLE001
                out(f"(profile failed: {type(exc).__name__}: {exc})")
            out()

        if args.png:
            out(chart(results, args.png, args))
        out(f"Load from other processes over the whole run: {fmt_load(whole_run.stop())} "
            "CPUs' worth; ratios from rows timed under load deserve less trust.")
        out(f"<!-- report took {time.perf_counter() - started:.0f} s -->")
    if PIN[0] is not None:
        PIN[0].release()


if __name__ == "__main__":
    main()
