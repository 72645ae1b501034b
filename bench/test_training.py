"""Whole training steps and whole epochs, fastmlp beside the course's loop and the peers.

Groups ("step <shape> <dtype>", "epoch <shape> <dtype>") hold, side by side:
- "course-numpy": fastmlp.course.CourseNetwork.train_step (a Python loop over the batches
  for an epoch), the NumPy baseline written the way the course writes it;
- "fastmlp-<backend>": NetworkPlan.train_step / NetworkPlan.train_epoch per backend;
- "pytorch": CPU eager, nn.Linear + F.cross_entropy + backward + optimizer step, with
  torch.set_num_threads equal to the BLAS threads (skipped when torch does not import);
- "jax-jit": the whole step under jax.jit, data and weights on the device in advance, an
  epoch as one jit call (lax.scan over the batches); one core through the session's CPU
  affinity at 1 thread (skipped when jax does not import);
- "products-matmul" (steps only): the step's products alone, numpy.matmul on arrays of
  the plan's shapes: the yardstick for the step;
- "sklearn-mlp": MLPClassifier.partial_fit over the epoch's rows with the same
  hyper-parameters (MNIST shape only; skipped without scikit-learn).

All start from the same weights (the course's 0.01 * randn, seed 0) on the same data. The
large shape (~1-2 s a step) runs a few fixed rounds. Smoke mode checks the code paths, its
times mean nothing: one call each, epochs of two batches, the large step on 256 rows and
no large epoch.
"""

from __future__ import annotations

import mlpbench as mb
import numpy as np
import pytest

LARGE_ROUNDS = 3
LARGE_EPOCH_ROUNDS = 2
SMOKE_LARGE_ROWS = 256  # smoke mode: the large step runs once on this many rows
SMOKE_EPOCH_BATCHES = 2  # smoke mode: epochs of two batches
OWN = ("course-numpy",) + tuple(f"fastmlp-{b}" for b in mb.FASTMLP_BACKENDS) + (
    "pytorch", "jax-jit")
CASES = [(s.name, dt) for s in mb.SHAPES.values() for dt in s.dtypes]
STEP_PARAMS = [(name, dt, impl) for name, dt in CASES for impl in OWN + (mb.PRODUCTS,)]
EPOCH_PARAMS = [(name, dt, impl) for name, dt in CASES for impl in OWN] + [
    ("mnist", "float32", "sklearn-mlp")]


def _ids(params):
    return [f"{name}-{dt}-{impl}" for name, dt, impl in params]


def _skip_unavailable(impl):
    backend = impl.split("-", 1)[1] if impl.startswith("fastmlp-") else None
    if backend is not None and backend not in mb.fastmlp_backends():
        pytest.skip(mb.backend_errors().get(backend, f"backend {backend!r} unavailable"))
    if impl == "pytorch" and mb.torch_module() is None:
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0)")
    if impl == "jax-jit" and mb.jax_module() is None:
        pytest.skip("JAX is not installed (pip install jax)")
    if impl == "sklearn-mlp" and mb.sklearn_version() is None:
        pytest.skip("scikit-learn is not installed")


@pytest.mark.parametrize(("name", "dtype", "impl"), STEP_PARAMS, ids=_ids(STEP_PARAMS))
def test_train_step(measure, bench_config, name, dtype, impl):
    shape = mb.SHAPES[name]
    _skip_unavailable(impl)
    dtype = np.dtype(dtype)
    rows = shape.batch
    if shape.large and bench_config["smoke"]:
        rows = min(rows, SMOKE_LARGE_ROWS)  # the code path runs; the time means nothing
    fn = mb.step_impls(shape, dtype, rows=rows, include_products=True)[impl]()
    measure(fn, group=f"step {shape.label} {dtype}", impl=impl, dtype=dtype,
            shape=f"{rows}x{'->'.join(map(str, shape.sizes))}",
            flops=mb.gemm_flops(shape.sizes, rows),
            rounds=LARGE_ROUNDS if shape.large else None, kind="train_step", rows=rows)


@pytest.mark.parametrize(("name", "dtype", "impl"), EPOCH_PARAMS, ids=_ids(EPOCH_PARAMS))
def test_train_epoch(measure, bench_config, name, dtype, impl):
    shape = mb.SHAPES[name]
    _skip_unavailable(impl)
    if shape.large and bench_config["smoke"]:
        pytest.skip("smoke mode: the large epoch takes several seconds per implementation")
    dtype = np.dtype(dtype)
    batches = SMOKE_EPOCH_BATCHES if bench_config["smoke"] else shape.epoch_batches
    rows = batches * shape.batch
    impls = mb.epoch_impls(shape, dtype, include_sklearn=shape.name == "mnist", rows=rows)
    fn = impls[impl]()
    if impl == "sklearn-mlp":
        fn()  # the first partial_fit initialises the network: never time it, even in smoke
    flops = mb.gemm_flops(shape.sizes, shape.batch) * batches
    measure(fn, group=f"epoch {shape.label} {rows} rows {dtype}", impl=impl,
            dtype=dtype, shape=f"{rows}x{'->'.join(map(str, shape.sizes))}",
            flops=flops, rounds=LARGE_EPOCH_ROUNDS if shape.large else None,
            kind="train_epoch", batch=shape.batch, rows=rows)


FIT_EPOCHS = 200  # of the course's full-batch spiral: 300 rows, one batch an epoch


@pytest.mark.parametrize("impl", ["plan-train_epoch", "MLP.fit"])
def test_fit_per_epoch_overhead(measure, bench_config, impl):
    """MLP.fit's bookkeeping per epoch (shuffling, the schedule, the checks, the training
    accuracy, the history) beside the plan's bare epochs, on the course's spiral trained
    full-batch for many tiny epochs: the ratio of the two is the overhead."""
    import fastmlp

    shape = mb.SHAPES["spiral"]
    X, y = mb.make_data(shape, 300, np.float32)
    epochs = 2 if bench_config["smoke"] else FIT_EPOCHS
    if impl == "MLP.fit":
        model = fastmlp.MLP((100,), seed=0)

        def fn():
            model.fit(X, y, epochs=epochs, batch_size=300, optimizer="sgd",
                      learning_rate=1.0, verbose=0)
    else:
        plan = fastmlp.NetworkPlan(shape.sizes, "relu", optimizer="sgd", learning_rate=1.0,
                                   batch_size=300, dtype=np.float32, seed=0)

        def fn():
            for _ in range(epochs):
                plan.train_epoch(X, y)  # its own shuffle, as fit's
    measure(fn, group=f"fit overhead spiral {epochs} epochs float32", impl=impl,
            dtype=np.dtype(np.float32), shape=f"300x{'->'.join(map(str, shape.sizes))}",
            kind="fit", epochs=epochs)
