"""Leak soak (a short version of tools/soak.py): nothing stays behind per call.

Every public kernel is called 2*10^4 times on the "c" backend (5*10^3 on "numba", whose
calls are slower), small shapes, and every NetworkPlan workload 500 times, between two
readings of the process's RSS (the heap trimmed before each); then 2000 calls per kernel
and 500 (C) or 4000 (Numba) per plan workload under tracemalloc. A leak of one object or
buffer per call would show as tens of KB of tracemalloc growth; the bounds allow for
one-off noise only (interned strings, freelists, Numba's dispatcher warming up).
Also: absurd sizes raise MemoryError (or ValueError) and never crash the process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp

_SOAK_PATH = Path(__file__).resolve().parent.parent / "tools" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("fastmlp_tools_soak", _SOAK_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


soak = _load_soak()

CALLS = {"c": 2 * 10**4, "numba": 5 * 10**3}  # per kernel, between the RSS readings
TRACED = 2000  # per kernel, under tracemalloc
STEPS = 500  # per plan workload
# Numba's dispatcher keeps allocating small objects over its first ~10^4 calls of a plan
# (up to ~10 KB per 1000 calls, ~20-30 KB in all, then flat: measured to 10^5 calls), so
# its plans get more traced calls and a bound above that, still far below a leak's.
TRACED_STEPS = {"c": 500, "numba": 4000}
WARMUP_STEPS = {"c": 100, "numba": 2000}
RSS_BOUND = 2 * 2**20  # bytes per workload: a 100-byte leak per call would be 2 MB
# bytes per workload over its traced calls; one leaked object a call (>= 32 bytes) would
# be >= 64 KB (kernels), >= 16 KB (C plans) or >= 128 KB (Numba plans). Measured noise:
# <= 0.8 KB for the kernels and the C plans; see above for the Numba plans.
TRACED_BOUND = {"kernel": 4096, "c-plan": 8192, "numba-plan": 48 * 1024}

COMPILED = [b for b in ("c", "numba") if b in fastmlp.available_backends()]


def _check(result, kind):
    assert result.rss_growth < RSS_BOUND, (
        f"{result.name}: RSS grew {result.rss_growth / 2**20:.2f} MiB over {result.calls} calls"
    )
    assert result.traced_growth < TRACED_BOUND[kind], (
        f"{result.name}: {result.traced_growth} bytes in {result.traced_blocks} blocks grew "
        f"over {result.traced_calls} calls"
    )


@pytest.mark.parametrize("backend", COMPILED)
def test_kernels_do_not_leak(backend):
    for name, call in soak.kernel_workloads(backend, np.float32):
        _check(soak.soak(name, call, CALLS[backend], warmup=200, traced=TRACED), "kernel")


@pytest.mark.parametrize("backend", COMPILED)
def test_plans_do_not_leak(backend):
    for name, call in soak.plan_workloads(backend, np.float64):
        _check(soak.soak(name, call, STEPS, warmup=WARMUP_STEPS[backend],
                         traced=TRACED_STEPS[backend]), f"{backend}-plan")


def test_the_soak_sees_a_leak():
    # the controls: one small array kept per call shows in tracemalloc, and C-level memory
    # (malloc, as the C core or Numba's runtime would leak it) in the RSS, even late in a
    # test session whose heap has megabytes freed but resident (soak trims the heap)
    import ctypes

    kept = []

    def leaky():
        kept.append(np.ones(16))

    result = soak.soak("leaky", leaky, 2000, warmup=0, traced=2000)
    assert result.traced_growth >= 2000 * 16 * 8 > TRACED_BOUND["kernel"]
    del kept[:]

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    blocks = []

    # 64 KiB a call, 128 MB in all: more than the free memory earlier tests may leave in
    # the heap, which a smaller leak could reuse without growing the resident set
    def c_leak():
        block = libc.malloc(1 << 16)
        ctypes.memset(block, 1, 1 << 16)  # touched: resident
        blocks.append(block)

    try:
        result = soak.soak("c-leak", c_leak, 2000, warmup=0, traced=0)
    finally:
        for block in blocks:
            libc.free(block)
    assert result.rss_growth > RSS_BOUND


# -- absurd sizes: MemoryError (or ValueError), never a crash -------------------------------

# Run in a child process under an address-space limit (RLIMIT_AS, set after the imports): an
# allocation past it fails at once, whatever the machine's RAM and overcommit policy, and
# a crash would take down only the child (its exit status is checked).
_ABSURD_SCRIPT = r"""
import resource, sys
import numpy as np
import fastmlp
from fastmlp import ops

fastmlp.available_backends()
with open("/proc/self/status") as f:
    size = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))

big = np.broadcast_to(np.float32(1), (10**7, 10**7))  # 400 TB, as a zero-stride view
cases = {
    "NetworkPlan([1e6, 1e6, 10], batch_size=1e6)":
        lambda b: fastmlp.NetworkPlan([10**6, 10**6, 10], batch_size=10**6, backend=b),
    "NetworkPlan([10, 10], batch_size=1e12)":
        lambda b: fastmlp.NetworkPlan([10, 10], batch_size=10**12, backend=b),
    "NetworkPlan([2**31 - 1, 4])":
        lambda b: fastmlp.NetworkPlan([2**31 - 1, 4], batch_size=1, backend=b),
    "dense_forward: out (1e6, 1e6)": lambda b: ops.dense_forward(
        np.ones((10**6, 1)), np.ones((1, 10**6)), np.zeros(10**6)),
    "dense_forward: X a (1e7, 1e7) view": lambda b: ops.dense_forward(
        big, np.ones((10**7, 1), np.float32), np.zeros(1, np.float32)),
    "dense_backward: dA a (1e7, 1e7) view": lambda b: ops.dense_backward(
        big, np.ones((10**7, 1), np.float32), np.ones((1, 10**7), np.float32), big, "relu"),
    "activation_forward: (1e7, 1e7) view": lambda b: ops.activation_forward("tanh", big),
    "softmax: (1e7, 1e7) view": lambda b: ops.softmax(big),
    "softmax_cross_entropy: (1e7, 1e7) view": lambda b: ops.softmax_cross_entropy(
        big, np.zeros(10**7, np.int64)),
    "mean_squared_error: (1e7, 1e7) views": lambda b: ops.mean_squared_error(big, big),
    "sgd_update: grad a (1e5, 1e5) view of param's shape": lambda b: ops.sgd_update(
        np.ones((1, 1), np.float32), np.broadcast_to(np.float32(1), (10**5, 10**5)), 0.1),
    "plan.forward: X a (1e9, 2) view":
        lambda b: fastmlp.NetworkPlan([2, 3], backend=b).forward(
            np.broadcast_to(1.0, (10**9, 2))),
    "plan.train_epoch: X a (1e9, 2) view":
        lambda b: fastmlp.NetworkPlan([2, 3], backend=b).train_epoch(
            np.broadcast_to(1.0, (10**9, 2)), np.broadcast_to(np.int64(0), (10**9,))),
    "MLP.fit: batch_size=1e9 on 100 rows": lambda b: fastmlp.MLP((4,), backend=b).fit(
        np.ones((100, 3)), np.arange(100) % 2, batch_size=10**9, epochs=1, verbose=0),
}
for backend in fastmlp.available_backends():
    with fastmlp.use_backend(backend):
        for name, case in cases.items():
            print(f"{backend}\t{name}\t", end="", flush=True)
            try:
                case(backend)
                print("no error", flush=True)
            except (MemoryError, ValueError) as exc:
                print(type(exc).__name__, flush=True)
print("done", flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_absurd_sizes_raise_memory_error_and_never_crash():
    import os
    import subprocess

    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of shadow memory: no RLIMIT_AS")
    proc = subprocess.run([sys.executable, "-c", _ABSURD_SCRIPT], capture_output=True,
                          text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines and lines[-1] == "done", (
        f"the child died (status {proc.returncode}) at: {lines[-1:] or '(start)'}\n"
        f"{proc.stderr[-2000:]}"
    )
    outcomes = [line.split("\t") for line in lines[:-1]]
    assert len(outcomes) == 14 * len(fastmlp.available_backends())
    for backend, name, outcome in outcomes:
        assert outcome in ("MemoryError", "ValueError"), f"{backend}: {name}: {outcome}"
