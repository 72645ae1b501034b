"""pytest-benchmark setup for bench/: pinned threads, smoke mode, extra_info on every result.

Run apart from the test suite (the root config's testpaths only names tests/):

    python -m pytest bench/                       # full run, BLAS pinned to 1 thread
    python -m pytest bench/ --blas-threads=2      # the second table
    python -m pytest bench/ --smoke -q            # CI: every benchmark once, in seconds

Options (also environment variables, for CI):
    --blas-threads=N   FASTMLP_BENCH_BLAS_THREADS   BLAS/OpenMP pools and torch threads
    --smoke            FASTMLP_BENCH_SMOKE=1        one round of one iteration, no warm-up

With 1 thread the session also pins the process to one CPU (mlpbench.pinned_cpu): every
implementation runs on one core anyway, and it is what holds JAX/XLA to one core.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlpbench as mb  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("fastmlp-bench")
    group.addoption(
        "--blas-threads", type=int, default=None,
        help=f"threads for BLAS/OpenMP pools and torch (default 1, or ${mb.THREADS_ENV})",
    )
    group.addoption(
        "--smoke", action="store_true", default=False,
        help=f"run every benchmark once, no calibration or warm-up (or ${mb.SMOKE_ENV}=1)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Saved runs (--benchmark-autosave/--benchmark-save) go to bench/.benchmarks, not to
    # the repository root, unless --benchmark-storage says otherwise.
    if getattr(config.option, "benchmark_storage", None) == "file://./.benchmarks":
        config.option.benchmark_storage = f"file://{Path(__file__).resolve().parent}/.benchmarks"


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def blas_threads(config):
    value = config.getoption("--blas-threads")
    if value is None:
        value = int(os.environ.get(mb.THREADS_ENV, "1") or 1)
    if value < 1:
        raise pytest.UsageError(f"--blas-threads: expected a positive integer, got {value}")
    return value


def smoke_mode(config):
    return bool(config.getoption("--smoke")) or _env_flag(mb.SMOKE_ENV)


def pytest_report_header(config):
    simd = mb.simd_summary()
    env = mb.thread_env()
    return [
        f"fastmlp bench: cpu={mb.cpu_model()} simd={simd['simd']} avx512={simd['avx512']} "
        f"blas_threads={blas_threads(config)} smoke={smoke_mode(config)}",
        f"fastmlp bench: OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} "
        f"backends={','.join(mb.fastmlp_backends())} "
        f"torch={'yes' if mb.torch_module() is not None else 'no'} "
        f"jax={mb.jax_version() or 'no'} "
        f"sklearn={mb.sklearn_version() or 'no'} "
        f"simd_kernels={mb.fastmlp_simd_kernels()}",
        f"fastmlp bench: blas={mb.blas_summary()}",
    ] + [f"fastmlp bench: backend {name!r} NOT measured: {why}"
         for name, why in mb.backend_errors().items()]


def pytest_benchmark_update_machine_info(config, machine_info):
    simd = mb.simd_summary()
    machine_info["fastmlp_bench"] = {
        "cpu_model": mb.cpu_model(),
        "avx512": simd["avx512"],
        "simd": simd["simd"],
        "blas_at_startup": mb.blas_pools(),  # before pinning: see blas_threads
        "blas_threads": blas_threads(config),
        "env": mb.thread_env(),
        "smoke": smoke_mode(config),
        "fastmlp_simd_kernels": mb.fastmlp_simd_kernels(),
        "jax": mb.jax_version(),
    }


@pytest.fixture(scope="session")
def bench_config(pytestconfig):
    """{"blas_threads": n, "smoke": bool, "pin": mb.pinned_cpu or None, "simd_kernels": str};
    pins every pool for the whole session, and with 1 thread the process to one CPU."""
    n = blas_threads(pytestconfig)
    pin = mb.pinned_cpu() if n == 1 and hasattr(os, "sched_setaffinity") else None
    if pin is not None:
        pin.reapply()
    try:
        with mb.pinned_threads(n):
            yield {"blas_threads": n, "smoke": smoke_mode(pytestconfig), "pin": pin,
                   "simd_kernels": mb.fastmlp_simd_kernels()}
    finally:
        if pin is not None:
            pin.release()


@pytest.fixture
def measure(benchmark, bench_config):
    """measure(fn, group=..., impl=..., dtype=..., shape=..., flops=None, rounds=None)

    Benchmarks fn() under `group` (so implementations print side by side), records the
    backend, dtype, shape, thread count, GFLOP/s, the CPU the process was pinned to (1
    thread; re-chosen as the quietest before each benchmark), fastmlp's SIMD kernel set
    and the load other processes put on the machine meanwhile (others_cpus, steal) in
    extra_info. Smoke mode: one round of
    one iteration, no warm-up. `rounds` asks for a fixed number of one-iteration rounds
    (slow shapes); otherwise pytest-benchmark calibrates. A warm-up call (JIT compilation,
    first-touch page faults) always precedes the timed rounds outside smoke mode.
    """

    def run(fn, *, group, impl, dtype, shape, flops=None, rounds=None, **info):
        benchmark.group = group
        benchmark.extra_info.update(
            impl=impl,
            backend=impl.split("-", 1)[1] if impl.startswith("fastmlp-") else impl,
            dtype=str(dtype),
            shape=str(shape),
            blas_threads=bench_config["blas_threads"],
            openblas_coretype=os.environ.get("OPENBLAS_CORETYPE", "unset"),
            fastmlp_simd_kernels=bench_config["simd_kernels"],
            smoke=bench_config["smoke"],
            **info,
        )
        if flops:
            benchmark.extra_info["flops"] = int(flops)
        if bench_config["blas_threads"] > 1 and not bench_config["smoke"]:
            time.sleep(0.2)  # let the previous benchmark's spinning thread pools go idle
        pin = bench_config["pin"]
        if pin is not None and not bench_config["smoke"]:
            pin.repick()  # the CPU other work leaves quietest now
        benchmark.extra_info["pinned_cpu"] = pin.cpu if pin is not None else None
        meter = mb.LoadMeter()
        if bench_config["smoke"]:
            result = benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
        else:
            fn()  # warm-up
            if rounds:
                result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
            else:
                result = benchmark(fn)
        load = meter.stop()
        if load["others_cpus"] is not None:
            benchmark.extra_info["others_cpus"] = round(load["others_cpus"], 2)
            benchmark.extra_info["steal"] = round(load["steal"], 3)
        stats = getattr(benchmark, "stats", None)
        if flops and stats is not None and getattr(stats, "stats", None) is not None:
            median = stats.stats.median
            if median > 0:
                benchmark.extra_info["gflops"] = round(flops / median / 1e9, 3)
        return result

    return run
