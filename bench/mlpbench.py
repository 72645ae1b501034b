"""What the benchmark suites (bench/test_*.py) and bench/report.py share.

- the machine: CPU model, AVX-512, BLAS libraries and kernels, thread pinning;
- the network shapes worth keeping (DESIGN.md "Benchmarks") and their FLOP counts;
- one factory per implementation of a training step and of an epoch, all starting from
  the same weights on the same data: the course's NumPy loop (fastmlp.course), a
  NetworkPlan on each fastmlp backend, PyTorch eager, JAX (the whole step under jax.jit)
  and scikit-learn's MLPClassifier when they import;
- "products alone": the step's matrix products by numpy.matmul on arrays of the plan's
  shapes, the yardstick a step is held to;
- pinning the process to one CPU (JAX ignores threadpoolctl: affinity is what holds it to
  one core).

Nothing here hard-codes a speed: every figure is measured by the caller.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

import fastmlp
from fastmlp.course import CourseNetwork
from fastmlp.datasets import load_mnist_sample, make_spiral
from fma_peak import cpu_flags  # bench/ is on sys.path

FASTMLP_BACKENDS = ("c", "numba", "numpy")
SMOKE_ENV = "FASTMLP_BENCH_SMOKE"
THREADS_ENV = "FASTMLP_BENCH_BLAS_THREADS"


# -- the machine ---------------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def simd_summary():
    flags = cpu_flags()
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    parts = [f for f in ("avx2", "fma") if f in flags]
    return {
        "avx512": bool(avx512),
        "avx512_flags": " ".join(avx512) or "none",
        "simd": "+".join(parts) + ("+avx512" if avx512 else "") if parts else "unknown",
    }


def blas_pools():
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (empty without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {
            "api": p.get("user_api"),
            "library": os.path.basename(p.get("filepath", "")),
            "internal_api": p.get("internal_api"),
            "version": p.get("version"),
            "kernels": p.get("architecture"),
            "threads": p.get("num_threads"),
        }
        for p in threadpool_info()
    ]


def blas_summary():
    pools = [p for p in blas_pools() if p["api"] == "blas"]
    if not pools:
        return "unknown (install threadpoolctl)"
    return "; ".join(
        f"{p['internal_api']} {p['version']} [{p['library']}] kernels={p['kernels']} "
        f"threads={p['threads']}"
        for p in pools
    )


def thread_env():
    names = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
             "MKL_NUM_THREADS", "FASTMLP_BACKEND")
    return {n: os.environ.get(n, "unset") for n in names}


def fastmlp_simd_kernels():
    """The SIMD kernel set fastmlp's C core dispatched to (show_config's "simd kernels"),
    or "n/a" when this build does not report one."""
    import io

    try:
        return str(fastmlp.show_config(file=io.StringIO()).get("simd kernels", "n/a"))
    except Exception:  # noqa: BLE001 - a report must not fail on a missing fact
        return "n/a"


def machine_line():
    """One line of the facts every figure needs beside it: CPU, SIMD, fastmlp's kernels,
    the BLAS (its kernels and threads) and OPENBLAS_CORETYPE."""
    return (f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} CPUs for this process); "
            f"SIMD {simd_summary()['simd']}; fastmlp kernels {fastmlp_simd_kernels()}; "
            f"BLAS: {blas_summary()}; OPENBLAS_CORETYPE={thread_env()['OPENBLAS_CORETYPE']}")


def _cpu_busy():
    """{cpu: busy jiffies} from /proc/stat (empty when unreadable)."""
    busy = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu":
                    v = [int(x) for x in values[:8]]
                    busy[int(name[3:])] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    except (OSError, ValueError):
        return {}
    return busy


def quietest_cpu(sample=0.2):
    """The CPU this process may run on that other work kept least busy over `sample` s."""
    allowed = sorted(os.sched_getaffinity(0))
    b0 = _cpu_busy()
    time.sleep(sample)
    b1 = _cpu_busy()
    if not b0 or not b1:
        return allowed[-1]
    return min(allowed, key=lambda c: (b1.get(c, 0) - b0.get(c, 0), -c))


class pinned_cpu:
    """Hold every thread of this process (those running now and, by inheritance, those
    started later) on one CPU: os.sched_setaffinity on each task of /proc/self/tasks.

    Used with 1 thread per pool, where every implementation runs on one core anyway: it
    adds nothing for them and is the only way to hold JAX/XLA, whose pools ignore
    threadpoolctl, to one core. Enter it before JAX is imported and XLA sizes its pool to
    the one CPU. .release() / .reapply() step out and back in (the threads section);
    .repick() moves to the CPU least busy now (a pinned process cannot flee a neighbour
    that lands on its CPU, so callers re-pick between measurements).
    No-op where sched_setaffinity does not exist (cpu is then None).
    """

    def __init__(self, cpu=None):
        self.cpu = cpu
        self._saved = None

    @staticmethod
    def _tasks():
        try:
            return [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return [0]

    def _set(self, cpus):
        for tid in self._tasks():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # a thread that ended meanwhile
                pass

    def reapply(self):
        if not hasattr(os, "sched_setaffinity"):
            return self
        if self._saved is None:
            self._saved = set(os.sched_getaffinity(0))
        if self.cpu is None:
            self.cpu = quietest_cpu()
        self._set({self.cpu})
        return self

    def repick(self, sample=0.1):
        if self._saved is not None:
            self.cpu = quietest_cpu(sample)
            self._set({self.cpu})
        return self

    def release(self):
        if self._saved is not None:
            self._set(self._saved)
        return self

    def __enter__(self):
        return self.reapply()

    def __exit__(self, *exc):
        self.release()
        return False


class pinned_threads:
    """Pin every BLAS and OpenMP pool (threadpoolctl) and PyTorch to `n` threads.

    Re-enter (or call .reapply()) after importing a library that brings its own pool.
    """

    def __init__(self, n):
        self.n = int(n)
        self._limits = []
        self._torch_old = None

    def reapply(self):
        # Load every backend first: a BLAS library loaded after the limit is not limited
        # (the C backend brings SciPy's OpenBLAS in on first use).
        fastmlp.available_backends()
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        if threadpool_limits is not None:
            self._limits.append(threadpool_limits(limits=self.n))
        torch = torch_module()
        if torch is not None:
            if self._torch_old is None:
                self._torch_old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __enter__(self):
        return self.reapply()

    def __exit__(self, *exc):
        for limit in reversed(self._limits):
            limit.restore_original_limits()
        self._limits.clear()
        torch = torch_module()
        if torch is not None and self._torch_old is not None:
            torch.set_num_threads(self._torch_old)
        return False


class LoadMeter:
    """How busy the machine was with *other* work while we measured (Linux /proc/stat).

    others_cpus: CPUs' worth of time used by other processes on average (0 = quiet, 1 = a
    whole core taken from us); steal: the fraction of CPU time the hypervisor withheld.
    """

    def __init__(self):
        self.start()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            values = []
        times = os.times()
        return values, times.user + times.system, time.perf_counter()

    def start(self):
        self._t0 = self._snapshot()
        return self

    def stop(self):
        (v0, own0, w0), (v1, own1, w1) = self._t0, self._snapshot()
        wall = max(w1 - w0, 1e-9)
        if len(v0) < 8 or len(v1) < 8:
            return {"others_cpus": None, "steal": None}
        hz = os.sysconf("SC_CLK_TCK")
        d = [b - a for a, b in zip(v0, v1)]
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz  # user nice system irq softirq
        total = sum(d[:8]) or 1
        return {"others_cpus": max(busy - (own1 - own0), 0.0) / wall, "steal": d[7] / total}


# -- optional peers ------------------------------------------------------------------------

_TORCH = []


def torch_module():
    """torch, or None when it does not import (imported once)."""
    if not _TORCH:
        try:
            import torch

            _TORCH.append(torch)
        except ImportError:
            _TORCH.append(None)
    return _TORCH[0]


_JAX = []
# As the JAX issues recommend; with the thunk runtime of recent jaxlib these flags no longer
# hold XLA's intra-op pool to one thread: pinned_cpu (affinity) does.
JAX_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def jax_module():
    """jax, or None when it does not import. Imported once, lazily: XLA_FLAGS (one thread)
    is added to the environment first, since XLA reads it when jax is first imported."""
    if not _JAX:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " " + JAX_XLA_FLAGS).strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        try:
            import jax

            _JAX.append(jax)
        except ImportError:
            _JAX.append(None)
    return _JAX[0]


def jax_enable_x64():
    """float64 arrays for JAX (off by default; float32 arrays stay float32 once on)."""
    jax = jax_module()
    if jax is not None and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def sklearn_version():
    try:
        import sklearn

        return sklearn.__version__
    except ImportError:
        return None


def jax_version():
    try:
        import importlib.metadata as md

        return md.version("jax")
    except Exception:  # noqa: BLE001 - any failure means "not installed"
        return None


def fastmlp_backends():
    return [b for b in FASTMLP_BACKENDS if b in fastmlp.available_backends()]


def backend_errors():
    """{backend: why it does not import} for the fastmlp backends that do not."""
    from fastmlp import _backend

    errors = {}
    for name in FASTMLP_BACKENDS:
        try:
            _backend.load(name)
        except (ImportError, ValueError) as exc:
            errors[name] = str(exc)
    return errors


# -- shapes and FLOPs ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    sizes: tuple
    activation: str  # "relu" or "sigmoid": the course network knows only these
    optimizer: str  # "sgd" or "adam"
    lr: float
    l2: float
    batch: int
    dtypes: tuple
    epoch_batches: int  # batches in the epoch benchmark
    large: bool = False  # ~1 s a step: fewer rounds
    note: str = ""
    data: str = "random"  # "spiral": the course's spiral; "random": see make_data

    @property
    def label(self):
        arrow = "->".join(map(str, self.sizes))
        return f"{self.name} ({self.batch}x{arrow} {self.activation} {self.optimizer})"

    @property
    def epoch_rows(self):
        return self.batch * self.epoch_batches


SHAPES = {
    s.name: s
    for s in (
        Shape("spiral", (2, 100, 3), "relu", "sgd", 1.0, 1e-3, 300, ("float64", "float32"), 10,
              note="the course's spiral, N=300 full batch; epoch: 3000 points, 10 batches",
              data="spiral"),
        Shape("spiral-sigmoid", (2, 100, 3), "sigmoid", "sgd", 1.0, 1e-3, 300,
              ("float64", "float32"), 10, note="the spiral net with sigmoid hidden units",
              data="spiral"),
        Shape("mnist-sgd", (784, 100, 10), "sigmoid", "sgd", 0.1, 0.0, 100, ("float32",), 80,
              note="the lecture's MNIST net with plain SGD (lr 0.1)"),
        Shape("mnist", (784, 100, 10), "sigmoid", "adam", 1e-3, 0.0, 100, ("float32",), 80,
              note="the lecture's MNIST net, Adam; epoch: 8000 rows, 80 batches"),
        Shape("mid", (784, 512, 512, 10), "relu", "sgd", 0.01, 0.0, 1024, ("float32",), 8),
        Shape("large", (1024, 2048, 2048, 1000), "relu", "sgd", 0.01, 0.0, 4096,
              ("float32",), 2, large=True),
    )
}


def gemm_flops(sizes, n):
    """FLOPs of one training step's products: forward 2 n din dout per layer, dW the same,
    dX 2 n din dout for every layer but the first."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    total = 0
    for i, (din, dout) in enumerate(layers):
        total += 2 * n * din * dout * (2 if i == 0 else 3)
    return total


def forward_flops(sizes, n):
    return sum(2 * n * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def gemm_calls(sizes, n):
    """The products of one step as (name, m, k, n_cols, trans_a, trans_b):
    out(m, n_cols) = op(A) @ op(B)."""
    calls = []
    for i, (din, dout) in enumerate(zip(sizes[:-1], sizes[1:])):
        calls.append((f"fwd{i}", n, din, dout, False, False))  # X (n,din) @ W (din,dout)
        calls.append((f"dW{i}", din, n, dout, True, False))  # X^T (din,n) @ dZ (n,dout)
        if i > 0:
            calls.append((f"dX{i}", n, dout, din, False, True))  # dZ (n,dout) @ W^T
    return calls


def product_operands(sizes, n, dtype, seed=0):
    """[(name, a, b, out)] for gemm_calls(sizes, n): preallocated operands of the plan's
    shapes; a transposed product gets a transposed view (A.T of a C-contiguous array), so
    that BLAS receives the transpose flag instead of a copy."""
    rng = np.random.default_rng(seed)
    ops = []
    for name, m, k, ncols, ta, tb in gemm_calls(sizes, n):
        A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        B = rng.standard_normal((ncols, k) if tb else (k, ncols)).astype(dtype)
        ops.append((name, A.T if ta else A, B.T if tb else B, np.empty((m, ncols), dtype)))
    return ops


def matmul_products(sizes, n, dtype):
    """A callable running one step's products alone: numpy.matmul(a, b, out=c) each."""
    ops = [(a, b, c) for _, a, b, c in product_operands(sizes, n, dtype)]
    matmul = np.matmul

    def products():
        for a, b, c in ops:
            matmul(a, b, out=c)

    return products


# -- data ----------------------------------------------------------------------------------


def mnist_rows(rows, dtype, seed=0):
    """The first `rows` images of fastmlp's embedded MNIST sample, scaled to [0, 1], and
    their labels. Returns X, y, source."""
    X_train, y_train, X_test, y_test = load_mnist_sample()
    X = np.concatenate([X_train, X_test])[:rows].astype(dtype)
    y = np.concatenate([y_train, y_test])[:rows]
    return np.ascontiguousarray(X), y, "MNIST t10k (fastmlp's embedded sample)"


def make_data(shape, rows, dtype, seed=0):
    """(X, y) for `shape`: the spiral for the spiral net, random data elsewhere."""
    dtype = np.dtype(dtype).type
    if shape.data == "spiral":
        per_class = -(-rows // 3)
        X, y = make_spiral(per_class, 3, seed=seed, dtype=dtype)
        return np.ascontiguousarray(X[:rows]), np.ascontiguousarray(y[:rows])
    rng = np.random.default_rng(seed)
    if shape.activation == "sigmoid":
        X = rng.random((rows, shape.sizes[0])).astype(dtype)  # pixels in [0, 1]
    else:
        X = rng.standard_normal((rows, shape.sizes[0])).astype(dtype)
    y = rng.integers(0, shape.sizes[-1], rows).astype(np.int64)
    return X, y


# -- implementations of a step and an epoch ------------------------------------------------
#
# Each factory returns a zero-argument callable that runs one step (or one epoch) on data
# prepared in advance. Every implementation starts from the course network's weights
# (0.01 * randn, seed 0) so that all of them do the same arithmetic on the same numbers.


def course_network(shape, dtype, seed=0):
    return CourseNetwork(list(shape.sizes), activation=shape.activation, step_size=shape.lr,
                         reg=shape.l2, optimizer=shape.optimizer, dtype=dtype, seed=seed)


def fastmlp_plan(shape, dtype, backend, seed=0, batch=None):
    plan = fastmlp.NetworkPlan(
        list(shape.sizes), shape.activation, loss="softmax_cross_entropy",
        optimizer=shape.optimizer, learning_rate=shape.lr, l2=shape.l2,
        batch_size=batch or shape.batch, dtype=dtype, seed=seed, init="course",
        backend=backend,
    )
    ref = course_network(shape, dtype, seed)
    plan.set_weights([(W, b.reshape(-1)) for W, b in zip(ref.Ws, ref.bs)])
    return plan


class TorchNetwork:
    """PyTorch CPU eager: nn.Linear layers, F.cross_entropy, backward, optimizer step.

    L2 as in the course (``dW += l2 W`` on the weights only): weight_decay on a parameter
    group of the weights, none on the biases.
    """

    def __init__(self, shape, dtype, seed=0):
        torch = torch_module()
        if torch is None:
            raise ImportError("torch is not installed")
        nn = torch.nn
        self.torch = torch
        self.tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        ref = course_network(shape, dtype, seed)
        layers, weights, biases = [], [], []
        n_layers = len(ref.Ws)
        for i, (W, b) in enumerate(zip(ref.Ws, ref.bs)):
            lin = nn.Linear(W.shape[0], W.shape[1]).to(self.tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                lin.bias.copy_(torch.from_numpy(b.reshape(-1)))
            layers.append(lin)
            weights.append(lin.weight)
            biases.append(lin.bias)
            if i < n_layers - 1:
                layers.append(nn.ReLU() if shape.activation == "relu" else nn.Sigmoid())
        self.model = nn.Sequential(*layers)
        groups = [{"params": weights, "weight_decay": shape.l2},
                  {"params": biases, "weight_decay": 0.0}]
        if shape.optimizer == "sgd":
            self.opt = torch.optim.SGD(groups, lr=shape.lr)
        else:
            self.opt = torch.optim.Adam(groups, lr=shape.lr, betas=(0.9, 0.999), eps=1e-8)
        self.F = torch.nn.functional

    def tensors(self, X, y):
        return self.torch.from_numpy(X), self.torch.from_numpy(y)

    def train_step(self, X, y):
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(X), y)
        loss.backward()
        self.opt.step()
        return loss.item()


class JaxNetwork:
    """JAX on the CPU: the whole step (forward, softmax cross-entropy + L2, jax.grad, SGD
    or Adam) in one jax.jit function; an epoch is one more jit function, a lax.scan of
    that step over the batches of a shuffled order.

    The loss is the course's: mean(-log softmax(scores)[y]) + 0.5 l2 sum(W * W) over the
    weights (not the biases); Adam as in the lecture (bias-corrected m and v, eps outside
    the square root). Parameters and optimizer state are donated to the step, so XLA may
    update them in place. Every call waits for its result (jax.block_until_ready).
    """

    def __init__(self, shape, dtype, seed=0):
        jax = jax_module()
        if jax is None:
            raise ImportError("jax is not installed")
        dtype = np.dtype(dtype)
        if dtype == np.float64:
            jax_enable_x64()  # before any array is built: otherwise float64 becomes float32
        jnp = jax.numpy
        self.jax, self.dtype = jax, dtype
        ref = course_network(shape, dtype, seed)
        params = tuple((jnp.asarray(W), jnp.asarray(b.reshape(-1)))
                       for W, b in zip(ref.Ws, ref.bs))
        act = jax.nn.relu if shape.activation == "relu" else jax.nn.sigmoid
        lr, l2 = shape.lr, shape.l2
        beta1, beta2, eps = 0.9, 0.999, 1e-8

        def loss_fn(params, X, y):
            h = X
            for W, b in params[:-1]:
                h = act(h @ W + b)
            W, b = params[-1]
            # log softmax = s - max(s) - log(sum(exp(s - max(s)))), stable
            logp = jax.nn.log_softmax(h @ W + b, axis=1)
            loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            if l2:
                loss = loss + sum(0.5 * l2 * jnp.sum(W * W) for W, _ in params)
            return loss

        grad_fn = jax.value_and_grad(loss_fn)
        tree_map = jax.tree_util.tree_map

        if shape.optimizer == "sgd":
            def step(state, X, y):
                params, opt = state
                loss, grads = grad_fn(params, X, y)
                return (tree_map(lambda p, g: p - lr * g, params, grads), opt), loss

            opt = ()
        else:
            def step(state, X, y):
                params, (m, v, t) = state
                loss, g = grad_fn(params, X, y)
                t = t + 1
                m = tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, g)
                v = tree_map(lambda v, g: beta2 * v + (1 - beta2) * (g * g), v, g)
                # bias correction: m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
                c1, c2 = 1 - beta1**t, 1 - beta2**t
                params = tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                                  params, m, v)
                return (params, (m, v, t)), loss

            zeros = tree_map(jnp.zeros_like, params)
            opt = (zeros, tree_map(jnp.zeros_like, params), jnp.zeros((), dtype))

        def epoch(state, X, y, order):  # order: (batches, batch) row indices
            def body(state, idx):
                return step(state, X[idx], y[idx])

            state, losses = jax.lax.scan(body, state, order)
            return state, jnp.mean(losses)

        self.state = (params, opt)
        self._step = jax.jit(step, donate_argnums=0)
        self._epoch = jax.jit(epoch, donate_argnums=0)

    def arrays(self, X, y):
        """X and y as device arrays (y as int32, JAX's default integer)."""
        jnp = self.jax.numpy
        return jnp.asarray(np.asarray(X, self.dtype)), jnp.asarray(np.asarray(y, np.int32))

    def train_step(self, X, y):
        self.state, loss = self.jax.block_until_ready(self._step(self.state, X, y))
        return loss

    def train_epoch(self, X, y, order):
        """One pass over the rows in `order` (n,), in batches of order's second dimension
        after reshaping; order: (batches, batch) int32 device array."""
        self.state, loss = self.jax.block_until_ready(self._epoch(self.state, X, y, order))
        return loss

    def weights(self):
        """[(W, b)] as NumPy arrays."""
        return [(np.asarray(W), np.asarray(b)) for W, b in self.state[0]]


def step_impls(shape, dtype, rows=None, include_torch=True, include_jax=True,
               include_products=False):
    """{name: factory} for one training step; a factory builds and returns a callable."""
    rows = rows or shape.batch

    def data():
        return make_data(shape, rows, dtype, seed=1)

    def course():
        net = course_network(shape, dtype)
        X, y = data()
        return lambda: net.train_step(X, y)

    def plan(backend):
        def build():
            p = fastmlp_plan(shape, dtype, backend)
            X, y = data()
            return lambda: p.train_step(X, y)

        return build

    def torch_step():
        net = TorchNetwork(shape, dtype)
        X, y = net.tensors(*data())
        return lambda: net.train_step(X, y)

    def jax_step():
        net = JaxNetwork(shape, dtype)
        X, y = net.arrays(*data())
        return lambda: net.train_step(X, y)

    impls = {"course-numpy": course}
    for b in fastmlp_backends():
        impls[f"fastmlp-{b}"] = plan(b)
    if include_torch and torch_module() is not None:
        impls["pytorch"] = torch_step
    if include_jax and jax_module() is not None:
        impls["jax-jit"] = jax_step
    if include_products:
        impls[PRODUCTS] = lambda: matmul_products(shape.sizes, rows, dtype)
    return impls


PRODUCTS = "products-matmul"  # the step's products alone by numpy.matmul (not a network)


def sklearn_mlp(shape, seed=0):
    """scikit-learn's MLPClassifier with the shape's hyper-parameters; one partial_fit call
    over an epoch's rows is one shuffled epoch in minibatches of shape.batch."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=tuple(shape.sizes[1:-1]),
        activation="logistic" if shape.activation == "sigmoid" else "relu",
        solver=shape.optimizer,
        batch_size=shape.batch,
        learning_rate_init=shape.lr,
        alpha=shape.l2,
        max_iter=1,
        shuffle=True,
        random_state=seed,
        momentum=0.0,
    )


def epoch_impls(shape, dtype, include_torch=True, include_sklearn=True, data=None, rows=None,
                include_jax=True):
    """{name: factory} for one shuffled epoch of `rows` rows (default shape.epoch_rows) in
    batches of shape.batch; each factory returns a callable running one more epoch."""
    if data is None:
        def data():
            return make_data(shape, rows or shape.epoch_rows, dtype, seed=2)

    def course():
        net = course_network(shape, dtype)
        X, y = data()
        rng = np.random.default_rng(0)
        n, bs = len(X), shape.batch

        def epoch():
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                total += net.train_step(X[idx], y[idx]) * len(idx)
            return total / n

        return epoch

    def plan(backend):
        def build():
            p = fastmlp_plan(shape, dtype, backend)
            X, y = data()
            return lambda: p.train_epoch(X, y, batch_size=shape.batch, shuffle=True)

        return build

    def torch_epoch():
        net = TorchNetwork(shape, dtype)
        X, y = net.tensors(*data())
        torch = net.torch
        gen = torch.Generator().manual_seed(0)
        n, bs = len(X), shape.batch

        def epoch():
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                total += net.train_step(X[idx], y[idx]) * len(idx)
            return total / n

        return epoch

    def jax_epoch():
        net = JaxNetwork(shape, dtype)
        X, y = data()
        n, bs = len(X), shape.batch
        if n % bs:
            raise ValueError(f"jax-jit epoch: {n} rows is not a whole number of batches")
        X, y = net.arrays(X, y)
        rng = np.random.default_rng(0)
        jnp = net.jax.numpy

        def epoch():
            order = jnp.asarray(rng.permutation(n).astype(np.int32).reshape(-1, bs))
            return net.train_epoch(X, y, order)

        return epoch

    def sklearn_epoch():
        clf = sklearn_mlp(shape)
        X, y = data()
        classes = np.arange(shape.sizes[-1])
        state = {"first": True}

        def epoch():
            if state["first"]:
                state["first"] = False
                return clf.partial_fit(X, y, classes=classes)
            return clf.partial_fit(X, y)

        return epoch

    impls = {"course-numpy": course}
    for b in fastmlp_backends():
        impls[f"fastmlp-{b}"] = plan(b)
    if include_torch and torch_module() is not None:
        impls["pytorch"] = torch_epoch
    if include_jax and jax_module() is not None:
        impls["jax-jit"] = jax_epoch
    if include_sklearn and sklearn_version() is not None and shape.activation in (
        "relu", "sigmoid"
    ):
        impls["sklearn-mlp"] = sklearn_epoch
    return impls


# -- timing (report.py; the suites use pytest-benchmark) -----------------------------------


def calibrate(fn, min_block):
    """Iterations of fn() that take about min_block seconds (at least one; 1 when
    min_block <= 0, without calling fn)."""
    if min_block <= 0:
        return 1
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, math.ceil(min_block / max(dt, 1e-9))) if dt < min_block else 1


def time_block(fn, iterations):
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / iterations


def time_interleaved(fns, repeats, min_block, warmup=1, interleave=True, pause=0.2):
    """Median seconds per call of each callable in `fns` ({name: fn}).

    Warm-up calls first, then `repeats` rounds; each round times a block of calibrated
    length for every callable in turn, so that a noisy neighbour slows all of them alike.
    interleave=False times each callable's rounds back to back and sleeps `pause` seconds
    between callables: use it with more than one thread per pool, where a pool that spins
    after its work (OpenMP, OpenBLAS) would steal the cores of the next callable.
    """
    if not interleave:
        result = {}
        for name, fn in fns.items():
            time.sleep(pause)
            result.update(time_interleaved({name: fn}, repeats, min_block, warmup))
        return result
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    iters = {name: calibrate(fn, min_block) for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_block(fn, iters[name]))
    return {name: float(np.median(s)) for name, s in samples.items()}
