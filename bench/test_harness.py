"""Checks of the benchmark harness itself (plain tests, cheap, also run with --smoke).

- the JAX peer computes the course's loss: same weights, same data, the losses of its
  first steps match CourseNetwork.train_step within a per-dtype tolerance (so its first
  step's gradient and update match too), and float32 stays float32 once float64 shapes
  have switched on jax_enable_x64;
- "products alone" runs the step's products on operands of the plan's shapes, with
  transposed views (no copies) where the product is transposed;
- the FMA peak micro-benchmark gives numbers where it can and "n/a" where it cannot;
- bench/search.py runs (a tiny search) and its threaded search keeps the serial best
  parameters.
"""

from __future__ import annotations

import fma_peak
import mlpbench as mb
import numpy as np
import pytest

# relative tolerance on the loss, per dtype: the JAX and the course step sum in different
# orders (XLA fuses and vectorises), so float32 agrees to a few ulps of the loss
LOSS_RTOL = {np.float32: 1e-5, np.float64: 1e-10}
JAX_CASES = [(s.name, dt) for s in mb.SHAPES.values() if not s.large and s.name != "mid"
             for dt in s.dtypes]


@pytest.mark.parametrize(("name", "dtype"), JAX_CASES, ids=[f"{n}-{d}" for n, d in JAX_CASES])
def test_jax_step_matches_course(name, dtype):
    if mb.jax_module() is None:
        pytest.skip("JAX is not installed (pip install jax)")
    shape, dtype = mb.SHAPES[name], np.dtype(dtype)
    X, y = mb.make_data(shape, shape.batch, dtype, seed=1)
    course = mb.course_network(shape, dtype)
    net = mb.JaxNetwork(shape, dtype)
    Xj, yj = net.arrays(X, y)
    for step in range(3):  # step 0: the loss on the shared weights; then after updates
        expected = course.train_step(X, y)
        loss = net.train_step(Xj, yj)
        assert np.asarray(loss).dtype == dtype, "jax_enable_x64 must not widen float32"
        np.testing.assert_allclose(float(loss), float(expected), rtol=LOSS_RTOL[dtype.type],
                                   err_msg=f"loss after {step} update(s)")


def test_products_operands_have_the_plan_shapes():
    sizes, n = (784, 512, 512, 10), 64
    calls = mb.gemm_calls(sizes, n)
    ops = mb.product_operands(sizes, n, np.float32)
    assert [c[0] for c in calls] == [o[0] for o in ops]
    for (name, m, k, ncols, ta, tb), (_, a, b, c) in zip(calls, ops):
        assert a.shape == (m, k) and b.shape == (k, ncols) and c.shape == (m, ncols), name
        # a transposed product reads a transposed view: BLAS gets the flag, not a copy
        assert a.flags.f_contiguous if ta else a.flags.c_contiguous, name
        assert b.flags.f_contiguous if tb else b.flags.c_contiguous, name
    run = mb.matmul_products(sizes, n, np.float32)
    run()


def test_products_compute_the_products():
    sizes, n = (3, 5, 2), 4
    for (_, a, b, c) in mb.product_operands(sizes, n, np.float64):
        np.matmul(a, b, out=c)
        np.testing.assert_allclose(c, a @ b, rtol=1e-12)


def test_fma_peak_measures_or_says_na():
    res = fma_peak.measure(seconds=0.002, runs=1)
    assert set(res["peak"]) == {"float32", "float64"}
    if res["variants"]:
        for dt in ("float32", "float64"):
            assert res["peak"][dt] > 0
            assert res["peak_isa"][dt] in res["variants"]
        assert "n/a" not in fma_peak.summary(res)
    else:
        assert res["peak"] == {"float32": None, "float64": None}
        assert fma_peak.summary(res).startswith("n/a")


def test_fma_peak_without_compiler_is_na(monkeypatch):
    monkeypatch.setattr(fma_peak, "find_compiler", lambda: None)
    res = fma_peak.measure(seconds=0.002, runs=1)
    assert res["variants"] == {} and res["peak"] == {"float32": None, "float64": None}
    assert fma_peak.summary(res).startswith("n/a")


def test_search_script_runs_and_threads_keep_the_best_params(capsys):
    pytest.importorskip("sklearn", reason="search.py needs scikit-learn")
    import search

    assert search.main(["--quick", "--rows", "400", "--no-sklearn", "--no-processes",
                        "--no-dask"]) == 0
    table = capsys.readouterr().out
    assert "| fastmlp | threads, n_jobs=2 |" in table
    assert "| NO |" not in table
